"""Checks the Compose stack through the official client (ubiops 3.13.0).

Run by tests/compose/run, once per phase:
  check.py setup   -- the API flow: project, deployment, version, a zip
                      uploaded and built, downloaded back, a secret variable
  check.py verify  -- after a restart of some kind: everything is still
                      there, the zip downloads the same, the secret still
                      opens (copying it to a new version needs the key), the
                      token still works
  check.py token-works | token-refused   -- for the token in $TOKEN
Environment: BASE (http://127.0.0.1:<port>), TOKEN, SCRATCH (a directory),
SECRET (the secret variable's value, never printed).
"""

import os
import sys
import time
import zipfile

import ubiops

BASE = os.environ["BASE"]
TOKEN = os.environ["TOKEN"]
SCRATCH = os.environ["SCRATCH"]
SECRET = os.environ["SECRET"]
PROJECT = "compose"
DEPLOYMENT = "echo"

failures = []


def check(condition, message):
    print(("ok   " if condition else "FAIL ") + message, flush=True)
    if not condition:
        failures.append(message)


def client(token=TOKEN):
    config = ubiops.Configuration(host=f"{BASE}/v2.1", api_key={"Authorization": f"Token {token}"})
    config.temp_folder_path = SCRATCH
    return ubiops.CoreApi(ubiops.ApiClient(config))


def zip_path():
    return os.path.join(SCRATCH, "deployment.zip")


def make_zip():
    with zipfile.ZipFile(zip_path(), "w") as archive:
        archive.writestr(
            "deployment.py",
            "class Deployment:\n"
            "    def __init__(self, base_directory, context):\n"
            "        pass\n\n"
            "    def request(self, data):\n"
            "        return data\n",
        )
        archive.writestr("requirements.txt", "")


def download(api, revision):
    downloaded = api.revisions_file_download(
        project_name=PROJECT, deployment_name=DEPLOYMENT, version="v1", revision_id=revision
    )
    # This client version hands the file over as the raw response.
    return downloaded.data if hasattr(downloaded, "data") else open(downloaded, "rb").read()


def wait_build(api, build_id):
    deadline = time.time() + 120
    while True:
        build = api.builds_get(project_name=PROJECT, deployment_name=DEPLOYMENT, version="v1", build_id=build_id)
        if build.status in ("success", "failed") or time.time() > deadline:
            return build
        time.sleep(0.5)


def setup():
    api = client()
    check(api.service_status().status == "ok", "service_status")
    api.projects_create(data=ubiops.ProjectCreate(name=PROJECT, organization_name="self-hosted"))
    api.deployments_create(
        PROJECT, ubiops.DeploymentCreate(name=DEPLOYMENT, input_type="plain", output_type="plain")
    )
    api.deployment_versions_create(
        PROJECT,
        DEPLOYMENT,
        ubiops.DeploymentVersionCreate(version="v1", language="python3.8", instance_type="512mb"),
    )
    make_zip()
    upload = api.revisions_file_upload(PROJECT, DEPLOYMENT, "v1", file=zip_path())
    check(upload.success, "revisions_file_upload")
    build = wait_build(api, upload.build)
    check(build.status == "success", f"the build reached success ({build.status})")
    with open(zip_path(), "rb") as original:
        check(download(api, upload.revision) == original.read(), "the zip downloads unchanged")
    with open(os.path.join(SCRATCH, "revision"), "w") as saved:
        saved.write(upload.revision)
    api.deployment_version_environment_variables_create(
        PROJECT, DEPLOYMENT, "v1", ubiops.EnvironmentVariableCreate(name="API_KEY", value=SECRET, secret=True)
    )
    listed = api.deployment_version_environment_variables_list(PROJECT, DEPLOYMENT, "v1")
    check(
        [(v.name, v.secret) for v in listed] == [("API_KEY", True)] and all(v.value != SECRET for v in listed),
        "the secret variable is listed, its value hidden",
    )
    copy_secret(api, "setup")


def copy_secret(api, phase):
    """Copying opens the sealed value and seals it again: only works with the key."""
    target = f"{phase}-{int(time.time() * 1000)}"
    api.deployment_versions_create(PROJECT, DEPLOYMENT, ubiops.DeploymentVersionCreate(version=target))
    try:
        copied = api.deployment_version_environment_variables_copy(
            PROJECT, DEPLOYMENT, target, ubiops.EnvironmentVariableCopy(source_deployment=DEPLOYMENT, source_version="v1")
        )
        check([v.name for v in copied] == ["API_KEY"], f"{phase}: the secret opens (copied to version {target})")
    except ubiops.exceptions.ApiException as error:
        check(False, f"{phase}: the secret opens (copy failed: {error.status} {error.body})")


def verify():
    phase = sys.argv[2] if len(sys.argv) > 2 else "verify"
    api = client()
    check(api.service_status().status == "ok", f"{phase}: service_status")
    check([p.name for p in api.projects_list()] == [PROJECT], f"{phase}: the project is still there")
    version = api.deployment_versions_get(PROJECT, DEPLOYMENT, "v1")
    check(version.status == "available", f"{phase}: version v1 still available ({version.status})")
    with open(os.path.join(SCRATCH, "revision")) as saved:
        revision = saved.read().strip()
    with open(zip_path(), "rb") as original:
        check(download(api, revision) == original.read(), f"{phase}: the zip still downloads unchanged")
    copy_secret(api, phase)


def token_works(expected):
    api = client()
    deadline = time.time() + 20  # a server trusts a verified token for UBIOPS_TOKEN_CACHE_SECONDS
    while True:
        try:
            api.projects_list()
            works = True
        except ubiops.exceptions.ApiException as error:
            if error.status != 401:
                raise
            works = False
        if works == expected or time.time() > deadline:
            break
        time.sleep(1)
    label = os.environ.get("LABEL", "the token")
    check(works == expected, f"{label} {'works' if expected else 'is refused (401)'}")


if __name__ == "__main__":
    command = sys.argv[1]
    if command == "setup":
        setup()
    elif command == "verify":
        verify()
    elif command == "token-works":
        token_works(True)
    elif command == "token-refused":
        token_works(False)
    else:
        sys.exit(f"unknown phase {command}")
    sys.exit(1 if failures else 0)
