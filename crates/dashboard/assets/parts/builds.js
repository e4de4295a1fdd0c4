import { api } from "../api.js";
import { alertBox, h, live, section, statusBadge, table, when } from "../dom.js";

const RUNNING = new Set(["queued", "building", "validating"]);
// How often a running build and its log are asked for again.
const POLL_MS = 1500;
const LOG_PAGE = 500;

/**
 * The version's revisions with their builds, kept current while a build
 * runs, and the log of the build picked (or of the newest upload);
 * `onChange` is called when a build's status changes.
 */
export function buildsParts(project, deployment, version, versionPath, onChange) {
  const list = h("div");
  const logs = buildLog(project, deployment, version, versionPath);
  let timer;
  let statuses;
  const refresh = live(list, () => revisionsWithBuilds(versionPath), (rows, again) => {
    clearTimeout(timer);
    // A build that ended may have made its revision the active one.
    const now = rows.map((row) => row.build?.status).join();
    if (statuses !== undefined && statuses !== now) onChange();
    statuses = now;
    if (rows.some((row) => RUNNING.has(row.build?.status)) && list.isConnected) {
      timer = setTimeout(() => list.isConnected && again({ quiet: true }), POLL_MS);
    }
    return table([
      ["Revision", (row) => h("code", { title: row.revision.id }, row.revision.id.slice(0, 8))],
      ["Created", (row) => when(row.build?.creation_date ?? row.revision.creation_date)],
      ["Build status", (row) => statusBadge(row.build?.status ?? "none")],
      ["Trigger", (row) => row.build?.trigger ?? "—"],
      ["Error", (row) => row.build?.error_message ?? ""],
      ["Actions", (row) => actions(row, versionPath, logs, () => again({ quiet: true }), list)],
    ], rows, "No revisions yet: upload a deployment package above.");
  });
  return {
    parts: [section("Revisions and builds", list), logs.part],
    refresh: () => refresh({ quiet: true }),
    showLog: logs.show,
  };
}

/** Each build of each revision, newest first; a revision without builds once. */
async function revisionsWithBuilds(versionPath) {
  const [revisions, builds] = await Promise.all([
    api("GET", `${versionPath}/revisions`), api("GET", `${versionPath}/builds`)]);
  const byRevision = new Map(revisions.map((revision) => [revision.id, revision]));
  const rows = builds.filter((build) => byRevision.has(build.revision))
    .map((build) => ({ revision: byRevision.get(build.revision), build }));
  for (const revision of revisions) {
    if (!rows.some((row) => row.revision.id === revision.id)) rows.push({ revision, build: null });
  }
  const time = (row) => Date.parse(row.build?.creation_date ?? row.revision.creation_date);
  return rows.sort((a, b) => time(b) - time(a));
}

function actions(row, versionPath, logs, changed, list) {
  const revision = `${versionPath}/revisions/${encodeURIComponent(row.revision.id)}`;
  const act = (label, run) => h("button", {
    type: "button", class: "small",
    "aria-label": `${label} (revision ${row.revision.id.slice(0, 8)})`,
    onclick: async (event) => {
      event.target.disabled = true;
      try {
        await run();
      } catch (error) {
        list.prepend(alertBox(error.message));
      } finally {
        event.target.disabled = false;
      }
    },
  }, label);
  const buttons = [];
  if (row.build) buttons.push(act("Logs", async () => logs.show(row.build.id)));
  if (row.build && RUNNING.has(row.build.status)) {
    buttons.push(act("Cancel build", async () => {
      await api("PATCH", `${versionPath}/builds/${encodeURIComponent(row.build.id)}`, { json: { status: "cancelled" } });
      changed();
    }));
  }
  buttons.push(act("Rebuild", async () => {
    const build = await api("POST", `${revision}/rebuild`);
    changed();
    logs.show(build.id);
  }));
  buttons.push(act("Download", () => download(`${revision}/download`, `revision-${row.revision.id}.zip`)));
  return h("div", { class: "actions" }, buttons);
}

/** Fetched with the token (a plain link could not send it), then saved. */
async function download(apiPath, fallbackName) {
  const response = await api("GET", apiPath, { raw: true, timeout: 600_000 });
  const disposition = response.headers.get("Content-Disposition") || "";
  const named = /filename="?([^";]+)"?/.exec(disposition);
  const url = URL.createObjectURL(await response.blob());
  const anchor = h("a", { href: url, download: named ? named[1] : fallbackName });
  document.body.append(anchor);
  anchor.click();
  anchor.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
}

/**
 * The lines of one build, oldest first, followed while the build runs. A
 * second `show` replaces the first; leaving the page stops it.
 */
function buildLog(project, deployment, version, versionPath) {
  const heading = h("p", { class: "muted" }, "Pick a build's Logs to see them here.");
  const lines = h("ol", { role: "log", "aria-label": "Build logs", class: "log", "aria-live": "polite" });
  const part = section("Build logs", heading, lines);
  let following = 0;

  async function show(buildId) {
    const mine = ++following;
    const buildPath = `${versionPath}/builds/${encodeURIComponent(buildId)}`;
    heading.replaceChildren("Build ", h("code", {}, buildId));
    lines.replaceChildren();
    const seen = new Set();
    let start = null;
    let finished = false;
    while (mine === following && lines.isConnected) {
      let page;
      try {
        // Whether the build has ended is read before its lines, so the
        // lines fetched after that include its last one.
        if (!finished) {
          const build = await api("GET", buildPath);
          finished = !RUNNING.has(build.status);
          start ??= { date: build.creation_date };
        }
        page = await api("POST", `projects/${encodeURIComponent(project)}/logs`, {
          json: {
            filters: { deployment_name: deployment, deployment_version: version, build_id: buildId },
            ...start, date_range: 86_400, limit: LOG_PAGE,
          },
        });
      } catch (error) {
        if (mine === following) lines.append(h("li", { class: "error", role: "alert" }, error.message));
        return;
      }
      if (mine !== following) return;
      for (const line of page) {
        if (seen.has(line.id)) continue;
        seen.add(line.id);
        lines.append(h("li", { class: line.level === "error" ? "error" : "" },
          h("time", { datetime: line.date }, line.date.slice(11, 19)), " ", line.log));
      }
      if (page.length > 0) start = { id: page[page.length - 1].id };
      // A full page means more are waiting: read on at once.
      if (page.length === LOG_PAGE) continue;
      if (finished) return;
      await new Promise((resolve) => { setTimeout(resolve, POLL_MS); });
    }
  }

  return { part, show };
}
