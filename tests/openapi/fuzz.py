"""Runs schemathesis against the real server and its served OpenAPI document.

Started by `run` (which provides the virtual environment). The server gets a
fresh data directory and embedded database; objects are seeded so that most
generated requests reach real objects (see schemathesis.toml for which
operations get their path parameters from the seed). Fails if schemathesis
finds a problem or the server log shows a panic.
"""

import io
import json
import os
import subprocess
import sys
import time
import urllib.request
import uuid
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(REPO / "tests"))
from local_server import LocalServer, ServerDidNotStart  # noqa: E402

# Enough to run every operation through the examples, coverage and fuzzing
# phases in one to two minutes on two cores; override with OPENAPI_MAX_EXAMPLES.
MAX_EXAMPLES = os.environ.get("OPENAPI_MAX_EXAMPLES", "50")
# Fixed, so that a failure in CI reproduces locally; OPENAPI_SEED varies it.
SEED = os.environ.get("OPENAPI_SEED", "20261127")

# No 5xx; status codes, content types, headers and bodies as documented; and
# no operation that ignores a missing or wrong token.
CHECKS = [
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
    "response_schema_conformance",
    "ignored_auth",
]

# Operations that remove or rename what they address.
DESTRUCTIVE = r"^(DELETE |PATCH /projects/\{project_name\}/deployments/\{deployment_name\}(/versions/\{version\})?$)"

DEPLOYMENT_PY = """\
class Deployment:
    def __init__(self, base_directory, context):
        pass

    def request(self, data):
        return data
"""


class Api:
    def __init__(self, base, token):
        self.base = base
        self.token = token

    def call(self, method, path, body=None, content_type="application/json"):
        data = json.dumps(body).encode() if isinstance(body, dict) else body
        request = urllib.request.Request(
            f"{self.base}{path}",
            data=data,
            method=method,
            headers={"Authorization": f"Token {self.token}", "Content-Type": content_type},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read() or b"null")

    def upload(self, path, file_name, content):
        boundary = uuid.uuid4().hex
        body = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{file_name}"\r\n'
            "Content-Type: application/zip\r\n\r\n"
        ).encode() + content + f"\r\n--{boundary}--\r\n".encode()
        return self.call("POST", path, body, f"multipart/form-data; boundary={boundary}")


def deployment_zip():
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("deployment_package/deployment.py", DEPLOYMENT_PY)
    return buffer.getvalue()


def seed(api):
    """The objects the seeded operations address; returns their names and ids
    as the environment variables schemathesis.toml refers to."""
    api.call("POST", "/projects", {"name": "fuzz"})
    project = "/projects/fuzz"
    api.call("POST", f"{project}/deployments",
             {"name": "model", "input_type": "plain", "output_type": "plain"})
    deployment = f"{project}/deployments/model"
    api.call("POST", f"{deployment}/versions", {"version": "v1"})
    version = f"{deployment}/versions/v1"
    variables = {
        f"FUZZ_{scope}_VARIABLE_ID": api.call(
            "POST", f"{path}/environment-variables",
            {"name": f"{scope}_MODE", "value": "fuzz", "secret": scope == "VERSION"},
        )["id"]
        for scope, path in (("PROJECT", project), ("DEPLOYMENT", deployment), ("VERSION", version))
    }
    upload = api.upload(f"{version}/revisions", "model.zip", deployment_zip())
    return {
        "FUZZ_PROJECT": "fuzz",
        "FUZZ_DEPLOYMENT": "model",
        "FUZZ_VERSION": "v1",
        **variables,
        "FUZZ_REVISION_ID": upload["revision"],
        "FUZZ_BUILD_ID": upload["build"],
    }


def main():
    started = time.monotonic()
    try:
        with LocalServer("openapi") as server:
            seeded = seed(Api(server.api, server.token))
            command = [
                str(Path(sys.executable).parent / "schemathesis"),
                "--no-color",
                "--config-file", str(HERE / "schemathesis.toml"),
                "run", f"{server.api}/openapi.json",
                "--url", server.api,
                "--header", f"Authorization: Token {server.token}",
                "--max-examples", MAX_EXAMPLES,
                "--seed", SEED,
                "--checks", ",".join(CHECKS),
                *sys.argv[1:],
            ]
            # Schemathesis reuses names it has seen in responses, so a delete
            # or a rename would sooner or later hit the seeded objects: those
            # run last, once everything else has had the seeded objects.
            status = 0
            for selection in (["--exclude-name-regex", DESTRUCTIVE],
                              ["--include-name-regex", DESTRUCTIVE]):
                print(f"--- schemathesis {' '.join(selection)}", flush=True)
                status |= subprocess.call(command + selection, env={**os.environ, **seeded},
                                          cwd=server.log_path.parent)  # its cache goes there
    except ServerDidNotStart as error:
        sys.exit(str(error))
    log_path = server.log_path
    panics = [line for line in open(log_path) if "panicked" in line]
    if panics:
        print(f"the server log has {len(panics)} panic(s), e.g.: {panics[0].strip()}")
        status = status or 1
    print(f"openapi suite: {time.monotonic() - started:.0f} s; server log in {log_path}")
    sys.exit(status)


if __name__ == "__main__":
    main()
