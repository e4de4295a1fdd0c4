"""The real ubiops-server binary on a free loopback port with a fresh embedded
database, for the Python suites under tests/ (clients, openapi). Standard
library only: each suite runs it from its own virtual environment.
"""

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
STARTUP_SECONDS = 120


class ServerDidNotStart(RuntimeError):
    pass


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def server_binary():
    binary = Path(os.environ.get("UBIOPS_SERVER_BIN") or REPO / "target/release/ubiops-server")
    if not binary.is_file():
        raise ServerDidNotStart(
            f"no server binary at {binary}: run `cargo build --release -p ubiops-server`")
    return binary


def stop(process):
    """SIGTERM, as an operator would; SIGKILL only if it hangs."""
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


class LocalServer:
    """`with LocalServer("openapi") as server:` starts the server with an admin
    token (`server.token`), waits for `/status`, and on exit stops it and
    deletes its data. Its log is `target/<suite>-logs/<log_name>`."""

    def __init__(self, suite, log_name="server.log", **settings):
        self.suite = suite
        self.log_path = REPO / "target" / f"{suite}-logs" / log_name
        self.settings = settings
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.api = f"{self.url}/v2.1"
        self.token = os.urandom(20).hex()

    def __enter__(self):
        # Outside /root and enterable by the `postgres` user the embedded
        # cluster runs as.
        self.data_dir = Path(tempfile.mkdtemp(prefix=f"ubiops-{self.suite}-", dir="/tmp"))
        self.data_dir.chmod(0o755)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.env = {
            **os.environ,
            "UBIOPS_DATA_DIR": str(self.data_dir),
            "UBIOPS_LISTEN": f"127.0.0.1:{self.port}",
            "UBIOPS_BOOTSTRAP_TOKEN": self.token,
            "UBIOPS_LOG_FORMAT": "text",
            **self.settings,
        }
        # Settings of the caller's shell must not point the server elsewhere.
        for inherited in ("DATABASE_URL", "UBIOPS_STORAGE_URL", "UBIOPS_SECRET_KEY"):
            if inherited not in self.settings:
                self.env.pop(inherited, None)
        self.log = open(self.log_path, "w")
        self.process = self.spawn()
        try:
            self._wait_until_up()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def spawn(self, *arguments, **settings):
        """Another process of the same binary on the same data (e.g. `worker`)."""
        return subprocess.Popen([str(server_binary()), *arguments],
                                env={**self.env, **settings}, stdout=self.log, stderr=self.log)

    def _wait_until_up(self):
        deadline = time.monotonic() + STARTUP_SECONDS
        while True:
            if self.process.poll() is not None:
                raise ServerDidNotStart(
                    f"the server exited with {self.process.returncode}; see {self.log_path}")
            try:
                with urllib.request.urlopen(f"{self.url}/status", timeout=2) as response:
                    if response.status == 200:
                        return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise ServerDidNotStart(
                    f"the server did not answer /status within {STARTUP_SECONDS} s; "
                    f"see {self.log_path}")
            time.sleep(0.2)

    def __exit__(self, *_):
        stop(self.process)
        self.log.close()
        shutil.rmtree(self.data_dir, ignore_errors=True)
