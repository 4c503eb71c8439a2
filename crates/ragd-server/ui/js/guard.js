// The guard view: scores a text through `/v1/moderations`.

import { $, h, fill, fmt, say } from "./dom.js";
import { get, post } from "./api.js";

export function initGuard() {
  $("#guard-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const input = $("#guard-input").value;
    const out = $("#guard-result");
    if (!input.trim()) return;
    const body = { input };
    if ($("#guard-model").value) body.model = $("#guard-model").value;
    say($("#guard-note"), "Scoring…");
    try {
      const res = await post("/v1/moderations", body);
      const r = res.results[0];
      say($("#guard-note"), "");
      fill(out,
        h("p", { class: `verdict ${r.flagged ? "flagged" : "clean"}` }, r.flagged ? "Flagged: likely prompt injection" : "Not flagged"),
        h("meter", { min: 0, max: 1, value: r.score, optimum: 0, high: r.threshold, "aria-label": "Injection score" }),
        h("dl", {},
          h("dt", {}, "Score"), h("dd", { class: "score" }, fmt(r.score, 4)),
          h("dt", {}, "Threshold"), h("dd", {}, fmt(r.threshold, 4)),
          h("dt", {}, "Model"), h("dd", {}, res.model)));
    } catch (err) {
      fill(out);
      say($("#guard-note"), err.message, true);
    }
  });
}

/** Fills the guard picker with the guards of `/v1/models`. */
export async function loadGuards() {
  try {
    const { data } = await get("/v1/models");
    const guards = data.filter((m) => m.kind === "guard");
    fill($("#guard-model"), h("option", { value: "" }, "Default guard"), guards.map((m) => h("option", { value: m.id }, m.id)));
    if (!guards.length) say($("#guard-note"), "No guard is loaded: start ragd with --guard.", true);
  } catch (e) {
    say($("#guard-note"), `Models: ${e.message}`, true);
  }
}
