/* The dashboard's live half: SSE from /events, refetching only the regions an event
   touches; browser notifications; the message filter; the log follower. */
"use strict";
(() => {
  // The event types and the regions each touches come from the page (EventType in
  // controller/events.py is their one home).
  const data = document.getElementById("hive-events");
  const EVENTS = data ? JSON.parse(data.textContent) : { types: {}, touches: {} };
  const EV = EVENTS.types;
  const dirty = new Set();
  // The screen each paged region shows ({page, history}); sent with every refetch.
  const screens = {};
  let timer = null, inflight = false;
  function want(regions) {
    regions.forEach((r) => { if (document.getElementById("r-" + r)) dirty.add(r); });
    if (!timer) timer = setTimeout(flush, 120);
  }
  async function flush() {
    timer = null;
    if (inflight) { timer = setTimeout(flush, 120); return; }
    inflight = true;
    const names = Array.from(dirty); dirty.clear();
    try {
      await Promise.all(names.map(async (name) => {
        const query = new URLSearchParams(screens[name] || {}).toString();
        const resp = await fetch("/region/" + name + (query ? "?" + query : ""), { credentials: "same-origin" });
        if (resp.ok) hive.merge(document.getElementById("r-" + name), await resp.text());
      }));
    } finally { inflight = false; }
  }

  function notify(title, body) {
    if (!("Notification" in window) || Notification.permission !== "granted") return;
    try { new Notification(title, { body, tag: title }); } catch (e) { /* some browsers allow only service-worker notifications */ }
  }
  const permBtn = () => document.getElementById("enable-notifications");
  function showPerm() {
    const b = permBtn();
    if (b && "Notification" in window && Notification.permission === "default") b.hidden = false;
  }
  document.addEventListener("click", async (e) => {
    if (e.target.id === "enable-notifications") { await Notification.requestPermission(); e.target.hidden = true; }
  });
  document.addEventListener("hive:merged", showPerm);
  showPerm();

  const dot = document.getElementById("live-dot");
  function connect() {
    const es = new EventSource("/events");
    es.onopen = () => { dot && dot.classList.add("on"); };
    es.onerror = () => { dot && dot.classList.remove("on"); };
    const handle = (e, regions) => {
      want(regions);
      let data = {};
      try { data = JSON.parse(e.data); } catch (err) { return; }
      if (e.type === EV.APPROVAL_CREATED) notify("hyperhive: approval #" + data.approval.id, data.approval.summary || data.approval.ref);
      if (e.type === EV.APPLIED_ALARM && data.alarm) notify("hyperhive: gate alarm", data.alarm.message);
      if (e.type === EV.QUESTION_ASKED) notify("hyperhive: " + data.question.asker + " asks", data.question.question);
    };
    for (const [type, regions] of Object.entries(EVENTS.touches)) es.addEventListener(type, (e) => handle(e, regions));
    window.hiveEvents = es;
  }
  if (document.querySelector("[data-region]")) connect();

  document.addEventListener("hive:done", (e) => {
    const a = e.detail.body && e.detail.body.approval;
    if (a && a.status === "approved") hive.toast(`◆ approval #${a.id} merged → applied main ${a.applied_sha.slice(0, 12)}`);
    if (a && a.status === "denied") hive.toast(`✗ approval #${a.id} denied`);
  });

  document.addEventListener("click", (e) => {
    const btn = e.target.closest("button[data-region-page]");
    if (!btn) return;
    const region = btn.dataset.regionPage;
    screens[region] = { ...(screens[region] || {}), [btn.dataset.param]: btn.dataset.page };
    want([region]);
  });

  /* The agents table: a filter box and a sort, applied again after every live merge
     (which puts rows back in the server's order, by name). */
  const agentFilter = document.getElementById("agent-filter");
  const agentSort = document.getElementById("agent-sort");
  const SORTS = {
    name: (a, b) => a.dataset.name.localeCompare(b.dataset.name),
    state: (a, b) => a.dataset.state.localeCompare(b.dataset.state) || SORTS.name(a, b),
    spend: (a, b) => Number(b.dataset.spend) - Number(a.dataset.spend) || SORTS.name(a, b),
    activity: (a, b) => (b.dataset.activity || "").localeCompare(a.dataset.activity || "") || SORTS.name(a, b),
  };
  function arrangeAgents() {
    const body = document.querySelector("#r-agents tbody[data-list]");
    if (!body || !agentFilter) return;
    const rows = Array.from(body.querySelectorAll("tr[data-name]"));
    const q = agentFilter.value.trim().toLowerCase();
    let shown = 0;
    for (const tr of rows) {
      const hide = !!q && !q.split(/\s+/).every((w) => tr.dataset.text.toLowerCase().includes(w));
      tr.classList.toggle("hidden", hide);
      if (!hide) shown++;
    }
    const sorted = rows.slice().sort(SORTS[agentSort.value] || SORTS.name);
    sorted.forEach((tr, i) => { if (body.children[i] !== tr) body.insertBefore(tr, body.children[i] || null); });
    const count = document.getElementById("agent-count");
    if (count) count.textContent = q ? `${shown} of ${rows.length}` : `${rows.length} agents`;
  }
  if (agentFilter) {
    agentFilter.addEventListener("input", arrangeAgents);
    agentSort.addEventListener("change", arrangeAgents);
    document.addEventListener("hive:merged", (e) => { if (e.detail === "agents") arrangeAgents(); });
    arrangeAgents();
  }

  const filter = document.getElementById("message-filter");
  function applyFilter() {
    if (!filter) return;
    const q = filter.value.trim().toLowerCase();
    document.querySelectorAll(".flow li[data-text]").forEach((li) => li.classList.toggle("hidden", !!q && !li.dataset.text.toLowerCase().includes(q)));
  }
  if (filter) { filter.addEventListener("input", applyFilter); document.addEventListener("hive:merged", applyFilter); }

  const logview = document.getElementById("logview");
  if (logview && logview.dataset.agent) {
    const follow = document.getElementById("follow");
    const pull = async () => {
      if (!follow.checked) return;
      const resp = await fetch(`/api/logs/${logview.dataset.agent}?lines=400`, { credentials: "same-origin" });
      if (!resp.ok) return;
      const text = (await resp.json()).lines.join("\n") + "\n";
      if (text !== logview.textContent) { logview.textContent = text; logview.scrollTop = logview.scrollHeight; }
      const act = await fetch(`/api/activity/${logview.dataset.agent}`, { credentials: "same-origin" });
      if (act.ok) showActivity((await act.json()).activity);
    };
    let shownActivity = "";
    const showActivity = (lines) => {
      const key = JSON.stringify(lines);
      if (key === shownActivity) return;
      shownActivity = key;
      const list = document.getElementById("activity");
      list.replaceChildren(...lines.map((a) => {
        const li = document.createElement("li");
        li.className = "k-" + a.kind; li.dataset.kind = a.kind;
        const ts = document.createElement("span"); ts.className = "dim small"; ts.textContent = a.ts.slice(0, 19).replace("T", " ");
        li.append(ts, " " + a.text);
        return li;
      }));
    };
    logview.scrollTop = logview.scrollHeight;
    setInterval(pull, 1000);
  }
})();
