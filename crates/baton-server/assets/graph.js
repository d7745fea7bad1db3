// Drawings: a run's DAG at the positions the server computed, and the
// timeline of its attempts.

import { ICONS, el, escape, svg } from "./view.js";

export function timeline() {
  const ROWS = 2000, ROW = 16, LABEL = 160, WIDTH = 1000;
  const attempts = new Map();
  let first = null, last = null, drawn = null;
  const root = svg("svg", { class: "gantt", role: "img", "aria-label": "attempts over time" });
  const draw = () => {
    drawn = null;
    const rows = [...attempts.values()].sort((a, b) => a.start - b.start).slice(0, ROWS);
    const span = Math.max(1, (last ?? first) - first);
    root.replaceChildren();
    root.setAttribute("viewBox", `0 0 ${LABEL + WIDTH + 10} ${rows.length * ROW + 20}`);
    rows.forEach((bar, index) => {
      const y = index * ROW;
      const label = svg("text", { x: 0, y: y + 12 });
      label.textContent = bar.attempt > 1 ? `${bar.task} #${bar.attempt}` : bar.task;
      const x = LABEL + (bar.start - first) / span * WIDTH;
      const end = bar.end ?? last ?? bar.start;
      const rect = svg("rect", { x, y: y + 2, width: Math.max(2, (end - bar.start) / span * WIDTH), height: ROW - 4, class: bar.state });
      const title = svg("title");
      title.textContent = `${bar.task} attempt ${bar.attempt}: ${bar.state}, ${((end - bar.start) / 1000).toFixed(3)}s`;
      rect.append(title);
      root.append(label, rect);
    });
    const axis = svg("text", { x: LABEL, y: rows.length * ROW + 16, class: "axis" });
    axis.textContent = `0 – ${(span / 1000).toFixed(3)}s${attempts.size > ROWS ? ` (first ${ROWS} of ${attempts.size} attempts)` : ""}`;
    root.append(axis);
  };
  return {
    element: el("div", { class: "gantt-frame" }, root),
    add(event) {
      if (typeof event.at !== "number") return;
      first ??= event.at;
      last = Math.max(last ?? event.at, event.at);
      if (event.task !== undefined && event.attempt !== undefined) {
        const key = `${event.task}#${event.attempt}`;
        if (event.type === "task_started") attempts.set(key, { task: event.task, attempt: event.attempt, start: event.at, end: null, state: "running" });
        else if (attempts.has(key) && states_end.has(event.type)) {
          const bar = attempts.get(key);
          bar.end = event.at;
          bar.state = event.type.replace("task_", "");
        }
      }
      drawn ??= setTimeout(draw, 100);
    },
  };
}
const states_end = new Set(["task_succeeded", "task_failed", "task_cancelled"]);


export function dag(drawing, choose, initial = new Map()) {
  // A small graph is shown at its own size (centred), not blown up; a
  // large one opens at its start, at a size its names can be read (zoom
  // out with the wheel or -), rather than as thousands of specks.
  const pad = 24;
  const large = drawing.nodes.length > 400;
  const width = large ? 1800 : Math.max(drawing.width + 2 * pad, 900);
  const height = large ? 900 : Math.max(drawing.height + 2 * pad, 420);
  const left = large ? -pad : (drawing.width - width) / 2, top = large ? -pad : (drawing.height - height) / 2;
  const root = svg("svg", { class: "dag", role: "group", "aria-label": "tasks and what they need", viewBox: `${left} ${top} ${width} ${height}` });
  // Built as one string each for edges and boxes, then parsed once: a
  // 10,000-task run is drawn in one go rather than node by node.
  const at = new Map(drawing.nodes.map((node) => [node.id, node]));
  const w = drawing.node_width, h = drawing.node_height;
  const paths = [];
  for (const edge of drawing.edges) {
    const from = at.get(edge.from), to = at.get(edge.to);
    if (!from || !to) continue;
    const x1 = from.x + w, y1 = from.y + h / 2, x2 = to.x, y2 = to.y + h / 2, bend = (x2 - x1) / 2;
    paths.push(`M${x1},${y1} C${x1 + bend},${y1} ${x2 - bend},${y2} ${x2},${y2}`);
  }
  // Three elements a task (a box, one text with its icon, the group):
  // what the browser lays out and paints is what a large run costs.
  const boxes = drawing.nodes.map((node) => {
    const state = initial.get(node.id) || "pending";
    const id = escape(node.id);
    const label = escape(node.id.length > 18 ? `${node.id.slice(0, 17)}…` : node.id);
    return `<g class="node ${state}" data-status="${state}" data-task="${id}" aria-label="${id}: ${state}" transform="translate(${node.x},${node.y})" tabindex="0" role="button">`
      + `<rect width="${w}" height="${h}" rx="6"/><text x="10" y="${h / 2 + 5}"><tspan class="icon">${ICONS[state] || "•"}</tspan> ${label}</text></g>`;
  });
  root.innerHTML = `<g class="edges"><path d="${paths.join(" ")}"/></g><g class="nodes">${boxes.join("")}</g>`;
  const shown = new Map();
  for (const group of root.querySelectorAll("g.node")) {
    shown.set(group.dataset.task, { group, icon: group.querySelector(".icon"), state: group.dataset.status });
  }
  const chosen = (event) => event.target.closest?.("g.node")?.dataset.task;
  root.addEventListener("click", (event) => { const task = chosen(event); if (task) choose(task); });
  root.addEventListener("keydown", (event) => {
    const task = chosen(event);
    if (task && (event.key === "Enter" || event.key === " ")) { event.preventDefault(); choose(task); }
  });
  let view = { x: left, y: top, w: width, h: height };
  const apply = () => root.setAttribute("viewBox", `${view.x} ${view.y} ${view.w} ${view.h}`);
  const zoom = (factor, cx = view.x + view.w / 2, cy = view.y + view.h / 2) => {
    view = { x: cx - (cx - view.x) * factor, y: cy - (cy - view.y) * factor, w: view.w * factor, h: view.h * factor };
    apply();
  };
  root.addEventListener("wheel", (event) => {
    event.preventDefault();
    const box = root.getBoundingClientRect();
    zoom(event.deltaY > 0 ? 1.15 : 1 / 1.15, view.x + (event.clientX - box.left) / box.width * view.w, view.y + (event.clientY - box.top) / box.height * view.h);
  }, { passive: false });
  let drag = null;
  root.addEventListener("pointerdown", (event) => { if (event.target === root) drag = { x: event.clientX, y: event.clientY }; });
  window.addEventListener("pointerup", () => { drag = null; });
  root.addEventListener("pointermove", (event) => {
    if (!drag) return;
    const box = root.getBoundingClientRect();
    view.x -= (event.clientX - drag.x) / box.width * view.w;
    view.y -= (event.clientY - drag.y) / box.height * view.h;
    drag = { x: event.clientX, y: event.clientY };
    apply();
  });
  root.addEventListener("keydown", (event) => {
    if (event.key === "+" || event.key === "=") zoom(1 / 1.2);
    if (event.key === "-") zoom(1.2);
  });
  return {
    element: el("div", { class: "dag-frame" }, root),
    paint(task, state, why) {
      const node = shown.get(task);
      if (!node || (node.state === state && !why)) return;
      node.state = state;
      node.group.setAttribute("class", `node ${state}${node.group.classList.contains("selected") ? " selected" : ""}`);
      node.group.setAttribute("data-status", state);
      node.icon.textContent = ICONS[state] || "•";
      node.group.setAttribute("aria-label", `${task}: ${state}${why ? ` (${why})` : ""}`);
    },
    select(task) {
      for (const [id, node] of shown) node.group.classList.toggle("selected", id === task);
    },
  };
}
