import * as api from "../api.js";
import { debounce, errorBox, h, mount } from "../dom.js";

/**
 * The script library: categories with counts, search, a tag filter and the template list.
 * Filters live in the URL (#/library?category=&q=&tags=a,b) so back/forward and links work.
 */
export function renderLibrary(main, { query }, ctx) {
  const filters = {
    category: query.get("category") || "",
    search: query.get("q") || "",
    tags: (query.get("tags") || "").split(",").map((t) => t.trim()).filter(Boolean),
  };
  let categories = [];
  let controller = null;
  let disposed = false;

  const categoryList = h("ul", { class: "category-list", id: "category-list" });
  const searchInput = h("input", {
    id: "library-search",
    type: "search",
    name: "q",
    value: filters.search,
    autocomplete: "off",
    placeholder: "Name, description, use case…",
  });
  const tagInput = h("input", {
    id: "library-tag",
    type: "text",
    name: "tag",
    autocomplete: "off",
    placeholder: "e.g. active-directory",
    "aria-describedby": "library-tag-help",
    list: "library-tag-options",
  });
  // Suggestions from the tags the caller can actually see, so "network" is not typed for
  // "networking" and silently finds nothing.
  const tagOptions = h("datalist", { id: "library-tag-options" });
  api
    .listTags()
    .then((tags) => {
      if (disposed) return;
      mount(
        tagOptions,
        tags.map((t) => h("option", { value: t.tag, text: `${t.tag} (${t.template_count})` })),
      );
    })
    .catch(() => {});
  const activeTags = h("ul", { class: "chip-list", "aria-label": "Active tag filters" });
  const count = h("p", { class: "result-count", role: "status", "aria-live": "polite" });
  const results = h("div", { class: "template-grid", id: "template-results" });

  function syncUrl() {
    const params = new URLSearchParams();
    if (filters.category) params.set("category", filters.category);
    if (filters.search) params.set("q", filters.search);
    if (filters.tags.length) params.set("tags", filters.tags.join(","));
    const text = params.toString();
    history.replaceState(history.state, "", `#/library${text ? `?${text}` : ""}`);
  }

  function renderCategories() {
    const total = categories.reduce((sum, c) => sum + (c.template_count || 0), 0);
    const item = (slug, name, n) =>
      h(
        "li",
        {},
        h(
          "button",
          {
            type: "button",
            class: "category-button",
            "aria-pressed": String(filters.category === slug),
            dataset: { slug },
            onClick: () => {
              filters.category = slug;
              renderCategories();
              load();
            },
          },
          h("span", { class: "category-name", text: name }),
          h("span", { class: "count-badge", text: String(n), "aria-label": `${n} templates` }),
        ),
      );
    mount(
      categoryList,
      item("", "All templates", total),
      categories.map((c) => item(c.slug, c.name, c.template_count)),
    );
  }

  function renderTags() {
    mount(
      activeTags,
      filters.tags.map((tag) =>
        h(
          "li",
          {},
          h(
            "button",
            {
              type: "button",
              class: "chip chip-removable",
              "aria-label": `Remove tag filter ${tag}`,
              onClick: () => {
                filters.tags = filters.tags.filter((t) => t !== tag);
                renderTags();
                load();
              },
            },
            tag,
            h("span", { "aria-hidden": "true", text: " ×" }),
          ),
        ),
      ),
    );
  }

  function addTag(tag) {
    const clean = tag.trim().toLowerCase();
    if (!clean || filters.tags.includes(clean)) return;
    filters.tags = [...filters.tags, clean];
    renderTags();
    load();
  }

  function card(t) {
    return h(
      "article",
      { class: "template-card", "aria-labelledby": `tpl-${t.id}` },
      h(
        "h2",
        { class: "template-title", id: `tpl-${t.id}` },
        h("a", { href: `#/templates/${t.id}`, text: t.name }),
      ),
      t.description ? h("p", { class: "template-desc", text: t.description }) : null,
      h(
        "p",
        { class: "template-meta" },
        t.complexity ? h("span", { class: "pill", text: t.complexity }) : null,
        t.estimated_runtime ? h("span", { class: "pill", text: `~${t.estimated_runtime}` }) : null,
        t.requires_elevation ? h("span", { class: "pill pill-warn", text: "Admin" }) : null,
        h("span", { class: "pill pill-quiet", text: `v${t.version}` }),
      ),
      t.tags?.length
        ? h(
            "ul",
            { class: "chip-list", "aria-label": "Tags" },
            t.tags.map((tag) =>
              h(
                "li",
                {},
                h("button", {
                  type: "button",
                  class: "chip",
                  text: tag,
                  "aria-label": `Show only tag ${tag}`,
                  onClick: () => addTag(tag),
                }),
              ),
            ),
          )
        : null,
    );
  }

  async function load() {
    syncUrl();
    controller?.abort();
    controller = new AbortController();
    results.setAttribute("aria-busy", "true");
    count.textContent = "Loading templates…";
    try {
      const { items, total } = await api.listTemplates(
        {
          category_slug: filters.category || undefined,
          search: filters.search || undefined,
          tags: filters.tags,
        },
        controller.signal,
      );
      if (disposed) return;
      count.textContent =
        total === 1 ? "1 template" : `${total} templates${items.length < total ? ` (showing ${items.length})` : ""}`;
      mount(
        results,
        items.length
          ? items.map(card)
          : h("p", { class: "empty", text: "No template matches these filters." }),
      );
    } catch (error) {
      if (error.name === "AbortError" || disposed) return;
      count.textContent = "";
      mount(results, errorBox(error));
    } finally {
      results.removeAttribute("aria-busy");
    }
  }

  const searchLater = debounce(() => {
    filters.search = searchInput.value.trim();
    load();
  }, 250);
  searchInput.addEventListener("input", searchLater);

  const searchForm = h(
    "form",
    {
      class: "filters",
      role: "search",
      "aria-label": "Filter templates",
      onSubmit: (event) => {
        event.preventDefault();
        searchLater.cancel();
        if (tagInput.value.trim()) {
          for (const tag of tagInput.value.split(",")) addTag(tag);
          tagInput.value = "";
        }
        filters.search = searchInput.value.trim();
        load();
      },
    },
    h("div", { class: "field" }, h("label", { for: "library-search", text: "Search" }), searchInput),
    h(
      "div",
      { class: "field" },
      h("label", { for: "library-tag", text: "Add a tag filter" }),
      h("div", { class: "inline-row" }, tagInput, tagOptions, h("button", { type: "submit", class: "button", text: "Apply" })),
      h("p", { id: "library-tag-help", class: "hint", text: "Press Enter to add. Templates with any of the chosen tags are shown." }),
    ),
    activeTags,
  );

  mount(
    main,
    h("h1", { text: "Script library" }),
    h(
      "div",
      { class: "library-layout" },
      h(
        "nav",
        { class: "category-nav", "aria-label": "Categories" },
        h("h2", { class: "section-title", text: "Categories" }),
        categoryList,
      ),
      h("section", { class: "library-results", "aria-label": "Templates" }, searchForm, count, results),
    ),
  );

  renderTags();
  api
    .listCategories()
    .then((list) => {
      if (disposed) return;
      categories = list;
      renderCategories();
    })
    .catch((error) => {
      if (!disposed) mount(categoryList, h("li", {}, errorBox(error)));
    });
  load();

  return () => {
    disposed = true;
    controller?.abort();
    searchLater.cancel();
  };
}
