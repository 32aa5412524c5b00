import * as api from "../api.js";
import { errorBox, h, mount, when } from "../dom.js";
import { rememberValues } from "./generate.js";

const PAGE = 20;

function formatValue(value) {
  if (Array.isArray(value)) return value.join(", ");
  if (value === null || value === undefined) return "—";
  if (typeof value === "object") return JSON.stringify(value);
  return String(value);
}

/** Your generations, newest first, with parameters as stored (sensitive values redacted). */
export function renderHistory(main) {
  let disposed = false;
  let offset = 0;
  const status = h("p", { class: "status-line", role: "status", "aria-live": "polite" });
  const tbody = h("tbody");
  const more = h("button", { type: "button", class: "button", text: "Load more", hidden: true });
  const table = h(
    "table",
    { class: "data-table", id: "history-table" },
    h("caption", { class: "visually-hidden", text: "Generated scripts, newest first" }),
    h(
      "thead",
      {},
      h(
        "tr",
        {},
        h("th", { scope: "col", text: "When" }),
        h("th", { scope: "col", text: "Template" }),
        h("th", { scope: "col", text: "Parameters (as stored)" }),
        h("th", { scope: "col", text: "Session" }),
        h("th", { scope: "col", text: "Again" }),
      ),
    ),
    tbody,
  );

  mount(
    main,
    h("h1", { text: "Generation history" }),
    h("p", { class: "muted", text: "Every script you generated. Stored parameters keep sensitive values as [REDACTED]; the rendered scripts themselves are not shown again." }),
    status,
    h("div", { class: "table-scroll", tabindex: "0", role: "region", "aria-label": "Generation history table" }, table),
    more,
  );

  async function load() {
    more.disabled = true;
    status.textContent = "Loading…";
    try {
      const { items: rows, total } = await api.pageGenerations({ limit: PAGE, offset });
      if (disposed) return;
      for (const row of rows) {
        const params = Object.entries(row.parameters_used || {});
        tbody.append(
          h(
            "tr",
            { dataset: { generation: row.id } },
            h("td", {}, when(row.created_at)),
            h(
              "td",
              {},
              h("a", { href: `#/templates/${row.template_id}`, text: row.template_name }),
              h("span", { class: "muted small", text: ` v${row.template_version}` }),
            ),
            h(
              "td",
              {},
              params.length
                ? h(
                    "dl",
                    { class: "param-list" },
                    params.map(([k, v]) => [h("dt", { text: k }), h("dd", { text: formatValue(v) })]),
                  )
                : h("span", { class: "muted", text: "none" }),
            ),
            h(
              "td",
              {},
              row.ai_session_id
                ? h("a", { href: `#/sessions/${row.ai_session_id}`, text: "Open session" })
                : h("span", { class: "muted", text: "—" }),
            ),
            h(
              "td",
              {},
              h("a", {
                href: `#/templates/${row.template_id}?again=1${row.ai_session_id ? `&session=${row.ai_session_id}` : ""}`,
                class: "button button-small",
                dataset: { again: row.id },
                "aria-label": `Generate ${row.template_name} again with these values`,
                text: "Generate again",
                onClick: () => rememberValues(row.template_id, row.parameters_used),
              }),
            ),
          ),
        );
      }
      offset += rows.length;
      more.hidden = offset >= total || rows.length === 0;
      status.textContent = offset === 0 ? "No scripts generated yet." : `${offset} of ${total} shown.`;
    } catch (error) {
      if (disposed) return;
      status.textContent = "";
      main.append(errorBox(error));
    } finally {
      more.disabled = false;
    }
  }

  more.addEventListener("click", load);
  load();
  return () => {
    disposed = true;
  };
}
