"""The dashboard in headless Chromium (Debian's), driven by Playwright's sync API.

Started by tests/dashboard/run, which runs the server and passes its address,
the tokens and the project names in DASHBOARD_* variables. One browser per
session, a fresh context (cookies, storage, cache) per test. Everything the
scenario does happens through the page, as a person would do it; the API is
called directly only to create the projects (and, for the shorter tests, the
deployments and versions) the page starts from, and to learn the exact error
texts the page must show.

Selectors are the accessible names of the UI contract (headings, labels,
button names, roles), not CSS classes. Waits are web-first assertions with
explicit timeouts: no sleeps.
"""

import contextlib
import hashlib
import io
import json
import os
import re
import secrets
import statistics
import subprocess
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from pathlib import Path

import pytest
from playwright.sync_api import expect, sync_playwright

BASE = os.environ["DASHBOARD_BASE_URL"].rstrip("/")
ADMIN_TOKEN = os.environ["DASHBOARD_ADMIN_TOKEN"]
ADMIN_EMAIL = os.environ.get("DASHBOARD_ADMIN_EMAIL", "admin@localhost")
LIMITED_TOKEN = os.environ["DASHBOARD_LIMITED_TOKEN"]
# A second project-limited token, revoked by a test while it is signed in,
# with what the command line needs for that: the binary and the data directory
# of the running server.
REVOCABLE_TOKEN = os.environ["DASHBOARD_REVOCABLE_TOKEN"]
REVOCABLE_EMAIL = os.environ["DASHBOARD_REVOCABLE_EMAIL"]
SERVER_BIN = os.environ["DASHBOARD_SERVER_BIN"]
DATA_DIR = os.environ["DASHBOARD_DATA_DIR"]
PROJECT = os.environ.get("DASHBOARD_PROJECT", "dashboard-demo")
OTHER_PROJECT = os.environ.get("DASHBOARD_OTHER_PROJECT", "other-project")
# Made through the page by the scenario test.
SCENARIO_DEPLOYMENT, SCENARIO_VERSION = "greeter", "v1"
# Made through the API only: the pages walked for errors, and the page measured.
WALK_PROJECT = "dashboard-walk"
# Made through the API in the scenario's project: a version for cancelling,
# rebuilding and downloading.
BUILDS_DEPLOYMENT = "builder"
ARTEFACTS = Path(os.environ.get("DASHBOARD_ARTEFACTS", "target/dashboard-artefacts"))
CHROMIUM = os.environ.get("DASHBOARD_CHROMIUM", "/usr/bin/chromium")
# As root Chromium needs --no-sandbox; the rest keep it off the (closed) network.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

UI_TIMEOUT_MS = 15_000
BUILD_TIMEOUT_MS = 180_000
# A build after a cancelled one: well within the cancelled import's sleep
# (SLEEPING_CODE), so that it fails if the cancel left the one worker busy.
FREED_WORKER_TIMEOUT_MS = 60_000
DESKTOP = {"viewport": {"width": 1280, "height": 900}}
PHONE = {"viewport": {"width": 390, "height": 844}, "device_scale_factor": 3,
         "is_mobile": True, "has_touch": True}
# The first request starts an instance (its environment is made from the package).
REQUEST_TIMEOUT_MS = 120_000
expect.set_options(timeout=UI_TIMEOUT_MS)

SECRET_MASK = "••••••"


def step(text):
    print(f"  . {text}", flush=True)


# --- the API, for setup only -------------------------------------------------

def api(method, path, body=None, token=ADMIN_TOKEN):
    """(status, decoded JSON body) of `method /v2.1/<path>`."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        f"{BASE}/v2.1/{path}", data=data, method=method,
        headers={"Authorization": f"Token {token}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as error:
        status, raw = error.code, error.read()
    return status, (json.loads(raw) if raw else None)


def api_ok(method, path, body=None, token=ADMIN_TOKEN):
    status, answer = api(method, path, body, token)
    assert 200 <= status < 300, f"{method} {path}: {status} {answer}"
    return answer


# --- fixtures ----------------------------------------------------------------

@pytest.fixture(scope="session")
def browser():
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        print(f"\nChromium {browser.version} against {BASE}", flush=True)
        yield browser
        browser.close()


@pytest.fixture(scope="session")
def projects():
    """The scenario's project and a second one, made through the API."""
    for name in (PROJECT, OTHER_PROJECT):
        api_ok("POST", "projects", {"name": name})
    return PROJECT, OTHER_PROJECT


@pytest.fixture(scope="session")
def walk_project():
    """A project with a few deployments, versions and variables, made through
    the API: no build, so that it is quick. Returns (project, deployment)."""
    project = WALK_PROJECT
    api_ok("POST", "projects", {"name": project})
    api_ok("POST", f"projects/{project}/environment-variables",
           {"name": "REGION", "value": "eu-west", "secret": False})
    for index, name in enumerate(["classifier", "embedder", "ranker"]):
        api_ok("POST", f"projects/{project}/deployments", {
            "name": name, "description": f"deployment {index}",
            "input_type": "structured", "output_type": "structured",
            "input_fields": [{"name": "text", "data_type": "string"}],
            "output_fields": [{"name": "score", "data_type": "double"}],
            "labels": {"team": "ml", "tier": str(index)},
        })
        api_ok("POST", f"projects/{project}/deployments/{name}/versions",
               {"version": "v1", "environment": "python3-11", "instance_type_group_name": "512mb"})
    api_ok("POST", f"projects/{project}/deployments/classifier/environment-variables",
           {"name": "MODEL", "value": "tiny", "secret": False})
    api_ok("POST", f"projects/{project}/deployments/classifier/versions/v1/environment-variables",
           {"name": "TOKEN", "value": "walk-" + secrets.token_hex(8), "secret": True})
    return project, "classifier"


@pytest.fixture(scope="session")
def builds_version(projects):
    """A version without a revision in the scenario's project, made through the
    API. Returns (project, deployment, version)."""
    project, deployment, version = PROJECT, BUILDS_DEPLOYMENT, "v1"
    api_ok("POST", f"projects/{project}/deployments", {
        "name": deployment, "input_type": "plain", "output_type": "plain"})
    api_ok("POST", f"projects/{project}/deployments/{deployment}/versions",
           {"version": version, "environment": "python3-11", "instance_type_group_name": "512mb"})
    return project, deployment, version


class Watch:
    """Everything a page fetched, logged as an error, or threw."""

    HTTP_ERROR = re.compile(r"status of (\d{3})")

    def __init__(self, page):
        self.page = page
        self.urls = []
        self.console_errors = []
        self.page_errors = []
        self.allowed_statuses = set()
        self.allowed_failures = []
        self.error_responses = []
        page.on("request", lambda request: self.urls.append(request.url))
        page.on("response", self._response)
        page.on("websocket", lambda socket: self.urls.append(socket.url))
        page.on("console", self._console)
        page.on("pageerror", lambda error: self.page_errors.append(str(error)))

    def _response(self, response):
        if response.status >= 400:
            self.error_responses.append(f"{response.request.method} {response.url} -> {response.status}")

    def _console(self, message):
        if message.type == "error":
            self.console_errors.append((message.text, message.location.get("url", "")))

    def allow_http_errors(self, *statuses):
        """Chromium itself logs "Failed to load resource: the server responded
        with a status of 401" for an API answer the test provokes on purpose."""
        self.allowed_statuses.update(statuses)

    def allow_failed_loads(self, url_pattern):
        """Chromium's "Failed to load resource: ..." for the calls to URLs
        matching `url_pattern` (a regex, matched in full) only: the ones a
        test breaks on purpose (aborted, or answered with an error)."""
        self.allowed_failures.append(re.compile(url_pattern))

    def outside(self):
        # data: and blob: URLs are made in the page, not fetched.
        return [url for url in self.urls
                if not (url == BASE or url.startswith(BASE + "/") or url.startswith(("data:", "blob:")))]

    def unexpected_console_errors(self):
        errors = []
        for text, url in self.console_errors:
            status = self.HTTP_ERROR.search(text)
            if status and int(status.group(1)) in self.allowed_statuses:
                continue
            if text.startswith("Failed to load resource:") and any(
                    pattern.fullmatch(url) for pattern in self.allowed_failures):
                continue
            errors.append(f"{text} ({url})" if url else text)
        return errors

    def assert_clean(self):
        assert self.outside() == [], f"fetched from outside the server ({BASE})"
        assert self.unexpected_console_errors() == [], \
            f"console errors; the page's failed requests: {self.error_responses}"
        assert self.page_errors == [], "uncaught errors in the page"


@contextlib.contextmanager
def watched(browser, **context_options):
    """A page in a fresh context, checked by a Watch once it is closed."""
    context = browser.new_context(**context_options)
    context.set_default_timeout(UI_TIMEOUT_MS)
    watch = Watch(context.new_page())
    try:
        yield watch
    finally:
        context.close()
    watch.assert_clean()


@pytest.fixture
def watch(browser):
    with watched(browser, **DESKTOP) as watch:
        yield watch


@pytest.fixture
def page(watch):
    return watch.page


# --- helpers for pages ----------------------------------------------------------

def shot(page, name):
    path = ARTEFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    step(f"screenshot {path}")


def h1(page):
    return page.get_by_role("heading", level=1)


def button(scope, name):
    return scope.get_by_role("button", name=name, exact=True)


def row_button(row, name):
    """A button in a table row: its accessible name may add what it acts on
    ("Logs (revision 1a2b3c4d)", "Delete API_KEY")."""
    return row.get_by_role("button", name=re.compile(rf"^{re.escape(name)}\b"))


def label(page, text):
    return page.get_by_label(text, exact=True)


def section_of(page, title):
    """The page's section headed (h2) `title`."""
    return page.locator("section").filter(
        has=page.get_by_role("heading", level=2, name=title, exact=True))


def loaded(page):
    """The page's data has arrived: no "Loading…" placeholder is left."""
    expect(page.get_by_text("Loading…")).to_have_count(0)


def table(page, *columns):
    """The table that has all of these column headers."""
    found = page.get_by_role("table")
    for column in columns:
        found = found.filter(has=page.get_by_role("columnheader", name=column, exact=True))
    return found


def data_rows(page, tab):
    return tab.get_by_role("row").filter(has=page.locator("td"))


def row_with(page, tab, text):
    """The data row with a cell whose whole text is `text`."""
    cell = page.locator("td, th").filter(has_text=re.compile(rf"^\s*{re.escape(text)}\s*$"))
    return data_rows(page, tab).filter(has=cell)


def cell(tab, row, column):
    headers = [text.strip() for text in tab.get_by_role("columnheader").all_inner_texts()]
    assert column in headers, f"no column {column!r} in {headers}"
    return row.locator(":scope > td, :scope > th").nth(headers.index(column))


def api_url_pattern(*segments, query=False):
    """A regex for the full URL of the API path made of `segments` (escaped as
    the page escapes them), optionally with a query string."""
    path = "/".join(urllib.parse.quote(segment, safe="") for segment in segments)
    return re.escape(f"{BASE}/v2.1/{path}") + (r"(\?.*)?" if query else "")


def sign_in(page, token, expect_heading="Projects"):
    page.goto(BASE + "/")
    expect(h1(page)).to_have_text("Sign in")
    label(page, "API token").fill(token)
    button(page, "Sign in").click()
    expect(h1(page)).to_have_text(expect_heading)


def open_route(page, route, heading):
    page.goto(f"{BASE}/#/{route}")
    expect(h1(page)).to_have_text(heading)
    loaded(page)


def version_route(project, deployment, version):
    return (f"projects/{project}/deployments/{deployment}/versions/{version}",
            f"{deployment} / {version}")


def builds_table(page):
    return table(page, "Revision", "Created", "Build status", "Trigger", "Error")


def build_logs(page):
    return page.get_by_role("log", name="Build logs")


def upload_package(page, zip_path):
    """Uploads `zip_path` with the version page's form; returns the API's
    answer to the upload ({"revision": ..., "build": ...})."""
    label(page, "Deployment zip").set_input_files(str(zip_path))
    with page.expect_response(lambda response: response.request.method == "POST"
                              and response.url.endswith("/revisions")) as answer:
        button(page, "Upload").click()
    assert answer.value.status == 201, answer.value.text()
    return answer.value.json()


def row_of_build(page, revision, trigger="Deployment file upload"):
    """The row of the builds table for `revision` (its id) started by `trigger`."""
    builds = builds_table(page)
    return row_with(page, builds, revision[:8]).filter(
        has=page.locator("td").filter(has_text=re.compile(rf"^\s*{re.escape(trigger)}\s*$")))


def expect_build_success(page, row, timeout=BUILD_TIMEOUT_MS):
    """The build in `row` ends, in success, its log following it to the end."""
    status = cell(builds_table(page), row, "Build status")
    logs = build_logs(page)
    expect(status).to_have_text(re.compile(r"^(success|failed|cancelled)$"), timeout=timeout)
    expect(status, f"the build's log: {logs.inner_text()}").to_have_text("success")
    # The outcome line is written just after the outcome is published.
    expect(logs).to_contain_text("Build succeeded")
    return logs


def variables_table(page):
    return table(page, "Name", "Value", "Secret", "Scope")


def add_variable(page, name, value, secret=False):
    label(page, "Variable name").fill(name)
    label(page, "Value").fill(value)
    label(page, "Secret").set_checked(secret)
    button(page, "Add variable").click()
    row = row_with(page, variables_table(page), name)
    expect(row).to_have_count(1)
    return row


def api_names(path):
    answer = api_ok("GET", path)
    items = answer["results"] if isinstance(answer, dict) else answer
    return [item["name"] for item in items]


def choose(page, field, wanted, listed_by_api):
    """Selects `wanted` in the select labelled `field`, after checking that it
    offers every name the API lists."""
    select = label(page, field)
    try:
        expect(select.locator(f"option[value='{wanted}']")).to_be_attached()
    except AssertionError:
        pass  # the assertion below says what it offers instead
    options = select.locator("option")
    values = options.evaluate_all("options => options.map(o => o.value)")
    missing = [name for name in listed_by_api if name not in values]
    assert wanted in listed_by_api and not missing, (
        f"{field!r} offers {options.all_inner_texts()} (values {values}); "
        f"the API lists {listed_by_api}")
    select.select_option(wanted)


# Notes in the page if the secret's value is ever written into the DOM, even
# for a moment between two checks (until the document is replaced).
SECRET_WATCH = """secret => {
  const seen = (text) => typeof text === 'string' && text.includes(secret);
  const check = (node) => {
    if (node.nodeType === Node.TEXT_NODE) return seen(node.data);
    if (node.nodeType === Node.ELEMENT_NODE) return seen(node.outerHTML);
    return false;
  };
  if (seen(document.documentElement.outerHTML)) window.__secretSeen = 'already in the page';
  new MutationObserver((mutations) => {
    for (const m of mutations) {
      if ((m.type === 'characterData' && seen(m.target.data))
          || (m.type === 'attributes' && seen(m.target.getAttribute(m.attributeName)))
          || (m.type === 'childList' && [...m.addedNodes].some(check))) {
        window.__secretSeen = window.__secretSeen
          || `${m.type} of <${(m.target.nodeName || '').toLowerCase()}> at ${location.hash}`;
      }
    }
  }).observe(document, {subtree: true, childList: true, characterData: true, attributes: true});
}"""


def watch_for_secret(page, secret):
    page.evaluate(SECRET_WATCH, secret)


def assert_secret_hidden(page, secret, when):
    """The secret's value is nowhere in the page: not in its HTML, its text,
    a form field's current value, or the browser's storage."""
    assert secret not in page.content(), f"the secret's value is in the page's HTML {when}"
    assert secret not in page.evaluate("() => document.body.innerText"), \
        f"the secret's value is in the page's text {when}"
    fields = page.evaluate(
        "() => [...document.querySelectorAll('input, textarea, select')].map(e => e.value)")
    assert not any(secret in value for value in fields), \
        f"the secret's value is still in a form field {when}"
    storage = page.evaluate("() => JSON.stringify([{...sessionStorage}, {...localStorage}])")
    assert secret not in storage, f"the secret's value is in the browser's storage {when}"
    seen = page.evaluate("() => window.__secretSeen === undefined ? null : window.__secretSeen")
    assert seen is None, f"the secret's value was written into the page ({seen}), seen {when}"


# --- the deployment package ---------------------------------------------------

DEPLOYMENT_CODE = '''\
import hashlib
import os


class Deployment:
    def __init__(self, base_directory, context):
        print("dashboard test deployment: started")

    def request(self, data):
        # Derived from the input and from three variables (one per scope);
        # the secret is compared by its hash, so the result never shows it.
        answer = "|".join([data["text"].upper(), os.environ["GREETING"],
                           os.environ["PROJECT_WORD"], os.environ["DEPLOYMENT_WORD"]])
        secret = os.environ.get("API_KEY", "")
        return {"answer": answer,
                "secret_ok": hashlib.sha256(secret.encode()).hexdigest() == "%s"}
'''


PLAIN_CODE = '''\
class Deployment:
    def __init__(self, base_directory, context):
        pass

    def request(self, data):
        return data
'''

# Imported by a build's validation stage: it sits in `validating` for this
# long, unless cancelled (well below the server's 120 s import timeout).
SLEEPING_CODE = "import time\n\ntime.sleep(100)\n\n\n" + PLAIN_CODE


def write_package(path, code):
    """deployment.py in a top-level folder, as the UbiOps template has it; no
    requirements, so the build downloads nothing."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("deployment_package/deployment.py", code)
    path.write_bytes(buffer.getvalue())
    return path


def package_zip(path, secret):
    return write_package(path, DEPLOYMENT_CODE % hashlib.sha256(secret.encode()).hexdigest())


# --- tests ----------------------------------------------------------------------

def test_sign_in_refuses_a_wrong_token_then_accepts_the_admin_token(page, watch, projects):
    watch.allow_http_errors(401)
    wrong = secrets.token_hex(32)
    status, answer = api("GET", "projects", token=wrong)
    assert status == 401, answer

    page.goto(BASE + "/")
    expect(h1(page)).to_have_text("Sign in")
    expect(button(page, "Sign out")).to_have_count(0)
    shot(page, "01-signin")

    label(page, "API token").fill(wrong)
    button(page, "Sign in").click()
    expect(page.get_by_role("alert")).to_have_text(answer["error"])
    expect(h1(page)).to_have_text("Sign in")
    step(f"a wrong token: {answer['error']!r}, still on Sign in")

    label(page, "API token").fill(ADMIN_TOKEN)
    button(page, "Sign in").click()
    expect(h1(page)).to_have_text("Projects")
    for name in projects:
        expect(page.get_by_role("link", name=name, exact=True)).to_be_visible()
    expect(button(page, "Sign out")).to_be_visible()
    shot(page, "02-projects")


def test_deployment_from_the_page_to_a_request(page, projects, tmp_path):
    """The issue's scenario, in order, through the page only."""
    project = PROJECT
    deployment, version = SCENARIO_DEPLOYMENT, SCENARIO_VERSION
    project_word = "proj-" + secrets.token_hex(3)
    deployment_word = "dep-" + secrets.token_hex(3)
    greeting = "hello-" + secrets.token_hex(4)
    secret = "s3cret-" + secrets.token_hex(16)
    zip_path = package_zip(tmp_path / "greeter.zip", secret)

    sign_in(page, ADMIN_TOKEN)
    page.get_by_role("link", name=project, exact=True).click()
    expect(h1(page)).to_have_text(project)
    loaded(page)
    # A project without deployments may show a sentence instead of an empty table.
    expect(page.get_by_role("heading", level=2, name="Deployments", exact=True)).to_be_visible()

    step("a project variable, through the project page")
    row = add_variable(page, "PROJECT_WORD", project_word)
    expect(row).to_contain_text(project_word)
    expect(row).to_contain_text("this project")

    step("a structured deployment, through the form")
    label(page, "Name").fill(deployment)
    label(page, "Description").fill("Made by the browser test")
    label(page, "Input type").select_option("structured")
    label(page, "Output type").select_option("structured")
    label(page, "Input fields").fill("text: string")
    label(page, "Output fields").fill("answer: string\nsecret_ok: bool")
    label(page, "Labels").fill("team=web, purpose=browser-test")
    button(page, "Create deployment").click()
    expect(h1(page)).to_have_text(deployment)
    expect(page).to_have_url(re.compile(rf"#/projects/{project}/deployments/{deployment}$"))
    loaded(page)
    details = page.locator("dl")
    expect(details).to_contain_text("structured")
    expect(details).to_contain_text("purpose")

    step("a deployment variable; the project's shows as inherited")
    row = add_variable(page, "DEPLOYMENT_WORD", deployment_word)
    expect(row).to_contain_text("this deployment")
    expect(row_with(page, variables_table(page), "PROJECT_WORD")).to_contain_text("inherited from project")

    step("a version, through the form")
    label(page, "Version name").fill(version)
    # The selects offer what the API lists; the Python this machine has, and
    # the smallest instance type.
    choose(page, "Environment", "python3-11", api_names(f"projects/{project}/environments"))
    choose(page, "Instance type", "512mb", api_names(f"projects/{project}/instance-types"))
    button(page, "Create version").click()
    expect(h1(page)).to_have_text(f"{deployment} / {version}")
    expect(page).to_have_url(re.compile(rf"#/projects/{project}/deployments/{deployment}/versions/{version}$"))
    loaded(page)

    step("a plain and a secret variable at the version scope")
    watch_for_secret(page, secret)
    row = add_variable(page, "GREETING", greeting)
    expect(row).to_contain_text(greeting)
    expect(row).to_contain_text("this version")
    row = add_variable(page, "API_KEY", secret, secret=True)
    expect(row).to_contain_text(SECRET_MASK)
    expect(row).to_contain_text("this version")
    assert_secret_hidden(page, secret, "after adding it")
    assert greeting in page.content(), "the plain variable's value is shown"
    variables = variables_table(page)
    expect(row_with(page, variables, "PROJECT_WORD")).to_contain_text("inherited from project")
    expect(row_with(page, variables, "DEPLOYMENT_WORD")).to_contain_text("inherited from deployment")

    step("upload the zip; the build's status and logs follow it live")
    upload_package(page, zip_path)
    builds = builds_table(page)
    build_row = data_rows(page, builds)
    expect(build_row).to_have_count(1)
    expect(build_logs(page)).to_be_visible()
    logs = expect_build_success(page, build_row)
    expect(logs).to_contain_text("Extracted 1 files")
    expect(logs).to_contain_text("Validating: importing")
    lines = [line for line in logs.inner_text().splitlines() if line.strip()]
    assert len(lines) >= 4, lines
    step(f"build success, {len(lines)} log lines")
    for name in ("Logs", "Rebuild", "Download"):
        expect(row_button(build_row, name)).to_be_visible()
    expect(row_button(build_row, "Cancel build")).to_have_count(0)
    shot(page, "05-version-build-logs")
    assert_secret_hidden(page, secret, "after the build")

    step("a test request on the version")
    label(page, "text").fill("browser")
    button(page, "Send request").click()
    result = page.get_by_role("status", name="Request result")
    expected = f"BROWSER|{greeting}|{project_word}|{deployment_word}"
    expect(result).to_contain_text(expected, timeout=REQUEST_TIMEOUT_MS)
    expect(result).to_contain_text("completed")
    expect(result).to_contain_text(re.compile(r'"secret_ok":\s*true'))
    shot(page, "06-request-result")
    recent = table(page, "Id", "Status", "Created", "Version")
    expect(data_rows(page, recent).filter(has_text="completed")).to_have_count(1)
    expect(data_rows(page, recent).first).to_contain_text(version)
    assert_secret_hidden(page, secret, "after a request")

    step("the version page loaded afresh")
    page.reload()
    watch_for_secret(page, secret)
    expect(h1(page)).to_have_text(f"{deployment} / {version}")
    loaded(page)
    expect(row_with(page, variables_table(page), "API_KEY")).to_contain_text(SECRET_MASK)
    expect(cell(builds, data_rows(page, builds), "Build status")).to_have_text("success")
    assert_secret_hidden(page, secret, "after a reload")

    step("the deployment page: versions, recent requests, audit trail")
    page.get_by_role("navigation", name="Breadcrumb").get_by_role("link", name=deployment, exact=True).click()
    expect(h1(page)).to_have_text(deployment)
    loaded(page)
    versions = table(page, "Version", "Status", "Environment", "Instance type", "Instances", "Active revision")
    expect(row_with(page, versions, version)).to_have_count(1)
    recent = table(page, "Id", "Status", "Created", "Version")
    expect(data_rows(page, recent).filter(has_text="completed")).to_have_count(1)
    audit = table(page, "Date", "User", "Action", "Event")
    expect(audit).to_be_visible()
    expect(data_rows(page, audit).first).to_be_visible()
    expect(audit).to_contain_text(ADMIN_EMAIL)
    step(f"audit trail: {data_rows(page, audit).count()} events")
    shot(page, "04-deployment")
    assert_secret_hidden(page, secret, "on the deployment page")

    step("the project page lists the deployment with its default version")
    page.get_by_role("navigation", name="Breadcrumb").get_by_role("link", name=project, exact=True).click()
    expect(h1(page)).to_have_text(project)
    loaded(page)
    deployments = table(page, "Name", "Labels", "Default version", "Versions")
    row = row_with(page, deployments, deployment)
    expect(row).to_have_count(1)
    expect(cell(deployments, row, "Default version")).to_have_text(version)
    expect(row.get_by_role("link", name=deployment, exact=True)).to_be_visible()
    shot(page, "03-project")
    assert_secret_hidden(page, secret, "on the project page")


def test_sign_out_leaves_no_token(page, projects):
    sign_in(page, ADMIN_TOKEN)
    button(page, "Sign out").click()
    expect(h1(page)).to_have_text("Sign in")
    expect(button(page, "Sign out")).to_have_count(0)
    stored = page.evaluate("() => JSON.stringify([{...sessionStorage}, {...localStorage}])")
    assert ADMIN_TOKEN not in stored, stored
    assert not any(ADMIN_TOKEN in cookie["value"] for cookie in page.context.cookies())
    # Signed out for good: a project's address shows Sign in.
    page.goto(f"{BASE}/#/projects/{PROJECT}")
    page.reload()
    expect(h1(page)).to_have_text("Sign in")


def test_a_project_limited_token_sees_only_its_project(page, watch, projects):
    watch.allow_http_errors(403)
    status, answer = api("GET", f"projects/{OTHER_PROJECT}", token=LIMITED_TOKEN)
    assert status == 403, answer

    sign_in(page, LIMITED_TOKEN)
    loaded(page)
    expect(page.get_by_role("link", name=PROJECT, exact=True)).to_be_visible()
    expect(page.get_by_role("link", name=OTHER_PROJECT, exact=True)).to_have_count(0)
    expect(page.get_by_role("link", name=WALK_PROJECT, exact=True)).to_have_count(0)
    shot(page, "07-limited-projects")

    page.goto(f"{BASE}/#/projects/{OTHER_PROJECT}")
    # Each part of the page that failed to load may show the error: all alike.
    alerts = page.get_by_role("alert")
    expect(alerts.first).to_have_text(answer["error"])
    for text in alerts.all_inner_texts():
        assert text.strip() == answer["error"], alerts.all_inner_texts()
    shot(page, "08-limited-forbidden")


def walk_pages(project, deployment):
    """(route, heading) of the four main pages, for the walk project."""
    return [
        ("projects", "Projects"),
        (f"projects/{project}", project),
        (f"projects/{project}/deployments/{deployment}", deployment),
        version_route(project, deployment, "v1"),
    ]


def test_pages_fetch_nothing_from_outside_and_log_no_errors(page, watch, walk_project):
    project, deployment = walk_project
    sign_in(page, ADMIN_TOKEN)
    loaded(page)
    for route, heading in walk_pages(project, deployment):
        open_route(page, route, heading)
        page.wait_for_load_state("networkidle")
        # An admin's pages of a healthy project show no API error.
        expect(page.get_by_role("alert")).to_have_count(0)
    assert any("/v2.1/" in url for url in watch.urls), watch.urls
    step(f"{len(watch.urls)} requests, all to {BASE}")
    watch.assert_clean()


def test_cancel_a_build_then_rebuild_and_download_a_revision(page, builds_version, tmp_path):
    """One test, in this order: the server has one build worker, and the
    builds after the cancelled one show that it is free again."""
    project, deployment, version = builds_version
    sleeping_zip = write_package(tmp_path / "sleeping.zip", SLEEPING_CODE)
    plain_zip = write_package(tmp_path / "plain.zip", PLAIN_CODE)
    sign_in(page, ADMIN_TOKEN)
    open_route(page, *version_route(project, deployment, version))
    builds = builds_table(page)

    step("a build that sits in validating (its import sleeps) is cancelled from its row")
    sleeping = upload_package(page, sleeping_zip)
    row = row_of_build(page, sleeping["revision"])
    expect(row).to_have_count(1)
    status = cell(builds, row, "Build status")
    expect(status).to_have_text("validating", timeout=BUILD_TIMEOUT_MS)
    expect(build_logs(page)).to_contain_text("Validating: importing")
    row_button(row, "Cancel build").click()
    expect(status).to_have_text("cancelled")
    expect(row_button(row, "Cancel build")).to_have_count(0)
    expect(page.get_by_role("alert")).to_have_count(0)

    step("the next upload builds at once: the cancel freed the worker")
    plain = upload_package(page, plain_zip)
    row = row_of_build(page, plain["revision"])
    expect(row).to_have_count(1)
    expect_build_success(page, row, timeout=FREED_WORKER_TIMEOUT_MS)
    expect(cell(builds, row_of_build(page, sleeping["revision"]), "Build status")).to_have_text("cancelled")

    step("Rebuild: a new build of the revision, triggered as a rebuild, followed to success")
    with page.expect_response(lambda response: response.request.method == "POST"
                              and response.url.endswith("/rebuild")) as answer:
        row_button(row, "Rebuild").click()
    rebuild = answer.value.json()
    assert answer.value.status == 201, rebuild
    rebuilt = row_of_build(page, plain["revision"], trigger="Rebuild")
    expect(rebuilt).to_have_count(1)
    expect(data_rows(page, builds)).to_have_count(3)
    # The log region follows the new build.
    expect(section_of(page, "Build logs")).to_contain_text(f"Build {rebuild['id']}")
    logs = expect_build_success(page, rebuilt)
    expect(logs).to_contain_text("Validating: importing")
    expect(cell(builds, row, "Build status")).to_have_text("success")

    step("Download: the very zip that was uploaded")
    with page.expect_download() as download:
        row_button(rebuilt, "Download").click()
    saved = tmp_path / "downloaded.zip"
    download.value.save_as(saved)
    assert download.value.suggested_filename == plain_zip.name
    assert zipfile.is_zipfile(saved)
    assert hashlib.sha256(saved.read_bytes()).hexdigest() == \
        hashlib.sha256(plain_zip.read_bytes()).hexdigest(), "the download differs from the upload"
    expect(page.get_by_role("alert")).to_have_count(0)
    shot(page, "10-cancel-rebuild")


def test_an_unreachable_api_fails_only_its_own_section(page, watch, walk_project):
    project, deployment = walk_project
    versions = api_url_pattern("projects", project, "deployments", deployment, "versions")
    watch.allow_failed_loads(versions)
    page.route(re.compile(versions + "$"), lambda route: route.abort())
    sign_in(page, ADMIN_TOKEN)
    open_route(page, f"projects/{project}/deployments/{deployment}", deployment)
    expect(section_of(page, "Versions").get_by_role("alert")).to_have_text("The server could not be reached")
    expect(page.get_by_role("alert")).to_have_count(1)
    expect(row_with(page, variables_table(page), "MODEL")).to_have_count(1)
    expect(data_rows(page, table(page, "Date", "User", "Action", "Event")).first).to_be_visible()
    expect(page.locator("dl")).to_contain_text("structured")


def test_a_slow_call_keeps_its_section_loading_and_the_others_render(page, walk_project):
    """The audit trail's call is held until the rest of the page is checked,
    then let through: no fixed delay to guess."""
    project, deployment = walk_project
    held = []
    page.route(re.compile(api_url_pattern("projects", project, "deployments", deployment, "audit", query=True)),
               lambda route: held.append(route))
    sign_in(page, ADMIN_TOKEN)
    page.goto(f"{BASE}/#/projects/{project}/deployments/{deployment}")
    expect(h1(page)).to_have_text(deployment)
    audit = section_of(page, "Audit trail")
    expect(audit.get_by_text("Loading…")).to_be_visible()
    expect(row_with(page, table(page, "Version", "Status", "Environment"), "v1")).to_have_count(1)
    expect(row_with(page, variables_table(page), "MODEL")).to_have_count(1)
    expect(page.locator("dl")).to_contain_text("structured")
    # Everything but the audit trail has arrived.
    expect(page.get_by_text("Loading…")).to_have_count(1)
    expect(audit.get_by_text("Loading…")).to_be_visible()
    assert len(held) == 1, f"the audit trail's call was not held: {held}"
    held[0].continue_()
    expect(data_rows(page, table(page, "Date", "User", "Action", "Event")).first).to_be_visible()
    loaded(page)
    expect(page.get_by_role("alert")).to_have_count(0)


def test_a_form_shows_the_api_error_and_stays(page, watch, walk_project):
    project, _ = walk_project
    created = api_url_pattern("projects", project, "deployments")
    watch.allow_failed_loads(created)
    sign_in(page, ADMIN_TOKEN)
    open_route(page, f"projects/{project}", project)
    form = section_of(page, "Create deployment")
    label(page, "Name").fill("Bad Name!")
    with page.expect_response(lambda response: response.request.method == "POST"
                              and re.fullmatch(created, response.url)) as answer:
        button(page, "Create deployment").click()
    # The same call, made here: the page must show its error word for word.
    status, expected = api("POST", f"projects/{project}/deployments", answer.value.request.post_data_json)
    assert answer.value.status == status and 400 <= status < 500, (answer.value.status, status, expected)
    expect(form.get_by_role("alert")).to_have_text(expected["error"])
    expect(page).to_have_url(f"{BASE}/#/projects/{project}")
    expect(h1(page)).to_have_text(project)
    expect(label(page, "Name")).to_have_value("Bad Name!")
    expect(button(page, "Create deployment")).to_be_enabled()
    step(f"the form's alert: {expected['error']!r}")


def test_a_token_revoked_while_signed_in_returns_to_sign_in(page, watch, projects):
    # The project page's calls, made after the revocation, are refused.
    watch.allow_failed_loads(api_url_pattern("projects", PROJECT) + r"/.*")
    sign_in(page, REVOCABLE_TOKEN)
    loaded(page)
    expect(page.get_by_role("link", name=PROJECT, exact=True)).to_be_visible()
    environment = {key: value for key, value in os.environ.items() if key != "DATABASE_URL"}
    revoked = subprocess.run(
        [SERVER_BIN, "token", "revoke", "--data-dir", DATA_DIR, "--email", REVOCABLE_EMAIL],
        env=environment, capture_output=True, text=True, timeout=120, check=False)
    assert revoked.returncode == 0, revoked.stderr
    status, answer = api("GET", "projects", token=REVOCABLE_TOKEN)
    assert status == 401, (status, answer)

    page.get_by_role("link", name=PROJECT, exact=True).click()
    expect(h1(page)).to_have_text("Sign in")
    expect(button(page, "Sign out")).to_have_count(0)
    stored = page.evaluate("() => JSON.stringify([{...sessionStorage}, {...localStorage}])")
    assert REVOCABLE_TOKEN not in stored, stored


def test_sign_in_with_the_keyboard_only(page, projects):
    page.goto(BASE + "/")
    expect(h1(page)).to_have_text("Sign in")
    field = label(page, "API token")
    for presses in range(1, 11):
        page.keyboard.press("Tab")
        if field.evaluate("element => element === document.activeElement"):
            break
    expect(field).to_be_focused()
    step(f"the token field reached with {presses} Tab")
    page.keyboard.type(ADMIN_TOKEN)
    page.keyboard.press("Enter")
    expect(h1(page)).to_have_text("Projects")
    expect(page.get_by_role("link", name=PROJECT, exact=True)).to_be_visible()


# Elements that stick out to the right of a screen `width` wide, outside any
# element that scrolls sideways (a wide table in its own scroller is fine).
OVERFLOWING = """width => {
  const scrolls = (e) => ['auto', 'scroll', 'hidden', 'clip'].includes(getComputedStyle(e).overflowX);
  const out = [];
  for (const e of document.body.querySelectorAll('*')) {
    let parent = e.parentElement, inScroller = false;
    for (; parent && parent !== document.body; parent = parent.parentElement) {
      if (scrolls(parent)) { inScroller = true; break; }
    }
    const box = e.getBoundingClientRect();
    if (!inScroller && box.width > 0 && box.right > width + 0.5) {
      out.push(`<${e.tagName.toLowerCase()} class="${e.className}"> right ${Math.round(box.right)}: `
               + (e.textContent || '').trim().slice(0, 40));
    }
  }
  return out;
}"""


def test_the_version_page_fits_a_phone(browser, projects):
    route, heading = version_route(PROJECT, SCENARIO_DEPLOYMENT, SCENARIO_VERSION)
    status, _ = api("GET", route)
    assert status == 200, "the version is made by test_deployment_from_the_page_to_a_request: run it first"
    with watched(browser, **PHONE) as watch:
        page = watch.page
        sign_in(page, ADMIN_TOKEN)
        open_route(page, route, heading)
        row = data_rows(page, builds_table(page)).first
        row_button(row, "Logs").tap()
        expect(build_logs(page)).to_contain_text("Build succeeded")
        shot(page, "09-phone-version")
        # A phone widens the layout to what sticks out (innerWidth grows with
        # it): the screen's width is the measure.
        width = PHONE["viewport"]["width"]
        sizes = page.evaluate("() => ({scrollWidth: document.documentElement.scrollWidth, innerWidth})")
        assert sizes["scrollWidth"] <= width and sizes["innerWidth"] == width, \
            f"the page is wider than the screen ({width} px): {sizes}; {page.evaluate(OVERFLOWING, width)}"


UNLABELLED = """() => [...document.querySelectorAll('input, select, textarea')]
  .filter(e => e.type !== 'hidden')
  .filter(e => ![...e.labels].some(l => l.textContent.trim())
               && !(e.getAttribute('aria-label') || '').trim())
  .map(e => e.outerHTML)"""


def labelled_controls(page, where):
    """How many form controls the page has, after checking each has a label."""
    assert page.evaluate(UNLABELLED) == [], f"form controls without a label on {where}"
    return page.locator("input, select, textarea").count()


def test_every_form_control_has_a_label(page, walk_project):
    project, deployment = walk_project
    page.goto(BASE + "/")
    expect(h1(page)).to_have_text("Sign in")
    counted = {"signin": labelled_controls(page, "Sign in")}
    sign_in(page, ADMIN_TOKEN)
    for route, heading in walk_pages(project, deployment):
        open_route(page, route, heading)
        counted[route] = labelled_controls(page, f"#/{route}")
    step(f"form controls, all labelled: {counted}")
    assert counted[version_route(project, deployment, "v1")[0]] > 0, counted


MEASURE_RUNS = 3
TABLE_SHOWN = """() => {
  const table = [...document.querySelectorAll('table')].find(t =>
    [...t.querySelectorAll('th')].some(th => th.textContent.trim() === 'Default version'));
  if (!table || !table.querySelector('td')) return null;
  const box = table.getBoundingClientRect();
  return box.width > 0 && box.height > 0 ? performance.now() : null;
}"""


def test_deployments_page_weight_and_first_render(browser, walk_project):
    """A cold load (new context: empty cache) of a project's page, signed in,
    until its Deployments table shows: bytes of every response and time to
    first render, printed and written to the artefacts directory."""
    project, _ = walk_project
    # What the page keeps in sessionStorage once signed in, put back before
    # the measured loads so that they need no sign-in.
    context = browser.new_context()
    page = context.new_page()
    sign_in(page, ADMIN_TOKEN)
    stored = page.evaluate("() => ({...sessionStorage})")
    context.close()
    restore = (f"if (location.origin === {json.dumps(BASE)}) "
               f"for (const [k, v] of Object.entries({json.dumps(stored)})) sessionStorage.setItem(k, v);")

    runs = []
    for _ in range(MEASURE_RUNS):
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        context.add_init_script(restore)
        page = context.new_page()
        finished, failed = [], []
        page.on("requestfinished", lambda request: finished.append(request))
        page.on("requestfailed", lambda request: failed.append(request))
        page.goto(f"{BASE}/#/projects/{project}")
        table_ms = page.wait_for_function(TABLE_SHOWN, polling="raf", timeout=UI_TIMEOUT_MS).json_value()
        expect(page.get_by_role("heading", level=2, name="Deployments", exact=True)).to_be_visible()
        page.wait_for_load_state("networkidle")
        paint = page.evaluate("""() => Object.fromEntries(performance.getEntriesByType('paint')
                                    .map(e => [e.name, e.startTime]))""")
        navigation = page.evaluate("""() => { const n = performance.getEntriesByType('navigation')[0];
                                      return {domContentLoaded: n.domContentLoadedEventEnd, load: n.loadEventEnd}; }""")
        resources = []
        for request in finished:
            response = request.response()
            sizes = request.sizes()
            body = len(response.body()) if response is not None else 0
            resources.append({
                "url": request.url[len(BASE):], "status": response.status if response else None,
                "body_bytes": body, "encoded_body_bytes": sizes["responseBodySize"],
                "transferred_bytes": sizes["responseBodySize"] + sizes["responseHeadersSize"],
                "content_encoding": (response.headers.get("content-encoding") if response else None),
            })
        context.close()
        assert not failed, [request.url for request in failed]
        runs.append({
            "requests": len(resources),
            "api_requests": sum("/v2.1/" in r["url"] for r in resources),
            "body_bytes": sum(r["body_bytes"] for r in resources),
            "transferred_bytes": sum(r["transferred_bytes"] for r in resources),
            "first_paint_ms": paint.get("first-paint"),
            "first_contentful_paint_ms": paint.get("first-contentful-paint"),
            "deployments_table_visible_ms": table_ms,
            "dom_content_loaded_ms": navigation["domContentLoaded"],
            "resources": resources,
        })

    def median(key):
        values = [run[key] for run in runs if run[key] is not None]
        return statistics.median(values) if values else None

    summary = {key: median(key) for key in (
        "requests", "api_requests", "body_bytes", "transferred_bytes", "first_paint_ms",
        "first_contentful_paint_ms", "deployments_table_visible_ms", "dom_content_loaded_ms")}
    text = "\n".join([
        f"page: {BASE}/#/projects/{project} (3 deployments), signed in, empty cache; "
        f"median of {MEASURE_RUNS} loads, Chromium {browser.version} headless, {os.cpu_count()} CPUs",
        f"requests: {summary['requests']} ({summary['api_requests']} to the API)",
        f"page weight: {summary['body_bytes']} bytes of response bodies, "
        f"{summary['transferred_bytes']} bytes transferred (bodies as sent plus headers)",
        f"first contentful paint: {fmt_ms(summary['first_contentful_paint_ms'])}"
        f" (first paint {fmt_ms(summary['first_paint_ms'])})",
        f"Deployments table visible: {fmt_ms(summary['deployments_table_visible_ms'])}"
        f" (DOMContentLoaded {fmt_ms(summary['dom_content_loaded_ms'])})",
        "per response (first load): " + ", ".join(
            f"{r['url']} {r['body_bytes']} B" + (f" ({r['content_encoding']} {r['encoded_body_bytes']} B)"
                                                 if r["content_encoding"] else "")
            for r in runs[0]["resources"]),
    ]) + "\n"
    (ARTEFACTS / "measurements.txt").write_text(text)
    (ARTEFACTS / "measurements.json").write_text(json.dumps({"summary": summary, "runs": runs}, indent=2))
    print("\n" + text, flush=True)
    assert summary["first_contentful_paint_ms"] is not None, "no first-contentful-paint entry"


def fmt_ms(value):
    return "n/a" if value is None else f"{value:.0f} ms"
