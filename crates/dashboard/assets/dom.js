// Building the page. Text from the API only ever goes in as text nodes:
// nothing here parses HTML.

let nextId = 0;

/**
 * An element: `h("a", {href: "#/x", class: "c", onclick: f}, "text", child)`.
 * Properties starting with `on` are listeners; `null`/`false` ones are skipped.
 */
export function h(tag, props = {}, ...children) {
  const element = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on")) element.addEventListener(key.slice(2), value);
    else if (key in element && typeof value !== "string") element[key] = value;
    else element.setAttribute(key, value === true ? "" : value);
  }
  element.append(...children.flat().filter((child) => child !== null && child !== undefined && child !== false)
    .map((child) => (child instanceof Node ? child : String(child))));
  return element;
}

/** A labelled control, the label tied to it by id. */
export function field(label, control, hint) {
  const id = control.id || `f${++nextId}`;
  control.id = id;
  return h("div", { class: "field" }, h("label", { for: id }, label), control, hint && h("small", {}, hint));
}

export function checkbox(label, props = {}) {
  const id = `f${++nextId}`;
  const box = h("input", { type: "checkbox", id, ...props });
  return h("div", { class: "field check" }, box, h("label", { for: id }, label));
}

export function select(options, props = {}) {
  return h("select", props, options.map(([value, text]) => h("option", { value }, text ?? value)));
}

export function alertBox(message) {
  return h("p", { role: "alert", class: "error" }, message);
}

export function loading() {
  return h("p", { class: "loading" }, "Loading…");
}

/** A section with an h2 and whatever `body` holds. */
export function section(title, ...body) {
  return h("section", {}, h("h2", {}, title), ...body);
}

/**
 * A table; each column is `[heading, row => cell]`. An empty list says so
 * instead of showing a bare header.
 */
export function table(columns, rows, empty = "None yet.") {
  if (rows.length === 0) return h("p", { class: "empty" }, empty);
  return h("div", { class: "table-wrap" }, h("table", {},
    h("thead", {}, h("tr", {}, columns.map(([heading]) => h("th", { scope: "col" }, heading)))),
    h("tbody", {}, rows.map((row) => h("tr", {}, columns.map(([, cell]) => h("td", {}, cell(row))))))));
}

export function details(pairs) {
  return h("dl", { class: "details" }, pairs.flatMap(([term, value]) => [h("dt", {}, term), h("dd", {}, value ?? "—")]));
}

/**
 * Fills `container` with what `load` fetches, rendered by `render`; shows
 * "Loading…" meanwhile and the API's error if it fails. Returns a function
 * that loads again, keeping the old content on screen until the new arrives.
 */
export function live(container, load, render) {
  let generation = 0;
  async function refresh({ quiet = false } = {}) {
    const mine = ++generation;
    if (!quiet) container.replaceChildren(loading());
    try {
      const data = await load();
      if (mine === generation && container.isConnected !== false) container.replaceChildren(render(data, refresh));
    } catch (error) {
      if (mine === generation) container.replaceChildren(alertBox(error.message));
    }
  }
  refresh();
  return refresh;
}

/**
 * Runs `action` for a submitted form: the button is disabled meanwhile and
 * an error is shown in the form's own alert, which is cleared on success.
 */
export function onSubmit(form, action) {
  const status = h("div", { class: "form-status" });
  form.append(status);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const buttons = form.querySelectorAll("button");
    buttons.forEach((button) => { button.disabled = true; });
    status.replaceChildren();
    try {
      await action();
    } catch (error) {
      status.replaceChildren(alertBox(error.message));
    } finally {
      buttons.forEach((button) => { button.disabled = false; });
    }
  });
  return form;
}

export function when(date) {
  if (!date) return "—";
  const parsed = new Date(date);
  return Number.isNaN(parsed.getTime()) ? date : h("time", { datetime: date }, parsed.toLocaleString());
}

export function labels(map) {
  const entries = Object.entries(map || {});
  if (entries.length === 0) return "—";
  return h("ul", { class: "labels" }, entries.map(([key, value]) => h("li", {}, `${key}: ${value}`)));
}

export function statusBadge(status) {
  return h("span", { class: `status status-${String(status).replace(/[^a-z_]/g, "")}` }, status ?? "—");
}
