// The knowledge-base view: collections (list, create, delete), file
// uploads with progress, the documents of a collection, and search.

import { $, h, fill, fmt, say } from "./dom.js";
import { get, post, del, upload, collectionPath } from "./api.js";

let selected = "";

export function initKb() {
  $("#kb-create").addEventListener("submit", async (e) => {
    e.preventDefault();
    const name = $("#kb-name").value.trim();
    const tokens = $("#kb-chunk-tokens").value.trim();
    const body = { name };
    if (tokens) body.chunk_tokens = Number(tokens);
    try {
      await post("/v1/collections", body);
      $("#kb-name").value = "";
      say($("#kb-note"), `Created ${name}.`);
      selected = name;
      await loadCollections();
    } catch (err) {
      say($("#kb-note"), err.message, true);
    }
  });
  const drop = $("#kb-drop");
  const files = $("#kb-files");
  files.addEventListener("change", () => files.files.length && send([...files.files]));
  for (const name of ["dragenter", "dragover"]) {
    drop.addEventListener(name, (e) => {
      e.preventDefault();
      drop.classList.add("over");
    });
  }
  for (const name of ["dragleave", "drop"]) drop.addEventListener(name, () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    if (e.dataTransfer.files.length) send([...e.dataTransfer.files]);
  });
  $("#kb-search").addEventListener("submit", (e) => {
    e.preventDefault();
    search();
  });
  showSelected();
}

/** Lists the collections, and tells the chat's picker. */
export async function loadCollections() {
  const note = $("#kb-note");
  let data = [];
  try {
    ({ data } = await get("/v1/collections"));
    if (note.classList.contains("error")) say(note, "");
  } catch (e) {
    say(note, `Collections: ${e.message}`, true);
  }
  document.dispatchEvent(new CustomEvent("ragd:collections", { detail: data }));
  if (!data.some((c) => c.name === selected)) selected = data.length ? data[0].name : "";
  const rows = data.map((c) =>
    h("tr", { class: c.name === selected ? "selected" : "" },
      h("th", { scope: "row" }, h("button", { type: "button", class: "link", "aria-pressed": String(c.name === selected), on: { click: () => choose(c.name) } }, c.name)),
      h("td", { class: "num" }, c.documents),
      h("td", { class: "num" }, c.chunks),
      h("td", {}, c.embedding_model || "–"),
      h("td", {}, deleteButton(c.name))));
  fill($("#kb-collections tbody"), rows.length ? rows : h("tr", {}, h("td", { colspan: 5 }, "No collection yet: create one.")));
  showSelected();
}

/** A delete button that asks again before it deletes. */
function deleteButton(name) {
  const button = h("button", { type: "button", class: "danger", "aria-label": `Delete collection ${name}` }, "Delete");
  button.addEventListener("click", async () => {
    if (!button.dataset.armed) {
      button.dataset.armed = "1";
      button.textContent = "Really delete?";
      setTimeout(() => {
        delete button.dataset.armed;
        button.textContent = "Delete";
      }, 4000);
      return;
    }
    try {
      await del(collectionPath(name));
      say($("#kb-note"), `Deleted ${name}.`);
    } catch (e) {
      say($("#kb-note"), e.message, true);
    }
    await loadCollections();
  });
  return button;
}

function choose(name) {
  selected = name;
  loadCollections();
}

function showSelected() {
  $("#kb-selected").hidden = !selected;
  $("#kb-selected-name").textContent = selected;
  if (selected) loadDocuments();
}

async function send(files) {
  const bar = $("#kb-progress");
  const note = $("#kb-upload-note");
  bar.hidden = false;
  bar.value = 0;
  say(note, `Uploading ${files.length} file(s)…`);
  try {
    const out = await upload(selected, files, (sent, total) => {
      if (total) bar.value = sent / total;
    });
    bar.value = 1;
    const failed = out.files.filter((f) => f.error);
    say(note, `Indexed ${out.documents} document(s), ${out.chunks} chunk(s).` +
      failed.map((f) => ` ${f.name}: ${f.error}`).join(""), failed.length > 0);
  } catch (e) {
    say(note, e.message, true);
  }
  $("#kb-files").value = "";
  await loadCollections();
}

async function loadDocuments() {
  const list = $("#kb-documents");
  const name = selected;
  try {
    const page = await get(collectionPath(name, "/documents?limit=200"));
    if (name !== selected) return;
    fill(list, page.data.length ? page.data.map((d) => documentItem(name, d)) : h("li", {}, "No documents yet."),
      page.has_more ? h("li", {}, "… more documents not listed.") : null);
  } catch (e) {
    fill(list, h("li", { class: "error" }, e.message));
  }
}

/** A document that shows its chunks when opened. */
function documentItem(name, doc) {
  const body = h("ol", { class: "chunks" });
  const details = h("details", {}, h("summary", {}, h("span", { class: "doc" }, doc.id), ` · ${doc.chunks} chunk(s)`), body);
  details.addEventListener("toggle", async () => {
    if (!details.open || body.childElementCount) return;
    try {
      const full = await get(collectionPath(name, `/documents/${encodeURIComponent(doc.id)}`));
      fill(body, full.chunks.map((c) => h("li", {}, h("blockquote", { class: "chunk" }, c))));
    } catch (e) {
      fill(body, h("li", { class: "error" }, e.message));
    }
  });
  return h("li", {}, details);
}

async function search() {
  const out = $("#kb-hits");
  const query = $("#kb-query").value.trim();
  if (!query) return;
  const body = { query, top_k: Number($("#kb-top-k").value) || 5, mode: $("#kb-mode").value };
  try {
    const { data } = await post(collectionPath(selected, "/search"), body);
    fill(out, data.length ? data.map((hit, i) => h("li", { class: "hit" },
      h("p", {}, h("span", { class: "num" }, `${i + 1}.`), " ", h("span", { class: "doc" }, hit.document_id),
        ` · chunk ${hit.chunk_index} · `, h("span", { class: "score" }, `score ${fmt(hit.score, 3)}`)),
      h("blockquote", { class: "chunk" }, hit.text))) : h("li", {}, "No hits."));
  } catch (e) {
    fill(out, h("li", { class: "error" }, e.message));
  }
}
