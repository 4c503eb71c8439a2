// How one chat message looks: its text, numbered sources that expand to
// their chunk, chunks the guard left out, and timings. Everything from
// the model or the documents goes in as text.

import { h, fill, fmt } from "./dom.js";

/** The view of `msg` (the `n`th message of the conversation), with
 *  methods to grow it while its answer streams. */
export function messageView(msg, n) {
  const text = h("div", { class: "text" });
  const status = h("p", { class: "msg-status", role: "status" });
  const extras = h("div", { class: "extras" });
  const who = msg.role === "user" ? "You" : `Assistant${msg.model ? ` · ${msg.model}` : ""}`;
  const el = h("article", { class: `msg ${msg.role}`, "aria-label": `${msg.role === "user" ? "Your" : "Assistant"} message ${n + 1}` },
    h("h2", { class: "who" }, who), text, status, extras);
  const live = document.createTextNode(msg.content || "");
  text.append(live);
  const view = {
    el,
    /** Adds a streamed piece of the answer. */
    grow(piece) {
      live.appendData(piece);
    },
    /** Shows the state and, once it ended, citations, sources and timings. */
    update() {
      el.dataset.status = msg.status || "done";
      const state = { streaming: "Generating…", stopped: "Stopped.", error: msg.error || "Failed." }[msg.status];
      status.textContent = state || "";
      status.classList.toggle("error", msg.status === "error");
      if (msg.status !== "streaming") fill(text, linkCitations(msg.content || "", n, msg.sources));
      fill(extras, sourcesView(msg, n), guardView(msg), timingView(msg));
    },
  };
  view.update();
  return view;
}

const sourceId = (n, i) => `src-${n}-${i}`;

/** The answer with each `[i]` that names a source made a link that opens it. */
function linkCitations(content, n, sources) {
  if (!sources || !sources.length) return [content];
  const parts = [];
  let last = 0;
  for (const m of content.matchAll(/\[(\d+)\]/g)) {
    const i = Number(m[1]);
    if (i < 1 || i > sources.length) continue;
    parts.push(content.slice(last, m.index));
    parts.push(h("a", { href: `#${sourceId(n, i)}`, class: "cite", on: { click: openSource } }, m[0]));
    last = m.index + m[0].length;
  }
  parts.push(content.slice(last));
  return parts;
}

function openSource(event) {
  event.preventDefault();
  const item = document.getElementById(event.currentTarget.getAttribute("href").slice(1));
  const details = item && item.querySelector("details");
  if (!details) return;
  details.open = true;
  details.querySelector("summary").focus();
}

function sourcesView(msg, n) {
  const sources = msg.sources || [];
  const blocked = msg.blocked || [];
  if (!sources.length && !blocked.length) return null;
  return h("section", { class: "sources", "aria-label": "Sources" },
    sources.length ? [h("h3", {}, "Sources"), h("ol", {}, sources.map((s, i) => sourceItem(s, i + 1, n)))] : null,
    blocked.length ? [
      h("h3", {}, "Left out by the guard"),
      h("ul", { class: "blocked" }, blocked.map((b) => h("li", { class: "blocked-source" },
        h("span", { class: "doc" }, b.document_id),
        ` · chunk ${b.chunk_index} · injection score ${fmt(b.injection_score, 3)} · not shown to the model`))),
    ] : null);
}

function sourceItem(s, i, n) {
  const row = (label, value) => (value === null || value === undefined ? null : [h("dt", {}, label), h("dd", {}, String(value))]);
  return h("li", { id: sourceId(n, i), class: "source" },
    h("details", {},
      h("summary", {}, h("span", { class: "num" }, `[${i}]`), " ", h("span", { class: "doc" }, s.document_id),
        " ", h("span", { class: "score" }, `score ${fmt(s.score, 3)}`)),
      h("blockquote", { class: "chunk" }, s.text),
      h("dl", {},
        row("Document", s.document_id),
        row("Chunk", `${s.chunk_index} (id ${s.chunk_id})`),
        row("Score", fmt(s.score, 4)),
        row("Dense", s.dense_rank ? `#${s.dense_rank}, cosine ${fmt(s.dense_score, 4)}` : null),
        row("Lexical", s.lexical_rank ? `#${s.lexical_rank}, BM25 ${fmt(s.lexical_score, 3)}` : null),
        row("Rerank", s.rerank_score !== undefined ? fmt(s.rerank_score, 4) : null))));
}

function guardView(msg) {
  const flags = msg.flags || [];
  if (!flags.length) return null;
  return h("p", { class: "flags" }, "Guard flagged: ",
    flags.map((f) => `${f.stage}${f.document_id ? ` (${f.document_id})` : ""} ${fmt(f.score, 3)}`).join(", "));
}

function timingView(msg) {
  const t = msg.timing;
  if (!t || msg.role !== "assistant") return null;
  const parts = [];
  if (Number.isFinite(t.ttft_ms)) parts.push(`TTFT ${fmt(t.ttft_ms, 0)} ms`);
  if (Number.isFinite(t.tokens_per_s)) parts.push(`${fmt(t.tokens_per_s, 1)} tokens/s`);
  if (t.tokens) parts.push(`${t.tokens} tokens`);
  if (Number.isFinite(t.total_ms)) parts.push(`${fmt(t.total_ms / 1000, 2)} s in all`);
  const server = (t.server || []).map(([name, ms]) => `${name} ${fmt(ms, 1)} ms`);
  return h("p", { class: "timings" }, parts.join(" · "),
    server.length ? [h("br"), `Server-Timing: ${server.join(" · ")}`] : null);
}
