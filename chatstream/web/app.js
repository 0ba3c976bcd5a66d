// app.js - the chat page: wires the modules to the markup of index.html, starts the page (after
// the model loaded, if it was loading), opens this tab's conversation (the one in the URL, after a
// reload), switches between the session's conversations (sidebar.js), and keeps the view state:
// which buttons show, and where focus is. Focus never drops to <body>: when the focused control
// goes away (hidden, disabled, removed), Stop takes it while a reply streams, the message box
// otherwise. Turns themselves (send, Regenerate, Stop, retries) are run by turns.js, edit and
// resend by edit.js.

import { ChatApi } from "./api.js";
import { Composer } from "./composer.js";
import { SessionConversation, StoredConversation, historyItems, openConversation } from "./conversation.js";
import { MessageEditor } from "./edit.js";
import { chooseLocale, createTranslator, translatePage } from "./i18n.js";
import { placeIcons } from "./icons.js";
import { waitUntilReady } from "./loading.js";
import { MessageList } from "./message_list.js";
import { NoticeArea } from "./notice.js";
import { SettingsPanel } from "./settings.js";
import { ConversationList } from "./sidebar.js";
import { TurnRunner } from "./turns.js";

// clearContextOnReload: null means "the server decides": stored conversations come back after a
// reload, the session's one conversation (servers without /conversations) starts afresh.
const DEFAULT_OPTIONS = { welcomeMessage: null, clearContextOnReload: null, developMode: false, title: null };

const $ = (id) => document.getElementById(id);

export class ChatApp {
  /** `config`: what the server put in the page ({options, locale, loading}). */
  constructor(config = {}) {
    this.config = config;
    this.options = Object.assign({}, DEFAULT_OPTIONS, config.options || {});
    this.style = Object.assign({ regenerate_enabled: true }, this.options.style_opts || this.options.style || {});
    this.locale = chooseLocale(config.locale, navigator.languages);
    this.t = createTranslator(this.locale);
    this.api = new ChatApi(this.options);
    this.conversation = new SessionConversation(this.api); // until start() knows the server
    this.turns = new TurnRunner(this);
    this.state = "starting";
  }

  async start() {
    const t = this.t;
    translatePage(document, t, this.locale);
    placeIcons(document);
    this.applyOptions();
    this.el = {
      stop: $("cs-stop"), regenerate: $("cs-regenerate"), clear: $("cs-clear"), live: $("cs-live"),
      settingsToggle: $("cs-settings-toggle"),
    };
    this.messages = new MessageList($("cs-messages"), $("cs-jump"), t, this.style, {
      onFeedback: (view, isLike) => this.sendFeedback(view, isLike), editor: new MessageEditor(this),
    });
    this.notice = new NoticeArea($("cs-notice"));
    this.composer = new Composer($("cs-composer"), $("cs-input"), $("cs-send"), (text) => this.turns.send(text));
    this.sidebar = new ConversationList({
      panel: $("cs-sidebar"), list: $("cs-conv-list"), empty: $("cs-conv-empty"), more: $("cs-conv-more"),
      toggle: $("cs-conversations-toggle"),
    }, this.api, t, {
      open: (id) => this.switchTo(id),
      deleted: (id) => this.conversationDeleted(id),
      failed: (e) => this.notice.show("error", t("conversationsFailed", { detail: e.message }), [this.dismissAction()]),
    });
    this.settings = new SettingsPanel({
      toggle: this.el.settingsToggle, panel: $("cs-settings"), form: $("cs-settings-form"), grid: $("cs-param-fields"),
      systemPrompt: $("cs-system-prompt"), status: $("cs-settings-status"), closeButton: $("cs-settings-close"),
    }, this.api, this.conversation, t);
    this.el.stop.addEventListener("click", () => this.turns.stop());
    this.el.regenerate.addEventListener("click", () => this.turns.regenerate());
    this.el.clear.addEventListener("click", () => this.newChat());
    document.addEventListener("keydown", (event) => {
      if (event.key === "Escape" && this.turns.isRunning) {
        event.preventDefault();
        this.turns.stop();
      }
    });
    this.composer.setEnabled(false);
    this.setState("starting");
    if (this.config.loading) {
      this.setState("loading");
      await waitUntilReady(this.api, { panel: $("cs-loading"), detail: $("cs-loading-detail"),
        progress: $("cs-loading-progress") }, t);
    }
    await this.openFirstConversation();
    this.composer.setEnabled(true);
    this.setState("idle");
    this.composer.focus();
  }

  /** The stored conversation this tab was on (after a reload), else a new one; or the session's. */
  async openFirstConversation() {
    try {
      this.conversation = await openConversation(this.api);
    } catch (e) {
      this.showError(e);
    }
    this.settings.conversation = this.conversation;
    if (!this.conversation.stored) {
      if (this.options.clearContextOnReload !== false) await this.resetConversation();
      this.messages.renderHistory(this.welcomeItems());
      return;
    }
    this.sidebar.enable();
    const remembered = StoredConversation.remembered();
    if (remembered && this.options.clearContextOnReload !== true) await this.showConversation(remembered, true);
    else await this.showNewConversation();
    await this.sidebar.load();
  }

  /** Show stored conversation `id`; one that is gone (deleted, expired) gives way to a new one. */
  async showConversation(id, quiet = false) {
    try {
      const conversation = await this.conversation.open(id);
      const items = historyItems(conversation);
      this.messages.renderHistory(items.length ? items : this.welcomeItems());
      this.sidebar.setCurrent(conversation.id);
    } catch (e) {
      if (e.status !== 404 && e.status !== 400) throw e;
      await this.showNewConversation();
      if (!quiet) this.notice.show("error", this.t("conversationGone"), [this.dismissAction()]);
    }
  }

  async showNewConversation() {
    await this.conversation.startNew();
    this.sidebar.setCurrent(null);
    this.messages.renderHistory(this.welcomeItems());
  }

  /** After a turn: the list shows the conversation's title and order. */
  turnEnded() {
    if (this.conversation.stored) {
      this.sidebar.setCurrent(this.conversation.id);
      this.sidebar.load();
    }
  }

  async switchTo(id) {
    if (id === this.conversation.id && !this.turns.isRunning) return;
    await this.stopTurn();
    this.dismissNotice();
    try {
      await this.showConversation(id);
    } catch (e) {
      this.showError(e);
    }
    if (!window.matchMedia("(min-width: 900px)").matches) this.sidebar.setOpen(false);
    this.setState("idle");
    this.composer.focus();
  }

  async conversationDeleted(id) {
    if (id === this.conversation.id) {
      await this.stopTurn();
      await this.showNewConversation();
      this.setState("idle");
    }
    this.composer.focus();
  }

  async stopTurn() {
    if (this.turns.isRunning) {
      this.turns.stop();
      await this.turns.done;
    }
  }

  dismissAction() { return { label: this.t("dismiss"), onClick: () => this.dismissNotice() }; }

  showError(e) { this.notice.show("error", this.turns.errorText(e), [this.dismissAction()]); }

  applyOptions() {
    const title = this.options.title || this.t("title");
    document.title = title;
    $("cs-title").textContent = title;
    const labels = [["cs-stop", "button_label_stop_generating"], ["cs-regenerate", "button_label_regenerate"]];
    for (const [id, key] of labels) {
      if (this.style[key]) $(id).querySelector(".cs-label").textContent = this.style[key];
    }
    if (this.style.label_input_placeholder) $("cs-input").placeholder = this.style.label_input_placeholder;
  }

  welcomeItems() {
    const text = this.options.welcomeMessage;
    return text ? [{ role: "assistant", text: String(text), welcome: true }] : [];
  }

  async resetConversation() {
    try {
      await this.conversation.reset();
    } catch (e) {
      this.showError(e);
    }
  }

  async sendFeedback(view, isLike) {
    try {
      await this.api.setFeedback(view.messageId, isLike, this.conversation.id);
      if (isLike !== null) this.announce(this.t("feedbackSaved"));
      return true;
    } catch (e) {
      this.announce(this.t("feedbackFailed", { detail: e.message }));
      return false;
    }
  }

  async newChat() {
    await this.stopTurn();
    this.dismissNotice();
    this.el.clear.disabled = true;
    if (this.conversation.stored) {
      await this.showNewConversation();
    } else {
      await this.resetConversation();
      this.messages.renderHistory(this.welcomeItems());
    }
    this.el.clear.disabled = false;
    this.setState("idle");
    this.composer.focus();
  }

  // -- view state ---------------------------------------------------------------------------------
  setState(state) {
    this.state = state;
    document.body.dataset.state = state;
    const ready = !["starting", "loading"].includes(state);
    const running = state === "streaming" || state === "waiting";
    this.el.stop.hidden = !running;
    this.el.regenerate.hidden = running || !ready || !this.style.regenerate_enabled || !this.messages.lastReply();
    this.el.clear.disabled = !ready;
    this.el.settingsToggle.disabled = !ready;
    for (const button of this.sidebar.panel.querySelectorAll("button")) button.disabled = !ready;
    this.composer.setCanSend(state === "idle");
    this.keepFocus();
  }

  /** If the focused control went away (hidden, disabled, removed), give focus to the next sensible one. */
  keepFocus() {
    const active = document.activeElement;
    const lost = !active || active === document.body || !active.isConnected || active.disabled ||
      active.closest("[hidden]") !== null;
    if (!lost || this.state === "starting" || this.state === "loading") return;
    if (!this.el.stop.hidden) this.el.stop.focus();
    else this.composer.focus();
  }

  dismissNotice() {
    this.notice.hide();
    this.keepFocus();
  }

  announce(text) { this.el.live.textContent = text; }
}
