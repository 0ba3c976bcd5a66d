// edit.js - editing a past user message and sending it again.
//
// The conversation forks there: the server copies the messages before that user message into a
// new conversation (POST /conversations/{id}/fork, token ids kept), the page opens the copy and
// sends the edited text as its next message. The original conversation stays as it was, in the
// list, so nothing is lost. Only stored conversations can fork (servers with /conversations).
//
// Editing happens in place: the message's text becomes a box (Enter sends, Shift+Enter adds a
// line, Escape or Cancel puts the message back and focus on its Edit button).
//
// `app` is the page: its api, conversation, messages, turns, composer, t, showConversation,
// stopTurn, showError and setState.

const MAX_TITLE_CHARS = 200;

export class MessageEditor {
  constructor(app) {
    this.app = app;
  }

  /** Whether a user message can be edited now: the page talks in a stored conversation. */
  get canEdit() { return Boolean(this.app.conversation && this.app.conversation.stored); }

  /** Turn user message `element` into an editor (its Edit button is `button`). */
  open(element, button) {
    if (element.querySelector(".cs-edit-form")) return;
    const t = this.app.t;
    const content = element.querySelector(".cs-content");
    const form = document.createElement("form");
    form.className = "cs-edit-form";
    const input = document.createElement("textarea");
    input.className = "cs-edit-input";
    input.value = content.textContent;
    input.rows = Math.min(8, Math.max(2, input.value.split("\n").length));
    input.setAttribute("aria-label", t("editLabel"));
    const actions = document.createElement("div");
    actions.className = "cs-edit-actions";
    const send = document.createElement("button");
    send.type = "submit";
    send.className = "cs-button cs-primary cs-edit-send";
    send.textContent = t("sendEdited");
    const cancel = document.createElement("button");
    cancel.type = "button";
    cancel.className = "cs-button cs-edit-cancel";
    cancel.textContent = t("cancel");
    actions.append(send, cancel);
    form.append(input, actions);

    const close = () => {
      delete element.dataset.editing;
      form.remove();
      content.hidden = false;
      button.hidden = false;
    };
    cancel.addEventListener("click", () => { close(); button.focus(); });
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const text = input.value;
      if (!text.trim()) return;
      close();
      this.resend(element, text);
    });
    input.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing && event.keyCode !== 229) {
        event.preventDefault();
        form.requestSubmit();
      } else if (event.key === "Escape") {
        event.preventDefault();
        event.stopPropagation(); // Escape here cancels the edit, not the reply
        close();
        button.focus();
      }
    });
    element.dataset.editing = "true";
    content.hidden = true;
    button.hidden = true;
    content.after(form);
    input.focus();
    input.setSelectionRange(input.value.length, input.value.length);
  }

  /** Fork the conversation before user message `element`, open the fork and send `text` in it. */
  async resend(element, text) {
    const app = this.app;
    await app.stopTurn();
    const conversationId = app.conversation.id;
    if (!conversationId || !element.isConnected) {
      app.composer.restore(text); // the message never reached the server: nothing to fork
      app.composer.focus();
      return;
    }
    const index = [...app.messages.container.querySelectorAll(":scope > .cs-user")].indexOf(element);
    const shownText = element.querySelector(".cs-content").textContent;
    try {
      const source = await app.api.getConversation(conversationId);
      const target = this.storedUserMessage(source, index, shownText);
      const forked = await app.api.forkConversation(source.id, target.id, this.forkTitle(source, target));
      await app.showConversation(forked.id);
    } catch (e) {
      app.showError(e);
      app.composer.restore(text);
      app.setState("idle");
      return;
    }
    app.setState("idle");
    app.turns.send(text);
  }

  /** The stored user message the page shows as its `index`-th one (checked by its text). */
  storedUserMessage(conversation, index, shownText) {
    const users = conversation.messages.filter((message) => message.role === "user");
    if (users[index] && users[index].text === shownText) return users[index];
    const same = users.filter((message) => message.text === shownText);
    if (same.length) return same[same.length - 1];
    throw new Error(this.app.t("editNotFound"));
  }

  /** The fork's title: "… (edited)"; none when the first message is edited (it names the fork). */
  forkTitle(source, target) {
    if (source.messages[0] && source.messages[0].id === target.id) return "";
    const suffix = this.app.t("forkSuffix");
    const title = source.title || this.app.t("untitled");
    return title.slice(0, MAX_TITLE_CHARS - suffix.length) + suffix;
  }
}
