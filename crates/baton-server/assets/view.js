// Making the page: elements, a state's icon and name, times.

export const ICONS = {
  pending: "○", running: "◐", waiting: "⏸", paused: "⏸", succeeded: "✔",
  failed: "✖", cancelled: "⊘", skipped: "↷", compensated: "↺",
  compensation_failed: "✖", timed_out: "⌛", healthy: "✔", unhealthy: "✖",
  draining: "⏸", dead: "✖",
};
export const FINISHED = new Set(["succeeded", "failed", "cancelled", "compensated", "compensation_failed"]);

export function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === false || value === null || value === undefined) continue;
    if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

export function escape(text) {
  return String(text).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
}

export function status(value) {
  return el("span", { class: `status ${value}` }, el("span", { "aria-hidden": "true" }, ICONS[value] || "•"), ` ${value}`);
}

export function when(millis) {
  return millis ? new Date(millis).toLocaleString() : "";
}

export function took(run) {
  if (!run.started_at) return "";
  const end = run.finished_at || Date.now();
  const seconds = Math.max(0, (end - run.started_at) / 1000);
  return seconds < 60 ? `${seconds.toFixed(1)}s` : `${Math.floor(seconds / 60)}m ${Math.round(seconds % 60)}s`;
}

export function notice(message, kind = "error") {
  const box = el("p", { class: `notice ${kind}`, role: kind === "error" ? "alert" : "status" }, message);
  document.querySelector(".notices")?.replaceChildren(box);
}


const SVG = "http://www.w3.org/2000/svg";

export function svg(tag, attributes = {}) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
  return node;
}
