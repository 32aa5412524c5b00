// Small DOM helpers. Text from the API only ever enters the page as text nodes (no innerHTML).

/**
 * Creates an element. `attrs`: `class`, `text`, `dataset`, `on<Event>` handlers, boolean and
 * string attributes; `hidden: false` etc. are skipped.
 * @param {string} tag
 * @param {Object} [attrs]
 * @param {...(Node|string|number|null|undefined|false|Array)} children
 * @returns {HTMLElement}
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") el.className = Array.isArray(value) ? value.filter(Boolean).join(" ") : value;
    else if (key === "text") el.textContent = String(value);
    else if (key === "dataset") Object.assign(el.dataset, value);
    else if (key.startsWith("on") && typeof value === "function") {
      el.addEventListener(key.slice(2).toLowerCase(), value);
    } else if (key === "value" && "value" in el) el.value = value;
    else if (key === "checked" || key === "selected" || key === "multiple") el[key] = Boolean(value);
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** Replaces the element's children. */
export function mount(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

/** Reads a polite status message to assistive technology. */
export function announce(message) {
  const region = document.getElementById("announcer");
  if (!region) return;
  region.textContent = "";
  // A separate task, so the same message twice is still announced.
  setTimeout(() => {
    region.textContent = message;
  }, 30);
}

let uid = 0;
/** A page-unique id for label/aria wiring. */
export const nextId = (prefix = "rf") => `${prefix}-${++uid}`;

/**
 * Debounces `fn`: it runs once, `ms` after the last call. `.flush()` runs it now if pending,
 * `.cancel()` drops a pending run.
 * @template {(...args: any[]) => any} F
 * @param {F} fn
 * @param {number} ms
 */
export function debounce(fn, ms) {
  let timer = null;
  let lastArgs = [];
  const debounced = (...args) => {
    lastArgs = args;
    if (timer) clearTimeout(timer);
    timer = setTimeout(() => {
      timer = null;
      fn(...lastArgs);
    }, ms);
  };
  debounced.cancel = () => {
    if (timer) clearTimeout(timer);
    timer = null;
  };
  debounced.flush = () => {
    if (!timer) return;
    debounced.cancel();
    fn(...lastArgs);
  };
  debounced.pending = () => timer !== null;
  return debounced;
}

const dateFormat = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });

/** A readable local date-time, inside a <time> element. */
export function when(iso) {
  if (!iso) return h("span", { text: "—" });
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return h("span", { text: String(iso) });
  return h("time", { datetime: date.toISOString(), text: dateFormat.format(date) });
}

/** Labels for the enum values of the API. */
export const LABELS = {
  symptom: "Symptoms",
  observation: "Observations",
  confirmed: "Confirmed",
  ruled_out: "Ruled out",
  environment: "Environment",
  root_cause: "Root cause",
  resolution: "Resolution",
  one_off: "Use once",
  draft_template: "Draft a template",
  build_template: "Build a template",
  dismissed: "Dismiss",
};

export const KIND_SINGULAR = {
  symptom: "Symptom",
  observation: "Observation",
  confirmed: "Confirmed",
  ruled_out: "Ruled out",
  environment: "Environment",
  root_cause: "Root cause",
  resolution: "Resolution",
};

/** Copies text to the clipboard; falls back to selecting the element's text. */
export async function copyText(text, fallbackEl) {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch {
    if (fallbackEl) {
      const range = document.createRange();
      range.selectNodeContents(fallbackEl);
      const selection = window.getSelection();
      selection?.removeAllRanges();
      selection?.addRange(range);
    }
    return false;
  }
}

/** A status line whose changes are announced (aria-live polite). */
export function liveStatus(className = "status-line") {
  return h("p", { class: className, role: "status", "aria-live": "polite" });
}

/** An error box (role=alert) for a failed call. */
export function errorBox(error) {
  return h("div", { class: "error-box", role: "alert", text: describeError(error) });
}

export function describeError(error) {
  if (!error) return "Something went wrong.";
  if (error.name === "ApiError") {
    if (error.status === 0) return "The server could not be reached.";
    return `${error.message}${error.status ? ` (HTTP ${error.status})` : ""}`;
  }
  if (error.name === "TypeError") return "The server could not be reached. Check your connection.";
  return error.message || String(error);
}
