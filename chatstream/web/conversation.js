// conversation.js - the conversation the page talks in: today the one the server keeps in this
// browser's session (the original ChatStream's model).
//
// The rest of the page only uses this interface, so a stored conversation (one of several, with
// an id, a title and its history on the server) can take its place: `reset()` starts it afresh,
// `requestBody()` says which conversation a /chat_stream request continues, `systemPrompt` /
// `setSystemPrompt()` are its system text. The system text is also remembered in this browser
// (localStorage), so a new conversation starts with the same instructions.

const SYSTEM_PROMPT_KEY = "chatstream.systemPrompt";

function readStored(key) {
  try {
    return window.localStorage.getItem(key);
  } catch (e) {
    return null; // storage disabled: the text lasts as long as the page
  }
}

function writeStored(key, value) {
  try {
    window.localStorage.setItem(key, value);
  } catch (e) {
    // storage disabled or full: nothing more to do
  }
}

export class SessionConversation {
  constructor(api) {
    this.api = api;
    this.systemPrompt = readStored(SYSTEM_PROMPT_KEY) || "";
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

  async setSystemPrompt(text) {
    await this.api.setSystemPrompt(text);
    this.systemPrompt = text;
    writeStored(SYSTEM_PROMPT_KEY, text);
  }

  /** The /chat_stream body for a new message (`userInput`) or for regenerating the last reply. */
  requestBody(userInput, regenerate = false) {
    return regenerate ? { user_input: null, regenerate: true } : { user_input: userInput, regenerate: false };
  }
}
