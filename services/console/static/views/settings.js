import * as api from "../api.js";
import { announce, copyText, describeError, errorBox, h, mount, when } from "../dom.js";

/**
 * The account's ticketing webhook (owners): where resolution notes are sent. A generated
 * signing secret is shown once, and removed from the page when the view is left.
 */
export function renderSettings(main, _route, ctx) {
  let disposed = false;
  const isOwner = ctx.me && (ctx.me.role === "owner" || ctx.me.is_super_admin);
  const current = h("div", { class: "current-integration", id: "ticketing-current", role: "status", "aria-live": "polite" });
  const url = h("input", { id: "ticketing-url", name: "url", type: "url", required: true, autocomplete: "off", placeholder: "https://tickets.example.com/hooks/resolutionflow", "aria-describedby": "ticketing-url-help" });
  const secret = h("input", { id: "ticketing-secret", name: "secret", type: "password", autocomplete: "new-password", "aria-describedby": "ticketing-secret-help" });
  const formError = h("div", { class: "error-box", role: "alert", hidden: true });
  const urlError = h("p", { class: "field-error", id: "ticketing-url-error", hidden: true });
  const submit = h("button", { type: "submit", class: "button button-primary", text: "Save webhook" });
  const secretOut = h("section", { class: "secret-once", id: "ticketing-secret-once", hidden: true, "aria-label": "New signing secret", tabindex: "-1" });

  const form = h(
    "form",
    { class: "card", novalidate: true, "aria-labelledby": "ticketing-form-title" },
    h("h2", { id: "ticketing-form-title", text: "Ticketing webhook" }),
    h(
      "div",
      { class: "field" },
      h("label", { for: "ticketing-url" }, "Endpoint URL", h("span", { class: "required", "aria-hidden": "true", text: " *" })),
      url,
      h("p", { class: "hint", id: "ticketing-url-help", text: "Resolution notes are POSTed here, signed per the Standard Webhooks spec." }),
      urlError,
    ),
    h(
      "div",
      { class: "field" },
      h("label", { for: "ticketing-secret", text: "Signing secret (optional)" }),
      secret,
      h("p", { class: "hint", id: "ticketing-secret-help", text: "Leave empty to have one generated; it is shown once." }),
    ),
    formError,
    h("div", { class: "form-actions" }, submit),
  );

  function showCurrent(integration) {
    if (!integration || !integration.url) {
      mount(current, h("p", { class: "muted", text: "No webhook configured: resolution notes are kept in ResolutionFlow only." }));
      return;
    }
    mount(
      current,
      h(
        "dl",
        { class: "meta-list" },
        h("dt", { text: "URL" }),
        h("dd", {}, h("code", { text: integration.url })),
        h("dt", { text: "Status" }),
        h("dd", {}, h("span", { class: `pill status-${integration.status || "active"}`, text: integration.status || "active" })),
        integration.disabled_reason ? [h("dt", { text: "Reason" }), h("dd", { text: integration.disabled_reason })] : null,
        integration.updated_at ? [h("dt", { text: "Updated" }), h("dd", {}, when(integration.updated_at))] : null,
      ),
    );
    if (!url.value) url.value = integration.url;
  }

  const clearSecret = () => {
    secretOut.querySelector("code")?.replaceChildren();
    secretOut.replaceChildren();
    secretOut.hidden = true;
  };

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    formError.hidden = true;
    urlError.hidden = true;
    url.removeAttribute("aria-invalid");
    clearSecret();
    const payload = { url: url.value.trim() };
    if (secret.value) payload.secret = secret.value;
    secret.value = "";
    if (!payload.url) {
      urlError.textContent = "Enter the endpoint URL.";
      urlError.hidden = false;
      url.setAttribute("aria-invalid", "true");
      url.focus();
      return;
    }
    submit.disabled = true;
    try {
      const result = await api.putTicketing(payload);
      if (disposed) return;
      showCurrent(result);
      announce("Webhook saved");
      if (result && result.secret && !payload.secret) {
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
      if (fields.url) {
        urlError.textContent = fields.url.join(" ");
        urlError.hidden = false;
        url.setAttribute("aria-invalid", "true");
        url.setAttribute("aria-describedby", "ticketing-url-help ticketing-url-error");
        url.focus();
      } else {
        formError.textContent = describeError(error);
        formError.hidden = false;
      }
    } finally {
      submit.disabled = false;
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
      ? h("div", { class: "settings-layout" }, h("section", { "aria-label": "Current webhook", class: "card" }, h("h2", { text: "Current" }), current), form, secretOut, usageCard)
      : h("p", { class: "notice", text: "Only account owners can change the ticketing integration." }),
  );

  if (isOwner) {
    api
      .getTicketing()
      .then((integration) => !disposed && showCurrent(integration))
      .catch((error) => !disposed && mount(current, errorBox(error)));
    api
      .getUsage()
      .then((report) => !disposed && showUsage(report))
      .catch((error) => !disposed && mount(usage, errorBox(error)));
  }

  return () => {
    disposed = true;
    secret.value = "";
    clearSecret();
  };
}
