"""Batch requests through `ubiops==3.13.0` (DeploymentRequests.md): 250
inputs queued in one call and run by the version's queue with one instance,
collected (all or nothing), cancelled while pending or processing, deleted
many at once (all or nothing), and at the end every queued request finished
exactly once.

One plain deployment (`shouter`, BATCH_DEPLOYMENT in shared.py) serves the
whole module; the tests run in file order and build on each other.
"""

import time
import uuid
from datetime import datetime, timezone

import pytest
import ubiops

from local_server import stop
from shared import (
    BATCH_DEPLOYMENT, BATCH_INPUTS, FINISHED_REQUEST, assert_done_as_asked, collect, collect_until, error_of,
    make_zip, upload_and_build,
)

PROJECT = "batch-v3"
DEPLOYMENT = "shouter"
# The first runs long enough to be cancelled while processing; with one
# instance the others wait behind it, pending.
SLEEPERS = ["sleep 20 a", "sleep 0.1 b", "sleep 0.1 c", "sleep 0.1 d", "sleep 0.1 e"]


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
    api.projects_create(data=ubiops.ProjectCreate(name=PROJECT, organization_name="self-hosted"))
    api.deployments_create(PROJECT, ubiops.DeploymentCreate(name=DEPLOYMENT, input_type="plain", output_type="plain"))
    api.deployment_versions_create(PROJECT, DEPLOYMENT, ubiops.DeploymentVersionCreate(
        version="v1", language="python3.11", maximum_instances=1,
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
    assert error_of(api.batch_deployment_requests_create, PROJECT, DEPLOYMENT, [])[0] == 400
    assert error_of(api.batch_deployment_requests_create, PROJECT, DEPLOYMENT, ["x"], timeout=172801)[0] == 400
    assert error_of(api.batch_deployment_requests_create, PROJECT, "no-such-deployment", ["x"])[0] == 404
    assert len(list_all(api)) == before


def test_a_single_string_is_one_request_answered_as_a_list(api, deployment, ledger):
    """The spec allows a single string; 3.13 sends it as text/plain only
    without its client-side check (which wants a list)."""
    api.api_client.client_side_validation = False
    try:
        [one] = api.batch_deployment_requests_create(PROJECT, DEPLOYMENT, "just one")
    finally:
        api.api_client.client_side_validation = True
    ledger["queued"][one.id] = "just one"
    done = collect_until(api, PROJECT, DEPLOYMENT, [one.id])
    assert_done_as_asked(done[one.id], "just one")


def test_a_version_batch_keeps_its_timeout_and_notification_group(api, deployment, ledger):
    created = api.batch_deployment_version_requests_create(
        PROJECT, DEPLOYMENT, "v1", ["x", "y"], timeout=600, notification_group="team",
    )
    assert [(r.deployment, r.version) for r in created] == [(DEPLOYMENT, "v1")] * 2
    ledger["queued"].update((request.id, data) for request, data in zip(created, ["x", "y"]))
    stored = api.deployment_requests_get(PROJECT, DEPLOYMENT, created[0].id)
    assert (stored.request_data, stored.notification_group) == ("x", "team")
    done = collect_until(api, PROJECT, DEPLOYMENT, [r.id for r in created], version="v1")
    for request, data in zip(created, ["x", "y"]):
        assert_done_as_asked(done[request.id], data)


# --- collect ------------------------------------------------------------------------

def test_collect_answers_every_result_for_its_input(api, queued, collected):
    _, created = queued
    assert len(collected) == 250
    for request, data in zip(created, BATCH_INPUTS):
        detail = collected[request.id]
        assert (detail.deployment, detail.version, detail.retries) == (DEPLOYMENT, "v1", 0), detail
        assert_done_as_asked(detail, data)
    assert sum(detail.status == "failed" for detail in collected.values()) == 5
    # The version's collect answers the same.
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
    too_many = [request.id for request in created] + [unknown]
    assert error_of(api.deployment_requests_batch_delete, PROJECT, DEPLOYMENT, too_many)[0] == 400

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
    # Deleted already: the whole call is refused.
    assert error_of(api.deployment_requests_batch_delete, PROJECT, DEPLOYMENT, [created[20].id, more[0]])[0] == 404
    assert len(collect(api, PROJECT, DEPLOYMENT, [created[20].id])) == 1


# --- the end ------------------------------------------------------------------------

def test_every_queued_request_finished_exactly_once(api, ledger):
    listed = list_all(api)
    ids = [request.id for request in listed]
    assert len(ids) == len(set(ids)), "a request is listed twice"
    expected = set(ledger["queued"]) - ledger["deleted"]
    assert set(ids) == expected
    by_status = {status: len(list_all(api, status=status)) for status in ["pending", "processing", "cancelled_pending"]}
    assert by_status == {"pending": 0, "processing": 0, "cancelled_pending": 0}
    counts = {status: len(list_all(api, status=status)) for status in sorted(FINISHED_REQUEST)}
    assert sum(counts.values()) == len(expected), counts
    left = {request_id: ledger["queued"][request_id] for request_id in expected}
    assert counts["failed"] == sum(data.startswith("fail") for data in left.values())
    assert counts["cancelled"] == 2  # a and d (c was deleted)
    # Each one's details agree with the list.
    details = collect(api, PROJECT, DEPLOYMENT, sorted(expected))
    assert {d.status for d in details.values()} <= FINISHED_REQUEST
    for request_id, detail in details.items():
        if detail.status != "cancelled":
            assert_done_as_asked(detail, left[request_id])
