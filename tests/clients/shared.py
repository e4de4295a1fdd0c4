"""What both suites and their fixtures share, importable by name from any
test module (`from shared import ...`); the fixtures are in conftest.py."""

import contextlib
import io
import json
import time
import uuid
import zipfile
from datetime import datetime, timezone

import pytest
from ubiops.exceptions import ApiException

BOOTSTRAP_EMAIL = "conformance@example.com"

GOOD_DEPLOYMENT = '''\
class Deployment:
    def __init__(self, base_directory, context):
        self.greeting = "hello"

    def request(self, data):
        return {"output": f"{self.greeting} {data}"}
'''

BROKEN_DEPLOYMENT = '''\
class Deployment:
    def __init__(self, base_directory, context)
        pass
'''


def make_zip(files):
    """A zip with `files` ({path: text}) in a top-level folder, as the UbiOps template has."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, text in files.items():
            archive.writestr(f"deployment_package/{name}", text)
    return buffer.getvalue()


def poll(read, done, timeout=120, interval=0.25):
    """Calls `read()` until `done(value)` holds; returns the value (fails on timeout)."""
    deadline = time.monotonic() + timeout
    while True:
        value = read()
        if done(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting after {timeout} s; last value: {value}")
        time.sleep(interval)


def record_responses(api_client):
    """Keeps the body of every response `api_client` receives from now on,
    errors included, as text: for checks across all of them. Works for both
    clients (3.13 hands back urllib3 data, 4.x a `requests` response)."""
    bodies = []
    rest = api_client.rest_client
    original = rest.request

    def request(*args, **kwargs):
        try:
            response = original(*args, **kwargs)
        except Exception as error:
            bodies.append(str(getattr(error, "body", None) or ""))
            raise
        data = getattr(response, "data", None)
        bodies.append(data if isinstance(data, str) else data.decode() if isinstance(data, bytes) else response.text)
        return response

    rest.request = request
    return bodies


def without_results(body):
    """A response body with the `result` of a request (or of each request in
    a list) taken out: what the deployment code returned, as it returned it."""
    try:
        value = json.loads(body)
    except ValueError:
        return body
    items = value if isinstance(value, list) else [value]
    for item in items:
        if isinstance(item, dict):
            item.pop("result", None)
    return json.dumps(value)


# The deployment the request suites run (structured: text and times in;
# text, six_version, region, model and token out). It needs `six==1.16.0`
# (the test clients' own environments have 1.17.0), tells its variables,
# prints a marker with the request's id to stdout, stderr and logging, and
# fails on purpose: a negative `times` raises, text `no-token` returns an
# output without a field, text `sleep` sleeps `times` seconds.
REQUESTS_DEPLOYMENT = '''\
import logging
import os
import sys
import time

import six


class Deployment:
    def __init__(self, base_directory, context):
        self.version = context["version"]

    def request(self, data, context):
        text, times = data["text"], data["times"]
        if times < 0:
            raise ValueError(f"times must not be negative, got {times}")
        if text == "sleep":
            time.sleep(times)
        print(f"request-marker {context['id']} {text}")
        print(f"stderr-marker {text}", file=sys.stderr)
        logging.getLogger("calculator").warning("logging-marker %s", text)
        output = {
            "text": six.ensure_text(text).upper() * times,
            "six_version": six.__version__,
            "region": os.environ.get("REGION", "unset"),
            "model": os.environ.get("MODEL_NAME", "unset"),
            "token": os.environ.get("API_TOKEN", "unset"),
        }
        if text == "no-token":
            del output["token"]
        return output
'''
REQUESTS_REQUIREMENTS = "six==1.16.0\n"  # as test_real_builds.py: one cached environment

# A plain deployment: the input reversed.
REVERSING_DEPLOYMENT = '''\
class Deployment:
    def __init__(self, base_directory, context):
        pass

    def request(self, data):
        return data[::-1]
'''


def error_of(call, *args, **kwargs):
    """The status and `error` text of a call that must fail."""
    with pytest.raises(ApiException) as failure:
        call(*args, **kwargs)
    body = json.loads(failure.value.body)
    assert isinstance(body.get("error"), str) and body["error"], body
    return failure.value.status, body["error"]


# --- batch requests (v3/test_batch.py, v4/test_batch.py) ------------------------------

# A plain deployment for the batch suites: the input upper-cased; an input
# `sleep <seconds> ...` sleeps first, `fail ...` raises.
BATCH_DEPLOYMENT = '''\
import time


class Deployment:
    def __init__(self, base_directory, context):
        pass

    def request(self, data):
        words = data.split()
        if words[0] == "sleep":
            time.sleep(float(words[1]))
        if words[0] == "fail":
            raise ValueError(f"asked to fail: {data}")
        return data.upper()
'''
# The batch suites' deployment name (version `v1`, in a project of each suite's own).
BATCH_NAME = "shouter"
# 250 inputs (the most one batch takes), five of them failing on purpose.
BATCH_INPUTS = [f"fail {i}" if i % 50 == 7 else f"item {i}" for i in range(250)]
FINISHED_REQUEST = {"completed", "failed", "cancelled"}
# The first runs long enough to be cancelled while processing; with one
# instance the others wait behind it, pending.
SLEEPERS = ["sleep 20 a", "sleep 0.1 b", "sleep 0.1 c", "sleep 0.1 d", "sleep 0.1 e"]


def upload_and_build(api, project, deployment, version, path, timeout=300):
    """Uploads the zip at `path` with either client and waits for the build:
    the version is `building` from the upload on, `available` once it succeeded."""
    api.revisions_file_upload(project, deployment, version, file=str(path))
    status = poll(
        lambda: api.deployment_versions_get(project, deployment, version).status,
        lambda status: status != "building",
        timeout=timeout,
    )
    assert status == "available", f"{deployment} {version} is {status} after its build"


def collect(api, project, deployment, ids, version=None):
    """The requests `ids` by collect (the deployment's, or the version's),
    250 at a time: {id: detail}, each id answered once."""
    details = {}
    for start in range(0, len(ids), 250):
        chunk = ids[start:start + 250]
        if version is None:
            answer = api.deployment_requests_batch_get(project, deployment, chunk)
        else:
            answer = api.deployment_version_requests_batch_get(project, deployment, version, chunk)
        got = [detail.id for detail in answer]
        assert sorted(got) == sorted(set(chunk)), f"collect answered {got} for {chunk}"
        details.update((detail.id, detail) for detail in answer)
    return details


def collect_until(api, project, deployment, ids, statuses=FINISHED_REQUEST, version=None, timeout=120):
    """Collects `ids` until each one's status is in `statuses`; returns {id: detail}."""
    return poll(
        lambda: collect(api, project, deployment, ids, version),
        lambda details: all(detail.status in statuses for detail in details.values()),
        timeout=timeout,
    )


def assert_done_as_asked(detail, data):
    """A batch request of BATCH_DEPLOYMENT finished as its input `data` asked."""
    assert detail.request_data == data, detail
    if data.startswith("fail"):
        assert (detail.status, detail.success, detail.result) == ("failed", False, None), detail
        assert f"asked to fail: {data}" in detail.error_message, detail
    else:
        assert (detail.status, detail.success, detail.error_message) == ("completed", True, None), detail
        assert detail.result == data.upper(), detail
    assert detail.time_created <= detail.time_started <= detail.time_completed, detail


# The steps and checks both batch suites take alike, on `shouter` v1 in their
# own `project`, with their own client's `api` (a CoreApi). A suite keeps a
# ledger (new_ledger) of every request it queued and every one it deleted,
# for the final check (assert_each_finished_once).

def new_ledger():
    """Every request a suite queued ({id: input}) and the ids it deleted."""
    return {"queued": {}, "deleted": set()}


def remember(ledger, created, inputs):
    """Notes the requests `created` (as the client answered them) for their `inputs`."""
    ledger["queued"].update((request.id, data) for request, data in zip(created, inputs))


def list_batch(api, project, **filters):
    """Every request of `shouter` v1 (at most 1000), as the list answers them."""
    return api.deployment_version_requests_list(project, BATCH_NAME, "v1", limit=1000, **filters)


def create_batch_deployment(ubiops, api, project, zips, deployment_fields=None, version_fields=None):
    """`project` with `shouter` v1 (plain in and out, at most one instance,
    BATCH_DEPLOYMENT), built; `zips` is a folder for its zip. `ubiops` is the
    suite's client module; `deployment_fields` and `version_fields` are what
    that client's models need besides (environment, language...)."""
    api.projects_create(data=ubiops.ProjectCreate(name=project, organization_name="self-hosted"))
    api.deployments_create(project, ubiops.DeploymentCreate(
        name=BATCH_NAME, input_type="plain", output_type="plain", **(deployment_fields or {}),
    ))
    api.deployment_versions_create(project, BATCH_NAME, ubiops.DeploymentVersionCreate(
        version="v1", maximum_instances=1, **(version_fields or {}),
    ))
    path = zips / "shouter.zip"
    path.write_bytes(make_zip({"deployment.py": BATCH_DEPLOYMENT}))
    upload_and_build(api, project, BATCH_NAME, "v1", path)
    return BATCH_NAME


def queue_batch(api, project, ledger):
    """BATCH_INPUTS, queued to the default version in one call: (when, the created requests)."""
    started = datetime.now(timezone.utc)
    created = api.batch_deployment_requests_create(project, BATCH_NAME, BATCH_INPUTS)
    remember(ledger, created, BATCH_INPUTS)
    return started, created


def queue_sleepers(api, project, ledger):
    """SLEEPERS queued to the version, all pending: {letter: id}."""
    created = api.batch_deployment_version_requests_create(project, BATCH_NAME, "v1", SLEEPERS)
    assert [request.status for request in created] == ["pending"] * len(SLEEPERS), created
    remember(ledger, created, SLEEPERS)
    return {data.split()[-1]: request.id for request, data in zip(created, SLEEPERS)}


def assert_queued_in_one_call(started, created):
    """queue_batch's answer: 250 new requests of `shouter` v1, created from `started` on."""
    assert len(created) == 250, len(created)
    ids = [request.id for request in created]
    assert len(set(ids)) == 250, "an id is answered twice"
    for request in created:
        uuid.UUID(request.id)
        assert (request.deployment, request.version) == (BATCH_NAME, "v1"), request
        assert request.status in {"pending", "processing", "completed", "failed"}, request
        assert abs((request.time_created - started).total_seconds()) < 60, request


@contextlib.contextmanager
def nothing_queued(api, project):
    """Checks that what runs inside adds no request to `shouter` v1."""
    before = len(list_batch(api, project))
    yield
    after = len(list_batch(api, project))
    assert after == before, f"{after - before} requests queued by refused calls"


def assert_bad_batches_refused(api, project):
    """251 inputs (to the deployment and to the version), an input that is
    not text and a timeout above 48 hours are refused."""
    status, message = error_of(api.batch_deployment_requests_create, project, BATCH_NAME, BATCH_INPUTS + ["one more"])
    assert status == 400 and "250" in message, message
    status, message = error_of(
        api.batch_deployment_version_requests_create, project, BATCH_NAME, "v1", BATCH_INPUTS + ["one more"]
    )
    assert status == 400 and "250" in message, message
    status, message = error_of(api.batch_deployment_requests_create, project, BATCH_NAME, ["fine", 5, "fine"])
    assert status == 400 and "item 2" in message, message
    assert error_of(api.batch_deployment_requests_create, project, BATCH_NAME, ["x"], timeout=172801)[0] == 400


def assert_collected_as_asked(api, project, created, collected, **fields):
    """`collected` (collect_until of queue_batch's `created`) holds each of the
    250 done as its input asked, each with `fields` (what the client's model
    has, {name: value}), five failed; the version's collect answers the same."""
    assert len(collected) == 250, len(collected)
    for request, data in zip(created, BATCH_INPUTS):
        detail = collected[request.id]
        assert (detail.deployment, detail.version) == (BATCH_NAME, "v1"), detail
        assert {name: getattr(detail, name) for name in fields} == fields, detail
        assert_done_as_asked(detail, data)
    failed = sum(detail.status == "failed" for detail in collected.values())
    assert failed == 5, failed
    ids = [request.id for request in created[:20]]
    through_version = collect(api, project, BATCH_NAME, ids, version="v1")
    assert {i: d.result for i, d in through_version.items()} == {i: collected[i].result for i in ids}, through_version


def assert_collect_all_or_nothing(api, project, created):
    """Collecting known ids with one unknown is a 404 that names it (the
    deployment's collect and the version's); more than 250 ids a 400."""
    known = [request.id for request in created[:3]]
    unknown = str(uuid.uuid4())
    status, message = error_of(api.deployment_requests_batch_get, project, BATCH_NAME, known + [unknown])
    assert status == 404 and unknown in message, message
    status, message = error_of(
        api.deployment_version_requests_batch_get, project, BATCH_NAME, "v1", [unknown] + known
    )
    assert status == 404 and unknown in message, message
    too_many = [request.id for request in created] + [unknown]
    assert error_of(api.deployment_requests_batch_get, project, BATCH_NAME, too_many)[0] == 400


def assert_finished_not_cancellable(api, project, created, sleepers):
    """Once the sleepers b has completed and c was cancelled: a completed
    (created[0]), a failed (created[7]), a completed and a cancelled request
    cannot be cancelled (400, through the deployment or the version), an
    unknown one is a 404, and each keeps its status."""
    completed, failed = created[0].id, created[7].id
    finished = [completed, failed, sleepers["b"], sleepers["c"]]
    for request_id in finished:
        status, message = error_of(
            api.deployment_requests_update, project, BATCH_NAME, request_id, {"status": "cancelled"}
        )
        assert status == 400, message
    assert error_of(
        api.deployment_version_requests_update, project, BATCH_NAME, request_id=completed, version="v1",
        data={"status": "cancelled"},
    )[0] == 400
    assert error_of(
        api.deployment_requests_update, project, BATCH_NAME, str(uuid.uuid4()), {"status": "cancelled"}
    )[0] == 404
    after = collect(api, project, BATCH_NAME, finished)
    statuses = [after[i].status for i in finished]
    assert statuses == ["completed", "failed", "completed", "cancelled"], statuses


def assert_batch_delete_all_or_nothing(api, project, created, sleepers, ledger):
    """Deleting created[:10] and the sleeper c with an unknown id deletes
    nothing (404 naming it); without it they are gone from collect, get and
    the list, as created[10:15] through the version; a delete with one
    deleted id already is refused whole (404). Notes the deleted in `ledger`."""
    victims = [request.id for request in created[:10]] + [sleepers["c"]]
    unknown = str(uuid.uuid4())
    status, message = error_of(api.deployment_requests_batch_delete, project, BATCH_NAME, victims + [unknown])
    assert status == 404 and unknown in message, message
    assert len(collect(api, project, BATCH_NAME, victims)) == len(victims), "nothing was deleted"

    api.deployment_requests_batch_delete(project, BATCH_NAME, victims)
    ledger["deleted"].update(victims)
    assert error_of(api.deployment_requests_batch_get, project, BATCH_NAME, victims[:1])[0] == 404
    assert error_of(api.deployment_requests_get, project, BATCH_NAME, victims[-1])[0] == 404
    listed = {request.id for request in list_batch(api, project)}
    assert listed.isdisjoint(victims), listed & set(victims)
    assert created[10].id in listed

    more = [request.id for request in created[10:15]]
    api.deployment_version_requests_batch_delete(project, BATCH_NAME, "v1", more)
    ledger["deleted"].update(more)
    assert error_of(api.deployment_version_requests_batch_get, project, BATCH_NAME, "v1", more[-1:])[0] == 404
    # Deleted already: the whole call is refused.
    assert error_of(api.deployment_requests_batch_delete, project, BATCH_NAME, [created[20].id, more[0]])[0] == 404
    assert len(collect(api, project, BATCH_NAME, [created[20].id])) == 1


def assert_each_finished_once(api, project, ledger, cancelled):
    """The list holds each request of the ledger once, but the deleted; all
    finished, `cancelled` of them cancelled, the rest failed or completed as
    their inputs asked (by the list's status filter and by collect)."""
    listed = list_batch(api, project)
    ids = [request.id for request in listed]
    assert len(ids) == len(set(ids)), "a request is listed twice"
    expected = set(ledger["queued"]) - ledger["deleted"]
    assert set(ids) == expected, {"unexpected": set(ids) - expected, "missing": expected - set(ids)}
    counts = {status: len(list_batch(api, project, status=status)) for status in sorted(FINISHED_REQUEST)}
    assert sum(counts.values()) == len(expected), counts
    left = {request_id: ledger["queued"][request_id] for request_id in expected}
    assert counts["failed"] == sum(data.startswith("fail") for data in left.values()), counts
    assert counts["cancelled"] == cancelled, counts
    # Each one's details agree with the list.
    details = collect(api, project, BATCH_NAME, sorted(expected))
    assert {d.status for d in details.values()} <= FINISHED_REQUEST, {d.status for d in details.values()}
    for request_id, detail in details.items():
        if detail.status != "cancelled":
            assert_done_as_asked(detail, left[request_id])
