// markdown.js - model text to safe, highlighted HTML, re-rendered as the reply streams.
//
// Three vendored libraries, each doing one job: markdown-it parses Markdown with raw HTML turned
// off (so "<img onerror=...>" or "<script>" in a reply shows as text) and images off (a reply
// never makes the browser fetch a URL); DOMPurify then keeps only the tags and attributes that
// Markdown produces, as a second line of defence; highlight.js colours fenced code whose
// language it knows. Code blocks get a bar with the language and a Copy button, built with DOM
// calls (model text only ever goes through textContent or the sanitizer).

import markdownit from "./vendor/markdown-it/markdown-it.esm.min.mjs";
import DOMPurify from "./vendor/dompurify/purify.es.mjs";
import hljs from "./vendor/highlight.js/highlight.min.js";
import { copyWithFeedback } from "./clipboard.js";

const ALLOWED_TAGS = [
  "p", "br", "hr", "h1", "h2", "h3", "h4", "h5", "h6", "strong", "em", "s", "del", "blockquote",
  "ul", "ol", "li", "code", "pre", "a", "table", "thead", "tbody", "tr", "th", "td", "span",
];
const PURIFY_CONFIG = {
  ALLOWED_TAGS, ALLOWED_ATTR: ["href", "title", "class", "start"], ALLOW_DATA_ATTR: false,
  RETURN_DOM_FRAGMENT: true,
};

function highlight(code, language) {
  const name = (language || "").trim().toLowerCase();
  if (name && hljs.getLanguage(name)) {
    try {
      return hljs.highlight(code, { language: name, ignoreIllegals: true }).value;
    } catch (e) {
      // fall through: markdown-it escapes the code itself
    }
  }
  return "";
}

const md = markdownit({ html: false, linkify: true, breaks: true, highlight });
md.disable("image");

// Links from model text open in a new tab and pass nothing to the site they open.
DOMPurify.addHook("afterSanitizeAttributes", (node) => {
  if (node.tagName === "A") {
    node.setAttribute("target", "_blank");
    node.setAttribute("rel", "noopener noreferrer nofollow");
  }
});

/** Sanitized DOM for Markdown `text`. */
export function markdownFragment(text) {
  return DOMPurify.sanitize(md.render(text), PURIFY_CONFIG);
}

function codeBlock(pre, t) {
  const code = pre.querySelector("code") || pre;
  code.classList.add("hljs");
  const language = [...code.classList].find((c) => c.startsWith("language-"));
  const box = document.createElement("div");
  box.className = "cs-code";
  const bar = document.createElement("div");
  bar.className = "cs-code-bar";
  const name = document.createElement("span");
  name.textContent = language ? language.slice("language-".length) : "";
  const copy = document.createElement("button");
  copy.type = "button";
  copy.className = "cs-code-copy";
  copy.setAttribute("aria-label", t("copyCode"));
  const copyText = document.createElement("span");
  copyText.className = "cs-button-text";
  copyText.textContent = t("copy");
  copy.appendChild(copyText);
  copy.addEventListener("click", () => copyWithFeedback(copy, code.textContent, t));
  bar.append(name, copy);
  pre.replaceWith(box);
  box.append(bar, pre);
}

/** Render Markdown `text` into `target`, replacing what was there. */
export function renderMarkdown(target, text, t) {
  const fragment = markdownFragment(text);
  for (const pre of fragment.querySelectorAll("pre")) codeBlock(pre, t);
  target.replaceChildren(fragment);
}
