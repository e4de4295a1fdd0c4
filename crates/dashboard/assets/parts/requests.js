import { api } from "../api.js";
import { field, h, live, onSubmit, section, select, statusBadge, table, when } from "../dom.js";

const RECENT = 10;

/**
 * A form that makes a direct request to `target` (the API path of a
 * deployment, for its default version, or of a version) and shows the
 * answer, followed by the target's most recent requests.
 */
export function requestParts(target, deployment) {
  const recent = h("div");
  const refresh = live(recent, () => api("GET", `${target}/requests`, { query: { limit: RECENT } }), (requests) => table([
    ["Id", (r) => h("code", {}, r.id)],
    ["Status", (r) => statusBadge(r.status)],
    ["Created", (r) => when(r.time_created)],
    ["Version", (r) => r.version],
  ], requests, "No requests kept. (A version keeps them as its request retention says.)"));
  return [section("Test request", requestForm(target, deployment, () => refresh({ quiet: true }))),
    section("Recent requests", recent)];
}

function requestForm(target, deployment, sent) {
  const inputs = inputControls(deployment);
  const result = h("div", { role: "status", "aria-label": "Request result", class: "result", "aria-live": "polite" });
  const form = h("form", { class: "card" }, inputs.fields, h("button", { type: "submit" }, "Send request"));
  onSubmit(form, async () => {
    result.replaceChildren(h("p", { class: "loading" }, "Waiting for the result…"));
    let answer;
    try {
      answer = await api("POST", `${target}/requests`, { json: inputs.value() });
    } catch (error) {
      result.replaceChildren();
      throw error;
    }
    result.replaceChildren(...answerView(answer));
    sent();
  });
  return h("div", {}, form, result);
}

function answerView(answer) {
  const head = h("p", {}, "Request ", h("code", {}, answer.id), " to version ", answer.version, ": ", statusBadge(answer.status));
  if (answer.status !== "completed") return [head, h("pre", { class: "error-text" }, answer.error_message ?? "No error message.")];
  const shown = typeof answer.result === "string" ? answer.result : JSON.stringify(answer.result, null, 2);
  return [head, h("pre", { class: "output" }, shown)];
}

/**
 * One control per input field, converted to the field's type when sent; a
 * value that does not convert is sent as typed, for the API to name the
 * field that is wrong.
 */
function inputControls(deployment) {
  if (deployment.input_type !== "structured") {
    const text = h("textarea", { rows: 4, spellcheck: "false" });
    return { fields: field("Request data", text), value: () => text.value };
  }
  const controls = (deployment.input_fields || []).map((spec) => {
    const type = spec.data_type;
    if (type === "bool") return [spec, select([["true"], ["false"]])];
    if (type === "file" || type === "image" || type.startsWith("array_file") || type.startsWith("array_image")) {
      return [spec, h("input", { disabled: true, placeholder: "Files are not supported by direct requests yet" })];
    }
    const multiline = type === "dict" || type.startsWith("array_");
    const control = multiline ? h("textarea", { rows: 2, spellcheck: "false" }) : h("input", { spellcheck: "false", autocomplete: "off" });
    return [spec, control];
  });
  const hints = { dict: "JSON object", int: "whole number", double: "number", string: "text" };
  return {
    fields: h("div", { class: "grid" }, controls.map(([spec, control]) => field(spec.name, control,
      `${spec.data_type}${hints[spec.data_type] ? ` (${hints[spec.data_type]})` : spec.data_type.startsWith("array_") ? " (JSON array)" : ""}`))),
    value: () => Object.fromEntries(controls.map(([spec, control]) => [spec.name, convert(spec.data_type, control.value)])),
  };
}

function convert(type, text) {
  switch (type) {
    case "string": return text;
    case "bool": return text === "true";
    case "int": return /^-?\d+$/.test(text.trim()) ? Number(text) : text;
    case "double": return text.trim() !== "" && Number.isFinite(Number(text)) ? Number(text) : text;
    default:
      try {
        return JSON.parse(text);
      } catch {
        return text;
      }
  }
}
