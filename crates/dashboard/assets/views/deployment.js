import { api, path } from "../api.js";
import { details, field, h, labels, live, onSubmit, section, select, statusBadge, table } from "../dom.js";
import { go, href } from "../nav.js";
import { auditPart } from "../parts/audit.js";
import { requestParts } from "../parts/requests.js";
import { variablesPart } from "../parts/variables.js";

/**
 * A deployment: what it takes and gives, its versions, a form for a new
 * one, its variables, a test request to its default version, and its audit
 * trail.
 */
export function deploymentView(container, project, deployment) {
  const scope = path("projects", project, "deployments", deployment);
  const about = h("div");
  const versions = h("div");
  // The request form is shaped by the deployment's input fields.
  const requests = h("div");
  container.append(h("h1", {}, deployment), about, section("Versions", versions), createVersion(project, deployment),
    variablesPart(scope, "deployment"), requests, auditPart(scope));
  live(about, () => api("GET", scope), (d) => {
    requests.replaceChildren(...(d.default_version ? requestParts(scope, d)
      : [section("Test request", h("p", { class: "empty" }, "This deployment has no default version: make test requests on a version's page."))]));
    return details([
      ["Description", d.description || "—"],
      ["Input type", fieldsText(d.input_type, d.input_fields)],
      ["Output type", fieldsText(d.output_type, d.output_fields)],
      ["Default version", d.default_version],
      ["Labels", labels(d.labels)],
    ]);
  });
  live(versions, () => api("GET", `${scope}/versions`), (list) => table([
    ["Version", (v) => h("a", { href: href(project, deployment, v.version) }, v.version)],
    ["Status", (v) => statusBadge(v.status)],
    ["Environment", (v) => v.environment],
    ["Instance type", (v) => v.instance_type],
    ["Instances", (v) => `${v.minimum_instances}–${v.maximum_instances}`],
    ["Active revision", (v) => (v.active_revision ? h("code", {}, v.active_revision) : "none")],
  ], list, "No versions yet: create one below."));
}

function fieldsText(type, fields) {
  if (type !== "structured") return type;
  return [type, h("ul", { class: "fields" }, (fields || []).map((f) => h("li", {}, h("code", {}, f.name), `: ${f.data_type}`)))];
}

function createVersion(project, deployment) {
  const projectPath = path("projects", project);
  const name = h("input", { required: true, autocomplete: "off", spellcheck: "false", placeholder: "v1" });
  const environment = h("select", {}, h("option", { value: "" }, "Loading…"));
  const instanceType = h("select", {}, h("option", { value: "" }, "Loading…"));
  const minimum = h("input", { type: "number", min: 0, value: "0" });
  const maximum = h("input", { type: "number", min: 1, value: "5" });
  const idle = h("input", { type: "number", min: 10, value: "300" });
  const retention = select([["full"], ["metadata"], ["none"]]);
  fillOptions(environment, api("GET", `${projectPath}/environments`), (e) => [e.name, e.display_name || e.name]);
  fillOptions(instanceType, api("GET", `${projectPath}/instance-types`).then((page) => page.results),
    (t) => [t.name, t.display_name || t.name]);
  const form = h("form", { class: "card" },
    h("div", { class: "grid" }, field("Version name", name), field("Environment", environment),
      field("Instance type", instanceType), field("Minimum instances", minimum), field("Maximum instances", maximum),
      field("Maximum idle time (s)", idle), field("Request retention mode", retention)),
    h("button", { type: "submit" }, "Create version"));
  onSubmit(form, async () => {
    const body = {
      version: name.value.trim(),
      environment: environment.value || undefined,
      instance_type: instanceType.value || undefined,
      minimum_instances: Number(minimum.value),
      maximum_instances: Number(maximum.value),
      maximum_idle_time: Number(idle.value),
      request_retention_mode: retention.value,
    };
    const created = await api("POST", `${path("projects", project, "deployments", deployment)}/versions`, { json: body });
    go(href(project, deployment, created.version));
  });
  return section("Create version", form);
}

/**
 * The server's default first (nothing is sent for it), then the options of
 * a list call; if that fails, the default alone, saying why.
 */
async function fillOptions(control, listing, option) {
  try {
    const items = await listing;
    control.replaceChildren(h("option", { value: "" }, "Server default"), ...items.map((item) => {
      const [value, text] = option(item);
      return h("option", { value }, text);
    }));
  } catch (error) {
    control.replaceChildren(h("option", { value: "" }, `Server default (${error.message})`));
  }
}
