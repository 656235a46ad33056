/* The agent page: history backfill, then the live SSE tail; sticky-bottom scrolling with
   a "↓ N new" pill; the state row; the prompt with slash commands; the inbox. */
"use strict";
(() => {
  const tail = document.getElementById("tail");
  const pill = document.getElementById("newpill");
  const newcount = document.getElementById("newcount");
  const badge = document.getElementById("state-badge");
  const age = document.getElementById("state-age");
  const reason = document.getElementById("state-reason");
  const modelChip = document.getElementById("model-chip");
  const turnChip = document.getElementById("turn-chip");
  const cancelBtn = document.getElementById("cancel-turn");
  const dot = document.getElementById("live-dot");
  let lastId = 0, firstId = 0, unseen = 0;

  const atBottom = () => tail.scrollHeight - tail.scrollTop - tail.clientHeight < 24;
  function toBottom() { tail.scrollTop = tail.scrollHeight; unseen = 0; pill.hidden = true; }
  tail.addEventListener("scroll", () => { if (atBottom()) { unseen = 0; pill.hidden = true; } });
  pill.addEventListener("click", toBottom);

  function line(cls, text, ts) {
    const el = document.createElement("div");
    el.className = "ev " + cls;
    if (ts) { const t = document.createElement("span"); t.className = "ts"; t.textContent = ts.slice(11, 19); el.append(t); }
    el.append(document.createTextNode(text));
    return el;
  }
  function render(ev) {
    const out = [];
    for (const it of ev.items) {
      switch (it.kind) {
        case "init": out.push(line("sys", `⚙ session · model ${it.model || "?"} · ${it.tools} tools · mcp ${it.mcp.join(", ") || "none"}`, ev.ts)); break;
        case "text": out.push(line("text", it.text, ev.ts)); break;
        case "thinking": out.push(line("thinking", "✻ " + it.text, ev.ts)); break;
        case "tool_use": {
          const el = line("tool", `→ ${it.name.replace(/^mcp__hive__/, "hive.")} `, ev.ts);
          const a = document.createElement("span"); a.className = "args"; a.textContent = it.input; el.append(a);
          out.push(el); break;
        }
        case "tool_result": out.push(line(it.is_error ? "tool-error" : "tool-result", (it.is_error ? "✗ " : "← ") + (it.text || "(empty)"), ev.ts)); break;
        case "result": {
          const cost = it.cost_usd != null ? "$" + it.cost_usd.toFixed(4) : "$?";
          out.push(line(it.ok ? "result-ok" : "tool-error", `■ turn ${it.subtype} · ${fmtMs(it.duration_ms)} · ${cost} · ${it.input_tokens ?? "?"}→${it.output_tokens ?? "?"} tok`, ev.ts)); break;
        }
        case "raw": out.push(line("sys", it.text, ev.ts)); break;
        case "wake": out.push(line("wake", `▶ woke on #${it.id} from ${it.sender}: ${it.text}`, ev.ts)); break;
        default: out.push(line("sys", "· " + it.text, ev.ts));
      }
    }
    return out;
  }
  function append(nodes) {
    if (!nodes.length) return;
    const stick = atBottom();
    tail.append(...nodes);
    if (stick) toBottom();
    else { unseen += nodes.length; newcount.textContent = unseen; pill.hidden = false; }
  }
  function local(text, cls) { append(text.split("\n").length > 1 ? [line(cls || "local", text)] : [line(cls || "local", text)]); }
  function fmtMs(ms) { return ms == null ? "?" : ms < 1000 ? ms + " ms" : (ms / 1000).toFixed(1) + " s"; }

  function setState(s) {
    badge.textContent = s.state;
    badge.className = "badge t-" + s.state;
    if (s.since) age.dataset.since = s.since;
    reason.textContent = s.reason || "";
    modelChip.textContent = s.model || "default model";
    cancelBtn.hidden = s.state !== "thinking";
    const t = s.last_turn;
    if (t) {
      const cost = t.cost_usd != null ? "$" + t.cost_usd.toFixed(4) : "$?";
      turnChip.textContent = `last turn ${t.status || ""} · ${fmtMs(t.duration_ms)} · ${cost}`;
    }
    hive.tick();
  }

  async function loadInbox() {
    const box = document.getElementById("inbox");
    try {
      const resp = await fetch("api/inbox", { credentials: "same-origin" });
      const data = await resp.json();
      box.replaceChildren();
      if (data.error) { box.append(line("dim", data.error)); return; }
      if (!data.messages.length) { const li = document.createElement("li"); li.className = "dim"; li.textContent = "empty"; box.append(li); return; }
      for (const m of data.messages) {
        const li = document.createElement("li");
        li.dataset.testid = "inbox-" + m.id;
        const head = document.createElement("div"); head.className = "small dim";
        head.textContent = `#${m.id} from ${m.sender}${m.delivered_at ? " · in turn" : " · queued"}`;
        const body = document.createElement("div"); body.textContent = m.body.slice(0, 400);
        li.append(head, body); box.append(li);
      }
    } catch (e) { /* the next event retries */ }
  }

  /* Past the last 300 events: a "load older" line at the top fetches the page before. */
  const PAGE = 300;
  function olderButton(more) {
    let btn = document.getElementById("load-older");
    if (!more) { if (btn) btn.remove(); return; }
    if (!btn) {
      btn = document.createElement("button");
      btn.type = "button"; btn.id = "load-older"; btn.className = "ghost small";
      btn.dataset.testid = "load-older"; btn.textContent = "↑ load older";
      btn.addEventListener("click", loadOlder);
    }
    tail.prepend(btn);
  }
  async function loadOlder() {
    const resp = await fetch(`api/history?limit=${PAGE}&before=${firstId}`, { credentials: "same-origin" });
    const data = await resp.json();
    const nodes = [];
    for (const ev of data.events) nodes.push(...render(ev));
    if (data.events.length) firstId = data.events[0].id;
    const fromBottom = tail.scrollHeight - tail.scrollTop;
    const btn = document.getElementById("load-older");
    (btn ? btn.after.bind(btn) : tail.prepend.bind(tail))(...nodes);
    tail.scrollTop = tail.scrollHeight - fromBottom;  // what was in view stays in view
    olderButton(data.older);
  }

  async function start() {
    const resp = await fetch(`api/history?limit=${PAGE}`, { credentials: "same-origin" });
    const data = await resp.json();
    setState(data);
    const nodes = [];
    for (const ev of data.events) { nodes.push(...render(ev)); lastId = Math.max(lastId, ev.id); }
    if (data.events.length) firstId = data.events[0].id;
    tail.append(...nodes);
    olderButton(data.older);
    toBottom();
    loadInbox();
    connect();
  }
  function connect() {
    const es = new EventSource("events?after=" + lastId);
    es.onopen = () => dot.classList.add("on");
    es.onerror = () => {
      dot.classList.remove("on");
      // Reconnect from the last id we rendered, not the browser's Last-Event-ID guess.
      es.close(); setTimeout(connect, 1000);
    };
    es.addEventListener("event", (e) => {
      const ev = JSON.parse(e.data);
      if (ev.id <= lastId) return;
      lastId = ev.id;
      append(render(ev));
    });
    es.addEventListener("state", (e) => { setState(JSON.parse(e.data)); loadInbox(); });
    // The "woke on" line itself comes as the turn's first stored event.
    es.addEventListener("wake", () => loadInbox());
    es.addEventListener("turn", (e) => {
      const t = JSON.parse(e.data);
      append([line("turnend", `— turn ${t.status} · ${fmtMs(t.duration_ms)} · ${t.cost_usd != null ? "$" + t.cost_usd.toFixed(4) : "$?"}`)]);
    });
    es.addEventListener("permission", (e) => {
      const p = JSON.parse(e.data);
      const what = `${p.tool}${p.detail ? ": " + p.detail.slice(0, 300) : ""}`;
      append([line("local", p.state === "asked"
        ? `⏸ asks the operator for ${what} (answer in hive questions or the dashboard)`
        : `${p.allow ? "✓ allowed" : "✗ not allowed"} (${p.state}): ${what}`)]);
    });
    es.addEventListener("control", (e) => {
      const c = JSON.parse(e.data);
      append([line("local", `⌁ ${c.action}${c.model !== undefined ? " → " + (c.model || "default") : ""}`)]);
      if (c.action === "model") modelChip.textContent = c.model || "default model";
    });
  }

  const form = document.getElementById("prompt");
  const text = document.getElementById("prompt-text");
  async function submit() {
    const body = text.value;
    if (!body.trim()) return;
    // Clear at once: what the operator types next must not be wiped by this answer.
    text.value = ""; delete text.dataset.dirty;
    try {
      const r = await hive.post("api/send", { body });
      if (r.output) local(r.output);
      else local(`✉ sent #${r.id} to the inbox`);
      loadInbox();
    } catch (err) {
      if (!text.value) text.value = body;  // nothing lost: give the text back to edit
      local("✗ " + err.message, "tool-error");
    }
  }
  form.addEventListener("submit", (e) => { e.preventDefault(); submit(); });
  text.addEventListener("keydown", (e) => { if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); submit(); } });
  cancelBtn.addEventListener("click", async () => {
    try { const r = await hive.post("api/cancel", {}); local(r.cancelled ? "cancelling…" : "no turn is running"); }
    catch (err) { local("✗ " + err.message, "tool-error"); }
  });
  start();
})();
