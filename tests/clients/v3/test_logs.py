"""3.13 `projects_log_list` on the lines of real builds: one line per build
stage, the outcome with its error message, filtered and windowed as the
documentation (Logs.md) describes."""

import json

import pytest
import ubiops
from ubiops.exceptions import ApiException

from conftest import poll

PROJECT = "logs-v3"
DEPLOYMENT = "logged"
FINISHED = {"success", "failed", "cancelled"}


@pytest.fixture(scope="module")
def api(server):
    config = ubiops.Configuration(host=server.api, api_key={"Authorization": f"Token {server.token}"})
    client = ubiops.ApiClient(config)
    yield ubiops.CoreApi(client)
    client.close()


@pytest.fixture(scope="module")
def builds(api, worker, good_zip, broken_zip):
    """A successful build of v1 and a failed one of v2, with their last lines written."""
    api.projects_create(data=ubiops.ProjectCreate(name=PROJECT, organization_name="self-hosted"))
    api.deployments_create(PROJECT, ubiops.DeploymentCreate(name=DEPLOYMENT, input_type="plain", output_type="plain"))
    ids = {}
    for version, zip_path in [("v1", good_zip), ("v2", broken_zip)]:
        api.deployment_versions_create(
            PROJECT, DEPLOYMENT, ubiops.DeploymentVersionCreate(version=version, language="python3.8")
        )
        upload = api.revisions_file_upload(PROJECT, DEPLOYMENT, version, file=str(zip_path))
        poll(lambda: api.builds_get(PROJECT, upload.build, DEPLOYMENT, version), lambda b: b.status in FINISHED)
        ids[version] = upload.build
    # The outcome line follows the published outcome closely.
    poll(
        lambda: api.projects_log_list(PROJECT, data=ubiops.LogsCreate(limit=500)),
        lambda lines: sum(line.log.startswith(("Build succeeded", "Build failed")) for line in lines) == 2,
        timeout=30,
    )
    return ids


def test_lines_of_a_version_tell_the_build_stages(api, builds):
    lines = api.projects_log_list(
        PROJECT, data=ubiops.LogsCreate(filters={"deployment_name": DEPLOYMENT, "deployment_version": "v1"})
    )
    texts = [line.log for line in lines]
    assert texts[0].startswith("Build queued: Deployment file upload of revision "), texts
    assert texts[1].startswith("Build picked up by worker"), texts
    assert "Validating: importing deployment.py in its environment" in texts
    assert texts[-1].startswith("Build succeeded: revision "), texts
    assert all(line.build_id == builds["v1"] for line in lines)
    assert all((line.deployment_name, line.deployment_version) == (DEPLOYMENT, "v1") for line in lines)
    assert all(line.system is True and line.level == "info" for line in lines)
    assert all(len(line.id) == 24 for line in lines)
    assert [line.date for line in lines] == sorted(line.date for line in lines)
    assert all(line.deployment_request_id is None and line.pipeline_name is None for line in lines)


def test_the_failed_build_ends_with_its_error(api, builds):
    [failure] = api.projects_log_list(PROJECT, data=ubiops.LogsCreate(filters={"level": "error"}))
    assert (failure.build_id, failure.deployment_version, failure.level) == (builds["v2"], "v2", "error")
    assert failure.log.startswith("Build failed: ")
    assert "deployment.py line 2" in failure.log
    by_build = api.projects_log_list(PROJECT, data=ubiops.LogsCreate(filters={"build_id": builds["v2"]}))
    assert by_build[-1].log == failure.log
    assert api.projects_log_list(PROJECT, data=ubiops.LogsCreate(filters={"system": False})) == []
    assert api.projects_log_list(PROJECT, data=ubiops.LogsCreate(filters={"pipeline_name": "p"})) == []


def test_id_date_and_date_range_windows(api, builds):
    filters = {"build_id": builds["v1"]}
    lines = api.projects_log_list(PROJECT, data=ubiops.LogsCreate(filters=filters))
    third = lines[2]
    forward = api.projects_log_list(PROJECT, data=ubiops.LogsCreate(filters=filters, id=third.id, date_range=86400))
    assert [line.id for line in forward] == [line.id for line in lines[2:]]
    backward = api.projects_log_list(PROJECT, data=ubiops.LogsCreate(filters=filters, id=third.id, date_range=-100))
    assert [line.id for line in backward] == [line.id for line in lines[:3]]
    limited = api.projects_log_list(PROJECT, data=ubiops.LogsCreate(filters=filters, date=third.date, date_range=60, limit=2))
    assert [line.id for line in limited] == [line.id for line in lines[2:4]]
    old = api.projects_log_list(PROJECT, data=ubiops.LogsCreate(date="2020-01-01T00:00:00.000000Z", date_range=86400))
    assert old == []
    # Without `data` (no body at all): the last six hours of the project.
    assert len(api.projects_log_list(PROJECT)) == len(api.projects_log_list(PROJECT, data=ubiops.LogsCreate()))


@pytest.mark.parametrize(
    "data, expected",
    [
        (ubiops.LogsCreate(limit=501), "Invalid `limit` 501"),
        (ubiops.LogsCreate(date_range=-86401), "Invalid `date_range` -86401"),
        (ubiops.LogsCreate(filters={"deployment_version": "v1"}), "needs `filters.deployment_name`"),
        (ubiops.LogsCreate(filters={"colour": "red"}), "Unknown filter `colour`"),
        (ubiops.LogsCreate(date="yesterday"), "Invalid `date` 'yesterday'"),
    ],
)
def test_bad_requests_are_400_with_a_reason(api, builds, data, expected):
    with pytest.raises(ApiException) as failure:
        api.projects_log_list(PROJECT, data=data)
    assert failure.value.status == 400
    assert expected in json.loads(failure.value.body)["error"]

