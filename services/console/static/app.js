// The console's entry module: a hash router over the views, the signed-in user, the nav.

import * as api from "./api.js";
import { announce, describeError, h, mount } from "./dom.js";
import { renderDraftEditor } from "./views/draft.js";
import { renderGenerate } from "./views/generate.js";
import { renderHistory } from "./views/history.js";
import { renderKbArticle, renderKbArticles } from "./views/kb.js";
import { renderLibrary } from "./views/library.js";
import { renderLogin } from "./views/login.js";
import { renderSession } from "./views/session.js";
import { renderSessions } from "./views/sessions.js";
import { renderSettings } from "./views/settings.js";

/** [pattern, view, nav key]; a view gets (main, {params, query}, ctx) and may return cleanup. */
const ROUTES = [
  [/^\/library$/, renderLibrary, "library"],
  [/^\/templates\/([^/]+)\/edit$/, renderDraftEditor, "library"],
  [/^\/templates\/([^/]+)$/, renderGenerate, "library"],
  [/^\/history$/, renderHistory, "history"],
  [/^\/sessions$/, renderSessions, "sessions"],
  [/^\/sessions\/([^/]+)$/, renderSession, "sessions"],
  [/^\/kb$/, renderKbArticles, "kb"],
  [/^\/kb\/([^/]+)$/, renderKbArticle, "kb"],
  [/^\/settings$/, renderSettings, "settings"],
];

const state = {
  me: /** @type {?api.Me} */ (null),
  cleanup: /** @type {?(() => void)} */ (null),
  firstRender: true,
};

const main = /** @type {HTMLElement} */ (document.getElementById("main"));

function parseHash() {
  const raw = location.hash.replace(/^#/, "");
  const cut = raw.indexOf("?");
  const rawPath = cut === -1 ? raw : raw.slice(0, cut);
  const search = cut === -1 ? "" : raw.slice(cut + 1);
  let path = rawPath;
  try {
    path = decodeURIComponent(rawPath);
  } catch {
    // keep it as typed
  }
  return { path: path || "/library", query: new URLSearchParams(search) };
}

export function navigate(hash) {
  if (location.hash === hash) route();
  else location.hash = hash;
}

function setNav(key) {
  for (const link of document.querySelectorAll("[data-nav]")) {
    if (link.getAttribute("data-nav") === key) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
}

function showChrome(signedIn) {
  document.getElementById("primary-nav").hidden = !signedIn;
  document.getElementById("user-box").hidden = !signedIn;
  const email = document.getElementById("user-email");
  email.textContent = signedIn && state.me ? state.me.email : "";
  email.title = email.textContent;
  for (const el of document.querySelectorAll("[data-owner-only]")) {
    el.hidden = !(signedIn && state.me && (state.me.role === "owner" || state.me.is_super_admin));
  }
}

function runCleanup() {
  const cleanup = state.cleanup;
  state.cleanup = null;
  if (cleanup) {
    try {
      cleanup();
    } catch (error) {
      console.error(error);
    }
  }
}

async function ensureMe() {
  if (state.me) return state.me;
  state.me = await api.me();
  return state.me;
}

async function route() {
  runCleanup();
  const { path, query } = parseHash();

  if (!api.auth.token()) {
    state.me = null;
    showChrome(false);
    setNav(null);
    const next = path === "/login" ? query.get("next") || "/library" : path;
    state.cleanup = renderLogin(main, { next }, { onSignedIn: signedIn }) || null;
    document.title = "Sign in · ResolutionFlow";
    return;
  }
  if (path === "/login") {
    navigate("#/library");
    return;
  }

  try {
    await ensureMe();
  } catch (error) {
    if (!api.auth.token()) return; // 401: the unauthorized handler routes to the login
    mount(main, h("h1", { text: "Console unavailable" }), h("p", { text: describeError(error) }));
    return;
  }
  showChrome(true);

  for (const [pattern, view, nav] of ROUTES) {
    const match = path.match(pattern);
    if (!match) continue;
    setNav(nav);
    main.replaceChildren();
    const ctx = { me: state.me, navigate, announce };
    const result = view(main, { params: match.slice(1), query }, ctx);
    state.cleanup = typeof result === "function" ? result : null;
    focusHeading();
    return;
  }
  setNav(null);
  mount(
    main,
    h("h1", { text: "Not found", tabindex: "-1" }),
    h("p", {}, "There is no page here. ", h("a", { href: "#/library", text: "Open the library" })),
  );
  focusHeading();
}

function focusHeading() {
  // Keyboard and screen-reader users land on the new page's title, not the old link.
  if (state.firstRender) {
    state.firstRender = false;
    return;
  }
  const heading = main.querySelector("h1");
  if (heading) {
    heading.setAttribute("tabindex", "-1");
    heading.focus({ preventScroll: false });
  }
  window.scrollTo(0, 0);
}

function signedIn(next) {
  state.me = null;
  const target = next && next.startsWith("/") && next !== "/login" ? next : "/library";
  navigate(`#${target}`);
}

function signOut() {
  runCleanup();
  api.auth.clear();
  state.me = null;
  announce("Signed out");
  navigate("#/login");
}

window.addEventListener("hashchange", route);
window.addEventListener("rf:unauthorized", () => {
  state.me = null;
  const { path } = parseHash();
  if (path !== "/login") navigate(`#/login?next=${encodeURIComponent(path)}`);
});
// Leaving or hiding the page drops views' transient data (a rendered script, a new secret).
window.addEventListener("pagehide", runCleanup);
window.addEventListener("pageshow", (event) => {
  if (event.persisted) route();
});
document.getElementById("logout").addEventListener("click", signOut);

route();
