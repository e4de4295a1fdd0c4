"""Shared fixtures: the real ubiops-server binary on a free port with a fresh
embedded database, and deployment zips to upload.

Both test sets (v3 with ubiops 3.13, v4 with the newest 4.x and the CLI) run in
their own virtual environment, so nothing here imports `ubiops`.
"""

import io
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BOOTSTRAP_EMAIL = "conformance@example.com"

GOOD_DEPLOYMENT = '''\
class Deployment:
    def __init__(self, base_directory, context):
        self.greeting = "hello"

    def request(self, data):
        return {"output": f"{self.greeting} {data}"}
'''

BROKEN_DEPLOYMENT = '''\
class Deployment:
    def __init__(self, base_directory, context)
        pass
'''


class Server:
    """A running ubiops-server: its base URL, admin token, environment and log file."""

    def __init__(self, url, token, env, log):
        self.url = url
        self.token = token
        self.env = env
        self.log = log

    @property
    def api(self):
        return f"{self.url}/v2.1"


def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _server_binary():
    binary = Path(os.environ.get("UBIOPS_SERVER_BIN") or REPO / "target/release/ubiops-server")
    if not binary.is_file():
        pytest.exit(f"no server binary at {binary}: run `cargo build --release -p ubiops-server`", 2)
    return binary


def _stop(process):
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@pytest.fixture(scope="session")
def server():
    """Starts the server once per test session and stops it (SIGTERM) at the end.

    It runs no build worker of its own (`UBIOPS_BUILD_WORKERS=0`): uploads stay
    queued until a test asks for the `worker` fixture, so that a queued build
    can be cancelled deterministically first."""
    # Outside /root and enterable by the `postgres` user the embedded cluster runs as.
    data_dir = Path(tempfile.mkdtemp(prefix="ubiops-clients-", dir="/tmp"))
    data_dir.chmod(0o755)
    log_dir = REPO / "target/clients-logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"server-{os.environ.get('CLIENTS_SUITE', 'suite')}.log"
    port = _free_port()
    token = os.urandom(20).hex()
    env = {
        **os.environ,
        "UBIOPS_DATA_DIR": str(data_dir),
        "UBIOPS_LISTEN": f"127.0.0.1:{port}",
        "UBIOPS_BOOTSTRAP_TOKEN": token,
        "UBIOPS_BOOTSTRAP_EMAIL": BOOTSTRAP_EMAIL,
        "UBIOPS_LOG_FORMAT": "text",
        "UBIOPS_BUILD_WORKERS": "0",
    }
    env.pop("DATABASE_URL", None)
    env.pop("UBIOPS_STORAGE_URL", None)
    log = open(log_path, "w")
    process = subprocess.Popen([str(_server_binary())], env=env, stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            if process.poll() is not None:
                pytest.exit(f"the server exited with {process.returncode}; see {log_path}", 2)
            try:
                with urllib.request.urlopen(f"{url}/status", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.exit(f"the server did not answer /status within 120 s; see {log_path}", 2)
            time.sleep(0.2)
        yield Server(url, token, env, log)
    finally:
        _stop(process)
        log.close()
        shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def worker(server):
    """A standalone `ubiops-server worker` sharing the server's embedded database."""
    process = subprocess.Popen(
        [str(_server_binary()), "worker"], env={**server.env, "UBIOPS_BUILD_WORKERS": "2"},
        stdout=server.log, stderr=server.log,
    )
    yield process
    _stop(process)


def make_zip(files):
    """A zip with `files` ({path: text}) in a top-level folder, as the UbiOps template has."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, text in files.items():
            archive.writestr(f"deployment_package/{name}", text)
    return buffer.getvalue()


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


def poll(read, done, timeout=120, interval=0.25):
    """Calls `read()` until `done(value)` holds; returns the value (fails on timeout)."""
    deadline = time.monotonic() + timeout
    while True:
        value = read()
        if done(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting after {timeout} s; last value: {value}")
        time.sleep(interval)
