// message_list.js - the conversation on the page: user messages, assistant replies, scrolling.
//
// It knows nothing of HTTP. `renderHistory` shows a conversation in one go (a stored one, or the
// welcome text of a new one), `addUser` / `addReply` grow it
// turn by turn. The list is the page's ARIA live region (role="log"): a new message is announced,
// and a reply being written is aria-busy until it ends, so it is read once, whole.

import { icon } from "./icons.js";
import { ReplyView } from "./reply_view.js";

export class MessageList {
  /** `style`: the original's style_opts (icons); `hooks`: passed to every ReplyView; its
   * `editor` (a MessageEditor) gives user messages their Edit button. */
  constructor(container, jumpButton, t, style, hooks) {
    this.container = container;
    this.jump = jumpButton;
    this.t = t;
    this.style = style;
    this.hooks = hooks;
    this.views = new WeakMap(); // message element -> ReplyView
    this.stickToBottom = true;
    container.addEventListener("scroll", () => {
      const c = container;
      this.stickToBottom = c.scrollHeight - c.scrollTop - c.clientHeight < 48;
      this.jump.hidden = this.stickToBottom;
    });
    this.jump.addEventListener("click", () => this.scrollToEnd(true));
  }

  clear() { this.container.replaceChildren(); }

  /**
   * Show a whole conversation: items {role: "user" | "assistant", text, messageId?, feedback?,
   * stats?, state? ("done" or "stopped"), welcome?}, as a stored conversation holds them.
   */
  renderHistory(items) {
    this.clear();
    for (const item of items) {
      if (item.role === "user") {
        this.addUser(item.text);
        continue;
      }
      const view = this.addReply();
      view.messageId = item.messageId || null;
      view.setText(item.text);
      view.finish(item.welcome ? "welcome" : item.state || "done");
      if (item.feedback !== undefined && item.feedback !== null && view.like) view.showFeedback(item.feedback);
      if (item.stats) view.showStats(item.stats);
    }
    this.scrollToEnd(true);
  }

  message(kind) {
    const msg = document.createElement("article");
    msg.className = "cs-msg cs-" + kind;
    const showIcon = kind === "user" ? this.style.show_human_icon : this.style.show_ai_icon;
    if (showIcon !== false) msg.appendChild(this.avatar(kind));
    const bubble = document.createElement("div");
    bubble.className = "cs-bubble";
    const who = document.createElement("span");
    who.className = "cs-visually-hidden";
    who.textContent = this.t(kind === "user" ? "you" : "assistant") + ": ";
    const content = document.createElement("div");
    content.className = "cs-content";
    bubble.append(who, content);
    msg.appendChild(bubble);
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
      box.appendChild(icon(kind === "user" ? "user" : "assistant"));
    }
    return box;
  }

  /** A user message; user text is shown as typed (textContent), never as Markdown. In a stored
   * conversation it has an Edit button (edit and resend, see edit.js). */
  addUser(text) {
    const msg = this.message("user");
    msg.querySelector(".cs-content").textContent = text;
    const editor = this.hooks.editor;
    if (editor && editor.canEdit) {
      const edit = document.createElement("button");
      edit.type = "button";
      edit.className = "cs-tool cs-edit";
      edit.setAttribute("aria-label", this.t("editMessage"));
      edit.title = this.t("editMessage");
      edit.appendChild(icon("edit"));
      edit.addEventListener("click", () => editor.open(msg, edit));
      msg.appendChild(edit);
    }
    this.container.appendChild(msg);
    this.scrollToEnd(true);
    return msg;
  }

  /** A new, empty assistant reply, ready to stream into. */
  addReply() {
    const msg = this.message("assistant");
    msg.querySelector(".cs-content").classList.add("cs-markdown");
    this.container.appendChild(msg);
    const view = new ReplyView(msg, this.t, this.hooks);
    this.views.set(msg, view);
    this.scrollToEnd();
    return view;
  }

  /** The reply that Regenerate would replace: the last message, if it is a finished reply. */
  lastReply() {
    const last = this.container.lastElementChild;
    const view = last && this.views.get(last);
    return view && !view.isStreaming && view.element.dataset.state !== "welcome" ? view : null;
  }

  /** The server's ids of the replies shown (and of `detached`, a reply element taken off the page). */
  replyIds(detached) {
    const elements = [...this.container.children, ...(detached ? [detached] : [])];
    return new Set(elements.map((el) => this.views.get(el)?.messageId).filter(Boolean));
  }

  scrollToEnd(force) {
    if (force) this.stickToBottom = true;
    if (!this.stickToBottom) return;
    this.container.scrollTop = this.container.scrollHeight;
    this.jump.hidden = true;
  }
}
