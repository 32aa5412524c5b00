// The editor of a template drafted from a fix: name, description, the lifted parameters and
// the body, with the static check's findings beside it; Save, then Publish to the team.

import * as api from "../api.js";
import { announce, describeError, errorBox, h, mount } from "../dom.js";

const TYPES = ["string", "hostname", "ip", "email", "path", "integer", "number", "boolean", "text", "password"];

function findingsList(findings) {
  if (!findings || !findings.length) {
    return h("p", { class: "muted small", id: "draft-findings-none", text: "The static check found nothing to flag." });
  }
  return h(
    "ul",
    { class: "warnings script-findings", id: "draft-findings-list", "aria-label": "Static check findings" },
    findings.map((f) =>
      h("li", { dataset: { severity: f.severity, rule: f.rule } }, h("strong", { text: `${f.rule} (${f.severity}, line ${f.line})` }), `: ${f.why}`),
    ),
  );
}

function defaultText(value) {
  if (value === null || value === undefined) return "";
  return typeof value === "string" ? value : JSON.stringify(value);
}

function parseDefault(type, raw) {
  const text = raw.trim();
  if (text === "") return null;
  if (type === "integer" || type === "number") {
    const number = Number(text);
    return Number.isFinite(number) ? number : text;
  }
  if (type === "boolean") return text === "true";
  return raw;
}

/** #/templates/{id}/edit */
export function renderDraftEditor(main, { params: [templateId] }) {
  let disposed = false;
  const status = h("p", { class: "status-line", id: "draft-status", role: "status", "aria-live": "polite" });
  mount(main, h("h1", { text: "Template draft" }), status);
  status.textContent = "Loading the draft…";

  const name = h("input", { id: "draft-name", name: "name", maxlength: 200, required: true });
  const description = h("textarea", { id: "draft-description", name: "description", rows: 2, maxlength: 4000 });
  const body = h("textarea", { id: "draft-body", name: "script_body", rows: 16, spellcheck: "false", class: "code-input" });
  const paramRows = h("tbody", { id: "draft-parameters" });
  const findingsBox = h("div", { id: "draft-findings" });
  const errors = h("div", { class: "error-box", id: "draft-errors", role: "alert", hidden: true });
  const save = h("button", { type: "submit", class: "button button-primary", id: "draft-save", text: "Save draft" });
  const publish = h("button", { type: "button", class: "button", id: "draft-publish", text: "Publish to my team" });
  const badge = h("span", { class: "pill", id: "draft-state" });
  let template = null;

  function parameterRow(p) {
    const id = `draft-param-${p.key}`;
    const type = h("select", { id: `${id}-type`, "aria-label": `Type of ${p.key}` }, TYPES.map((t) => h("option", { value: t, text: t, selected: t === p.type })));
    return h(
      "tr",
      { dataset: { key: p.key } },
      h("th", { scope: "row" }, h("code", { text: p.key })),
      h("td", {}, h("input", { id: `${id}-label`, "aria-label": `Label of ${p.key}`, value: p.label || p.key, maxlength: 200 })),
      h("td", {}, type),
      h("td", {}, h("input", { id: `${id}-default`, "aria-label": `Default of ${p.key}`, value: defaultText(p.default) })),
      h("td", {}, h("input", { id: `${id}-help`, "aria-label": `Help for ${p.key}`, value: p.help || "", maxlength: 1000 })),
    );
  }

  function readParameters() {
    const original = template?.parameters_schema?.parameters || [];
    return original.map((p) => {
      const id = `draft-param-${p.key}`;
      const type = /** @type {HTMLSelectElement} */ (document.getElementById(`${id}-type`)).value;
      const read = (suffix) => /** @type {HTMLInputElement} */ (document.getElementById(`${id}-${suffix}`)).value;
      const next = { ...p, type, label: read("label"), help: read("help") || undefined };
      const value = parseDefault(type, read("default"));
      if (value === null) delete next.default;
      else next.default = value;
      if (next.help === undefined) delete next.help;
      return next;
    });
  }

  function show(t) {
    template = t;
    name.value = t.name || "";
    description.value = t.description || "";
    body.value = t.script_body || "";
    mount(paramRows, (t.parameters_schema?.parameters || []).map(parameterRow));
    mount(findingsBox, findingsList(t.findings));
    const draft = t.status === "draft";
    badge.textContent = draft ? "Draft: not in the library yet" : "Published";
    publish.hidden = !draft;
  }

  function showErrors(err) {
    errors.hidden = false;
    const fields = err?.data?.errors || {};
    const lines = Object.entries(fields).flatMap(([field, messages]) =>
      (Array.isArray(messages) ? messages : [JSON.stringify(messages)]).map((m) => `${field}: ${m}`),
    );
    mount(errors, h("p", { text: describeError(err) }), lines.length ? h("ul", {}, lines.map((l) => h("li", { text: l }))) : null);
  }

  const form = h(
    "form",
    { class: "draft-form", id: "draft-form", novalidate: true, "aria-label": "Edit the template draft" },
    h("div", { class: "field" }, h("label", { for: "draft-name", text: "Name" }), name),
    h("div", { class: "field" }, h("label", { for: "draft-description", text: "Description" }), description),
    h(
      "fieldset",
      { class: "draft-parameters" },
      h("legend", { text: "Parameters lifted from the fix's script" }),
      h(
        "div",
        { class: "table-scroll", tabindex: "0", role: "region", "aria-label": "Parameters" },
        h(
          "table",
          { class: "data-table" },
          h("thead", {}, h("tr", {}, ["Key", "Label", "Type", "Default (the fix's value)", "Help"].map((c) => h("th", { scope: "col", text: c })))),
          paramRows,
        ),
      ),
    ),
    h(
      "div",
      { class: "field" },
      h("label", { for: "draft-body", text: "Script body" }),
      h("p", { class: "hint", id: "draft-body-help", text: "{{key}} marks where a parameter's value goes; the rest is the fix's script as written." }),
      body,
    ),
    errors,
    h("div", { class: "form-actions" }, save, publish),
  );

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    errors.hidden = true;
    save.disabled = true;
    status.textContent = "Saving…";
    try {
      const saved = await api.updateTemplate(templateId, {
        name: name.value,
        description: description.value || null,
        script_body: body.value,
        parameters_schema: { parameters: readParameters() },
      });
      if (disposed) return;
      show(saved);
      status.textContent = "Draft saved.";
      announce(status.textContent);
    } catch (err) {
      status.textContent = "";
      showErrors(err);
    } finally {
      save.disabled = false;
    }
  });

  publish.addEventListener("click", async () => {
    errors.hidden = true;
    publish.disabled = true;
    status.textContent = "Publishing…";
    try {
      const published = await api.publishTemplate(templateId);
      if (disposed) return;
      show(published);
      mount(status, "Published to your team's library. ", h("a", { href: `#/templates/${templateId}`, text: "Open it in the library" }));
      announce("Published to your team's library.");
    } catch (err) {
      status.textContent = "";
      showErrors(err);
    } finally {
      publish.disabled = false;
    }
  });

  api
    .getTemplate(templateId)
    .then((t) => {
      if (disposed) return;
      mount(
        main,
        h("p", { class: "breadcrumb" }, h("a", { href: "#/library", text: "← Library" })),
        h("h1", { id: "draft-heading", tabindex: "-1", text: "Template draft" }),
        h("p", {}, badge),
        status,
        h(
          "div",
          { class: "draft-layout" },
          h("section", { class: "panel", "aria-labelledby": "draft-edit-title" }, h("h2", { id: "draft-edit-title", text: "Edit" }), form),
          h("aside", { class: "panel", id: "draft-findings-panel", "aria-labelledby": "draft-findings-title" }, h("h2", { id: "draft-findings-title", text: "Static check" }), findingsBox),
        ),
      );
      status.textContent = "";
      show(t);
      document.getElementById("draft-heading")?.focus();
    })
    .catch((err) => {
      if (disposed) return;
      status.textContent = "";
      main.append(errorBox(err));
    });

  return () => {
    disposed = true;
  };
}
