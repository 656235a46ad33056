/* Shared by the dashboard and the agent page: CSRF-guarded POSTs, region merging that
   keeps focus and typed input, age/TTL timers, toasts, and generic action buttons/forms. */
"use strict";
const hive = (() => {
  const csrf = document.querySelector('meta[name="csrf-token"]').content;

  async function post(url, data) {
    const resp = await fetch(url, {
      method: "POST", credentials: "same-origin",
      headers: { "content-type": "application/json", "x-csrf-token": csrf },
      body: JSON.stringify(data || {}),
    });
    let body = {};
    try { body = await resp.json(); } catch (e) { body = { error: resp.statusText }; }
    if (!resp.ok) throw new Error(body.error || `HTTP ${resp.status}`);
    return body;
  }

  function toast(text, isError) {
    const el = document.createElement("div");
    el.className = "toast" + (isError ? " err" : "");
    el.textContent = text;
    el.dataset.testid = "toast";
    el.onclick = () => el.remove();
    document.getElementById("toasts").append(el);
    if (!isError) setTimeout(() => el.remove(), 15000);
  }

  /* Typing marks a field dirty; a region update never replaces a busy node. */
  document.addEventListener("input", (e) => { if (e.target.form || e.target.matches("input,textarea")) e.target.dataset.dirty = "1"; });
  const source = new WeakMap();
  function busy(node) {
    if (node.contains(document.activeElement) && document.activeElement !== document.body) return true;
    return !!node.querySelector("[data-dirty]") || node.hasAttribute("data-dirty");
  }
  function patch(oldEl, newEl) {
    const olds = new Map();
    for (const c of Array.from(oldEl.children)) if (c.dataset.key) olds.set(c.dataset.key, c);
    const wanted = [];
    for (const n of Array.from(newEl.children)) {
      const key = n.dataset.key;
      const o = key ? olds.get(key) : undefined;
      if (o) {
        olds.delete(key);
        if (o.hasAttribute("data-list") && n.hasAttribute("data-list")) { patch(o, n); wanted.push(o); continue; }
        if (busy(o) || source.get(o) === n.outerHTML) { wanted.push(o); continue; }
        for (const d of o.querySelectorAll("details[id]")) {
          const twin = n.querySelector(`details[id="${d.id}"]`);
          if (twin) twin.open = d.open;
        }
      }
      source.set(n, n.outerHTML);
      // An action's outcome ("✓ done") was written into the old node; the server's
      // fresh copy knows nothing of it, so it moves across.
      if (o) carryResults(o, n);
      wanted.push(n);
    }
    // Drop what is gone first, then insert in place, moving only what must move: a node
    // that stays keeps its focus (moving a node, even to where it was, loses it).
    const keep = new Set(wanted);
    for (const c of Array.from(oldEl.children)) if (!keep.has(c)) c.remove();
    wanted.forEach((node, i) => {
      const at = oldEl.children[i];
      if (at !== node) oldEl.insertBefore(node, at || null);
    });
    while (oldEl.children.length > wanted.length) oldEl.lastElementChild.remove();
  }
  function carryResults(o, n) {
    for (const had of o.querySelectorAll(".result")) {
      if (!had.textContent) continue;
      const row = had.closest("[data-key]");
      const twin = row === o ? n : n.querySelector(`[data-key="${CSS.escape(row.dataset.key)}"]`);
      const gets = twin && twin.querySelector(".result");
      if (gets && !gets.textContent) { gets.textContent = had.textContent; gets.className = had.className; }
    }
  }
  function remember(root) {
    for (const c of root.children) { source.set(c, c.outerHTML); if (c.hasAttribute("data-list")) remember(c); }
  }
  function merge(region, html) {
    const tpl = document.createElement("template");
    tpl.innerHTML = html;
    const fresh = document.createElement("div");
    fresh.append(tpl.content);
    patch(region, fresh);
    tick();
    document.dispatchEvent(new CustomEvent("hive:merged", { detail: region.dataset.region }));
  }
  document.querySelectorAll("[data-region]").forEach(remember);

  /* ages ("12s") and countdowns, once a second */
  function parseTs(v) { return /^\d+(\.\d+)?$/.test(v) ? Number(v) * 1000 : Date.parse(v); }
  function fmt(secs) {
    secs = Math.max(0, Math.floor(secs));
    if (secs >= 86400) return Math.floor(secs / 86400) + "d";
    if (secs >= 3600) return Math.floor(secs / 3600) + "h";
    if (secs >= 60) return Math.floor(secs / 60) + "m" + (secs < 600 ? String(secs % 60).padStart(2, "0") + "s" : "");
    return secs + "s";
  }
  function tick() {
    const now = Date.now();
    document.querySelectorAll("[data-since]").forEach((el) => {
      const t = parseTs(el.dataset.since);
      el.textContent = isNaN(t) ? "" : fmt((now - t) / 1000);
    });
    document.querySelectorAll("[data-expires]").forEach((el) => {
      const left = (parseTs(el.dataset.expires) - now) / 1000;
      el.textContent = left > 0 ? "ttl " + fmt(left) : "expired";
      el.classList.toggle("low", left < 30);
    });
  }
  setInterval(tick, 1000);
  tick();

  function showResult(scope, text, isError) {
    // A live update may have replaced the row while the request was out: find it again.
    if (scope && !scope.isConnected && scope.dataset.key) {
      scope = document.querySelector(`[data-key="${CSS.escape(scope.dataset.key)}"]`) || scope;
    }
    const out = scope && scope.querySelector(".result");
    if (out) { out.textContent = text; out.className = "result " + (isError ? "err" : "okr"); }
    else toast(text, isError);
  }

  /* <button data-post="/api/..."> and <form data-action="/api/..."> */
  /* A button or form with data-confirm acts on the second click only: the first arms
     it (its text says what will happen) for a few seconds. */
  const CONFIRM_MS = 6000;
  function armed(btn, text) {
    if (btn.classList.contains("armed")) { disarm(btn); return true; }
    btn.dataset.label = btn.textContent;
    btn.textContent = text;
    btn.classList.add("armed");
    btn._disarm = setTimeout(() => disarm(btn), CONFIRM_MS);
    return false;
  }
  function disarm(btn) {
    clearTimeout(btn._disarm);
    if (btn.dataset.label !== undefined) { btn.textContent = btn.dataset.label; delete btn.dataset.label; }
    btn.classList.remove("armed");
  }
  document.addEventListener("keydown", (e) => { if (e.key === "Escape") document.querySelectorAll("button.armed").forEach(disarm); });

  document.addEventListener("click", async (e) => {
    const btn = e.target.closest("button[data-post]");
    if (!btn) return;
    e.preventDefault();
    if (btn.dataset.confirm && !armed(btn, btn.dataset.confirm)) return;
    const scope = btn.closest("[data-key]") || btn.parentElement;
    btn.disabled = true;
    try {
      const body = await post(btn.dataset.post, {});
      showResult(scope, "✓ done", false);
      document.dispatchEvent(new CustomEvent("hive:done", { detail: { url: btn.dataset.post, body } }));
    } catch (err) { showResult(scope, "✗ " + err.message, true); }
    finally { btn.disabled = false; }
  });
  function formData(form) {
    const data = {};
    for (const el of form.elements) {
      if (!el.name || el.disabled) continue;
      if (el.type === "checkbox") { if (el.dataset.multi !== undefined) { data[el.name] = data[el.name] || []; if (el.checked) data[el.name].push(el.value); } else data[el.name] = el.checked; }
      else if (el.type === "radio") { if (el.checked) data[el.name] = el.value; }
      else data[el.name] = el.value;
    }
    return data;
  }
  document.addEventListener("submit", async (e) => {
    const form = e.target.closest("form[data-action]");
    if (!form) return;
    e.preventDefault();
    const submitter = e.submitter || form.querySelector("button:not([type=button])");
    if (form.dataset.confirm && submitter && !armed(submitter, form.dataset.confirm)) return;
    const scope = form.closest("[data-key]") || form;
    const buttons = form.querySelectorAll("button");
    buttons.forEach((b) => (b.disabled = true));
    try {
      const body = await post(form.dataset.action, formData(form));
      showResult(form, "✓ done", false);
      for (const el of form.querySelectorAll("[data-dirty]")) delete el.dataset.dirty;
      if (form.dataset.reset) form.elements[form.dataset.reset].value = "";
      document.dispatchEvent(new CustomEvent("hive:done", { detail: { url: form.dataset.action, body } }));
    } catch (err) { showResult(form, "✗ " + err.message, true); }
    finally { buttons.forEach((b) => (b.disabled = false)); }
  });

  return { post, toast, merge, tick, csrf };
})();
