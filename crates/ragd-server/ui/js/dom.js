// Building the page from data, always as text: no HTML string is ever
// parsed (the page's Content-Security-Policy requires Trusted Types and
// allows none, so innerHTML would throw).

/** An element: `attrs` are attributes (`on` holds event listeners),
 *  `children` strings (shown as text), nodes, or nested arrays. */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (name === "on") {
      for (const [event, fn] of Object.entries(value)) el.addEventListener(event, fn);
    } else if (value === true) {
      el.setAttribute(name, "");
    } else if (value !== false && value !== null && value !== undefined) {
      el.setAttribute(name, String(value));
    }
  }
  append(el, children);
  return el;
}

/** Appends `children` (text, nodes, arrays of them) to `el`. */
export function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

/** Replaces what `el` holds with `children`. */
export function fill(el, ...children) {
  el.replaceChildren();
  return append(el, children);
}

export const $ = (selector, root = document) => root.querySelector(selector);

/** A number with `digits` decimals, or a dash. */
export function fmt(value, digits = 2) {
  return Number.isFinite(value) ? value.toFixed(digits) : "–";
}

/** Shows `message` in the status line `el` (role=status), as an error when `error`. */
export function say(el, message, error = false) {
  el.textContent = message;
  el.classList.toggle("error", error);
}
