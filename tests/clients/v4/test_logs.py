"""Logs through the newest client and the CLI: `logs_list`, the waits with
`stream_logs=True` (they print each build line once and end with the build's
status), and `ubiops logs`.

Each streaming wait keeps polling for about 20 s after the build finished (the
client's design), so there are only three of them.
"""

import json
import time

import pytest
import ubiops
from ubiops.exceptions import ApiException
from ubiops.utils.exceptions import StatusError

PROJECT = "logs-v4"
DEPLOYMENT = "logged"


@pytest.fixture(scope="module", autouse=True)
def builds_run(worker):
    """Every test here expects uploads to be built."""


@pytest.fixture(scope="module")
def project(core):
    core.projects_create(data=ubiops.ProjectCreate(name=PROJECT, organization_name="self-hosted"))
    core.deployments_create(
        PROJECT,
        ubiops.DeploymentCreate(name=DEPLOYMENT, supports_request_format=True, input_type="plain", output_type="plain"),
    )
    for version in ["v1", "broken"]:
        core.deployment_versions_create(
            PROJECT, DEPLOYMENT, ubiops.DeploymentVersionCreate(version=version, environment="python3-11")
        )
    return PROJECT


@pytest.fixture(scope="module")
def signed_in(cli, server, project):
    cli("signin", "--token", "--api", server.api, "--password", f"Token {server.token}")
    cli("current_project", "set", PROJECT)
    return cli


def stage_lines(output):
    """The build lines among what a wait printed (status lines and dots aside)."""
    return [line for line in output.splitlines() if line.startswith("Build")]


def test_wait_for_revision_streams_each_stage_line_once(core, project, good_zip, capsys):
    upload = core.revisions_file_upload(PROJECT, DEPLOYMENT, "v1", file=str(good_zip))
    ubiops.utils.wait_for_revision(
        client=core.api_client, project_name=PROJECT, deployment_name=DEPLOYMENT, version="v1",
        revision_id=upload.revision, timeout=120, stream_logs=True,
    )
    output = capsys.readouterr().out
    lines = stage_lines(output)
    assert lines[0] == f"Build queued: Deployment file upload of revision {upload.revision}", output
    assert lines[1].startswith("Build picked up by worker"), output
    assert lines[2] == "Building: fetching and extracting the deployment package", output
    assert lines[-1] == f"Build succeeded: revision {upload.revision} is now the active revision of version v1"
    assert len(lines) == len(set(lines)), f"a line was printed twice:\n{output}"
    assert "Validating: importing deployment.py in its environment" in output
    assert output.rstrip().endswith("Deployment revision: success"), output


def test_logs_list_filters_pages_and_refuses_bad_queries(core, project):
    revision = core.deployment_versions_get(PROJECT, DEPLOYMENT, "v1").latest_revision
    query = (
        f"| deployment_name=`{DEPLOYMENT}` and deployment_version=`v1`"
        f" and deployment_version_revision_id=`{revision}`"
    )
    start = "2020-01-01T00:00:00.000+00:00"
    logs = core.logs_list(PROJECT, query=query, start=start, end=str(time.time_ns()), limit=1000)
    assert logs[-1].log.startswith("Build succeeded"), [log.log for log in logs]
    timestamps = [log.timestamp for log in logs]
    assert timestamps == sorted(set(timestamps))
    for log in logs:
        assert isinstance(log.timestamp, int) and log.timestamp_str.endswith("Z")
        metadata = log.metadata
        assert (metadata.deployment_name, metadata.deployment_version) == (DEPLOYMENT, "v1")
        assert (metadata.deployment_version_revision_id, metadata.system, metadata.level) == (revision, True, "info")
        assert metadata.pipeline_name is None and metadata.deployment_request_id is None

    # Paging as the wait does: start = last timestamp + 1.
    paged, start_ns = [], logs[0].timestamp
    while page := core.logs_list(PROJECT, query=query, start=start_ns, end=time.time_ns(), limit=3):
        paged.extend(page)
        start_ns = page[-1].timestamp + 1
    assert [log.log for log in paged] == [log.log for log in logs]

    # Backward (start after end): the newest line.
    [newest] = core.logs_list(PROJECT, query=query, start=time.time_ns(), end=logs[0].timestamp, limit=1)
    assert newest.log == logs[-1].log
    succeeded = core.logs_list(PROJECT, query='|= "succeeded"', start=start, end=time.time_ns())
    assert [log.log for log in succeeded] == [logs[-1].log]

    for bad, expected in [
        ('| colour="red"', "unknown label `colour`"),
        ('| deployment_name=~"log.*"', "regular expressions"),
        ('| deployment_name="logged" or deployment_name="other"', "`or` is not supported"),
    ]:
        with pytest.raises(ApiException) as failure:
            core.logs_list(PROJECT, query=bad)
        assert failure.value.status == 400
        assert expected in json.loads(failure.value.body)["error"]


def test_cli_versions_wait_streams_logs_and_reports_success(signed_in, core, good_zip):
    cli = signed_in
    upload = core.revisions_file_upload(PROJECT, DEPLOYMENT, "v1", file=str(good_zip))
    output = cli("versions", "wait", "v1", "--deployment_name", DEPLOYMENT, "--stream_logs")
    assert "Status: success" in output, output
    assert "Error message" not in output, output
    lines = stage_lines(output)
    assert lines[0] == f"Build queued: Deployment file upload of revision {upload.revision}", output
    assert lines[-1].startswith(f"Build succeeded: revision {upload.revision}"), output
    assert "Deployment version: available" in output, output

    # `ubiops logs`: the same lines, newest last.
    listed = cli(
        "logs", "--query", f'| deployment_name="{DEPLOYMENT}" | deployment_version="v1"',
        "--start", str(time.time_ns()), "--end", "2020-01-01T00:00:00Z", "--limit", "5", "--no_pager",
    )
    assert f"Build succeeded: revision {upload.revision}" in listed.splitlines()[-1], listed
    as_json = cli.json("logs", "--query", '| level="info"', "--limit", "2")
    assert [entry["metadata"]["level"] for entry in as_json] == ["info", "info"]
    refused = cli("logs", "--query", '| colour="red"', expect_failure=True)
    assert "unknown label `colour`" in refused, refused


def test_cli_versions_wait_reports_a_failed_build_with_its_error(signed_in, core, broken_zip):
    cli = signed_in
    upload = core.revisions_file_upload(PROJECT, DEPLOYMENT, "broken", file=str(broken_zip))
    output = cli("versions", "wait", "broken", "--deployment_name", DEPLOYMENT, "--stream_logs")
    assert "Status: failed" in output, output
    assert "Error message: Deployment revision: failed: deployment_package/deployment.py line 2: " in output, output
    lines = stage_lines(output)
    assert lines[0] == f"Build queued: Deployment file upload of revision {upload.revision}", output
    assert lines[-1].startswith("Build failed: deployment_package/deployment.py line 2: "), output
    with pytest.raises(StatusError):
        ubiops.utils.wait_for_revision(
            client=core.api_client, project_name=PROJECT, deployment_name=DEPLOYMENT, version="broken",
            revision_id=upload.revision, timeout=60, quiet=True,
        )
