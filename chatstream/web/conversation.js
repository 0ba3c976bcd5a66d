// conversation.js - the conversation this tab talks in.
//
// `StoredConversation` (servers with the /conversations routes): one of the session's stored
// conversations, by id. The id is this tab's own: it lives in the URL fragment (#c=ID) and in
// sessionStorage, so two tabs of one browser keep two conversations and a reload comes back to
// the same one. A new conversation has no id until its first message (`ensureStored`), so opening
// the page creates nothing on the server.
//
// `SessionConversation` (servers without them, e.g. an app that registered only the original's
// APIs): the one conversation the server keeps in the browser's session, as the original page had.
//
// Both offer what the rest of the page uses: `reset()` / `startNew()`, `requestBody()` (which
// conversation a /chat_stream request continues), `systemPrompt` / `setSystemPrompt()`. The system
// text is also remembered in this browser (localStorage), so a new conversation starts with it.

const SYSTEM_PROMPT_KEY = "chatstream.systemPrompt";
const TAB_CONVERSATION_KEY = "chatstream.conversationId";
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

function readStored(storage, key) {
  try {
    return window[storage].getItem(key);
  } catch (e) {
    return null; // storage disabled: the value lasts as long as the page
  }
}

function writeStored(storage, key, value) {
  try {
    if (value === null) window[storage].removeItem(key);
    else window[storage].setItem(key, value);
  } catch (e) {
    // storage disabled or full: nothing more to do
  }
}

/** The page's first conversation: a stored one when the server lists them, else the session's. */
export async function openConversation(api) {
  try {
    await api.listConversations(null, 1);
    return new StoredConversation(api);
  } catch (e) {
    // No conversation routes (not registered, or not for this client's role): the session's one.
    if (e.status === 404 || e.status === 405 || e.status === 403) return new SessionConversation(api);
    throw e;
  }
}

export class SessionConversation {
  constructor(api) {
    this.api = api;
    this.stored = false;
    this.id = null;
    this.systemPrompt = readStored("localStorage", SYSTEM_PROMPT_KEY) || "";
  }

  /** Start the session's conversation afresh (server side), with the remembered system text. */
  async reset() {
    try {
      await this.api.clearContext();
    } catch (e) {
      if (e.status !== 200) throw e; // {"success": false, "message": "no context."}: already empty
    }
    if (this.systemPrompt.trim()) await this.api.setSystemPrompt(this.systemPrompt);
  }

  async startNew() { await this.reset(); }

  async ensureStored() {}

  async setSystemPrompt(text) {
    await this.api.setSystemPrompt(text);
    this.systemPrompt = text;
    writeStored("localStorage", SYSTEM_PROMPT_KEY, text);
  }

  /** The /chat_stream body for a new message (`userInput`) or for regenerating the last reply. */
  requestBody(userInput, regenerate = false) {
    return regenerate ? { user_input: null, regenerate: true } : { user_input: userInput, regenerate: false };
  }
}

export class StoredConversation {
  constructor(api) {
    this.api = api;
    this.stored = true;
    this.id = null;
    this.title = "";
    this.systemPrompt = readStored("localStorage", SYSTEM_PROMPT_KEY) || "";
  }

  /** The id this tab was on (URL fragment first, then this tab's sessionStorage), or null. */
  static remembered() {
    const fromHash = new URLSearchParams(window.location.hash.slice(1)).get("c");
    if (fromHash && UUID.test(fromHash)) return fromHash;
    const fromTab = readStored("sessionStorage", TAB_CONVERSATION_KEY);
    return fromTab && UUID.test(fromTab) ? fromTab : null;
  }

  setId(id) {
    this.id = id;
    writeStored("sessionStorage", TAB_CONVERSATION_KEY, id);
    const url = new URL(window.location.href);
    url.hash = id ? "c=" + id : "";
    window.history.replaceState(window.history.state, "", id ? url.href : url.href.replace(/#$/, ""));
  }

  /** Load conversation `id`: its messages (the caller shows them); a 404 is thrown as is. */
  async open(id) {
    const conversation = await this.api.getConversation(id);
    this.setId(conversation.id);
    this.title = conversation.title;
    this.systemPrompt = conversation.system || readStored("localStorage", SYSTEM_PROMPT_KEY) || "";
    return conversation;
  }

  /** A new conversation, made on the server with its first message. */
  async startNew() {
    this.setId(null);
    this.title = "";
    this.systemPrompt = readStored("localStorage", SYSTEM_PROMPT_KEY) || "";
  }

  async reset() { await this.startNew(); }

  /** Make sure the conversation exists on the server (before its first message); returns whether it was made now. */
  async ensureStored() {
    if (this.id) return false;
    const created = await this.api.createConversation({ system: this.systemPrompt });
    this.setId(created.id);
    return true;
  }

  async setSystemPrompt(text) {
    if (this.id) await this.api.updateConversation(this.id, { system: text });
    this.systemPrompt = text;
    writeStored("localStorage", SYSTEM_PROMPT_KEY, text);
  }

  requestBody(userInput, regenerate = false) {
    const body = regenerate ? { user_input: null, regenerate: true } : { user_input: userInput, regenerate: false };
    body.conversation_id = this.id;
    return body;
  }
}

/** A stored conversation's messages as `MessageList.renderHistory` items. */
export function historyItems(conversation) {
  return conversation.messages.map((message) => {
    if (message.role === "user") return { role: "user", text: message.text };
    const stats = message.stats && {
      num_output_tokens: message.stats.completion_tokens, tokens_per_sec: message.stats.tokens_per_s,
      time_to_first_token_sec: message.stats.time_to_first_token_s,
    };
    return {
      role: "assistant", text: message.text, messageId: message.id, stats,
      feedback: message.feedback ? message.feedback.is_like : null,
      state: message.status === "complete" ? "done" : "stopped",
    };
  });
}
