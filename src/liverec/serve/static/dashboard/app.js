/* liverec dashboard: polling, auth, tabs and the actions (rollback, user inspector).
   The views are drawn by views.js (window.LR.views). Data comes only from this server. */
"use strict";
(function () {
  const LR = window.LR;
  const KEY = "liverec.dashboard.key";
  const POLL_MS = 2000;
  const MAX_POINTS = 900;
  const state = { data: null, series: {}, tab: "traffic", since: null, busy: false, blocked: false };
  LR.state = state;

  // -- the API, with the key from sessionStorage (never in a URL) ---------------------------------
  async function api(path, options) {
    const opts = Object.assign({ headers: {} }, options || {});
    const key = sessionStorage.getItem(KEY);
    if (key) opts.headers.Authorization = "Bearer " + key;
    const r = await fetch(path, opts);
    if (r.status === 401 || r.status === 403) {
      const body = await r.json().catch(() => ({}));
      askKey(r.status === 403 ? "This key lacks the admin scope: " + (body.detail || "") : key ? "The key was refused." : "");
      const err = new Error("auth " + r.status);
      err.auth = true;
      throw err;
    }
    return r;
  }
  LR.api = api;

  function askKey(message) {
    state.blocked = true;
    setStatus("error", "API key needed");
    LR.$("key-error").textContent = message || "";
    LR.$("key-modal").classList.remove("hidden");
    LR.$("key-input").focus();
  }

  LR.$("key-form").addEventListener("submit", (e) => {
    e.preventDefault();
    sessionStorage.setItem(KEY, LR.$("key-input").value.trim());
    LR.$("key-input").value = "";
    LR.$("key-modal").classList.add("hidden");
    state.blocked = false;
    state.since = null;
    state.series = {};
    refresh();
  });
  LR.$("key-forget").addEventListener("click", () => {
    sessionStorage.removeItem(KEY);
    LR.$("key-input").value = "";
  });
  LR.$("key-button").addEventListener("click", () => askKey(""));

  function setStatus(kind, text) {
    const pill = LR.$("status");
    pill.className = "pill " + kind;
    LR.$("status-text").textContent = text;
  }

  // -- per-second series arrive incrementally (since=), quality buckets whole ------------------------
  function merge(name, incoming) {
    const have = state.series[name] || { t: [], values: {} };
    const n = have.t.length;
    for (const key of Object.keys(incoming.values)) {
      if (!have.values[key]) have.values[key] = new Array(n).fill(null);
    }
    for (let i = 0; i < incoming.t.length; i++) {
      have.t.push(incoming.t[i]);
      for (const key of Object.keys(have.values)) {
        const col = incoming.values[key];
        have.values[key].push(col ? col[i] : null);
      }
    }
    const extra = have.t.length - MAX_POINTS;
    if (extra > 0) {
      have.t.splice(0, extra);
      for (const key of Object.keys(have.values)) have.values[key].splice(0, extra);
    }
    state.series[name] = have;
    return have;
  }

  async function refresh() {
    if (state.busy || state.blocked) return;
    state.busy = true;
    try {
      const q = state.since === null ? "" : "?since=" + encodeURIComponent(state.since);
      const r = await api("/v1/dashboard" + q);
      if (!r.ok) throw new Error("GET /v1/dashboard: " + r.status);
      const d = await r.json();
      const last = d.traffic.series.t;
      if (last.length) state.since = last[last.length - 1];
      d.traffic.series = merge("traffic", d.traffic.series);
      d.freshness.series = merge("freshness", d.freshness.series);
      d.data_quality.series = merge("data", d.data_quality.series);
      d.catalog.series = merge("catalog", d.catalog.series);
      state.data = d;
      LR.$("served-model").textContent = d.models.served;
      LR.$("updated").textContent = "updated " + new Date(d.at * 1000).toLocaleTimeString([], { hour12: false });
      setStatus("live", "live");
      draw();
    } catch (err) {
      if (!err.auth) setStatus("error", "no answer");
    } finally {
      state.busy = false;
    }
  }
  LR.refresh = refresh;

  function draw() {
    if (!state.data) return;
    if (state.tab === "user") return; // drawn by its form, from the user routes
    const view = LR.views[state.tab];
    if (view) view(state.data);
  }

  // -- tabs -----------------------------------------------------------------------------------------
  for (const b of document.querySelectorAll("#tabs button")) {
    b.addEventListener("click", () => {
      state.tab = b.dataset.tab;
      for (const x of document.querySelectorAll("#tabs button")) x.classList.toggle("active", x === b);
      for (const v of document.querySelectorAll(".view")) v.classList.toggle("active", v.id === "view-" + state.tab);
      draw();
    });
  }

  // -- rollback (admin, POST /v1/models/rollback) after a confirm -------------------------------------
  LR.$("rollback").addEventListener("click", async () => {
    const m = state.data && state.data.models;
    const back = m && m.history.length ? m.history[m.history.length - 1] : null;
    if (!back) { toast("Nothing to roll back to."); return; }
    if (!window.confirm("Roll back the live model from " + m.live + " to " + back + "?")) return;
    try {
      const r = await api("/v1/models/rollback", { method: "POST" });
      const body = await r.json();
      toast(r.ok ? "Live is now " + body.live + " (was " + body.previous + ")" : "Rollback refused: " + body.detail);
    } catch (err) {
      toast("Rollback failed: " + err.message);
    }
    refresh();
  });

  function toast(text) {
    const t = LR.$("toast");
    t.textContent = text;
    t.classList.remove("hidden");
    clearTimeout(toast.timer);
    toast.timer = setTimeout(() => t.classList.add("hidden"), 4000);
  }

  // -- the user inspector ---------------------------------------------------------------------------
  LR.$("user-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const user = LR.$("user-input").value.trim();
    if (!user) return;
    const id = encodeURIComponent(user);
    LR.$("user-error").textContent = "";
    try {
      const [history, recs, feedback] = await Promise.all([
        api("/v1/users/" + id + "/history"),
        api("/v1/users/" + id + "/recommendations?k=10&explain=true&fields=title"),
        api("/v1/dashboard/users/" + id + "/events?limit=20"),
      ]);
      for (const r of [history, recs, feedback]) {
        if (!r.ok) throw new Error((await r.json().catch(() => ({}))).detail || "HTTP " + r.status);
      }
      LR.views.user(await history.json(), await recs.json(), await feedback.json());
    } catch (err) {
      if (!err.auth) LR.$("user-error").textContent = "Could not inspect " + user + ": " + err.message;
    }
  });

  window.addEventListener("resize", draw);
  refresh();
  setInterval(refresh, POLL_MS);
})();
