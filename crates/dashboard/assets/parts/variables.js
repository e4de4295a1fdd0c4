import { api } from "../api.js";
import { alertBox, checkbox, field, h, live, onSubmit, section, table } from "../dom.js";

const HIDDEN = "••••••";

/**
 * The environment variables of one scope (`scope` is the API path of the
 * project, deployment or version; `level` names it), with the ones it
 * inherits from wider scopes shown as such. The API never returns a
 * secret's value, and this never shows what was typed for one.
 */
export function variablesPart(scope, level) {
  const list = h("div");
  const refresh = live(list, () => api("GET", `${scope}/environment-variables`), (variables) => table([
    ["Name", (v) => h("code", {}, v.name)],
    ["Value", (v) => (v.secret ? h("span", { class: "secret", title: "Secret: never shown" }, HIDDEN) : h("code", {}, v.value ?? ""))],
    ["Secret", (v) => (v.secret ? "yes" : "no")],
    ["Scope", (v) => (v.inheritance_type ? `inherited from ${v.inheritance_type} ${v.inheritance_name ?? ""}`.trim() : `this ${level}`)],
    ["", (v) => (v.inheritance_type ? "" : h("button", {
      type: "button", class: "small danger", "aria-label": `Delete ${v.name}`,
      onclick: async (event) => {
        event.target.disabled = true;
        try {
          await api("DELETE", `${scope}/environment-variables/${encodeURIComponent(v.id)}`);
        } catch (error) {
          list.prepend(alertBox(error.message));
          event.target.disabled = false;
          return;
        }
        refresh({ quiet: true });
      },
    }, "Delete"))],
  ], variables, `No variables at this ${level} or above.`));

  const name = h("input", { required: true, autocomplete: "off", spellcheck: "false" });
  const value = h("input", { autocomplete: "off", spellcheck: "false" });
  const secret = checkbox("Secret");
  const form = h("form", { class: "inline" }, field("Variable name", name), field("Value", value), secret,
    h("button", { type: "submit" }, "Add variable"));
  const secretBox = secret.querySelector("input");
  // A secret is typed like a password: not echoed, not remembered.
  secretBox.addEventListener("change", () => { value.type = secretBox.checked ? "password" : "text"; });
  onSubmit(form, async () => {
    await api("POST", `${scope}/environment-variables`, {
      json: { name: name.value.trim(), value: value.value, secret: secretBox.checked },
    });
    form.reset();
    value.type = "text";
    refresh({ quiet: true });
  });
  return section("Environment variables", list, form);
}
