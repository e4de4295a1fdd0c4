"""Shared fixtures: the real ubiops-server binary on a free port with a fresh
embedded database, and deployment zips to upload.

Both test sets (v3 with ubiops 3.13, v4 with the newest 4.x and the CLI) run in
their own virtual environment, so nothing here imports `ubiops`.
"""

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests"))
# Its asserts show their values on failure, as the tests' own do.
pytest.register_assert_rewrite("shared")
from local_server import LocalServer, ServerDidNotStart, stop  # noqa: E402
from shared import BOOTSTRAP_EMAIL, BROKEN_DEPLOYMENT, GOOD_DEPLOYMENT, make_zip, poll, record_responses  # noqa: E402,F401


@pytest.fixture(scope="session")
def server():
    """Starts the server once per test session and stops it (SIGTERM) at the end.

    It runs no build worker of its own (`UBIOPS_BUILD_WORKERS=0`): uploads stay
    queued until a test asks for the `worker` fixture, so that a queued build
    can be cancelled deterministically first."""
    suite = os.environ.get("CLIENTS_SUITE", "suite")
    try:
        with LocalServer("clients", f"server-{suite}.log", UBIOPS_BOOTSTRAP_EMAIL=BOOTSTRAP_EMAIL,
                         UBIOPS_BUILD_WORKERS="0") as running:
            yield running
    except ServerDidNotStart as error:
        pytest.exit(str(error), 2)


@pytest.fixture(scope="session")
def worker(server):
    """A standalone `ubiops-server worker` sharing the server's embedded database."""
    process = server.spawn("worker", UBIOPS_BUILD_WORKERS="2")
    yield process
    stop(process)


@pytest.fixture(scope="session")
def good_zip(tmp_path_factory):
    path = tmp_path_factory.mktemp("zips") / "good deployment.zip"
    path.write_bytes(make_zip({"deployment.py": GOOD_DEPLOYMENT, "requirements.txt": "numpy==1.26.4\n"}))
    return path


@pytest.fixture(scope="session")
def broken_zip(tmp_path_factory):
    path = tmp_path_factory.mktemp("zips") / "broken.zip"
    path.write_bytes(make_zip({"deployment.py": BROKEN_DEPLOYMENT}))
    return path


@pytest.fixture(scope="session")
def good_package_dir(tmp_path_factory):
    """The good deployment as a directory, for `ubiops deployments deploy --directory`."""
    directory = tmp_path_factory.mktemp("package")
    (directory / "deployment.py").write_text(GOOD_DEPLOYMENT)
    (directory / "requirements.txt").write_text("numpy==1.26.4\n")
    return directory


@pytest.fixture(scope="module")
def recording_client(server):
    """A client of the module's own whose every response body is kept."""
    import ubiops

    configuration = ubiops.Configuration(host=server.api, api_key={"Authorization": f"Token {server.token}"})
    client = ubiops.ApiClient(configuration)
    bodies = record_responses(client)
    yield ubiops.CoreApi(client), bodies
    client.close()


@pytest.fixture(scope="module")
def responses(recording_client):
    """The body of every response the module's recording client received."""
    return recording_client[1]
