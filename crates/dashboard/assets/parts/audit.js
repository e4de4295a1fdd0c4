import { api } from "../api.js";
import { h, live, section, table, when } from "../dom.js";

/** What was done to a deployment, by whom, newest first. */
export function auditPart(deploymentPath) {
  const list = h("div");
  live(list, () => api("GET", `${deploymentPath}/audit`, { query: { limit: 50 } }), (events) => table([
    ["Date", (e) => when(e.date)],
    ["User", (e) => e.user],
    ["Action", (e) => e.action],
    ["Event", (e) => e.event],
  ], events, "No events yet."));
  return section("Audit trail", list);
}
