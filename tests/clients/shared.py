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
