/*
 * chatstream.js - the browser side of the bundled ChatStream chat page.
 *
 * Defines window.ChatStreamUI, which binds to the markup of index.html. It POSTs messages to the
 * streaming endpoint and shows the reply as it arrives: every chunk the server sends is the whole
 * reply so far followed by "<::EOS::>", and chunks may be merged or split across reads, so the
 * decoded text is split on that token and the last complete segment is shown. It also offers
 * Stop (abort the fetch), Regenerate, Clear conversation and a generation-settings panel.
 * Model text is always rendered with textContent, never parsed as HTML.
 */
(function () {
  "use strict";

  const EOS = "<::EOS::>";

  const DEFAULT_OPTS = {
    streamEndpoint: "chat_stream", clearContextEndpoint: "clear_context",
    setGenerationParamsEndpoint: "set_generation_params", getGenerationParamsEndpoint: "get_generation_params",
    welcomeMessage: null, clearContextOnReload: true, developMode: false, title: null,
  };

  const DEFAULT_STYLE = {
    regenerate_enabled: true, button_label_stop_generating: "Stop Generating",
    button_label_regenerate: "Regenerate Response", label_input_placeholder: "Type message",
    show_ai_icon: true, show_human_icon: true,
    ai_icon_url: null, human_icon_url: null, // optional image URLs; inline SVG icons when absent
  };

  // The settings inputs and the ranges the UI accepts (the server validates again).
  const FIELDS = [
    { id: "cs-temperature", key: "temperature", label: "Temperature", min: 0, max: 2 },
    { id: "cs-top-p", key: "top_p_value", label: "Top-p", min: 0, max: 1, lowOpen: true },
    { id: "cs-top-k", key: "top_k_value", label: "Top-k", min: 0, max: 1000, integer: true },
    { id: "cs-max-new-tokens", key: "max_new_tokens", label: "Max new tokens", min: 1, max: 4096, integer: true },
  ];

  // Constant icon markup (never model text).
  const ICONS = {
    assistant: '<svg viewBox="0 0 24 24" aria-hidden="true"><path d="M12 2l2.4 6.6L21 11l-6.6 2.4L12 20l-2.4-6.6L3 11l6.6-2.4z"/></svg>',
    user: '<svg viewBox="0 0 24 24" aria-hidden="true"><circle cx="12" cy="8" r="4"/><path d="M4 21c0-4.4 3.6-7 8-7s8 2.6 8 7z"/></svg>',
  };

  const $ = (id) => document.getElementById(id);

  class ChatStreamUI {
    /** Bind to the page, optionally clear the server-side context, and show the welcome message. */
    async init(opts) {
      opts = opts || {};
      this.opts = Object.assign({}, DEFAULT_OPTS, opts);
      this.style = Object.assign({}, DEFAULT_STYLE, opts.style_opts || {});
      this.controller = null; // AbortController of the reply being streamed
      this.streamDone = Promise.resolve();
      this.loadedParams = {}; // the values last shown in the settings panel
      this.stickToBottom = true;
      this.clearing = false;
      this.el = {
        title: $("cs-title"), messages: $("cs-messages"), input: $("cs-input"), send: $("cs-send"),
        stop: $("cs-stop"), regenerate: $("cs-regenerate"), clear: $("cs-clear"), jump: $("cs-jump"),
        settingsToggle: $("cs-settings-toggle"), settings: $("cs-settings"),
        settingsSave: $("cs-settings-save"), settingsStatus: $("cs-settings-status"),
      };
      this.applyOptions();
      this.bindEvents();
      this.setState("idle");
      if (this.opts.clearContextOnReload) await this.clearServerContext();
      this.showWelcome();
      this.el.input.focus();
      return this;
    }

    applyOptions() {
      if (this.opts.title) {
        document.title = this.opts.title;
        this.el.title.textContent = this.opts.title;
      }
      this.el.input.placeholder = this.style.label_input_placeholder;
      this.el.stop.querySelector(".cs-label").textContent = this.style.button_label_stop_generating;
      this.el.regenerate.querySelector(".cs-label").textContent = this.style.button_label_regenerate;
    }

    bindEvents() {
      const el = this.el;
      el.send.addEventListener("click", () => this.send());
      el.stop.addEventListener("click", () => this.stop());
      el.regenerate.addEventListener("click", () => this.regenerate());
      el.clear.addEventListener("click", () => this.clearConversation());
      el.settingsToggle.addEventListener("click", () => this.toggleSettings());
      el.settings.addEventListener("submit", (event) => { event.preventDefault(); this.saveSettings(); });
      el.input.addEventListener("input", () => this.autoGrow());
      el.input.addEventListener("keydown", (event) => {
        // Enter sends; Shift+Enter (and Enter that confirms an IME composition) does not.
        if (event.key === "Enter" && !event.shiftKey && !event.isComposing && event.keyCode !== 229) {
          event.preventDefault();
          this.send();
        }
      });
      el.messages.addEventListener("scroll", () => {
        const m = el.messages;
        this.stickToBottom = m.scrollHeight - m.scrollTop - m.clientHeight < 48;
        el.jump.hidden = this.stickToBottom;
      });
      el.jump.addEventListener("click", () => this.scrollToEnd(true));
    }

    // -- HTTP --------------------------------------------------------------------------------------
    request(endpoint, init) {
      const credentials = this.opts.developMode ? "include" : "same-origin";
      return fetch(endpoint, Object.assign({ credentials: credentials, cache: "no-store" }, init));
    }

    postJson(endpoint, body, signal) {
      return this.request(endpoint, {
        method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body), signal: signal,
      });
    }

    /** Read a response body as JSON; {} when it is not JSON. */
    async readJson(resp) {
      let text = "";
      try {
        text = await resp.text();
        const value = JSON.parse(text);
        return value && typeof value === "object" ? value : {};
      } catch (e) {
        const plain = text.trim();
        return plain && !plain.startsWith("<") ? { detail: plain.slice(0, 300) } : {};
      }
    }

    /** The error text for a chat_stream response, or null when it is a stream to read. */
    async streamError(resp) {
      const type = (resp.headers.get("Content-Type") || "").toLowerCase();
      if (resp.ok && !type.includes("application/json")) return null;
      const info = await this.readJson(resp);
      const detail = info.detail || info.message || "";
      const suffix = detail ? ": " + detail : "";
      if (resp.status === 429 || info.error === "too_many_requests") {
        return "The server is busy, please try again in a moment" + suffix;
      }
      if (resp.status >= 500) return "Server error (" + resp.status + ")" + suffix;
      if (!resp.ok) return "Request failed (" + resp.status + ")" + suffix;
      return "Unexpected response from the server" + (info.error ? " (" + info.error + ")" : "") + suffix;
    }

    // -- chat ----------------------------------------------------------------------------------------
    send() {
      if (this.controller) return; // a reply is streaming: ignore
      const text = this.el.input.value;
      if (!text.trim()) return;
      this.el.input.value = "";
      this.autoGrow();
      this.addMessage("user", text);
      this.scrollToEnd(true);
      this.startStream({ user_input: text, regenerate: false });
    }

    regenerate() {
      if (this.controller) return;
      const last = this.el.messages.lastElementChild;
      if (last && last.classList.contains("cs-assistant") && last.dataset.welcome !== "true") last.remove();
      this.startStream({ user_input: null, regenerate: true });
    }

    stop() { if (this.controller) this.controller.abort(); }

    startStream(body) { this.streamDone = this.stream(body); }

    async stream(body) {
      const bubble = this.addMessage("assistant", "");
      bubble.dataset.streaming = "true";
      const controller = new AbortController();
      this.controller = controller;
      this.setState("streaming");
      this.scrollToEnd(true);
      let error = null;
      let stopped = false;
      try {
        const resp = await this.postJson(this.opts.streamEndpoint, body, controller.signal);
        error = await this.streamError(resp);
        if (!error) await this.readStream(resp, bubble.querySelector(".cs-text"), controller.signal);
      } catch (e) {
        if (controller.signal.aborted) stopped = true;
        else error = "Network error: the server could not be reached (" + (e && e.message ? e.message : e) + ")";
      }
      bubble.dataset.streaming = "false";
      if (stopped) {
        const note = document.createElement("span");
        note.className = "cs-note";
        note.textContent = (this.textOf(bubble) ? " " : "") + "(stopped)";
        bubble.querySelector(".cs-text").after(note);
      }
      if (error) {
        if (!this.textOf(bubble)) bubble.remove(); // keep partial text, if any, above the error
        this.addMessage("error", error);
      } else {
        bubble.dataset.reply = "true";
      }
      this.controller = null;
      this.setState("idle");
      this.scrollToEnd();
    }

    /** Show the last complete "<reply><::EOS::>" segment as chunks arrive. */
    async readStream(resp, textEl, signal) {
      const decoder = new TextDecoder();
      let pending = "";
      const consume = (text) => {
        const parts = (pending + text).split(EOS);
        pending = parts.pop(); // an incomplete segment waits for the rest
        if (parts.length > 0) {
          textEl.textContent = parts[parts.length - 1];
          this.scrollToEnd();
        }
      };
      if (!resp.body || !resp.body.getReader) {
        consume(await resp.text());
        return;
      }
      const reader = resp.body.getReader();
      for (;;) {
        const chunk = await reader.read();
        if (chunk.done) break;
        consume(decoder.decode(chunk.value, { stream: true }));
      }
      consume(decoder.decode());
      if (signal.aborted) throw new DOMException("aborted", "AbortError");
    }

    textOf(bubble) { return bubble.querySelector(".cs-text").textContent; }

    // -- conversation ------------------------------------------------------------------------------
    async clearServerContext() {
      try {
        const resp = await this.postJson(this.opts.clearContextEndpoint, {});
        if (!resp.ok) console.warn("clear_context answered", resp.status);
        return resp.ok;
      } catch (e) {
        console.warn("clear_context failed", e);
        return false;
      }
    }

    async clearConversation() {
      if (this.clearing) return;
      this.clearing = true;
      this.el.clear.disabled = true;
      try {
        if (this.controller) {
          this.controller.abort();
          await this.streamDone;
        }
        const ok = await this.clearServerContext();
        this.el.messages.replaceChildren();
        this.showWelcome();
        if (!ok) this.addMessage("error", "The conversation could not be cleared on the server.");
      } finally {
        this.clearing = false;
        this.el.clear.disabled = false;
        this.updateButtons();
        this.el.input.focus();
      }
    }

    showWelcome() {
      const text = this.opts.welcomeMessage;
      if (text === null || text === undefined || text === "") return;
      const bubble = this.addMessage("assistant", String(text));
      bubble.dataset.welcome = "true";
      this.updateButtons();
    }

    /** Append a message element; kind is "user", "assistant" or "error". */
    addMessage(kind, text) {
      const msg = document.createElement("div");
      msg.className = "cs-msg cs-" + kind;
      const showIcon = kind === "user" ? this.style.show_human_icon : kind === "assistant" && this.style.show_ai_icon;
      if (showIcon) msg.appendChild(this.avatar(kind));
      const bubble = document.createElement("div");
      bubble.className = "cs-bubble";
      bubble.title = new Date().toLocaleString();
      const body = document.createElement("div");
      body.className = "cs-text";
      body.textContent = text;
      bubble.appendChild(body);
      msg.appendChild(bubble);
      if (kind === "error") msg.setAttribute("role", "alert");
      this.el.messages.appendChild(msg);
      this.scrollToEnd(kind !== "assistant");
      this.updateButtons();
      return msg;
    }

    avatar(kind) {
      const box = document.createElement("div");
      box.className = "cs-avatar";
      const url = kind === "user" ? this.style.human_icon_url : this.style.ai_icon_url;
      if (url) {
        const img = document.createElement("img");
        img.src = url;
        img.alt = "";
        box.appendChild(img);
      } else {
        box.innerHTML = ICONS[kind];
      }
      return box;
    }

    // -- view state --------------------------------------------------------------------------------
    setState(state) {
      document.body.dataset.state = state;
      this.updateButtons();
    }

    updateButtons() {
      const streaming = Boolean(this.controller);
      const last = this.el.messages.lastElementChild;
      const lastIsReply = Boolean(last && last.classList.contains("cs-assistant") && last.dataset.reply === "true");
      this.el.send.disabled = streaming;
      this.el.stop.hidden = !streaming;
      this.el.regenerate.hidden = streaming || !this.style.regenerate_enabled || !lastIsReply;
    }

    autoGrow() {
      const input = this.el.input;
      input.style.height = "auto";
      input.style.height = Math.min(input.scrollHeight, 220) + "px";
    }

    scrollToEnd(force) {
      if (force) this.stickToBottom = true;
      if (!this.stickToBottom) return;
      const m = this.el.messages;
      m.scrollTop = m.scrollHeight;
      this.el.jump.hidden = true;
    }

    // -- settings panel ----------------------------------------------------------------------------
    toggleSettings() {
      const panel = this.el.settings;
      panel.hidden = !panel.hidden;
      this.el.settingsToggle.setAttribute("aria-expanded", String(!panel.hidden));
      if (!panel.hidden) this.loadSettings();
    }

    setSettingsStatus(text, bad) {
      this.el.settingsStatus.textContent = text;
      this.el.settingsStatus.classList.toggle("cs-bad", Boolean(bad));
    }

    async loadSettings() {
      this.setSettingsStatus("Loading…");
      try {
        const resp = await this.request(this.opts.getGenerationParamsEndpoint, { method: "GET" });
        const info = await this.readJson(resp);
        if (!resp.ok || !info.success || !info.generation_params) {
          this.setSettingsStatus(info.message || info.detail || "Could not load the settings (" + resp.status + ")", true);
          return;
        }
        this.showParams(info.generation_params);
        this.setSettingsStatus("");
      } catch (e) {
        this.setSettingsStatus("Network error: could not load the settings", true);
      }
    }

    showParams(params) {
      for (const field of FIELDS) {
        if (!(field.key in params)) continue;
        const value = params[field.key];
        $(field.id).value = value === null || value === undefined ? "" : String(value);
        this.loadedParams[field.key] = $(field.id).value;
      }
    }

    /** The changed, valid values to send, or a string describing the first invalid one. */
    collectParams() {
      const changed = {};
      for (const field of FIELDS) {
        const raw = $(field.id).value.trim();
        if (raw === "" || raw === this.loadedParams[field.key]) continue;
        const value = Number(raw);
        const range = (field.lowOpen ? "(" : "[") + field.min + ", " + field.max + "]";
        if (!Number.isFinite(value) || value < field.min || value > field.max ||
            (field.lowOpen && value === field.min) || (field.integer && !Number.isInteger(value))) {
          return field.label + " must be " + (field.integer ? "an integer" : "a number") + " in " + range + ".";
        }
        changed[field.key] = value;
      }
      return changed;
    }

    async saveSettings() {
      const changed = this.collectParams();
      if (typeof changed === "string") {
        this.setSettingsStatus(changed, true);
        return;
      }
      if (Object.keys(changed).length === 0) {
        this.setSettingsStatus("Nothing changed.");
        return;
      }
      this.el.settingsSave.disabled = true;
      this.setSettingsStatus("Saving…");
      try {
        const resp = await this.postJson(this.opts.setGenerationParamsEndpoint, changed);
        const info = await this.readJson(resp);
        if (resp.ok && info.success) {
          for (const key of Object.keys(changed)) this.loadedParams[key] = String(changed[key]);
          if (info.generation_params) this.showParams(info.generation_params);
          this.setSettingsStatus("Saved.");
        } else {
          const where = info.field ? " (" + info.field + ")" : "";
          this.setSettingsStatus((info.message || info.detail || "Could not save (" + resp.status + ")") + where, true);
        }
      } catch (e) {
        this.setSettingsStatus("Network error: could not save the settings", true);
      } finally {
        this.el.settingsSave.disabled = false;
      }
    }
  }

  window.ChatStreamUI = ChatStreamUI;
})();
