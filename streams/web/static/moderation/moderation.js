// The review queue page (/moderation): log in, list the pending tasks oldest first, decide them.
// Talks only to this origin's JSON API (docs/api.md, docs/web.md):
//   GET/POST/DELETE /v1/session, GET /v1/review/categories, GET /v1/review/tasks,
//   POST /v1/review/tasks/{id}/decision, and media from GET /v1/review/tasks/{id}/media.
// Calls go through /static/common/session.js (the session cookie, and X-Pulse-CSRF on changes).
// Text from the API is only ever put in the page as text (textContent), never as HTML.
"use strict";

const REFRESH_MS = 30000;
const IMAGE = /\.(jpe?g|png|gif|webp|bmp|tiff?)$/i;
const VIDEO = /\.(mp4|mov|webm|mkv)$/i;
const AUDIO = /\.(mp3|wav|ogg|flac|m4a)$/i;

let categories = [];  // [{name, description}] of the moderation policy
let refreshTimer = null;

const $ = (sel, root = document) => root.querySelector(sel);

function setState(state) {
  document.body.dataset.state = state;  // loading | login | queue | forbidden
}

const {api, message} = window.PulseSession;  // /static/common/session.js

function status(text, kind = "ok") {
  const el = $("#status");
  el.textContent = text;
  el.className = kind;
}

function age(ms) {
  const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min ago`;
  if (s < 7 * 86400) return `${Math.floor(s / 86400)} d ${Math.floor((s % 86400) / 3600)} h ago`;
  return `since ${new Date(ms).toISOString().slice(0, 10)}`;  // an old upload replayed or backfilled
}

// --------------------------------------------------------------------------------- session

async function start() {
  const res = await api("GET", "/v1/session");
  if (res.status !== 200) {
    setState("login");
    $("#login-form [name=name]").focus();
    return;
  }
  if (res.body.role !== "moderator") {
    $("#forbidden").textContent = `${res.body.name} has role ${res.body.role}; this page is for moderators.`;
    setState("forbidden");
    return;
  }
  $("#who").textContent = res.body.name;
  setState("queue");
  const cats = await api("GET", "/v1/review/categories");
  categories = cats.status === 200 ? cats.body.categories : [];
  await loadTasks();
  clearInterval(refreshTimer);
  refreshTimer = setInterval(loadTasks, REFRESH_MS);
}

async function login(event) {
  event.preventDefault();
  const form = event.target;
  $("#login-error").textContent = "";
  const name = form.elements.namedItem("name");  // form.name is the form's own name attribute
  const password = form.elements.namedItem("password");
  const res = await api("POST", "/v1/session", {name: name.value, password: password.value});
  if (res.status !== 200) {
    $("#login-error").textContent = message(res, `login failed (${res.status})`);
    return;
  }
  password.value = "";
  await start();
}

async function logout() {
  clearInterval(refreshTimer);
  await api("DELETE", "/v1/session");
  $("#queue").replaceChildren();
  $("#queue").dataset.loaded = "false";
  status("");
  setState("login");
}

// ----------------------------------------------------------------------------------- queue

async function loadTasks() {
  const queue = $("#queue-filter").value;
  const res = await api("GET", "/v1/review/tasks?limit=100" + (queue ? `&queue=${encodeURIComponent(queue)}` : ""));
  if (res.status === 401) { setState("login"); return; }
  if (res.status !== 200) { status(message(res, `the queue cannot be read (${res.status})`), "error"); return; }
  const list = $("#queue");
  const shown = new Map([...list.children].map((li) => [li.dataset.taskId, li]));
  const wanted = res.body.tasks;
  const keep = new Set(wanted.map((t) => t.task_id));
  for (const [id, li] of shown) if (!keep.has(id)) li.remove();
  let previous = null;
  for (const task of wanted) {  // oldest first; keep a card the moderator is working on as it is
    let li = shown.get(task.task_id);
    if (!li) li = renderTask(task);
    if (previous ? previous.nextSibling !== li : list.firstChild !== li) {
      list.insertBefore(li, previous ? previous.nextSibling : list.firstChild);
    }
    previous = li;
  }
  for (const li of list.children) $(".age", li).textContent = age(Number(li.dataset.createdAt));
  $("#empty").hidden = wanted.length > 0;
  $("#summary").textContent = wanted.length ? `${wanted.length} pending, oldest first` : "";
  list.dataset.loaded = "true";
}

function mediaElement(task) {
  const uri = task.media_uri || "";
  let el;
  if (IMAGE.test(uri)) {
    el = document.createElement("img");
    el.alt = `media of post ${task.post_id}`;
    el.loading = "lazy";
  } else if (VIDEO.test(uri)) {
    el = document.createElement("video");
    el.controls = true;
    el.preload = "metadata";
  } else if (AUDIO.test(uri)) {
    el = document.createElement("audio");
    el.controls = true;
    el.preload = "metadata";
  } else {
    el = document.createElement("a");
    el.textContent = "open the media";
    el.href = task.media_url;
    el.target = "_blank";
    el.rel = "noopener";
    return el;
  }
  el.src = task.media_url;
  el.addEventListener("error", () => {
    const note = document.createElement("p");
    note.className = "error";
    note.textContent = `the media cannot be shown (${uri})`;
    el.replaceWith(note);
  });
  return el;
}

function renderTask(task) {
  const li = $("#task-template").content.firstElementChild.cloneNode(true);
  li.dataset.taskId = task.task_id;
  li.dataset.createdAt = String(task.created_at_ms || Date.now());
  $(".queue", li).textContent = task.queue;
  const prio = $(".priority", li);
  prio.textContent = task.priority || "NORMAL";
  prio.classList.add(String(task.priority || "normal").toLowerCase());
  $(".age", li).title = task.created_at_ms ? new Date(task.created_at_ms).toISOString() : "";
  $(".post", li).textContent = `post ${task.post_id}` + (task.comment_id ? ` · comment ${task.comment_id}` : "");
  $(".author", li).textContent = task.author_id ? `by ${task.author_id}` : "";
  const text = $(".text", li);
  text.textContent = task.text || "";
  text.hidden = !task.text;
  const media = $(".media", li);
  if (task.media_url) media.append(mediaElement(task)); else media.remove();

  const scores = $(".scores", li);
  for (const s of task.scores) {
    const row = document.createElement("li");
    const name = document.createElement("span");
    name.className = "score-name";
    name.textContent = s.category;
    name.title = s.category;
    const bar = document.createElement("span");
    bar.className = "score-bar";
    const fill = document.createElement("span");
    fill.style.width = `${Math.round(Math.max(0, Math.min(1, s.score)) * 100)}%`;
    bar.append(fill);
    const value = document.createElement("span");
    value.className = "score-value";
    value.textContent = s.score.toFixed(2);
    row.append(name, bar, value);
    scores.append(row);
  }
  if (!task.scores.length) scores.append(Object.assign(document.createElement("li"), {textContent: "none"}));
  const reasons = $(".reasons", li);
  for (const r of task.reasons) reasons.append(Object.assign(document.createElement("li"), {textContent: r}));

  const fieldset = $(".categories", li);
  for (const c of categories) {
    const label = document.createElement("label");
    label.title = c.description;
    const box = document.createElement("input");
    box.type = "checkbox";
    box.name = "category";
    box.value = c.name;
    label.append(box, " " + c.name.replace(/_/g, " "));
    fieldset.append(label);
  }
  for (const b of li.querySelectorAll("button.act")) {
    b.addEventListener("click", () => decide(li, task, b.dataset.action));
  }
  return li;
}

async function decide(li, task, action) {
  const buttons = li.querySelectorAll("button.act");
  buttons.forEach((b) => { b.disabled = true; });
  $(".task-error", li).textContent = "";
  const chosen = [...li.querySelectorAll("input[name=category]:checked")].map((b) => b.value);
  const note = $(".note", li).value.trim();
  const res = await api("POST", `/v1/review/tasks/${encodeURIComponent(task.task_id)}/decision`,
                        {action, categories: chosen, note: note || null});
  if (res.status === 200) {
    li.remove();
    const cats = chosen.length ? ` (${chosen.join(", ")})` : "";
    status(`Decided: ${action}${cats} for post ${task.post_id}. The gate publishes or holds it now.`, "ok");
  } else if (res.status === 409 || res.status === 404) {
    li.remove();
    status(message(res, "this task is no longer pending"), "warn");
  } else if (res.status === 401) {
    setState("login");
    $("#login-error").textContent = message(res, "log in again");
    return;
  } else {
    $(".task-error", li).textContent = message(res, `the decision failed (${res.status})`);
    buttons.forEach((b) => { b.disabled = false; });
    return;
  }
  const left = $("#queue").children.length;
  $("#empty").hidden = left > 0;
  $("#summary").textContent = left ? `${left} pending, oldest first` : "";
}

document.addEventListener("DOMContentLoaded", () => {
  $("#login-form").addEventListener("submit", login);
  $("#logout").addEventListener("click", logout);
  $("#refresh").addEventListener("click", loadTasks);
  $("#queue-filter").addEventListener("change", () => { $("#queue").replaceChildren(); loadTasks(); });
  start();
});
