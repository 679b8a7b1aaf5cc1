// The wallboard's glue: the push channel, the snapshot, the periodic figures, and the DOM.
// Every request is a same-origin GET without credentials; a failing source shows its error in its
// own panel and never stops the others (nothing here throws out of an event handler).

import { formatAgo, formatDuration, parseTime } from "./format.mjs";
import {
  applyBuild, boardView, failureReason, fromChange, fromSnapshotRow, prune, FINISHED_WINDOW_MS,
} from "./live_builds.mjs";
import {
  auditAgeItems, chosenWindow, durationItems, gateFailures, gateList, refreshSeconds, retryRejections,
  successRateItems, WINDOWS,
} from "./panels.mjs";
import { barChartLayout, renderBarChart } from "./svg_charts.mjs";

const params = new URLSearchParams(location.search);
const state = {
  window: chosenWindow(params.get("window")) ?? "24h",
  refreshMs: refreshSeconds(params.get("refresh")) * 1000,
  builds: new Map(),
  lastEventId: "",
  events: 0,
  gatesServed: null,
  gatesCheckedAt: 0,
  renderQueued: false,
  refreshing: false,
  refreshAgain: false,
  shownWindow: "24h",
};
const MAX_ROWS = 60;
const GATES_RECHECK_MS = 5 * 60 * 1000;

const $ = (id) => document.getElementById(id);

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined && text !== null) node.textContent = String(text);
  return node;
}

function cells(row, values) {
  for (const [className, value] of values) row.append(element("td", className, value));
  return row;
}

async function getJSON(path) {
  try {
    const response = await fetch(path, { headers: { Accept: "application/json" }, credentials: "omit" });
    let body = null;
    try {
      body = await response.json();
    } catch {
      body = null;
    }
    return { ok: response.ok, status: response.status, body };
  } catch (exc) {
    return { ok: false, status: 0, body: { error: String(exc) } };
  }
}

function problem(result) {
  const detail = result.body && typeof result.body.error === "string" ? result.body.error : "no answer";
  return result.status ? `HTTP ${result.status}: ${detail}` : detail;
}

function showProblem(container, result) {
  container.replaceChildren(element("p", "problem", `unavailable: ${problem(result)}`));
}

// ---- live builds ---------------------------------------------------------------------------

function setLive(status) {
  document.body.dataset.live = status;
  $("live-state").textContent = { open: "live", connecting: "connecting…", reconnecting: "reconnecting…" }[status] ?? status;
}

function scheduleRender() {
  if (state.renderQueued) return;
  state.renderQueued = true;
  requestAnimationFrame(() => {
    state.renderQueued = false;
    renderBuilds();
  });
}

function statusCell(status) {
  const cell = element("td", "status");
  cell.append(element("span", `badge status-${status}`, status));
  return cell;
}

function buildRow(b, now, finished) {
  const row = element("tr", `build status-${b.status}`);
  row.dataset.buildId = b.build_id;
  row.dataset.status = b.status;
  cells(row, [["pipeline", `${b.project}/${b.pipeline}`], ["branch", b.branch], ["build-id", b.build_id]]);
  row.append(statusCell(b.status));
  if (finished) {
    cells(row, [
      ["duration", formatDuration(b.duration_ms)],
      ["when", formatAgo(now - parseTime(b.finished_at))],
      ["reason", b.status === "SUCCEEDED" ? "" : failureReason(b)],
    ]);
  } else {
    const started = parseTime(b.started_at) ?? parseTime(b.first_seen_at);
    cells(row, [["duration", started === null ? "–" : formatDuration(now - started)], ["who", b.trigger_user]]);
  }
  return row;
}

function fillTable(body, builds, now, finished, emptyText) {
  body.replaceChildren();
  for (const b of builds.slice(0, MAX_ROWS)) body.append(buildRow(b, now, finished));
  if (builds.length === 0) {
    const row = element("tr", "empty");
    const cell = element("td", "", emptyText);
    cell.colSpan = finished ? 7 : 6;
    row.append(cell);
    body.append(row);
  } else if (builds.length > MAX_ROWS) {
    const row = element("tr", "more");
    const cell = element("td", "", `+${builds.length - MAX_ROWS} more`);
    cell.colSpan = finished ? 7 : 6;
    row.append(cell);
    body.append(row);
  }
}

function renderBuilds() {
  const now = Date.now();
  const view = boardView(state.builds, now, FINISHED_WINDOW_MS);
  fillTable($("running-rows"), view.running, now, false, "no build running");
  fillTable($("finished-rows"), view.finished, now, true, "no build finished in the last hour");
  $("running-count").textContent = String(view.running.length);
  $("finished-count").textContent = String(view.finished.length);
  $("finished-summary").textContent =
    `${view.counts.SUCCEEDED} succeeded · ${view.counts.FAILED} failed · ${view.counts.CANCELED} canceled`;
  document.body.classList.toggle("has-failures", view.counts.FAILED > 0);
}

async function loadSnapshot() {
  const now = Date.now();
  const [running, finished] = await Promise.all([
    getJSON("/builds?status=running&since=24h&limit=500"),
    getJSON("/builds?status=finished&since=1h&limit=500"),
  ]);
  for (const result of [running, finished]) {
    if (!result.ok) {
      $("builds-problem").textContent = `snapshot unavailable: ${problem(result)}`;
      continue;
    }
    for (const row of result.body.builds) applyBuild(state.builds, fromSnapshotRow(row, now));
  }
  if (running.ok && finished.ok) $("builds-problem").textContent = "";
  document.body.dataset.snapshot = "loaded";
  scheduleRender();
}

function connectLive() {
  setLive("connecting");
  const url = state.lastEventId
    ? `/stream/builds?last_event_id=${encodeURIComponent(state.lastEventId)}`
    : "/stream/builds";
  const source = new EventSource(url);
  let snapshotAsked = false;
  const snapshotOnce = () => {
    if (!snapshotAsked && document.body.dataset.snapshot !== "loaded") {
      snapshotAsked = true;
      loadSnapshot();
    }
  };
  source.addEventListener("open", () => {
    setLive("open");
    snapshotOnce(); // after the stream is positioned, so no change falls between the two
  });
  source.addEventListener("build-status", (event) => {
    state.lastEventId = event.lastEventId || state.lastEventId;
    let change;
    try {
      change = JSON.parse(event.data);
    } catch {
      return;
    }
    state.events += 1;
    document.body.dataset.events = String(state.events);
    if (applyBuild(state.builds, fromChange(change, Date.now()))) scheduleRender();
  });
  source.addEventListener("gap", (event) => {
    state.lastEventId = event.lastEventId || state.lastEventId;
    $("builds-problem").textContent = "some changes expired before they were read; reloaded from ClickHouse";
    document.body.dataset.snapshot = "stale";
    loadSnapshot();
  });
  source.addEventListener("error", () => {
    if (source.readyState === EventSource.CLOSED) {
      // refused (e.g. 503: the worker serves its maximum of streams): try again, resuming
      setLive("reconnecting");
      source.close();
      snapshotOnce();
      setTimeout(connectLive, 5000);
    } else {
      setLive("reconnecting");
    }
  });
}

// ---- figures from ClickHouse ---------------------------------------------------------------

function renderCharts(result) {
  const success = $("chart-success");
  const duration = $("chart-duration");
  if (!result.ok) {
    showProblem(success, result);
    showProblem(duration, result);
    return;
  }
  const rows = result.body.rows;
  const empty = `no build finished in the last ${state.shownWindow}`;
  renderBarChart(success, "success-rate", barChartLayout(successRateItems(rows), { max: 1 }), empty);
  renderBarChart(duration, "duration", barChartLayout(durationItems(rows), { valueWidth: 210 }), empty);
}

function table(headers, rows) {
  const node = element("table", "figures");
  const head = element("tr");
  for (const header of headers) head.append(element("th", "", header));
  node.append(element("thead"));
  node.tHead.append(head);
  const body = element("tbody");
  for (const row of rows) body.append(row);
  node.append(body);
  return node;
}

function renderAudits(listResult, statsResult) {
  const ages = $("chart-audit-age");
  if (statsResult.ok) {
    const items = auditAgeItems(statsResult.body);
    const open = items.some((item) => item.segments[0].value > 0);
    renderBarChart(ages, "audit-age", barChartLayout(open ? items : [], { labelWidth: 80, valueWidth: 60 }), "");
  } else {
    showProblem(ages, statsResult);
  }
  const list = $("audit-list");
  if (!listResult.ok) {
    showProblem(list, listResult);
    return;
  }
  const entries = [...listResult.body.audits].sort((a, b) => b.audit.age_seconds - a.audit.age_seconds);
  const stuck = entries.filter((entry) => entry.stuck).length;
  $("audits-stuck").textContent = stuck ? `${stuck} stuck` : "none stuck";
  $("audits-stuck").className = stuck ? "tag bad" : "tag good";
  if (entries.length === 0) {
    list.replaceChildren(element("p", "empty", "no audit in review"));
    return;
  }
  const rows = entries.slice(0, 15).map((entry) => {
    const row = element("tr", entry.stuck ? "audit stuck" : "audit");
    row.dataset.auditId = entry.audit.audit_id;
    cells(row, [
      ["", `${entry.audit.project}/${entry.audit.pipeline}`],
      ["", `${entry.audit.subject_kind} ${entry.audit.subject_id}`],
      ["", entry.audit.status],
      ["", formatDuration(entry.audit.age_seconds * 1000)],
      ["mark", entry.stuck ? "STUCK" : ""],
    ]);
    return row;
  });
  list.replaceChildren(table(["pipeline", "subject", "status", "age", ""], rows));
}

function renderNotifications(result) {
  const panel = $("notifications");
  if (!result.ok) {
    showProblem(panel, result);
    return;
  }
  const subscriptions = result.body.subscriptions;
  if (subscriptions.length === 0) {
    panel.replaceChildren(element("p", "empty", `no delivery in the last ${state.shownWindow}`));
    return;
  }
  const rows = subscriptions.map((s) => {
    const row = element("tr", s.gave_up > 0 ? "bad" : "");
    cells(row, [
      ["", `${s.channel}: ${s.subscription_id}`], ["num", s.sent], ["num", s.deduplicated], ["num", s.retries],
      ["num gave-up", s.gave_up], ["num", formatDuration(s.latency_p95_ms)],
    ]);
    return row;
  });
  panel.replaceChildren(table(["subscription", "sent", "dedup", "retries", "gave up", "p95"], rows));
}

function renderRetries(result) {
  const panel = $("retries");
  if (!result.ok) {
    showProblem(panel, result);
    return;
  }
  const { rejections, total } = retryRejections(result.body);
  $("retries-summary").textContent = `${rejections.reduce((n, r) => n + r.decisions, 0)} of ${total} decisions rejected`;
  if (rejections.length === 0) {
    panel.replaceChildren(element("p", "empty", `no retry rejected in the last ${state.shownWindow}`));
    return;
  }
  const rows = rejections.map((r) => cells(element("tr", "rejection"), [
    ["", r.reason], ["", r.action], ["num", r.decisions], ["num", r.builds],
  ]));
  panel.replaceChildren(table(["reason", "action", "decisions", "builds"], rows));
}

async function gatesServed() {
  const now = Date.now();
  if (state.gatesServed === true || now - state.gatesCheckedAt < GATES_RECHECK_MS) return state.gatesServed;
  state.gatesCheckedAt = now;
  const doc = await getJSON("/openapi.json");
  state.gatesServed = doc.ok ? Boolean(doc.body?.paths?.["/gates"]) : null;
  return state.gatesServed;
}

async function loadGates() {
  const panel = $("gates");
  const served = await gatesServed();
  if (served === false) {
    panel.replaceChildren(element("p", "empty", "no gates configured"));
    return;
  }
  const result = await getJSON("/gates");
  if (result.status === 404) {
    panel.replaceChildren(element("p", "empty", "no gates configured"));
    return;
  }
  if (!result.ok) {
    showProblem(panel, result);
    return;
  }
  const gates = gateList(result.body);
  if (gates.length === 0) {
    panel.replaceChildren(element("p", "empty", "no gates configured"));
    return;
  }
  const now = Date.now();
  const rows = gates.slice(0, 30).map((gate) => {
    const row = element("tr", `gate result-${gate.result}`);
    row.dataset.gate = gate.gate;
    cells(row, [["", gate.gate], ["", `${gate.project}/${gate.pipeline}${gate.branch ? "@" + gate.branch : ""}`]]);
    const result = element("td");
    result.append(element("span", `badge result-${gate.result}`, gate.result));
    row.append(result);
    cells(row, [["reason", gateFailures(gate).join("; ")], ["when", formatAgo(now - parseTime(gate.decided_at))]]);
    return row;
  });
  panel.replaceChildren(table(["gate", "pipeline", "result", "failing rules", "decided"], rows));
}

async function refreshFigures() {
  if (state.refreshing) {
    state.refreshAgain = true; // a slow ClickHouse must not pile up requests; a new window still loads
    return;
  }
  state.refreshing = true;
  try {
    await loadFigures();
  } finally {
    state.refreshing = false;
  }
  if (state.refreshAgain) {
    state.refreshAgain = false;
    refreshFigures();
  }
}

async function loadFigures() {
  const windowAsked = state.window;
  const w = encodeURIComponent(windowAsked);
  const [stats, auditList, auditStats, notifications, retries] = await Promise.all([
    getJSON(`/stats/pipelines?window=${w}`),
    getJSON("/audits?limit=200"),
    getJSON(`/stats/audits?window=${w}`),
    getJSON(`/notifications/health?window=${w}`),
    getJSON(`/stats/retries?window=${w}`),
  ]);
  state.shownWindow = windowAsked;
  for (const render of [
    () => renderCharts(stats),
    () => renderAudits(auditList, auditStats),
    () => renderNotifications(notifications),
    () => renderRetries(retries),
  ]) {
    try {
      render();
    } catch (exc) {
      console.warn("dashboard panel failed to render", exc);
    }
  }
  try {
    await loadGates();
  } catch (exc) {
    console.warn("gates panel failed to render", exc);
  }
  $("updated").textContent = `figures ${new Date().toLocaleTimeString()}`;
  document.body.dataset.figures = "loaded";
  document.body.dataset.figuresWindow = windowAsked;
}

function chooseWindow(w) {
  state.window = w;
  const url = new URL(location.href);
  url.searchParams.set("window", w);
  history.replaceState(null, "", url);
  for (const button of document.querySelectorAll("[data-window]")) {
    button.setAttribute("aria-pressed", String(button.dataset.window === w));
  }
  for (const node of document.querySelectorAll(".window-label")) node.textContent = w;
  refreshFigures();
}

function start() {
  const picker = $("windows");
  for (const w of WINDOWS) {
    const button = element("button", "window", w);
    button.type = "button";
    button.dataset.window = w;
    button.addEventListener("click", () => chooseWindow(w));
    picker.append(button);
  }
  connectLive();
  chooseWindow(state.window);
  setInterval(refreshFigures, state.refreshMs);
  setInterval(() => {
    prune(state.builds, Date.now());
    renderBuilds();
  }, 5000);
  renderBuilds();
}

start();
