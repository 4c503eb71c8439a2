// The chat view: settings, the conversation (kept in this tab's
// sessionStorage, exportable as JSON), streamed answers and the stop button.

import { $, h, fill, say } from "./dom.js";
import { get, headers, errorOf } from "./api.js";
import { events, serverTiming } from "./sse.js";
import { messageView } from "./chat_view.js";

const STORE = "ragd.conversation";
let conversation = load();
let running = null;

function load() {
  try {
    const saved = JSON.parse(sessionStorage.getItem(STORE) || "[]");
    // An answer that was streaming when the tab reloaded ended there.
    for (const m of saved) if (m.status === "streaming") m.status = "stopped";
    return Array.isArray(saved) ? saved : [];
  } catch (_) {
    return [];
  }
}

function save() {
  sessionStorage.setItem(STORE, JSON.stringify(conversation));
}

export function initChat() {
  const form = $("#chat-form");
  const input = $("#chat-input");
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const text = input.value.trim();
    if (!text || running) return;
    input.value = "";
    send(text);
  });
  input.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      form.requestSubmit();
    }
  });
  document.addEventListener("keydown", (e) => {
    if (e.key === "Escape" && running) running.abort();
  });
  $("#chat-stop").addEventListener("click", () => running && running.abort());
  $("#chat-clear").addEventListener("click", () => {
    if (running) running.abort();
    conversation = [];
    save();
    renderAll();
  });
  $("#chat-export").addEventListener("click", exportJson);
  $("#rag-on").addEventListener("change", ragFields);
  document.addEventListener("ragd:collections", (e) => collectionOptions(e.detail));
  ragFields();
  renderAll();
  busy(false);
}

/** Fills the model picker with the generators of `/v1/models`. */
export async function loadModels() {
  const picker = $("#chat-model");
  const note = $("#chat-note");
  try {
    const { data } = await get("/v1/models");
    const generators = data.filter((m) => m.kind === "generator");
    const keep = picker.value;
    fill(picker, generators.map((m) => h("option", { value: m.id }, m.id)));
    if (generators.some((m) => m.id === keep)) picker.value = keep;
    say(note, generators.length ? "" : "No generator is loaded: start ragd with --generator.", !generators.length);
  } catch (e) {
    say(note, `Models: ${e.message}`, true);
  }
}

function collectionOptions(collections) {
  const picker = $("#rag-collection");
  const keep = picker.value;
  fill(picker, collections.map((c) => h("option", { value: c.name }, `${c.name} (${c.documents} docs)`)));
  if (collections.some((c) => c.name === keep)) picker.value = keep;
}

function ragFields() {
  $("#rag-fields").disabled = !$("#rag-on").checked;
}

function renderAll() {
  const log = $("#chat-log");
  fill(log, conversation.map((m, i) => messageView(m, i).el));
  log.scrollTop = log.scrollHeight;
}

function busy(on) {
  $("#chat-send").disabled = on;
  $("#chat-stop").disabled = !on;
}

/** The request body for the conversation so far. */
function requestBody() {
  const num = (id) => {
    const v = $(id).value.trim();
    return v === "" ? undefined : Number(v);
  };
  const body = {
    model: $("#chat-model").value,
    stream: true,
    stream_options: { include_usage: true },
    messages: conversation
      .filter((m) => m.role === "user" || (m.status !== "error" && m.content))
      .map((m) => ({ role: m.role, content: m.content })),
    temperature: num("#chat-temperature"),
    max_tokens: num("#chat-max-tokens"),
    seed: num("#chat-seed"),
  };
  if ($("#rag-on").checked) {
    body.rag = { collection: $("#rag-collection").value, top_k: num("#rag-top-k"), mode: $("#rag-mode").value };
  }
  return body;
}

async function send(text) {
  conversation.push({ role: "user", content: text });
  const body = requestBody();
  const msg = { role: "assistant", content: "", model: body.model, status: "streaming" };
  conversation.push(msg);
  save();
  const log = $("#chat-log");
  log.append(messageView(conversation[conversation.length - 2], conversation.length - 2).el);
  const view = messageView(msg, conversation.length - 1);
  log.append(view.el);
  const controller = new AbortController();
  running = controller;
  busy(true);
  const start = performance.now();
  let first = null;
  let pieces = 0;
  let usage = null;
  try {
    const res = await fetch("/v1/chat/completions", {
      method: "POST",
      headers: headers({ "Content-Type": "application/json" }),
      body: JSON.stringify(body),
      signal: controller.signal,
    });
    if (!res.ok) throw await errorOf(res);
    msg.timing = { server: serverTiming(res.headers.get("server-timing")) };
    for await (const event of events(res.body)) {
      if (event === "[DONE]") break;
      if (event.error) throw new Error(event.error.message);
      if (event.usage) usage = event.usage;
      if (event.sources || event.blocked_sources || event.guard_flags) {
        msg.sources = event.sources || msg.sources;
        msg.blocked = event.blocked_sources || msg.blocked;
        msg.flags = event.guard_flags || msg.flags;
        view.update();
      }
      const choice = event.choices && event.choices[0];
      const piece = choice && choice.delta && choice.delta.content;
      if (piece) {
        if (first === null) first = performance.now();
        pieces += 1;
        msg.content += piece;
        view.grow(piece);
        log.scrollTop = log.scrollHeight;
      }
      if (choice && choice.finish_reason) msg.finish_reason = choice.finish_reason;
    }
    msg.status = "done";
  } catch (e) {
    msg.status = e.name === "AbortError" ? "stopped" : "error";
    if (msg.status === "error") msg.error = e.message;
  } finally {
    const end = performance.now();
    const tokens = usage ? usage.completion_tokens : pieces;
    msg.timing = {
      ...(msg.timing || {}),
      ttft_ms: first === null ? NaN : first - start,
      tokens,
      tokens_per_s: first !== null && tokens > 1 && end > first ? ((tokens - 1) * 1000) / (end - first) : NaN,
      total_ms: end - start,
    };
    running = null;
    busy(false);
    save();
    view.update();
    $("#chat-input").focus();
  }
}

function exportJson() {
  const data = { exported: new Date().toISOString(), server: location.origin, messages: conversation };
  const url = URL.createObjectURL(new Blob([JSON.stringify(data, null, 2)], { type: "application/json" }));
  const a = h("a", { href: url, download: `ragd-chat-${data.exported.slice(0, 19).replace(/:/g, "-")}.json` });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}
