import * as api from "../api.js";
import { announce, copyText, describeError, errorBox, h, mount, when } from "../dom.js";

const TEXT_INPUT_TYPES = {
  string: "text",
  email: "email",
  hostname: "text",
  ip: "text",
  path: "text",
};

const isSensitive = (param) => param.sensitive === true || param.type === "password";

function optionsOf(param) {
  return (param.options || []).map((option) =>
    typeof option === "object" && option !== null
      ? { value: String(option.value), label: String(option.label ?? option.value) }
      : { value: String(option), label: String(option) },
  );
}

/**
 * One form control for a parameter of the template's `parameters_schema`.
 * Sensitive values get password inputs that never receive a value from the page: not a
 * default, not an earlier entry.
 */
function control(param, id, describedBy, defaultValue) {
  const common = {
    id,
    name: param.key,
    "aria-describedby": describedBy || undefined,
    "aria-required": param.required ? "true" : undefined,
    dataset: { param: param.key, type: param.type },
  };
  const rules = param.validation || {};
  if (param.allow_custom && (param.type === "choice" || param.type === "multichoice")) {
    // Any entry is accepted (checked on the server like a string); the options are suggestions.
    const listId = `${id}-options`;
    const suggestions = h("datalist", { id: listId }, optionsOf(param).map((o) => h("option", { value: o.value })));
    const chosen = Array.isArray(defaultValue) ? defaultValue.join("\n") : defaultValue ?? "";
    const input =
      param.type === "multichoice"
        ? h("textarea", { ...common, rows: 4, value: chosen, dataset: { ...common.dataset, custom: "lines" } })
        : h("input", { ...common, type: "text", list: listId, value: chosen, autocomplete: "off" });
    return param.type === "multichoice" ? input : h("span", { class: "custom-choice" }, input, suggestions);
  }
  if (isSensitive(param)) {
    return h("input", {
      ...common,
      type: "password",
      autocomplete: "new-password",
      spellcheck: "false",
      autocapitalize: "none",
      "data-sensitive": "true",
      minlength: rules.min_length,
      maxlength: rules.max_length,
    });
  }
  switch (param.type) {
    case "text":
      return h("textarea", {
        ...common,
        rows: 4,
        value: defaultValue ?? "",
        minlength: rules.min_length,
        maxlength: rules.max_length,
      });
    case "integer":
    case "number":
      return h("input", {
        ...common,
        type: "number",
        inputmode: param.type === "integer" ? "numeric" : "decimal",
        step: param.type === "integer" ? "1" : "any",
        min: rules.min,
        max: rules.max,
        value: defaultValue ?? "",
      });
    case "boolean":
      return h("input", { ...common, type: "checkbox", checked: defaultValue === true });
    case "choice": {
      const select = h("select", common);
      select.append(h("option", { value: "", text: param.required ? "Choose…" : "(none)" }));
      for (const option of optionsOf(param)) {
        select.append(
          h("option", { value: option.value, text: option.label, selected: option.value === defaultValue }),
        );
      }
      return select;
    }
    case "multichoice": {
      const chosen = Array.isArray(defaultValue) ? defaultValue.map(String) : [];
      const options = optionsOf(param);
      const select = h("select", { ...common, multiple: true, size: Math.min(6, Math.max(3, options.length)) });
      for (const option of options) {
        select.append(
          h("option", { value: option.value, text: option.label, selected: chosen.includes(option.value) }),
        );
      }
      return select;
    }
    default:
      return h("input", {
        ...common,
        type: TEXT_INPUT_TYPES[param.type] || "text",
        value: defaultValue ?? "",
        spellcheck: param.type === "string" ? undefined : "false",
        autocapitalize: param.type === "string" ? undefined : "none",
        autocomplete: "off",
        minlength: rules.min_length,
        maxlength: rules.max_length,
        pattern: rules.pattern,
      });
  }
}

/** The value to send for a control, or undefined to leave the parameter out. */
function valueOf(param, el) {
  if (el.classList?.contains("custom-choice")) el = el.querySelector("input");
  if (param.type === "boolean") return el.checked;
  if (el.dataset?.custom === "lines") {
    const lines = el.value.split("\n").map((line) => line.trim()).filter(Boolean);
    return lines.length ? lines : undefined;
  }
  if (param.type === "multichoice") {
    const values = Array.from(el.selectedOptions, (o) => o.value);
    return values.length ? values : undefined;
  }
  const raw = el.value;
  if (raw === "") return undefined;
  if (param.type === "integer" && /^[+-]?\d+$/.test(raw.trim())) {
    const n = Number(raw);
    return Number.isSafeInteger(n) ? n : raw.trim();
  }
  if (param.type === "number" && raw.trim() !== "" && Number.isFinite(Number(raw))) return Number(raw);
  return raw;
}

/** Replaces every occurrence of the submitted sensitive values in a server message. */
function scrub(text, secrets) {
  let out = String(text);
  for (const secret of secrets) if (secret) out = out.split(secret).join("[REDACTED]");
  return out;
}

/**
 * Template detail and the generate form built from its `parameters_schema`.
 * The rendered script is shown once, in #script-output, and removed from the page when the
 * view is left; sensitive inputs are emptied after every submit.
 */
export function renderGenerate(main, { params: [templateId], query }, ctx) {
  let disposed = false;
  const status = h("p", { class: "status-line", role: "status", "aria-live": "polite" });
  mount(main, h("p", { class: "breadcrumb" }, h("a", { href: "#/library", text: "← Library" })), h("h1", { text: "Template" }), status);
  status.textContent = "Loading template…";

  /** @type {HTMLElement|null} */
  let output = null;
  const clearOutput = () => {
    if (!output) return;
    const code = output.querySelector("code");
    if (code) code.textContent = "";
    output.replaceChildren();
    output.hidden = true;
  };

  Promise.all([api.getTemplate(templateId), loadSessions()])
    .then(([template, sessions]) => {
      if (!disposed) build(template, sessions);
    })
    .catch((error) => {
      if (disposed) return;
      status.textContent = "";
      main.append(errorBox(error));
    });

  async function loadSessions() {
    try {
      return await api.listSessions({ status: "active", limit: 100 });
    } catch {
      return null; // the session link is optional
    }
  }

  function build(template, sessions) {
    document.title = `${template.name} · ResolutionFlow`;
    const parameters = template.parameters_schema?.parameters || [];
    const defaults = template.default_values || {};
    /** @type {Map<string, {param: any, el: HTMLElement, error: HTMLElement, field: HTMLElement}>} */
    const fields = new Map();

    const formFields = parameters.map((param) => {
      const id = `param-${param.key}`;
      const helpText = [
        param.help,
        param.pattern_hint ? `Expected: ${param.pattern_hint}.` : null,
        param.allow_custom && param.type === "multichoice"
          ? `One per line; suggestions: ${optionsOf(param).map((o) => o.value).join(", ")}.`
          : null,
      ]
        .filter(Boolean)
        .join(" ");
      const helpId = helpText ? `${id}-help` : null;
      const errorId = `${id}-error`;
      const fallback = param.default ?? defaults[param.key];
      const el = control(param, id, [helpId].filter(Boolean).join(" "), isSensitive(param) ? undefined : fallback);
      const error = h("p", { class: "field-error", id: errorId, hidden: true });
      const label = h(
        "label",
        { for: id },
        param.label || param.key,
        param.required ? h("span", { class: "required", "aria-hidden": "true", text: " *" }) : null,
        isSensitive(param) ? h("span", { class: "pill pill-quiet", text: "sensitive" }) : null,
      );
      const field = h(
        "div",
        { class: ["field", param.type === "boolean" && "field-checkbox"], dataset: { field: param.key } },
        param.type === "boolean" ? [el, label] : [label, el],
        helpId ? h("p", { class: "hint", id: helpId, text: helpText }) : null,
        param.type === "multichoice" && !param.allow_custom
          ? h("p", { class: "hint", text: "Hold Ctrl (⌘ on a Mac) or Shift to choose several." })
          : null,
        error,
      );
      fields.set(param.key, { param, el, error, field });
      return field;
    });

    let sessionSelect = null;
    if (sessions && sessions.length) {
      const preselect = query.get("session") || "";
      sessionSelect = h(
        "select",
        { id: "generate-session", name: "ai_session_id" },
        h("option", { value: "", text: "(not linked)" }),
        sessions.map((s) =>
          h("option", { value: s.id, text: s.ticket_ref ? `${s.title} (${s.ticket_ref})` : s.title, selected: s.id === preselect }),
        ),
      );
    }

    // How sensitive values reach the script: only offered when the template has some.
    const hasSecrets = parameters.some(isSensitive);
    const deliverySelect = hasSecrets
      ? h(
          "select",
          { id: "generate-delivery", name: "secret_delivery", "aria-describedby": "generate-delivery-help" },
          h("option", { value: "", text: "Default" + (template.secret_delivery ? ` (${template.secret_delivery})` : "") }),
          h("option", { value: "inline", text: "In the script (inline)" }),
          h("option", { value: "env", text: "Environment variables (RF_…), e.g. the RMM's secure variables" }),
          h("option", { value: "prompt", text: "Asked for when the script runs" }),
        )
      : null;

    const summary = h("div", { class: "error-box", role: "alert", hidden: true, id: "generate-errors" });
    const submit = h("button", { type: "submit", class: "button button-primary", id: "generate-submit", text: "Generate script" });
    const form = h(
      "form",
      { class: "generate-form", id: "generate-form", method: "post", novalidate: true, autocomplete: "off", "aria-labelledby": "generate-title" },
      h("h2", { id: "generate-title", text: "Generate" }),
      parameters.length
        ? h("p", { class: "hint", text: "Fields marked * are required. Sensitive values are sent once and never stored or shown again." })
        : h("p", { class: "hint", text: "This template takes no parameters." }),
      summary,
      formFields,
      sessionSelect
        ? h(
            "div",
            { class: "field" },
            h("label", { for: "generate-session", text: "Link to a troubleshooting session" }),
            sessionSelect,
            h("p", { class: "hint", text: "The run is then part of the session's resolution note (with sensitive values redacted)." }),
          )
        : null,
      deliverySelect
        ? h(
            "div",
            { class: "field" },
            h("label", { for: "generate-delivery", text: "Deliver sensitive values" }),
            deliverySelect,
            h("p", {
              class: "hint",
              id: "generate-delivery-help",
              text: "With environment variables or a prompt the secret never appears in the script, so you may leave it empty here.",
            }),
          )
        : null,
      h("div", { class: "form-actions" }, submit),
    );

    output = h("section", { class: "script-output", id: "script-output", "aria-label": "Rendered script", hidden: true, tabindex: "-1" });

    const clearErrors = () => {
      summary.hidden = true;
      summary.replaceChildren();
      for (const { el, error } of fields.values()) {
        error.hidden = true;
        error.textContent = "";
        el.removeAttribute("aria-invalid");
        el.setAttribute("aria-describedby", (el.getAttribute("aria-describedby") || "").split(" ").filter((x) => x && !x.endsWith("-error")).join(" "));
      }
    };

    const clearSensitive = () => {
      for (const { param, el } of fields.values()) if (isSensitive(param)) el.value = "";
    };

    const showErrors = (error, secrets) => {
      const byField = error.fieldErrors();
      const general = [];
      let first = null;
      for (const [key, messages] of Object.entries(byField)) {
        const entry = fields.get(key);
        const text = scrub(messages.join(" "), secrets);
        if (!entry) {
          general.push(key === "_schema" || key === "parameters" ? text : `${key}: ${text}`);
          continue;
        }
        entry.error.textContent = text;
        entry.error.hidden = false;
        entry.el.setAttribute("aria-invalid", "true");
        entry.el.setAttribute("aria-describedby", [entry.el.getAttribute("aria-describedby"), entry.error.id].filter(Boolean).join(" "));
        first = first || entry.el;
      }
      const count = Object.keys(byField).length;
      summary.append(
        h("p", { text: count ? `${scrub(error.message, secrets)}: please correct ${count === 1 ? "the field" : `${count} fields`} below.` : scrub(describeError(error), secrets) }),
      );
      if (general.length) summary.append(h("ul", {}, general.map((g) => h("li", { text: g }))));
      summary.hidden = false;
      (first || summary).focus?.();
    };

    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      clearErrors();
      clearOutput();
      // Built here and dropped when this handler returns: no other copy of the values.
      let values = {};
      let secrets = [];
      for (const [key, { param, el }] of fields) {
        const value = valueOf(param, el);
        if (value !== undefined) values[key] = value;
        if (isSensitive(param) && typeof value === "string") secrets.push(value);
      }
      const aiSessionId = sessionSelect?.value || null;
      clearSensitive();
      submit.disabled = true;
      form.setAttribute("aria-busy", "true");
      status.textContent = "Generating…";
      try {
        const result = await api.generateScript({
          template_id: template.id,
          parameters: values,
          ai_session_id: aiSessionId,
          secret_delivery: deliverySelect?.value || null,
        });
        values = null;
        if (disposed) return;
        showResult(result, aiSessionId);
        status.textContent = "Script generated.";
        announce("Script generated. It is shown once below.");
      } catch (error) {
        values = null;
        if (disposed) return;
        status.textContent = "";
        if (error.name === "ApiError" && error.status === 422) showErrors(error, secrets);
        else {
          summary.replaceChildren(h("p", { text: scrub(describeError(error), secrets) }));
          summary.hidden = false;
        }
        announce("The script was not generated.");
      } finally {
        secrets = [];
        clearSensitive();
        submit.disabled = false;
        form.removeAttribute("aria-busy");
      }
    });

    function showResult(result, aiSessionId) {
      const code = h("code", { id: "rendered-script", text: result.script });
      const pre = h("pre", { class: "code script-code" }, code);
      const copyStatus = h("span", { class: "copy-status", role: "status", "aria-live": "polite" });
      const meta = result.metadata || {};
      mount(
        output,
        h(
          "div",
          { class: "output-header" },
          h("h2", { text: "Rendered script" }),
          h(
            "div",
            { class: "output-actions" },
            h("button", {
              type: "button",
              class: "button",
              id: "copy-script",
              text: "Copy",
              onClick: async () => {
                const ok = await copyText(code.textContent || "", code);
                copyStatus.textContent = ok ? "Copied to the clipboard." : "Selected: press Ctrl+C to copy.";
              },
            }),
            result.download_url
              ? h("button", {
                  type: "button",
                  class: "button",
                  id: "download-script",
                  text: "Download .ps1",
                  onClick: async () => {
                    try {
                      const blob = await api.downloadGeneration(result.download_url);
                      const link = h("a", { href: URL.createObjectURL(blob), download: `${template.slug || "script"}.ps1` });
                      link.click();
                      setTimeout(() => URL.revokeObjectURL(link.href), 0);
                      copyStatus.textContent = "Downloaded.";
                    } catch (error) {
                      copyStatus.textContent = describeError(error);
                    }
                  },
                })
              : null,
            h("button", {
              type: "button",
              class: "button button-quiet",
              text: "Clear",
              onClick: () => {
                clearOutput();
                announce("Script cleared from the page.");
                submit.focus();
              },
            }),
            copyStatus,
          ),
        ),
        h("p", { class: "hint", text: "Shown once: this copy holds the values you entered. It is removed when you leave this page; stored copies have sensitive values redacted." }),
        result.warnings?.length
          ? h("ul", { class: "warnings", "aria-label": "Warnings" }, result.warnings.map((w) => h("li", { text: w })))
          : null,
        pre,
        h(
          "p",
          { class: "muted small" },
          `${meta.template_name || template.name} v${meta.template_version ?? template.version}`,
          meta.generated_at ? [" · ", when(meta.generated_at)] : null,
          aiSessionId
            ? [" · linked to ", h("a", { href: `#/sessions/${aiSessionId}`, text: "the session" }), result.state_version != null ? ` (state v${result.state_version})` : ""]
            : null,
        ),
      );
      output.hidden = false;
      output.focus();
    }

    const body = h("details", { class: "template-body" }, h("summary", { text: "Template body (PowerShell)" }), h("pre", { class: "code" }, h("code", { text: template.script_body || "" })));

    mount(
      main,
      h("p", { class: "breadcrumb" }, h("a", { href: "#/library", text: "← Library" })),
      h("h1", { text: template.name }),
      h(
        "div",
        { class: "generate-layout" },
        h(
          "section",
          { class: "template-detail", "aria-label": "Template details" },
          template.description ? h("p", { class: "lead", text: template.description }) : null,
          template.use_case ? h("p", {}, h("strong", { text: "Use case: " }), template.use_case) : null,
          h(
            "dl",
            { class: "meta-list" },
            h("dt", { text: "Version" }),
            h("dd", { text: String(template.version) }),
            template.complexity ? [h("dt", { text: "Complexity" }), h("dd", { text: template.complexity })] : null,
            template.estimated_runtime ? [h("dt", { text: "Runtime" }), h("dd", { text: template.estimated_runtime })] : null,
            h("dt", { text: "Elevation" }),
            h("dd", { text: template.requires_elevation ? "Run as Administrator" : "Not needed" }),
            template.requires_modules?.length ? [h("dt", { text: "Modules" }), h("dd", { text: template.requires_modules.join(", ") })] : null,
            h("dt", { text: "Used" }),
            h("dd", { text: `${template.usage_count ?? 0} times` }),
          ),
          template.tags?.length
            ? h("ul", { class: "chip-list", "aria-label": "Tags" }, template.tags.map((tag) => h("li", {}, h("a", { class: "chip", href: `#/library?tags=${encodeURIComponent(tag)}`, text: tag }))))
            : null,
          body,
        ),
        h("div", { class: "generate-main" }, form, status, output),
      ),
    );
    status.textContent = "";
    const heading = main.querySelector("h1");
    heading?.setAttribute("tabindex", "-1");
    if (!main.contains(document.activeElement)) heading?.focus();
  }

  return () => {
    disposed = true;
    clearOutput();
    for (const input of main.querySelectorAll("input[data-sensitive]")) input.value = "";
  };
}
