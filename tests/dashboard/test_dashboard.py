"""The dashboard in headless Chromium (Debian's), driven by Playwright's sync API.

Started by tests/dashboard/run, which runs the server and passes its address,
the tokens and the project names in DASHBOARD_* variables. One browser per
session, a fresh context (cookies, storage, cache) per test. Everything the
scenario does happens through the page, as a person would do it; the API is
called directly only to create the projects the page starts from, and to
learn the exact error texts the page must show.

Selectors are the accessible names of the UI contract (headings, labels,
button names, roles), not CSS classes. Waits are web-first assertions with
explicit timeouts: no sleeps.
"""

import hashlib
import io
import json
import os
import re
import secrets
import statistics
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

import pytest
from playwright.sync_api import expect, sync_playwright

BASE = os.environ["DASHBOARD_BASE_URL"].rstrip("/")
ADMIN_TOKEN = os.environ["DASHBOARD_ADMIN_TOKEN"]
ADMIN_EMAIL = os.environ.get("DASHBOARD_ADMIN_EMAIL", "admin@localhost")
LIMITED_TOKEN = os.environ["DASHBOARD_LIMITED_TOKEN"]
PROJECT = os.environ.get("DASHBOARD_PROJECT", "dashboard-demo")
OTHER_PROJECT = os.environ.get("DASHBOARD_OTHER_PROJECT", "other-project")
# Made through the API only: the pages walked for errors, and the page measured.
WALK_PROJECT = "dashboard-walk"
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


class Watch:
    """Everything a page fetched, logged as an error, or threw."""

    HTTP_ERROR = re.compile(r"status of (\d{3})")

    def __init__(self, page):
        self.page = page
        self.urls = []
        self.console_errors = []
        self.page_errors = []
        self.allowed_statuses = set()
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
            self.console_errors.append(message.text)

    def allow_http_errors(self, *statuses):
        """Chromium itself logs "Failed to load resource: the server responded
        with a status of 401" for an API answer the test provokes on purpose."""
        self.allowed_statuses.update(statuses)

    def outside(self):
        # data: and blob: URLs are made in the page, not fetched.
        return [url for url in self.urls
                if not (url == BASE or url.startswith(BASE + "/") or url.startswith(("data:", "blob:")))]

    def unexpected_console_errors(self):
        errors = []
        for text in self.console_errors:
            status = self.HTTP_ERROR.search(text)
            if status and int(status.group(1)) in self.allowed_statuses:
                continue
            errors.append(text)
        return errors

    def assert_clean(self):
        assert self.outside() == [], f"fetched from outside the server ({BASE})"
        assert self.unexpected_console_errors() == [], \
            f"console errors; the page's failed requests: {self.error_responses}"
        assert self.page_errors == [], "uncaught errors in the page"


@pytest.fixture
def watch(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(UI_TIMEOUT_MS)
    watch = Watch(context.new_page())
    yield watch
    context.close()
    watch.assert_clean()


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


def package_zip(path, secret):
    """deployment.py in a top-level folder, as the UbiOps template has it; no
    requirements, so the build downloads nothing."""
    code = DEPLOYMENT_CODE % hashlib.sha256(secret.encode()).hexdigest()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("deployment_package/deployment.py", code)
    path.write_bytes(buffer.getvalue())
    return path


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
    deployment, version = "greeter", "v1"
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
    label(page, "Deployment zip").set_input_files(str(zip_path))
    button(page, "Upload").click()
    builds = table(page, "Revision", "Created", "Build status", "Trigger", "Error")
    build_row = data_rows(page, builds)
    expect(build_row).to_have_count(1)
    status = cell(builds, build_row, "Build status")
    logs = page.get_by_role("log", name="Build logs")
    expect(logs).to_be_visible()
    expect(status).to_have_text(re.compile(r"^(success|failed|cancelled)$"), timeout=BUILD_TIMEOUT_MS)
    expect(status, f"the build's log: {logs.inner_text()}").to_have_text("success")
    # The outcome line is written just after the outcome is published.
    expect(logs).to_contain_text("Build succeeded")
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


def test_pages_fetch_nothing_from_outside_and_log_no_errors(page, watch, walk_project):
    project, deployment = walk_project
    sign_in(page, ADMIN_TOKEN)
    loaded(page)
    for route, heading in [
        ("projects", "Projects"),
        (f"projects/{project}", project),
        (f"projects/{project}/deployments/{deployment}", deployment),
        (f"projects/{project}/deployments/{deployment}/versions/v1", f"{deployment} / v1"),
    ]:
        open_route(page, route, heading)
        page.wait_for_load_state("networkidle")
        # An admin's pages of a healthy project show no API error.
        expect(page.get_by_role("alert")).to_have_count(0)
    assert any("/v2.1/" in url for url in watch.urls), watch.urls
    step(f"{len(watch.urls)} requests, all to {BASE}")
    watch.assert_clean()


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
