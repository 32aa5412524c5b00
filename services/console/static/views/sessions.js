import * as api from "../api.js";
import { announce, debounce, describeError, errorBox, h, mount, when } from "../dom.js";

/** Troubleshooting sessions of your account, and a form to open a new one. */
export function renderSessions(main, { query }, ctx) {
  let disposed = false;
  const filter = query.get("status") || "active";
  const searchInput = h("input", {
    id: "session-search",
    name: "search",
    type: "search",
    maxlength: 200,
    autocomplete: "off",
    placeholder: "Title, ticket reference or problem",
    value: query.get("search") || "",
  });
  const searchForm = h(
    "form",
    { class: "session-search", role: "search", "aria-label": "Session search", novalidate: true },
    h("div", { class: "field" }, h("label", { for: "session-search", text: "Search sessions" }), searchInput),
  );
  let loadSeq = 0;
  const status = h("p", { class: "status-line", role: "status", "aria-live": "polite" });
  const list = h("ul", { class: "session-list", id: "session-list" });

  const title = h("input", { id: "session-title", name: "title", required: true, maxlength: 300, autocomplete: "off" });
  const ticket = h("input", { id: "session-ticket", name: "ticket_ref", maxlength: 200, autocomplete: "off", placeholder: "e.g. INC-1042" });
  const problem = h("textarea", { id: "session-problem", name: "problem", rows: 3 });
  const formError = h("div", { class: "error-box", role: "alert", hidden: true });
  const submit = h("button", { type: "submit", class: "button button-primary", text: "Open session" });
  const form = h(
    "form",
    { class: "card create-session", novalidate: true, "aria-labelledby": "new-session-title" },
    h("h2", { id: "new-session-title", text: "New session" }),
    h("div", { class: "field" }, h("label", { for: "session-title" }, "Title", h("span", { class: "required", "aria-hidden": "true", text: " *" })), title),
    h("div", { class: "field" }, h("label", { for: "session-ticket", text: "Ticket reference" }), ticket),
    h("div", { class: "field" }, h("label", { for: "session-problem", text: "Problem (optional)" }), problem),
    formError,
    h("div", { class: "form-actions" }, submit),
  );

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    formError.hidden = true;
    if (!title.value.trim()) {
      formError.textContent = "Give the session a title.";
      formError.hidden = false;
      title.setAttribute("aria-invalid", "true");
      title.focus();
      return;
    }
    title.removeAttribute("aria-invalid");
    submit.disabled = true;
    try {
      const payload = { title: title.value.trim() };
      if (ticket.value.trim()) payload.ticket_ref = ticket.value.trim();
      if (problem.value.trim()) payload.problem = problem.value.trim();
      const created = await api.createSession(payload);
      announce("Session opened");
      ctx.navigate(`#/sessions/${created.id}`);
    } catch (error) {
      formError.textContent = describeError(error);
      formError.hidden = false;
    } finally {
      submit.disabled = false;
    }
  });

  const tabs = h(
    "nav",
    { class: "tabs", "aria-label": "Session status" },
    ["active", "resolved", "all"].map((value) =>
      h("a", {
        href: `#/sessions?status=${value}`,
        class: "tab",
        "aria-current": value === filter ? "page" : undefined,
        text: value[0].toUpperCase() + value.slice(1),
      }),
    ),
  );

  mount(
    main,
    h("h1", { text: "Troubleshooting sessions" }),
    h(
      "div",
      { class: "sessions-layout" },
      h("section", { "aria-labelledby": "session-list-title" }, h("h2", { id: "session-list-title", class: "visually-hidden", text: "Sessions" }), tabs, searchForm, status, list),
      form,
    ),
  );

  function load() {
  const seq = ++loadSeq;
  const search = searchInput.value.trim();
  status.textContent = "Loading sessions…";
  api
    .listSessions({ status: filter === "all" ? undefined : filter, search: search || undefined, limit: 100 })
    .then((sessions) => {
      if (disposed || seq !== loadSeq) return;
      const count = `${sessions.length} session${sessions.length === 1 ? "" : "s"}`;
      status.textContent = sessions.length
        ? search ? `${count} matching “${search}”` : count
        : search ? `No sessions match “${search}”.` : "No sessions here yet.";
      mount(
        list,
        sessions.map((s) =>
          h(
            "li",
            { class: "session-row" },
            h("a", { href: `#/sessions/${s.id}`, class: "session-link", text: s.title }),
            h(
              "span",
              { class: "session-meta" },
              h("span", { class: `pill status-${s.status}`, text: s.status }),
              s.ticket_ref ? h("span", { class: "pill pill-quiet", text: s.ticket_ref }) : null,
              h("span", { class: "muted small" }, "opened ", when(s.created_at)),
            ),
          ),
        ),
      );
    })
    .catch((error) => {
      if (disposed || seq !== loadSeq) return;
      status.textContent = "";
      mount(list, h("li", {}, errorBox(error)));
    });
  }

  const searchLater = debounce(load, 300);
  searchInput.addEventListener("input", () => searchLater());
  searchForm.addEventListener("submit", (event) => {
    event.preventDefault();
    searchLater.cancel();
    load();
  });
  load();

  return () => {
    disposed = true;
    searchLater.cancel();
  };
}
