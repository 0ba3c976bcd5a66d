// sidebar.js - the session's conversations: a list to switch between them, rename, export or
// delete one.
//
// It knows the list's markup and the /conversations calls; what opening, starting or deleting a
// conversation does to the page is the app's (the `actions` callbacks). The current conversation
// is marked with aria-current. Renaming happens in place (Enter saves, Escape cancels); exporting
// is a plain download link to the server's export (JSON, docs/conversation-store.md); deleting
// asks first. On narrow screens the list is a panel the header's button shows and hides.

import { icon, toolButton } from "./icons.js";

export class ConversationList {
  /** elements: {panel, list, empty, more, toggle}; actions: {open(id), deleted(id), failed(error)}. */
  constructor(elements, api, t, actions) {
    Object.assign(this, elements);
    this.api = api;
    this.t = t;
    this.actions = actions;
    this.currentId = null;
    this.cursor = null;
    this.items = [];
    this.more.addEventListener("click", () => this.load(true));
    this.toggle.addEventListener("click", () => this.setOpen(this.panel.dataset.open !== "true"));
  }

  setOpen(open) {
    this.panel.dataset.open = String(open);
    this.toggle.setAttribute("aria-expanded", String(open));
  }

  /** Show the panel (the page has conversations to list). */
  enable() {
    this.panel.hidden = false;
    this.toggle.hidden = false;
    this.setOpen(window.matchMedia("(min-width: 900px)").matches);
  }

  title(item) { return item.title || this.t("untitled"); }

  /** Reload the list (or, with `more`, its next page). */
  async load(more = false) {
    try {
      const page = await this.api.listConversations(more ? this.cursor : null);
      this.items = more ? this.items.concat(page.conversations) : page.conversations;
      this.cursor = page.next_cursor;
      this.render();
    } catch (e) {
      this.actions.failed(e);
    }
  }

  setCurrent(id) {
    this.currentId = id;
    for (const li of this.list.children) {
      const open = li.querySelector(".cs-conv-open");
      if (li.dataset.id === id) open.setAttribute("aria-current", "true");
      else open.removeAttribute("aria-current");
    }
  }

  render() {
    this.list.replaceChildren(...this.items.map((item) => this.row(item)));
    this.empty.hidden = this.items.length > 0;
    this.more.hidden = !this.cursor;
    this.setCurrent(this.currentId);
  }

  row(item) {
    const li = document.createElement("li");
    li.className = "cs-conv";
    li.dataset.id = item.id;
    const open = document.createElement("button");
    open.type = "button";
    open.className = "cs-conv-open";
    open.textContent = this.title(item);
    open.addEventListener("click", () => this.actions.open(item.id));
    const rename = toolButton("cs-conv-rename", this.t("renameConversation", { title: this.title(item) }), "rename");
    rename.addEventListener("click", () => this.startRename(li, item));
    const exportLink = document.createElement("a");
    exportLink.className = "cs-tool cs-conv-export";
    exportLink.href = this.api.exportUrl(item.id);
    exportLink.download = "conversation-" + item.id + ".json";
    exportLink.setAttribute("aria-label", this.t("exportConversation", { title: this.title(item) }));
    exportLink.title = exportLink.getAttribute("aria-label");
    exportLink.appendChild(icon("download"));
    const remove = toolButton("cs-conv-delete", this.t("deleteConversation", { title: this.title(item) }), "trash");
    remove.addEventListener("click", () => this.remove(item));
    li.append(open, rename, exportLink, remove);
    return li;
  }

  startRename(li, item) {
    const input = document.createElement("input");
    input.type = "text";
    input.className = "cs-conv-input";
    input.maxLength = 200;
    input.value = item.title;
    input.setAttribute("aria-label", this.t("renameLabel", { title: this.title(item) }));
    const open = li.querySelector(".cs-conv-open");
    open.hidden = true;
    li.prepend(input);
    input.focus();
    input.select();
    let done = false;
    const finish = async (save) => {
      if (done) return;
      done = true;
      const title = input.value.trim();
      input.remove();
      open.hidden = false;
      open.focus();
      if (!save || title === item.title) return;
      try {
        await this.api.updateConversation(item.id, { title });
        await this.load();
        this.list.querySelector(`[data-id="${item.id}"] .cs-conv-open`)?.focus();
      } catch (e) {
        this.actions.failed(e);
      }
    };
    input.addEventListener("keydown", (event) => {
      if (event.key === "Enter") { event.preventDefault(); finish(true); }
      if (event.key === "Escape") { event.preventDefault(); event.stopPropagation(); finish(false); }
    });
    input.addEventListener("blur", () => finish(true));
  }

  async remove(item) {
    if (!window.confirm(this.t("confirmDelete", { title: this.title(item) }))) return;
    try {
      await this.api.deleteConversation(item.id);
      await this.load();
      await this.actions.deleted(item.id);
    } catch (e) {
      this.actions.failed(e);
    }
  }
}
