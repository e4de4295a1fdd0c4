// Addresses of the dashboard's pages, kept in the URL's hash so that the
// server serves one page and links work behind any proxy prefix.

/** `#/projects/a/deployments/b` for the names given, escaped. */
export function href(project, deployment, version) {
  let hash = "#/projects";
  if (project !== undefined) hash += `/${encodeURIComponent(project)}`;
  if (deployment !== undefined) hash += `/deployments/${encodeURIComponent(deployment)}`;
  if (version !== undefined) hash += `/versions/${encodeURIComponent(version)}`;
  return hash;
}

let rerender = () => {};

export function onNavigate(render) {
  rerender = render;
  window.addEventListener("hashchange", render);
}

/** Shows `hash`, rendering again when it is already the current one. */
export function go(hash) {
  if (location.hash === hash) rerender();
  else location.hash = hash;
}
