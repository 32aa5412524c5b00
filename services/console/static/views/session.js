import * as api from "../api.js";
import {
  KIND_SINGULAR,
  LABELS,
  announce,
  copyText,
  debounce,
  describeError,
  errorBox,
  h,
  mount,
  when,
} from "../dom.js";
import { renderMarkdown } from "../markdown.js";
import { handoffPanel } from "./handoff.js";

/** The preview refreshes this long after the last fact change or chat send. */
export const PREVIEW_DEBOUNCE_MS = 500;
/** How long one preview request lets the server wait for the note before answering 202. */
const PREVIEW_WAIT_S = 25;
const FINAL_DELIVERY = new Set(["delivered", "failed", "not_configured", "disabled"]);

const DELIVERY_TEXT = {
  pending: "Waiting to be sent",
  delivering: "Sending to the ticketing system…",
  retrying: "Retrying delivery",
  delivered: "Delivered to the ticketing system",
  failed: "Delivery failed",
  not_configured: "Kept here: no ticketing integration is configured",
  disabled: "Not sent: the ticketing integration is disabled",
};

/** "Posted to Zendesk ticket 4711", linked when the target gave a link. */
function deliveredTo(status, target) {
  if (status !== "delivered" || !target || !target.label) return null;
  if (target.kind === "webhook") return "Delivered to the ticketing webhook";
  const ticket = target.ticket ? ` ticket ${target.ticket}` : "";
  const text = `Posted to ${target.label}${ticket}`;
  if (!target.link || !/^https?:\/\//i.test(target.link)) return text;
  return h("a", { href: target.link, target: "_blank", rel: "noopener noreferrer", class: "delivered-link", text });
}

function confidenceBadge(confidence) {
  if (confidence === null || confidence === undefined) {
    return h("span", { class: "confidence confidence-unknown", text: "Confidence unknown" });
  }
  const level = confidence >= 75 ? "high" : confidence >= 40 ? "medium" : "low";
  return h("span", {
    class: `confidence confidence-${level}`,
    "data-confidence": String(confidence),
    text: `${confidence}% confidence`,
  });
}

/** "offline", or "anthropic · claude-sonnet-4-6": the model only when it says something more. */
export function generatorLabel(note) {
  if (!note.generator) return "";
  return note.model && note.model !== note.generator ? `${note.generator} · ${note.model}` : note.generator;
}

/**
 * A note's markdown as plain text for a ticket field that shows no markdown: headings without
 * their #, no emphasis or code marks, links as "text (url)", list items kept.
 * @param {string} markdown
 */
export function markdownToPlainText(markdown) {
  return String(markdown)
    .split(/\r?\n/)
    .map((line) =>
      line
        .replace(/^\s{0,3}#{1,6}\s+/, "")
        .replace(/^(\s*)[*+]\s+/, "$1- ")
        .replace(/\[([^\]]+)\]\(([^)\s]+)\)/g, "$1 ($2)")
        .replace(/(\*\*|__)(.+?)\1/g, "$2")
        .replace(/(^|[^*\w])[*_]([^*_\s][^*_]*?)[*_](?=[^*\w]|$)/g, "$1$2")
        .replace(/`([^`]*)`/g, "$1"),
    )
    .join("\n")
    .replace(/\n{3,}/g, "\n\n")
    .trim();
}

/** "Copy markdown" and "Copy plain text" for a note, with a status line. */
export function copyButtons(prefix, markdown, fallbackEl) {
  const status = h("span", { class: "copy-status", role: "status", "aria-live": "polite" });
  const button = (label, id, text) =>
    h("button", {
      type: "button",
      class: "button button-small",
      id,
      text: label,
      onClick: async () => {
        status.textContent = (await copyText(text, fallbackEl)) ? "Copied." : "Selected: press Ctrl+C.";
      },
    });
  return h(
    "div",
    { class: "copy-row" },
    button("Copy markdown", `${prefix}-copy-markdown`, markdown),
    button("Copy plain text", `${prefix}-copy-text`, markdownToPlainText(markdown)),
    status,
  );
}

/**
 * The session page: facts by kind, the chat, the suggested-fix card, the resolution-note
 * preview and Resolve. Fact changes and chat sends schedule one preview refresh 500 ms after
 * the last of them.
 */
export function renderSession(main, { params: [sessionId] }, ctx) {
  let disposed = false;
  const timers = new Set();
  const controllers = new Set();

  const state = {
    /** @type {?api.AISession} */ session: null,
    /** @type {api.Fact[]} */ facts: [],
    /** @type {Object[]} */ messages: [],
    /** @type {?api.SuggestedFix} */ activeFix: null,
    /** @type {api.SuggestedFix[]} */ fixes: [],
    /** Template drafts made from this session's fixes, by fix id. */ drafts: new Map(),
    stateVersion: 0,
    sending: false,
  };

  const later = (fn, ms) => {
    const timer = setTimeout(() => {
      timers.delete(timer);
      if (!disposed) fn();
    }, ms);
    timers.add(timer);
    return timer;
  };
  const cancel = (timer) => {
    if (timer) {
      clearTimeout(timer);
      timers.delete(timer);
    }
  };

  const pageStatus = h("p", { class: "status-line", role: "status", "aria-live": "polite" });
  mount(main, h("p", { class: "breadcrumb" }, h("a", { href: "#/sessions", text: "← Sessions" })), h("h1", { text: "Session" }), pageStatus);
  pageStatus.textContent = "Loading session…";

  // ── Elements built once ────────────────────────────────────────────────
  const titleEl = h("h1", { id: "session-title-heading", tabindex: "-1" });
  const headerMeta = h("p", { class: "session-header-meta" });
  const versionBadge = h("span", { class: "pill pill-quiet", id: "state-version", "aria-label": "State version" });
  const readOnlyNote = h("p", { class: "notice", hidden: true });
  const detailsBox = h("div", { class: "session-details", id: "session-details" });

  // Facts
  const factKind = h("select", { id: "fact-kind", name: "kind" }, api.FACT_KINDS.map((k) => h("option", { value: k, text: KIND_SINGULAR[k], selected: k === "observation" })));
  const factText = h("textarea", { id: "fact-text", name: "text", rows: 2, maxlength: 4000, required: true });
  const factError = h("p", { class: "field-error", id: "fact-text-error", hidden: true });
  const factSubmit = h("button", { type: "submit", class: "button button-primary", text: "Add fact" });
  const factForm = h(
    "form",
    { class: "fact-form", id: "fact-form", novalidate: true, "aria-label": "Add a fact" },
    h("div", { class: "field field-kind" }, h("label", { for: "fact-kind", text: "Kind" }), factKind),
    h("div", { class: "field field-grow" }, h("label", { for: "fact-text", text: "Fact" }), factText, factError),
    h("div", { class: "form-actions" }, factSubmit),
  );
  const factGroups = h("div", { class: "fact-groups", id: "fact-groups" });
  const factsSection = h(
    "section",
    { class: "panel facts-panel", "aria-labelledby": "facts-title" },
    h("h2", { id: "facts-title", text: "Facts" }),
    factForm,
    factGroups,
  );

  // Suggested fix
  const fixBody = h("div", { class: "fix-body" });
  const fixStatus = h("p", { class: "status-line", role: "status", "aria-live": "polite" });
  const fixSection = h(
    "section",
    { class: "panel fix-card", id: "fix-card", "aria-labelledby": "fix-title" },
    h("h2", { id: "fix-title", text: "Suggested fix" }),
    fixBody,
    fixStatus,
  );

  // Similar past sessions
  const similarBody = h("div", { class: "similar-body", id: "similar-sessions" });
  const similarSection = h(
    "section",
    { class: "panel similar-panel", id: "similar-panel", "aria-labelledby": "similar-title" },
    h("h2", { id: "similar-title", text: "Similar past sessions" }),
    similarBody,
  );

  function renderSimilar(items) {
    if (!items.length) {
      mount(similarBody, h("p", { class: "muted", id: "similar-empty", text: "No resolved session of your account looks like this one yet." }));
      return;
    }
    mount(
      similarBody,
      h(
        "ol",
        { class: "similar-list" },
        items.map((item) =>
          h(
            "li",
            { dataset: { sessionId: item.session_id } },
            h("a", { href: `#/sessions/${item.session_id}`, text: item.title }),
            item.ticket_ref ? h("span", { class: "muted small", text: ` · ${item.ticket_ref}` }) : null,
            item.root_cause?.length ? h("p", { class: "small" }, h("strong", { text: "Cause: " }), item.root_cause.join("; ")) : null,
            item.resolution?.length ? h("p", { class: "small" }, h("strong", { text: "Fixed by: " }), item.resolution.join("; ")) : null,
            item.templates_used?.length
              ? h("p", { class: "small" }, h("strong", { text: "Templates: " }), item.templates_used.map((t, i) => [i ? ", " : "", h("a", { href: `#/templates/${t.template_id}`, text: t.name })]))
              : null,
          ),
        ),
      ),
    );
  }

  async function refreshSimilar() {
    try {
      const items = await api.similarSessions(sessionId);
      if (!disposed) renderSimilar(items || []);
    } catch (err) {
      if (!disposed) mount(similarBody, h("p", { class: "muted", text: describeError(err) }));
    }
  }

  async function refreshDrafts() {
    const drafts = await api.listDrafts().catch(() => []);
    if (disposed) return;
    state.drafts = new Map((drafts || []).filter((d) => d.source_fix_id).map((d) => [d.source_fix_id, d.id]));
  }

  // Resolve
  /** The preview last shown (the Resolve panel reads the cause and fix from it). */
  let shownNote = null;
  const resolveTicket = h("input", { id: "resolve-ticket", name: "ticket_ref", maxlength: 200, autocomplete: "off" });
  const resolveSubmit = h("button", { type: "submit", class: "button button-resolve", id: "resolve-button", text: "Resolve session" });
  const resolveError = h("div", { class: "error-box", role: "alert", hidden: true });
  // What the note will say the cause and the fix were, from the latest preview.
  const outlineCause = h("dd", { id: "resolve-outline-cause" });
  const outlineFix = h("dd", { id: "resolve-outline-fix" });
  const resolveOutline = h(
    "dl",
    { class: "resolve-outline", id: "resolve-outline" },
    h("dt", { text: "The note will say the root cause was" }),
    outlineCause,
    h("dt", { text: "and that it was fixed by" }),
    outlineFix,
  );
  const resolveResolution = h("textarea", { id: "resolve-resolution", name: "resolution", rows: 2, maxlength: 4000, "aria-describedby": "resolve-resolution-help" });
  const resolveResolutionField = h(
    "div",
    { class: "field", id: "resolve-resolution-field", hidden: true },
    h("label", { for: "resolve-resolution", text: "What fixed it" }),
    resolveResolution,
    h("p", { id: "resolve-resolution-help", class: "hint", text: "No resolution is recorded yet. This is saved as a resolution fact when you resolve." }),
  );
  const resolveForce = h("input", { type: "checkbox", id: "resolve-force", name: "force" });
  const resolveForceField = h(
    "div",
    { class: "field field-checkbox", id: "resolve-force-field", hidden: true },
    resolveForce,
    h("label", { for: "resolve-force", text: "Resolve without a resolution (the note will say none was recorded)" }),
  );
  const resolveForm = h(
    "form",
    { class: "resolve-form", novalidate: true, "aria-label": "Resolve the session" },
    resolveOutline,
    h("div", { class: "field" }, h("label", { for: "resolve-ticket", text: "Ticket reference" }), resolveTicket),
    resolveResolutionField,
    resolveForceField,
    resolveError,
    h("div", { class: "form-actions" }, resolveSubmit),
  );
  const deliveryStatus = h("div", { class: "delivery", id: "delivery-status", role: "status", "aria-live": "polite" });
  const finalNote = h("div", { class: "final-note" });
  const reopenButton = h("button", { type: "button", class: "button", text: "Reopen session", hidden: true });
  const resolveSection = h(
    "section",
    { class: "panel resolve-panel", id: "resolve-panel", "aria-labelledby": "resolve-title" },
    h("h2", { id: "resolve-title", text: "Resolve" }),
    h("p", { class: "hint", text: "Resolving writes the final resolution note and sends it to your ticketing system." }),
    resolveForm,
    deliveryStatus,
    finalNote,
    reopenButton,
  );

  // Escalation handoff (active) and KB article (resolved)
  const handoff = handoffPanel(sessionId, {
    later,
    isDisposed: () => disposed,
    announce,
    copyButtons,
    generatorLabel,
  });

  // Chat
  const chatLog = h("ol", { class: "chat-log", id: "chat-log", "aria-label": "Conversation" });
  const chatInput = h("textarea", { id: "chat-input", name: "content", rows: 3, "aria-describedby": "chat-help" });
  const chatSend = h("button", { type: "submit", class: "button button-primary", id: "chat-send", text: "Send" });
  const chatStop = h("button", { type: "button", class: "button button-quiet", text: "Stop", hidden: true });
  const chatStatus = h("p", { class: "status-line", id: "chat-status", role: "status", "aria-live": "polite" });
  const chatForm = h(
    "form",
    { class: "chat-form", novalidate: true, "aria-label": "Message the assistant" },
    h("label", { for: "chat-input", text: "Message" }),
    chatInput,
    h("p", { id: "chat-help", class: "hint", text: "Enter sends, Shift+Enter adds a line." }),
    h("div", { class: "form-actions" }, chatSend, chatStop),
  );
  const chatSection = h(
    "section",
    { class: "panel chat-panel", "aria-labelledby": "chat-title" },
    h("h2", { id: "chat-title", text: "Assistant" }),
    chatLog,
    chatStatus,
    chatForm,
  );

  // Preview
  const previewCache = h("span", { class: "pill", id: "preview-cache", hidden: true });
  const previewVersion = h("span", { class: "pill pill-quiet", id: "preview-version", hidden: true });
  const previewTicket = h("span", { class: "pill pill-quiet", id: "preview-ticket", hidden: true });
  const previewStatus = h("p", { class: "status-line", id: "preview-status", role: "status", "aria-live": "polite" });
  const previewBody = h("div", { class: "preview-body markdown", id: "preview-body" });
  const previewSources = h("details", { class: "preview-sources", id: "preview-sources", hidden: true });
  const previewMeta = h("p", { class: "muted small", id: "preview-meta" });
  const previewRefresh = h("button", { type: "button", class: "button", id: "preview-refresh", text: "Refresh" });
  const previewCopy = h("div", { class: "copy-row", id: "preview-copy", hidden: true });
  const previewSection = h(
    "aside",
    { class: "panel preview-panel", id: "preview-panel", "aria-labelledby": "preview-title" },
    h(
      "div",
      { class: "panel-header" },
      h("h2", { id: "preview-title", text: "Resolution note preview" }),
      previewRefresh,
    ),
    h("p", { class: "badges" }, previewCache, previewVersion, previewTicket),
    previewStatus,
    previewCopy,
    previewBody,
    previewSources,
    previewMeta,
  );

  // ── Header and state_version ───────────────────────────────────────────
  function setVersion(version) {
    if (typeof version === "number" && version > state.stateVersion) state.stateVersion = version;
    versionBadge.textContent = `state v${state.stateVersion}`;
    markPreviewStaleness();
  }

  function renderHeader() {
    const s = state.session;
    titleEl.textContent = s.title;
    document.title = `${s.title} · ResolutionFlow`;
    mount(
      headerMeta,
      h("span", { class: `pill status-${s.status}`, id: "session-status", text: s.status }),
      s.ticket_ref ? h("span", { class: "pill pill-quiet", text: s.ticket_ref }) : null,
      versionBadge,
      h("span", { class: "muted small" }, "opened ", when(s.created_at)),
    );
    setVersion(s.state_version);
    const resolved = s.status !== "active";
    readOnlyNote.hidden = !resolved;
    readOnlyNote.textContent = resolved ? "This session is resolved and read-only. Reopen it to make changes." : "";
    for (const el of [factForm, chatForm, resolveForm]) {
      for (const control of el.querySelectorAll("input, textarea, select, button")) control.disabled = resolved;
    }
    resolveForm.hidden = resolved;
    reopenButton.hidden = !resolved;
    handoff.update(s);
    if (!resolveTicket.value && s.ticket_ref) resolveTicket.value = s.ticket_ref;
    renderDetails();
    renderFacts();
    renderFix();
  }

  // Title, ticket reference and problem: shown under the title, edited in place.
  let editingDetails = false;
  function renderDetails() {
    if (editingDetails) return;
    const s = state.session;
    const edit = h("button", {
      type: "button",
      class: "button button-small",
      id: "session-edit",
      text: "Edit details",
      disabled: s.status !== "active",
      onClick: showDetailsEditor,
    });
    mount(
      detailsBox,
      s.problem ? h("p", { class: "session-problem", id: "session-problem-text" }, h("strong", { text: "Problem: " }), s.problem) : null,
      h("p", {}, edit),
    );
  }

  function showDetailsEditor() {
    const s = state.session;
    editingDetails = true;
    const title = h("input", { id: "edit-title", name: "title", maxlength: 300, required: true, autocomplete: "off" });
    const ticket = h("input", { id: "edit-ticket", name: "ticket_ref", maxlength: 200, autocomplete: "off" });
    const problem = h("textarea", { id: "edit-problem", name: "problem", rows: 4, maxlength: 20000 });
    title.value = s.title;
    ticket.value = s.ticket_ref || "";
    problem.value = s.problem || "";
    const error = h("div", { class: "error-box", role: "alert", hidden: true });
    const save = h("button", { type: "submit", class: "button button-primary button-small", text: "Save details" });
    const cancelEdit = h("button", { type: "button", class: "button button-small", text: "Cancel" });
    const form = h(
      "form",
      { class: "session-edit", id: "session-edit-form", novalidate: true, "aria-label": "Edit the session's details" },
      h("div", { class: "field" }, h("label", { for: "edit-title", text: "Title" }), title),
      h("div", { class: "field" }, h("label", { for: "edit-ticket", text: "Ticket reference" }), ticket),
      h("div", { class: "field" }, h("label", { for: "edit-problem", text: "Problem" }), problem),
      error,
      h("div", { class: "form-actions" }, save, cancelEdit),
    );
    const close = () => {
      editingDetails = false;
      renderDetails();
      detailsBox.querySelector("#session-edit")?.focus();
    };
    cancelEdit.addEventListener("click", close);
    form.addEventListener("keydown", (event) => {
      if (event.key === "Escape") {
        event.preventDefault();
        close();
      }
    });
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      error.hidden = true;
      if (!title.value.trim()) {
        error.textContent = "The session needs a title.";
        error.hidden = false;
        title.focus();
        return;
      }
      const patch = {};
      if (title.value.trim() !== s.title) patch.title = title.value.trim();
      if ((ticket.value.trim() || null) !== (s.ticket_ref || null)) patch.ticket_ref = ticket.value.trim() || null;
      if ((problem.value.trim() || null) !== (s.problem || null)) patch.problem = problem.value.trim() || null;
      if (!Object.keys(patch).length) return close();
      save.disabled = true;
      try {
        const updated = await api.updateSession(sessionId, patch);
        if (disposed) return;
        state.session = { ...state.session, ...updated };
        editingDetails = false;
        renderHeader();
        announce("Session details saved");
        schedulePreview();
        detailsBox.querySelector("#session-edit")?.focus();
      } catch (err) {
        save.disabled = false;
        const fields = err.fieldErrors ? err.fieldErrors("json") : {};
        const named = Object.entries(fields).map(([k, v]) => `${k}: ${v.join(" ")}`);
        error.textContent = named.length ? named.join("; ") : describeError(err);
        error.hidden = false;
      }
    });
    mount(detailsBox, form);
    title.focus();
  }

  const isReadOnly = () => state.session && state.session.status !== "active";

  // ── Facts ──────────────────────────────────────────────────────────────
  /** One list item per fact, kept across renders so an open editor survives other writes. */
  const factNodes = new Map();

  function renderFacts() {
    const ids = new Set(state.facts.map((f) => f.id));
    for (const id of factNodes.keys()) if (!ids.has(id)) factNodes.delete(id);
    const groups = api.FACT_KINDS.map((kind) => {
      const facts = state.facts.filter((f) => f.kind === kind);
      return h(
        "section",
        { class: "fact-group", dataset: { kind }, "aria-labelledby": `facts-${kind}` },
        h("h3", { id: `facts-${kind}` }, LABELS[kind], h("span", { class: "count-badge", text: String(facts.length) })),
        facts.length
          ? h("ul", { class: "fact-list" }, facts.map(factNode))
          : h("p", { class: "muted small empty", text: "None yet." }),
      );
    });
    mount(factGroups, groups);
    renderOutline();
  }

  /** The note's text of one section ("" when the preview has none yet). */
  function noteSection(markdown, title) {
    const parts = String(markdown || "").split(/^## /m);
    const found = parts.find((part) => part.startsWith(`${title}\n`));
    return found ? found.slice(title.length + 1).trim() : "";
  }

  /** The Resolve panel: what the note will say the cause and fix were; a resolution field when
   * nothing records one. */
  function renderOutline() {
    const note = shownNote?.markdown;
    outlineCause.textContent = note ? noteSection(note, "Root cause") : "Waiting for the preview…";
    outlineFix.textContent = note ? noteSection(note, "Resolution") : "Waiting for the preview…";
    const hasResolution = state.facts.some((f) => f.kind === "resolution");
    resolveResolutionField.hidden = hasResolution;
  }

  /** Which facts each line of the note rests on. */
  function renderSources(note) {
    const cites = Array.isArray(note.citations) ? note.citations : [];
    previewSources.hidden = !cites.length;
    if (!cites.length) return;
    const byId = new Map(state.facts.map((f) => [f.id, f]));
    mount(
      previewSources,
      h("summary", { text: "What each line rests on" }),
      h(
        "ul",
        { class: "source-list" },
        cites.map((c) => {
          const facts = (c.fact_ids || []).map((id) => byId.get(id)).filter(Boolean);
          const rest = facts.length
            ? facts.map((f) => `${KIND_SINGULAR[f.kind] || f.kind}: ${f.text}`).join("; ")
            : (c.cites || []).length ? `${c.cites.join(", ")} (a script run or the suggested fix)` : "no fact";
          return h("li", { dataset: { section: c.section } }, h("span", { class: "source-line", text: c.text }), h("span", { class: "muted small", text: ` ← ${rest}` }));
        }),
      ),
    );
  }

  function factNode(fact) {
    let node = factNodes.get(fact.id);
    if (!node) {
      node = factItem(fact.id);
      factNodes.set(fact.id, node);
    } else if (node.mode === "view" && node.shown !== `${fact.text}|${isReadOnly()}`) {
      node.showView();
    }
    return node.li;
  }

  const findFact = (id) => state.facts.find((f) => f.id === id);

  function factItem(factId) {
    const li = h("li", { class: "fact", dataset: { factId } });
    const node = { li, mode: "view", shown: "", showView: null };
    const showView = () => {
      const fact = findFact(factId);
      if (!fact) return null;
      node.mode = "view";
      node.shown = `${fact.text}|${isReadOnly()}`;
      const edit = h("button", { type: "button", class: "button button-small", text: "Edit", "aria-label": `Edit fact: ${fact.text}`, disabled: isReadOnly() });
      const del = h("button", { type: "button", class: "button button-small button-danger", text: "Delete", "aria-label": `Delete fact: ${fact.text}`, disabled: isReadOnly() });
      edit.addEventListener("click", showEdit);
      del.addEventListener("click", showConfirm);
      mount(
        li,
        h("span", { class: "fact-text", text: fact.text }),
        fact.source && fact.source !== "engineer" ? h("span", { class: "pill pill-quiet", text: fact.source }) : null,
        h("span", { class: "fact-actions" }, edit, del),
      );
      return edit;
    };
    node.showView = showView;
    const showEdit = () => {
      const fact = findFact(factId);
      if (!fact) return;
      node.mode = "edit";
      const inputId = `fact-edit-${factId}`;
      const kindId = `fact-edit-kind-${factId}`;
      const input = h("textarea", { id: inputId, class: "fact-edit-input", rows: 3, maxlength: 4000 });
      input.value = fact.text;
      const kind = h("select", { id: kindId }, api.FACT_KINDS.map((k) => h("option", { value: k, text: KIND_SINGULAR[k], selected: k === fact.kind })));
      const error = h("p", { class: "field-error", hidden: true });
      const save = h("button", { type: "submit", class: "button button-small button-primary", text: "Save" });
      const cancelButton = h("button", { type: "button", class: "button button-small", text: "Cancel" });
      const form = h(
        "form",
        { class: "fact-edit", novalidate: true },
        h("label", { for: inputId, class: "visually-hidden", text: "Fact text" }),
        input,
        h("div", { class: "form-actions" }, h("label", { for: kindId, class: "visually-hidden", text: "Kind" }), kind, save, cancelButton),
        error,
      );
      const close = () => showView()?.focus();
      input.addEventListener("keydown", (event) => {
        if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
          event.preventDefault();
          form.requestSubmit();
        }
      });
      cancelButton.addEventListener("click", close);
      form.addEventListener("keydown", (event) => {
        if (event.key === "Escape") {
          event.preventDefault();
          close();
        }
      });
      form.addEventListener("submit", async (event) => {
        event.preventDefault();
        const current = findFact(factId);
        const text = input.value.trim();
        if (!current) return;
        if (!text) {
          error.textContent = "A fact needs some text.";
          error.hidden = false;
          input.setAttribute("aria-invalid", "true");
          input.focus();
          return;
        }
        const patch = {};
        if (text !== current.text) patch.text = text;
        if (kind.value !== current.kind) patch.kind = kind.value;
        if (!Object.keys(patch).length) return close();
        save.disabled = true;
        node.mode = "saving";
        try {
          const updated = await api.updateFact(sessionId, factId, patch);
          if (disposed) return;
          const index = state.facts.findIndex((f) => f.id === factId);
          if (index !== -1) state.facts[index] = { ...state.facts[index], ...updated };
          setVersion(updated.state_version);
          factsChanged("Fact updated");
          const focusEdit = li.contains(document.activeElement);
          const editButton = showView();
          if (patch.kind !== undefined) renderFacts();
          if (focusEdit) editButton?.focus();
        } catch (err) {
          node.mode = "edit";
          save.disabled = false;
          error.textContent = describeError(err);
          error.hidden = false;
        }
      });
      mount(li, form);
      input.focus();
      input.select();
    };
    const showConfirm = () => {
      const fact = findFact(factId);
      if (!fact) return;
      node.mode = "confirm";
      const yes = h("button", { type: "button", class: "button button-small button-danger", text: "Delete" });
      const no = h("button", { type: "button", class: "button button-small", text: "Keep" });
      const error = h("p", { class: "field-error", hidden: true });
      no.addEventListener("click", () => {
        showView();
        li.querySelector(".button-danger")?.focus(); // back to the button that asked
      });
      yes.addEventListener("click", async () => {
        yes.disabled = true;
        try {
          const result = await api.deleteFact(sessionId, factId);
          if (disposed) return;
          state.facts = state.facts.filter((f) => f.id !== factId);
          setVersion(result?.state_version);
          factsChanged("Fact deleted");
          renderFacts();
          factText.focus();
        } catch (err) {
          yes.disabled = false;
          error.textContent = describeError(err);
          error.hidden = false;
        }
      });
      mount(
        li,
        h("span", { class: "fact-text", text: fact.text }),
        h("span", { class: "fact-actions", role: "group", "aria-label": "Confirm deletion" }, h("span", { class: "small", text: "Delete this fact?" }), yes, no),
        error,
      );
      no.focus();
    };
    showView();
    return node;
  }

  factForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    const text = factText.value.trim();
    factError.hidden = true;
    factText.removeAttribute("aria-invalid");
    if (!text) {
      factError.textContent = "Write the fact first.";
      factError.hidden = false;
      factText.setAttribute("aria-invalid", "true");
      factText.setAttribute("aria-describedby", "fact-text-error");
      factText.focus();
      return;
    }
    factSubmit.disabled = true;
    try {
      const fact = await api.createFact(sessionId, { text, kind: factKind.value });
      state.facts.push(fact);
      setVersion(fact.state_version);
      factText.value = "";
      renderFacts();
      factsChanged("Fact added");
      factText.focus();
    } catch (err) {
      const fields = err.fieldErrors ? err.fieldErrors() : {};
      factError.textContent = fields.text ? fields.text.join(" ") : describeError(err);
      factError.hidden = false;
    } finally {
      factSubmit.disabled = isReadOnly();
    }
  });

  factText.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      factForm.requestSubmit();
    }
  });

  /** A fact was written: announce it and schedule the (debounced) preview refresh. */
  function factsChanged(message) {
    announce(message);
    schedulePreview();
  }

  // ── Suggested fix ──────────────────────────────────────────────────────
  function renderFix() {
    const fix = state.activeFix;
    const earlier = state.fixes.filter((f) => !fix || f.id !== fix.id);
    const parts = [];
    if (!fix) {
      parts.push(h("p", { class: "muted", id: "fix-empty", text: "No fix suggested yet. The assistant proposes one when the facts support it." }));
    } else {
      const decisions = h(
        "div",
        { class: "decision-buttons", role: "group", "aria-label": "Decide on this fix" },
        api.FIX_DECISIONS.map((decision) =>
          h("button", {
            type: "button",
            class: ["button", "button-small", decision === "dismissed" ? "button-quiet" : "", fix.decision === decision ? "is-chosen" : ""],
            "aria-pressed": String(fix.decision === decision),
            dataset: { decision },
            disabled: isReadOnly(),
            text: LABELS[decision],
            onClick: () => decide(fix, decision),
          }),
        ),
      );
      parts.push(
        h(
          "article",
          { class: "fix", dataset: { fixId: fix.id }, "aria-labelledby": `fix-${fix.id}` },
          h("div", { class: "fix-heading" }, h("h3", { id: `fix-${fix.id}`, text: fix.title }), confidenceBadge(fix.confidence)),
          fix.summary ? h("p", { text: fix.summary }) : null,
          fix.steps?.length ? h("ol", { class: "fix-steps" }, fix.steps.map((s) => h("li", { text: String(s) }))) : null,
          fix.script ? scriptBlock(fix.script, fix.script_findings || []) : null,
          fix.template_id
            ? h("p", {}, h("a", { href: `#/templates/${fix.template_id}?session=${sessionId}`, text: "Open the suggested template" }))
            : null,
          state.drafts.get(fix.id)
            ? h("p", { class: "draft-link" }, h("a", { href: `#/templates/${state.drafts.get(fix.id)}/edit`, id: "fix-draft-link", text: "Edit the template draft made from this fix" }))
            : null,
          fix.decision
            ? h("p", { class: "decision-made", id: "fix-decision" }, "Decision: ", h("strong", { text: LABELS[fix.decision] || fix.decision }), fix.decided_at ? [" · ", when(fix.decided_at)] : null)
            : null,
          decisions,
        ),
      );
    }
    if (earlier.length) {
      parts.push(
        h(
          "details",
          { class: "superseded", id: "superseded-fixes" },
          h("summary", { text: `Earlier suggestions (${earlier.length})` }),
          h(
            "ul",
            { class: "superseded-list" },
            earlier.map((f) =>
              h(
                "li",
                { dataset: { fixId: f.id } },
                h("span", { class: "superseded-title", text: f.title }),
                " ",
                confidenceBadge(f.confidence),
                h(
                  "span",
                  { class: "muted small" },
                  f.decision ? ` · ${LABELS[f.decision] || f.decision}` : "",
                  f.superseded_at ? [" · superseded ", when(f.superseded_at)] : "",
                ),
              ),
            ),
          ),
        ),
      );
    }
    mount(fixBody, parts);
  }

  function scriptBlock(script, findings) {
    const code = h("code", { text: script });
    const status = h("span", { class: "copy-status", role: "status", "aria-live": "polite" });
    return h(
      "div",
      { class: "fix-script" },
      // Not a library template: none of its guarantees hold for text the assistant wrote.
      h("p", {
        class: "hint ai-script-note",
        text: "Written by the AI assistant, not taken from the script library: read it before you run it.",
      }),
      findings.length
        ? h(
            "ul",
            { class: "warnings script-findings", "aria-label": "Static check findings" },
            findings.map((f) =>
              h("li", { dataset: { severity: f.severity } }, h("strong", { text: `${f.rule} (${f.severity}, line ${f.line})` }), `: ${f.why}`),
            ),
          )
        : h("p", { class: "muted small", text: "The static check found nothing to flag." }),
      h("pre", { class: "code" }, code),
      h("button", {
        type: "button",
        class: "button button-small",
        text: "Copy script",
        onClick: async () => {
          status.textContent = (await copyText(script, code)) ? "Copied." : "Selected: press Ctrl+C.";
        },
      }),
      status,
    );
  }

  async function decide(fix, decision) {
    fixStatus.textContent = "Saving decision…";
    for (const b of fixBody.querySelectorAll(".decision-buttons button")) b.disabled = true;
    try {
      const result = await api.decideFix(sessionId, fix.id, decision);
      setVersion(result?.state_version);
      if (result?.draft_template) state.drafts.set(fix.id, result.draft_template.template_id);
      fixStatus.textContent = decision === "dismissed" ? "Fix dismissed." : `Decision recorded: ${LABELS[decision]}.`;
      announce(fixStatus.textContent);
      await refreshFixes();
      schedulePreview();
    } catch (err) {
      fixStatus.textContent = describeError(err);
      renderFix();
    }
  }

  async function refreshFixes() {
    const all = await api.listFixes(sessionId).catch(() => state.fixes);
    if (disposed) return;
    state.fixes = all || [];
    state.activeFix = api.activeFixOf(state.fixes);
    renderFix();
  }

  /** Facts and fixes again, in one batch (the assistant may have changed both). */
  async function refreshSessionDerived() {
    try {
      const [facts] = await Promise.all([api.listFacts(sessionId), refreshFixes()]);
      if (disposed) return;
      state.facts = facts;
      renderFacts();
    } catch (err) {
      if (!disposed) pageStatus.textContent = describeError(err);
    }
  }

  // ── Chat ───────────────────────────────────────────────────────────────
  function messageItem(message) {
    const role = message.role === "user" ? "user" : "assistant";
    const body = h("div", { class: "bubble-body markdown" });
    body.append(role === "assistant" ? renderMarkdown(message.content, { headingLevelOffset: 2 }) : document.createTextNode(message.content));
    return h(
      "li",
      { class: `bubble bubble-${role}`, dataset: { messageId: message.id || "" } },
      h("p", { class: "bubble-who" }, role === "user" ? "You" : "Assistant", message.created_at ? [" · ", when(message.created_at)] : null),
      body,
    );
  }

  function renderChat() {
    mount(
      chatLog,
      state.messages.length
        ? state.messages.map(messageItem)
        : h("li", { class: "muted empty", id: "chat-empty", text: "Describe what you see; the assistant suggests the next check and, when the facts allow, a fix." }),
    );
    chatLog.scrollTop = chatLog.scrollHeight;
  }

  let chatController = null;
  chatForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    const content = chatInput.value.trim();
    if (!content || state.sending) return;
    state.sending = true;
    chatSend.disabled = true;
    chatStop.hidden = false;
    chatInput.value = "";
    document.getElementById("chat-empty")?.remove();
    chatLog.append(messageItem({ role: "user", content }));
    const streamed = h("div", { class: "bubble-body streaming", "aria-hidden": "true" });
    const pending = h("li", { class: "bubble bubble-assistant is-streaming" }, h("p", { class: "bubble-who", text: "Assistant" }), streamed);
    chatLog.append(pending);
    chatLog.scrollTop = chatLog.scrollHeight;
    chatStatus.textContent = "The assistant is replying…";
    chatController = new AbortController();
    controllers.add(chatController);
    try {
      const result = await api.sendMessage(sessionId, content, {
        signal: chatController.signal,
        onDelta: (text) => {
          streamed.textContent += text;
          chatLog.scrollTop = chatLog.scrollHeight;
        },
      });
      if (disposed) return;
      state.messages.push(result.user_message, result.assistant_message);
      pending.replaceWith(messageItem(result.assistant_message));
      chatLog.lastElementChild?.previousElementSibling?.replaceWith(messageItem(result.user_message));
      setVersion(result.state_version);
      chatStatus.textContent = result.suggested_fix ? "The assistant replied and suggested a fix." : "The assistant replied.";
      if (result.generator === "offline") chatStatus.textContent += " (offline assistant)";
      if (result.suggested_fix) {
        state.activeFix = result.suggested_fix;
        renderFix();
      }
      refreshSessionDerived();
    } catch (err) {
      if (disposed) return;
      pending.remove();
      chatStatus.textContent = err.name === "AbortError" ? "Stopped. The reply is still saved when it finishes." : `No reply: ${describeError(err)}`;
      refreshSessionDerived();
    } finally {
      controllers.delete(chatController);
      chatController = null;
      state.sending = false;
      chatSend.disabled = isReadOnly();
      chatStop.hidden = true;
      // The send changed the session (the turn is stored even when the reply failed):
      // refresh the preview 500 ms after it, debounced with any fact changes.
      if (!disposed) schedulePreview();
    }
  });
  chatStop.addEventListener("click", () => chatController?.abort());
  chatInput.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      chatForm.requestSubmit();
    }
  });

  // ── Preview ────────────────────────────────────────────────────────────
  let previewSeq = 0;
  let previewController = null;
  let previewRetry = null;
  // The ETag of the note on screen: polling sends it back, and a 304 costs no body.
  let shownTag = null;

  function markPreviewStaleness() {
    if (!shownNote) return;
    const stale = shownNote.state_version < state.stateVersion;
    previewSection.classList.toggle("is-stale", stale);
    previewVersion.textContent = stale ? `v${shownNote.state_version} (session at v${state.stateVersion})` : `v${shownNote.state_version}`;
  }

  function showNote(note) {
    shownNote = note;
    const cached = Boolean(note.from_cache);
    previewCache.hidden = false;
    previewCache.textContent = cached ? "cached" : "fresh";
    previewCache.dataset.cache = cached ? "cached" : "fresh";
    previewCache.className = `pill ${cached ? "pill-cached" : "pill-fresh"}`;
    previewCache.title = cached ? "Served from the note cache: no new generation" : "Generated for this request";
    previewVersion.hidden = false;
    previewVersion.dataset.version = String(note.state_version);
    previewTicket.hidden = !note.ticket_ref;
    previewTicket.textContent = note.ticket_ref ? `Ticket ${note.ticket_ref}` : "";
    mount(previewBody, renderMarkdown(note.markdown, { headingLevelOffset: 1 }));
    renderSources(note);
    renderOutline();
    previewCopy.hidden = false;
    mount(previewCopy, [...copyButtons("preview", note.markdown, previewBody).childNodes]);
    mount(
      previewMeta,
      generatorLabel(note),
      note.generated_at ? [" · generated ", when(note.generated_at)] : null,
    );
    markPreviewStaleness();
  }

  async function refreshPreview(reason = "auto") {
    cancel(previewRetry);
    previewRetry = null;
    previewController?.abort();
    const seq = ++previewSeq;
    const controller = new AbortController();
    previewController = controller;
    controllers.add(controller);
    previewSection.setAttribute("aria-busy", "true");
    previewSection.classList.add("is-loading");
    previewRefresh.disabled = true;
    previewStatus.textContent = reason === "retry" ? "Still generating the note…" : "Loading the note…";
    try {
      const result = await api.getPreview(sessionId, {
        wait: PREVIEW_WAIT_S,
        signal: controller.signal,
        etag: shownNote ? shownTag : null,
      });
      if (disposed || seq !== previewSeq) return;
      if (result.status === "not_modified") {
        // The note on screen is the current one, and this request generated nothing.
        previewSection.dataset.state = "ready";
        showNote({ ...shownNote, from_cache: true });
        previewStatus.textContent = "Note up to date (from cache).";
        return;
      }
      if (result.status === "pending") {
        previewStatus.textContent = `Generating the note for v${result.state_version ?? state.stateVersion}… checking again in ${result.retry_after} s.`;
        previewSection.dataset.state = "pending";
        setVersion(result.state_version);
        previewRetry = later(() => refreshPreview("retry"), result.retry_after * 1000);
        return;
      }
      previewSection.dataset.state = "ready";
      setVersion(result.note.state_version);
      shownTag = result.etag || null;
      showNote(result.note);
      previewStatus.textContent = result.note.from_cache ? "Note up to date (from cache)." : "Note generated.";
    } catch (err) {
      if (err.name === "AbortError" || disposed || seq !== previewSeq) return;
      previewSection.dataset.state = "error";
      previewStatus.textContent = `Preview unavailable: ${describeError(err)}`;
    } finally {
      controllers.delete(controller);
      if (seq === previewSeq && !previewRetry) {
        previewSection.removeAttribute("aria-busy");
        previewSection.classList.remove("is-loading");
      }
      if (seq === previewSeq) previewRefresh.disabled = false;
    }
  }

  // A burst of changes costs one request: 500 ms after the last one.
  const schedulePreview = debounce(() => refreshPreview("auto"), PREVIEW_DEBOUNCE_MS);
  previewRefresh.addEventListener("click", () => {
    schedulePreview.cancel();
    refreshPreview("manual");
  });

  // ── Resolve and delivery ───────────────────────────────────────────────
  let deliveryTimer = null;
  let deliveryDelay = 1000;

  function showDelivery(note) {
    if (!note) {
      mount(deliveryStatus, h("p", { dataset: { delivery: "preparing" }, text: "Preparing the final note…" }));
      return false;
    }
    const status = note.delivery_status || note.delivery?.status || note.status || "pending";
    const attempts = note.attempts ?? note.delivery?.attempts;
    const lastError = note.last_error ?? note.delivery?.last_error;
    mount(
      deliveryStatus,
      h(
        "p",
        { class: `delivery-line delivery-${status}`, dataset: { delivery: status } },
        h("span", { class: `pill delivery-pill delivery-${status}`, text: status.replace("_", " ") }),
        " ",
        deliveredTo(status, note.delivered_to) || DELIVERY_TEXT[status] || status,
        attempts ? ` · ${attempts} attempt${attempts === 1 ? "" : "s"}` : "",
        note.delivered_at ? [" · ", when(note.delivered_at)] : null,
      ),
      lastError && status !== "delivered" ? h("p", { class: "field-error", text: `Last error: ${lastError}` }) : null,
      (status === "failed" || status === "disabled") && ctx.me && (ctx.me.role === "owner" || ctx.me.is_super_admin)
        ? h("button", {
            type: "button",
            class: "button button-small",
            text: "Send again",
            onClick: async () => {
              try {
                await api.redeliverNote(sessionId);
                deliveryDelay = 1000;
                pollDelivery();
              } catch (err) {
                announce(describeError(err));
              }
            },
          })
        : null,
    );
    if (note.markdown && finalNote.dataset.shown !== `${note.state_version}|${note.markdown}`) {
      const rendered = h("div", { class: "markdown", id: "final-note-body" }, renderMarkdown(note.markdown, { headingLevelOffset: 2 }));
      finalNote.dataset.shown = `${note.state_version}|${note.markdown}`;
      mount(
        finalNote,
        h(
          "details",
          { class: "final-note-details", open: true },
          h("summary", { text: `Final note (v${note.state_version})` }),
          copyButtons("final-note", note.markdown, rendered),
          rendered,
        ),
      );
    }
    // The final note replaces the preview: a resolved session shows its note once.
    previewSection.hidden = Boolean(note.markdown);
    return FINAL_DELIVERY.has(status);
  }

  async function pollDelivery() {
    cancel(deliveryTimer);
    try {
      const note = await api.getResolutionNote(sessionId);
      if (disposed) return;
      const done = showDelivery(note);
      if (done) {
        announce(deliveryStatus.textContent || "Delivery finished");
        return;
      }
    } catch (err) {
      if (disposed) return;
      mount(deliveryStatus, h("p", { class: "field-error", text: describeError(err) }));
    }
    deliveryTimer = later(pollDelivery, deliveryDelay);
    deliveryDelay = Math.min(10000, Math.round(deliveryDelay * 1.5));
  }

  resolveForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    resolveError.hidden = true;
    resolveSubmit.disabled = true;
    try {
      schedulePreview.cancel();
      const result = await api.resolveSession(sessionId, resolveTicket.value.trim() || undefined, {
        resolution: resolveResolutionField.hidden ? undefined : resolveResolution.value.trim() || undefined,
        force: resolveForce.checked,
      });
      resolveResolution.value = "";
      resolveForce.checked = false;
      resolveForceField.hidden = true;
      setVersion(result?.state_version);
      state.session = { ...state.session, status: "resolved", ticket_ref: resolveTicket.value.trim() || state.session.ticket_ref };
      renderHeader();
      announce("Session resolved. Sending the resolution note.");
      schedulePreview();
      deliveryDelay = 1000;
      showDelivery(null);
      pollDelivery();
      api.getSession(sessionId).then((s) => {
        if (!disposed) {
          state.session = s;
          renderHeader();
        }
      }).catch(() => {});
    } catch (err) {
      resolveError.textContent = describeError(err);
      resolveError.hidden = false;
      resolveSubmit.disabled = false;
      // Refused for want of a resolution: offer to record one, or to resolve anyway.
      if (err?.body?.errors?.json?.resolution) {
        resolveResolutionField.hidden = false;
        resolveForceField.hidden = false;
        resolveResolution.focus();
      }
    }
  });

  reopenButton.addEventListener("click", async () => {
    reopenButton.disabled = true;
    try {
      const session = await api.reopenSession(sessionId);
      cancel(deliveryTimer);
      state.session = session && session.id ? session : await api.getSession(sessionId);
      deliveryStatus.replaceChildren();
      finalNote.replaceChildren();
      delete finalNote.dataset.shown;
      previewSection.hidden = false;
      renderHeader();
      announce("Session reopened");
      factText.focus();
    } catch (err) {
      announce(describeError(err));
    } finally {
      reopenButton.disabled = false;
    }
  });

  // ── Load ───────────────────────────────────────────────────────────────
  Promise.all([
    api.getSession(sessionId),
    api.listFacts(sessionId),
    api.listMessages(sessionId).catch(() => []),
    api.listFixes(sessionId).catch(() => []),
  ])
    .then(([session, facts, messages, fixes]) => {
      if (disposed) return;
      state.session = session;
      state.facts = facts || [];
      state.messages = messages || [];
      state.fixes = fixes || [];
      state.activeFix = api.activeFixOf(state.fixes);
      const hadFocus = !main.contains(document.activeElement) || document.activeElement?.tagName === "H1";
      mount(
        main,
        h("p", { class: "breadcrumb" }, h("a", { href: "#/sessions", text: "← Sessions" })),
        h("div", { class: "session-header" }, titleEl, headerMeta),
        detailsBox,
        readOnlyNote,
        pageStatus,
        h(
          "div",
          { class: "session-layout" },
          h("div", { class: "lane" }, factsSection, fixSection, similarSection, resolveSection, handoff.section),
          chatSection,
          previewSection,
        ),
      );
      pageStatus.textContent = "";
      renderHeader();
      renderChat();
      if (hadFocus) titleEl.focus();
      refreshPreview("initial");
      refreshSimilar();
      refreshDrafts().then(() => {
        if (!disposed && state.drafts.size) renderFix();
      });
      if (session.status !== "active") pollDelivery();
    })
    .catch((err) => {
      if (disposed) return;
      pageStatus.textContent = "";
      main.append(errorBox(err));
    });

  return () => {
    disposed = true;
    schedulePreview.cancel();
    for (const timer of timers) clearTimeout(timer);
    timers.clear();
    for (const controller of controllers) controller.abort();
    controllers.clear();
  };
}
