// reply_view.js - one assistant reply on the page: its Markdown body, rendered as it streams, and
// once it ended, its note (stopped, connection lost), Copy reply, like / dislike and statistics.
//
// Rendering is throttled to one per animation frame however fast chunks arrive; `finish` renders
// the last text at once. The reply's raw Markdown stays in `text` (what Copy reply copies).

import { copyWithFeedback } from "./clipboard.js";
import { renderMarkdown } from "./markdown.js";
import { toolButton } from "./icons.js";

export class ReplyView {
  /** `hooks.onFeedback(view, isLike)`: send like (true), dislike (false) or neither (null);
   * resolves with whether the server took it. */
  constructor(element, t, hooks = {}) {
    this.element = element;
    this.t = t;
    this.hooks = hooks;
    this.text = "";
    this._messageId = null;
    this.feedback = null;
    this.frame = 0;
    this.content = element.querySelector(".cs-content");
    this.bubble = element.querySelector(".cs-bubble");
  }

  get isStreaming() { return this.element.dataset.streaming === "true"; }

  get messageId() { return this._messageId; }

  /** The server's id of this reply (feedback and statistics name it); also on the element. */
  set messageId(id) {
    this._messageId = id || null;
    if (id) this.element.dataset.messageId = id;
  }

  startStreaming() {
    this.element.dataset.streaming = "true";
    this.element.setAttribute("aria-busy", "true");
  }

  setText(text) {
    this.text = text;
    if (!this.frame) this.frame = requestAnimationFrame(() => this.render());
  }

  render() {
    cancelAnimationFrame(this.frame);
    this.frame = 0;
    renderMarkdown(this.content, this.text, this.t);
  }

  /** End the reply: `state` is "done", "stopped", "dropped" or "welcome" (no tools). */
  finish(state) {
    this.render();
    this.element.dataset.streaming = "false";
    this.element.dataset.state = state;
    this.element.removeAttribute("aria-busy");
    if (state === "stopped" || state === "dropped") {
      const note = document.createElement("p");
      note.className = "cs-note";
      note.textContent = this.t(state === "stopped" ? "stopped" : "connectionLost");
      this.content.after(note);
    }
    if (state !== "welcome") this.addTools();
  }

  addTools() {
    const t = this.t;
    const bar = document.createElement("div");
    bar.className = "cs-reply-bar";
    const copy = toolButton("cs-copy-reply", t("copyReply"), "copy");
    copy.addEventListener("click", () => copyWithFeedback(copy, this.text, t));
    bar.appendChild(copy);
    if (this.messageId && this.hooks.onFeedback) {
      this.like = toolButton("cs-like", t("like"), "thumbUp");
      this.dislike = toolButton("cs-dislike", t("dislike"), "thumbDown");
      for (const [el, value] of [[this.like, true], [this.dislike, false]]) {
        el.setAttribute("aria-pressed", "false");
        el.addEventListener("click", () => this.toggleFeedback(value));
        bar.appendChild(el);
      }
    }
    this.stats = document.createElement("span");
    this.stats.className = "cs-stats";
    bar.appendChild(this.stats);
    this.bubble.appendChild(bar);
  }

  async toggleFeedback(isLike) {
    const previous = this.feedback;
    const next = previous === isLike ? null : isLike;
    this.showFeedback(next);
    if (!(await this.hooks.onFeedback(this, next))) this.showFeedback(previous); // show what the server has
  }

  showFeedback(value) {
    this.feedback = value;
    this.like.setAttribute("aria-pressed", String(value === true));
    this.dislike.setAttribute("aria-pressed", String(value === false));
  }

  /** The server's figures for this reply (see /get_reply_stats). */
  showStats(stats) {
    if (!this.stats || !stats) return;
    const ttft = stats.time_to_first_token_sec;
    const values = {
      tokens: stats.num_output_tokens,
      rate: stats.tokens_per_sec == null ? "" : stats.tokens_per_sec.toFixed(1),
      ttft: ttft == null ? "–" : ttft.toFixed(2),
    };
    const key = stats.tokens_per_sec != null ? "stats" : stats.num_output_tokens === 1 ? "statsOneToken" : "statsNoRate";
    this.stats.textContent = this.t(key, values);
  }
}
