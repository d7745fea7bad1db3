// The dashboard: a client of baton's REST API and event streams, and of
// nothing else, so it can do nothing the API cannot. The key is held by
// this tab (sessionStorage) and sent as a bearer header; no cookie is
// ever set, so no other site's form can act with it.


import { NeedsKey, call, follow, headers, session, text } from "./api.js";
import { dag, timeline } from "./graph.js";
import { FINISHED, el, notice, status, took, when } from "./view.js";

const main = document.getElementById("main");

let leaving = new AbortController();

async function route() {
  leaving.abort();
  leaving = new AbortController();
  const signal = leaving.signal;
  const hash = location.hash || "#/runs";
  try {
    if (session.scope === null) await identify();
    const run = hash.match(/^#\/runs\/([A-Za-z0-9._-]+)(?:\/([^/]+))?$/);
    const workflow = hash.match(/^#\/workflows\/([^/]+)(?:\/(\d+))?$/);
    if (run) await runPage(run[1], run[2] && decodeURIComponent(run[2]), signal);
    else if (workflow) await workflowPage(decodeURIComponent(workflow[1]), workflow[2], signal);
    else if (hash.startsWith("#/workflows")) await workflowsPage();
    else if (hash.startsWith("#/agents")) await agentsPage(signal);
    else await runsPage(new URLSearchParams(hash.split("?")[1] || ""), signal);
  } catch (error) {
    if (error instanceof NeedsKey) signIn();
    else main.replaceChildren(el("p", { class: "notice error", role: "alert" }, error.message));
  }
}

async function identify() {
  const me = await call("GET", "/whoami");
  session.scope = me.scope;
  document.getElementById("who").textContent = me.name ? `${me.name} (${me.scope})` : me.scope;
  document.getElementById("sign-out").hidden = !session.key;
}

function signIn(message) {
  session.set(null);
  session.scope = null;
  main.replaceChildren(document.getElementById("sign-in").content.cloneNode(true));
  const form = document.getElementById("sign-in-form");
  if (message) document.getElementById("sign-in-error").textContent = message;
  document.getElementById("key").focus();
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    session.set(document.getElementById("key").value.trim());
    try {
      await identify();
      route();
    } catch (error) {
      signIn(error instanceof NeedsKey ? "That key was refused." : error.message);
    }
  });
}

// ---- runs ----

async function runsPage(query, signal) {
  const filters = el("form", { class: "filters", role: "search" },
    el("label", {}, "Status ",
      el("select", { name: "status" }, ["", "pending", "running", "paused", "succeeded", "failed", "cancelled", "compensated"]
        .map((value) => el("option", { value, selected: query.get("status") === value }, value || "any")))),
    el("label", {}, "Workflow ", el("input", { name: "workflow", value: query.get("workflow") || "", size: 16 })),
    el("label", {}, "Started after ", el("input", { name: "after", type: "datetime-local", value: query.get("after") || "" })),
    el("button", { type: "submit" }, "Filter"));
  filters.addEventListener("submit", (event) => {
    event.preventDefault();
    const next = new URLSearchParams();
    for (const [name, value] of new FormData(filters)) if (value) next.set(name, value);
    location.hash = `#/runs?${next}`;
  });
  const body = el("tbody");
  const pager = el("nav", { class: "pager", "aria-label": "pages" });
  main.replaceChildren(el("h1", {}, "Runs"), filters, el("div", { class: "notices" }),
    el("table", { class: "runs" },
      el("thead", {}, el("tr", {}, ["Status", "Run", "Workflow", "Started", "Duration", "Progress"].map((name) => el("th", { scope: "col" }, name)))),
      body),
    pager);

  const params = new URLSearchParams({ limit: "50" });
  for (const name of ["status", "workflow", "cursor"]) if (query.get(name)) params.set(name, query.get(name));
  if (query.get("after")) params.set("started_after", String(new Date(query.get("after")).getTime()));

  async function load() {
    const page = await call("GET", `/runs?${params}`);
    body.replaceChildren(...page.runs.map((run) => el("tr", {},
      el("td", {}, status(run.status)),
      el("td", {}, el("a", { href: `#/runs/${run.run_id}` }, run.run_id)),
      el("td", {}, run.workflow),
      el("td", {}, when(run.started_at)),
      el("td", {}, took(run)),
      progress(run))));
    if (!page.runs.length) body.replaceChildren(el("tr", {}, el("td", { colspan: 6 }, "No runs.")));
    const next = new URLSearchParams(query);
    pager.replaceChildren(
      query.get("cursor") ? el("a", { href: `#/runs?${withoutCursor(query)}` }, "Newest") : "",
      page.next_cursor ? el("a", { href: `#/runs?${(next.set("cursor", page.next_cursor), next)}` }, "Older →") : "");
  }
  await load();
  performance.mark("baton-runs-listed");
  // Live: a run starting or ending anywhere reloads the page shown, at most
  // twice a second.
  let pending = null;
  follow("/events", (event) => {
    if (event.type === "run_started" || event.type === "run_finished" || event.type === "task_started") {
      pending ??= setTimeout(() => { pending = null; if (!signal.aborted) load().catch(() => {}); }, 500);
    }
  }, signal);
}

// A finished run shows its events; one in progress, how many of its tasks
// have ended (read from the run itself: only the page's unfinished runs
// cost a request).
function progress(run) {
  const cell = el("td", { class: "number" }, FINISHED.has(run.status) ? `${run.events} events` : "…");
  if (!FINISHED.has(run.status)) {
    call("GET", `/runs/${run.run_id}`).then((shown) => {
      const ended = shown.tasks.filter((task) => !["pending", "running", "waiting"].includes(task.status)).length;
      cell.replaceChildren(el("progress", { max: shown.tasks.length, value: ended, "aria-label": `${ended} of ${shown.tasks.length} tasks` }),
        ` ${ended}/${shown.tasks.length}`);
    }).catch(() => { cell.textContent = ""; });
  }
  return cell;
}

function withoutCursor(query) {
  const copy = new URLSearchParams(query);
  copy.delete("cursor");
  return copy;
}

// ---- workflows ----

async function workflowsPage() {
  const list = await call("GET", "/workflows");
  const body = el("tbody", {}, list.workflows.map((workflow) => el("tr", {},
    el("td", {}, el("a", { href: `#/workflows/${encodeURIComponent(workflow.name)}` }, workflow.name)),
    el("td", { class: "number" }, workflow.version),
    el("td", { class: "number" }, workflow.tasks),
    el("td", {}, workflow.description || ""),
    el("td", {}, when(workflow.created_at)))));
  if (!list.workflows.length) body.append(el("tr", {}, el("td", { colspan: 5 }, "No workflows registered (`POST /api/v1/workflows`, admin).")));
  main.replaceChildren(el("h1", {}, "Workflows"),
    el("table", { class: "runs" },
      el("thead", {}, el("tr", {}, ["Workflow", "Version", "Tasks", "Description", "Registered"].map((name) => el("th", { scope: "col" }, name)))),
      body));
}

async function workflowPage(name, version, signal) {
  const path = `/workflows/${encodeURIComponent(name)}`;
  const [stored, versions] = await Promise.all([
    call("GET", version ? `${path}/versions/${version}` : path), call("GET", `${path}/versions`)]);
  const drawing = await call("GET", `${path}/graph?format=layout${version ? `&version=${version}` : ""}`).catch(() => null);
  const notices = el("div", { class: "notices" });
  const parts = [
    el("h1", {}, stored.name, " ", el("span", { class: "muted" }, `version ${stored.version}`)),
    el("p", {}, stored.description || ""),
    el("nav", { class: "versions", "aria-label": "versions" }, "Versions: ",
      versions.versions.map((each) => el("a", { href: `#/workflows/${encodeURIComponent(name)}/${each.version}`, "aria-current": each.version === stored.version ? "page" : false }, ` ${each.version} `))),
    notices,
  ];
  if (session.can("write")) parts.push(startForm(stored));
  if (drawing) {
    // The plan before running: levels run one after another, a level's
    // tasks side by side.
    const widths = new Map();
    for (const node of drawing.nodes) widths.set(node.level, (widths.get(node.level) || 0) + 1);
    const widest = Math.max(0, ...widths.values());
    parts.push(el("h2", {}, "Plan"), el("dl", { class: "metrics plan" },
      el("dt", {}, "tasks"), el("dd", {}, drawing.nodes.length),
      el("dt", {}, "levels"), el("dd", {}, widths.size),
      el("dt", {}, "widest level"), el("dd", {}, widest),
      el("dt", {}, "edges"), el("dd", {}, drawing.edges.length)),
    dag(drawing, () => {}).element);
  }
  parts.push(el("h2", {}, "Spec"), el("pre", { class: "json" }, JSON.stringify(stored.spec, null, 2)));
  main.replaceChildren(...parts);
}

// A form from the workflow's declared inputs: a checkbox for a boolean,
// a number field for a number, JSON for objects and lists, text otherwise.
function startForm(stored) {
  const inputs = Object.entries(stored.spec.inputs || {});
  const fields = inputs.map(([name, declared]) => {
    const type = declared.type || "string";
    const id = `input-${name}`;
    const given = declared.default;
    let field;
    if (type === "boolean") field = el("input", { id, name, type: "checkbox", checked: given === true });
    else if (type === "number" || type === "integer") field = el("input", { id, name, type: "number", step: type === "integer" ? "1" : "any", value: given ?? "", required: given === undefined });
    else if (type === "object" || type === "array") field = el("textarea", { id, name, rows: 3 }, given === undefined ? "" : JSON.stringify(given));
    else field = el("input", { id, name, value: given ?? "", required: given === undefined });
    field.dataset.type = type;
    return el("div", { class: "field" }, el("label", { for: id }, `${name} `, el("span", { class: "muted" }, type)), field,
      declared.description ? el("small", {}, declared.description) : "");
  });
  const form = el("form", { class: "start" }, el("h2", {}, "Start a run"), fields, el("button", { type: "submit" }, "Start"));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const values = {};
    try {
      for (const field of form.querySelectorAll("[data-type]")) {
        const type = field.dataset.type;
        if (type === "boolean") values[field.name] = field.checked;
        else if (field.value === "") continue;
        else if (type === "number" || type === "integer") values[field.name] = Number(field.value);
        else if (type === "object" || type === "array") values[field.name] = JSON.parse(field.value);
        else values[field.name] = field.value;
      }
      const started = await call("POST", "/runs", { workflow: `${stored.name}@${stored.version}`, inputs: values });
      location.hash = `#/runs/${started.run_id}`;
    } catch (error) {
      if (error instanceof NeedsKey) signIn(); else notice(error.message);
    }
  });
  return form;
}

// ---- agents and workers ----

async function agentsPage(signal) {
  const body = el("tbody");
  main.replaceChildren(el("h1", {}, "Agents and workers"), el("table", { class: "runs" },
    el("thead", {}, el("tr", {}, ["Agent", "Kind", "Status", "Capabilities", "Labels", "In flight", "Succeeded", "Failed", "Breaker", "Last seen"]
      .map((name) => el("th", { scope: "col" }, name)))), body));
  const load = async () => {
    const list = await call("GET", "/agents");
    body.replaceChildren(...list.agents.map((agent) => el("tr", {},
      el("td", {}, agent.name || agent.id),
      el("td", {}, agent.kind || ""),
      el("td", {}, status(agent.status)),
      el("td", {}, (agent.capabilities || []).join(", ")),
      el("td", {}, Object.entries(agent.labels || {}).map(([name, value]) => `${name}=${value}`).join(", ")),
      el("td", { class: "number" }, agent.in_flight ?? ""),
      el("td", { class: "number" }, agent.succeeded ?? ""),
      el("td", { class: "number" }, agent.failed ?? ""),
      el("td", {}, typeof agent.breaker === "object" && agent.breaker ? agent.breaker.state || JSON.stringify(agent.breaker) : agent.breaker || ""),
      el("td", {}, agent.last_heartbeat_ms_ago == null ? "" : `${(agent.last_heartbeat_ms_ago / 1000).toFixed(1)}s ago`))));
    if (!list.agents.length) body.replaceChildren(el("tr", {}, el("td", { colspan: 10 }, "No agents or workers registered.")));
  };
  await load();
  // Health changes are not events: the registry is read again every 2 s.
  const every = setInterval(() => { if (signal.aborted) clearInterval(every); else load().catch(() => {}); }, 2000);
}

// ---- a run ----
async function runPage(runId, selected, signal) {
  const [run, drawing] = await Promise.all([call("GET", `/runs/${runId}`), call("GET", `/runs/${runId}/graph`)]);
  const head = el("div", { class: "run-head" });
  const notices = el("div", { class: "notices" });
  const figures = el("dl", { class: "metrics" });
  const panel = el("aside", { class: "panel", "aria-live": "polite" });
  const picture = dag(drawing, (task) => { location.hash = `#/runs/${runId}/${encodeURIComponent(task)}`; },
    new Map(run.tasks.map((task) => [task.id, task.status])));
  const gantt = timeline();
  const proof = el("section", { class: "proof" });
  main.replaceChildren(head, notices, figures, el("div", { class: "run-body" }, picture.element, panel),
    el("h2", {}, "Timeline"), gantt.element, proof);

  let current = run;
  let panelDrawn = null;
  let panelStop = new AbortController();
  let headDrawn = null;
  const show = () => {
    // Buttons are made again only when the run's state moves, so one
    // being pressed is not swapped from under the pointer.
    if (headDrawn !== `${current.status}|${current.reason}`) {
      headDrawn = `${current.status}|${current.reason}`;
      head.replaceChildren(
        el("h1", {}, current.workflow, " ", status(current.status)),
        el("p", { class: "run-id" }, current.run_id, current.reason ? ` · ${current.reason}` : ""),
        actions(current, refresh));
    }
    const m = current.metrics;
    figures.replaceChildren(...[["wall", m.wall], ["task time", m.task_time], ["speedup", `${m.parallelism.toFixed(2)}×`],
      ["critical path", m.critical_path], ["attempts", m.attempts], ["tokens", m.usage.tokens], ["cost", `$${m.usage.cost.toFixed(4)}`]]
      .flatMap(([name, value]) => [el("dt", {}, name), el("dd", {}, value)]));
    for (const task of current.tasks) picture.paint(task.id, task.status, task.waiting);
    picture.select(selected);
    // The panel is drawn again only when its task or the run's state
    // changed; each drawing stops the log the one before followed.
    const task = current.tasks.find((candidate) => candidate.id === selected);
    const drawn = JSON.stringify([current.status, task]);
    if (drawn !== panelDrawn) {
      panelDrawn = drawn;
      panelStop.abort();
      panelStop = new AbortController();
      signal.addEventListener("abort", () => panelStop.abort());
      if (task) taskPanel(panel, current, task, refresh, panelStop.signal);
      else panel.replaceChildren(el("p", { class: "hint" }, "Choose a task to see its attempts, output and logs."));
    }
    if (FINISHED.has(current.status)) provenance(proof, current, signal);
  };
  async function refresh() {
    current = await call("GET", `/runs/${runId}`);
    show();
  }
  show();
  // Every event from the first: the live colours and the timeline. A
  // finished run's stream replays and ends.
  const states = { task_started: "running", task_succeeded: "succeeded", task_failed: "failed", task_waiting: "waiting", task_skipped: "skipped", task_cancelled: "cancelled" };
  let pending = null;
  const live = !FINISHED.has(current.status);
  // The events are read once the graph is on the screen: the first paint
  // of a large run waits for nothing else.
  requestAnimationFrame(() => requestAnimationFrame(() => {
    performance.mark("baton-dag-painted");
    if (signal.aborted) return;
    follow(`/runs/${runId}/events`, (event) => {
      gantt.add(event);
      if (live && event.task && states[event.type]) picture.paint(event.task, states[event.type]);
      if (live) pending ??= setTimeout(() => { pending = null; if (!signal.aborted) refresh().catch(() => {}); }, 150);
      return event.type === "run_finished";
    }, signal).then(() => { if (!signal.aborted && live) setTimeout(() => refresh().catch(() => {}), 200); });
  }));
}

// Each attempt as a bar from its start to its end, at most ROWS of them.

async function provenance(section, run, signal) {
  if (section.dataset.shown === run.run_id) return;
  section.dataset.shown = run.run_id;
  const result = el("p", { class: "verify", role: "status" });
  const check = el("button", {
    type: "button", "data-action": "verify",
    onclick: async () => {
      result.textContent = "checking…";
      try {
        const verdict = await call("GET", `/runs/${run.run_id}/verify`);
        const sound = !verdict.mismatch && !(verdict.damage || []).length;
        result.replaceChildren(status(sound ? "succeeded" : "failed"),
          sound ? ` verified: ${verdict.events} events, root ${verdict.root}` : ` does not verify: ${verdict.mismatch || verdict.damage.join("; ")}`);
      } catch (error) { result.textContent = error.message; }
    },
  }, "Verify provenance");
  const artifacts = await call("GET", `/runs/${run.run_id}/artifacts`).catch(() => []);
  if (signal.aborted) return;
  const rows = artifacts.map((artifact) => el("tr", {},
    el("td", {}, artifact.task), el("td", {}, artifact.role), el("td", {}, artifact.path),
    el("td", { class: "digest" }, artifact.digest), el("td", { class: "number" }, artifact.size),
    el("td", {}, el("button", {
      type: "button",
      onclick: async () => {
        const response = await fetch(`/api/v1/artifacts/${artifact.digest}`, { headers: headers({}) });
        if (!response.ok) { notice(`download failed: HTTP ${response.status}`); return; }
        const link = el("a", { href: URL.createObjectURL(await response.blob()), download: artifact.path.split("/").pop() });
        link.click();
        URL.revokeObjectURL(link.href);
      },
    }, "Download"))));
  section.replaceChildren(el("h2", {}, "Provenance"), check, result,
    artifacts.length ? el("table", { class: "runs" },
      el("thead", {}, el("tr", {}, ["Task", "Role", "Path", "SHA-256", "Bytes", ""].map((name) => el("th", { scope: "col" }, name)))),
      el("tbody", {}, rows)) : el("p", { class: "hint" }, "No artifacts."));
}

// The DAG as SVG: boxes where the server's layout put them, edges as
// curves; pan by dragging, zoom with the wheel or the keys + and -.
function actions(run, refresh) {
  const bar = el("div", { class: "actions" });
  if (!session.can("write") || FINISHED.has(run.status)) return bar;
  const act = (label, path, body, confirmText) => el("button", {
    type: "button", "data-action": label.toLowerCase(),
    onclick: async () => {
      if (confirmText && !confirm(confirmText)) return;
      try {
        await call("POST", `/runs/${run.run_id}/${path}`, body);
        notice(`${label}: sent.`, "ok");
        await refresh();
      } catch (error) {
        if (error instanceof NeedsKey) signIn(); else notice(error.message);
      }
    },
  }, label);
  bar.append(act("Cancel", "cancel", {}, "Cancel this run?"));
  bar.append(run.status === "paused" ? act("Unpause", "resume", {}) : act("Pause", "pause", {}));
  return bar;
}

async function taskPanel(panel, run, task, refresh, signal) {
  const parts = [el("h2", {}, task.id, " ", status(task.status)),
    el("dl", {}, el("dt", {}, "attempts"), el("dd", {}, task.attempts), el("dt", {}, "duration"), el("dd", {}, task.duration),
      task.waiting ? [el("dt", {}, "waiting"), el("dd", {}, task.waiting)] : null,
      task.exit_code !== undefined ? [el("dt", {}, "exit code"), el("dd", {}, task.exit_code)] : null,
      task.note ? [el("dt", {}, task.status === "failed" ? "failure" : "note"), el("dd", { class: "note" }, task.note)] : null,
      task.reused_from ? [el("dt", {}, "reused from"), el("dd", {}, el("a", { href: `#/runs/${task.reused_from}` }, task.reused_from))] : null)];
  if (task.status === "waiting" && task.approval && session.can("write")) {
    const comment = el("input", { id: "comment", name: "comment", placeholder: "comment (optional)" });
    parts.push(el("section", { class: "approval" }, el("p", {}, task.approval.prompt),
      el("label", { for: "comment" }, "Comment"), comment,
      el("div", { class: "actions" }, (task.approval.choices || ["approve", "reject"]).map((choice) => el("button", {
        type: "button", "data-choice": choice,
        onclick: async () => {
          try {
            await call("POST", `/runs/${run.run_id}/tasks/${encodeURIComponent(task.id)}/decision`, { choice, comment: comment.value || undefined });
            notice(`${task.id}: ${choice}.`, "ok");
            await refresh();
          } catch (error) { notice(error.message); }
        },
      }, choice)))));
  } else if (task.status === "waiting" && task.approval) {
    parts.push(el("p", {}, task.approval.prompt));
  }
  if (FINISHED.has(run.status) && task.status !== "succeeded" && task.status !== "pending" && session.can("write")) {
    parts.push(el("div", { class: "actions" }, el("button", {
      type: "button", "data-action": "rerun",
      onclick: async () => {
        try {
          const rerun = await call("POST", `/runs/${run.run_id}/tasks/${encodeURIComponent(task.id)}/retry`, {});
          const id = rerun && (rerun.run_id || rerun.id);
          if (id && id !== run.run_id) location.hash = `#/runs/${id}`; else await refresh();
        } catch (error) { notice(error.message); }
      },
    }, "Rerun from here")));
  }
  const children = childRuns(run.run_id, task.output);
  if (children.length) {
    parts.push(el("h3", {}, "Child runs"), el("ul", { class: "children" },
      children.map((child) => el("li", {}, el("a", { href: `#/runs/${child}` }, child)))));
  }
  if (task.output !== undefined) parts.push(el("h3", {}, "Output"), el("pre", { class: "json" }, JSON.stringify(task.output, null, 2)));
  const logs = el("pre", { class: "logs" }, "…");
  parts.push(el("h3", {}, "Logs"), logs);
  panel.replaceChildren(...parts);
  const path = `/runs/${run.run_id}/tasks/${encodeURIComponent(task.id)}/logs`;
  if (task.status === "running") {
    // Followed as the attempt writes it, until it ends.
    logs.textContent = "";
    follow(`${path}?stream=stdout&follow=true`, (piece) => {
      if (typeof piece.text === "string") logs.textContent += piece.text;
      return piece.text === undefined && piece.offset !== undefined;
    }, signal);
    return;
  }
  const [out, err] = await Promise.all([text(`${path}?stream=stdout`), text(`${path}?stream=stderr`)]);
  if (!signal.aborted) logs.textContent = (out + (err ? `\n--- stderr ---\n${err}` : "")) || "(no output)";
}

// The child runs a task's output names (a sub-workflow's, a foreach's
// items', spawned ones): ids under this run's.
function childRuns(runId, output, depth = 0, found = []) {
  if (depth > 3 || output === null || typeof output !== "object") return found;
  if (typeof output.run === "string" && output.run.startsWith(`${runId}.`)) found.push(output.run);
  for (const value of Array.isArray(output) ? output : Object.values(output)) childRuns(runId, value, depth + 1, found);
  return found;
}

document.getElementById("sign-out").addEventListener("click", () => { signIn(); });
window.addEventListener("hashchange", route);
route();
