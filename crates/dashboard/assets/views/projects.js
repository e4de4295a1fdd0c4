import { api } from "../api.js";
import { h, live, when } from "../dom.js";
import { href } from "../nav.js";

/** The projects this token may see. */
export function projectsView(container) {
  const list = h("div");
  container.append(h("h1", {}, "Projects"), list);
  live(list, () => api("GET", "projects"), (projects) => projects.length === 0
    ? h("p", { class: "empty" }, "This token sees no project. Create one with the API (POST /v2.1/projects).")
    : h("ul", { class: "cards" }, projects.map((project) => h("li", {},
      h("a", { href: href(project.name) }, project.name),
      h("small", {}, " created ", when(project.creation_date))))));
}
