// api.js - the page's HTTP calls to the ChatStream server (all JSON except the reply stream).
//
// Every URL is relative, so the page works under a path prefix. Errors are thrown as ApiError,
// which carries what the UI needs to say something useful: the HTTP status (0 when the server
// could not be reached), the server's message and field, and Retry-After for a full queue.

const DEFAULT_ENDPOINTS = {
  stream: "chat_stream", clearContext: "clear_context", setSystemPrompt: "set_system_prompt",
  getGenerationParams: "get_generation_params", setGenerationParams: "set_generation_params",
  setFeedback: "set_feedback", getReplyStats: "get_reply_stats", health: "health", conversations: "conversations",
};

export class ApiError extends Error {
  constructor(status, message, info = {}) {
    super(message);
    this.name = "ApiError";
    this.status = status; // 0: no answer (network)
    this.field = info.field || null;
    this.retryAfterSec = info.retryAfterSec ?? null;
    this.body = info.body || {};
  }

  get isBusy() { return this.status === 429 || this.body.error === "too_many_requests"; }
  get isNetwork() { return this.status === 0; }
}

/** Seconds to wait from a Retry-After header (seconds or an HTTP date), within [1, 60]; 1 when absent. */
export function retryAfterSeconds(header) {
  if (!header) return 1;
  let seconds = Number(header);
  if (!Number.isFinite(seconds)) seconds = (Date.parse(header) - Date.now()) / 1000;
  return Number.isFinite(seconds) ? Math.min(60, Math.max(1, Math.ceil(seconds))) : 1;
}

/** The error a non-OK (or JSON instead of a stream) response stands for. */
export async function errorFromResponse(resp) {
  let body = {};
  let text = "";
  try {
    text = await resp.text();
    const parsed = JSON.parse(text);
    if (parsed && typeof parsed === "object") body = parsed;
  } catch (e) {
    if (text && !text.trim().startsWith("<")) body = { detail: text.trim().slice(0, 300) };
  }
  const detail = body.detail || body.message || body.error || resp.statusText || "";
  return new ApiError(resp.status, String(detail), {
    field: body.field, body, retryAfterSec: retryAfterSeconds(resp.headers.get("Retry-After")),
  });
}

export class ChatApi {
  /** `options`: the page options (developMode, and the original's endpoint names). */
  constructor(options = {}) {
    this.credentials = options.developMode ? "include" : "same-origin";
    this.loginOnUnauthorized = options.loginOnUnauthorized !== false;
    this.endpoints = Object.assign({}, DEFAULT_ENDPOINTS);
    if (options.streamEndpoint) this.endpoints.stream = options.streamEndpoint;
    if (options.clearContextEndpoint) this.endpoints.clearContext = options.clearContextEndpoint;
  }

  async fetch(endpoint, init = {}) {
    let resp;
    try {
      resp = await fetch(endpoint, Object.assign({ credentials: this.credentials, cache: "no-store" }, init));
    } catch (e) {
      if (e && e.name === "AbortError") throw e;
      throw new ApiError(0, e && e.message ? e.message : String(e));
    }
    // A server with an API key answers 401 without its login cookie: go and log in, then come back.
    if (resp.status === 401 && this.loginOnUnauthorized) {
      window.location.assign("login?next=" + encodeURIComponent(window.location.pathname + window.location.search));
    }
    return resp;
  }

  /** POST JSON; resolves with the Response whatever its status (the reply stream needs that). */
  post(endpoint, body, signal) {
    return this.fetch(endpoint, {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body), signal,
    });
  }

  /** A JSON API call: the parsed body, or an ApiError for a failed status or `success: false`. */
  async json(endpoint, init) {
    const resp = await this.fetch(endpoint, init);
    if (!resp.ok) throw await errorFromResponse(resp);
    const body = await resp.json().catch(() => ({}));
    if (body && body.success === false) {
      throw new ApiError(resp.status, body.message || "failed", { field: body.field, body });
    }
    return body;
  }

  postJson(endpoint, body) {
    const headers = { "Content-Type": "application/json" };
    return this.json(endpoint, { method: "POST", headers, body: JSON.stringify(body) });
  }

  streamReply(body, signal) { return this.post(this.endpoints.stream, body, signal); }
  clearContext() { return this.postJson(this.endpoints.clearContext, {}); }
  setSystemPrompt(text) { return this.postJson(this.endpoints.setSystemPrompt, { system_prompt: text }); }
  getGenerationParams() { return this.json(this.endpoints.getGenerationParams); }
  setGenerationParams(changes) { return this.postJson(this.endpoints.setGenerationParams, changes); }

  /** isLike: true, false, or null to take the feedback back; `conversationId` null: the session's. */
  setFeedback(messageId, isLike, conversationId = null) {
    const body = { message_id: messageId, is_like: isLike, form_data: null };
    if (conversationId) body.conversation_id = conversationId;
    return this.postJson(this.endpoints.setFeedback, body);
  }

  getReplyStats(messageId, conversationId = null) {
    const query = "?message_id=" + encodeURIComponent(messageId) +
      (conversationId ? "&conversation_id=" + encodeURIComponent(conversationId) : "");
    return this.json(this.endpoints.getReplyStats + query);
  }

  // -- stored conversations (/conversations...) ----------------------------------------------------
  conversationUrl(id, suffix = "") {
    return this.endpoints.conversations + "/" + encodeURIComponent(id) + suffix;
  }

  /** This session's conversations, newest first: {conversations, next_cursor}. */
  listConversations(cursor = null, limit = 50) {
    const query = "?limit=" + limit + (cursor ? "&cursor=" + encodeURIComponent(cursor) : "");
    return this.json(this.endpoints.conversations + query);
  }

  createConversation(fields = {}) { return this.postJson(this.endpoints.conversations, fields); }
  getConversation(id) { return this.json(this.conversationUrl(id)); }

  updateConversation(id, fields) {
    const headers = { "Content-Type": "application/json" };
    return this.json(this.conversationUrl(id), { method: "PATCH", headers, body: JSON.stringify(fields) });
  }

  /** The export's URL (a download: the server sends it as an attachment). */
  exportUrl(id) { return this.conversationUrl(id, "/export"); }

  /** A new conversation with the messages before user message `beforeMessageId` (edit and resend). */
  forkConversation(id, beforeMessageId, title = null) {
    const body = { before_message_id: beforeMessageId };
    if (title !== null) body.title = title;
    return this.postJson(this.conversationUrl(id, "/fork"), body);
  }

  async deleteConversation(id) {
    const resp = await this.fetch(this.conversationUrl(id), { method: "DELETE" });
    if (!resp.ok && resp.status !== 404) throw await errorFromResponse(resp);
  }

  /** /health as {ok, status, body}; a server without /health (an embedding app) counts as ready. */
  async health() {
    const resp = await this.fetch(this.endpoints.health);
    const body = await resp.json().catch(() => ({}));
    return { ok: resp.ok || resp.status === 404, status: resp.status, body };
  }
}
