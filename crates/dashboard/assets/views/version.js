import { api, path } from "../api.js";
import { details, field, h, live, onSubmit, section, statusBadge } from "../dom.js";
import { buildsParts } from "../parts/builds.js";
import { requestParts } from "../parts/requests.js";
import { variablesPart } from "../parts/variables.js";

/**
 * A version: its settings, an upload of a new deployment package, its
 * revisions and builds with their logs, its variables and test requests.
 */
export function versionView(container, project, deployment, version) {
  const deploymentPath = path("projects", project, "deployments", deployment);
  const versionPath = `${deploymentPath}/versions/${encodeURIComponent(version)}`;
  const about = h("div");
  const requests = h("div");
  const builds = buildsParts(project, deployment, version, versionPath, () => refreshAbout({ quiet: true }));
  container.append(h("h1", {}, `${deployment} / ${version}`), about, upload(versionPath, builds),
    ...builds.parts, variablesPart(versionPath, "version"), requests);
  const refreshAbout = live(about, () => api("GET", versionPath), (v) => details([
    ["Status", statusBadge(v.status)],
    ["Environment", v.environment],
    ["Instance type", v.instance_type],
    ["Minimum instances", v.minimum_instances],
    ["Maximum instances", v.maximum_instances],
    ["Maximum idle time", `${v.maximum_idle_time} s`],
    ["Request retention", `${v.request_retention_mode}, ${v.request_retention_time} s`],
    ["Active revision", v.active_revision ? h("code", {}, v.active_revision) : "none"],
  ]));
  // The request form is shaped by the deployment's input fields.
  live(requests, () => api("GET", deploymentPath), (d) => h("div", {}, ...requestParts(versionPath, d)));
}

function upload(versionPath, builds) {
  const file = h("input", { type: "file", accept: ".zip,application/zip", required: true });
  const form = h("form", { class: "card inline" }, field("Deployment zip", file), h("button", { type: "submit" }, "Upload"));
  onSubmit(form, async () => {
    const body = new FormData();
    body.append("file", file.files[0]);
    const revision = await api("POST", `${versionPath}/revisions`, { form: body, timeout: 3_600_000 });
    form.reset();
    builds.refresh();
    builds.showLog(revision.build);
  });
  return section("Upload deployment package", form);
}
