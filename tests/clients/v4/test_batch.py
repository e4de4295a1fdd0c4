"""Batch requests through the newest 4.x client, its wait helpers and
`ubiops-cli`: 250 inputs queued in one call and run by the version's queue
with one instance, collected (all or nothing), cancelled while pending or
processing, waited for with `ubiops.utils.wait_for_deployment_request`,
deleted many at once (all or nothing), and at the end every queued request
finished exactly once.

One plain deployment (`shouter`, BATCH_DEPLOYMENT in shared.py) serves the
whole module; the tests run in file order and build on each other. What the
3.13 suite checks alike is in shared.py; here is what 4.x does its own way
(priority, dict-typed update answers, the wait helpers, the CLI).
"""

import json
import re
import time
import uuid

import pytest
import ubiops
from ubiops.utils.exceptions import StatusError

from shared import (
    BATCH_NAME as DEPLOYMENT, assert_batch_delete_all_or_nothing, assert_bad_batches_refused,
    assert_collect_all_or_nothing, assert_collected_as_asked, assert_done_as_asked, assert_each_finished_once,
    assert_finished_not_cancellable, assert_queued_in_one_call, collect, collect_until, create_batch_deployment,
    error_of, list_batch, new_ledger, nothing_queued, queue_batch, queue_sleepers, remember,
)

PROJECT = "batch-v4"
# 4.x marks `success`, `request_data` and `result` deprecated (its users still read them).
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


@pytest.fixture(scope="module")
def api(recording_client):
    return recording_client[0]


@pytest.fixture(scope="module")
def ledger():
    return new_ledger()


@pytest.fixture(scope="module")
def deployment(api, worker, tmp_path_factory):
    """`shouter` v1 (plain, at most one instance), built."""
    return create_batch_deployment(
        ubiops, api, PROJECT, tmp_path_factory.mktemp("zips"), deployment_fields={"supports_request_format": True},
        version_fields={"environment": "python3-11", "instance_type_group_name": "512mb"},
    )


@pytest.fixture(scope="module")
def queued(api, deployment, ledger):
    """The 250 inputs, queued to the default version in one call: (when, the created requests)."""
    return queue_batch(api, PROJECT, ledger)


@pytest.fixture(scope="module")
def collected(api, queued):
    return collect_until(api, PROJECT, DEPLOYMENT, [request.id for request in queued[1]])


@pytest.fixture(scope="module")
def sleepers(api, collected, ledger):
    """SLEEPERS queued to the version, once the 250 have finished: {letter: id}."""
    return queue_sleepers(api, PROJECT, ledger)


def wait_for(api, request_id, version=None):
    """`ubiops.utils`' wait helper for one request, as its users call it."""
    if version is None:
        ubiops.utils.wait_for_deployment_request(
            client=api.api_client, project_name=PROJECT, deployment_name=DEPLOYMENT, request_id=request_id,
            timeout=60, quiet=True,
        )
    else:
        ubiops.utils.wait_for_deployment_version_request(
            client=api.api_client, project_name=PROJECT, deployment_name=DEPLOYMENT, version=version,
            request_id=request_id, timeout=60, quiet=True,
        )


# --- create -------------------------------------------------------------------------

def test_250_inputs_are_queued_in_one_call(queued):
    assert_queued_in_one_call(*queued)


def test_251_inputs_or_one_bad_input_are_refused_and_nothing_is_queued(api, queued):
    with nothing_queued(api, PROJECT):
        assert_bad_batches_refused(api, PROJECT)
        assert error_of(api.batch_deployment_requests_create, PROJECT, DEPLOYMENT, ["x"], priority=2)[0] == 400


def test_a_batch_keeps_its_timeout_and_takes_a_priority(api, deployment, ledger):
    created = api.batch_deployment_version_requests_create(
        PROJECT, DEPLOYMENT, "v1", ["x", "yy"], timeout=600, priority=1,
    )
    assert [(r.deployment, r.version) for r in created] == [(DEPLOYMENT, "v1")] * 2
    remember(ledger, created, ["x", "yy"])
    done = collect_until(api, PROJECT, DEPLOYMENT, [r.id for r in created], version="v1")
    for request, data in zip(created, ["x", "yy"]):
        detail = done[request.id]
        assert_done_as_asked(detail, data)
        # Sizes of the JSON text: a plain input is a JSON string.
        size = len(json.dumps(data))
        assert (detail.timeout, detail.input_size, detail.output_size) == (600, size, size), detail


# --- collect ------------------------------------------------------------------------

def test_collect_answers_every_result_for_its_input(api, queued, collected):
    assert_collected_as_asked(api, PROJECT, queued[1], collected, timeout=14400)


def test_collect_is_all_or_nothing(api, queued):
    assert_collect_all_or_nothing(api, PROJECT, queued[1])


# --- cancel and the wait helpers ---------------------------------------------------------

def test_pending_requests_are_cancelled_at_once(api, sleepers):
    answer = api.deployment_requests_update(PROJECT, DEPLOYMENT, sleepers["c"], {"status": "cancelled"})
    assert (answer["id"], answer["status"], answer["result"]) == (sleepers["c"], "cancelled", None), answer
    answer = api.deployment_version_requests_update(
        PROJECT, DEPLOYMENT, request_id=sleepers["d"], version="v1", data={"status": "cancelled"},
    )
    assert (answer["id"], answer["status"], answer["version"]) == (sleepers["d"], "cancelled", "v1"), answer
    details = collect(api, PROJECT, DEPLOYMENT, [sleepers["c"], sleepers["d"]])
    assert {d.status for d in details.values()} == {"cancelled"}
    # 4.x sends any status; only `cancelled` is an update.
    status, message = error_of(api.deployment_requests_update, PROJECT, DEPLOYMENT, sleepers["b"], {"status": "processing"})
    assert status == 400 and "cancelled" in message, message


def test_a_processing_request_is_cancelled_and_the_queue_goes_on(api, sleepers):
    collect_until(api, PROJECT, DEPLOYMENT, [sleepers["a"]], statuses={"processing"}, timeout=60)
    started = time.monotonic()
    answer = api.deployment_version_requests_update(
        PROJECT, DEPLOYMENT, request_id=sleepers["a"], version="v1", data={"status": "cancelled"},
    )
    assert answer["status"] in {"cancelled_pending", "cancelled"}, answer
    # e waits behind a (and b): the helper polls it from pending to completed.
    wait_for(api, sleepers["e"], version="v1")
    assert time.monotonic() - started < 25
    details = collect(api, PROJECT, DEPLOYMENT, [sleepers["a"], sleepers["b"], sleepers["e"]])
    assert details[sleepers["a"]].status == "cancelled", details[sleepers["a"]]
    assert details[sleepers["a"]].result is None
    assert_done_as_asked(details[sleepers["b"]], "sleep 0.1 b")
    assert_done_as_asked(details[sleepers["e"]], "sleep 0.1 e")


def test_the_wait_helper_returns_on_completed_and_raises_on_cancelled(api, queued, sleepers):
    _, created = queued
    wait_for(api, created[0].id)  # returns at once
    wait_for(api, sleepers["b"], version="v1")
    for letter in ["a", "c"]:
        with pytest.raises(StatusError, match="cancelled"):
            wait_for(api, sleepers[letter])
    with pytest.raises(StatusError, match="asked to fail: fail 7"):
        wait_for(api, created[7].id)


def test_a_finished_request_cannot_be_cancelled(api, queued, sleepers):
    assert_finished_not_cancellable(api, PROJECT, queued[1], sleepers)


# --- delete -------------------------------------------------------------------------

def test_batch_delete_is_all_or_nothing(api, queued, sleepers, ledger):
    assert_batch_delete_all_or_nothing(api, PROJECT, queued[1], sleepers, ledger)


# --- ubiops-cli ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def signed_in(cli, server, deployment):
    cli("signin", "--token", "--api", server.api, "--password", f"Token {server.token}")
    cli("current_project", "set", PROJECT)
    return cli


def test_cli_batch_create_and_get(signed_in, api, ledger):
    cli = signed_in
    created = cli.json("deployments", "requests", "create", DEPLOYMENT, "--batch", "--data", "cli one", "--data", "cli two")
    assert [(r["deployment"], r["version"]) for r in created] == [(DEPLOYMENT, "v1")] * 2, created
    assert {r["status"] for r in created} <= {"pending", "processing", "completed"}, created
    ids = [r["id"] for r in created]
    ledger["queued"].update(zip(ids, ["cli one", "cli two"]))
    done = collect_until(api, PROJECT, DEPLOYMENT, ids)
    for request_id, data in zip(ids, ["cli one", "cli two"]):
        assert_done_as_asked(done[request_id], data)

    # `requests get` collects.
    got = cli.json("deployments", "requests", "get", DEPLOYMENT, "-id", ids[0], "-id", ids[1])
    assert sorted((r["id"], r["status"]) for r in got) == sorted((i, "completed") for i in ids), got
    output = cli("deployments", "requests", "get", DEPLOYMENT, "-id", ids[1])
    assert ids[1] in output and "completed" in output, output
    output = cli("deployments", "requests", "get", DEPLOYMENT, "-id", str(uuid.uuid4()), expect_failure=True)
    assert "404" in output or "not found" in output.lower(), output


def test_cli_batch_create_from_a_file_to_a_version(signed_in, api, ledger, tmp_path):
    cli = signed_in
    inputs = ["file one", "fail file", "file three"]
    path = tmp_path / "inputs.json"
    path.write_text(json.dumps(inputs))
    output = cli("deployments", "requests", "create", DEPLOYMENT, "-v", "v1", "--batch", "-f", str(path),
                 "-t", "600", "--format", "oneline")
    ids = UUID.findall(output)
    assert len(ids) == 3, output
    ledger["queued"].update(zip(ids, inputs))
    done = collect_until(api, PROJECT, DEPLOYMENT, ids, version="v1")
    for request_id, data in zip(ids, inputs):
        assert_done_as_asked(done[request_id], data)
        assert done[request_id].timeout == 600
    output = cli("deployments", "requests", "get", DEPLOYMENT, "-v", "v1", *[a for i in ids for a in ("-id", i)],
                 "--format", "oneline")
    statuses = [re.search(rf"{request_id} (\w+)", output) for request_id in ids]
    assert [found and found.group(1) for found in statuses] == ["completed", "failed", "completed"], output


# --- the end ------------------------------------------------------------------------

def test_every_queued_request_finished_exactly_once(api, ledger):
    assert list_batch(api, PROJECT, status="pending,processing,cancelled_pending") == []
    assert_each_finished_once(api, PROJECT, ledger, cancelled=2)  # a and d (c was deleted)
