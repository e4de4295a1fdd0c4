"""All 31 operations of the Deployments API documentation, driven through the
official `ubiops==3.13.0` client, with the returned values checked against the
documentation (fields, defaults, statuses, inheritance, audit texts).

The tests run in file order and build on each other (one project, one
deployment story), like a user working through the API.
"""

import io
import uuid
import zipfile
from datetime import datetime, timezone

import pytest
import ubiops

from conftest import BOOTSTRAP_EMAIL, poll
from shared import error_of

# The 31 operations of the Deployments API documentation.
OPERATIONS = {
    "builds_get", "builds_list", "builds_update", "deployment_audit_events_list",
    *(f"deployment_environment_variables_{op}" for op in ["copy", "create", "delete", "get", "list", "update"]),
    *(f"deployment_version_environment_variables_{op}" for op in ["copy", "create", "delete", "get", "list", "update"]),
    *(f"deployment_versions_{op}" for op in ["create", "delete", "get", "list", "update"]),
    *(f"deployments_{op}" for op in ["create", "delete", "get", "list", "update"]),
    "revisions_file_download", "revisions_file_upload", "revisions_get", "revisions_list", "revisions_rebuild",
}
CALLED = set()

PROJECT = "conformance"
DEPLOYMENT = "image-recognition"
FINISHED = {"success", "failed", "cancelled"}


@pytest.fixture(scope="module")
def api(server, tmp_path_factory):
    config = ubiops.Configuration(host=server.api, api_key={"Authorization": f"Token {server.token}"})
    config.temp_folder_path = str(tmp_path_factory.mktemp("downloads"))
    client = ubiops.ApiClient(config)
    core = ubiops.CoreApi(client)
    for name in OPERATIONS:  # record which documented operations the tests reach
        setattr(core, name, recorded(name, getattr(core, name)))
    yield core
    client.close()


def recorded(name, operation):
    def call(*args, **kwargs):
        CALLED.add(name)
        return operation(*args, **kwargs)
    return call


def recent(date):
    """Dates are timezone-aware and from this run."""
    assert date.tzinfo is not None
    assert abs((datetime.now(timezone.utc) - date).total_seconds()) < 600
    return True


def finished_build(api, version, build_id, deployment=DEPLOYMENT):
    return poll(
        lambda: api.builds_get(PROJECT, build_id, deployment, version),
        lambda build: build.status in FINISHED,
    )


def audit(api, deployment=DEPLOYMENT, **query):
    return api.deployment_audit_events_list(PROJECT, deployment, **query)


# --- service and project ---------------------------------------------------

def test_status_and_project(api):
    assert api.service_status().status == "ok"
    project = api.projects_create(data=ubiops.ProjectCreate(name=PROJECT, organization_name="self-hosted"))
    assert (project.name, project.organization_name) == (PROJECT, "self-hosted")
    assert PROJECT in [p.name for p in api.projects_list()]
    assert api.projects_get(PROJECT).name == PROJECT


# --- deployments -------------------------------------------------------------

def test_deployments_create_returns_the_documented_fields(api):
    data = ubiops.DeploymentCreate(
        name=DEPLOYMENT,
        description="Recognises images",
        input_type="structured",
        output_type="plain",
        input_fields=[
            ubiops.DeploymentInputFieldCreate(name="image", data_type="file"),
            ubiops.DeploymentInputFieldCreate(
                name="threshold",
                data_type="double",
                widget=ubiops.InputFieldWidgetCreate(type="slider", configuration={"min": "0", "max": "1"}),
            ),
        ],
        labels={"team": "vision", "stage": "test"},
    )
    created = api.deployments_create(PROJECT, data)
    uuid.UUID(created.id)
    assert (created.name, created.project, created.description) == (DEPLOYMENT, PROJECT, "Recognises images")
    assert (created.input_type, created.output_type) == ("structured", "plain")
    assert [(f.name, f.data_type) for f in created.input_fields] == [("image", "file"), ("threshold", "double")]
    assert created.input_fields[1].widget.type == "slider"
    assert created.input_fields[1].widget.configuration == {"min": "0", "max": "1"}
    assert created.output_fields == []
    assert created.labels == {"team": "vision", "stage": "test"}
    assert recent(created.creation_date) and recent(created.last_updated)

    # A plain deployment without fields, and a duplicate name.
    plain = api.deployments_create(
        PROJECT, ubiops.DeploymentCreate(name="plain-one", input_type="plain", output_type="plain")
    )
    assert (plain.input_fields, plain.output_fields, plain.description, plain.labels) == ([], [], None, {})
    status, message = error_of(api.deployments_create, PROJECT, data)
    assert status == 400 and "already exists" in message


def test_deployments_get_and_list(api):
    detail = api.deployments_get(PROJECT, DEPLOYMENT)
    assert detail.name == DEPLOYMENT and detail.default_version is None
    assert [f.name for f in detail.input_fields] == ["image", "threshold"]

    assert [d.name for d in api.deployments_list(PROJECT)] == [DEPLOYMENT, "plain-one"]
    # Label filter: a deployment with at least one of the pairs.
    assert [d.name for d in api.deployments_list(PROJECT, labels="team:vision")] == [DEPLOYMENT]
    assert [d.name for d in api.deployments_list(PROJECT, labels="team:audio,stage:test")] == [DEPLOYMENT]
    assert api.deployments_list(PROJECT, labels="team:audio") == []

    status, message = error_of(api.deployments_get, PROJECT, "no-such-deployment")
    assert status == 404
    assert error_of(api.deployments_list, PROJECT, labels="no-colon")[0] == 400


def test_deployments_update(api):
    updated = api.deployments_update(
        PROJECT,
        "plain-one",
        ubiops.DeploymentUpdate(name="plain-two", description="Renamed", labels={"kind": "plain"}),
    )
    assert (updated.name, updated.description, updated.labels) == ("plain-two", "Renamed", {"kind": "plain"})
    assert updated.last_updated >= updated.creation_date
    assert error_of(api.deployments_get, PROJECT, "plain-one")[0] == 404

    fields = api.deployments_update(
        PROJECT,
        DEPLOYMENT,
        ubiops.DeploymentUpdate(
            input_fields=[ubiops.DeploymentInputFieldCreate(name="image", data_type="file")],
        ),
    )
    assert [(f.name, f.data_type) for f in fields.input_fields] == [("image", "file")]
    assert fields.labels == {"team": "vision", "stage": "test"}  # untouched

    # Only an available version can become the default.
    status, message = error_of(
        api.deployments_update, PROJECT, DEPLOYMENT, ubiops.DeploymentUpdate(default_version="v9")
    )
    assert status == 400 and "v9" in message


# --- versions ----------------------------------------------------------------

def test_deployment_versions_create_applies_the_documented_defaults(api):
    version = api.deployment_versions_create(PROJECT, DEPLOYMENT, ubiops.DeploymentVersionCreate(version="v1"))
    uuid.UUID(version.id)
    assert (version.deployment, version.version) == (DEPLOYMENT, "v1")
    assert (version.language, version.language_description) == ("python3.7", "Python 3.7")
    assert (version.memory_allocation, version.instance_type) == (2048, "2048mb")
    assert (version.maximum_instances, version.minimum_instances, version.maximum_idle_time) == (5, 0, 300)
    assert (version.request_retention_time, version.request_retention_mode) == (604800, "full")
    assert (version.maximum_queue_size_express, version.maximum_queue_size_batch) == (100, 100000)
    assert (version.static_ip, version.restart_request_interruption) == (False, False)
    assert (version.description, version.labels, version.monitoring, version.default_notification_group) == (
        None, {}, None, None,
    )
    assert (version.status, version.active_revision, version.latest_build) == ("unavailable", None, None)
    assert recent(version.creation_date)
    # The first version becomes the deployment's default.
    assert api.deployments_get(PROJECT, DEPLOYMENT).default_version == "v1"


def test_deployment_versions_create_with_settings(api):
    version = api.deployment_versions_create(
        PROJECT,
        DEPLOYMENT,
        ubiops.DeploymentVersionCreate(
            version="v2",
            language="python3.8",
            instance_type="512mb",
            maximum_instances=3,
            minimum_instances=1,
            maximum_idle_time=60,
            description="Second",
            labels={"speed": "fast"},
            request_retention_time=3600,
            request_retention_mode="metadata",
            maximum_queue_size_express=10,
            maximum_queue_size_batch=20,
            static_ip=True,
            restart_request_interruption=True,
        ),
    )
    assert (version.language, version.language_description) == ("python3.8", "Python 3.8")
    assert (version.instance_type, version.memory_allocation) == ("512mb", 512)  # one setting, two views
    assert (version.maximum_instances, version.minimum_instances, version.maximum_idle_time) == (3, 1, 60)
    assert (version.request_retention_time, version.request_retention_mode) == (3600, "metadata")
    assert (version.maximum_queue_size_express, version.maximum_queue_size_batch) == (10, 20)
    assert (version.static_ip, version.restart_request_interruption) == (True, True)
    assert (version.description, version.labels) == ("Second", {"speed": "fast"})
    assert api.deployments_get(PROJECT, DEPLOYMENT).default_version == "v1"

    status, message = error_of(
        api.deployment_versions_create,
        PROJECT,
        DEPLOYMENT,
        ubiops.DeploymentVersionCreate(version="v3", minimum_instances=6),
    )
    assert status == 400 and "minimum_instances" in message


def test_deployment_versions_list_get_update_delete(api):
    assert [v.version for v in api.deployment_versions_list(PROJECT, DEPLOYMENT)] == ["v1", "v2"]
    assert [v.version for v in api.deployment_versions_list(PROJECT, DEPLOYMENT, labels="speed:fast")] == ["v2"]

    got = api.deployment_versions_get(PROJECT, DEPLOYMENT, "v2")
    assert (got.version, got.language, got.status) == ("v2", "python3.8", "unavailable")

    updated = api.deployment_versions_update(
        PROJECT, DEPLOYMENT, "v2", ubiops.DeploymentVersionUpdate(memory_allocation=4096, maximum_instances=4)
    )
    assert (updated.memory_allocation, updated.instance_type, updated.maximum_instances) == (4096, "4096mb", 4)
    assert updated.description == "Second"  # untouched

    temporary = api.deployment_versions_create(PROJECT, DEPLOYMENT, ubiops.DeploymentVersionCreate(version="tmp"))
    assert temporary.status == "unavailable"
    assert api.deployment_versions_delete(PROJECT, DEPLOYMENT, "tmp") is None
    assert error_of(api.deployment_versions_get, PROJECT, DEPLOYMENT, "tmp")[0] == 404


# --- environment variables -----------------------------------------------------

def env(name, value, secret=False):
    return ubiops.EnvironmentVariableCreate(name=name, value=value, secret=secret)


def by_name(variables):
    return {v.name: (v.value, v.secret, v.inheritance_type, v.inheritance_name) for v in variables}


def test_deployment_environment_variables(api):
    api.project_environment_variables_create(PROJECT, env("REGION", "eu"))
    api.project_environment_variables_create(PROJECT, env("SHARED", "from-project"))

    created = api.deployment_environment_variables_create(PROJECT, DEPLOYMENT, env("MODEL_PATH", "/models/a"))
    uuid.UUID(created.id)
    assert (created.name, created.value, created.secret) == ("MODEL_PATH", "/models/a", False)
    secret = api.deployment_environment_variables_create(PROJECT, DEPLOYMENT, env("API_KEY", "s3cret", True))
    assert (secret.value, secret.secret) == (None, True)  # secrets never come back
    api.deployment_environment_variables_create(PROJECT, DEPLOYMENT, env("SHARED", "from-deployment"))

    listed = api.deployment_environment_variables_list(PROJECT, DEPLOYMENT)
    assert by_name(listed) == {
        "API_KEY": (None, True, None, None),
        "MODEL_PATH": ("/models/a", False, None, None),
        "REGION": ("eu", False, "project", PROJECT),
        "SHARED": ("from-deployment", False, None, None),  # shadows the project's
    }

    got = api.deployment_environment_variables_get(PROJECT, DEPLOYMENT, created.id)
    assert (got.id, got.name, got.value) == (created.id, "MODEL_PATH", "/models/a")
    inherited = next(v for v in listed if v.name == "REGION")
    assert error_of(api.deployment_environment_variables_get, PROJECT, DEPLOYMENT, inherited.id)[0] == 404

    updated = api.deployment_environment_variables_update(
        PROJECT, DEPLOYMENT, created.id, env("MODEL_PATH", "/models/b", True)
    )
    assert (updated.id, updated.value, updated.secret) == (created.id, None, True)
    status, message = error_of(
        api.deployment_environment_variables_update, PROJECT, DEPLOYMENT, secret.id, env("API_KEY", "x", False)
    )
    assert status == 400 and "secret" in message

    assert api.deployment_environment_variables_delete(PROJECT, DEPLOYMENT, updated.id) is None
    assert "MODEL_PATH" not in by_name(api.deployment_environment_variables_list(PROJECT, DEPLOYMENT))
    status, message = error_of(
        api.deployment_environment_variables_create, PROJECT, DEPLOYMENT, env("_BAD", "x")
    )
    assert status == 400


def test_deployment_version_environment_variables(api):
    created = api.deployment_version_environment_variables_create(
        PROJECT, DEPLOYMENT, "v1", env("THREADS", "4")
    )
    assert (created.name, created.value, created.secret) == ("THREADS", "4", False)
    api.deployment_version_environment_variables_create(PROJECT, DEPLOYMENT, "v1", env("SHARED", "from-version"))

    listed = api.deployment_version_environment_variables_list(PROJECT, DEPLOYMENT, "v1")
    assert by_name(listed) == {
        "API_KEY": (None, True, "deployment", DEPLOYMENT),
        "REGION": ("eu", False, "project", PROJECT),
        "SHARED": ("from-version", False, None, None),  # version < deployment < project
        "THREADS": ("4", False, None, None),
    }

    got = api.deployment_version_environment_variables_get(PROJECT, DEPLOYMENT, created.id, "v1")
    assert (got.name, got.value) == ("THREADS", "4")
    updated = api.deployment_version_environment_variables_update(
        PROJECT, DEPLOYMENT, created.id, "v1", env("WORKER_THREADS", "8")
    )
    assert (updated.id, updated.name, updated.value) == (created.id, "WORKER_THREADS", "8")
    inherited = next(v for v in listed if v.name == "API_KEY")
    assert error_of(api.deployment_version_environment_variables_delete, PROJECT, DEPLOYMENT, inherited.id, "v1")[0] == 404
    assert api.deployment_version_environment_variables_delete(PROJECT, DEPLOYMENT, created.id, "v1") is None
    assert "WORKER_THREADS" not in by_name(api.deployment_version_environment_variables_list(PROJECT, DEPLOYMENT, "v1"))


def test_environment_variables_copy(api):
    # Deployment <- deployment: the source's own variables, secrets included but hidden.
    copied = api.deployment_environment_variables_copy(
        PROJECT, "plain-two", ubiops.EnvironmentVariableCopy(source_deployment=DEPLOYMENT)
    )
    assert by_name(copied) == {
        "API_KEY": (None, True, None, None),
        "SHARED": ("from-deployment", False, None, None),
    }
    # Version <- version.
    copied = api.deployment_version_environment_variables_copy(
        PROJECT, DEPLOYMENT, "v2", ubiops.EnvironmentVariableCopy(source_deployment=DEPLOYMENT, source_version="v1")
    )
    assert by_name(copied) == {"SHARED": ("from-version", False, None, None)}
    assert by_name(api.deployment_version_environment_variables_list(PROJECT, DEPLOYMENT, "v2"))["SHARED"] == (
        "from-version", False, None, None,
    )
    status, _ = error_of(
        api.deployment_environment_variables_copy,
        PROJECT,
        "plain-two",
        ubiops.EnvironmentVariableCopy(source_deployment="missing"),
    )
    assert status == 404


# --- files, revisions and builds -------------------------------------------------

def test_a_queued_build_can_be_cancelled(api, good_zip):
    """Runs before any build worker exists (see the `worker` fixture), so the build stays queued."""
    upload = api.revisions_file_upload(PROJECT, DEPLOYMENT, "v2", file=str(good_zip))
    build = api.builds_get(PROJECT, upload.build, DEPLOYMENT, "v2")
    assert build.status == "queued"
    assert api.deployment_versions_get(PROJECT, DEPLOYMENT, "v2").status == "building"
    cancelled = api.builds_update(PROJECT, upload.build, DEPLOYMENT, "v2", ubiops.BuildUpdate(status="cancelled"))
    assert (cancelled.id, cancelled.status, cancelled.revision) == (upload.build, "cancelled", upload.revision)
    version = api.deployment_versions_get(PROJECT, DEPLOYMENT, "v2")
    assert (version.status, version.active_revision) == ("unavailable", None)
    status, message = error_of(
        api.builds_update, PROJECT, upload.build, DEPLOYMENT, "v2", ubiops.BuildUpdate(status="cancelled")
    )
    assert status == 400 and "cancel" in message


def test_a_good_zip_builds_to_success(api, worker, good_zip):
    upload = api.revisions_file_upload(PROJECT, DEPLOYMENT, "v1", file=str(good_zip))
    assert upload.success is True
    uuid.UUID(upload.revision) and uuid.UUID(upload.build)

    build = finished_build(api, "v1", upload.build)
    assert (build.status, build.error_message, build.revision) == ("success", None, upload.revision)
    assert (build.trigger, build.has_request_method, build.has_requests_method) == (
        "Deployment file upload", True, False,
    )
    assert recent(build.creation_date)

    version = api.deployment_versions_get(PROJECT, DEPLOYMENT, "v1")
    assert (version.status, version.active_revision, version.latest_build) == (
        "available", upload.revision, upload.build,
    )
    assert (version.has_request_method, version.has_requests_method) == (True, False)
    assert recent(version.last_file_upload)

    revision = api.revisions_get(PROJECT, DEPLOYMENT, upload.revision, "v1")
    assert (revision.id, revision.version, revision.created_by) == (upload.revision, "v1", BOOTSTRAP_EMAIL)
    assert recent(revision.creation_date)
    assert [r.id for r in api.revisions_list(PROJECT, DEPLOYMENT, "v1")] == [upload.revision]


def test_revisions_file_download_returns_the_uploaded_zip(api, good_zip):
    revision = api.deployment_versions_get(PROJECT, DEPLOYMENT, "v1").active_revision
    # 3.13 hands back the streaming response itself.
    with api.revisions_file_download(PROJECT, DEPLOYMENT, revision, "v1") as response:
        assert response.headers["Content-Type"] == "application/zip"
        # The upload's name, spaces made safe, in the shape the clients parse.
        assert response.headers["Content-Disposition"] == 'attachment; filename="good_deployment.zip"'
        content = response.read()
    assert content == good_zip.read_bytes()
    with zipfile.ZipFile(io.BytesIO(content)) as archive:
        assert "deployment_package/deployment.py" in archive.namelist()
    # With `_preload_content=True` it saves the file under that name.
    path = api.revisions_file_download(PROJECT, DEPLOYMENT, revision, "v1", _preload_content=True)
    assert path.endswith("/good_deployment.zip")
    with open(path, "rb") as saved:
        assert saved.read() == content


def test_a_broken_zip_fails_with_an_error_message(api, worker, broken_zip):
    active_before = api.deployment_versions_get(PROJECT, DEPLOYMENT, "v1").active_revision
    upload = api.revisions_file_upload(PROJECT, DEPLOYMENT, "v1", file=str(broken_zip))
    build = finished_build(api, "v1", upload.build)
    assert build.status == "failed"
    assert "deployment.py line 2" in build.error_message, build.error_message
    # The previous revision keeps serving.
    version = api.deployment_versions_get(PROJECT, DEPLOYMENT, "v1")
    assert (version.status, version.active_revision, version.latest_build) == (
        "available", active_before, upload.build,
    )
    builds = api.builds_list(PROJECT, DEPLOYMENT, "v1")
    assert [(b.status, b.revision) for b in builds] == [("success", active_before), ("failed", upload.revision)]
    assert [r.id for r in api.revisions_list(PROJECT, DEPLOYMENT, "v1")] == [active_before, upload.revision]


def test_revisions_rebuild(api, worker):
    revision = api.deployment_versions_get(PROJECT, DEPLOYMENT, "v1").active_revision
    rebuild = api.revisions_rebuild(PROJECT, DEPLOYMENT, revision, "v1")
    assert (rebuild.revision, rebuild.trigger) == (revision, "Rebuild")
    assert rebuild.status in {"queued", "building", "validating", "success"}
    build = finished_build(api, "v1", rebuild.id)
    assert (build.status, build.has_request_method) == ("success", True)
    assert len(api.builds_list(PROJECT, DEPLOYMENT, "v1")) == 3
    assert error_of(api.revisions_rebuild, PROJECT, DEPLOYMENT, str(uuid.uuid4()), "v1")[0] == 404


def test_uploads_copied_from_a_version_and_from_a_template(api, worker):
    copy = api.revisions_file_upload(PROJECT, DEPLOYMENT, "v2", source_deployment=DEPLOYMENT, source_version="v1")
    build = finished_build(api, "v2", copy.build)
    assert (build.status, build.trigger) == ("success", "Copy from version")

    template_id = api.deployments_get(PROJECT, DEPLOYMENT).id
    api.deployment_versions_create(PROJECT, "plain-two", ubiops.DeploymentVersionCreate(version="v1"))
    templated = api.revisions_file_upload(PROJECT, "plain-two", "v1", template_deployment_id=template_id)
    build = finished_build(api, "v1", templated.build, deployment="plain-two")
    assert (build.status, build.trigger) == ("success", "Template")
    assert api.deployment_versions_get(PROJECT, "plain-two", "v1").status == "available"

    status, _ = error_of(api.revisions_file_upload, PROJECT, DEPLOYMENT, "v2", source_deployment=DEPLOYMENT)
    assert status == 400


def test_an_available_version_can_become_the_default(api):
    updated = api.deployments_update(PROJECT, DEPLOYMENT, ubiops.DeploymentUpdate(default_version="v2"))
    assert updated.default_version == "v2"


# --- audit events ------------------------------------------------------------------

def test_deployment_audit_events_list(api):
    events = audit(api)
    assert all(e.user in {BOOTSTRAP_EMAIL, "UbiOps"} for e in events)
    assert all((e.object_type, e.object_name) == ("deployment", DEPLOYMENT) for e in events)
    texts = [e.event for e in events]
    assert texts[-1] == f"Created deployment {DEPLOYMENT}"  # newest first
    for expected in [
        f"Created version v1 for deployment {DEPLOYMENT}",
        f"Created version v2 for deployment {DEPLOYMENT}",
        f"Updated version v2 for deployment {DEPLOYMENT}",
        f"Deleted version tmp for deployment {DEPLOYMENT}",
        f"Updated deployment {DEPLOYMENT}",
        f"Created environment variable API_KEY for deployment {DEPLOYMENT}",
        f"Deleted environment variable MODEL_PATH for deployment {DEPLOYMENT}",
        f"Created environment variable THREADS for version v1 of deployment {DEPLOYMENT}",
    ]:
        assert expected in texts, expected
    assert not any("s3cret" in text for text in texts)  # secrets never reach audit texts
    assert any(t.startswith("Cancelled build") for t in texts)

    creates = audit(api, action="create")
    assert creates and all(e.action == "create" for e in creates)
    infos = audit(api, action="info")
    assert any(
        e.user == "UbiOps" and " failed: " in e.event and "deployment.py line 2" in e.event for e in infos
    )
    assert [e.id for e in audit(api, limit=2)] == [e.id for e in events[:2]]
    assert [e.id for e in audit(api, limit=3, offset=2)] == [e.id for e in events[2:5]]
    assert error_of(audit, api, action="launch")[0] == 400


# --- deletion -------------------------------------------------------------------------

def test_deployments_delete(api):
    assert api.deployments_delete(PROJECT, "plain-two") is None
    assert error_of(api.deployments_get, PROJECT, "plain-two")[0] == 404
    assert error_of(api.deployment_audit_events_list, PROJECT, "plain-two")[0] == 404
    assert [d.name for d in api.deployments_list(PROJECT)] == [DEPLOYMENT]


def test_every_documented_operation_was_driven():
    assert len(OPERATIONS) == 31
    assert OPERATIONS - CALLED == set()
