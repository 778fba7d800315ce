/* liverec dashboard: drawing each view from one /v1/dashboard snapshot. Charts are Plotly
   (plotly.min.js from the installed plotly package); text goes in through textContent only. */
"use strict";
(function () {
  const LR = (window.LR = window.LR || {});
  LR.$ = (id) => document.getElementById(id);
  const COLORS = ["#4f46e5", "#0ea5e9", "#10b981", "#f59e0b", "#ef4444", "#8b5cf6", "#14b8a6", "#ec4899", "#64748b"];
  const CONFIG = { displayModeBar: false, responsive: true, displaylogo: false };
  const FONT = getComputedStyle(document.body).fontFamily;

  function el(tag, attrs, children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "text") node.textContent = v;
      else if (k === "class") node.className = v;
      else node.setAttribute(k, v);
    }
    for (const c of [].concat(children || [])) if (c !== null && c !== undefined) node.append(c);
    return node;
  }
  const num = (x, d = 0) => (x === null || x === undefined ? "–" : Number(x).toLocaleString(undefined, { maximumFractionDigits: d, minimumFractionDigits: d }));
  const pct = (x, d = 1) => (x === null || x === undefined ? "–" : (100 * x).toFixed(d) + "%");
  const clock = (t) => (t ? new Date(t * 1000).toLocaleTimeString([], { hour12: false }) : "–");
  const stamp = (t) => new Date(t * 1000).toLocaleString([], { hour12: false });
  const dates = (t) => t.map((x) => new Date(x * 1000));
  const last = (arr) => { for (let i = (arr || []).length - 1; i >= 0; i--) if (arr[i] !== null) return arr[i]; return null; };
  const label = (name, prefix) => name.slice(prefix.length).replace(/_/g, " ");

  function layout(extra) {
    const base = {
      margin: { l: 52, r: 16, t: 6, b: 42 },
      paper_bgcolor: "#fff", plot_bgcolor: "#fff",
      font: { family: FONT, size: 12, color: "#334155" },
      colorway: COLORS,
      xaxis: { type: "date", gridcolor: "#f1f5f9", linecolor: "#e2e8f0" },
      yaxis: { gridcolor: "#eef2f7", zerolinecolor: "#e2e8f0", rangemode: "tozero" },
      legend: { orientation: "h", x: 0, y: 1.12, font: { size: 11.5 } },
      hovermode: "x unified", showlegend: true,
    };
    const out = Object.assign(base, extra || {});
    if (out.yaxis2) out.margin = Object.assign({}, out.margin, { r: 64 }); // room for the right axis
    return out;
  }

  const hasPoints = (t) => (t.y || []).some((y) => y !== null && y !== undefined) && (t.x || []).length > 0;

  function chart(id, traces, extra, empty) {
    const node = LR.$(id);
    if (!node || node.offsetParent === null) return; // a hidden tab is drawn when it is shown
    const spec = layout(extra);
    if (!traces.some(hasPoints)) {
      spec.annotations = [{ text: empty || "no data yet", showarrow: false, xref: "paper", yref: "paper", x: 0.5, y: 0.5,
        font: { size: 13, color: "#94a3b8" } }];
      spec.xaxis = Object.assign({}, spec.xaxis, { visible: false });
      spec.yaxis = Object.assign({}, spec.yaxis, { visible: false });
      spec.showlegend = false;
    }
    window.Plotly.react(node, traces, spec, CONFIG);
  }

  function lines(series, prefix, opts) {
    const x = dates(series.t);
    return Object.keys(series.values).filter((k) => k.startsWith(prefix)).sort().map((k) =>
      Object.assign({ x, y: series.values[k], name: label(k, prefix) || k, type: "scatter", mode: "lines",
        line: { width: 2 }, connectgaps: true }, opts || {}));
  }

  function kpis(id, cards) {
    LR.$(id).replaceChildren(...cards.map(([name, value, hint]) =>
      el("div", { class: "kpi" }, [el("div", { class: "label", text: name }), el("div", { class: "value", text: value }),
        hint ? el("div", { class: "hint", text: hint }) : null])));
  }

  function table(id, head, rows, empty) {
    const node = LR.$(id);
    if (!rows.length) { node.replaceChildren(el("div", { class: "empty", text: empty || "nothing yet" })); return; }
    const th = head.map((h) => el("th", { class: h.startsWith("#") ? "num" : "", text: h.replace(/^#/, "") }));
    const body = rows.map((r) => el("tr", {}, r.map((c, i) =>
      el("td", { class: head[i].startsWith("#") ? "num" : "" }, c instanceof Node ? c : document.createTextNode(String(c))))));
    node.replaceChildren(el("table", {}, [el("thead", {}, el("tr", {}, th)), el("tbody", {}, body)]));
  }
  const badge = (text, kind) => el("span", { class: "badge " + (kind || ""), text });

  const views = (LR.views = {});

  views.traffic = (d) => {
    const s = d.traffic.series, v = s.values;
    const evs = Object.keys(v).filter((k) => k.startsWith("events:"));
    const total = s.t.map((_, i) => evs.reduce((a, k) => a + (v[k][i] || 0), 0));
    kpis("kpi-traffic", [
      ["Events / s", num(last(total), 1), "all types, impressions included"],
      ["Requests / s", num(last(v.requests_per_s), 1)],
      ["Latency p50", num(last(v.latency_p50_ms), 1) + " ms", "last 10 s"],
      ["Latency p99", num(last(v.latency_p99_ms), 1) + " ms", "last 10 s"],
      ["Errors", num(d.traffic.errors_5xx) + " · " + num(d.traffic.errors_4xx), "5xx · 4xx since start"],
    ]);
    const busy = evs.filter((k) => v[k].some((x) => x));
    chart("chart-events", lines(s, "events:", { stackgroup: "events", line: { width: 0.5 } })
      .filter((t) => busy.includes("events:" + t.name.replace(/ /g, "_"))), { yaxis: { title: { text: "events/s" }, rangemode: "tozero", gridcolor: "#eef2f7" } });
    chart("chart-requests", [
      ...lines(s, "requests_per_s", { name: "requests/s" }),
      ...lines(s, "errors_4xx_per_s", { name: "4xx/s", line: { color: "#f59e0b", width: 2 } }),
      ...lines(s, "errors_5xx_per_s", { name: "5xx/s", line: { color: "#ef4444", width: 2 } }),
    ]);
    chart("chart-latency", [
      ...lines(s, "latency_p50_ms", { name: "p50" }),
      ...lines(s, "latency_p99_ms", { name: "p99", line: { color: "#ef4444", width: 2, dash: "dot" } }),
    ], { yaxis: { title: { text: "ms" }, rangemode: "tozero", gridcolor: "#eef2f7" } });
  };

  function qualityRows(q) {
    const rows = [];
    for (const [dim, groups] of [["policy", q.by_policy], ["cohort", q.by_cohort], ["model", q.by_model]]) {
      for (const g of groups) rows.push([badge(dim, "accent"), g.key, num(g.impressions), num(g.clicks), pct(g.ctr, 2),
        num(g.reward_per_impression, 3), pct(g.exploration_share)]);
    }
    return rows;
  }

  views.quality = (d) => {
    const q = d.quality, s = q.series;
    const all = q.by_cohort.reduce((a, g) => ({ i: a.i + g.impressions, c: a.c + g.clicks, r: a.r + g.reward, e: a.e + g.impressions * (g.exploration_share || 0) }), { i: 0, c: 0, r: 0, e: 0 });
    kpis("kpi-quality", [
      ["CTR", pct(all.i ? all.c / all.i : null, 2), num(all.i) + " impressions"],
      ["Reward / impression", num(all.i ? all.r / all.i : null, 3)],
      ["Exploration share", pct(all.i ? all.e / all.i : null), "propensity < 0.5"],
      ["Feedback credited", num(q.attributed), num(q.unattributed) + " not attributable"],
    ]);
    const pctAxis = { tickformat: ".0%", rangemode: "tozero", gridcolor: "#eef2f7" };
    chart("chart-ctr-cohort", lines(s, "ctr:cohort:"), { yaxis: pctAxis });
    chart("chart-ctr-policy", lines(s, "ctr:policy:"), { yaxis: pctAxis });
    const models = q.by_model.slice(-15).map((g) => Object.assign({}, g, { key: g.key.replace(/^transformer@/, "") }));
    chart("chart-ctr-model", [
      { x: models.map((g) => g.key), y: models.map((g) => g.ctr), type: "bar", name: "CTR", marker: { color: "#4f46e5" },
        customdata: models.map((g) => g.impressions), hovertemplate: "%{x}<br>CTR %{y:.2%}<br>%{customdata} impressions<extra></extra>" },
      { x: models.map((g) => g.key), y: models.map((g) => g.reward_per_impression), type: "scatter", mode: "markers",
        name: "reward/impression", yaxis: "y2", marker: { color: "#f59e0b", size: 9 } },
    ], { xaxis: { type: "category", automargin: true }, yaxis: pctAxis, hovermode: "closest",
      yaxis2: { overlaying: "y", side: "right", rangemode: "tozero", showgrid: false } });
    chart("chart-explore", [
      ...lines(s, "exploration_share", { name: "exploration share" }),
      ...lines(s, "reward_per_impression", { name: "reward/impression", yaxis: "y2", line: { color: "#10b981", width: 2 } }),
    ], { yaxis: pctAxis, yaxis2: { overlaying: "y", side: "right", rangemode: "tozero", showgrid: false } });
    table("table-quality", ["by", "key", "#impressions", "#clicks", "#CTR", "#reward/imp.", "#exploration"], qualityRows(q));
  };

  const OUTCOME = { published: ["#10b981", "good"], rejected: ["#ef4444", "bad"], "rolled back": ["#f59e0b", "warn"], trained: ["#4f46e5", "accent"] };

  views.models = (d) => {
    const m = d.models;
    LR.$("live-version").textContent = m.live || "none";
    LR.$("live-detail").textContent = "served: " + m.served + (m.history.length ? " · rollback to " + m.history[m.history.length - 1] : "");
    LR.$("learner-why").textContent = "Online learner: " + (m.learner.why || (m.learner.running ? "running" : "not running"));
    LR.$("rollback").disabled = !m.history.length;
    const learner = m.decisions.filter((x) => x.source !== "search");
    const count = (list, o) => list.filter((x) => x.outcome === o).length;
    const search = m.decisions.filter((x) => x.source === "search");
    kpis("kpi-models", [
      ["Live version", m.live || "none", m.served],
      ["Versions", num(m.versions.length), m.versions.filter((v) => v.online).length + " online"],
      ["Published", num(count(learner, "published")), "by the online gate" + (search.length ? " · search " + count(search, "published") : "")],
      ["Rejected", num(count(learner, "rejected")), count(learner, "rolled back") + " rolled back" + (search.length ? " · search " + count(search, "rejected") : "")],
    ]);
    const traces = [];
    for (const [list, axis, symbol, prefix] of [[learner, "y", "circle", ""], [search, "y2", "diamond", "search "]]) {
      for (const o of Object.keys(OUTCOME)) {
        const pts = list.filter((x) => x.outcome === o && (x.candidate !== null || x.live !== null));
        if (!pts.length) continue;
        traces.push({ x: pts.map((x) => new Date(x.at * 1000)), y: pts.map((x) => (x.candidate !== null ? x.candidate : x.live)),
          text: pts.map((x) => (x.version || x.source) + "<br>" + x.reason), name: prefix + o, type: "scatter", mode: "markers", yaxis: axis,
          marker: { color: OUTCOME[o][0], size: 11, symbol, line: { color: "#fff", width: 1.5 } }, hovertemplate: "%{text}<br>score %{y:.4f}<extra></extra>" });
      }
    }
    const extra = { hovermode: "closest", yaxis: { title: { text: "model gate: NDCG@10" }, gridcolor: "#eef2f7" } };
    if (search.length) extra.yaxis2 = { title: { text: "search gate: MRR" }, overlaying: "y", side: "right", showgrid: false };
    chart("chart-decisions", traces, extra, "no versions or gate decisions yet");
    table("table-decisions", ["time", "outcome", "version", "#candidate", "#live", "reason"],
      m.decisions.slice(-30).reverse().map((x) => [clock(x.at), badge(x.outcome, (OUTCOME[x.outcome] || [])[1]), x.version || "–",
        num(x.candidate, 4), num(x.live, 4), x.reason]));
    table("table-versions", ["version", "", "kind", "#score", "parent", "created"],
      m.versions.slice().reverse().map((v) => [v.version, v.live ? badge("live", "good") : "", v.online ? "online" : "offline",
        num(v.score, 4), v.parent || "–", clock(v.created_at)]));
  };

  views.freshness = (d) => {
    const f = d.freshness, s = f.series, v = s.values;
    kpis("kpi-freshness", [
      ["Event → visible p50", num(last(v.visible_p50_ms), 1) + " ms", "p99 " + num(last(v.visible_p99_ms), 1) + " ms"],
      ["Event → trained p50", last(v.trained_p50_s) === null ? "–" : num(last(v.trained_p50_s), 1) + " s", "last 5 min"],
      ["Learner lag", f.lag_events === null ? "no model" : num(f.lag_events) + " events", "log " + num(f.log_offset) + " · model " + num(f.model_offset)],
      ["Learner status age", f.learner_age_s === null ? "no learner" : num(f.learner_age_s, 1) + " s"],
    ]);
    chart("chart-visible", [
      ...lines(s, "visible_p50_ms", { name: "p50" }),
      ...lines(s, "visible_p99_ms", { name: "p99", line: { color: "#ef4444", width: 2, dash: "dot" } }),
    ], { yaxis: { title: { text: "ms" }, rangemode: "tozero", gridcolor: "#eef2f7" } });
    chart("chart-trained", [
      ...lines(s, "trained_p50_s", { name: "event → trained p50 (s)" }),
      ...lines(s, "learner_age_s", { name: "learner status age (s)", line: { color: "#64748b", width: 1.5, dash: "dot" } }),
    ], { yaxis: { title: { text: "s" }, rangemode: "tozero", gridcolor: "#eef2f7" } }, "no new weights served since this page opened");
    chart("chart-lag", lines(s, "lag_events", { name: "log offset − model offset", fill: "tozeroy", line: { color: "#8b5cf6", width: 2 } }),
      { yaxis: { title: { text: "events" }, rangemode: "tozero", gridcolor: "#eef2f7" } }, "no trained model is served");
  };

  views.data = (d) => {
    const q = d.data_quality;
    const sum = (o) => Object.values(o).reduce((a, b) => a + b, 0);
    const heldBack = sum(q.held) - (q.held.ok || 0);
    kpis("kpi-data", [
      ["Rejected events", num(sum(q.rejected)), Object.entries(q.rejected).map(([k, n]) => k + " " + n).join(" · ") || "none"],
      ["Duplicate ids", num(q.duplicates), "not stored again"],
      ["Held back", q.filter_enabled ? num(heldBack) : "filter off", q.filter_enabled ? "of " + num(sum(q.held)) + " screened" : ""],
      ["Quarantined now", num(q.quarantined_users.length) + " · " + num(q.quarantined_items.length), "users · items"],
    ]);
    chart("chart-rejected", [...lines(q.series, "rejected:"), ...lines(q.series, "duplicates_per_s", { name: "duplicate ids" })]);
    chart("chart-held", lines(q.series, "held:"), {}, q.filter_enabled ? "nothing held back yet" : "[filters] serving is off");
    const rows = (list) => list.map((x) => [x.id, clock(x.until)]);
    table("table-q-users", ["user", "until (event time)"], rows(q.quarantined_users), "no user is quarantined");
    table("table-q-items", ["item", "until (event time)"], rows(q.quarantined_items), "no item is quarantined");
  };

  views.catalog = (d) => {
    const c = d.catalog;
    kpis("kpi-catalog", [
      ["Items", num(c.items)], ["Users", num(c.users)],
      ["New in the last hour", num(c.created_last_hour)], ["New in the last day", num(c.created_last_day)],
    ]);
    const items = c.newest.slice(0, 12).reverse();
    chart("chart-newest", [
      { y: items.map((i) => i.item_id), x: items.map((i) => i.impressions), type: "bar", orientation: "h", name: "impressions", marker: { color: "#4f46e5" } },
      { y: items.map((i) => i.item_id), x: items.map((i) => i.clicks), type: "bar", orientation: "h", name: "clicks", marker: { color: "#10b981" } },
    ], { barmode: "group", hovermode: "closest", xaxis: { type: "linear", gridcolor: "#f1f5f9" }, yaxis: { type: "category", automargin: true }, margin: { l: 90, r: 16, t: 6, b: 30 } });
    chart("chart-catalog", [
      ...lines(c.series, "items", { name: "items" }),
      ...lines(c.series, "users", { name: "users", yaxis: "y2" }),
    ], { yaxis2: { overlaying: "y", side: "right", rangemode: "tozero", showgrid: false } });
    const now = Date.now() / 1000;
    table("table-newest", ["item", "created", "#age", "#impressions", "#clicks", "#CTR"], c.newest.map((i) =>
      [i.item_id, stamp(i.created_at), age(now - i.created_at), num(i.impressions), num(i.clicks), pct(i.impressions ? i.clicks / i.impressions : null, 2)]));
  };

  function age(s) {
    if (s < 90) return Math.max(0, Math.round(s)) + " s";
    if (s < 5400) return Math.round(s / 60) + " min";
    if (s < 172800) return Math.round(s / 3600) + " h";
    return Math.round(s / 86400) + " d";
  }

  views.user = (history, recs, feedback) => {
    LR.$("user-seen").textContent = history.seen + " items touched";
    LR.$("user-model").textContent = recs.model + " · " + recs.policy;
    table("user-history", ["item", "type", "time"], history.items.slice().reverse().map((e) =>
      [e.item_id, e.type + (e.stars ? " " + "★".repeat(e.stars) : ""), stamp(e.timestamp)]), "no history: the popularity fallback serves this user");
    const list = LR.$("user-recs");
    list.replaceChildren(...recs.items.map((it) => {
      const x = it.explanation;
      const chips = [];
      if (x) {
        for (const h of (x.history || []).slice(0, 3)) chips.push(badge("because " + h.item_id + " (" + num(h.influence, 2) + ")", "accent"));
        if (x.content) chips.push(badge("text like " + x.content.item_id, ""));
        for (const r of x.reasons || []) chips.push(badge(r.kind + (r.detail ? ": " + r.detail : ""), r.kind === "exploration" ? "warn" : ""));
      }
      return el("li", {}, [
        el("div", {}, [el("span", { class: "item", text: it.item_id }), it.title ? el("span", { class: "muted", text: " " + it.title }) : null,
          el("span", { class: "score", text: "score " + num(it.score, 3) + (it.propensity < 1 ? " · p " + num(it.propensity, 3) : "") })]),
        el("div", { class: "sentence" + (x ? "" : " muted"), text: x ? x.sentence : "no explanation from this server" }),
        el("div", { class: "chips" }, chips),
      ]);
    }));
    table("user-feedback", ["time", "type", "item", "#reward", "list"], feedback.events.map((e) =>
      [clock(e.timestamp), e.type + (e.value !== null ? " " + num(e.value, 1) : ""), e.item_id, num(e.reward, 2),
        e.request_id ? e.request_id.slice(0, 8) + (e.position !== null ? " #" + e.position : "") : "–"]), "no feedback yet");
  };
})();
