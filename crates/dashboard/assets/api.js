// Every call the dashboard makes goes through here: the public API, with the
// token from this browser session, and errors worded as the API words them.

const TOKEN_KEY = "ubiops-token";
const BASE = new URL("v2.1/", document.baseURI);
// A call that takes longer than this is shown as failed; the page stays usable.
const TIMEOUT_MS = 60_000;

export const token = {
  get: () => sessionStorage.getItem(TOKEN_KEY),
  set: (value) => sessionStorage.setItem(TOKEN_KEY, value),
  clear: () => sessionStorage.removeItem(TOKEN_KEY),
};

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

/** The URL of an API path such as `projects/demo`, with optional query. */
export function apiUrl(path, query = {}) {
  const url = new URL(path, BASE);
  for (const [key, value] of Object.entries(query)) {
    if (value !== undefined && value !== null && value !== "") url.searchParams.set(key, value);
  }
  return url;
}

/**
 * `{json}` sends a JSON body, `{form}` a FormData; `raw` returns the
 * Response; `as` is a token to try instead of the session's.
 */
export async function api(method, path, { query, json, form, raw = false, timeout = TIMEOUT_MS, as } = {}) {
  const headers = { Accept: "application/json" };
  const current = as ?? token.get();
  if (current) headers.Authorization = `Token ${current}`;
  let body;
  if (json !== undefined) {
    headers["Content-Type"] = "application/json";
    body = JSON.stringify(json);
  } else if (form !== undefined) {
    body = form;
  }
  let response;
  try {
    response = await fetch(apiUrl(path, query), {
      method, headers, body, signal: AbortSignal.timeout(timeout), credentials: "omit",
    });
  } catch (error) {
    const reason = error.name === "TimeoutError"
      ? `The server did not answer within ${timeout / 1000} s`
      : "The server could not be reached";
    throw new ApiError(0, reason);
  }
  if (!response.ok) {
    const error = new ApiError(response.status, await errorText(response));
    // The session's token was revoked: ask for one again.
    if (response.status === 401 && as === undefined && current) {
      token.clear();
      location.hash = "#/signin";
    }
    throw error;
  }
  if (raw) return response;
  if (response.status === 204) return null;
  return response.json();
}

async function errorText(response) {
  try {
    const body = await response.json();
    if (body && typeof body.error === "string") return body.error;
  } catch {
    // Not JSON: a proxy's own page, say.
  }
  return `The server answered ${response.status} ${response.statusText}`.trim();
}

/** Path segments escaped once, here: names come from users. */
export function path(...segments) {
  return segments.map((segment) => encodeURIComponent(segment)).join("/");
}
