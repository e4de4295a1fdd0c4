"""What both suites and their fixtures share, importable by name from any
test module (`from shared import ...`); the fixtures are in conftest.py."""

import io
import time
import zipfile

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


def make_zip(files):
    """A zip with `files` ({path: text}) in a top-level folder, as the UbiOps template has."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, text in files.items():
            archive.writestr(f"deployment_package/{name}", text)
    return buffer.getvalue()


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
