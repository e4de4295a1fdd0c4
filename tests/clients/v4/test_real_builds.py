"""Real builds through the newest client: a package with a real requirement
reaches success and its logs show pip's output; a requirement that does not
exist fails with pip's reason in `error_message`; code that fails on import
fails with the exception and line."""

import time

import pytest
import ubiops
from ubiops.utils.exceptions import StatusError

from shared import GOOD_DEPLOYMENT, make_zip

PROJECT = "real-builds"
DEPLOYMENT = "needs-six"


@pytest.fixture(scope="module", autouse=True)
def builds_run(worker):
    """Every test here expects uploads to be built."""


@pytest.fixture(scope="module")
def project(core):
    core.projects_create(data=ubiops.ProjectCreate(name=PROJECT, organization_name="self-hosted"))
    core.deployments_create(
        PROJECT, ubiops.DeploymentCreate(name=DEPLOYMENT, input_type="plain", output_type="plain")
    )
    for version in ["v1", "missing", "raises"]:
        core.deployment_versions_create(
            PROJECT, DEPLOYMENT, ubiops.DeploymentVersionCreate(version=version, environment="python3-11")
        )
    return PROJECT


def upload(core, tmp_path, version, files):
    path = tmp_path / f"{version}.zip"
    path.write_bytes(make_zip(files))
    return core.revisions_file_upload(PROJECT, DEPLOYMENT, version, file=str(path))


def log_texts(core, revision):
    query = f"| deployment_name=`{DEPLOYMENT}` and deployment_version_revision_id=`{revision}`"
    logs = core.logs_list(PROJECT, query=query, start="2020-01-01T00:00:00.000+00:00", end=str(time.time_ns()), limit=5000)
    return [log.log for log in logs]


def test_a_real_requirement_installs_and_the_logs_show_pip(core, project, tmp_path):
    uploaded = upload(core, tmp_path, "v1", {
        "deployment.py": "import six\n\n" + GOOD_DEPLOYMENT,
        "requirements.txt": "six==1.16.0\n",
    })
    ubiops.utils.wait_for_revision(
        client=core.api_client, project_name=PROJECT, deployment_name=DEPLOYMENT, version="v1",
        revision_id=uploaded.revision, timeout=300, quiet=True,
    )
    assert core.revisions_get(project_name=PROJECT, deployment_name=DEPLOYMENT, version="v1", revision_id=uploaded.revision).status == "success"
    texts = log_texts(core, uploaded.revision)
    assert any("Successfully installed six-1.16.0" in text for text in texts), texts
    assert "Validating: importing deployment.py in its environment" in texts, texts


def test_a_requirement_that_does_not_exist_fails_with_pips_reason(core, project, tmp_path):
    uploaded = upload(core, tmp_path, "missing", {
        "deployment.py": GOOD_DEPLOYMENT,
        "requirements.txt": "no-such-package-ubiops-clients==1.0\n",
    })
    with pytest.raises(StatusError):
        ubiops.utils.wait_for_revision(
            client=core.api_client, project_name=PROJECT, deployment_name=DEPLOYMENT, version="missing",
            revision_id=uploaded.revision, timeout=300, quiet=True,
        )
    revision = core.revisions_get(project_name=PROJECT, deployment_name=DEPLOYMENT, version="missing", revision_id=uploaded.revision)
    assert revision.status == "failed"
    assert "No matching distribution found for no-such-package-ubiops-clients==1.0" in revision.error_message
    texts = log_texts(core, uploaded.revision)
    assert any(text.startswith("ERROR: Could not find a version") for text in texts), texts


def test_code_that_fails_on_import_fails_with_the_exception_and_line(core, project, tmp_path):
    uploaded = upload(core, tmp_path, "raises", {
        "deployment.py": "import os\nraise RuntimeError('no model file')\n" + GOOD_DEPLOYMENT,
    })
    with pytest.raises(StatusError):
        ubiops.utils.wait_for_revision(
            client=core.api_client, project_name=PROJECT, deployment_name=DEPLOYMENT, version="raises",
            revision_id=uploaded.revision, timeout=120, quiet=True,
        )
    revision = core.revisions_get(project_name=PROJECT, deployment_name=DEPLOYMENT, version="raises", revision_id=uploaded.revision)
    assert revision.error_message == (
        "deployment_package/deployment.py could not be imported: RuntimeError: no model file (deployment.py, line 2)"
    ), revision.error_message
