// Calls to ragd's own API (relative URLs: nothing leaves the page's
// origin). The API key lives in this tab's sessionStorage only and goes
// out only in the Authorization header of these calls.

const KEY = "ragd.apiKey";

export const singleUser = () => document.documentElement.dataset.auth === "none";

export function apiKey() {
  return singleUser() ? "" : sessionStorage.getItem(KEY) || "";
}

export function setApiKey(key) {
  if (key) sessionStorage.setItem(KEY, key);
  else sessionStorage.removeItem(KEY);
}

export function headers(extra = {}) {
  const key = apiKey();
  return key ? { ...extra, Authorization: `Bearer ${key}` } : extra;
}

/** An error answer of the API, with OpenAI's `message`. */
export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

/** The error of a failed response, from its OpenAI-style body if it has one. */
export async function errorOf(res) {
  let message = `${res.status} ${res.statusText}`;
  try {
    const body = await res.json();
    if (body && body.error && body.error.message) message = `${res.status}: ${body.error.message}`;
  } catch (_) {
    // Not JSON: keep the status line.
  }
  return new ApiError(res.status, message);
}

/** `method path` with an optional JSON body; the parsed JSON answer. */
export async function call(method, path, body, signal) {
  const init = { method, signal, headers: headers() };
  if (body !== undefined) {
    init.body = JSON.stringify(body);
    init.headers["Content-Type"] = "application/json";
  }
  const res = await fetch(path, init);
  if (!res.ok) throw await errorOf(res);
  return res.json();
}

export const get = (path) => call("GET", path);
export const post = (path, body, signal) => call("POST", path, body, signal);
export const del = (path) => call("DELETE", path);

/** `/v1/collections/{name}...` with the name encoded. */
export const collectionPath = (name, rest = "") => `/v1/collections/${encodeURIComponent(name)}${rest}`;

/** Uploads `files` into collection `name` (multipart field `file`),
 *  calling `progress(sent, total)`; XMLHttpRequest because fetch does not
 *  report upload progress. */
export function upload(name, files, progress) {
  return new Promise((resolve, reject) => {
    const form = new FormData();
    for (const f of files) form.append("file", f, f.name);
    const xhr = new XMLHttpRequest();
    xhr.open("POST", collectionPath(name, "/files"));
    for (const [k, v] of Object.entries(headers())) xhr.setRequestHeader(k, v);
    xhr.upload.addEventListener("progress", (e) => progress(e.loaded, e.lengthComputable ? e.total : 0));
    xhr.addEventListener("load", () => {
      let body = null;
      try {
        body = JSON.parse(xhr.responseText);
      } catch (_) {
        // Not JSON.
      }
      if (xhr.status >= 200 && xhr.status < 300) return resolve(body);
      const message = body && body.error ? body.error.message : xhr.statusText;
      reject(new ApiError(xhr.status, `${xhr.status}: ${message}`));
    });
    xhr.addEventListener("error", () => reject(new ApiError(0, "the upload failed (network error)")));
    xhr.send(form);
  });
}
