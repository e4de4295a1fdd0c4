"""Batch requests through `ubiops==3.13.0` (DeploymentRequests.md): 250
inputs queued in one call and run by the version's queue with one instance,
collected (all or nothing), cancelled while pending or processing, deleted
many at once (all or nothing), and at the end every queued request finished
exactly once.

One plain deployment (`shouter`, BATCH_DEPLOYMENT in shared.py) serves the
whole module; the tests run in file order and build on each other. What the
4.x suite checks alike is in shared.py; here is what 3.13 does its own way
(a single string as text/plain, notification_group, model-typed answers).
"""

import time
import uuid

import pytest
import ubiops

from local_server import stop
from shared import (
    BATCH_NAME as DEPLOYMENT, assert_batch_delete_all_or_nothing, assert_bad_batches_refused,
    assert_collect_all_or_nothing, assert_collected_as_asked, assert_done_as_asked, assert_each_finished_once,
    assert_finished_not_cancellable, assert_queued_in_one_call, collect, collect_until, create_batch_deployment,
    error_of, list_batch, new_ledger, nothing_queued, queue_batch, queue_sleepers, remember,
)

PROJECT = "batch-v3"


@pytest.fixture(scope="module")
def api(recording_client):
    return recording_client[0]


@pytest.fixture(scope="module")
def ledger():
    return new_ledger()


@pytest.fixture(scope="module")
def module_worker(server):
    """A build worker of this module's own, stopped at its end: this module
    runs before test_deployments_api.py, whose queued build must find no
    worker yet (see the session's `worker` fixture)."""
    process = server.spawn("worker", UBIOPS_BUILD_WORKERS="1")
    yield process
    stop(process)


@pytest.fixture(scope="module")
def deployment(api, module_worker, tmp_path_factory):
    """`shouter` v1 (plain, at most one instance), built."""
    return create_batch_deployment(
        ubiops, api, PROJECT, tmp_path_factory.mktemp("zips"), version_fields={"language": "python3.11"},
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


# --- create -------------------------------------------------------------------------

def test_250_inputs_are_queued_in_one_call(queued):
    assert_queued_in_one_call(*queued)


def test_251_inputs_or_one_bad_input_are_refused_and_nothing_is_queued(api, queued):
    with nothing_queued(api, PROJECT):
        assert_bad_batches_refused(api, PROJECT)
        assert error_of(api.batch_deployment_requests_create, PROJECT, DEPLOYMENT, [])[0] == 400
        assert error_of(api.batch_deployment_requests_create, PROJECT, "no-such-deployment", ["x"])[0] == 404


def test_a_single_string_is_one_request_answered_as_a_list(api, deployment, ledger):
    """The spec allows a single string; 3.13 sends it as text/plain only
    without its client-side check (which wants a list)."""
    api.api_client.client_side_validation = False
    try:
        [one] = api.batch_deployment_requests_create(PROJECT, DEPLOYMENT, "just one")
    finally:
        api.api_client.client_side_validation = True
    remember(ledger, [one], ["just one"])
    done = collect_until(api, PROJECT, DEPLOYMENT, [one.id])
    assert_done_as_asked(done[one.id], "just one")


def test_a_version_batch_keeps_its_timeout_and_notification_group(api, deployment, ledger):
    created = api.batch_deployment_version_requests_create(
        PROJECT, DEPLOYMENT, "v1", ["x", "y"], timeout=600, notification_group="team",
    )
    assert [(r.deployment, r.version) for r in created] == [(DEPLOYMENT, "v1")] * 2
    remember(ledger, created, ["x", "y"])
    stored = api.deployment_requests_get(PROJECT, DEPLOYMENT, created[0].id)
    assert (stored.request_data, stored.notification_group) == ("x", "team")
    done = collect_until(api, PROJECT, DEPLOYMENT, [r.id for r in created], version="v1")
    for request, data in zip(created, ["x", "y"]):
        assert_done_as_asked(done[request.id], data)


# --- collect ------------------------------------------------------------------------

def test_collect_answers_every_result_for_its_input(api, queued, collected):
    assert_collected_as_asked(api, PROJECT, queued[1], collected, retries=0)


def test_collect_is_all_or_nothing(api, queued):
    assert_collect_all_or_nothing(api, PROJECT, queued[1])
    assert api.deployment_requests_batch_get(PROJECT, DEPLOYMENT, []) == []


# --- cancel -------------------------------------------------------------------------

def test_pending_requests_are_cancelled_at_once(api, sleepers):
    answer = api.deployment_requests_update(PROJECT, DEPLOYMENT, sleepers["c"], {"status": "cancelled"})
    assert (answer.id, answer.status, answer.result) == (sleepers["c"], "cancelled", None), answer
    answer = api.deployment_version_requests_update(
        PROJECT, DEPLOYMENT, request_id=sleepers["d"], version="v1", data=ubiops.DeploymentRequestUpdate(status="cancelled"),
    )
    assert (answer.id, answer.status, answer.version) == (sleepers["d"], "cancelled", "v1"), answer
    details = collect(api, PROJECT, DEPLOYMENT, [sleepers["c"], sleepers["d"]])
    assert {d.status for d in details.values()} == {"cancelled"}
    assert all(d.result is None and d.success is not True for d in details.values())


def test_a_processing_request_is_cancelled_and_the_queue_goes_on(api, sleepers):
    collect_until(api, PROJECT, DEPLOYMENT, [sleepers["a"]], statuses={"processing"}, timeout=60)
    started = time.monotonic()
    answer = api.deployment_requests_update(PROJECT, DEPLOYMENT, sleepers["a"], {"status": "cancelled"})
    assert answer.status in {"cancelled_pending", "cancelled"}, answer
    details = collect_until(api, PROJECT, DEPLOYMENT, [sleepers["a"]], statuses={"cancelled"}, timeout=60)
    assert details[sleepers["a"]].result is None
    # Stopped at once (the cancel notifies its worker), not left to sleep its
    # 20 s nor to wait for the next lease renewal (a third of 30 s).
    assert time.monotonic() - started < 5
    rest = collect_until(api, PROJECT, DEPLOYMENT, [sleepers["b"], sleepers["e"]], timeout=60)
    assert_done_as_asked(rest[sleepers["b"]], "sleep 0.1 b")
    assert_done_as_asked(rest[sleepers["e"]], "sleep 0.1 e")


def test_a_finished_request_cannot_be_cancelled(api, queued, sleepers):
    assert_finished_not_cancellable(api, PROJECT, queued[1], sleepers)


# --- delete -------------------------------------------------------------------------

def test_batch_delete_is_all_or_nothing(api, queued, sleepers, ledger):
    _, created = queued
    too_many = [request.id for request in created] + [str(uuid.uuid4())]
    assert error_of(api.deployment_requests_batch_delete, PROJECT, DEPLOYMENT, too_many)[0] == 400
    assert_batch_delete_all_or_nothing(api, PROJECT, created, sleepers, ledger)


# --- the end ------------------------------------------------------------------------

def test_every_queued_request_finished_exactly_once(api, ledger):
    unfinished = ["pending", "processing", "cancelled_pending"]
    by_status = {status: len(list_batch(api, PROJECT, status=status)) for status in unfinished}
    assert by_status == {"pending": 0, "processing": 0, "cancelled_pending": 0}
    assert_each_finished_once(api, PROJECT, ledger, cancelled=2)  # a and d (c was deleted)
