"""Direct requests through the newest 4.x client and `ubiops-cli`: the
uploaded code runs with its requirement and its variables, the answer carries
`status`, the request is stored, read, listed and deleted, its output becomes
log lines of the request (`logs_list`), and input, output and failures of the
code follow the deployment's fields.

One structured deployment (`calculator`, REQUESTS_DEPLOYMENT in shared.py)
serves the whole module; the tests run in file order and build on each other.
"""

import json
import time
import uuid

import pytest
import ubiops
from ubiops.exceptions import ApiException

from shared import (
    REQUESTS_DEPLOYMENT, REQUESTS_REQUIREMENTS, REVERSING_DEPLOYMENT, error_of, make_zip, poll,
    without_results,
)

PROJECT = "requests-v4"
DEPLOYMENT = "calculator"
PLAIN = "reverser"
SECRET = f"secret-{uuid.uuid4().hex}"
EXPECTED = {"text": "ABABAB", "six_version": "1.16.0", "region": "eu-west", "model": "resnet-50", "token": SECRET}
LOGS_START = "2020-01-01T00:00:00.000+00:00"
# 4.x marks `success`, `request_data` and `result` deprecated (its users still read them).
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture(scope="module", autouse=True)
def builds_run(worker):
    """Every test here expects uploads to be built."""


@pytest.fixture(scope="module")
def api(recording_client):
    return recording_client[0]


def deploy(api, tmp_path_factory, deployment, version, files):
    path = tmp_path_factory.mktemp("zips") / f"{deployment}-{version}.zip"
    path.write_bytes(make_zip(files))
    upload = api.revisions_file_upload(PROJECT, deployment, version, file=str(path))
    ubiops.utils.wait_for_revision(
        client=api.api_client, project_name=PROJECT, deployment_name=deployment, version=version,
        revision_id=upload.revision, timeout=300, quiet=True,
    )
    revision = api.revisions_get(
        project_name=PROJECT, deployment_name=deployment, version=version, revision_id=upload.revision
    )
    assert (revision.status, revision.error_message) == ("success", None)


@pytest.fixture(scope="module")
def deployment(api, tmp_path_factory):
    """`calculator` v1 with variables at the three scopes (one secret), and
    `reverser` (plain input and output)."""
    api.projects_create(data=ubiops.ProjectCreate(name=PROJECT, organization_name="self-hosted"))
    api.deployments_create(PROJECT, ubiops.DeploymentCreate(
        name=DEPLOYMENT,
        supports_request_format=True,
        input_type="structured",
        output_type="structured",
        input_fields=[
            ubiops.DeploymentInputFieldCreate(name="text", data_type="string"),
            ubiops.DeploymentInputFieldCreate(name="times", data_type="int"),
        ],
        output_fields=[
            ubiops.DeploymentOutputFieldCreate(name=name, data_type="string")
            for name in ["text", "six_version", "region", "model", "token"]
        ],
    ))
    api.deployment_versions_create(PROJECT, DEPLOYMENT, ubiops.DeploymentVersionCreate(
        version="v1", environment="python3-11", instance_type_group_name="512mb", maximum_instances=2,
    ))
    variable = ubiops.EnvironmentVariableCreate
    api.project_environment_variables_create(PROJECT, variable(name="REGION", value="eu-west", secret=False))
    created = api.deployment_environment_variables_create(
        PROJECT, DEPLOYMENT, variable(name="API_TOKEN", value=SECRET, secret=True)
    )
    assert (created.name, created.value, created.secret) == ("API_TOKEN", None, True)
    api.deployment_version_environment_variables_create(
        PROJECT, DEPLOYMENT, "v1", variable(name="MODEL_NAME", value="resnet-50", secret=False)
    )
    deploy(api, tmp_path_factory, DEPLOYMENT, "v1", {
        "deployment.py": REQUESTS_DEPLOYMENT, "requirements.txt": REQUESTS_REQUIREMENTS,
    })

    api.deployments_create(PROJECT, ubiops.DeploymentCreate(
        name=PLAIN, supports_request_format=True, input_type="plain", output_type="plain",
    ))
    api.deployment_versions_create(
        PROJECT, PLAIN, ubiops.DeploymentVersionCreate(version="v1", environment="python3-11")
    )
    deploy(api, tmp_path_factory, PLAIN, "v1", {
        "deployment.py": REVERSING_DEPLOYMENT, "requirements.txt": REQUESTS_REQUIREMENTS,
    })
    return DEPLOYMENT


@pytest.fixture(scope="module")
def made(api, deployment):
    """The first request of the module, to the default version."""
    return api.deployment_requests_create(PROJECT, DEPLOYMENT, {"text": "ab", "times": 3})


def log_lines(api, request_id, done, timeout=10):
    """The lines of one request, polled until `done(lines)` (they are written asynchronously)."""
    query = f"| deployment_request_id=`{request_id}`"
    return poll(
        lambda: api.logs_list(PROJECT, query=query, start=LOGS_START, end=str(time.time_ns()), limit=1000),
        done,
        timeout=timeout,
    )


# --- running the code ----------------------------------------------------------

def test_the_answer_has_status_and_what_the_code_computed(api, made):
    uuid.UUID(made.id)
    assert (made.deployment, made.version, made.status, made.success) == (DEPLOYMENT, "v1", "completed", True)
    assert (made.error_message, made.timeout) == (None, 300)
    # six 1.16.0 is the requirement's (this environment has 1.17.0); REGION
    # is the project's, MODEL_NAME the version's, API_TOKEN the deployment's
    # secret, opened.
    assert made.result == EXPECTED


def test_a_version_request_with_a_timeout(api, deployment):
    response = api.deployment_version_requests_create(
        PROJECT, DEPLOYMENT, "v1", {"text": "xy", "times": 1}, timeout=60
    )
    assert (response.version, response.status, response.timeout) == ("v1", "completed", 60)
    assert response.result == {**EXPECTED, "text": "XY"}


def test_plain_input_is_sent_as_a_string(api, deployment):
    """4.x sends a plain string as `text/plain` (its raw text), a list as JSON."""
    many = api.deployment_requests_create(PROJECT, PLAIN, ["abc", "de"])
    assert (many.status, many.result) == ("completed", ["cba", "ed"])
    one = api.deployment_requests_create(PROJECT, PLAIN, "hello world")
    assert (one.status, one.result) == ("completed", "dlrow olleh")


@pytest.mark.parametrize(
    "data, expected",
    [
        ({"text": "a", "times": "3"}, "input field 'times'"),
        ({"text": "a"}, "input field 'times' is missing"),
        ({"text": "a", "timez": 1}, "unknown input field 'timez'"),
    ],
)
def test_input_that_does_not_match_the_fields_is_400_naming_the_field(api, deployment, data, expected):
    status, message = error_of(api.deployment_requests_create, PROJECT, DEPLOYMENT, data)
    assert status == 400 and expected in message, message


def test_an_exception_of_the_code_is_a_failed_answer_with_its_text(api, deployment):
    response = api.deployment_requests_create(PROJECT, DEPLOYMENT, {"text": "a", "times": -2})
    assert (response.status, response.success, response.result) == ("failed", False, None)
    assert "ValueError: times must not be negative, got -2" in response.error_message, response.error_message
    stored = api.deployment_requests_get(PROJECT, DEPLOYMENT, response.id)
    assert (stored.status, stored.success, stored.error_message) == ("failed", False, response.error_message)
    invalid = api.deployment_requests_create(PROJECT, DEPLOYMENT, {"text": "no-token", "times": 1})
    assert invalid.status == "failed" and "output field 'token' is missing" in invalid.error_message


def test_a_request_that_overruns_its_timeout_fails(api, deployment):
    response = api.deployment_requests_create(PROJECT, DEPLOYMENT, {"text": "sleep", "times": 30}, timeout=2)
    assert (response.status, response.timeout) == ("failed", 2)
    assert "did not finish within its timeout of 2 s" in response.error_message, response.error_message
    assert api.deployment_requests_create(PROJECT, DEPLOYMENT, {"text": "ok", "times": 1}).status == "completed"


# --- the stored request -------------------------------------------------------------

def test_the_stored_request_and_metadata_only(api, made):
    stored = api.deployment_requests_get(PROJECT, DEPLOYMENT, made.id)
    assert (stored.id, stored.deployment, stored.version) == (made.id, DEPLOYMENT, "v1")
    assert (stored.status, stored.success, stored.error_message, stored.timeout) == ("completed", True, None, 300)
    assert (stored.request_data, stored.result) == ({"text": "ab", "times": 3}, EXPECTED)
    assert stored.input_size == len(json.dumps(stored.request_data, separators=(",", ":")))
    assert stored.output_size == len(json.dumps(stored.result, separators=(",", ":")))
    assert stored.origin == {"deployment": DEPLOYMENT, "deployment_version": "v1"}
    assert stored.time_created <= stored.time_started <= stored.time_completed

    bare = api.deployment_requests_get(PROJECT, DEPLOYMENT, made.id, metadata_only=True)
    assert (bare.id, bare.status, bare.success) == (made.id, "completed", True)
    assert (bare.request_data, bare.result) == (None, None)
    through_version = api.deployment_version_requests_get(PROJECT, DEPLOYMENT, request_id=made.id, version="v1")
    assert through_version.result == EXPECTED


def test_lists_filter_and_page(api, made):
    newest = api.deployment_requests_create(PROJECT, DEPLOYMENT, {"text": "newest", "times": 1})
    everything = api.deployment_requests_list(PROJECT, DEPLOYMENT, status="completed,failed", limit=1000)
    ids = [r.id for r in everything]
    assert ids[0] == newest.id and made.id in ids
    [latest] = api.deployment_requests_list(PROJECT, DEPLOYMENT, status="completed", limit=1)
    assert (latest.id, latest.status, latest.success) == (newest.id, "completed", True)
    assert [r.id for r in api.deployment_requests_list(PROJECT, DEPLOYMENT, limit=2, offset=1)] == ids[1:3]
    failed = api.deployment_requests_list(PROJECT, DEPLOYMENT, status="failed")
    assert failed and made.id not in [r.id for r in failed]
    assert all((r.status, r.success) == ("failed", False) for r in failed)
    [found] = api.deployment_requests_list(PROJECT, DEPLOYMENT, search_id=made.id[-12:])
    assert (found.id, found.input_size) == (made.id, 23)
    assert made.id in [r.id for r in api.deployment_version_requests_list(PROJECT, DEPLOYMENT, "v1", limit=1000)]

    project = {r.id: r for r in api.project_requests_list(PROJECT, object_type="deployment", limit=1000)}
    assert (project[made.id].deployment, project[made.id].version) == (DEPLOYMENT, "v1")
    assert newest.id in project and any(r.deployment == PLAIN for r in project.values())


# --- the code's output as log lines --------------------------------------------------

def test_logs_list_returns_the_codes_lines_for_the_request(api, made):
    logs = log_lines(api, made.id, lambda logs: any(log.log.startswith("logging-marker") for log in logs))
    by_text = {log.log: log for log in logs}
    marker = by_text.get(f"request-marker {made.id} ab")
    assert marker is not None, list(by_text)
    metadata = marker.metadata
    assert (metadata.deployment_request_id, metadata.deployment_name, metadata.deployment_version) == (
        made.id, DEPLOYMENT, "v1",
    )
    assert (metadata.system, metadata.level) == (False, "info")
    assert by_text["stderr-marker ab"].metadata.level == "error"
    assert all(log.metadata.deployment_request_id == made.id for log in logs)
    assert not any("newest" in log.log for log in logs)
    # Text search within the deployment's lines.
    found = api.logs_list(
        PROJECT, query=f'|= "request-marker {made.id}" | deployment_name=`{DEPLOYMENT}`',
        start=LOGS_START, end=str(time.time_ns()),
    )
    assert [log.log for log in found] == [f"request-marker {made.id} ab"]


def test_delete_removes_the_request(api, made):
    assert api.deployment_requests_delete(PROJECT, DEPLOYMENT, made.id) is None
    with pytest.raises(ApiException) as failure:
        api.deployment_requests_get(PROJECT, DEPLOYMENT, made.id)
    assert failure.value.status == 404
    assert made.id not in [r.id for r in api.deployment_requests_list(PROJECT, DEPLOYMENT, limit=1000)]
    other = api.deployment_version_requests_create(PROJECT, DEPLOYMENT, "v1", {"text": "gone", "times": 1})
    assert api.deployment_version_requests_delete(PROJECT, DEPLOYMENT, request_id=other.id, version="v1") is None
    assert error_of(
        api.deployment_version_requests_get, PROJECT, DEPLOYMENT, request_id=other.id, version="v1"
    )[0] == 404


def test_the_secret_is_in_no_response_but_the_codes_result(api, responses, deployment):
    listed = api.deployment_version_environment_variables_list(PROJECT, DEPLOYMENT, "v1")
    assert {v.name: v.value for v in listed}["API_TOKEN"] is None
    api.deployment_environment_variables_list(PROJECT, DEPLOYMENT)
    api.project_audit_events_list(PROJECT)
    api.logs_list(PROJECT, query=f"| deployment_name=`{DEPLOYMENT}`", start=LOGS_START, end=str(time.time_ns()))
    for request in api.deployment_requests_list(PROJECT, DEPLOYMENT, limit=1000):
        api.deployment_requests_get(PROJECT, DEPLOYMENT, request.id)

    assert len(responses) > 30
    assert [body for body in responses if SECRET in body], "the code's results should have carried the secret"
    assert [body for body in responses if SECRET in without_results(body)] == []


# --- ubiops-cli ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def signed_in(cli, server, deployment):
    cli("signin", "--token", "--api", server.api, "--password", f"Token {server.token}")
    cli("current_project", "set", PROJECT)
    return cli


def test_cli_requests_create_shows_the_result(signed_in, api):
    cli = signed_in
    output = cli("deployments", "requests", "create", DEPLOYMENT, "--data", '{"text": "cli", "times": 2}',
                 "--format", "json")
    # The CLI sends all its --data items of a structured deployment as one
    # request with a list, so the result is the list of their outputs.
    [answer] = json.loads(output)
    [result] = answer["result"]
    assert (answer["status"], result["text"], result["six_version"]) == ("completed", "CLICLI", "1.16.0"), output
    stored = api.deployment_requests_get(PROJECT, DEPLOYMENT, answer["id"])
    assert stored.request_data == [{"text": "cli", "times": 2}]

    plain = cli("deployments", "requests", "create", PLAIN, "-v", "v1", "--data", "abc", "--format", "oneline")
    assert "completed" in plain and '"cba"' in plain, plain


def test_cli_requests_list(signed_in, api):
    cli = signed_in
    listed = cli.json("deployments", "requests", "list", DEPLOYMENT)
    newest = api.deployment_requests_list(PROJECT, DEPLOYMENT, limit=1)[0]
    assert listed[0]["id"] == newest.id
    assert {entry["status"] for entry in listed} <= {"completed", "failed"}
    assert {entry["id"] for entry in listed} == {r.id for r in api.deployment_requests_list(PROJECT, DEPLOYMENT)}
