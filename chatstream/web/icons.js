// icons.js - the page's icons: constant SVG path data turned into elements (never parsed HTML).

const SVG = "http://www.w3.org/2000/svg";

// name -> [fill or stroke, path data]
const PATHS = {
  settings: ["stroke", "M4 6h9M17 6h3M4 12h3M11 12h9M4 18h11M19 18h1M15 4v4M9 10v4M17 16v4"],
  newChat: ["stroke", "M12 5v14M5 12h14"],
  send: ["fill", "M3.4 20.4 21 12 3.4 3.6 3.4 10l12.6 2-12.6 2z"],
  stop: ["fill", "M7 7h10v10H7z"],
  regenerate: ["stroke", "M20 11a8 8 0 1 0-2.3 5.7M20 4v7h-7"],
  copy: ["stroke", "M9 9h11v11H9zM5 15H4V4h11v1"],
  thumbUp: ["stroke", "M7 10v10H4V10zM7 10l4-7c1.5 0 2.5 1 2 3l-1 4h6c1 0 2 1 1.7 2.3l-1.6 6c-.3 1-1 1.7-2 1.7H7"],
  thumbDown: ["stroke", "M7 14V4H4v10zM7 14l4 7c1.5 0 2.5-1 2-3l-1-4h6c1 0 2-1 1.7-2.3l-1.6-6C18.8 4.7 18 4 17 4H7"],
  arrowDown: ["stroke", "M12 5v14M6 13l6 6 6-6"],
  assistant: ["fill", "M12 2l2.4 6.6L21 11l-6.6 2.4L12 20l-2.4-6.6L3 11l6.6-2.4z"],
  user: ["fill", "M12 4a4 4 0 1 1 0 8 4 4 0 0 1 0-8zM4 21c0-4.4 3.6-7 8-7s8 2.6 8 7z"],
  conversations: ["stroke", "M4 6h16M4 12h16M4 18h16"],
  rename: ["stroke", "M4 20h4L19 9l-4-4L4 16zM13 7l4 4"],
  download: ["stroke", "M12 4v11M7 10l5 5 5-5M5 20h14"],
  edit: ["stroke", "M4 20h4L19 9l-4-4L4 16z"],
  trash: ["stroke", "M4 7h16M9 7V4h6v3M6 7l1 13h10l1-13M10 11v6M14 11v6"],
};

/** An <svg> icon, hidden from assistive technology (its button carries the name). */
export function icon(name) {
  const [kind, d] = PATHS[name];
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("viewBox", "0 0 24 24");
  svg.setAttribute("aria-hidden", "true");
  svg.setAttribute("focusable", "false");
  svg.classList.add("cs-icon");
  const path = document.createElementNS(SVG, "path");
  path.setAttribute("d", d);
  if (kind === "stroke") {
    for (const [k, v] of [["fill", "none"], ["stroke", "currentColor"], ["stroke-width", "2"],
      ["stroke-linecap", "round"], ["stroke-linejoin", "round"]]) path.setAttribute(k, v);
  } else {
    path.setAttribute("fill", "currentColor");
  }
  svg.appendChild(path);
  return svg;
}

/** Put icons into the static markup: every element with data-icon="name" gets one, first. */
export function placeIcons(root) {
  for (const el of root.querySelectorAll("[data-icon]")) el.prepend(icon(el.dataset.icon));
}

/** A small icon button named by `label` (its tooltip too), for the page's toolbars. */
export function toolButton(className, label, iconName) {
  const el = document.createElement("button");
  el.type = "button";
  el.className = "cs-tool " + className;
  el.setAttribute("aria-label", label);
  el.title = label;
  el.appendChild(icon(iconName));
  return el;
}
