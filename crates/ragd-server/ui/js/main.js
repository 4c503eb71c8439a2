// The playground's entry: tabs, theme, the API key field, and each view.

import { $ } from "./dom.js";
import { singleUser, apiKey, setApiKey } from "./api.js";
import { initChat, loadModels } from "./chat.js";
import { initKb, loadCollections } from "./kb.js";
import { initGuard, loadGuards } from "./guard.js";
import { startStatus, stopStatus } from "./status.js";

const VIEWS = ["chat", "kb", "guard", "status"];
const THEMES = ["auto", "light", "dark"];

function show(view, focus = false) {
  for (const v of VIEWS) {
    const tab = $(`#tab-${v}`);
    const on = v === view;
    tab.setAttribute("aria-selected", String(on));
    tab.tabIndex = on ? 0 : -1;
    $(`#view-${v}`).hidden = !on;
    if (on && focus) tab.focus();
  }
  if (view === "status") startStatus();
  else stopStatus();
  if (location.hash !== `#${view}`) history.replaceState(null, "", `#${view}`);
}

function initTabs() {
  for (const v of VIEWS) {
    $(`#tab-${v}`).addEventListener("click", () => {
      show(v);
      // Counts may have moved (uploads from elsewhere).
      if (v === "chat" || v === "kb") loadCollections();
    });
  }
  // Arrow keys move between tabs (the WAI-ARIA tabs pattern).
  $("#tabs").addEventListener("keydown", (e) => {
    const i = VIEWS.findIndex((v) => $(`#tab-${v}`) === document.activeElement);
    if (i < 0) return;
    const step = { ArrowRight: 1, ArrowLeft: -1 }[e.key];
    if (step) {
      e.preventDefault();
      show(VIEWS[(i + step + VIEWS.length) % VIEWS.length], true);
    }
  });
  const start = location.hash.slice(1);
  show(VIEWS.includes(start) ? start : "chat");
}

function setTheme(theme) {
  if (theme === "auto") delete document.documentElement.dataset.theme;
  else document.documentElement.dataset.theme = theme;
  const button = $("#theme");
  button.textContent = `Theme: ${theme}`;
  button.dataset.theme = theme;
  localStorage.setItem("ragd.theme", theme);
}

function initTheme() {
  setTheme(THEMES.includes(localStorage.getItem("ragd.theme")) ? localStorage.getItem("ragd.theme") : "auto");
  $("#theme").addEventListener("click", () => {
    setTheme(THEMES[(THEMES.indexOf($("#theme").dataset.theme) + 1) % THEMES.length]);
  });
}

function reload() {
  loadModels();
  loadGuards();
  loadCollections();
}

function initKey() {
  const box = $("#key-box");
  box.hidden = singleUser();
  if (singleUser()) return;
  const input = $("#api-key");
  input.value = apiKey();
  const use = () => {
    setApiKey(input.value.trim());
    reload();
  };
  input.addEventListener("change", use);
  box.addEventListener("submit", (e) => {
    e.preventDefault();
    use();
  });
}

initTheme();
initKey();
initChat();
initKb();
initGuard();
initTabs();
reload();
