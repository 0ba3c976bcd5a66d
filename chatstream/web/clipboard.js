// clipboard.js - copying text, with the button that asked for it saying how it went.
//
// navigator.clipboard needs a secure context (https, or localhost); on plain http from another
// host the page falls back to a hidden textarea and the older copy command.

async function writeText(text) {
  if (navigator.clipboard && window.isSecureContext) {
    await navigator.clipboard.writeText(text);
    return;
  }
  const area = document.createElement("textarea");
  area.value = text;
  area.setAttribute("readonly", "");
  area.style.position = "fixed";
  area.style.opacity = "0";
  document.body.appendChild(area);
  area.select();
  const ok = document.execCommand("copy");
  area.remove();
  if (!ok) throw new Error("copy command refused");
}

/** Copy `text`; the button shows "Copied" (or "Copy failed") for a moment, its name unchanged. */
export async function copyWithFeedback(button, text, t) {
  const label = button.querySelector(".cs-button-text") || button;
  const original = label.dataset.text || label.textContent;
  label.dataset.text = original;
  let ok = true;
  try {
    await writeText(text);
  } catch (e) {
    ok = false;
  }
  label.textContent = t(ok ? "copied" : "copyFailed");
  button.dataset.copied = String(ok);
  clearTimeout(button.csCopyTimer);
  button.csCopyTimer = setTimeout(() => {
    label.textContent = original;
    delete button.dataset.copied;
  }, 1500);
  return ok;
}
