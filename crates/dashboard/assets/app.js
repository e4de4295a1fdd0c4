// The dashboard's entry: picks the view for the URL's hash and keeps the
// header (breadcrumb, sign out) in step with it.

import { token } from "./api.js";
import { h } from "./dom.js";
import { go, href, onNavigate } from "./nav.js";
import { signInView } from "./views/signin.js";
import { projectsView } from "./views/projects.js";
import { projectView } from "./views/project.js";
import { deploymentView } from "./views/deployment.js";
import { versionView } from "./views/version.js";

const main = document.getElementById("main");
const breadcrumb = document.getElementById("breadcrumb");
const signOut = document.getElementById("sign-out");

function route() {
  const parts = location.hash.replace(/^#\/?/, "").split("/").map(decodeURIComponent);
  if (!token.get() || parts[0] === "signin") return { view: signInView, names: [] };
  const [projects, project, deployments, deployment, versions, version, ...rest] = parts;
  const shaped = projects === "projects"
    && (deployments === undefined || deployments === "deployments")
    && (versions === undefined || versions === "versions")
    && rest.length === 0;
  if (!shaped || project === undefined || project === "") return { view: projectsView, names: [] };
  if (deployment === undefined) return { view: projectView, names: [project] };
  if (version === undefined) return { view: deploymentView, names: [project, deployment] };
  return { view: versionView, names: [project, deployment, version] };
}

function crumbs(names) {
  const [project, deployment, version] = names;
  const trail = [["Projects", href()]];
  if (project !== undefined) trail.push([project, href(project)]);
  if (deployment !== undefined) trail.push([deployment, href(project, deployment)]);
  if (version !== undefined) trail.push([version, href(project, deployment, version)]);
  breadcrumb.replaceChildren(h("ol", {}, trail.map(([text, target], index) => h("li", {},
    index === trail.length - 1 ? h("a", { href: target, "aria-current": "page" }, text) : h("a", { href: target }, text)))));
}

function render() {
  const { view, names } = route();
  const signedIn = view !== signInView;
  signOut.hidden = !signedIn;
  breadcrumb.hidden = !signedIn;
  if (signedIn) crumbs(names);
  // A fresh container per view: answers to the previous view's calls land
  // in a node that is no longer on the page.
  const container = h("div", { class: "view" });
  main.replaceChildren(container);
  view(container, ...names);
  const heading = container.querySelector("h1");
  document.title = heading ? `${heading.textContent} · UbiOps dashboard` : "UbiOps dashboard";
  main.focus({ preventScroll: true });
}

signOut.addEventListener("click", () => {
  token.clear();
  go("#/signin");
});
onNavigate(render);
render();
