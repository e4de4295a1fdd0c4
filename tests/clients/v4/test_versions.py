"""Versions as `ubiops` 4.x and `ubiops-cli` send and read them: every field of
4.x's DeploymentVersionCreate, `environment_tag`, the `default` flag, changing
a version's environment (which rebuilds it), and the CLI's version YAML: its
own help example and the YAML `versions get -o` writes, back through
`versions create -f`.
"""

import re
import textwrap

import pytest
import ubiops
import yaml
from ubiops.exceptions import ApiException
from ubiops_cli.src.deployment_versions import versions_create

PROJECT = "versions-4x"
DEPLOYMENT = "settings"


@pytest.fixture(scope="module", autouse=True)
def builds_run(worker):
    """The environment change tests wait for real builds."""


@pytest.fixture(scope="module", autouse=True)
def project(core):
    core.projects_create(data=ubiops.ProjectCreate(name=PROJECT, organization_name="self-hosted"))
    core.deployments_create(
        PROJECT,
        ubiops.DeploymentCreate(name=DEPLOYMENT, supports_request_format=True, input_type="plain", output_type="plain"),
    )


@pytest.fixture(scope="module")
def signed_in(cli, server):
    """The CLI (`cli` of conftest.py, which starts without a configuration) signed in, in this project."""
    cli("signin", "--token", "--api", server.api, "--password", f"Token {server.token}")
    cli("current_project", "set", PROJECT)
    return cli


def wait_for_version(core, version):
    ubiops.utils.wait_for_deployment_version(
        client=core.api_client, project_name=PROJECT, deployment_name=DEPLOYMENT, version=version,
        timeout=120, quiet=True,
    )


# --- ubiops 4.x --------------------------------------------------------------------

EVERY_FIELD = dict(
    environment="python3-11",
    environment_tag="latest",
    instance_type_group_name="1024mb",
    maximum_instances=3,
    minimum_instances=1,
    maximum_idle_time=60,
    description="every 4.x field",
    labels={"team": "ml"},
    request_retention_time=3600,
    request_retention_mode="metadata",
    maximum_queue_size=250,
    restart_request_interruption=True,
    scaling_strategy="accelerated",
    instance_processes=2,
    command=["python", "serve.py"],
    args=["--port", "8080"],
)


def test_create_with_every_field_and_read_it_back(core):
    created = core.deployment_versions_create(
        PROJECT,
        DEPLOYMENT,
        ubiops.DeploymentVersionCreate(
            version="every-field",
            ports=[ubiops.DeploymentVersionPort(public_port=2222, deployment_port=22, protocol="tcp")],
            health_check=ubiops.HealthCheck(port=8080, path="/status", timeout=3, interval=5, failure_threshold=3),
            **EVERY_FIELD,
        ),
    )
    got = core.deployment_versions_get(PROJECT, DEPLOYMENT, "every-field")
    [listed] = [v for v in core.deployment_versions_list(PROJECT, DEPLOYMENT) if v.version == "every-field"]
    for read in (created, got, listed):
        for field, value in EVERY_FIELD.items():
            if field == "environment":
                assert read.environment_name == value
            elif hasattr(read, field):  # the list model shows fewer fields than the detail
                assert getattr(read, field) == value, field
        assert read.instance_type == "1024mb"
        assert [(p.public_port, p.deployment_port, p.protocol) for p in read.ports] == [(2222, 22, "tcp")]
    for read in (created, got):
        check = read.health_check
        assert (check.port, check.path, check.timeout, check.interval, check.failure_threshold) == (
            8080, "/status", 3, 5, 3,
        )


def test_environment_tag_latest_is_accepted_and_others_refused(core):
    version = core.deployment_versions_create(
        PROJECT, DEPLOYMENT, ubiops.DeploymentVersionCreate(version="tagged", environment="python3-10",
                                                            environment_tag="latest"),
    )
    assert (version.environment_name, version.environment_tag) == ("python3-10", "latest")
    [tag] = core.environment_tags_list(PROJECT, "python3-10")
    assert tag.name == version.environment_tag
    with pytest.raises(ApiException) as refused:
        core.deployment_versions_create(
            PROJECT, DEPLOYMENT, ubiops.DeploymentVersionCreate(version="untagged", environment="python3-10",
                                                                environment_tag="v1"),
        )
    assert refused.value.status == 400
    assert "Unknown environment_tag 'v1' for environment 'python3-10': use one of latest" in refused.value.body


def test_default_is_true_only_for_the_deployments_default_version(core):
    core.deployments_create(
        PROJECT,
        ubiops.DeploymentCreate(name="defaults", supports_request_format=True, input_type="plain", output_type="plain"),
    )
    first = core.deployment_versions_create(PROJECT, "defaults", ubiops.DeploymentVersionCreate(version="first"))
    second = core.deployment_versions_create(PROJECT, "defaults", ubiops.DeploymentVersionCreate(version="second"))
    assert (first.default, second.default) == (True, False)
    assert core.deployment_versions_get(PROJECT, "defaults", "first").default is True
    assert core.deployment_versions_get(PROJECT, "defaults", "second").default is False
    flags = {v.version: v.default for v in core.deployment_versions_list(PROJECT, "defaults")}
    assert flags == {"first": True, "second": False}
    assert core.deployments_get(PROJECT, "defaults").default_version == "first"


def test_changing_the_environment_rebuilds_and_the_wait_succeeds(core, good_zip):
    core.deployment_versions_create(
        PROJECT, DEPLOYMENT, ubiops.DeploymentVersionCreate(version="moving", environment="python3-10")
    )
    upload = core.revisions_file_upload(PROJECT, DEPLOYMENT, "moving", file=str(good_zip))
    wait_for_version(core, "moving")
    before = core.deployment_versions_get(PROJECT, DEPLOYMENT, "moving")
    assert (before.status, before.active_revision) == ("available", upload.revision)

    updated = core.deployment_versions_update(
        PROJECT, DEPLOYMENT, "moving", ubiops.DeploymentVersionUpdate(environment="python3-11")
    )
    assert (updated.environment_name, updated.status) == ("python3-11", "building")
    wait_for_version(core, "moving")
    after = core.deployment_versions_get(PROJECT, DEPLOYMENT, "moving")
    assert (after.status, after.environment_name, after.active_revision) == (
        "available", "python3-11", upload.revision,
    )
    [revision] = core.revisions_list(PROJECT, DEPLOYMENT, "moving")
    assert (revision.id, revision.status) == (upload.revision, "success")


# --- ubiops-cli ----------------------------------------------------------------------

def help_example():
    """The YAML example of `ubiops versions create --help`, as the installed CLI has it."""
    [example] = re.findall(r"```\n(.*?)```", versions_create.callback.__doc__, re.S)
    return yaml.safe_load(textwrap.dedent(example))


# The three values of the help example that name the hosted service's
# resources, and this server's counterparts.
THIS_SERVER = {
    "environment_name": "python3-11",
    "environment_tag": "latest",
    "instance_type_group_name": "2048mb",
}


def test_cli_create_from_the_help_example_yaml(signed_in, tmp_path):
    cli = signed_in
    example = help_example()
    assert {"scaling_strategy", "instance_processes", "maximum_queue_size", "health_check"} <= set(example)

    verbatim = tmp_path / "verbatim.yaml"
    verbatim.write_text(yaml.safe_dump({**example, "deployment_name": DEPLOYMENT}))
    refused = cli("versions", "create", "-f", str(verbatim), expect_failure=True)
    # Refused for naming an environment this server does not have, not for any field.
    assert "Unknown environment_name 'ubiops-ubuntu24-04-python3-13'" in refused, refused
    assert "unknown field" not in refused

    ours = {**example, **THIS_SERVER, "deployment_name": DEPLOYMENT, "version_name": "from-help"}
    path = tmp_path / "example.yaml"
    path.write_text(yaml.safe_dump(ours))
    created = cli.json("versions", "create", "-f", str(path))
    got = cli.json("versions", "get", "from-help", "--deployment_name", DEPLOYMENT)
    # The JSON output has the API's names (the YAML renames four of them) and
    # leaves nested objects out: the health check is read from the YAML.
    renamed = {"deployment_name": "deployment", "version_name": "version", "version_description": "description",
               "version_labels": "labels"}
    for read in (created, got):
        for key, value in ours.items():
            if key != "health_check":
                assert read[renamed.get(key, key)] == value, key
    written = tmp_path / "written.yaml"
    signed_in("versions", "get", "from-help", "--deployment_name", DEPLOYMENT, "-o", str(written))
    assert yaml.safe_load(written.read_text())["health_check"] == ours["health_check"]


def test_cli_get_yaml_goes_back_through_create_unchanged(signed_in, tmp_path):
    cli = signed_in
    first = tmp_path / "first.yaml"
    cli("versions", "get", "every-field", "--deployment_name", DEPLOYMENT, "-o", str(first))
    written = yaml.safe_load(first.read_text())
    assert written["scaling_strategy"] == "accelerated" and written["instance_processes"] == 2
    assert written["maximum_queue_size"] == 250 and written["environment_tag"] == "latest"
    assert written["health_check"] == {"port": 8080, "path": "/status", "interval": 5, "timeout": 3,
                                       "failure_threshold": 3}

    cli("versions", "create", "copied", "-f", str(first))
    second = tmp_path / "second.yaml"
    cli("versions", "get", "copied", "--deployment_name", DEPLOYMENT, "-o", str(second))
    copied = yaml.safe_load(second.read_text())
    assert copied.pop("version_name") == "copied"
    written.pop("version_name")
    assert copied == written


def test_cli_update_changes_the_environment_and_the_version_rebuilds(signed_in, core, good_zip):
    cli = signed_in
    core.deployment_versions_create(
        PROJECT, DEPLOYMENT, ubiops.DeploymentVersionCreate(version="cli-moving", environment="python3-9")
    )
    upload = core.revisions_file_upload(PROJECT, DEPLOYMENT, "cli-moving", file=str(good_zip))
    wait_for_version(core, "cli-moving")

    output = cli("versions", "update", "cli-moving", "-e", "python3-10", "--deployment_name", DEPLOYMENT)
    assert "Deployment version was successfully updated" in output
    waited = cli("versions", "wait", "cli-moving", "--deployment_name", DEPLOYMENT, "--timeout", "120")
    assert "Deployment version: available" in waited
    version = cli.json("versions", "get", "cli-moving", "--deployment_name", DEPLOYMENT)
    assert (version["environment_name"], version["status"], version["active_revision"]) == (
        "python3-10", "available", upload.revision,
    )
