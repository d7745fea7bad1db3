// Talking to the API: the key this tab holds, JSON calls whose refusals
// come back as the server's problem, and event streams read with fetch
// (EventSource cannot send the key's header).

const SCOPES = ["read", "write", "execute", "admin"];

export class Problem extends Error {
  constructor(status, body) {
    super((body && (body.detail || body.title)) || `HTTP ${status}`);
    this.status = status;
  }
}

export class NeedsKey extends Error {}

export const session = {
  key: sessionStorage.getItem("baton.key"),
  scope: null,
  set(key) {
    this.key = key;
    if (key) sessionStorage.setItem("baton.key", key);
    else sessionStorage.removeItem("baton.key");
  },
  can(scope) {
    return SCOPES.indexOf(this.scope) >= SCOPES.indexOf(scope);
  },
};

export function headers(extra) {
  const all = { ...extra };
  if (session.key) all.authorization = `Bearer ${session.key}`;
  return all;
}

export async function call(method, path, body) {
  const init = { method, headers: headers(body === undefined ? {} : { "content-type": "application/json" }) };
  if (body !== undefined) init.body = JSON.stringify(body);
  const response = await fetch(`/api/v1${path}`, init);
  const text = await response.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = text; }
  if (response.status === 401) throw new NeedsKey();
  if (!response.ok) throw new Problem(response.status, data);
  return data;
}

export async function text(path) {
  const response = await fetch(`/api/v1${path}`, { headers: headers({}) });
  if (response.status === 401) throw new NeedsKey();
  if (!response.ok) return "";
  return response.text();
}

// Server-sent events over fetch (EventSource cannot send a header):
// `onEvent(data, id)` for each; resumes after a break with Last-Event-ID
// until `signal` aborts or `onEvent` returns true.
export async function follow(path, onEvent, signal) {
  let last = null;
  while (!signal.aborted) {
    try {
      const extra = { accept: "text/event-stream" };
      if (last !== null) extra["last-event-id"] = last;
      const response = await fetch(`/api/v1${path}`, { headers: headers(extra), signal });
      if (!response.ok) throw new Problem(response.status, null);
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value;
        let end;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          let id = null, data = "";
          for (const line of block.split("\n")) {
            if (line.startsWith("id:")) id = line.slice(3).trim();
            else if (line.startsWith("data:")) data += line.slice(5).trim();
          }
          if (id !== null) last = id;
          if (!data) continue;
          let parsed;
          try { parsed = JSON.parse(data); } catch { continue; }
          if (onEvent(parsed, id)) return;
        }
      }
    } catch (error) {
      if (signal.aborted) return;
    }
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
}
