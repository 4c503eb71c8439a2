// The status view: health, readiness, loaded models and live figures
// from `/metrics`, refreshed every few seconds while the view is shown.

import { $, h, fill, fmt } from "./dom.js";
import { get } from "./api.js";
import { sums, rate } from "./prometheus.js";

const EVERY_MS = 3000;
let timer = null;
let before = null;

export function startStatus() {
  if (timer) return;
  refresh();
  timer = setInterval(refresh, EVERY_MS);
}

export function stopStatus() {
  clearInterval(timer);
  timer = null;
}

/** `GET path` as JSON whatever the status (readiness answers 503 while loading). */
async function probe(path) {
  const res = await fetch(path);
  return { ok: res.ok, status: res.status, body: await res.json().catch(() => null) };
}

async function refresh() {
  const [health, ready, metrics] = await Promise.allSettled([probe("/health"), probe("/ready"), fetch("/metrics").then((r) => r.text())]);
  showProbe($("#st-health"), health, (b) => b.status);
  showProbe($("#st-ready"), ready, (b) => `${b.status}${b.expected && b.expected.length ? ` (expects ${b.expected.join(", ")})` : ""}`);
  if (metrics.status === "fulfilled") showFigures(metrics.value);
  try {
    const { data } = await get("/v1/models");
    fill($("#st-models tbody"), data.map((m) => h("tr", {}, h("th", { scope: "row" }, m.id), h("td", {}, m.kind), h("td", { class: "num" }, m.max_input_tokens))));
  } catch (e) {
    fill($("#st-models tbody"), h("tr", {}, h("td", { colspan: 3, class: "error" }, e.message)));
  }
  $("#st-updated").textContent = `Updated ${new Date().toLocaleTimeString()}`;
}

function showProbe(el, result, label) {
  const ok = result.status === "fulfilled" && result.value.ok;
  el.dataset.ok = String(ok);
  el.textContent = result.status === "fulfilled" && result.value.body
    ? `${ok ? "✓" : "✗"} ${label(result.value.body)}`
    : "✗ unreachable";
}

function showFigures(text) {
  const now = { at: performance.now(), values: sums(text) };
  const dt = before ? (now.at - before.at) / 1000 : 0;
  const v = now.values;
  const figure = (id, value) => {
    $(id).textContent = value;
  };
  figure("#st-rps", fmt(rate(v, before && before.values, "ragd_http_requests_total", dt), 2));
  figure("#st-tps", fmt(rate(v, before && before.values, "ragd_generation_tokens_total", dt), 1));
  figure("#st-queue", v.has("ragd_queue_depth") ? String(v.get("ragd_queue_depth")) : "–");
  figure("#st-running", v.has("ragd_running_sequences") ? `${v.get("ragd_running_sequences")} running, ${v.get("ragd_waiting_sequences") || 0} waiting` : "–");
  const used = v.get("ragd_kv_blocks_used");
  const capacity = v.get("ragd_kv_blocks_capacity");
  figure("#st-kv", used === undefined ? "–" : `${used} / ${capacity} blocks (${fmt((100 * used) / (capacity || 1), 1)}%)`);
  const kv = $("#st-kv-meter");
  kv.max = capacity || 1;
  kv.value = used || 0;
  $("#st-kv").dataset.used = String(used === undefined ? "" : used);
  before = now;
}
