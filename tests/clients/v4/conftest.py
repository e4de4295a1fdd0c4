"""Fixtures of the 4.x suite: the newest client (`core`) and the CLI (`cli`),
both signed in to the session's server by the tests that need it."""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import ubiops


@pytest.fixture(scope="session")
def core(server):
    # As in the README: the token with its `Token ` prefix, the host with /v2.1.
    configuration = ubiops.Configuration(host=server.api, api_key={"Authorization": f"Token {server.token}"})
    client = ubiops.ApiClient(configuration)
    core = ubiops.CoreApi(client)
    yield core
    client.close()


class Cli:
    """Runs `ubiops` of this virtual environment with a throwaway HOME."""

    def __init__(self, home):
        self.env = {**os.environ, "HOME": str(home)}
        self.executable = str(Path(sys.executable).with_name("ubiops"))

    def __call__(self, *args, expect_failure=False):
        result = subprocess.run(
            [self.executable, *args], env=self.env, capture_output=True, text=True, timeout=300,
        )
        output = result.stdout + result.stderr
        if expect_failure:
            assert result.returncode != 0, output
        else:
            assert result.returncode == 0, f"ubiops {' '.join(args)}:\n{output}"
        return output

    def json(self, *args):
        output = self(*args, "--format", "json")
        return json.loads(output)


@pytest.fixture(scope="module")
def cli(server, tmp_path_factory):
    # ubiops-cli keeps its configuration (API host, token, current project)
    # in its own package directory, not in HOME: start and end without one.
    config = Path(importlib.util.find_spec("ubiops_cli").submodule_search_locations[0]) / ".config"
    config.unlink(missing_ok=True)
    yield Cli(tmp_path_factory.mktemp("home"))
    config.unlink(missing_ok=True)
