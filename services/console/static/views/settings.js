import * as api from "../api.js";
import { announce, copyText, describeError, errorBox, h, mount, when } from "../dom.js";

/**
 * The account's ticketing integration (owners): where resolution notes are posted. The form is
 * built from GET /integrations/ticketing/kinds, so every kind's fields appear as the API
 * describes them. Secret fields are never shown back: left empty, the stored value is kept.
 * A generated webhook signing secret is shown once, and removed from the page when the view is
 * left. Test makes one harmless call with the stored configuration; Remove deletes it.
 */
export function renderSettings(main, _route, ctx) {
  let disposed = false;
  let kinds = [];
  let stored = null;
  const isOwner = ctx.me && (ctx.me.role === "owner" || ctx.me.is_super_admin);
  const current = h("div", { class: "current-integration", id: "ticketing-current", role: "status", "aria-live": "polite" });
  const kindSelect = h("select", { id: "ticketing-kind", name: "kind" });
  const fieldsBox = h("div", { class: "kind-fields", id: "ticketing-fields" });
  const formError = h("div", { class: "error-box", role: "alert", hidden: true });
  const submit = h("button", { type: "submit", class: "button button-primary", text: "Save webhook" });
  const secretOut = h("section", { class: "secret-once", id: "ticketing-secret-once", hidden: true, "aria-label": "New signing secret", tabindex: "-1" });
  const testRef = h("input", { id: "ticketing-test-ref", name: "ticket_ref", type: "text", autocomplete: "off", "aria-describedby": "ticketing-test-help" });
  const testOut = h("p", { id: "ticketing-test-result", role: "status", "aria-live": "polite" });
  const testButton = h("button", { type: "button", class: "button", text: "Test" });
  const removeButton = h("button", { type: "button", class: "button button-danger", text: "Remove" });
  /** @type {Map<string, {input: HTMLInputElement, error: HTMLElement, spec: any, group: string}>} */
  let inputs = new Map();

  const form = h(
    "form",
    { class: "card", novalidate: true, "aria-labelledby": "ticketing-form-title" },
    h("h2", { id: "ticketing-form-title", text: "Ticketing integration" }),
    h(
      "div",
      { class: "field" },
      h("label", { for: "ticketing-kind", text: "Ticketing system" }),
      kindSelect,
    ),
    fieldsBox,
    formError,
    h("div", { class: "form-actions" }, submit),
  );

  const tools = h(
    "section",
    { class: "card", "aria-labelledby": "ticketing-tools-title", id: "ticketing-tools", hidden: true },
    h("h2", { id: "ticketing-tools-title", text: "Check or remove" }),
    h(
      "div",
      { class: "field" },
      h("label", { for: "ticketing-test-ref", text: "Ticket to read (optional)" }),
      testRef,
      h("p", { class: "hint", id: "ticketing-test-help", text: "Test reads this ticket, or asks the system who we are when empty. Nothing is posted." }),
    ),
    h("div", { class: "form-actions" }, testButton, removeButton),
    testOut,
  );

  const kindSpec = (name) => kinds.find((k) => k.kind === name);

  function fieldRow(spec, group, { storedSecret }) {
    const id = `ticketing-${group}-${spec.name}`;
    const error = h("p", { class: "field-error", id: `${id}-error`, hidden: true });
    const helpId = `${id}-help`;
    let input;
    if (spec.type === "boolean") {
      input = h("input", { id, name: spec.name, type: "checkbox" });
      const value = stored?.options?.[spec.name] ?? spec.default;
      input.checked = Boolean(value);
      inputs.set(`${group}.${spec.name}`, { input, error, spec, group });
      return h("div", { class: "field field-check" }, input, h("label", { for: id, text: spec.label }), spec.help ? h("p", { class: "hint", id: helpId, text: spec.help }) : null, error);
    }
    input = h("input", {
      id,
      name: spec.name,
      type: spec.secret ? "password" : spec.type === "url" ? "url" : "text",
      autocomplete: spec.secret ? "new-password" : "off",
      "aria-describedby": helpId,
    });
    if (!spec.secret) {
      const value = group === "options" ? stored?.options?.[spec.name] : undefined;
      if (value !== undefined && value !== null) input.value = String(value);
      else if (group === "options" && spec.default !== undefined && spec.default !== null) input.value = String(spec.default);
    }
    const required = spec.required && !(spec.secret && storedSecret);
    const hint = [spec.help, spec.secret && storedSecret ? "Stored: leave empty to keep it." : ""].filter(Boolean).join(" ");
    inputs.set(`${group}.${spec.name}`, { input, error, spec, group });
    return h(
      "div",
      { class: "field" },
      h("label", { for: id }, spec.label, required ? h("span", { class: "required", "aria-hidden": "true", text: " *" }) : null),
      input,
      h("p", { class: "hint", id: helpId, text: hint }),
      error,
    );
  }

  function showFields(kindName) {
    const spec = kindSpec(kindName);
    inputs = new Map();
    if (!spec) {
      mount(fieldsBox);
      return;
    }
    const sameKind = stored && stored.kind === kindName;
    const storedNames = new Set(sameKind ? stored.credentials_set || [] : []);
    const isWebhook = kindName === "webhook";
    submit.textContent = isWebhook ? "Save webhook" : `Save ${spec.label}`;
    const baseId = "ticketing-url";
    const baseInput = h("input", {
      id: baseId,
      name: "base_url",
      type: "url",
      required: spec.base_url.required,
      autocomplete: "off",
      placeholder: isWebhook ? "https://tickets.example.com/hooks/resolutionflow" : "https://",
      "aria-describedby": "ticketing-url-help",
    });
    if (sameKind && stored.url) baseInput.value = stored.url;
    const baseError = h("p", { class: "field-error", id: "ticketing-url-error", hidden: true });
    inputs.set("base_url", { input: baseInput, error: baseError, spec: { name: "base_url" }, group: "" });
    const credentialRows = spec.credentials.map((field) =>
      isWebhook && field.name === "secret"
        ? webhookSecretRow(field, storedNames.has("secret"))
        : fieldRow(field, "credentials", { storedSecret: storedNames.has(field.name) }),
    );
    mount(
      fieldsBox,
      h(
        "div",
        { class: "field" },
        h("label", { for: baseId }, isWebhook ? "Endpoint URL" : "Base URL", spec.base_url.required ? h("span", { class: "required", "aria-hidden": "true", text: " *" }) : null),
        baseInput,
        h("p", { class: "hint", id: "ticketing-url-help", text: isWebhook ? "Resolution notes are POSTed here, signed per the Standard Webhooks spec." : spec.base_url.help }),
        baseError,
      ),
      credentialRows,
      spec.options.length ? h("fieldset", { class: "options" }, h("legend", { text: "Options" }), spec.options.map((o) => fieldRow(o, "options", { storedSecret: false }))) : null,
    );
  }

  function webhookSecretRow(field, storedSecret) {
    const input = h("input", { id: "ticketing-secret", name: "secret", type: "password", autocomplete: "new-password", "aria-describedby": "ticketing-secret-help" });
    const error = h("p", { class: "field-error", id: "ticketing-secret-error", hidden: true });
    inputs.set("credentials.secret", { input, error, spec: field, group: "credentials" });
    return h(
      "div",
      { class: "field" },
      h("label", { for: "ticketing-secret", text: "Signing secret (optional)" }),
      input,
      h("p", {
        class: "hint",
        id: "ticketing-secret-help",
        text: storedSecret ? "Leave empty to keep the current secret." : "Leave empty to have one generated; it is shown once.",
      }),
      error,
    );
  }

  function showCurrent(integration) {
    stored = integration;
    tools.hidden = !integration;
    if (!integration || !integration.kind) {
      mount(current, h("p", { class: "muted", text: "No ticketing integration: resolution notes are kept in ResolutionFlow only." }));
      return;
    }
    const label = integration.label || kindSpec(integration.kind)?.label || integration.kind;
    mount(
      current,
      h(
        "dl",
        { class: "meta-list" },
        h("dt", { text: "System" }),
        h("dd", { text: label }),
        integration.url ? [h("dt", { text: "URL" }), h("dd", {}, h("code", { text: integration.url }))] : null,
        h("dt", { text: "Status" }),
        h("dd", {}, h("span", { class: `pill status-${integration.status || "active"}`, text: integration.status || "active" })),
        integration.disabled_reason ? [h("dt", { text: "Reason" }), h("dd", { text: integration.disabled_reason })] : null,
        integration.updated_at ? [h("dt", { text: "Updated" }), h("dd", {}, when(integration.updated_at))] : null,
      ),
    );
  }

  const clearSecret = () => {
    secretOut.querySelector("code")?.replaceChildren();
    secretOut.replaceChildren();
    secretOut.hidden = true;
  };

  function clearErrors() {
    formError.hidden = true;
    for (const { input, error } of inputs.values()) {
      error.hidden = true;
      input.removeAttribute("aria-invalid");
    }
  }

  function showFieldErrors(fields) {
    let first = null;
    for (const [name, messages] of Object.entries(fields)) {
      const key = name === "url" ? "base_url" : name;
      const entry = inputs.get(key) || inputs.get(`credentials.${key}`);
      if (!entry) continue;
      entry.error.textContent = [].concat(messages).join(" ");
      entry.error.hidden = false;
      entry.input.setAttribute("aria-invalid", "true");
      entry.input.setAttribute("aria-describedby", `${entry.input.getAttribute("aria-describedby") || ""} ${entry.error.id}`.trim());
      first = first || entry.input;
    }
    first?.focus();
    return first !== null;
  }

  kindSelect.addEventListener("change", () => {
    clearErrors();
    showFields(kindSelect.value);
  });

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearErrors();
    clearSecret();
    const kind = kindSelect.value;
    const payload = { kind, credentials: {}, options: {} };
    for (const [key, { input, spec, group }] of inputs) {
      if (key === "base_url") {
        payload.base_url = input.value.trim();
      } else if (spec.type === "boolean") {
        payload.options[spec.name] = input.checked;
      } else if (input.value.trim()) {
        payload[group][spec.name] = input.value.trim();
      }
      if (spec.secret) input.value = "";
    }
    const baseRequired = kindSpec(kind)?.base_url.required;
    if (baseRequired && !payload.base_url) {
      showFieldErrors({ base_url: ["Enter the URL."] });
      return;
    }
    if (!payload.base_url) delete payload.base_url;
    submit.disabled = true;
    try {
      const result = await api.putTicketing(payload);
      if (disposed) return;
      const fresh = await api.getTicketing();
      if (disposed) return;
      showCurrent(fresh);
      showFields(kind);
      announce(kind === "webhook" ? "Webhook saved" : "Integration saved");
      if (result && result.secret && !payload.credentials.secret) {
        const code = h("code", { id: "ticketing-secret-value", text: result.secret });
        const status = h("span", { role: "status", "aria-live": "polite" });
        mount(
          secretOut,
          h("h3", { text: "Signing secret" }),
          h("p", { class: "hint", text: "Copy it into your ticketing system now: it is not shown again." }),
          h("p", {}, code),
          h("button", {
            type: "button",
            class: "button button-small",
            text: "Copy secret",
            onClick: async () => {
              status.textContent = (await copyText(code.textContent || "", code)) ? "Copied." : "Selected: press Ctrl+C.";
            },
          }),
          status,
        );
        secretOut.hidden = false;
        secretOut.focus();
      }
    } catch (error) {
      if (disposed) return;
      const fields = error.fieldErrors ? error.fieldErrors() : {};
      if (!showFieldErrors(fields)) {
        formError.textContent = describeError(error);
        formError.hidden = false;
      }
    } finally {
      submit.disabled = false;
    }
  });

  testButton.addEventListener("click", async () => {
    testButton.disabled = true;
    testOut.textContent = "Testing…";
    try {
      const result = await api.testTicketing(testRef.value.trim());
      if (disposed) return;
      testOut.className = result.ok ? "test-ok" : "field-error";
      testOut.textContent = result.ok
        ? `OK: ${result.detail}`
        : `Failed: ${result.detail}${result.answer ? ` (${result.answer})` : ""}`;
    } catch (error) {
      if (!disposed) testOut.textContent = describeError(error);
    } finally {
      testButton.disabled = false;
    }
  });

  removeButton.addEventListener("click", async () => {
    removeButton.disabled = true;
    try {
      await api.deleteTicketing();
      if (disposed) return;
      showCurrent(null);
      showFields(kindSelect.value);
      testOut.textContent = "";
      announce("Ticketing integration removed");
    } catch (error) {
      if (!disposed) testOut.textContent = describeError(error);
    } finally {
      removeButton.disabled = false;
    }
  });

  const usage = h("div", { id: "usage-month", role: "status", "aria-live": "polite" }, h("p", { class: "muted", text: "Loading…" }));
  const usageCard = h("section", { class: "card", "aria-labelledby": "usage-title" }, h("h2", { id: "usage-title", text: "AI usage this month" }), usage);

  function showUsage(report) {
    const usd = (value) => `$${Number(value || 0).toFixed(2)}`;
    const budget = report.budget || {};
    const share = budget.used_share == null ? null : Math.round(budget.used_share * 100);
    mount(
      usage,
      h(
        "dl",
        { class: "meta-list" },
        h("dt", { text: "Spent so far" }),
        h("dd", { id: "usage-cost", text: usd(report.cost_usd) }),
        h("dt", { text: "LLM calls" }),
        h("dd", { id: "usage-calls", text: String(report.calls || 0) }),
        h("dt", { text: "Tokens (input / output)" }),
        h("dd", { text: `${report.input_tokens || 0} / ${report.output_tokens || 0}` }),
        h("dt", { text: "Read from the prompt cache" }),
        h("dd", { text: `${report.cache_read_input_tokens || 0} tokens` }),
        h("dt", { text: "Notes reused without a call" }),
        h("dd", { text: String(report.notes_reused || 0) }),
        h("dt", { text: "Monthly budget" }),
        h("dd", { id: "usage-budget", text: budget.monthly_budget_usd == null ? "None set" : `${usd(budget.monthly_budget_usd)}${share == null ? "" : ` (${share} % used)`}` }),
      ),
      budget.exceeded
        ? h("p", { class: "error-box", role: "alert", text: "The monthly budget is spent: notes come from the offline generator and the assistant is paused." })
        : budget.warning
          ? h("p", { class: "notice", role: "alert", text: "80 % of the monthly budget is spent." })
          : null,
    );
  }

  mount(
    main,
    h("h1", { text: "Settings" }),
    isOwner
      ? h("div", { class: "settings-layout" }, h("section", { "aria-label": "Current integration", class: "card" }, h("h2", { text: "Current" }), current), form, secretOut, tools, usageCard)
      : h("p", { class: "notice", text: "Only account owners can change the ticketing integration." }),
  );

  if (isOwner) {
    Promise.all([api.getTicketingKinds(), api.getTicketing()])
      .then(([allKinds, integration]) => {
        if (disposed) return;
        kinds = allKinds;
        mount(kindSelect, kinds.map((k) => h("option", { value: k.kind, text: k.label })));
        kindSelect.value = integration?.kind || "webhook";
        showCurrent(integration);
        showFields(kindSelect.value);
      })
      .catch((error) => !disposed && mount(current, errorBox(error)));
    api
      .getUsage()
      .then((report) => !disposed && showUsage(report))
      .catch((error) => !disposed && mount(usage, errorBox(error)));
  }

  return () => {
    disposed = true;
    for (const { input, spec } of inputs.values()) if (spec.secret) input.value = "";
    clearSecret();
  };
}
