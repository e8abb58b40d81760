/**
 * GET / on the admin listener: one self-contained page (no CDN, no build step) that polls GET /stats
 * every second and draws per-route request rate and latency percentiles as small SVG charts, with
 * error codes, breakers, bulkheads, rate limits and upstream endpoints beside them. Rates and
 * interval percentiles are computed in the page from the difference between two polls; the totals
 * it shows are exactly /metrics' counters.
 */
export const DASHBOARD_HTML = /* html */ `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Pillion</title>
<style>
  :root { --bg:#0f1419; --panel:#171e26; --line:#263040; --text:#d7dde5; --dim:#7d8a99; --ok:#3fb950; --warn:#d29922; --bad:#f85149; --a:#58a6ff; --b:#d2a8ff; --c:#f0883e; }
  * { box-sizing: border-box; }
  body { margin:0; font:13px/1.4 system-ui, -apple-system, "Segoe UI", sans-serif; background:var(--bg); color:var(--text); }
  header { display:flex; align-items:baseline; gap:16px; padding:12px 20px; border-bottom:1px solid var(--line); }
  header h1 { font-size:16px; margin:0; }
  #status { color:var(--dim); }
  #status.bad { color:var(--bad); }
  main { padding:16px 20px; display:grid; gap:16px; }
  section { background:var(--panel); border:1px solid var(--line); border-radius:6px; padding:12px 14px; }
  h2 { font-size:13px; margin:0 0 10px; color:var(--dim); text-transform:uppercase; letter-spacing:.05em; }
  .routes { display:grid; grid-template-columns:repeat(auto-fill, minmax(340px, 1fr)); gap:12px; }
  .route { border:1px solid var(--line); border-radius:6px; padding:10px; }
  .route h3 { margin:0 0 6px; font-size:14px; display:flex; justify-content:space-between; }
  .figures { display:flex; gap:2px 14px; flex-wrap:wrap; color:var(--dim); margin-bottom:6px; }
  .figures b { color:var(--text); font-weight:600; }
  svg { width:100%; height:56px; display:block; background:#121820; border-radius:4px; }
  .legend { color:var(--dim); font-size:11px; margin:2px 0 8px; }
  .legend i { display:inline-block; width:10px; height:2px; vertical-align:middle; margin:0 4px 0 8px; }
  table { border-collapse:collapse; width:100%; }
  th, td { text-align:left; padding:3px 8px 3px 0; border-bottom:1px solid var(--line); white-space:nowrap; }
  th { color:var(--dim); font-weight:500; }
  td.n { text-align:right; font-variant-numeric:tabular-nums; }
  .closed, .healthy { color:var(--ok); } .half_open, .ejected { color:var(--warn); } .open, .unhealthy, .panic { color:var(--bad); }
  .bar { width:120px; height:8px; background:#121820; border-radius:4px; overflow:hidden; display:inline-block; vertical-align:middle; margin-right:6px; }
  .bar span { display:block; height:100%; background:var(--a); }
  .empty { color:var(--dim); }
  .two { display:grid; grid-template-columns:repeat(auto-fit, minmax(420px, 1fr)); gap:16px; }
</style>
</head>
<body>
<header><h1>Pillion</h1><span id="status">connecting…</span></header>
<main>
  <section><h2>Routes</h2><div class="routes" id="routes"><span class="empty">no requests yet</span></div></section>
  <div class="two">
    <section><h2>Error codes</h2><div id="errors"></div></section>
    <section><h2>Circuit breakers</h2><div id="breakers"></div></section>
  </div>
  <div class="two">
    <section><h2>Bulkheads</h2><div id="bulkheads"></div></section>
    <section><h2>Rate limits</h2><div id="ratelimits"></div></section>
  </div>
  <section><h2>Upstream endpoints</h2><div id="upstreams"></div></section>
</main>
<script>
"use strict";
const HISTORY = 60;
const history = new Map(); // route -> [{ t, requests, latency }]
const $ = (id) => document.getElementById(id);
const esc = (s) => String(s).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
const ms = (seconds) => seconds == null ? "–" : seconds < 1 ? (seconds * 1000).toFixed(seconds < 0.01 ? 2 : 1) + " ms" : seconds.toFixed(2) + " s";

/** Prometheus' histogram_quantile over non-cumulative counts. */
function quantile(q, counts, bounds) {
  const total = counts.reduce((a, b) => a + b, 0);
  if (total === 0) return null;
  const rank = q * total;
  let seen = 0;
  for (let i = 0; i < counts.length; i++) {
    if (counts[i] > 0 && seen + counts[i] >= rank) {
      if (i === bounds.length) return bounds[bounds.length - 1];
      const lower = i === 0 ? 0 : bounds[i - 1];
      return lower + (bounds[i] - lower) * ((rank - seen) / counts[i]);
    }
    seen += counts[i];
  }
  return bounds[bounds.length - 1];
}

function line(values, max, color) {
  const points = [];
  values.forEach((v, i) => { if (v != null) points.push((i * 300 / (HISTORY - 1)).toFixed(1) + "," + (54 - (v / max) * 50).toFixed(1)); });
  return points.length ? '<polyline fill="none" stroke="' + color + '" stroke-width="1.5" points="' + points.join(" ") + '"/>' : "";
}

function chart(series, colors) {
  const max = Math.max(1e-9, ...series.flat().filter((v) => v != null));
  return '<svg viewBox="0 0 300 56" preserveAspectRatio="none">' + series.map((s, i) => line(s, max, colors[i])).join("") + "</svg>";
}

function table(head, rows, empty) {
  if (rows.length === 0) return '<span class="empty">' + empty + "</span>";
  return "<table><tr>" + head.map((h) => "<th>" + h + "</th>").join("") + "</tr>" + rows.join("") + "</table>";
}

function renderRoutes(stats) {
  const cards = stats.routes.map((r) => {
    const points = history.get(r.route) || [];
    const rates = [], p50 = [], p95 = [], p99 = [];
    for (let i = 1; i < points.length; i++) {
      const dt = (points[i].t - points[i - 1].t) / 1000;
      const delta = points[i].latency.map((c, j) => c - points[i - 1].latency[j]);
      rates.push(dt > 0 ? (points[i].requests - points[i - 1].requests) / dt : null);
      p50.push(quantile(0.5, delta, stats.buckets)); p95.push(quantile(0.95, delta, stats.buckets)); p99.push(quantile(0.99, delta, stats.buckets));
    }
    const pad = (a) => Array(Math.max(0, HISTORY - a.length)).fill(null).concat(a.slice(-HISTORY));
    const rate = rates.length ? rates[rates.length - 1] : null;
    const errors = (r.byClass["5xx"] || 0);
    return '<div class="route" data-route="' + esc(r.route) + '">' +
      "<h3><span>" + esc(r.route === "-" ? "(no route)" : r.route) + '</span><span><b data-field="requests">' + r.requests + "</b> requests</span></h3>" +
      '<div class="figures"><span>rate <b data-field="rate">' + (rate == null ? "–" : rate.toFixed(1)) + "</b>/s</span>" +
      '<span>5xx <b data-field="5xx">' + errors + "</b></span>" +
      '<span>in flight <b data-field="inflight">' + r.inFlight + "</b></span>" +
      '<span>p50 <b data-field="p50">' + ms(r.p50) + '</b></span><span>p95 <b data-field="p95">' + ms(r.p95) + '</b></span><span>p99 <b data-field="p99">' + ms(r.p99) + "</b></span></div>" +
      chart([pad(rates)], ["var(--a)"]) + '<div class="legend"><i style="background:var(--a)"></i>requests/s</div>' +
      chart([pad(p50), pad(p95), pad(p99)], ["var(--a)", "var(--b)", "var(--c)"]) +
      '<div class="legend"><i style="background:var(--a)"></i>p50<i style="background:var(--b)"></i>p95<i style="background:var(--c)"></i>p99 latency</div></div>';
  });
  $("routes").innerHTML = cards.length ? cards.join("") : '<span class="empty">no requests yet</span>';
}

function render(stats) {
  for (const r of stats.routes) {
    const points = history.get(r.route) || [];
    points.push({ t: stats.time, requests: r.requests, latency: r.latency });
    if (points.length > HISTORY + 1) points.shift();
    history.set(r.route, points);
  }
  renderRoutes(stats);
  $("errors").innerHTML = table(["route", "code", "count"], stats.errors.map((e) =>
    '<tr data-error="' + esc(e.route + "/" + e.error) + '"><td>' + esc(e.route === "-" ? "(no route)" : e.route) + "</td><td>" + esc(e.error) + '</td><td class="n" data-field="count">' + e.count + "</td></tr>"), "no errors");
  $("breakers").innerHTML = table(["route", "upstream", "state", "calls", "failures", "rejected"], stats.breakers.map((b) =>
    '<tr data-breaker="' + esc(b.route + "/" + b.upstream) + '"><td>' + esc(b.route) + "</td><td>" + esc(b.upstream) + '</td><td class="' + b.state + '" data-field="state">' + b.state +
    '</td><td class="n">' + b.calls + '</td><td class="n">' + b.failures + '</td><td class="n" data-field="rejections">' + b.rejections + "</td></tr>"), "no circuit breakers configured");
  $("bulkheads").innerHTML = table(["route", "occupancy", "active", "queued", "rejected"], stats.bulkheads.map((b) =>
    '<tr data-bulkhead="' + esc(b.route) + '"><td>' + esc(b.route) + '</td><td><span class="bar"><span style="width:' + Math.min(100, (100 * b.active) / b.maxConcurrent) + '%"></span></span></td>' +
    '<td class="n"><span data-field="active">' + b.active + "</span>/" + b.maxConcurrent + '</td><td class="n"><span data-field="queued">' + b.queued + "</span>/" + b.maxQueue +
    '</td><td class="n" data-field="rejections">' + b.rejections + "</td></tr>"), "no bulkheads configured");
  $("ratelimits").innerHTML = table(["route", "limit", "decision", "count"], stats.rateLimits.map((l) =>
    '<tr data-ratelimit="' + esc(l.route + "/" + l.limit + "/" + l.decision) + '"><td>' + esc(l.route) + "</td><td>" + esc(l.limit) + "</td><td>" + esc(l.decision) + '</td><td class="n" data-field="count">' + l.count + "</td></tr>"), "no rate limit decisions");
  const endpoints = [];
  for (const u of stats.upstreams) for (const e of u.endpoints) {
    const health = e.ejected ? "ejected" : e.healthy ? "healthy" : "unhealthy";
    endpoints.push('<tr data-endpoint="' + esc(u.name + " " + e.url) + '"><td>' + esc(u.name) + (u.panic ? ' <span class="panic">panic</span>' : "") + "</td><td>" + esc(e.url) +
      '</td><td class="' + health + '" data-field="health">' + health + '</td><td class="n" data-field="active">' + e.active + '</td><td class="n">' + e.consecutiveFailures + '</td><td class="n">' + e.timesEjected + "</td></tr>");
  }
  $("upstreams").innerHTML = table(["upstream", "endpoint", "health", "active", "failures in a row", "times ejected"], endpoints, "no upstreams");
}

async function poll() {
  try {
    const response = await fetch("stats", { cache: "no-store" });
    if (!response.ok) throw new Error("GET /stats answered " + response.status);
    const stats = await response.json();
    render(stats);
    $("status").textContent = "updated " + new Date(stats.time).toLocaleTimeString();
    $("status").className = "";
    document.body.dataset.updated = String(stats.time);
  } catch (error) {
    $("status").textContent = "cannot reach the gateway: " + error.message;
    $("status").className = "bad";
  }
  setTimeout(poll, 1000);
}
poll();
</script>
</body>
</html>
`
