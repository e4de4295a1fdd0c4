import { api, path } from "../api.js";
import { field, h, labels, live, onSubmit, section, select, table } from "../dom.js";
import { go, href } from "../nav.js";
import { variablesPart } from "../parts/variables.js";

const DATA_TYPES = ["int", "string", "double", "bool", "dict", "file", "image",
  "array_int", "array_double", "array_string", "array_file", "array_image"];

/** A project's deployments, a form for a new one, and its variables. */
export function projectView(container, project) {
  const scope = path("projects", project);
  const list = h("div");
  container.append(h("h1", {}, project), section("Deployments", list),
    createDeployment(project), variablesPart(scope, "project"));
  live(list, () => deploymentsWithVersions(scope), (deployments) => table([
    ["Name", (d) => h("a", { href: href(project, d.name) }, d.name)],
    ["Labels", (d) => labels(d.labels)],
    ["Default version", (d) => d.default_version ?? "—"],
    ["Versions", (d) => d.versionCount],
  ], deployments, "No deployments yet: create one below."));
}

/** The list, each with its number of versions (the API has no count). */
async function deploymentsWithVersions(scope) {
  const deployments = await api("GET", `${scope}/deployments`);
  const counts = await Promise.all(deployments.map((d) => api("GET", `${scope}/deployments/${encodeURIComponent(d.name)}/versions`)
    .then((versions) => versions.length, () => "?")));
  return deployments.map((d, index) => ({ ...d, versionCount: counts[index] }));
}

function createDeployment(project) {
  const name = h("input", { required: true, autocomplete: "off", spellcheck: "false" });
  const description = h("input", { autocomplete: "off" });
  const types = [["plain"], ["structured"]];
  const inputType = select(types);
  const outputType = select(types);
  const fieldsHint = `One per line, "name: type"; types: ${DATA_TYPES.join(", ")}.`;
  const inputFields = h("textarea", { rows: 3, spellcheck: "false" });
  const outputFields = h("textarea", { rows: 3, spellcheck: "false" });
  const labelText = h("input", { autocomplete: "off", spellcheck: "false", placeholder: "team=vision, stage=test" });
  const inputFieldsBox = field("Input fields", inputFields, fieldsHint);
  const outputFieldsBox = field("Output fields", outputFields, fieldsHint);
  // Fields belong to structured input or output only.
  const showFields = () => {
    inputFieldsBox.hidden = inputType.value !== "structured";
    outputFieldsBox.hidden = outputType.value !== "structured";
  };
  inputType.addEventListener("change", showFields);
  outputType.addEventListener("change", showFields);
  showFields();
  const form = h("form", { class: "card" },
    h("div", { class: "grid" }, field("Name", name), field("Description", description),
      field("Input type", inputType), field("Output type", outputType), inputFieldsBox, outputFieldsBox,
      field("Labels", labelText, "key=value, separated by commas.")),
    h("button", { type: "submit" }, "Create deployment"));
  onSubmit(form, async () => {
    const body = {
      name: name.value.trim(),
      description: description.value,
      input_type: inputType.value,
      output_type: outputType.value,
      labels: parseLabels(labelText.value),
    };
    if (inputType.value === "structured") body.input_fields = parseFields(inputFields.value);
    if (outputType.value === "structured") body.output_fields = parseFields(outputFields.value);
    const created = await api("POST", `${path("projects", project)}/deployments`, { json: body });
    go(href(project, created.name));
  });
  return section("Create deployment", form);
}

/** `name: type` lines; what the API thinks of them it says itself. */
function parseFields(text) {
  return text.split("\n").map((line) => line.trim()).filter(Boolean).map((line) => {
    const [fieldName, dataType = ""] = line.split(":").map((part) => part.trim());
    return { name: fieldName, data_type: dataType };
  });
}

function parseLabels(text) {
  const result = {};
  for (const pair of text.split(",").map((part) => part.trim()).filter(Boolean)) {
    const [key, ...value] = pair.split("=");
    result[key.trim()] = value.join("=").trim();
  }
  return result;
}
