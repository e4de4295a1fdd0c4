"""Checks ubiops-server behind nginx (started by tests/proxy/run).

1. The official client (ubiops 3.13.0) works through the proxy.
2. A large upload streams through: nginx spools nothing to disk and the
   server's peak memory stays far below the file's size.
3. X-Forwarded-For and X-Request-Id show up in the server's request log.
4. No response carries an absolute URL of another host than the proxy's.
5. The dashboard's page and every file it loads (followed through the
   scripts' imports) come through with their types and security headers.
"""

import http.client
import json
import os
import re
import sys
import tempfile
import threading
import time
import zipfile

import ubiops

PROXY_PORT = int(os.environ["PROXY_PORT"])
SERVER_PORT = int(os.environ["SERVER_PORT"])
SERVER_PID = int(os.environ["SERVER_PID"])
TOKEN = os.environ["TOKEN"]
WORK = os.environ["WORK"]
PROXY = f"http://127.0.0.1:{PROXY_PORT}"
LARGE_MIB = 320
# The server streams an upload to storage as it arrives, holding only the
# pieces in flight; its whole peak resident size must stay far below the file
# (it would exceed it if buffered).
PEAK_RSS_LIMIT_MIB = 160

failures = []
# Every response seen (status line, headers, body) for the absolute-URL check.
seen = []


def check(condition, message):
    print(("ok   " if condition else "FAIL ") + message)
    if not condition:
        failures.append(message)


def raw(method, path, body=None, headers=None):
    """One request through the proxy; records the response."""
    connection = http.client.HTTPConnection("127.0.0.1", PROXY_PORT, timeout=600)
    all_headers = {"Authorization": f"Token {TOKEN}"}
    all_headers.update(headers or {})
    connection.request(method, path, body=body, headers=all_headers)
    response = connection.getresponse()
    data = response.read()
    connection.close()
    seen.append((f"{method} {path}", response.status, response.getheaders(), data))
    return response.status, dict((k.lower(), v) for k, v in response.getheaders()), data


def deployment_zip(path):
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(
            "deployment.py",
            "class Deployment:\n"
            "    def __init__(self, base_directory, context):\n"
            "        pass\n\n"
            "    def request(self, data):\n"
            "        return data\n",
        )


def official_client(scratch):
    config = ubiops.Configuration(host=f"{PROXY}/v2.1", api_key={"Authorization": f"Token {TOKEN}"})
    config.temp_folder_path = scratch
    api = ubiops.CoreApi(ubiops.ApiClient(config))
    check(api.service_status().status == "ok", "client: service_status")
    api.projects_create(data=ubiops.ProjectCreate(name="proxied", organization_name="self-hosted"))
    api.deployments_create(
        project_name="proxied",
        data=ubiops.DeploymentCreate(name="echo", input_type="plain", output_type="plain", labels={"via": "nginx"}),
    )
    api.deployment_versions_create(
        project_name="proxied", deployment_name="echo", data=ubiops.DeploymentVersionCreate(version="v1")
    )
    api.deployment_environment_variables_create(
        project_name="proxied",
        deployment_name="echo",
        data=ubiops.EnvironmentVariableCreate(name="MODE", value="proxied", secret=False),
    )
    zip_path = os.path.join(scratch, "deployment.zip")
    deployment_zip(zip_path)
    uploaded = api.revisions_file_upload(
        project_name="proxied", deployment_name="echo", version="v1", file=zip_path
    )
    check(uploaded.success, "client: revisions_file_upload")
    deadline = time.time() + 60
    build = None
    while time.time() < deadline:
        build = api.builds_get(
            project_name="proxied", deployment_name="echo", version="v1", build_id=uploaded.build
        )
        if build.status in ("success", "failed"):
            break
        time.sleep(0.5)
    check(build is not None and build.status == "success", f"client: build finished ({build and build.status})")
    downloaded = api.revisions_file_download(
        project_name="proxied", deployment_name="echo", version="v1", revision_id=uploaded.revision
    )
    # This client version hands the file over as the raw response.
    content = downloaded.data if hasattr(downloaded, "data") else open(downloaded, "rb").read()
    with open(zip_path, "rb") as original:
        check(original.read() == content, "client: revisions_file_download returns the same bytes")
    listed = api.deployments_list(project_name="proxied", labels="via:nginx")
    check([d.name for d in listed] == ["echo"], "client: deployments_list with a label filter")
    try:
        api.deployments_get(project_name="proxied", deployment_name="missing")
        check(False, "client: a missing deployment raises")
    except ubiops.exceptions.ApiException as error:
        check(error.status == 404 and "error" in json.loads(error.body), "client: 404 with an error body")


def process_status(pid, field):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) // 1024  # kB -> MiB
    return 0


def large_upload():
    body_temp = os.path.join(WORK, "client_body_temp")
    spooled = set()
    uploading = threading.Event()

    def watch_nginx_temp():
        # nginx unlinks a body temp file as soon as it creates it, so look for
        # it among the open files of the nginx processes.
        while uploading.is_set():
            for pid in filter(str.isdigit, os.listdir("/proc")):
                try:
                    with open(f"/proc/{pid}/comm") as comm:
                        if comm.read().strip() != "nginx":
                            continue
                    for fd in os.listdir(f"/proc/{pid}/fd"):
                        target = os.readlink(f"/proc/{pid}/fd/{fd}")
                        if target.startswith(body_temp):
                            spooled.add(target)
                except OSError:
                    pass
            time.sleep(0.05)

    boundary = "proxy-large-upload"
    head = (
        f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"large.zip\"\r\n"
        "Content-Type: application/zip\r\n\r\n"
    ).encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    chunk = os.urandom(1024 * 1024)
    size = LARGE_MIB * 1024 * 1024

    def body():
        yield head
        yield b"PK\x03\x04" + chunk[4:]
        for _ in range(LARGE_MIB - 1):
            yield chunk
        yield tail

    uploading.set()
    watcher = threading.Thread(target=watch_nginx_temp)
    watcher.start()
    started = time.time()
    try:
        status, _, data = raw(
            "POST",
            "/v2.1/projects/proxied/deployments/echo/versions/v1/revisions",
            body=body(),
            headers={
                "Content-Type": f"multipart/form-data; boundary={boundary}",
                "Content-Length": str(len(head) + size + len(tail)),
            },
        )
    finally:
        uploading.clear()
        watcher.join()
    seconds = time.time() - started
    check(status == 201, f"large upload: {LARGE_MIB} MiB accepted through nginx ({status} {data[:200]!r})")
    peak = process_status(SERVER_PID, "VmHWM")
    print(f"     {LARGE_MIB} MiB in {seconds:.1f} s; server peak RSS {peak} MiB")
    check(peak < PEAK_RSS_LIMIT_MIB, f"large upload: server peak RSS {peak} MiB < {PEAK_RSS_LIMIT_MIB} MiB")
    check(not spooled, f"large upload: nginx spooled no request body to disk ({sorted(spooled)})")
    with open(os.path.join(WORK, "nginx-error.log")) as log:
        buffered = [line for line in log if "buffered to a temporary file" in line]
    check(not buffered, f"large upload: nginx logged no body buffering ({buffered[:1]})")
    revision = json.loads(data)["revision"]
    stored = os.path.join(WORK, "data", "objects", "revisions", f"{revision}.zip")
    check(os.path.getsize(stored) == size, "large upload: stored whole")


def request_log():
    status, headers, _ = raw(
        "GET", "/v2.1/projects/proxied", headers={"X-Forwarded-For": "203.0.113.7", "X-Request-Id": "trace-me-42"}
    )
    check(status == 200 and headers.get("x-request-id") == "trace-me-42", "request id: the client's is returned")
    status, headers, _ = raw("GET", "/v2.1/projects/proxied/deployments")
    generated = headers.get("x-request-id", "")
    check(re.fullmatch(r"[0-9a-f]{32}", generated) is not None, f"request id: nginx's is returned ({generated!r})")
    time.sleep(0.5)
    with open(os.path.join(WORK, "server.log")) as log:
        lines = log.read().splitlines()
    mine = [l for l in lines if "request_id=trace-me-42" in l]
    check(
        any("forwarded_for=203.0.113.7, 127.0.0.1" in l for l in mine),
        f"server log: X-Forwarded-For and X-Request-Id on the request line ({mine[:1]})",
    )
    check(any(f"request_id={generated}" in l for l in lines), "server log: nginx's request id")


def dashboard():
    status, headers, page = raw("GET", "/", headers={"Authorization": ""})
    check(status == 200 and headers.get("content-type", "").startswith("text/html"), f"dashboard: page served ({status})")
    check("script-src 'self'" in headers.get("content-security-policy", ""), "dashboard: page has its CSP")
    # The page names its files relative to itself; scripts import others relative to themselves.
    pending = [("/", name) for name in re.findall(r'(?:href|src)="([^"#:]+)"', page.decode())]
    loaded = {}
    while pending:
        base, name = pending.pop()
        path = os.path.normpath(os.path.join(os.path.dirname(base), name))
        if path in loaded:
            continue
        status, headers, body = raw("GET", path, headers={"Authorization": ""})
        loaded[path] = (status, headers.get("content-type", ""))
        if path.endswith(".js"):
            pending += [(path, imported) for imported in re.findall(r'from "(\.[^"]+)"', body.decode())]
    types = {".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml"}
    wrong = {p: v for p, v in loaded.items() if v[0] != 200 or not v[1].startswith(types[os.path.splitext(p)[1]])}
    check(len(loaded) >= 10 and not wrong, f"dashboard: {len(loaded)} files load through the proxy ({wrong})")
    status, headers, _ = raw("GET", "/dashboard/app.js", headers={"Authorization": ""})
    status, _, _ = raw("GET", "/dashboard/app.js", headers={"Authorization": "", "If-None-Match": headers.get("etag", "")})
    check(status == 304, f"dashboard: an unchanged file is revalidated with 304 ({status})")


def absolute_urls():
    # Error pages and odd paths too: redirects or links are where a wrong host would show.
    for path in [
        "/status",
        "/v2.1/projects",
        "/v2.1/projects/",
        "/v2.1/projects/proxied/deployments/echo",
        "/v2.1/projects/proxied/deployments/echo/versions/v1",
        "/v2.1/projects/proxied/deployments/echo/versions/v1/revisions",
        "/v2.1/projects/proxied/deployments/echo/versions/v1/builds",
        "/v2.1/projects/proxied/deployments/echo/audit",
        "/v2.1/projects/proxied/deployments/echo/environment-variables",
        "/v2.1/projects/missing",
        "/v2.1/nowhere",
        "/v2",
        "/",
    ]:
        raw("GET", path)
    raw("DELETE", "/status")
    raw("GET", "/v2.1/projects", headers={"Authorization": "Token wrong"})
    wrong = []
    for request, status, headers, body in seen:
        text = " ".join(f"{k}: {v}" for k, v in headers) + " " + body[:100000].decode("utf-8", "replace")
        for url in re.findall(r"[a-zA-Z][a-zA-Z0-9+.-]*://[^\s\"'<>]+", text):
            # An XML namespace (the dashboard's SVG icon) names, never links.
            if not url.startswith(PROXY) and url != "http://www.w3.org/2000/svg":
                wrong.append((request, url))
        if f":{SERVER_PORT}" in text:
            wrong.append((request, f"the upstream port {SERVER_PORT}"))
    check(not wrong, f"no absolute URL of another host in {len(seen)} responses ({wrong[:3]})")


def main():
    with tempfile.TemporaryDirectory() as scratch:
        official_client(scratch)
    large_upload()
    request_log()
    dashboard()
    absolute_urls()
    if failures:
        print(f"{len(failures)} check(s) failed")
        sys.exit(1)
    print("all proxy checks passed")


if __name__ == "__main__":
    main()
