// notice.js - the one notice above the message box: a full server, a lost connection, an error,
// each with the buttons that act on it (Retry, Cancel, ...). Errors are alerts; a countdown that
// changes every second is a polite status, so it is not read out again and again.

export class NoticeArea {
  constructor(element) {
    this.element = element;
    this.text = element.querySelector(".cs-notice-text");
    this.actions = element.querySelector(".cs-notice-actions");
  }

  /** kind: "busy" | "error"; actions: [{label, onClick, id}] (the first gets focus if `focus`). */
  show(kind, text, actions = [], focus = false) {
    this.element.dataset.kind = kind;
    this.element.setAttribute("role", kind === "error" ? "alert" : "status");
    this.text.textContent = text;
    this.actions.replaceChildren(...actions.map(({ label, onClick, id }) => {
      const button = document.createElement("button");
      button.type = "button";
      button.className = "cs-button";
      if (id) button.id = id;
      button.textContent = label;
      button.addEventListener("click", onClick);
      return button;
    }));
    this.element.hidden = false;
    if (focus && this.actions.firstElementChild) this.actions.firstElementChild.focus();
  }

  setText(text) { this.text.textContent = text; }

  get isShown() { return !this.element.hidden; }

  hide() {
    this.element.hidden = true;
    this.text.textContent = "";
    this.actions.replaceChildren();
  }
}
