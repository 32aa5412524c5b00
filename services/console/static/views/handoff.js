// The session page's other notes: the escalation handoff of an active session, and the KB
// article of a resolved one, which an engineer can keep in the account's knowledge base.

import * as api from "../api.js";
import { describeError, h, mount } from "../dom.js";
import { renderMarkdown } from "../markdown.js";

/** How long one preview request lets the server wait for the note before answering 202. */
const WAIT_S = 25;

/**
 * The panel, and `update(session)` to call whenever the session's status may have changed.
 * @param {string} sessionId
 * @param {{later: (fn: () => void, ms: number) => any, isDisposed: () => boolean,
 *          announce: (text: string) => void, copyButtons: Function, generatorLabel: Function}} deps
 */
export function handoffPanel(sessionId, deps) {
  const status = h("p", { class: "status-line", id: "handoff-status", role: "status", "aria-live": "polite" });
  const body = h("div", { class: "handoff-body", id: "handoff-body" });
  const escalate = h("button", { type: "button", class: "button", id: "escalation-preview", text: "Preview escalation" });
  const kbPreview = h("button", { type: "button", class: "button", id: "kb-preview", text: "Preview KB article" });
  const keep = h("button", { type: "button", class: "button button-primary", id: "kb-keep", text: "Keep as KB article" });
  const kept = h("p", { class: "kb-kept", id: "kb-kept", hidden: true });
  const heading = h("h2", { id: "handoff-title", text: "Handoff and knowledge" });
  const hint = h("p", { class: "hint", id: "handoff-hint" });
  const section = h(
    "section",
    { class: "panel handoff-panel", id: "handoff-panel", "aria-labelledby": "handoff-title" },
    heading,
    hint,
    h("div", { class: "form-actions" }, escalate, kbPreview, keep),
    status,
    kept,
    body,
  );
  let seq = 0;

  function show(kind, note) {
    const rendered = h("div", { class: "markdown", id: `${kind}-body` }, renderMarkdown(note.markdown, { headingLevelOffset: 2 }));
    mount(
      body,
      h(
        "details",
        { class: "final-note-details", open: true, dataset: { kind, version: String(note.state_version) } },
        h("summary", { text: `${kind === "escalation" ? "Escalation handoff" : "KB article"} (v${note.state_version})` }),
        deps.copyButtons(kind, note.markdown, rendered),
        rendered,
        h("p", { class: "muted small", text: deps.generatorLabel(note) }),
      ),
    );
  }

  async function preview(kind, label) {
    const mine = ++seq;
    status.textContent = `Writing the ${label}…`;
    section.setAttribute("aria-busy", "true");
    try {
      const result = await api.getPreview(sessionId, { kind, wait: WAIT_S });
      if (deps.isDisposed() || mine !== seq) return;
      if (result.status === "pending") {
        status.textContent = `Still writing the ${label}… checking again in ${result.retry_after} s.`;
        deps.later(() => preview(kind, label), result.retry_after * 1000);
        return;
      }
      if (result.status !== "ready") return;
      show(kind, result.note);
      status.textContent = `${label[0].toUpperCase()}${label.slice(1)} ready.`;
    } catch (err) {
      if (deps.isDisposed() || mine !== seq) return;
      status.textContent = `${label[0].toUpperCase()}${label.slice(1)} unavailable: ${describeError(err)}`;
    } finally {
      if (mine === seq) section.removeAttribute("aria-busy");
    }
  }

  escalate.addEventListener("click", () => preview("escalation", "escalation handoff"));
  kbPreview.addEventListener("click", () => preview("kb_article", "KB article"));
  keep.addEventListener("click", async () => {
    keep.disabled = true;
    status.textContent = "Keeping the KB article…";
    try {
      const article = await api.keepKbArticle(sessionId, WAIT_S);
      if (deps.isDisposed()) return;
      show("kb_article", article);
      kept.hidden = false;
      mount(
        kept,
        article.replaced ? "Replaced the kept article: " : "Kept in the knowledge base: ",
        h("a", { href: `#/kb/${article.id}`, id: "kb-kept-link", text: article.title }),
      );
      status.textContent = "";
      deps.announce(article.replaced ? "KB article replaced" : "KB article kept");
    } catch (err) {
      if (!deps.isDisposed()) status.textContent = `Not kept: ${describeError(err)}`;
    } finally {
      keep.disabled = false;
    }
  });

  /** @param {{status: string}} session */
  function update(session) {
    const resolved = session.status !== "active";
    escalate.hidden = resolved;
    kbPreview.hidden = !resolved;
    keep.hidden = !resolved;
    hint.textContent = resolved
      ? "Turn this session into an internal KB article (customer details generalised) and keep it for the team."
      : "Hand the session to the next tier: what was reported, checked and ruled out, and what to try next.";
    if (resolved !== (section.dataset.resolved === "true")) {
      body.replaceChildren();
      kept.hidden = true;
      status.textContent = "";
      seq++;
    }
    section.dataset.resolved = String(resolved);
  }

  return { section, update };
}
