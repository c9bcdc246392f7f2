// The task_queue dashboard: polls the public JSON API and draws what it says.
//
// Every value that comes from a task (ids, payloads, errors) reaches the page as text, through
// textContent or an attribute value, never as markup: ids and payloads are whatever clients sent.
// The page's Content-Security-Policy (no inline script) is the second line of defence.
"use strict";

const TOKEN_KEY = "task_queue.token";
const POLL_MS = 1500;
/** How much throughput history the chart shows, in seconds of the service's uptime; a younger
 * history is stretched to fill it, down to MIN_SPAN_S. */
const HISTORY_S = 300;
const MIN_SPAN_S = 60;
/** Samples closer than this are skipped: a refresh right after a click would make a sliver of
 * an interval whose rate is mostly noise. */
const MIN_SAMPLE_S = 1;
const PAGE_SIZE = 20;
/** How often a running attempt's age moves on, between two polls. */
const AGE_TICK_MS = 1000;
const SVG_NS = "http://www.w3.org/2000/svg";
const CHART_W = 600;
const CHART_H = 160;

const $ = (id) => document.getElementById(id);

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

// --- the API, with the token when the service wants one ------------------------------------

let tokenQuestion = null; // one question at a time, however many requests met a 401

function askForToken(refused) {
  if (tokenQuestion === null) {
    tokenQuestion = new Promise((resolve) => {
      const dialog = $("token-dialog");
      $("token-error").hidden = !refused;
      $("token-form").addEventListener(
        "submit",
        (event) => {
          event.preventDefault();
          sessionStorage.setItem(TOKEN_KEY, $("token-input").value);
          $("token-input").value = "";
          dialog.close();
          tokenQuestion = null;
          resolve();
        },
        { once: true },
      );
      dialog.showModal();
      $("token-input").focus();
    });
  }
  return tokenQuestion;
}

/** One request; resolves to {data, link}, or throws ApiError with the service's message. */
async function api(method, path, body) {
  for (;;) {
    const token = sessionStorage.getItem(TOKEN_KEY);
    // A header can carry only bytes: fetch would throw on such a token, not answer 401.
    if (token && /[^\x00-\xff]/.test(token)) {
      sessionStorage.removeItem(TOKEN_KEY);
      await askForToken(true);
      continue;
    }
    const headers = { Accept: "application/json" };
    if (token) headers.Authorization = `Bearer ${token}`;
    const init = { method, headers, cache: "no-store" };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const response = await fetch(path, init);
    if (response.status === 401) {
      // Forget a refused token, unless another request already replaced it meanwhile.
      if (token && sessionStorage.getItem(TOKEN_KEY) === token) {
        sessionStorage.removeItem(TOKEN_KEY);
      }
      await askForToken(Boolean(token));
      continue;
    }
    const text = response.status === 204 ? "" : await response.text();
    let data = null;
    try {
      data = text ? JSON.parse(text) : null;
    } catch {
      data = null;
    }
    if (!response.ok) {
      const message = data && typeof data.error === "string" ? data.error : `HTTP ${response.status}`;
      throw new ApiError(response.status, message);
    }
    return { data, link: response.headers.get("Link") };
  }
}

const byId = (id) => new URLSearchParams({ id }).toString();

// --- small DOM helpers: text only ------------------------------------------------------------

function element(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined) node.textContent = text;
  if (className) node.className = className;
  return node;
}

function button(text, label, onClick) {
  const node = element("button", text);
  node.type = "button";
  if (label) node.setAttribute("aria-label", label);
  node.addEventListener("click", onClick);
  return node;
}

function setMessage(text, isError) {
  const message = $("message");
  message.textContent = text;
  message.classList.toggle("error", Boolean(isError));
}

function formatTime(rfc3339) {
  if (!rfc3339) return "–";
  const date = new Date(rfc3339);
  return Number.isNaN(date.getTime()) ? rfc3339 : date.toLocaleTimeString();
}

function formatDuration(seconds) {
  const s = Math.floor(seconds);
  const parts = [[Math.floor(s / 86400), "d"], [Math.floor(s / 3600) % 24, "h"],
    [Math.floor(s / 60) % 60, "m"], [s % 60, "s"]];
  const first = parts.findIndex(([value]) => value > 0);
  return parts.slice(first === -1 ? 3 : first, (first === -1 ? 3 : first) + 2)
    .map(([value, unit]) => `${value}${unit}`).join(" ");
}

// --- how long a running attempt has been running ------------------------------------------
//
// A running task's updated_at is when its attempt started. The age is counted on this
// browser's clock (a clock behind the service's shows 0s until it catches up), and moves on
// every second between polls: each element showing one keeps its start in data-running-since.

function runningAge(since) {
  const started = new Date(since).getTime();
  if (Number.isNaN(started)) return "–";
  return formatDuration(Math.max(0, (Date.now() - started) / 1000));
}

function ageElement(tag, task, className) {
  const node = element(tag, runningAge(task.updated_at), className);
  node.dataset.runningSince = task.updated_at;
  return node;
}

function tickAges() {
  for (const node of document.querySelectorAll("[data-running-since]")) {
    const age = runningAge(node.dataset.runningSince);
    if (node.textContent !== age) node.textContent = age;
  }
}

// --- counters ------------------------------------------------------------------------------

function showStats(stats) {
  for (const node of document.querySelectorAll("[data-stat]")) {
    const key = node.dataset.stat;
    if (key === "uptime") {
      node.textContent = formatDuration(stats.uptime_s);
      continue;
    }
    const value = key.split(".").reduce((object, name) => (object == null ? undefined : object[name]), stats);
    node.textContent = value === undefined ? "–" : String(value);
  }
}

// --- queues: a row each, from /stats, with its pause or resume button ----------------------

let queuesShown = null; // the queues as last drawn: rows are rebuilt only when they change

function queueRow(queue) {
  const row = element("tr");
  row.dataset.queue = queue.name;
  row.dataset.paused = String(queue.paused);
  const action = queue.paused ? "resume" : "pause";
  const actions = element("td", undefined, "actions");
  actions.append(
    button(action, `${action} queue ${queue.name}`, async () => {
      try {
        await api("POST", `/queues/${action}?${new URLSearchParams({ name: queue.name })}`);
        setMessage(`${action === "pause" ? "paused" : "resumed"} queue ${queue.name}`);
      } catch (error) {
        setMessage(`${action} ${queue.name}: ${error.message}`, true);
      }
      await refresh();
    }),
  );
  row.append(
    element("th", queue.name),
    element("td", queue.paused ? "paused" : "running", queue.paused ? "status status-paused" : "status"),
    element("td", `${queue.busy} / ${queue.workers}`, "number"),
    element("td", String(queue.waiting), "number"),
    element("td", String(queue.scheduled), "number optional"),
    element("td", queue.max_per_second == null ? "–" : String(queue.max_per_second), "number optional"),
    actions,
  );
  row.firstChild.scope = "row";
  return row;
}

function showQueues(queues) {
  const key = JSON.stringify(queues ?? []);
  if (key === queuesShown) return;
  queuesShown = key;
  $("queue-rows").replaceChildren(...(queues ?? []).map(queueRow));
}

// --- schedules: a row each, from /schedules, with its pause or resume button ---------------

let schedulesShown = null; // the schedules as last drawn: rows are rebuilt only when they change

function scheduleWhen(schedule) {
  if (schedule.cron == null) return `every ${schedule.every_ms / 1000} s`;
  return schedule.timezone === "UTC" ? schedule.cron : `${schedule.cron} (${schedule.timezone})`;
}

function scheduleRow(schedule) {
  const row = element("tr");
  row.dataset.schedule = schedule.id;
  row.dataset.paused = String(schedule.paused);
  const action = schedule.paused ? "resume" : "pause";
  const actions = element("td", undefined, "actions");
  actions.append(
    button(action, `${action} schedule ${schedule.id}`, async () => {
      try {
        await api("POST", `/schedule/${action}?${new URLSearchParams({ id: schedule.id })}`);
        setMessage(`${action === "pause" ? "paused" : "resumed"} schedule ${schedule.id}`);
      } catch (error) {
        setMessage(`${action} ${schedule.id}: ${error.message}`, true);
      }
      await refresh();
    }),
  );
  const next = schedule.next_run_at == null ? "–" : new Date(schedule.next_run_at).toLocaleString();
  row.append(
    element("th", schedule.id),
    element("td", scheduleWhen(schedule)),
    element("td", schedule.paused ? "paused" : "active", schedule.paused ? "status status-paused" : "status"),
    element("td", next),
    element("td", String(schedule.fired), "number"),
    element("td", String(schedule.skipped), "number optional"),
    actions,
  );
  row.firstChild.scope = "row";
  return row;
}

async function listSchedules() {
  return (await api("GET", "/schedules")).data;
}

function showSchedules(schedules) {
  const key = JSON.stringify(schedules);
  if (key === schedulesShown) return;
  schedulesShown = key;
  $("schedule-rows").replaceChildren(...schedules.map(scheduleRow));
}

// --- throughput: tasks finished per second, from the deltas of the /stats totals -----------

let samples = []; // {uptime, done, failed}, oldest first

function recordSample(stats) {
  const sample = { uptime: stats.uptime_s, done: stats.totals.done, failed: stats.totals.failed };
  const last = samples[samples.length - 1];
  if (last && (sample.uptime < last.uptime || sample.done < last.done || sample.failed < last.failed)) {
    samples = []; // the service restarted: its totals began again
  } else if (last && sample.uptime - last.uptime < MIN_SAMPLE_S) {
    return;
  }
  samples.push(sample);
  // Keep one sample older than the window, so the first bar starts at its left edge.
  while (samples.length > 2 && samples[1].uptime < sample.uptime - HISTORY_S) samples.shift();
}

function rates() {
  const intervals = [];
  for (let i = 1; i < samples.length; i += 1) {
    const before = samples[i - 1];
    const after = samples[i];
    const seconds = after.uptime - before.uptime;
    intervals.push({
      from: before.uptime,
      to: after.uptime,
      done: (after.done - before.done) / seconds,
      failed: (after.failed - before.failed) / seconds,
    });
  }
  return intervals;
}

function niceCeiling(value) {
  if (value <= 1) return 1;
  const magnitude = 10 ** Math.floor(Math.log10(value));
  return [1, 2, 5, 10].map((step) => step * magnitude).find((bound) => bound >= value);
}

function svg(tag, attributes) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, String(value));
  return node;
}

function drawChart() {
  const chart = $("chart");
  const intervals = rates();
  const peak = Math.max(0, ...intervals.map((r) => r.done + r.failed));
  const top = niceCeiling(peak);
  const end = samples.length ? samples[samples.length - 1].uptime : 0;
  const span = samples.length ? Math.min(HISTORY_S, Math.max(MIN_SPAN_S, end - samples[0].uptime)) : MIN_SPAN_S;
  const x = (uptime) => Math.max(0, ((uptime - (end - span)) / span) * CHART_W);
  const height = (rate) => (rate / top) * (CHART_H - 4);
  const nodes = [svg("line", { x1: 0, y1: CHART_H - 0.5, x2: CHART_W, y2: CHART_H - 0.5, class: "axis" })];
  for (const fraction of [0.5, 1]) {
    const y = CHART_H - fraction * (CHART_H - 4);
    nodes.push(svg("line", { x1: 0, y1: y, x2: CHART_W, y2: y, class: "grid" }));
  }
  for (const r of intervals) {
    const left = x(r.from);
    const width = Math.max(0.5, x(r.to) - left - 0.5);
    const done = height(r.done);
    const failed = height(r.failed);
    if (done > 0) nodes.push(svg("rect", { x: left, y: CHART_H - done, width, height: done, class: "bar done" }));
    if (failed > 0) {
      nodes.push(svg("rect", { x: left, y: CHART_H - done - failed, width, height: failed, class: "bar failed" }));
    }
  }
  chart.replaceChildren(...nodes);
  const latest = intervals[intervals.length - 1] || { done: 0, failed: 0 };
  $("rate-done").textContent = latest.done.toFixed(1);
  $("rate-failed").textContent = latest.failed.toFixed(1);
  $("rate-peak").textContent = String(top);
  $("chart-span").textContent = `${Math.round(span / 60)} min`;
}

// --- the task table: newest first, a status filter, paging by the Link header ---------------

const table = {
  pages: [], // the URL of each page visited so far; the last one is on screen
  next: null, // the URL of the page after it, from its Link header
  shown: null, // what the rows were built from, so an unchanged page is not rebuilt
};

function firstPage() {
  const query = new URLSearchParams({ order: "desc", limit: String(PAGE_SIZE) });
  const status = $("status-filter").value;
  if (status) query.set("status", status);
  return `/tasks?${query}`;
}

function nextPage(link) {
  const match = /<([^>]*)>\s*;\s*rel="next"/.exec(link || "");
  if (!match || !match[1].startsWith("/tasks?")) return null;
  const url = new URL(match[1], location.origin);
  url.searchParams.set("order", "desc"); // the service keeps it; this only makes sure
  return url.pathname + url.search;
}

function resetTable() {
  table.pages = [firstPage()];
  table.shown = null;
}

const ACTIONS = [
  { name: "retry", when: ["failed", "cancelled"], method: "POST", path: "/task/retry", done: "retried" },
  { name: "cancel", when: ["queued"], method: "POST", path: "/task/cancel", done: "cancelled" },
  {
    name: "delete", when: ["done", "failed", "cancelled"], method: "DELETE", path: "/task", done: "deleted",
    confirm: true, // the only action that cannot be undone
  },
];

function actionButtons(task) {
  return ACTIONS.filter((action) => action.when.includes(task.status)).map((action) =>
    button(action.name, `${action.name} task ${task.id}`, async () => {
      if (action.confirm && !window.confirm(`${action.name} task ${task.id}?`)) return;
      try {
        await api(action.method, `${action.path}?${byId(task.id)}`);
        setMessage(`${action.done} task ${task.id}`);
      } catch (error) {
        setMessage(`${action.name} ${task.id}: ${error.message}`, true);
      }
      await refresh();
    }),
  );
}

function taskRow(task) {
  const row = element("tr");
  row.dataset.id = task.id;
  row.dataset.status = task.status;
  const id = element("td");
  const open = button(task.id, `show task ${task.id}`, () => showDetail(task.id));
  open.className = "link";
  id.append(open);
  const actions = element("td", undefined, "actions");
  actions.append(...actionButtons(task));
  const status = element("td", task.status, `status status-${task.status}`);
  if (task.status === "running") status.append(" ", ageElement("span", task, "age"));
  row.append(
    id,
    status,
    element("td", String(task.attempts), "number"),
    element("td", String(task.priority ?? 0), "number optional"),
    element("td", formatTime(task.created_at), "optional"),
    actions,
  );
  return row;
}

async function refreshTasks() {
  const url = table.pages[table.pages.length - 1];
  let reply;
  try {
    reply = await api("GET", url);
  } catch (error) {
    // The task a page started after was deleted: start again from the newest.
    if (error.status === 400 && table.pages.length > 1) {
      resetTable();
      return refreshTasks();
    }
    throw error;
  }
  table.next = nextPage(reply.link);
  $("older").disabled = table.next === null;
  $("newer").disabled = table.pages.length === 1;
  $("page-label").textContent = `page ${table.pages.length}`;
  const key = JSON.stringify(reply.data);
  if (key === table.shown) return;
  table.shown = key;
  $("task-rows").replaceChildren(...reply.data.map(taskRow));
  $("tasks-empty").hidden = reply.data.length > 0;
}

// --- the detail view ----------------------------------------------------------------------

let detailId = null;

async function showDetail(id) {
  detailId = id;
  await refreshDetail();
  $("detail").hidden = false;
  $("detail").scrollIntoView({ block: "nearest" });
}

async function refreshDetail() {
  if (detailId === null) return;
  const id = detailId;
  let task;
  try {
    task = (await api("GET", `/task?${byId(id)}`)).data;
  } catch (error) {
    if (error.status !== 404) throw error;
    setMessage(`task ${id} no longer exists`);
    closeDetail();
    return;
  }
  if (id !== detailId) return; // another task was opened meanwhile
  $("detail-id").textContent = task.id;
  const fields = [
    ["status", task.status],
    ["attempts", `${task.attempts} (max_retries ${task.max_retries})`],
    ["queue", task.queue ?? "default"],
    ["priority", String(task.priority ?? 0)],
    ["timeout_ms", task.timeout_ms == null ? "service default (TASK_TIMEOUT_MS)" : `${task.timeout_ms} ms`],
    ["target", describeTarget(task.target)],
    ["last_error", task.last_error ?? "–"],
    ["created_at", task.created_at],
    ["updated_at", task.updated_at],
    ["next_attempt_at", task.next_attempt_at ?? "–"],
  ];
  const rows = fields.flatMap(([name, value]) => [element("dt", name), element("dd", value, `field-${name}`)]);
  if (task.status === "running") {
    rows.splice(2, 0, element("dt", "running for"), ageElement("dd", task, "field-running_for"));
  }
  $("detail-fields").replaceChildren(...rows);
  $("detail-payload").textContent = JSON.stringify(task.payload, null, 2);
  // The result is whatever JSON the handler returned: shown as text, like the payload.
  $("detail-result").textContent = task.result == null ? "–" : JSON.stringify(task.result, null, 2);
  $("detail-actions").replaceChildren(...actionButtons(task));
}

function closeDetail() {
  detailId = null;
  $("detail").hidden = true;
}

// --- the enqueue form -----------------------------------------------------------------------

function enqueueBody(form) {
  const body = { id: form.elements.id.value };
  const payload = form.elements.payload.value.trim();
  if (payload) {
    try {
      body.payload = JSON.parse(payload);
    } catch {
      throw new Error("payload is not valid JSON");
    }
  }
  // Only the numbers given: the service's defaults apply to the rest.
  for (const name of ["max_retries", "priority", "delay_ms", "timeout_ms"]) {
    const value = form.elements[name].value.trim();
    if (value) body[name] = Number(value);
  }
  const queue = form.elements.queue.value.trim();
  if (queue) body.queue = queue;
  const url = form.elements.target_url.value.trim();
  if (url) {
    body.target = { url, method: form.elements.target_method.value };
    const headers = form.elements.target_headers.value.trim();
    if (headers) {
      try {
        body.target.headers = JSON.parse(headers);
      } catch {
        throw new Error("target headers are not valid JSON");
      }
    }
  } else if (form.elements.target_headers.value.trim()) {
    throw new Error("target headers need a target URL");
  }
  return body;
}

// The service shows every header value as "***": only the names say anything.
function describeTarget(target) {
  if (target == null) return "– (TASK_HANDLER)";
  const names = Object.keys(target.headers ?? {});
  return `${target.method} ${target.url}` + (names.length ? ` (headers: ${names.join(", ")})` : "");
}

async function enqueue(event) {
  event.preventDefault();
  const form = event.target;
  try {
    const task = (await api("POST", "/enqueue", enqueueBody(form))).data;
    setMessage(`enqueued task ${task.id}`);
    form.reset();
  } catch (error) {
    setMessage(`enqueue: ${error.message}`, true);
  }
  await refresh();
}

// --- polling --------------------------------------------------------------------------------

function setConnection(error) {
  $("connection").classList.toggle("offline", Boolean(error));
  const state = error ? `not updating: ${error.message}` : "live";
  // Only a change is announced: a screen reader should not read out every poll.
  if ($("connection-state").textContent !== state) $("connection-state").textContent = state;
  if (!error) $("connection-time").textContent = `· updated ${new Date().toLocaleTimeString()}`;
}

let round = null; // the refresh in flight
let again = null; // the one queued behind it

async function refreshOnce() {
  try {
    const stats = (await api("GET", "/stats")).data;
    showStats(stats);
    showQueues(stats.queues);
    showSchedules(await listSchedules());
    recordSample(stats);
    drawChart();
    await refreshTasks();
    await refreshDetail();
    setConnection(null);
  } catch (error) {
    setConnection(error);
  }
}

/** Read /stats, the task page and the open task. A call during a round gets a round that starts
 * after it (what it wants to see may have happened after the first one read), shared with any
 * other such call. */
function refresh() {
  if (round === null) {
    round = refreshOnce().finally(() => {
      round = null;
    });
    return round;
  }
  if (again === null) {
    again = round.then(() => {
      again = null;
      return refresh();
    });
  }
  return again;
}

async function poll() {
  await refresh();
  setTimeout(poll, POLL_MS);
}

function start() {
  resetTable();
  $("status-filter").addEventListener("change", () => {
    resetTable();
    refresh();
  });
  $("filter").addEventListener("submit", (event) => event.preventDefault());
  $("older").addEventListener("click", () => {
    if (table.next === null) return;
    table.pages.push(table.next);
    table.shown = null;
    refresh();
  });
  $("newer").addEventListener("click", () => {
    if (table.pages.length > 1) table.pages.pop();
    table.shown = null;
    refresh();
  });
  $("detail-close").addEventListener("click", closeDetail);
  $("enqueue").addEventListener("submit", enqueue);
  // The token is needed to see anything at all: the dialog does not close without one.
  $("token-dialog").addEventListener("cancel", (event) => event.preventDefault());
  setInterval(tickAges, AGE_TICK_MS);
  poll();
}

start();
