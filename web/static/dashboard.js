// The dashboard: one Server-Sent Events stream of numbers, pushed every second.
"use strict";
(function () {
  const $ = (id) => document.getElementById(id);
  const history = [];   // {t, ratings, events, lists}
  const fmt = (v, digits) => (v === null || v === undefined ? "-" : Number(v).toFixed(digits));
  const pct = (v) => (v === null || v === undefined ? "-" : (100 * v).toFixed(1) + "%");

  function rows(tbody, data, cells) {
    tbody.replaceChildren(...data.map((row) => {
      const tr = document.createElement("tr");
      for (const cell of cells(row)) {
        const td = document.createElement("td");
        if (cell instanceof Node) td.appendChild(cell); else td.textContent = cell;
        tr.appendChild(td);
      }
      return tr;
    }));
  }

  function bar(row) {   // the hit rate with its interval, drawn on a 0..100% line
    const wrap = document.createElement("div");
    wrap.className = "ci";
    const range = document.createElement("span");
    range.className = "range";
    range.style.left = (100 * row.ci_low) + "%";
    range.style.width = Math.max(0.5, 100 * (row.ci_high - row.ci_low)) + "%";
    const dot = document.createElement("span");
    dot.className = "dot";
    dot.style.left = (100 * (row.hit_rate || 0)) + "%";
    wrap.append(range, dot);
    return wrap;
  }

  const interval = (r) => pct(r.ci_low) + " - " + pct(r.ci_high);

  function draw() {
    const canvas = $("rates-chart");
    const ctx = canvas.getContext("2d");
    const w = canvas.width, h = canvas.height;
    ctx.clearRect(0, 0, w, h);
    if (history.length < 2) return;
    const series = [["ratings", "#2b6cb0"], ["events", "#38a169"], ["lists", "#d69e2e"]];
    const max = Math.max(1, ...history.flatMap((p) => series.map(([k]) => p[k] || 0)));
    ctx.fillStyle = "#666";
    ctx.font = "11px sans-serif";
    ctx.fillText(max.toFixed(1) + "/s", 4, 12);
    for (const [key, color] of series) {
      ctx.strokeStyle = color;
      ctx.lineWidth = 2;
      ctx.beginPath();
      history.forEach((p, i) => {
        const x = (i / 119) * (w - 1);
        const y = h - 2 - ((p[key] || 0) / max) * (h - 20);
        if (i === 0) ctx.moveTo(x, y); else ctx.lineTo(x, y);
      });
      ctx.stroke();
    }
  }

  function age(s) {
    return s < 120 ? Math.round(s) + " s" : s < 7200 ? Math.round(s / 60) + " min" : Math.round(s / 3600) + " h";
  }

  function render(d) {
    const wk = d.worker || {};
    $("worker-state").textContent = wk.ok ? "worker ok" : "worker: " + (wk.error || "down");
    $("worker-state").className = "pill " + (wk.ok ? "ok" : "bad");
    $("ratings-per-s").textContent = fmt(wk.ratings_per_s, 1);
    $("events-per-s").textContent = fmt(wk.events_per_s, 1);
    $("ratings-total").textContent = wk.ratings_total || 0;
    $("events-total").textContent = wk.events_total || 0;
    $("lists-per-s").textContent = fmt(d.lists_per_s, 1);
    $("lists-live").textContent = d.lists_live;
    $("lists-total").textContent = d.lists_total;
    const lat = d.latency || {};
    $("latency-list").textContent = fmt(lat.list_p50_ms, 0) + " / " + fmt(lat.list_p99_ms, 0);
    $("latency-frontend").textContent = fmt(lat.frontend_p50_ms, 0) + " / " + fmt(lat.frontend_p99_ms, 0);
    $("latency-samples").textContent = lat.samples || 0;
    $("model-version").textContent = d.model_version || wk.model_version || "-";
    $("model-items").textContent = wk.model_items === undefined || wk.model_items === null ? "-" : wk.model_items;
    $("model-age").textContent = wk.model_age_s === undefined || wk.model_age_s === null ? "-" : age(wk.model_age_s);
    const learned = wk.learned;
    $("learned").textContent = !learned ? "learned ranker: no weight set yet (recall order)"
      : "learned " + learned.version + ": gate NDCG@10 " + fmt(learned.validation.ndcg, 4) + " (serving before: "
        + fmt(learned.validation.serving_ndcg, 4) + (learned.validation.judged === undefined ? ""
          : "; over " + learned.validation.judged + " interactions not taken from a list")
        + "), log-loss " + fmt(learned.validation.log_loss, 4)
        + "; refused " + learned.refused + (learned.rejected.length ? " (last: " + learned.rejected[learned.rejected.length - 1].reason + ")" : "");
    const blend = wk.model_blend || {};
    $("model-blend").textContent = blend.name || "-";
    $("model-validation").textContent = blend.hr_at_10 === undefined ? (blend.note || "not validated")
      : "validation HR@10 " + fmt(blend.hr_at_10, 4) + ", NDCG@10 " + fmt(blend.ndcg_at_10, 4) + " on " + blend.validation_events
        + " newest events" + (blend.runner_up ? "; runner-up " + blend.runner_up.name + ": " + fmt(blend.runner_up.hr_at_10, 4) + " / " + fmt(blend.runner_up.ndcg_at_10, 4) : "");
    const group = d.group || {};
    $("lag-total").textContent = group.error && !group.members.length ? "-" : group.lag_total;
    rows($("workers").tBodies[0], group.members || [], (m) => [m.client_id, m.host,
      Object.entries(m.partitions).map(([t, ps]) => t + ": " + ps.join(",")).join("; ") || "-"]);
    const lags = [];
    for (const [topic, parts] of Object.entries(group.lag || {})) for (const [p, n] of Object.entries(parts)) lags.push([topic, p, n]);
    rows($("lag").tBodies[0], lags, (r) => r);
    $("users").textContent = d.users;
    const dead = Object.entries(d.dead_letters || {}).sort((a, b) => b[1] - a[1]);
    $("dead-total").textContent = dead.reduce((s, [, n]) => s + n, 0);
    rows($("dead-letters").tBodies[0], dead.length ? dead : [["none", 0]], ([reason, n]) => [reason, n]);
    rows($("hot-items").tBodies[0], d.hot_items || [], (r) => [r.name === r.item ? r.item : r.name + " (" + r.item + ")", r.category, r.events]);
    const ev = d.evaluation || {};
    rows($("eval-variant").tBodies[0], ev.by_variant || [], (r) => [r.variant, r.n, r.hits, pct(r.hit_rate), interval(r), bar(r)]);
    rows($("eval-version").tBodies[0], ev.by_version || [], (r) => [r.variant, r.model_version || "-", r.n, r.hits, pct(r.hit_rate), interval(r)]);
    rows($("eval-event").tBodies[0], ev.by_event || [], (r) => [r.variant, r.event, r.n, r.hits, pct(r.hit_rate), interval(r)]);
    $("unjoined").textContent = Object.values(ev.unjoined || {}).reduce((s, n) => s + n, 0);
    $("pending").textContent = ev.pending || 0;
    $("ab").textContent = (d.ab || []).length ? d.ab.map((a) => a.variant + ":" + a.weight).join(", ") : "off";
    history.push({t: d.now, ratings: wk.ratings_per_s, events: wk.events_per_s, lists: d.lists_per_s});
    if (history.length > 120) history.shift();
    draw();
    $("status").textContent = "updated " + new Date(d.now * 1000).toLocaleTimeString();
  }

  const source = new EventSource("/api/stream-dashboard");
  source.onopen = () => { $("stream-state").textContent = "live"; $("stream-state").className = "pill ok"; };
  source.onerror = () => { $("stream-state").textContent = "reconnecting"; $("stream-state").className = "pill bad"; };
  source.addEventListener("dashboard", (ev) => render(JSON.parse(ev.data)));
})();
