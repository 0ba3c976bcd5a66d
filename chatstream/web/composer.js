// composer.js - the message box: Enter sends, Shift+Enter adds a line (so does Enter while an
// input method is composing), the box grows with its text, and text that could not be sent comes
// back into it.

const MAX_HEIGHT_PX = 220;

export class Composer {
  /** `onSend(text)` gets the trimmed-nonempty text; it decides whether to take it. */
  constructor(form, input, sendButton, onSend) {
    this.form = form;
    this.input = input;
    this.sendButton = sendButton;
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      if (this.input.value.trim() && !this.sendButton.disabled) onSend(this.input.value);
    });
    input.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing && event.keyCode !== 229) {
        event.preventDefault();
        form.requestSubmit();
      }
    });
    input.addEventListener("input", () => this.autoGrow());
  }

  /** Empty the box (the text is now a message on the page). */
  clear() {
    this.input.value = "";
    this.autoGrow();
  }

  /** Put unsent text back, unless the user has typed something new meanwhile. */
  restore(text) {
    if (this.input.value.trim() === "") {
      this.input.value = text;
      this.autoGrow();
    }
  }

  /** Whether a message can be sent now (typing is always possible once the model is ready). */
  setCanSend(canSend) { this.sendButton.disabled = !canSend; }

  setEnabled(enabled) {
    this.input.disabled = !enabled;
    if (!enabled) this.sendButton.disabled = true;
  }

  focus() { if (!this.input.disabled) this.input.focus(); }

  autoGrow() {
    this.input.style.height = "auto";
    this.input.style.height = Math.min(this.input.scrollHeight, MAX_HEIGHT_PX) + "px";
  }
}
