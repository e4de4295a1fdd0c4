import { api, token } from "../api.js";
import { field, h, onSubmit } from "../dom.js";
import { go } from "../nav.js";

/**
 * Asks for an API token and keeps it for this browser session only
 * (sessionStorage: gone when the tab closes, never sent anywhere but the API).
 */
export function signInView(container) {
  const input = h("input", { type: "password", autocomplete: "off", required: true, spellcheck: "false" });
  const form = h("form", { class: "card narrow" },
    field("API token", input, "The token alone, or as in an Authorization header (\"Token …\")."),
    h("button", { type: "submit" }, "Sign in"));
  onSubmit(form, async () => {
    const value = input.value.trim().replace(/^Token\s+/i, "");
    // Any call that needs a token tells whether this one is accepted.
    await api("GET", "projects", { as: value });
    token.set(value);
    go("#/projects");
  });
  container.append(h("h1", {}, "Sign in"), form);
  input.focus();
}
