"""Batch requests through the newest 4.x client, its wait helpers and
`ubiops-cli`: 250 inputs queued in one call and run by the version's queue
with one instance, collected (all or nothing), cancelled while pending or
processing, waited for with `ubiops.utils.wait_for_deployment_request`,
deleted many at once (all or nothing), and at the end every queued request
finished exactly once.

One plain deployment (`shouter`, BATCH_DEPLOYMENT in shared.py) serves the
whole module; the tests run in file order and build on each other.
"""

import json
import re
import time
import uuid
from datetime import datetime, timezone

import pytest
import ubiops
from ubiops.utils.exceptions import StatusError

from shared import (
    BATCH_DEPLOYMENT, BATCH_INPUTS, FINISHED_REQUEST, assert_done_as_asked, collect, collect_until, error_of,
    make_zip, upload_and_build,
)

PROJECT = "batch-v4"
DEPLOYMENT = "shouter"
# The first runs long enough to be cancelled while processing; with one
# instance the others wait behind it, pending.
SLEEPERS = ["sleep 20 a", "sleep 0.1 b", "sleep 0.1 c", "sleep 0.1 d", "sleep 0.1 e"]
# 4.x marks `success`, `request_data` and `result` deprecated (its users still read them).
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


@pytest.fixture(scope="module")
def api(recording_client):
    return recording_client[0]


@pytest.fixture(scope="module")
def ledger():
    """Every request the module queued ({id: input}) and the ids it deleted."""
    return {"queued": {}, "deleted": set()}


def list_all(api, **filters):
    return api.deployment_version_requests_list(PROJECT, DEPLOYMENT, "v1", limit=1000, **filters)


@pytest.fixture(scope="module")
def deployment(api, worker, tmp_path_factory):
    """`shouter` v1 (plain, at most one instance), built."""
    api.projects_create(data=ubiops.ProjectCreate(name=PROJECT, organization_name="self-hosted"))
    api.deployments_create(PROJECT, ubiops.DeploymentCreate(
        name=DEPLOYMENT, supports_request_format=True, input_type="plain", output_type="plain",
    ))
    api.deployment_versions_create(PROJECT, DEPLOYMENT, ubiops.DeploymentVersionCreate(
        version="v1", environment="python3-11", instance_type_group_name="512mb", maximum_instances=1,
    ))
    path = tmp_path_factory.mktemp("zips") / "shouter.zip"
    path.write_bytes(make_zip({"deployment.py": BATCH_DEPLOYMENT}))
    upload_and_build(api, PROJECT, DEPLOYMENT, "v1", path)
    return DEPLOYMENT


@pytest.fixture(scope="module")
def queued(api, deployment, ledger):
    """The 250 inputs, queued to the default version in one call."""
    started = datetime.now(timezone.utc)
    created = api.batch_deployment_requests_create(PROJECT, DEPLOYMENT, BATCH_INPUTS)
    ledger["queued"].update((request.id, data) for request, data in zip(created, BATCH_INPUTS))
    return started, created


@pytest.fixture(scope="module")
def collected(api, queued):
    _, created = queued
    return collect_until(api, PROJECT, DEPLOYMENT, [request.id for request in created])


@pytest.fixture(scope="module")
def sleepers(api, collected, ledger):
    """SLEEPERS queued to the version, once the 250 have finished: {letter: id}."""
    created = api.batch_deployment_version_requests_create(PROJECT, DEPLOYMENT, "v1", SLEEPERS)
    assert [request.status for request in created] == ["pending"] * len(SLEEPERS)
    ledger["queued"].update((request.id, data) for request, data in zip(created, SLEEPERS))
    return {data.split()[-1]: request.id for request, data in zip(created, SLEEPERS)}


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
    started, created = queued
    assert len(created) == 250
    ids = [request.id for request in created]
    assert len(set(ids)) == 250
    for request in created:
        uuid.UUID(request.id)
        assert (request.deployment, request.version) == (DEPLOYMENT, "v1")
        assert request.status in {"pending", "processing", "completed", "failed"}, request
        assert abs((request.time_created - started).total_seconds()) < 60, request


def test_251_inputs_or_one_bad_input_are_refused_and_nothing_is_queued(api, queued):
    before = len(list_all(api))
    status, message = error_of(api.batch_deployment_requests_create, PROJECT, DEPLOYMENT, BATCH_INPUTS + ["one more"])
    assert status == 400 and "250" in message, message
    status, message = error_of(
        api.batch_deployment_version_requests_create, PROJECT, DEPLOYMENT, "v1", BATCH_INPUTS + ["one more"]
    )
    assert status == 400 and "250" in message, message
    status, message = error_of(api.batch_deployment_requests_create, PROJECT, DEPLOYMENT, ["fine", 5, "fine"])
    assert status == 400 and "item 2" in message, message
    assert error_of(api.batch_deployment_requests_create, PROJECT, DEPLOYMENT, ["x"], priority=2)[0] == 400
    assert error_of(api.batch_deployment_requests_create, PROJECT, DEPLOYMENT, ["x"], timeout=172801)[0] == 400
    assert len(list_all(api)) == before


def test_a_batch_keeps_its_timeout_and_takes_a_priority(api, deployment, ledger):
    created = api.batch_deployment_version_requests_create(
        PROJECT, DEPLOYMENT, "v1", ["x", "yy"], timeout=600, priority=1,
    )
    assert [(r.deployment, r.version) for r in created] == [(DEPLOYMENT, "v1")] * 2
    ledger["queued"].update((request.id, data) for request, data in zip(created, ["x", "yy"]))
    done = collect_until(api, PROJECT, DEPLOYMENT, [r.id for r in created], version="v1")
    for request, data in zip(created, ["x", "yy"]):
        detail = done[request.id]
        assert_done_as_asked(detail, data)
        # Sizes of the JSON text: a plain input is a JSON string.
        size = len(json.dumps(data))
        assert (detail.timeout, detail.input_size, detail.output_size) == (600, size, size), detail


# --- collect ------------------------------------------------------------------------

def test_collect_answers_every_result_for_its_input(api, queued, collected):
    _, created = queued
    assert len(collected) == 250
    for request, data in zip(created, BATCH_INPUTS):
        detail = collected[request.id]
        assert (detail.deployment, detail.version, detail.timeout) == (DEPLOYMENT, "v1", 14400), detail
        assert_done_as_asked(detail, data)
    assert sum(detail.status == "failed" for detail in collected.values()) == 5
    ids = [request.id for request in created[:20]]
    through_version = collect(api, PROJECT, DEPLOYMENT, ids, version="v1")
    assert {i: d.result for i, d in through_version.items()} == {i: collected[i].result for i in ids}


def test_collect_is_all_or_nothing(api, queued):
    _, created = queued
    known = [request.id for request in created[:3]]
    unknown = str(uuid.uuid4())
    status, message = error_of(api.deployment_requests_batch_get, PROJECT, DEPLOYMENT, known + [unknown])
    assert status == 404 and unknown in message, message
    status, message = error_of(
        api.deployment_version_requests_batch_get, PROJECT, DEPLOYMENT, "v1", [unknown] + known
    )
    assert status == 404 and unknown in message, message
    too_many = [request.id for request in created] + [unknown]
    assert error_of(api.deployment_requests_batch_get, PROJECT, DEPLOYMENT, too_many)[0] == 400


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
    _, created = queued
    completed, failed = created[0].id, created[7].id
    for request_id in [completed, failed, sleepers["b"], sleepers["c"]]:
        status, message = error_of(api.deployment_requests_update, PROJECT, DEPLOYMENT, request_id, {"status": "cancelled"})
        assert status == 400, message
    assert error_of(
        api.deployment_version_requests_update, PROJECT, DEPLOYMENT, request_id=completed, version="v1",
        data={"status": "cancelled"},
    )[0] == 400
    assert error_of(
        api.deployment_requests_update, PROJECT, DEPLOYMENT, str(uuid.uuid4()), {"status": "cancelled"}
    )[0] == 404
    after = collect(api, PROJECT, DEPLOYMENT, [completed, failed, sleepers["b"], sleepers["c"]])
    assert [after[i].status for i in [completed, failed, sleepers["b"], sleepers["c"]]] == [
        "completed", "failed", "completed", "cancelled",
    ]


# --- delete -------------------------------------------------------------------------

def test_batch_delete_is_all_or_nothing(api, queued, sleepers, ledger):
    _, created = queued
    victims = [request.id for request in created[:10]] + [sleepers["c"]]
    unknown = str(uuid.uuid4())
    status, message = error_of(api.deployment_requests_batch_delete, PROJECT, DEPLOYMENT, victims + [unknown])
    assert status == 404 and unknown in message, message
    assert len(collect(api, PROJECT, DEPLOYMENT, victims)) == len(victims), "nothing was deleted"

    api.deployment_requests_batch_delete(PROJECT, DEPLOYMENT, victims)
    ledger["deleted"].update(victims)
    assert error_of(api.deployment_requests_batch_get, PROJECT, DEPLOYMENT, victims[:1])[0] == 404
    assert error_of(api.deployment_requests_get, PROJECT, DEPLOYMENT, victims[-1])[0] == 404
    listed = {request.id for request in list_all(api)}
    assert listed.isdisjoint(victims)
    assert created[10].id in listed

    more = [request.id for request in created[10:15]]
    api.deployment_version_requests_batch_delete(PROJECT, DEPLOYMENT, "v1", more)
    ledger["deleted"].update(more)
    assert error_of(api.deployment_version_requests_batch_get, PROJECT, DEPLOYMENT, "v1", more[-1:])[0] == 404
    assert error_of(api.deployment_requests_batch_delete, PROJECT, DEPLOYMENT, [created[20].id, more[0]])[0] == 404
    assert len(collect(api, PROJECT, DEPLOYMENT, [created[20].id])) == 1


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
    listed = list_all(api)
    ids = [request.id for request in listed]
    assert len(ids) == len(set(ids)), "a request is listed twice"
    expected = set(ledger["queued"]) - ledger["deleted"]
    assert set(ids) == expected
    assert list_all(api, status="pending,processing,cancelled_pending") == []
    counts = {status: len(list_all(api, status=status)) for status in sorted(FINISHED_REQUEST)}
    assert sum(counts.values()) == len(expected), counts
    left = {request_id: ledger["queued"][request_id] for request_id in expected}
    assert counts["failed"] == sum(data.startswith("fail") for data in left.values())
    assert counts["cancelled"] == 2  # a and d (c was deleted)
    details = collect(api, PROJECT, DEPLOYMENT, sorted(expected))
    assert {d.status for d in details.values()} <= FINISHED_REQUEST
    for request_id, detail in details.items():
        if detail.status != "cancelled":
            assert_done_as_asked(detail, left[request_id])
