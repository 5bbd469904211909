// The operator dashboard (/dashboard): live figures of the pipeline and a feed inspector.
// Talks only to this origin (docs/operations.md), through /static/common/session.js:
//   GET/POST/DELETE /v1/session (login), GET /v1/ops/stream (server-sent events: `history` once,
//   then a `snapshot` a second), GET /v1/ops/feeds/{user_id} (the feed inspector).
// Charts: uPlot (npm, served from /static/dashboard/node_modules/). Text from the API is only
// ever put in the page as text (textContent), never as HTML.
"use strict";

const HISTORY_POINTS = 900;  // 15 minutes at one snapshot a second
const COLORS = ["#2563eb", "#dc2626", "#16a34a", "#d97706", "#7c3aed", "#0891b2", "#db2777", "#65a30d",
                "#ea580c", "#4f46e5", "#0d9488", "#b91c1c", "#a16207", "#9333ea", "#0284c7", "#be123c",
                "#15803d", "#c2410c"];

const $ = (sel, root = document) => root.querySelector(sel);
const state = {history: [], charts: {}, source: null, snapshots: 0};

function setState(s) { document.body.dataset.state = s; }  // loading | login | dashboard | forbidden

const {api, message} = window.PulseSession;  // /static/common/session.js

// ------------------------------------------------------------------------------ formatting

function num(v, digits = 1) {
  if (v === null || v === undefined || Number.isNaN(v)) return "–";
  if (Math.abs(v) >= 1000) return Math.round(v).toLocaleString("en");
  return v.toFixed(digits);
}

function seconds(v) {
  if (v === null || v === undefined) return "–";
  if (v < 1) return `${Math.round(v * 1000)} ms`;
  if (v < 120) return `${v.toFixed(1)} s`;
  if (v < 7200) return `${(v / 60).toFixed(1)} min`;
  return `${(v / 3600).toFixed(1)} h`;
}

function cell(tr, text, cls) {
  const td = document.createElement("td");
  td.textContent = text;
  if (cls) td.className = cls;
  tr.appendChild(td);
  return td;
}

function fill(tbody, rows, render) {
  tbody.replaceChildren();
  for (const row of rows) {
    const tr = document.createElement("tr");
    render(tr, row);
    tbody.appendChild(tr);
  }
}

// ---------------------------------------------------------------------------------- charts

// series: names in order; points: [{t (s), values: {name: number|null}}]
function drawChart(id, names, points, opts = {}) {
  const el = document.getElementById(id);
  const key = names.join("\u0000");
  let chart = state.charts[id];
  const data = [points.map((p) => p.t)].concat(names.map((n) => points.map((p) => p.values[n] ?? null)));
  if (!chart || chart.key !== key) {
    if (chart) chart.plot.destroy();
    const width = Math.max(200, el.clientWidth);
    const plot = new uPlot({
      width, height: opts.height || 150,
      legend: {show: names.length > 0, live: false},
      cursor: {show: true, drag: {x: false, y: false}},
      scales: {x: {time: true}, y: {range: (u, min, max) => [0, Math.max(max, opts.minMax || 1)]}},
      axes: [{size: 28, font: "11px system-ui"}, {size: 46, font: "11px system-ui"}],
      series: [{}].concat(names.map((n, i) => ({label: n, stroke: COLORS[i % COLORS.length], width: 1.5,
                                                spanGaps: true, points: {show: false}}))),
    }, data, el);
    chart = state.charts[id] = {plot, key};
  } else {
    chart.plot.setData(data);
  }
}

function agentPoints(index) {
  const names = new Set();
  for (const p of state.history) for (const a of Object.keys(p.agents || {})) names.add(a);
  const list = [...names].sort();
  const points = state.history.map((p) => {
    const values = {};
    for (const a of list) values[a] = p.agents && p.agents[a] ? p.agents[a][index] : null;
    return {t: p.at_ms / 1000, values};
  });
  return [list, points];
}

function lagPoints() {
  const names = new Set();
  for (const p of state.history) for (const k of Object.keys(p.lag_messages || {})) names.add(k);
  const list = [...names].sort();
  return [list, state.history.map((p) => ({t: p.at_ms / 1000,
                                           values: Object.fromEntries(list.map((k) => [k, (p.lag_messages || {})[k] ?? 0]))}))];
}

function drawCharts() {
  if (typeof uPlot === "undefined" || state.history.length === 0) return;
  let [names, points] = agentPoints(0);
  drawChart("chart-in", names, points);
  [names, points] = agentPoints(1);
  drawChart("chart-out", names, points);
  [names, points] = agentPoints(3);
  drawChart("chart-p99", names, points, {minMax: 0.01});
  [names, points] = lagPoints();
  drawChart("chart-lag", names, points);
  drawChart("chart-feed", ["p50", "p99"], state.history.map((p) => ({
    t: p.at_ms / 1000, values: {p50: p.upload_to_feed ? p.upload_to_feed[0] : null,
                                p99: p.upload_to_feed ? p.upload_to_feed[1] : null}})),
            {height: 110, minMax: 1});
}

// ------------------------------------------------------------------------------- snapshots

function historyPoint(s) {  // as streams.ops.snapshot.history_point
  const lag = {};
  for (const r of s.lag) { const k = `${r.group}/${r.topic}`; lag[k] = (lag[k] || 0) + r.messages; }
  return {at_ms: s.at_ms,
          agents: Object.fromEntries(s.agents.map((a) => [a.agent, [a.in_per_s, a.out_per_s, a.processing_p50_s, a.processing_p99_s]])),
          lag_messages: lag, upload_to_feed: [s.upload_to_feed.p50_s, s.upload_to_feed.p99_s]};
}

function render(s) {
  state.snapshots += 1;
  document.body.dataset.snapshots = String(state.snapshots);
  $("#updated").textContent = `updated ${new Date(s.at_ms).toLocaleTimeString()}`;
  const up = s.workers.filter((w) => w.up).length;
  $("#workers").textContent = `${up} of ${s.workers.length} worker${s.workers.length === 1 ? "" : "s"} answering`;
  const errs = Object.entries(s.errors || {});
  $("#errors").textContent = errs.length ? `${errs.length} source${errs.length > 1 ? "s" : ""} failing: ${errs.map(([k]) => k).join(", ")}` : "";
  $("#errors").title = errs.map(([k, v]) => `${k}: ${v}`).join("\n");
  $("#window").textContent = num(s.window_s, 0);

  const totalIn = s.agents.reduce((acc, a) => acc + a.in_per_s, 0);
  document.body.dataset.eventsIn = String(s.agents.reduce((acc, a) => acc + a.events_in, 0));
  document.body.dataset.inPerS = totalIn.toFixed(2);
  fill($("#agents tbody"), s.agents, (tr, a) => {
    cell(tr, a.agent, "name");
    cell(tr, num(a.in_per_s)).dataset.figure = "in_per_s";
    cell(tr, num(a.out_per_s));
    cell(tr, seconds(a.processing_p50_s));
    cell(tr, seconds(a.processing_p99_s));
    cell(tr, seconds(a.age_p99_s));
    cell(tr, a.events_in.toLocaleString("en")).dataset.figure = "events_in";
    cell(tr, a.events_out.toLocaleString("en"));
    cell(tr, a.dead_letters.toLocaleString("en"), a.dead_letters ? "warn" : "");
  });
  $("#agents-empty").hidden = s.agents.length > 0;

  const lag = [...s.lag].sort((a, b) => (b.messages - a.messages) || a.topic.localeCompare(b.topic)).slice(0, 14);
  fill($("#lag tbody"), lag, (tr, r) => {
    cell(tr, r.group, "name"); cell(tr, r.topic, "name"); cell(tr, String(r.partition));
    cell(tr, r.messages.toLocaleString("en"), r.messages ? "warn" : "");
    cell(tr, seconds(r.seconds));
  });

  const tiers = {};
  for (const m of s.moderation) (tiers[m.tier] = tiers[m.tier] || {})[m.action] = m.decisions;
  fill($("#moderation tbody"), Object.keys(tiers).sort(), (tr, t) => {
    cell(tr, t, "name");
    for (const a of ["ALLOW", "RESTRICT", "REVIEW", "BLOCK"]) cell(tr, (tiers[t][a] || 0).toLocaleString("en"));
  });
  fill($("#review tbody"), s.review_queue, (tr, q) => {
    cell(tr, q.queue, "name"); cell(tr, q.tasks.toLocaleString("en")); cell(tr, seconds(q.oldest_age_s));
  });
  const verdicts = s.copyright.verdicts.map((v) => `${v.action} ${v.verdicts}`).join(", ") || "none yet";
  const matches = s.copyright.matches.map((m) => `${m.kind} ${m.matches}`).join(", ") || "none";
  $("#copyright").textContent = `verdicts: ${verdicts}; matched references: ${matches}`;

  const f = s.upload_to_feed;
  if (!f.observed) $("#feed-latency").textContent = "no live post has reached feeds yet";
  else if (f.p50_s !== null) $("#feed-latency").textContent = `p50 ${seconds(f.p50_s)} · p99 ${seconds(f.p99_s)} (last ${num(s.window_s, 0)} s)`;
  else $("#feed-latency").textContent = `p50 ${seconds(f.p50_all_s)} · p99 ${seconds(f.p99_all_s)} (all ${f.observed.toLocaleString("en")} posts)`;
  fill($("#dead tbody"), [...s.dead_letters].sort((a, b) => b.count - a.count).slice(0, 8), (tr, d) => {
    cell(tr, d.consumer, "name"); cell(tr, d.reason, "name"); cell(tr, d.count.toLocaleString("en"));
  });
  const recent = $("#recent-dead");
  recent.replaceChildren();
  for (const d of (s.recent_dead_letters || []).slice(0, 3)) {
    const li = document.createElement("li");
    const where = d.partition === null || d.partition === undefined ? d.source_topic : `${d.source_topic}[${d.partition}]@${d.offset}`;
    li.textContent = `${new Date(d.at_ms).toLocaleTimeString()} ${d.consumer} ${where}: ${d.reason}`;
    li.title = d.reason;
    recent.appendChild(li);
  }
  const trends = $("#trends");
  trends.replaceChildren();
  for (const t of s.trends.slice(0, 8)) {
    const li = document.createElement("li");
    li.textContent = `${t.kind === "HASHTAG" ? "#" : ""}${t.subject} · ${t.state.toLowerCase()} · burst ${num(t.burst_score)} · ${t.count} mentions`;
    trends.appendChild(li);
  }
  if (!s.trends.length) trends.textContent = "no open trend";

  const last = state.history[state.history.length - 1];
  if (!last || last.at_ms < s.at_ms) state.history.push(historyPoint(s));
  if (state.history.length > HISTORY_POINTS) state.history.splice(0, state.history.length - HISTORY_POINTS);
  drawCharts();
}

function connect() {
  if (state.source) state.source.close();
  const source = state.source = new EventSource("/v1/ops/stream");
  source.addEventListener("history", (e) => { state.history = JSON.parse(e.data); });
  source.addEventListener("snapshot", (e) => {
    $("#live").textContent = "live"; $("#live").className = "live on";
    setState("dashboard");
    render(JSON.parse(e.data));
  });
  source.onerror = async () => {
    $("#live").textContent = "reconnecting"; $("#live").className = "live off";
    const who = await api("GET", "/v1/session");
    if (who.status === 401) { source.close(); setState("login"); }
  };
}

// -------------------------------------------------------------------------------- inspector

async function inspect(event) {
  event.preventDefault();
  const user = $("#inspect-form [name=user]").value.trim();
  if (!user) return;
  $("#inspect-status").textContent = "reading…";
  const res = await api("GET", `/v1/ops/feeds/${encodeURIComponent(user)}`);
  if (res.status !== 200) {
    $("#inspect-status").textContent = message(res, `failed (${res.status})`);
    $("#feed").dataset.loaded = "error";
    return;
  }
  const feed = res.body;
  $("#inspect-status").textContent = feed.generated_at
    ? `${feed.items.length} of ${feed.total} entries, ranked ${new Date(feed.generated_at).toLocaleString()}`
    : "no materialized feed for this user";
  fill($("#feed tbody"), feed.items, (tr, i) => {
    cell(tr, String(i.rank + 1));
    const post = cell(tr, i.caption ? `${i.post_id} — ${i.caption}` : i.post_id, "name post");
    post.title = i.kind || "";
    cell(tr, i.creator_id, "name");
    cell(tr, i.source, "name");
    cell(tr, num(i.score, 3));
    cell(tr, (i.reasons || []).join("; "), "reasons");
  });
  $("#feed").dataset.loaded = "true";
  const profile = $("#profile");
  profile.replaceChildren();
  const h = document.createElement("h3");
  h.textContent = `Profile of ${feed.user_id}`;
  profile.appendChild(h);
  for (const line of feed.profile_text) {
    const p = document.createElement("p");
    p.textContent = line;
    profile.appendChild(p);
  }
}

// ---------------------------------------------------------------------------------- session

async function start() {
  const who = await api("GET", "/v1/session");
  if (who.status === 401) { setState("login"); $("#login-form [name=name]").focus(); return; }
  if (who.status === 200 && who.body && who.body.role && who.body.role !== "operator") {
    setState("forbidden");
    $("#forbidden").textContent = `${who.body.name} has role ${who.body.role}; the dashboard needs an operator.`;
    return;
  }
  connect();
}

async function login(event) {
  event.preventDefault();
  const name = $("#login-form [name=name]"), password = $("#login-form [name=password]");
  $("#login-error").textContent = "";
  const res = await api("POST", "/v1/session", {name: name.value, password: password.value});
  if (res.status !== 200 && res.status !== 201) {
    $("#login-error").textContent = message(res, `login failed (${res.status})`);
    return;
  }
  password.value = "";
  await start();
  if (document.body.dataset.state === "loading") setState("dashboard");
}

async function logout() {
  if (state.source) state.source.close();
  await api("DELETE", "/v1/session");
  setState("login");
}

window.addEventListener("DOMContentLoaded", () => {
  $("#login-form").addEventListener("submit", login);
  $("#inspect-form").addEventListener("submit", inspect);
  $("#logout").addEventListener("click", logout);
  window.addEventListener("resize", () => {
    for (const c of Object.values(state.charts)) {
      const el = c.plot.root.parentElement;
      c.plot.setSize({width: Math.max(200, el.clientWidth), height: c.plot.height});
    }
  });
  start();
});
