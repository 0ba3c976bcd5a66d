// turns.js - running a turn: one /chat_stream request (a new message, or Regenerate) and what
// becomes of it.
//
// - It streams into a new reply, which ends "done", "stopped" (Stop or Escape) or "dropped" (the
//   connection broke; Retry asks for a new reply). Afterwards the page asks the server for the
//   reply's statistics and the exact text it kept (/get_reply_stats), and shows that text.
// - A full server (429) is retried on its own after Retry-After, with a countdown, while the
//   user's message stays on the page; Stop, Escape or Cancel ends the wait.
// - A turn the server never took (refused, unreachable, cancelled) leaves the page as it was: the
//   message goes back into the box (or the replaced reply comes back), and Retry sends it again.
// - Stop before the reply began (no message id yet) cannot tell from the stream whether the server
//   took the turn in that moment; the page asks the stored conversation, and shows the server's
//   conversation if it kept the turn, so page and history never disagree.
//
// `ui` is the app: its messages, notice, composer, api, conversation, t, setState and announce.

import { historyItems } from "./conversation.js";
import { DroppedError, followReply } from "./reply_stream.js";

const MAX_BUSY_RETRIES = 30;
const STATS_POLL_MS = 100; // the first wait; each next one is 100 ms longer, up to a second
const STATS_POLL_TRIES = 60; // about a minute in all
const KEPT_POLL_TRIES = 8; // after a Stop before the reply began: about 4 s for the server to close the turn

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

export class TurnRunner {
  constructor(ui) {
    this.ui = ui;
    this.turn = null; // the running turn
    this.done = Promise.resolve(); // settles when it has ended
  }

  get isRunning() { return this.turn !== null; }

  send(text) {
    if (this.turn || this.ui.state !== "idle") return;
    this.ui.composer.clear();
    this.ui.notice.hide();
    const userMessage = this.ui.messages.addUser(text);
    this.startTurn({ userText: text, userMessage });
  }

  regenerate() {
    const last = this.ui.messages.lastReply();
    if (this.turn || !last) return;
    this.ui.notice.hide();
    const replaced = last.element;
    const marker = document.createComment("replaced reply");
    replaced.replaceWith(marker);
    this.startTurn({ regenerate: true, replaced, marker });
  }

  /** Stop the streaming reply, or the wait before retrying a full server. */
  stop() {
    const turn = this.turn;
    if (!turn) return;
    if (turn.endWait) turn.endWait(false);
    else turn.controller.abort();
  }

  startTurn(turn) {
    turn.controller = new AbortController();
    turn.busyTries = 0;
    this.turn = turn;
    this.done = this.runTurn(turn);
  }

  async runTurn(turn) {
    this.ui.setState("streaming");
    if (await this.prepare(turn)) {
      while ((await this.attempt(turn)) === "retry") {
        turn.controller = new AbortController();
      }
    }
    if (turn.marker) turn.marker.remove();
    this.turn = null;
    this.ui.setState("idle");
    this.ui.turnEnded();
  }

  /** The request body, once the conversation exists on the server (a new one is made with its first message). */
  async prepare(turn) {
    const conversation = this.ui.conversation;
    try {
      await conversation.ensureStored();
    } catch (error) {
      this.notSent(turn, error);
      return false;
    }
    turn.conversationId = conversation.id;
    turn.body = conversation.requestBody(turn.userText ?? null, Boolean(turn.regenerate));
    return true;
  }

  /** One request of a turn; returns "retry" to send it again. */
  async attempt(turn) {
    const t = this.ui.t;
    const reply = this.ui.messages.addReply();
    reply.startStreaming();
    if (turn.marker) turn.marker.before(reply.element);
    this.ui.announce(t("replying"));
    let accepted = false;
    try {
      await followReply(this.ui.api, turn.body, {
        signal: turn.controller.signal,
        onStart: (messageId) => {
          accepted = true;
          reply.messageId = messageId;
        },
        onText: (text) => {
          reply.setText(text);
          this.ui.messages.scrollToEnd();
        },
      });
      reply.finish("done");
      this.ui.messages.scrollToEnd();
      this.ui.announce(t("replyDone"));
      this.syncWithServer(reply, turn.conversationId);
      return "done";
    } catch (error) {
      if (error.name === "AbortError" && accepted) {
        reply.finish("stopped");
        this.ui.messages.scrollToEnd();
        this.ui.announce(t("replyStopped"));
        this.syncWithServer(reply, turn.conversationId);
        return "stopped";
      }
      if (error instanceof DroppedError) {
        reply.finish("dropped");
        this.syncWithServer(reply, turn.conversationId);
        const said = error.reason ? t("replyFailed", { detail: error.reason }) : t("networkErrorAfterStart");
        this.ui.notice.show("error", said, [
          { label: t("retry"), id: "cs-notice-retry", onClick: () => { this.ui.dismissNotice(); this.regenerate(); } },
          { label: t("dismiss"), onClick: () => this.ui.dismissNotice() },
        ]);
        return "dropped";
      }
      reply.element.remove();
      if (error.name === "AbortError" && (await this.keptByServer(turn))) {
        this.ui.announce(t("replyStopped"));
        return "stopped";
      }
      if (error.name !== "AbortError" && error.isBusy && turn.busyTries < MAX_BUSY_RETRIES) {
        turn.busyTries += 1;
        if (await this.waitWhileBusy(turn, error.retryAfterSec)) return "retry";
        this.notSent(turn, null);
        return "cancelled";
      }
      this.notSent(turn, error.name === "AbortError" ? null : error);
      return "failed";
    }
  }

  /** Count down `seconds`, then resolve true (retry); false if the user stops or cancels. */
  waitWhileBusy(turn, seconds) {
    const t = this.ui.t;
    return new Promise((resolve) => {
      let left = seconds;
      const timer = setInterval(() => {
        left -= 1;
        if (left <= 0) end(true);
        else this.ui.notice.setText(t("busyRetrying", { seconds: left }));
      }, 1000);
      const end = (retry) => {
        clearInterval(timer);
        turn.endWait = null;
        this.ui.dismissNotice();
        this.ui.setState("streaming");
        resolve(retry);
      };
      turn.endWait = end;
      this.ui.setState("waiting");
      this.ui.notice.show("busy", t("busyRetrying", { seconds: left }), [
        { label: t("retryNow"), id: "cs-notice-retry", onClick: () => end(true) },
        { label: t("cancel"), id: "cs-notice-cancel", onClick: () => end(false) },
      ]);
    });
  }

  /** The server has no trace of this turn: put the page back as it was, and say why. */
  notSent(turn, error) {
    if (turn.userMessage) {
      turn.userMessage.remove();
      this.ui.composer.restore(turn.userText);
    }
    if (turn.replaced) turn.marker.replaceWith(turn.replaced);
    turn.marker = null;
    if (!error) return;
    this.ui.notice.show("error", this.errorText(error), [
      { label: this.ui.t("retry"), id: "cs-notice-retry", onClick: () => this.retryNotSent(turn) },
      { label: this.ui.t("dismiss"), onClick: () => this.ui.dismissNotice() },
    ]);
  }

  retryNotSent(turn) {
    this.ui.dismissNotice();
    if (turn.userMessage) {
      if (this.ui.composer.input.value === turn.userText) this.ui.composer.clear();
      this.send(turn.userText);
    } else {
      this.regenerate();
    }
  }

  errorText(error) {
    const t = this.ui.t;
    if (error.isNetwork) return t("networkError");
    if (error.isBusy) return t("busyGaveUp");
    return t("serverError", { status: error.status, detail: error.message });
  }

  /**
   * After a Stop that came before the reply's first byte: whether the stored conversation kept the
   * turn (a reply the page has not seen ends it). If so the page shows the server's conversation.
   * A turn still open on the server is waited for: it closes as soon as the server sees the
   * disconnect, and one that produced nothing is dropped there.
   */
  async keptByServer(turn) {
    const conversation = this.ui.conversation;
    if (!turn.conversationId || typeof conversation.open !== "function") return false;
    const known = this.ui.messages.replyIds(turn.replaced);
    for (let tries = 0; tries < KEPT_POLL_TRIES; tries += 1) {
      let stored;
      try {
        stored = await this.ui.api.getConversation(turn.conversationId);
      } catch (e) {
        return false; // unreachable: the page stays as it was, the message back in the box
      }
      const messages = Array.isArray(stored?.messages) ? stored.messages : [];  // a malformed answer: no trace
      const last = messages[messages.length - 1];
      if (!last || last.role !== "assistant" || known.has(last.id)) return false;
      if (last.status !== "streaming") {
        this.ui.messages.renderHistory(historyItems(stored));
        return true;
      }
      await sleep(STATS_POLL_MS * (tries + 1));
    }
    return false;
  }

  /** Ask for the reply's statistics and the text the server kept; show both. */
  async syncWithServer(reply, conversationId) {
    if (!reply.messageId) return;
    for (let tries = 0; tries < STATS_POLL_TRIES; tries += 1) {
      let body;
      try {
        body = await this.ui.api.getReplyStats(reply.messageId, conversationId);
      } catch (e) {
        return; // an older server, or the reply is gone: what the page shows stays
      }
      if (body.finished) {
        if (body.text !== reply.text) {
          reply.setText(body.text);
          reply.render();
        }
        reply.showStats(body.stats);
        reply.element.dataset.synced = "true";
        this.ui.messages.scrollToEnd();
        return;
      }
      await sleep(Math.min(1000, STATS_POLL_MS * (tries + 1)));
    }
  }

}
