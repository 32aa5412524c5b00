// The account's knowledge base: the KB articles engineers kept from resolved sessions.

import * as api from "../api.js";
import { debounce, errorBox, h, mount, when } from "../dom.js";
import { renderMarkdown } from "../markdown.js";
import { copyButtons, generatorLabel } from "./session.js";

const PAGE = 20;

/** The list, newest first, or best match first for the words searched. */
export function renderKbArticles(main, { query }) {
  let disposed = false;
  let loadSeq = 0;
  let offset = 0;
  const searchInput = h("input", {
    id: "kb-search",
    name: "search",
    type: "search",
    maxlength: 200,
    autocomplete: "off",
    placeholder: "Symptoms, causes, products",
    value: query.get("search") || "",
  });
  const searchForm = h(
    "form",
    { class: "session-search", role: "search", "aria-label": "Knowledge base search", novalidate: true },
    h("div", { class: "field" }, h("label", { for: "kb-search", text: "Search the knowledge base" }), searchInput),
  );
  const status = h("p", { class: "status-line", id: "kb-status", role: "status", "aria-live": "polite" });
  const list = h("ul", { class: "session-list", id: "kb-list" });
  const more = h("button", { type: "button", class: "button", id: "kb-more", text: "Load more", hidden: true });

  mount(
    main,
    h("h1", { text: "Knowledge base" }),
    h("p", { class: "muted", text: "Articles kept from resolved sessions, with customer details generalised. Keep one from a resolved session's page." }),
    searchForm,
    status,
    list,
    more,
  );

  async function load({ append = false } = {}) {
    const seq = ++loadSeq;
    const search = searchInput.value.trim();
    if (!append) offset = 0;
    status.textContent = "Loading articles…";
    more.disabled = true;
    try {
      const { items, total } = await api.listKbArticles({ search: search || undefined, limit: PAGE, offset });
      if (disposed || seq !== loadSeq) return;
      const rows = items.map((article) =>
        h(
          "li",
          { class: "session-row", dataset: { articleId: article.id } },
          h("a", { href: `#/kb/${article.id}`, class: "session-link kb-link", text: article.title }),
          h(
            "span",
            { class: "session-meta" },
            h("span", { class: "pill pill-quiet", text: `v${article.state_version}` }),
            h("span", { class: "muted small" }, "kept ", when(article.updated_at)),
            " ",
            h("a", { href: `#/sessions/${article.session_id}`, class: "small", text: "Session" }),
          ),
        ),
      );
      if (append) list.append(...rows);
      else mount(list, rows);
      offset += items.length;
      more.hidden = offset >= total || items.length === 0;
      const count = `${total} article${total === 1 ? "" : "s"}`;
      status.textContent = total
        ? search ? `${count} matching “${search}”` : count
        : search ? `No article matches “${search}”.` : "No KB article kept yet.";
    } catch (error) {
      if (disposed || seq !== loadSeq) return;
      status.textContent = "";
      mount(list, h("li", {}, errorBox(error)));
    } finally {
      more.disabled = false;
    }
  }

  const searchLater = debounce(() => load(), 300);
  searchInput.addEventListener("input", () => searchLater());
  searchForm.addEventListener("submit", (event) => {
    event.preventDefault();
    searchLater.cancel();
    load();
  });
  more.addEventListener("click", () => load({ append: true }));
  load();
  return () => {
    disposed = true;
    searchLater.cancel();
  };
}

/** One article: its markdown, copy buttons, and where it came from. */
export function renderKbArticle(main, { params: [articleId] }) {
  let disposed = false;
  mount(
    main,
    h("p", { class: "breadcrumb" }, h("a", { href: "#/kb", text: "← Knowledge base" })),
    h("h1", { text: "KB article" }),
    h("p", { class: "status-line", role: "status", text: "Loading the article…" }),
  );
  api
    .getKbArticle(articleId)
    .then((article) => {
      if (disposed) return;
      const body = h("div", { class: "markdown", id: "kb-article-body" }, renderMarkdown(article.markdown, { headingLevelOffset: 1 }));
      mount(
        main,
        h("p", { class: "breadcrumb" }, h("a", { href: "#/kb", text: "← Knowledge base" })),
        h("h1", { id: "kb-article-title", tabindex: "-1", text: article.title }),
        h(
          "p",
          { class: "muted small", id: "kb-article-meta" },
          generatorLabel(article),
          " · kept ",
          when(article.updated_at),
          " · ",
          h("a", { href: `#/sessions/${article.session_id}`, text: "Open the session" }),
        ),
        h("article", { class: "panel kb-article", "aria-labelledby": "kb-article-title" }, copyButtons("kb-article", article.markdown, body), body),
      );
    })
    .catch((error) => {
      if (disposed) return;
      mount(main, h("p", { class: "breadcrumb" }, h("a", { href: "#/kb", text: "← Knowledge base" })), h("h1", { text: "KB article" }), errorBox(error));
    });
  return () => {
    disposed = true;
  };
}
