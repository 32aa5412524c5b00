// The console's client for the public ResolutionFlow API (same origin, /api/v1/...).
// Every call goes through `request()`; nothing here talks to anything but the documented API.

/**
 * @typedef {{access_token: string, token_type: string, expires_in: number}} TokenResponse
 * @typedef {{id: string, email: string, account_id: string, team_id: ?string, role: string,
 *            is_super_admin: boolean}} Me
 * @typedef {{id: string, name: string, slug: string, description: ?string, icon: ?string,
 *            sort_order: number, template_count: number}} Category
 * @typedef {{pattern?: string, min_length?: number, max_length?: number, min?: number,
 *            max?: number}} ValidationRules
 * @typedef {{key: string, label?: string, type: string, required?: boolean, sensitive?: boolean,
 *            default?: any, help?: string, options?: Array<string|{value: string, label?: string}>,
 *            validation?: ValidationRules}} Parameter
 * @typedef {{id: string, category_id: string, name: string, slug: string, description: ?string,
 *            use_case: ?string, tags: string[], complexity: ?string, estimated_runtime: ?string,
 *            requires_elevation: boolean, requires_modules: string[], usage_count: number,
 *            version: number, scope: string}} TemplateSummary
 * @typedef {TemplateSummary & {script_body: string, parameters_schema: {parameters?: Parameter[]},
 *            default_values: Object, validation_rules: Object}} TemplateDetail
 * @typedef {{id: string, script: string, warnings: string[], metadata: Object,
 *            state_version: ?number}} GenerateResult
 * @typedef {{id: string, template_id: string, template_name: string, template_version: number,
 *            parameters_used: Object, ai_session_id: ?string,
 *            created_at: string}} GenerationRecord
 * @typedef {{id: string, title: string, ticket_ref: ?string, problem?: ?string, status: string,
 *            state_version: number, created_at: string}} AISession
 * @typedef {"symptom"|"observation"|"confirmed"|"ruled_out"|"environment"} FactKind
 * @typedef {{id: string, text: string, kind: FactKind, source: string, created_by: ?string,
 *            created_at: string, state_version?: number}} Fact
 * @typedef {{id: string, title: string, summary: ?string, steps: string[], script: ?string,
 *            template_id: ?string, confidence: ?number, superseded_at: ?string,
 *            decision: ?string, decided_at: ?string, created_at: string}} SuggestedFix
 * @typedef {"one_off"|"draft_template"|"build_template"|"dismissed"} FixDecision
 * @typedef {{kind: string, session_id: string, state_version: number, markdown: string,
 *            from_cache: boolean, generator: string, model: ?string, generated_at: string,
 *            ticket_ref: ?string}} NotePreview
 * @typedef {{status: "ready", note: NotePreview, etag: ?string} |
 *           {status: "not_modified", etag: string} |
 *           {status: "pending", state_version: ?number, retry_after: number}} PreviewResult
 */

export const API_BASE = "/api/v1";
const TOKEN_KEY = "rf.console.token";
const EXPIRES_KEY = "rf.console.expires";

// The words the API accepts, defined once on the server (shared/vocabulary.py, the models)
// and handed to the page by the shell as JSON (services/console: `#rf-vocabulary`).
const VOCABULARY = JSON.parse(document.getElementById("rf-vocabulary")?.textContent || "{}");

/** @type {readonly string[]} */
export const FACT_KINDS = Object.freeze(VOCABULARY.fact_kinds || []);

/** @type {readonly string[]} */
export const FIX_DECISIONS = Object.freeze(VOCABULARY.fix_decisions || []);

/** An HTTP error answer of the API, with its JSON body. */
export class ApiError extends Error {
  /** @param {number} status @param {any} body */
  constructor(status, body) {
    const message =
      (body && typeof body === "object" && (body.message || body.error?.message)) ||
      `Request failed (${status})`;
    super(String(message));
    this.name = "ApiError";
    this.status = status;
    this.body = body;
  }

  /**
   * Field errors of a 422, flattened to {field: [messages]}. Render errors arrive as
   * {errors: {parameters: {key: [...]}}}, schema errors as {errors: {json: {field: [...]}}}.
   * @param {string} [group] "parameters" or "json"; both when omitted
   * @returns {Record<string, string[]>}
   */
  fieldErrors(group) {
    const errors = this.body && typeof this.body === "object" ? this.body.errors : null;
    if (!errors || typeof errors !== "object") return {};
    /** @type {Record<string, string[]>} */
    const out = {};
    const groups = group ? [group] : ["parameters", "json", "query"];
    let found = false;
    for (const name of groups) {
      const part = errors[name];
      if (part && typeof part === "object" && !Array.isArray(part)) {
        found = true;
        for (const [field, messages] of Object.entries(part)) {
          out[field] = flattenMessages(messages);
        }
      }
    }
    if (!found && !group) {
      for (const [field, messages] of Object.entries(errors)) {
        out[field] = flattenMessages(messages);
      }
    }
    return out;
  }
}

function flattenMessages(messages) {
  if (Array.isArray(messages)) return messages.flatMap((m) => flattenMessages(m));
  if (messages && typeof messages === "object") {
    return Object.entries(messages).flatMap(([k, v]) =>
      flattenMessages(v).map((m) => `${k}: ${m}`),
    );
  }
  return [String(messages)];
}

// ── Token (sessionStorage: gone when the tab closes) ─────────────────────

export const auth = {
  /** @returns {?string} */
  token() {
    const token = sessionStorage.getItem(TOKEN_KEY);
    const expires = Number(sessionStorage.getItem(EXPIRES_KEY) || 0);
    if (!token) return null;
    if (expires && Date.now() > expires) {
      this.clear();
      return null;
    }
    return token;
  },
  /** @param {string} token @param {number} expiresIn seconds */
  set(token, expiresIn) {
    sessionStorage.setItem(TOKEN_KEY, token);
    sessionStorage.setItem(EXPIRES_KEY, String(Date.now() + Math.max(0, expiresIn - 30) * 1000));
  },
  clear() {
    sessionStorage.removeItem(TOKEN_KEY);
    sessionStorage.removeItem(EXPIRES_KEY);
  },
};

function query(params) {
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(params || {})) {
    if (value === undefined || value === null || value === "" || value === false) continue;
    search.set(key, String(value));
  }
  const text = search.toString();
  return text ? `?${text}` : "";
}

async function readBody(response) {
  if (response.status === 204) return null;
  const type = response.headers.get("content-type") || "";
  if (type.includes("application/json")) {
    try {
      return await response.json();
    } catch {
      return null;
    }
  }
  const text = await response.text();
  return text ? { message: text.slice(0, 500) } : null;
}

/**
 * @param {string} method
 * @param {string} path under /api/v1
 * @param {{body?: any, params?: Object, headers?: Object, signal?: AbortSignal,
 *          anonymous?: boolean, raw?: boolean}} [options]
 */
export async function request(method, path, options = {}) {
  const headers = { Accept: "application/json", ...(options.headers || {}) };
  const token = auth.token();
  if (token && !options.anonymous) headers.Authorization = `Bearer ${token}`;
  let body;
  if (options.body !== undefined) {
    headers["Content-Type"] = "application/json";
    body = JSON.stringify(options.body);
  }
  const response = await fetch(`${API_BASE}${path}${query(options.params)}`, {
    method,
    headers,
    body,
    signal: options.signal,
    credentials: "same-origin",
    cache: "no-store",
  });
  if (options.raw && response.ok) return response;
  // Only a conditional request (If-None-Match) gets a 304: the caller keeps what it has.
  if (response.status === 304) return { data: null, response };
  const data = await readBody(response);
  if (response.status === 401 && !options.anonymous) {
    auth.clear();
    window.dispatchEvent(new CustomEvent("rf:unauthorized"));
  }
  if (!response.ok) throw new ApiError(response.status, data);
  return { data, response };
}

const get = async (path, params, signal) => (await request("GET", path, { params, signal })).data;
const send = async (method, path, body) => (await request(method, path, { body })).data;

// ── Auth ─────────────────────────────────────────────────────────────────

/** @returns {Promise<TokenResponse>} */
export async function login(email, password) {
  const { data } = await request("POST", "/auth/token", {
    body: { email, password },
    anonymous: true,
  });
  auth.set(data.access_token, data.expires_in);
  return data;
}

/** @returns {Promise<Me>} */
export const me = () => get("/auth/me");

// ── Script library ───────────────────────────────────────────────────────

/** @returns {Promise<Category[]>} */
export const listCategories = () => get("/scripts/categories");

/**
 * @param {{category_slug?: string, search?: string, tags?: string[], mine?: boolean,
 *          shared?: boolean, managed?: boolean, limit?: number, offset?: number}} filters
 * @param {AbortSignal} [signal]
 * @returns {Promise<{items: TemplateSummary[], total: number}>}
 */
export async function listTemplates(filters = {}, signal) {
  const params = { ...filters, tags: (filters.tags || []).join(",") };
  const { data, response } = await request("GET", "/scripts/templates", { params, signal });
  const total = Number(response.headers.get("X-Total-Count") ?? data.length);
  return { items: data, total };
}

/** @returns {Promise<TemplateDetail>} */
export const getTemplate = (id) => get(`/scripts/templates/${encodeURIComponent(id)}`);

/** Partial update of a template (the response carries its static-check findings). */
export const updateTemplate = (id, patch) =>
  send("PUT", `/scripts/templates/${encodeURIComponent(id)}`, patch);

/** Publish a draft made from a fix to the team's library. */
export const publishTemplate = (id) =>
  send("POST", `/scripts/templates/${encodeURIComponent(id)}/publish`, {});

/** The caller's drafts made from fixes. */
export const listDrafts = () => get("/scripts/templates/drafts");

/** Every tag on a template the caller can see, with its template count.
 * @returns {Promise<{tag: string, template_count: number}[]>} */
export const listTags = () => get("/scripts/tags");

/**
 * The .ps1 file of an env- or prompt-delivery generation (UTF-8 with a byte-order mark).
 * @param {string} downloadUrl the `download_url` of a generate answer
 * @returns {Promise<Blob>}
 */
export async function downloadGeneration(downloadUrl) {
  const path = downloadUrl.startsWith(API_BASE) ? downloadUrl.slice(API_BASE.length) : downloadUrl;
  const response = await request("GET", path, {
    raw: true,
    headers: { Accept: "application/octet-stream" },
  });
  return response.blob();
}

/**
 * The only call that carries sensitive values; the caller keeps no copy of `parameters`.
 * @param {{template_id: string, parameters: Object, ai_session_id?: ?string,
 *          secret_delivery?: ?string}} payload
 * @returns {Promise<GenerateResult>}
 */
export const generateScript = (payload) => send("POST", "/scripts/generate", payload);

/** @returns {Promise<GenerationRecord[]>} */
export const listGenerations = ({ limit = 20, offset = 0 } = {}) =>
  get("/scripts/generations", { limit, offset });

/** @returns {Promise<{items: GenerationRecord[], total: number}>} */
export async function pageGenerations({ limit = 20, offset = 0 } = {}) {
  const { data, response } = await request("GET", "/scripts/generations", { params: { limit, offset } });
  return { items: data, total: Number(response.headers.get("X-Total-Count") ?? data.length) };
}

// ── AI sessions ──────────────────────────────────────────────────────────

const S = (id) => `/ai-sessions/${encodeURIComponent(id)}`;

/** @returns {Promise<AISession[]>} */
export const listSessions = ({ status, search, ticket_ref, limit = 50, offset = 0 } = {}) =>
  get("/ai-sessions", { status, search, ticket_ref, limit, offset });
/** @returns {Promise<AISession>} */
export const createSession = (payload) => send("POST", "/ai-sessions", payload);
/** @returns {Promise<AISession>} */
export const getSession = (id) => get(S(id));
/** @returns {Promise<AISession>} */
export const updateSession = (id, patch) => send("PATCH", S(id), patch);

/** @returns {Promise<Fact[]>} */
export const listFacts = (id) => get(`${S(id)}/facts`);
/** @returns {Promise<Fact>} */
export const createFact = (id, fact) => send("POST", `${S(id)}/facts`, fact);
/** @returns {Promise<Fact>} */
export const updateFact = (id, factId, patch) =>
  send("PATCH", `${S(id)}/facts/${encodeURIComponent(factId)}`, patch);
/** @returns {Promise<?Object>} */
export const deleteFact = (id, factId) =>
  send("DELETE", `${S(id)}/facts/${encodeURIComponent(factId)}`);

/** @returns {Promise<Object[]>} */
export const listMessages = (id) => get(`${S(id)}/messages`);

/**
 * Sends a chat message. Asks for server-sent events and parses them from the response body
 * (`delta` events carry text, `done` the final JSON, `error` a failure); a server that answers
 * with plain JSON instead is handled the same way, without deltas.
 * @param {string} id
 * @param {string} content
 * @param {{onDelta?: (text: string) => void, signal?: AbortSignal}} [options]
 * @returns {Promise<{user_message: Object, assistant_message: Object,
 *                    suggested_fix: ?SuggestedFix, state_version: number,
 *                    generator: string, model: ?string}>}
 */
export async function sendMessage(id, content, options = {}) {
  const response = await request("POST", `${S(id)}/messages`, {
    body: { content },
    headers: { Accept: "text/event-stream, application/json;q=0.9" },
    signal: options.signal,
    raw: true,
  });
  const type = response.headers.get("content-type") || "";
  if (!type.includes("text/event-stream") || !response.body) {
    return await response.json();
  }
  let result = null;
  for await (const event of parseEventStream(response.body)) {
    let data = null;
    try {
      data = event.data ? JSON.parse(event.data) : null;
    } catch {
      data = { text: event.data };
    }
    if (event.event === "delta") {
      if (data && typeof data.text === "string") options.onDelta?.(data.text);
    } else if (event.event === "done") {
      result = data;
    } else if (event.event === "error") {
      const status = Number(data?.code || data?.status) || 503;
      throw new ApiError(status, data || { message: "The assistant failed" });
    }
  }
  if (!result) throw new ApiError(502, { message: "The reply ended before it was complete" });
  return result;
}

/**
 * Yields {event, data, id} for each server-sent event of a byte stream (the WHATWG format:
 * lines ending in LF, CR or CRLF; `data` lines joined with LF; comments ignored).
 * @param {ReadableStream<Uint8Array>} body
 */
export async function* parseEventStream(body) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  let event = "message";
  let data = [];
  let id = null;
  const dispatch = function* () {
    if (data.length) yield { event, data: data.join("\n"), id };
    event = "message";
    data = [];
  };
  try {
    while (true) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value;
      let match;
      while ((match = /\r\n|\r|\n/.exec(buffer))) {
        // A lone CR at the end may be the first half of a CRLF: wait for more input.
        if (match[0] === "\r" && match.index === buffer.length - 1) break;
        const line = buffer.slice(0, match.index);
        buffer = buffer.slice(match.index + match[0].length);
        if (line === "") {
          yield* dispatch();
          continue;
        }
        if (line.startsWith(":")) continue;
        const colon = line.indexOf(":");
        const field = colon === -1 ? line : line.slice(0, colon);
        let value = colon === -1 ? "" : line.slice(colon + 1);
        if (value.startsWith(" ")) value = value.slice(1);
        if (field === "event") event = value || "message";
        else if (field === "data") data.push(value);
        else if (field === "id") id = value;
      }
    }
    if (buffer) {
      if (buffer.startsWith("data:")) data.push(buffer.slice(5).replace(/^ /, ""));
    }
    yield* dispatch();
  } finally {
    reader.releaseLock();
  }
}

// ── Suggested fixes ──────────────────────────────────────────────────────

/** The active fix among a session's fixes (the one not superseded), or null. */
export function activeFixOf(fixes) {
  return (fixes || []).find((fix) => !fix.superseded_at) ?? null;
}

/**
 * The session's active fix, or null when it has none. Read from the list of fixes, which is
 * always a 200, so a session without a fix costs no failed request (and no console error);
 * a missing session is null too.
 * @returns {Promise<?SuggestedFix>}
 */
export async function getActiveFix(id, signal) {
  try {
    return activeFixOf(await listFixes(id, signal));
  } catch (error) {
    if (error instanceof ApiError && error.status === 404) return null;
    throw error;
  }
}

/** Every fix of the session, newest first. @returns {Promise<SuggestedFix[]>} */
export const listFixes = (id, signal) => get(`${S(id)}/suggested-fixes`, undefined, signal);

/** Up to five resolved sessions of the account closest to this one. */
export const similarSessions = (id, signal) => get(`${S(id)}/similar`, undefined, signal);

/** @param {FixDecision} decision @returns {Promise<SuggestedFix>} */
export const decideFix = (id, fixId, decision) =>
  send("POST", `${S(id)}/suggested-fixes/${encodeURIComponent(fixId)}/decision`, { decision });

// ── Resolve and notes ────────────────────────────────────────────────────

/**
 * Resolve. `resolution` is recorded as a resolution fact in the same write; `force` resolves
 * even when nothing says what fixed it (the note then says no resolution was recorded).
 * @returns {Promise<{state_version: number}>}
 */
export const resolveSession = (id, ticketRef, { resolution, force } = {}) =>
  send("POST", `${S(id)}/resolve`, {
    ...(ticketRef ? { ticket_ref: ticketRef } : {}),
    ...(resolution ? { resolution } : {}),
    ...(force ? { force: true } : {}),
  });
/** @returns {Promise<AISession>} */
export const reopenSession = (id) => send("POST", `${S(id)}/reopen`, {});

/**
 * The resolution-note preview for the session's current state. 202 means the note is still
 * being generated: retry after `retry_after` seconds. Pass the `etag` of the note on screen and
 * the answer is `not_modified` (a 304, no body) while that note is still the current one.
 * @param {string} id
 * @param {{kind?: string, wait?: number, signal?: AbortSignal, etag?: ?string}} [options]
 * @returns {Promise<PreviewResult>}
 */
export async function getPreview(id, { kind = "resolution_note", wait = 15, signal, etag = null } = {}) {
  const { data, response } = await request("GET", `${S(id)}/resolution-note/preview`, {
    params: { kind, wait },
    signal,
    headers: etag ? { "If-None-Match": etag } : undefined,
  });
  if (response.status === 304) return { status: "not_modified", etag };
  if (response.status === 202) {
    const header = Number(response.headers.get("Retry-After"));
    const retryAfter = Number(data?.retry_after ?? header);
    return {
      status: "pending",
      state_version: data?.state_version ?? null,
      retry_after: Number.isFinite(retryAfter) && retryAfter > 0 ? retryAfter : 1,
    };
  }
  return { status: "ready", note: data, etag: response.headers.get("ETag") };
}

/** The final note of a resolved session with its delivery, or null while there is none. */
export async function getResolutionNote(id) {
  try {
    const { data, response } = await request("GET", `${S(id)}/resolution-note`);
    if (response.status === 202) return null;
    return data;
  } catch (error) {
    if (error instanceof ApiError && error.status === 404) return null;
    throw error;
  }
}

export const redeliverNote = (id) => send("POST", `${S(id)}/resolution-note/redeliver`, {});

// ── Knowledge base ───────────────────────────────────────────────────────

/**
 * The account's kept KB articles: newest first, or best match first with `search`.
 * @param {{search?: string, limit?: number, offset?: number, signal?: AbortSignal}} [options]
 * @returns {Promise<{items: Object[], total: number}>}
 */
export async function listKbArticles({ search, limit = 20, offset = 0, signal } = {}) {
  const { data, response } = await request("GET", "/kb-articles", { params: { search, limit, offset }, signal });
  return { items: data, total: Number(response.headers.get("X-Total-Count") ?? data.length) };
}

/** One kept KB article with its markdown. */
export const getKbArticle = (id) => get(`/kb-articles/${encodeURIComponent(id)}`);

/** Keep a resolved session's current KB article (keeping again replaces it). */
export const keepKbArticle = (id, wait = 25) =>
  request("POST", `${S(id)}/resolution-note/keep`, { params: { kind: "kb_article", wait } }).then((r) => r.data);

// ── Integrations ─────────────────────────────────────────────────────────

/** The account's ticketing integration, or null when none is configured. */
export async function getTicketing() {
  try {
    return await get("/integrations/ticketing");
  } catch (error) {
    if (error instanceof ApiError && error.status === 404) return null;
    throw error;
  }
}

/**
 * @param {{kind?: string, base_url?: string, url?: string, secret?: string,
 *   credentials?: Object<string, string>, options?: Object<string, unknown>}} payload
 */
export const putTicketing = (payload) => send("PUT", "/integrations/ticketing", payload);

/** Every ticketing kind with its fields, to build the settings form from. */
export const getTicketingKinds = async () => (await get("/integrations/ticketing/kinds")).kinds;

/** One harmless authenticated call with the stored configuration: {ok, detail}. */
export const testTicketing = (ticketRef) =>
  send("POST", "/integrations/ticketing/test", ticketRef ? { ticket_ref: ticketRef } : {});

export const deleteTicketing = () => send("DELETE", "/integrations/ticketing");

/** The account's LLM usage and cost for the current month so far (owners). */
export const getUsage = () => get("/usage");
