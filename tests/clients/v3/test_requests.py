"""Direct requests through `ubiops==3.13.0`: the uploaded code runs with its
requirement and its variables, the request is stored as the version's
retention says, read, listed, filtered and deleted, its output becomes log
lines of the request, and input, output and failures of the code follow the
deployment's fields (DeploymentRequests.md, README "Requests and instances").

One structured deployment (`calculator`, REQUESTS_DEPLOYMENT in shared.py)
serves the whole module; the tests run in file order and build on each other.
"""

import time
import uuid
from datetime import datetime, timezone

import pytest
import ubiops

from conftest import poll
from shared import (
    REQUESTS_DEPLOYMENT, REQUESTS_REQUIREMENTS, REVERSING_DEPLOYMENT, error_of, make_zip, without_results,
)

PROJECT = "requests-v3"
DEPLOYMENT = "calculator"
PLAIN = "reverser"
FINISHED = {"success", "failed", "cancelled"}
# Unique per run, so that finding it anywhere means it leaked from this run.
SECRET = f"secret-{uuid.uuid4().hex}"
EXPECTED = {"text": "ABABAB", "six_version": "1.16.0", "region": "eu-west", "model": "resnet-50", "token": SECRET}


@pytest.fixture(scope="module")
def api(recording_client):
    return recording_client[0]


def build(api, tmp_path_factory, deployment, version, files=None, **copy):
    """Uploads `files` (or copies another version's package) and waits for the build's success."""
    if files is not None:
        path = tmp_path_factory.mktemp("zips") / f"{deployment}-{version}.zip"
        path.write_bytes(make_zip(files))
        upload = api.revisions_file_upload(PROJECT, deployment, version, file=str(path))
    else:
        upload = api.revisions_file_upload(PROJECT, deployment, version, **copy)
    finished = poll(
        lambda: api.builds_get(PROJECT, upload.build, deployment, version),
        lambda b: b.status in FINISHED,
        timeout=300,
    )
    assert (finished.status, finished.error_message) == ("success", None)


def field(name, data_type):
    return ubiops.DeploymentInputFieldCreate(name=name, data_type=data_type)


@pytest.fixture(scope="module")
def deployment(api, worker, tmp_path_factory):
    """`calculator` v1 (retention full, the default) and v2 (retention metadata),
    with variables at the three scopes, one of them secret; and `reverser`
    (plain input and output)."""
    api.projects_create(data=ubiops.ProjectCreate(name=PROJECT, organization_name="self-hosted"))
    api.deployments_create(PROJECT, ubiops.DeploymentCreate(
        name=DEPLOYMENT,
        input_type="structured",
        output_type="structured",
        input_fields=[field("text", "string"), field("times", "int")],
        output_fields=[
            ubiops.DeploymentOutputFieldCreate(name=name, data_type="string")
            for name in ["text", "six_version", "region", "model", "token"]
        ],
    ))
    for version, retention in [("v1", "full"), ("v2", "metadata")]:
        api.deployment_versions_create(PROJECT, DEPLOYMENT, ubiops.DeploymentVersionCreate(
            version=version, language="python3.11", request_retention_mode=retention, maximum_instances=2,
        ))
    variable = ubiops.EnvironmentVariableCreate
    api.project_environment_variables_create(PROJECT, variable(name="REGION", value="eu-west", secret=False))
    created = api.deployment_environment_variables_create(
        PROJECT, DEPLOYMENT, variable(name="API_TOKEN", value=SECRET, secret=True)
    )
    assert (created.name, created.value, created.secret) == ("API_TOKEN", None, True)
    for version in ["v1", "v2"]:
        api.deployment_version_environment_variables_create(
            PROJECT, DEPLOYMENT, version, variable(name="MODEL_NAME", value="resnet-50", secret=False)
        )
    build(api, tmp_path_factory, DEPLOYMENT, "v1", {
        "deployment.py": REQUESTS_DEPLOYMENT, "requirements.txt": REQUESTS_REQUIREMENTS,
    })
    build(api, tmp_path_factory, DEPLOYMENT, "v2", source_deployment=DEPLOYMENT, source_version="v1")

    api.deployments_create(PROJECT, ubiops.DeploymentCreate(name=PLAIN, input_type="plain", output_type="plain"))
    api.deployment_versions_create(PROJECT, PLAIN, ubiops.DeploymentVersionCreate(version="v1", language="python3.11"))
    build(api, tmp_path_factory, PLAIN, "v1", {
        "deployment.py": REVERSING_DEPLOYMENT, "requirements.txt": REQUESTS_REQUIREMENTS,
    })
    assert api.deployments_get(PROJECT, DEPLOYMENT).default_version == "v1"
    return DEPLOYMENT


@pytest.fixture(scope="module")
def made(api, deployment):
    """The first request of the module, to the default version (v1)."""
    started = datetime.now(timezone.utc)
    response = api.deployment_requests_create(PROJECT, DEPLOYMENT, {"text": "ab", "times": 3})
    return started, response


# --- running the code ----------------------------------------------------------

def test_the_code_runs_with_its_requirement_and_variables(api, made):
    _, response = made
    uuid.UUID(response.id)
    assert (response.deployment, response.version, response.success, response.error_message) == (
        DEPLOYMENT, "v1", True, None,
    )
    # six 1.16.0 is the requirement's (the clients' environments have 1.17.0);
    # REGION is the project's, MODEL_NAME the version's, API_TOKEN the
    # deployment's secret, opened.
    assert response.result == EXPECTED


def test_a_version_request_goes_to_that_version_and_timeout_is_accepted(api, deployment):
    response = api.deployment_version_requests_create(
        PROJECT, DEPLOYMENT, "v2", {"text": "xy", "times": 1}, timeout=60
    )
    assert (response.version, response.success) == ("v2", True)
    assert response.result == {**EXPECTED, "text": "XY"}


def test_plain_input_is_sent_as_a_string(api, deployment):
    """The client sends a plain string as `text/plain` (its raw text), a list as JSON."""
    many = api.deployment_requests_create(PROJECT, PLAIN, ["abc", "de"])
    assert (many.success, many.result) == (True, ["cba", "ed"])
    one = api.deployment_requests_create(PROJECT, PLAIN, "hello world")
    assert (one.success, one.result) == (True, "dlrow olleh")


# --- input, output and failures -----------------------------------------------------

@pytest.mark.parametrize(
    "data, expected",
    [
        ({"text": "a", "times": "3"}, "times"),
        ({"text": "a", "times": 2.5}, "times"),
        ({"text": "a"}, "input field 'times' is missing"),
        ({"text": "a", "times": 1, "colour": "red"}, "unknown input field 'colour'"),
        ("just text", "structured"),
    ],
)
def test_input_that_does_not_match_the_fields_is_400_naming_the_field(api, deployment, data, expected):
    before = len(api.deployment_requests_list(PROJECT, DEPLOYMENT, limit=1000))
    status, message = error_of(api.deployment_requests_create, PROJECT, DEPLOYMENT, data)
    assert status == 400 and expected in message, message
    # Never reached the code, so nothing was stored.
    assert len(api.deployment_requests_list(PROJECT, DEPLOYMENT, limit=1000)) == before


def test_an_exception_of_the_code_is_an_answer_with_its_text(api, deployment):
    response = api.deployment_requests_create(PROJECT, DEPLOYMENT, {"text": "a", "times": -1})
    assert (response.success, response.result) == (False, None)
    assert "ValueError: times must not be negative, got -1" in response.error_message, response.error_message
    stored = api.deployment_requests_get(PROJECT, DEPLOYMENT, response.id)
    assert (stored.status, stored.success, stored.result) == ("failed", False, None)
    assert stored.error_message == response.error_message
    assert stored.request_data == {"text": "a", "times": -1}


def test_an_output_that_does_not_match_the_fields_fails_the_request(api, deployment):
    response = api.deployment_requests_create(PROJECT, DEPLOYMENT, {"text": "no-token", "times": 1})
    assert (response.success, response.result) == (False, None)
    assert "output field 'token' is missing" in response.error_message, response.error_message


def test_a_request_that_overruns_its_timeout_fails_and_the_next_one_is_served(api, deployment):
    started = time.monotonic()
    response = api.deployment_requests_create(PROJECT, DEPLOYMENT, {"text": "sleep", "times": 30}, timeout=2)
    assert time.monotonic() - started < 15
    assert response.success is False
    assert "did not finish within its timeout of 2 s" in response.error_message, response.error_message
    again = api.deployment_requests_create(PROJECT, DEPLOYMENT, {"text": "ok", "times": 1})
    assert (again.success, again.result["text"]) == (True, "OK")


def test_requests_to_what_cannot_serve_them_are_errors(api, deployment):
    status, message = error_of(api.deployment_requests_create, PROJECT, "no-such-deployment", {"text": "a"})
    assert status == 404 and "no-such-deployment" in message
    api.deployment_versions_create(PROJECT, DEPLOYMENT, ubiops.DeploymentVersionCreate(version="empty"))
    status, message = error_of(
        api.deployment_version_requests_create, PROJECT, DEPLOYMENT, "empty", {"text": "a", "times": 1}
    )
    assert status == 400 and "not available" in message, message
    status, message = error_of(
        api.deployment_requests_create, PROJECT, DEPLOYMENT, {"text": "a", "times": 1}, timeout=3601
    )
    assert status == 400 and "timeout" in message


# --- the stored request -------------------------------------------------------------

def test_the_stored_request_has_its_data_and_result(api, made):
    started, response = made
    stored = api.deployment_requests_get(PROJECT, DEPLOYMENT, response.id)
    assert (stored.id, stored.deployment, stored.version) == (response.id, DEPLOYMENT, "v1")
    assert (stored.status, stored.success, stored.error_message) == ("completed", True, None)
    assert stored.request_data == {"text": "ab", "times": 3}
    assert stored.result == EXPECTED
    assert (stored.retries, stored.notification_group) == (0, None)
    assert stored.origin == {"deployment": DEPLOYMENT, "deployment_version": "v1"}
    assert abs((stored.time_created - started).total_seconds()) < 60
    assert stored.time_created <= stored.time_started <= stored.time_completed

    # The same through the version.
    through_version = api.deployment_version_requests_get(PROJECT, DEPLOYMENT, request_id=response.id, version="v1")
    assert (through_version.id, through_version.result) == (response.id, EXPECTED)


def test_metadata_only_leaves_out_data_and_result(api, made):
    _, response = made
    for stored in [
        api.deployment_requests_get(PROJECT, DEPLOYMENT, response.id, metadata_only=True),
        api.deployment_version_requests_get(
            PROJECT, DEPLOYMENT, request_id=response.id, version="v1", metadata_only=True
        ),
    ]:
        assert (stored.id, stored.status, stored.success) == (response.id, "completed", True)
        assert (stored.request_data, stored.result) == (None, None)


def test_a_version_with_retention_metadata_keeps_no_data(api, deployment):
    response = api.deployment_version_requests_create(PROJECT, DEPLOYMENT, "v2", {"text": "kept", "times": 1})
    assert response.result["text"] == "KEPT"  # the caller still gets the result
    stored = api.deployment_version_requests_get(PROJECT, DEPLOYMENT, request_id=response.id, version="v2")
    assert (stored.status, stored.success, stored.version) == ("completed", True, "v2")
    assert (stored.request_data, stored.result) == (None, None)
    # v2 is not the default: the deployment's endpoints do not see its requests.
    assert error_of(api.deployment_requests_get, PROJECT, DEPLOYMENT, response.id)[0] == 404
    assert response.id in [r.id for r in api.deployment_version_requests_list(PROJECT, DEPLOYMENT, "v2")]


def test_lists_filter_sort_and_page(api, made):
    _, first = made
    newest = api.deployment_requests_create(PROJECT, DEPLOYMENT, {"text": "newest", "times": 1})

    everything = api.deployment_requests_list(PROJECT, DEPLOYMENT, limit=1000)
    ids = [r.id for r in everything]
    assert ids[0] == newest.id and first.id in ids  # newest first
    times = [r.time_created for r in everything]
    assert times == sorted(times, reverse=True)
    assert all((r.deployment, r.version) == (DEPLOYMENT, "v1") for r in everything)

    [latest] = api.deployment_requests_list(PROJECT, DEPLOYMENT, status="completed", limit=1)
    assert (latest.id, latest.status, latest.success) == (newest.id, "completed", True)
    [oldest] = api.deployment_requests_list(PROJECT, DEPLOYMENT, status="completed", limit=1, sort="asc")
    assert oldest.id == first.id  # the module's first request
    assert [r.id for r in api.deployment_requests_list(PROJECT, DEPLOYMENT, limit=2, offset=1)] == ids[1:3]

    completed = api.deployment_requests_list(PROJECT, DEPLOYMENT, status="completed", limit=1000)
    failed = api.deployment_requests_list(PROJECT, DEPLOYMENT, status="failed", limit=1000)
    assert first.id in [r.id for r in completed] and first.id not in [r.id for r in failed]
    assert failed and all((r.status, r.success) == ("failed", False) for r in failed)
    assert all(r.status == "completed" for r in completed)
    assert len(completed) + len(failed) == len(everything)
    assert [r.id for r in api.deployment_requests_list(PROJECT, DEPLOYMENT, success=False, limit=1000)] == [
        r.id for r in failed
    ]
    assert [r.id for r in api.deployment_requests_list(PROJECT, DEPLOYMENT, search_id=first.id[:13])] == [first.id]
    today = datetime.now(timezone.utc).date().isoformat()
    assert first.id in [
        r.id for r in api.deployment_requests_list(PROJECT, DEPLOYMENT, start_date=today, end_date=today, limit=1000)
    ]
    assert api.deployment_requests_list(PROJECT, DEPLOYMENT, end_date="2020-01-01") == []
    assert error_of(api.deployment_requests_list, PROJECT, DEPLOYMENT, status="done")[0] == 400

    # The project's list: every deployment's requests.
    project = api.project_requests_list(PROJECT, object_type="deployment", limit=1000)
    listed = {r.id: (r.deployment, r.version) for r in project}
    assert listed[first.id] == (DEPLOYMENT, "v1") and listed[newest.id] == (DEPLOYMENT, "v1")
    assert any(deployment == PLAIN for deployment, _ in listed.values())
    assert any(version == "v2" for _, version in listed.values())
    [only] = api.project_requests_list(PROJECT, object_type="deployment", search_id=first.id)
    assert (only.id, only.status) == (first.id, "completed")
    assert api.project_requests_list(PROJECT, object_type="pipeline") == []


# --- the code's output as log lines --------------------------------------------------

def test_the_codes_output_becomes_log_lines_of_the_request(api, made):
    _, response = made
    lines = poll(
        lambda: api.projects_log_list(
            PROJECT, data=ubiops.LogsCreate(filters={"deployment_request_id": response.id}, limit=500)
        ),
        lambda lines: any(line.log.startswith("logging-marker") for line in lines),
        timeout=10,
    )
    by_text = {line.log: line for line in lines}
    marker = by_text.get(f"request-marker {response.id} ab")
    assert marker is not None, [line.log for line in lines]
    assert (marker.deployment_request_id, marker.deployment_name, marker.deployment_version) == (
        response.id, DEPLOYMENT, "v1",
    )
    assert (marker.system, marker.level, marker.build_id) == (False, "info", None)
    assert by_text["stderr-marker ab"].level == "error"
    assert all(line.deployment_request_id == response.id for line in lines)
    # Another request's lines are not among them, and are found by their own id.
    assert not any("newest" in line.log for line in lines)
    other = api.deployment_requests_list(PROJECT, DEPLOYMENT, limit=1)[0]
    other_lines = poll(
        lambda: api.projects_log_list(PROJECT, data=ubiops.LogsCreate(filters={"deployment_request_id": other.id})),
        lambda lines: any(line.log.startswith("request-marker") for line in lines),
        timeout=10,
    )
    assert f"request-marker {other.id} newest" in [line.log for line in other_lines]
    # With the deployment and version, and the user's (not system) lines only.
    filtered = api.projects_log_list(PROJECT, data=ubiops.LogsCreate(filters={
        "deployment_name": DEPLOYMENT, "deployment_version": "v1", "system": False, "level": "info",
    }, limit=500))
    assert f"request-marker {response.id} ab" in [line.log for line in filtered]
    assert all(line.system is False and line.level == "info" for line in filtered)


# --- deletion and the secret ----------------------------------------------------------

def test_delete_removes_the_request(api, made):
    _, response = made
    assert api.deployment_requests_delete(PROJECT, DEPLOYMENT, response.id) is None
    status, message = error_of(api.deployment_requests_get, PROJECT, DEPLOYMENT, response.id)
    assert status == 404
    assert error_of(
        api.deployment_version_requests_get, PROJECT, DEPLOYMENT, request_id=response.id, version="v1"
    )[0] == 404
    assert response.id not in [r.id for r in api.deployment_requests_list(PROJECT, DEPLOYMENT, limit=1000)]
    assert response.id not in [r.id for r in api.project_requests_list(PROJECT, object_type="deployment", limit=1000)]
    assert error_of(api.deployment_requests_delete, PROJECT, DEPLOYMENT, response.id)[0] == 404

    # The version's endpoint deletes too.
    other = api.deployment_version_requests_create(PROJECT, DEPLOYMENT, "v1", {"text": "gone", "times": 1})
    assert api.deployment_version_requests_delete(PROJECT, DEPLOYMENT, request_id=other.id, version="v1") is None
    assert error_of(api.deployment_requests_get, PROJECT, DEPLOYMENT, other.id)[0] == 404


def test_the_secret_is_in_no_response_but_the_codes_result(api, responses, deployment):
    # Read everything that could carry it once more.
    api.deployment_environment_variables_list(PROJECT, DEPLOYMENT)
    listed = api.deployment_version_environment_variables_list(PROJECT, DEPLOYMENT, "v1")
    assert {v.name: v.value for v in listed}["API_TOKEN"] is None
    api.deployment_audit_events_list(PROJECT, DEPLOYMENT)
    api.projects_log_list(PROJECT, data=ubiops.LogsCreate(limit=500))
    api.project_requests_list(PROJECT, object_type="deployment", limit=1000)
    for request in api.deployment_requests_list(PROJECT, DEPLOYMENT, limit=1000):
        api.deployment_requests_get(PROJECT, DEPLOYMENT, request.id)

    assert len(responses) > 50
    carrying = [body for body in responses if SECRET in body]
    assert carrying, "the code's results should have carried the secret"
    leaks = [body for body in responses if SECRET in without_results(body)]
    assert leaks == []
