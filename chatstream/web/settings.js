// settings.js - the settings panel: the system prompt and the session's sampling parameters.
//
// Opening it loads the values in effect and their allowed ranges from /get_generation_params
// (the server validates again, and its ranges are the only copy). Each field says what it does
// and which values it takes; a value out of range is marked on its field and nothing is sent.
// Saving sends only what changed.

const PARAM_FIELDS = [
  { key: "temperature", step: "0.05" },
  { key: "top_p_value", step: "0.01" },
  { key: "top_k_value", step: "1" },
  { key: "max_new_tokens", step: "1" },
  { key: "repetition_penalty", step: "0.05" },
  { key: "frequency_penalty", step: "0.1" },
  { key: "presence_penalty", step: "0.1" },
];

function rangeText(range, t) {
  if (range.integer) return t("rangeInteger", range);
  return t(range.min_exclusive ? "rangeNumberOpen" : "rangeNumber", range);
}

/** null when `raw` is a valid value for `range`, else the range's description. */
function rangeError(raw, range, t) {
  const value = Number(raw);
  const ok = raw.trim() !== "" && Number.isFinite(value) && value <= range.max &&
    (range.min_exclusive ? value > range.min : value >= range.min) && (!range.integer || Number.isInteger(value));
  return ok ? null : rangeText(range, t);
}

export class SettingsPanel {
  constructor(elements, api, conversation, t) {
    Object.assign(this, elements); // toggle, panel, form, grid, systemPrompt, status, closeButton
    this.api = api;
    this.conversation = conversation;
    this.t = t;
    this.ranges = {};
    this.loaded = {}; // key -> the value shown when loaded or saved, as text
    this.fields = new Map(PARAM_FIELDS.map((field) => [field.key, this.buildField(field)]));
    this.toggle.addEventListener("click", () => (this.panel.hidden ? this.open() : this.close()));
    this.closeButton.addEventListener("click", () => this.close());
    this.form.addEventListener("submit", (event) => { event.preventDefault(); this.save(); });
    this.panel.addEventListener("keydown", (event) => {
      if (event.key === "Escape") { event.stopPropagation(); this.close(); }
    });
  }

  get isOpen() { return !this.panel.hidden; }

  buildField({ key, step }) {
    const id = "cs-param-" + key.replace(/_/g, "-");
    const box = document.createElement("div");
    box.className = "cs-field";
    const label = document.createElement("label");
    label.htmlFor = id;
    label.textContent = this.t(key);
    const input = document.createElement("input");
    Object.assign(input, { type: "number", id, name: key, step, inputMode: step === "1" ? "numeric" : "decimal" });
    const help = document.createElement("p");
    help.className = "cs-help";
    help.id = id + "-help";
    const what = document.createElement("span");
    what.textContent = this.t(key + "Help") + " ";
    const range = document.createElement("span");
    range.className = "cs-range";
    help.append(what, range);
    const error = document.createElement("p");
    error.className = "cs-field-error";
    error.id = id + "-error";
    error.hidden = true;
    input.setAttribute("aria-describedby", help.id + " " + error.id);
    input.addEventListener("input", () => this.check(key));
    box.append(label, input, help, error);
    this.grid.appendChild(box);
    return { input, range, error };
  }

  async open() {
    this.panel.hidden = false;
    this.toggle.setAttribute("aria-expanded", "true");
    this.systemPrompt.value = this.conversation.systemPrompt;
    this.systemPrompt.focus();
    await this.load();
  }

  close() {
    this.panel.hidden = true;
    this.toggle.setAttribute("aria-expanded", "false");
    this.toggle.focus();
  }

  setStatus(text, bad = false) {
    this.status.textContent = text;
    this.status.classList.toggle("cs-bad", bad);
  }

  async load() {
    this.setStatus(this.t("loadingSettings"));
    try {
      const body = await this.api.getGenerationParams();
      this.ranges = body.ranges || {};
      this.showValues(body.generation_params || {});
      this.setStatus("");
    } catch (e) {
      this.setStatus(this.t("settingsLoadFailed", { detail: e.message }), true);
    }
  }

  showValues(params) {
    for (const [key, field] of this.fields) {
      const range = this.ranges[key];
      if (range) {
        field.input.min = range.min;
        field.input.max = range.max;
        field.range.textContent = rangeText(range, this.t) + ".";
      }
      if (key in params) {
        field.input.value = params[key] === null ? "" : String(params[key]);
        this.loaded[key] = field.input.value;
        this.markError(key, null);
      }
    }
  }

  markError(key, message) {
    const field = this.fields.get(key);
    field.error.hidden = !message;
    field.error.textContent = message || "";
    if (message) field.input.setAttribute("aria-invalid", "true");
    else field.input.removeAttribute("aria-invalid");
  }

  /** Validate one field; returns whether it is valid. */
  check(key) {
    const field = this.fields.get(key);
    const range = this.ranges[key];
    const error = range && field.input.value !== this.loaded[key] ? rangeError(field.input.value, range, this.t) : null;
    this.markError(key, error);
    return !error;
  }

  async save() {
    const changes = {};
    let firstBad = null;
    for (const [key, field] of this.fields) {
      if (!this.check(key)) firstBad = firstBad || field.input;
      else if (field.input.value !== this.loaded[key] && field.input.value.trim() !== "") {
        changes[key] = Number(field.input.value);
      }
    }
    if (firstBad) {
      this.setStatus(this.t("fixErrors"), true);
      firstBad.focus();
      return;
    }
    const system = this.systemPrompt.value;
    const systemChanged = system !== this.conversation.systemPrompt;
    if (Object.keys(changes).length === 0 && !systemChanged) {
      this.setStatus(this.t("nothingChanged"));
      return;
    }
    this.setStatus(this.t("saving"));
    try {
      if (Object.keys(changes).length > 0) {
        const body = await this.api.setGenerationParams(changes);
        this.showValues(body.generation_params || {});
      }
      if (systemChanged) await this.conversation.setSystemPrompt(system);
      this.setStatus(this.t("saved"));
    } catch (e) {
      if (e.field && this.fields.has(e.field)) this.markError(e.field, e.message);
      this.setStatus(this.t("settingsSaveFailed", { detail: e.message }), true);
    }
  }
}
