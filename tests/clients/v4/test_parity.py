"""The newest client (4.15) and the CLI one step off the deploy flow: the
calls a user makes within minutes of starting, each as the client or CLI
really sends it (issue: "The newest client and CLI at parity").

Logs and version settings have modules of their own (test_logs.py,
test_versions.py).
"""

import pytest
import ubiops

from shared import BOOTSTRAP_EMAIL

PROJECT = "parity"
DEPLOYMENT = "parity-model"


@pytest.fixture(scope="module", autouse=True)
def builds_run(worker):
    """Every test here expects uploads to be built."""


@pytest.fixture(scope="module")
def deployed(core, good_zip):
    """A project with a deployment whose version v1 has a successful build."""
    core.projects_create(data=ubiops.ProjectCreate(name=PROJECT, organization_name="self-hosted"))
    core.deployments_create(
        PROJECT,
        ubiops.DeploymentCreate(
            name=DEPLOYMENT, supports_request_format=True, input_type="plain", output_type="plain"
        ),
    )
    core.deployment_versions_create(
        PROJECT, DEPLOYMENT, ubiops.DeploymentVersionCreate(version="v1", environment="python3-11")
    )
    upload = core.revisions_file_upload(PROJECT, DEPLOYMENT, "v1", file=str(good_zip))
    ubiops.utils.wait_for_revision(
        client=core.api_client, project_name=PROJECT, deployment_name=DEPLOYMENT, version="v1",
        revision_id=upload.revision, timeout=120, quiet=True,
    )
    return upload


def test_a_rebuild_is_waited_for_and_read_as_a_revision(core, deployed):
    rebuild = core.revisions_rebuild(PROJECT, DEPLOYMENT, deployed.revision, "v1", data={})
    # What 4.15 does with the answer: wait for it, then read it, by its id.
    ubiops.utils.wait_for_revision(
        client=core.api_client, project_name=PROJECT, deployment_name=DEPLOYMENT, version="v1",
        revision_id=rebuild.id, timeout=120, quiet=True,
    )
    revision = core.revisions_get(PROJECT, DEPLOYMENT, rebuild.id, "v1")
    assert (revision.id, revision.status, revision.error_message) == (deployed.revision, "success", None)
    assert (revision.has_request_method, revision.has_requests_method, revision.empty) == (True, False, False)
    [listed] = core.revisions_list(PROJECT, DEPLOYMENT, "v1")
    assert (listed.has_request_method, listed.has_requests_method, listed.empty) == (True, False, False)


def test_deployments_list_filters_on_supports_request_format(core, deployed):
    assert [d.name for d in core.deployments_list(PROJECT, supports_request_format=True)] == [DEPLOYMENT]
    assert core.deployments_list(PROJECT, supports_request_format=False) == []


def test_project_audit_events(core, deployed):
    events = core.project_audit_events_list(PROJECT)
    assert any(f"deployment {DEPLOYMENT}" in e.event for e in events)
    [created] = core.project_audit_events_list(PROJECT, action="create", limit=1)
    assert (created.action, created.user) == ("create", BOOTSTRAP_EMAIL)


def test_organizations_instance_types_and_templates(core, deployed):
    [organization] = core.organizations_list()
    assert (organization.name, organization.status) == ("self-hosted", "active")
    assert core.organizations_get("self-hosted").subscription == "self-hosted"

    types = core.instance_types_list(PROJECT)
    assert {"512mb", "16384mb_t4"} <= {t.name for t in types.results}
    page = core.instance_types_list(PROJECT, limit=2)
    assert len(page.results) == 2 and page.next is not None

    templates = core.template_deployments_list()
    [template] = [t for t in templates if t.details["project"] == PROJECT]
    assert template.details["deployment"] == DEPLOYMENT
    # What a template id is for: a version gets the default version's file.
    core.deployment_versions_create(
        PROJECT, DEPLOYMENT, ubiops.DeploymentVersionCreate(version="from-template", environment="python3-11")
    )
    copied = core.revisions_file_upload(PROJECT, DEPLOYMENT, "from-template", template_deployment_id=template.id)
    ubiops.utils.wait_for_revision(
        client=core.api_client, project_name=PROJECT, deployment_name=DEPLOYMENT, version="from-template",
        revision_id=copied.revision, timeout=120, quiet=True,
    )


# --- ubiops-cli ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def signed_in(cli, server, deployed):
    cli("signin", "--token", "--api", server.api, "--password", f"Token {server.token}")
    cli("current_project", "set", PROJECT)
    return cli


def test_cli_projects_create_picks_the_one_organization(signed_in):
    created = signed_in.json("projects", "create", "cli-made")
    assert (created["name"], created["organization_name"]) == ("cli-made", "self-hosted")
    existing = signed_in.json("projects", "create", "cli-made", "--overwrite")
    assert existing["name"] == "cli-made"
    signed_in("current_project", "set", PROJECT)


def test_cli_env_create_overwrite_and_by_name(signed_in):
    scope = ("-d", DEPLOYMENT)
    first = signed_in.json("env", "create", "MODEL_NAME", "--value", "resnet", *scope)
    again = signed_in.json("env", "create", "MODEL_NAME", "--value", "bert", "--overwrite", *scope)
    assert (again["id"], again["value"]) == (first["id"], "bert")
    # A new name with --overwrite is just created.
    fresh = signed_in.json("env", "create", "THRESHOLD", "--value", "0.5", "--overwrite", *scope)
    assert fresh["value"] == "0.5"
    got = signed_in.json("env", "get", "MODEL_NAME", *scope)
    assert (got["id"], got["value"]) == (first["id"], "bert")
    # Project and version scopes, with --overwrite too.
    signed_in.json("env", "create", "REGION", "--value", "eu")
    assert signed_in.json("env", "create", "REGION", "--value", "us", "--overwrite")["value"] == "us"
    version = (*scope, "-v", "v1")
    signed_in.json("env", "create", "BATCH", "--value", "8", *version)
    assert signed_in.json("env", "create", "BATCH", "--value", "16", "--overwrite", *version)["value"] == "16"
    signed_in("env", "delete", "THRESHOLD", *scope, "--assume_yes")
    assert "THRESHOLD" not in {v["name"] for v in signed_in.json("env", "list", *scope)}


def test_cli_audit_events_instance_types_and_deployments(signed_in):
    events = signed_in.json("audit_events", "list")
    assert any(f"deployment {DEPLOYMENT}" in e["event"] for e in events)
    deployment_events = signed_in.json("audit_events", "list", "--deployment_name", DEPLOYMENT)
    assert deployment_events and len(deployment_events) <= len(events)

    types = signed_in.json("instance_types", "list")
    assert "512mb" in {t["name"] for t in types}
    # The tables print nested fields (node_pool cluster type) of every type.
    assert "512mb" in signed_in("instance_types", "list")
    group = next(t for t in types if t["name"] == "512mb")
    assert "local" in signed_in("instance_type_groups", "get", group["id"])

    assert [d["name"] for d in signed_in.json("deployments", "list")] == [DEPLOYMENT]
    revisions = signed_in.json("revisions", "list", "--deployment_name", DEPLOYMENT, "--version_name", "v1")
    assert revisions[0]["status"] == "success"
