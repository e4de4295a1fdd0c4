"""The newest `ubiops` 4.x and `ubiops-cli` against the server, for the flows
their users run: sign in with a token, pick a project, create a deployment,
deploy a zip into a version with an environment and an instance type group,
wait for it, manage environment variables, download the file.

The README's "Using the official clients" examples are these same calls.
"""

import zipfile

import pytest
import ubiops
from ubiops.utils.exceptions import StatusError

from shared import BOOTSTRAP_EMAIL

PROJECT = "newer-clients"


@pytest.fixture(scope="module", autouse=True)
def builds_run(worker):
    """Every test here expects uploads to be built."""


# --- ubiops 4.x ----------------------------------------------------------------

def test_status_user_and_projects(core):
    assert core.service_status().status == "ok"
    user = core.user_get()
    assert (user.email, user.authentication) == (BOOTSTRAP_EMAIL, "token")
    project = core.projects_create(data=ubiops.ProjectCreate(name=PROJECT, organization_name="self-hosted"))
    assert (project.name, project.organization_name) == (PROJECT, "self-hosted")
    listed = {p.name: p.organization_name for p in core.projects_list()}
    assert listed[PROJECT] == "self-hosted"


def test_system_environments_and_instance_type_groups(core):
    environments = {e.name: e for e in core.environments_list(PROJECT)}
    assert {"python3-7", "python3-11", "python3-11-cuda", "r4-0"} <= set(environments)
    assert all(e.system for e in environments.values())
    environment = core.environments_get(PROJECT, "python3-11")
    assert (environment.name, environment.description, environment.system) == ("python3-11", "Python 3.11", True)
    [tag] = core.environment_tags_list(PROJECT, "python3-11")
    assert (tag.environment, tag.status) == ("python3-11", "success")

    groups = {g.name: g for g in core.instance_type_groups_list(PROJECT).results}
    assert {"256mb", "2048mb", "16384mb", "16384mb_t4"} <= set(groups)
    assert groups["512mb"].instance_types[0].memory == 512


def test_deploy_and_wait_with_the_4x_vocabulary(core, good_zip):
    deployment = core.deployments_create(
        PROJECT,
        ubiops.DeploymentCreate(
            name="python-sdk", supports_request_format=True, input_type="plain", output_type="plain"
        ),
    )
    assert (deployment.name, deployment.supports_request_format) == ("python-sdk", True)

    group_id = next(g.id for g in core.instance_type_groups_list(PROJECT).results if g.name == "512mb")
    version = core.deployment_versions_create(
        PROJECT,
        "python-sdk",
        ubiops.DeploymentVersionCreate(
            version="v1", environment="python3-11", instance_type_group_name="512mb", maximum_instances=1
        ),
    )
    assert (version.environment_name, version.instance_type_group_name, version.instance_type) == (
        "python3-11", "512mb", "512mb",
    )
    assert (version.instance_type_group_id, version.latest_revision, version.status) == (group_id, None, "unavailable")

    upload = core.revisions_file_upload(PROJECT, "python-sdk", "v1", file=str(good_zip))
    ubiops.utils.wait_for_revision(
        client=core.api_client, project_name=PROJECT, deployment_name="python-sdk", version="v1",
        revision_id=upload.revision, timeout=120, quiet=True,
    )
    revision = core.revisions_get(PROJECT, "python-sdk", upload.revision, "v1")
    assert (revision.status, revision.error_message, revision.created_by) == ("success", None, BOOTSTRAP_EMAIL)

    # The whole version: environment (a system one: nothing to wait for), then its latest revision.
    ubiops.utils.wait_for_deployment_version(
        client=core.api_client, project_name=PROJECT, deployment_name="python-sdk", version="v1",
        timeout=120, quiet=True,
    )
    version = core.deployment_versions_get(PROJECT, "python-sdk", "v1")
    assert (version.status, version.active_revision, version.latest_revision) == (
        "available", upload.revision, upload.revision,
    )
    assert version.has_request_method is True and version.last_updated is not None

    # A rebuild, read by 4.x as a revision; the wait then follows latest_revision.
    rebuild = core.revisions_rebuild(PROJECT, "python-sdk", upload.revision, "v1", data={})
    assert (rebuild.version, rebuild.created_by) == ("v1", BOOTSTRAP_EMAIL)
    ubiops.utils.wait_for_deployment_version(
        client=core.api_client, project_name=PROJECT, deployment_name="python-sdk", version="v1",
        timeout=120, quiet=True,
    )
    # 4.x has no builds: each revision carries its newest build's outcome.
    [only] = core.revisions_list(PROJECT, "python-sdk", "v1")
    assert (only.id, only.status) == (upload.revision, "success")


def test_a_broken_zip_fails_the_wait_with_its_error_message(core, broken_zip):
    core.deployment_versions_create(
        PROJECT, "python-sdk", ubiops.DeploymentVersionCreate(version="broken", environment="python3-10")
    )
    upload = core.revisions_file_upload(PROJECT, "python-sdk", "broken", file=str(broken_zip))
    with pytest.raises(StatusError) as failure:
        ubiops.utils.wait_for_revision(
            client=core.api_client, project_name=PROJECT, deployment_name="python-sdk", version="broken",
            revision_id=upload.revision, timeout=120, quiet=True,
        )
    assert "Deployment revision: failed: " in str(failure.value)
    assert "deployment.py line 2" in str(failure.value)
    with pytest.raises(StatusError):
        ubiops.utils.wait_for_deployment_version(
            client=core.api_client, project_name=PROJECT, deployment_name="python-sdk", version="broken",
            timeout=120, quiet=True,
        )


# --- ubiops-cli ----------------------------------------------------------------------

def test_cli_signin_status_and_projects(cli, server):
    assert "Unauthorized" in cli("status")
    output = cli("signin", "--token", "--api", server.api, "--password", f"Token {server.token}")
    assert "Welcome to UbiOps!" in output
    # Sign-in selects the first project by name (earlier modules made others).
    first = sorted(p["name"] for p in cli.json("projects", "list"))[0]
    assert f"Selected project: {first}" in output
    cli("current_project", "set", PROJECT)
    status = cli("status")
    assert "Authorized" in status and f"email: {BOOTSTRAP_EMAIL}" in status
    assert f"api: {server.api}" in status and f"project: {PROJECT}" in status
    projects = {p["name"]: p for p in cli.json("projects", "list")}
    assert {"name": PROJECT, "organization_name": "self-hosted"}.items() <= projects[PROJECT].items()


def test_cli_create_deploy_wait_download(cli, good_package_dir, tmp_path):
    spec = tmp_path / "deployment.yaml"
    spec.write_text(
        "deployment_name: cli-deployment\n"
        "deployment_description: Made by the CLI\n"
        "deployment_labels:\n  team: cli\n"
        "deployment_supports_request_format: true\n"
        "input_type: plain\n"
        "output_type: plain\n"
    )
    created = cli.json("deployments", "create", "--yaml_file", str(spec))
    assert (created["name"], created["description"], created["labels"]) == (
        "cli-deployment", "Made by the CLI", {"team": "cli"},
    )

    output = cli(
        "deployments", "deploy", "cli-deployment", "--version_name", "v1",
        "--directory", str(good_package_dir), "--environment", "python3-10",
        "--instance_type_group_name", "1024mb", "--maximum_instances", "2", "--assume_yes",
    )
    assert "Deployment was successfully deployed" in output

    [revision] = cli.json("revisions", "list", "--deployment_name", "cli-deployment", "--version_name", "v1")
    assert "Deployment revision: success" in cli(
        "revisions", "wait", revision["id"], "--deployment_name", "cli-deployment", "--version_name", "v1",
        "--timeout", "120",
    )
    waited = cli("versions", "wait", "v1", "--deployment_name", "cli-deployment", "--timeout", "120")
    assert "Environment: success" in waited and "Deployment version: available" in waited

    version = cli.json("versions", "get", "v1", "--deployment_name", "cli-deployment")
    assert (version["environment_name"], version["instance_type_group_name"], version["maximum_instances"]) == (
        "python3-10", "1024mb", 2,
    )
    assert (version["status"], version["active_revision"]) == ("available", revision["id"])

    archive = tmp_path / "downloaded.zip"
    assert "Archive stored in" in cli(
        "deployments", "download", "cli-deployment", "--version_name", "v1", "--output_path", str(archive)
    )
    with zipfile.ZipFile(archive) as downloaded:
        names = downloaded.namelist()
    assert any(name.endswith("deployment.py") for name in names), names


def test_cli_environment_variables(cli):
    created = cli.json("environment_variables", "create", "MODEL_NAME", "--value", "resnet", "-d", "cli-deployment")
    assert (created["name"], created["value"], created["secret"]) == ("MODEL_NAME", "resnet", False)
    secret = cli.json(
        "environment_variables", "create", "TOKEN", "--value", "hunter2", "--secret",
        "-d", "cli-deployment", "-v", "v1",
    )
    assert (secret["value"], secret["secret"]) == (None, True)

    listed = {v["name"]: v for v in cli.json("environment_variables", "list", "-d", "cli-deployment", "-v", "v1")}
    assert listed["MODEL_NAME"]["inheritance_type"] == "deployment"
    assert listed["MODEL_NAME"]["inheritance_name"] == "cli-deployment"
    assert (listed["TOKEN"]["value"], listed["TOKEN"]["inheritance_type"]) == (None, None)

    cli("environment_variables", "update", created["id"], "--value", "efficientnet", "-d", "cli-deployment")
    got = cli.json("environment_variables", "get", created["id"], "-d", "cli-deployment")
    assert (got["name"], got["value"]) == ("MODEL_NAME", "efficientnet")

    cli("environment_variables", "delete", created["id"], "-d", "cli-deployment", "--assume_yes")
    remaining = cli.json("environment_variables", "list", "-d", "cli-deployment")
    assert "MODEL_NAME" not in {v["name"] for v in remaining}
