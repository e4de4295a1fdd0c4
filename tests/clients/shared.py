"""What both suites and their fixtures share, importable by name from any
test module (`from shared import ...`); the fixtures are in conftest.py."""

import io
import json
import time
import zipfile

import pytest
from ubiops.exceptions import ApiException

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


def record_responses(api_client):
    """Keeps the body of every response `api_client` receives from now on,
    errors included, as text: for checks across all of them. Works for both
    clients (3.13 hands back urllib3 data, 4.x a `requests` response)."""
    bodies = []
    rest = api_client.rest_client
    original = rest.request

    def request(*args, **kwargs):
        try:
            response = original(*args, **kwargs)
        except Exception as error:
            bodies.append(str(getattr(error, "body", None) or ""))
            raise
        data = getattr(response, "data", None)
        bodies.append(data if isinstance(data, str) else data.decode() if isinstance(data, bytes) else response.text)
        return response

    rest.request = request
    return bodies


def without_results(body):
    """A response body with the `result` of a request (or of each request in
    a list) taken out: what the deployment code returned, as it returned it."""
    try:
        value = json.loads(body)
    except ValueError:
        return body
    items = value if isinstance(value, list) else [value]
    for item in items:
        if isinstance(item, dict):
            item.pop("result", None)
    return json.dumps(value)


# The deployment the request suites run (structured: text and times in;
# text, six_version, region, model and token out). It needs `six==1.16.0`
# (the test clients' own environments have 1.17.0), tells its variables,
# prints a marker with the request's id to stdout, stderr and logging, and
# fails on purpose: a negative `times` raises, text `no-token` returns an
# output without a field, text `sleep` sleeps `times` seconds.
REQUESTS_DEPLOYMENT = '''\
import logging
import os
import sys
import time

import six


class Deployment:
    def __init__(self, base_directory, context):
        self.version = context["version"]

    def request(self, data, context):
        text, times = data["text"], data["times"]
        if times < 0:
            raise ValueError(f"times must not be negative, got {times}")
        if text == "sleep":
            time.sleep(times)
        print(f"request-marker {context['id']} {text}")
        print(f"stderr-marker {text}", file=sys.stderr)
        logging.getLogger("calculator").warning("logging-marker %s", text)
        output = {
            "text": six.ensure_text(text).upper() * times,
            "six_version": six.__version__,
            "region": os.environ.get("REGION", "unset"),
            "model": os.environ.get("MODEL_NAME", "unset"),
            "token": os.environ.get("API_TOKEN", "unset"),
        }
        if text == "no-token":
            del output["token"]
        return output
'''
REQUESTS_REQUIREMENTS = "six==1.16.0\n"  # as test_real_builds.py: one cached environment

# A plain deployment: the input reversed.
REVERSING_DEPLOYMENT = '''\
class Deployment:
    def __init__(self, base_directory, context):
        pass

    def request(self, data):
        return data[::-1]
'''


def error_of(call, *args, **kwargs):
    """The status and `error` text of a call that must fail."""
    with pytest.raises(ApiException) as failure:
        call(*args, **kwargs)
    body = json.loads(failure.value.body)
    assert isinstance(body.get("error"), str) and body["error"], body
    return failure.value.status, body["error"]


# --- batch requests (v3/test_batch.py, v4/test_batch.py) ------------------------------

# A plain deployment for the batch suites: the input upper-cased; an input
# `sleep <seconds> ...` sleeps first, `fail ...` raises.
BATCH_DEPLOYMENT = '''\
import time


class Deployment:
    def __init__(self, base_directory, context):
        pass

    def request(self, data):
        words = data.split()
        if words[0] == "sleep":
            time.sleep(float(words[1]))
        if words[0] == "fail":
            raise ValueError(f"asked to fail: {data}")
        return data.upper()
'''
# 250 inputs (the most one batch takes), five of them failing on purpose.
BATCH_INPUTS = [f"fail {i}" if i % 50 == 7 else f"item {i}" for i in range(250)]
FINISHED_REQUEST = {"completed", "failed", "cancelled"}


def upload_and_build(api, project, deployment, version, path, timeout=300):
    """Uploads the zip at `path` with either client and waits for the build:
    the version is `building` from the upload on, `available` once it succeeded."""
    api.revisions_file_upload(project, deployment, version, file=str(path))
    status = poll(
        lambda: api.deployment_versions_get(project, deployment, version).status,
        lambda status: status != "building",
        timeout=timeout,
    )
    assert status == "available", f"{deployment} {version} is {status} after its build"


def collect(api, project, deployment, ids, version=None):
    """The requests `ids` by collect (the deployment's, or the version's),
    250 at a time: {id: detail}, each id answered once."""
    details = {}
    for start in range(0, len(ids), 250):
        chunk = ids[start:start + 250]
        if version is None:
            answer = api.deployment_requests_batch_get(project, deployment, chunk)
        else:
            answer = api.deployment_version_requests_batch_get(project, deployment, version, chunk)
        got = [detail.id for detail in answer]
        assert sorted(got) == sorted(set(chunk)), f"collect answered {got} for {chunk}"
        details.update((detail.id, detail) for detail in answer)
    return details


def collect_until(api, project, deployment, ids, statuses=FINISHED_REQUEST, version=None, timeout=120):
    """Collects `ids` until each one's status is in `statuses`; returns {id: detail}."""
    return poll(
        lambda: collect(api, project, deployment, ids, version),
        lambda details: all(detail.status in statuses for detail in details.values()),
        timeout=timeout,
    )


def assert_done_as_asked(detail, data):
    """A batch request of BATCH_DEPLOYMENT finished as its input `data` asked."""
    assert detail.request_data == data, detail
    if data.startswith("fail"):
        assert (detail.status, detail.success, detail.result) == ("failed", False, None), detail
        assert f"asked to fail: {data}" in detail.error_message, detail
    else:
        assert (detail.status, detail.success, detail.error_message) == ("completed", True, None), detail
        assert detail.result == data.upper(), detail
    assert detail.time_created <= detail.time_started <= detail.time_completed, detail
