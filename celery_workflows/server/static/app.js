// The run page: lists runs and follows one (its steps from /handlers/{id}/timeline,
// its events from the protocol's SSE route). Plain DOM, no dependencies, no build step.
// The token is taken from ?token= or a form, kept in sessionStorage and sent as a header:
// it is never written into the page or left in the address bar.
"use strict";

const TOKEN_KEY = "celery_workflows.token";
const PAGE_SIZE = 25;
const $ = (id) => document.getElementById(id);

const state = {
  cursors: [null], // cursors[i] opens page i; the first page has none
  page: 0,
  follow: null, // {runId, abort, timer}
};

// --- token -------------------------------------------------------------------------

function takeTokenFromAddress() {
  const url = new URL(window.location.href);
  const given = url.searchParams.get("token");
  if (given !== null) {
    sessionStorage.setItem(TOKEN_KEY, given);
    url.searchParams.delete("token");
    history.replaceState(null, "", url.pathname + url.search + url.hash);
  }
}

function headers() {
  const token = sessionStorage.getItem(TOKEN_KEY);
  $("forget-token").hidden = !token;
  return token ? { Authorization: "Bearer " + token } : {};
}

class Unauthorized extends Error {}

async function getJSON(path) {
  const response = await fetch(path, { headers: headers(), cache: "no-store" });
  if (response.status === 401) throw new Unauthorized();
  if (!response.ok) {
    let detail = response.statusText;
    try { detail = (await response.json()).detail || detail; } catch (_) { /* not JSON */ }
    throw new Error(`${response.status} ${detail}`);
  }
  return response.json();
}

function askForToken(message) {
  stopFollowing();
  for (const id of ["list-view", "run-view"]) $(id).hidden = true;
  $("token-form").hidden = false;
  $("token-error").textContent = message || "";
  $("token-input").focus();
  document.body.dataset.state = "token";
}

// --- formatting --------------------------------------------------------------------

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else node.setAttribute(key, value);
  }
  for (const child of children) node.append(child);
  return node;
}

const when = (iso) => (iso ? new Date(iso) : null);
function clock(iso) {
  const at = when(iso);
  return at ? at.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "medium" }) : "—";
}
function span(ms) {
  if (ms === null || ms === undefined || Number.isNaN(ms)) return "—";
  if (ms < 1000) return `${Math.max(0, Math.round(ms))} ms`;
  if (ms < 60000) return `${(ms / 1000).toFixed(ms < 10000 ? 2 : 1)} s`;
  const minutes = Math.floor(ms / 60000);
  return minutes < 60 ? `${minutes} min ${Math.round((ms % 60000) / 1000)} s`
                      : `${Math.floor(minutes / 60)} h ${minutes % 60} min`;
}
const finished = (status) => ["completed", "failed", "cancelled"].includes(status);
const badge = (status, id) => el("span", { class: `badge s-${status}`, id, text: status });

// --- the list of runs --------------------------------------------------------------

async function showList() {
  stopFollowing();
  $("run-view").hidden = true;
  $("list-view").hidden = false;
  const params = new URLSearchParams({ limit: String(PAGE_SIZE) });
  const status = $("filter-status").value;
  const workflow = $("filter-workflow").value;
  if (status) params.append("status", status);
  if (workflow) params.append("workflow", workflow);
  const cursor = state.cursors[state.page];
  if (cursor) params.set("cursor", cursor);
  const body = await getJSON(`../ui/api/runs?${params}`);
  fillWorkflows(body.workflows);
  const rows = body.runs.map((run) => {
    const started = when(run.created_at);
    const ended = finished(run.status) ? when(run.updated_at) : new Date();
    return el("tr", {},
      el("td", {}, el("a", { href: `#run=${encodeURIComponent(run.run_id)}`, class: "mono" },
        run.run_id)),
      el("td", { text: run.workflow_name }),
      el("td", {}, badge(run.status)),
      el("td", { text: clock(run.created_at) }),
      el("td", { text: span(ended - started) }));
  });
  $("runs-body").replaceChildren(...rows);
  $("runs-empty").hidden = rows.length > 0;
  state.cursors[state.page + 1] = body.next_cursor;
  $("older").disabled = !body.next_cursor;
  $("newer").disabled = state.page === 0;
  $("page-note").textContent = `Page ${state.page + 1}`;
  document.body.dataset.state = "list";
}

function fillWorkflows(names) {
  const select = $("filter-workflow");
  const chosen = select.value;
  const options = [el("option", { value: "", text: "any" }),
    ...names.map((name) => el("option", { value: name, text: name }))];
  select.replaceChildren(...options);
  select.value = names.includes(chosen) ? chosen : "";
}

function refilter() {
  state.cursors = [null];
  state.page = 0;
  route();
}

// --- one run -----------------------------------------------------------------------

function stopFollowing() {
  if (!state.follow) return;
  state.follow.abort.abort();
  clearTimeout(state.follow.timer);
  clearTimeout(state.follow.soon);
  state.follow = null;
}

async function showRun(runId) {
  stopFollowing();
  $("list-view").hidden = true;
  $("run-view").hidden = false;
  $("run-id").textContent = runId;
  $("events").replaceChildren();
  const follow = { runId, abort: new AbortController(), timer: null, soon: null, finished: false };
  state.follow = follow;
  await refreshTimeline(follow);
  followEvents(follow).catch(failed);
}

async function refreshTimeline(follow) {
  clearTimeout(follow.timer);
  const body = await getJSON(`../handlers/${encodeURIComponent(follow.runId)}/timeline`);
  if (state.follow !== follow) return;
  drawRun(body.run);
  drawTimeline(body.run, body.deliveries);
  follow.finished = finished(body.run.status);
  document.body.dataset.state = follow.finished ? "run-finished" : "run-live";
  document.body.dataset.runStatus = body.run.status;
  // While the run goes on, the steps are read again now and then (events also refresh).
  if (!follow.finished) follow.timer = setTimeout(() => refreshTimeline(follow).catch(failed), 1500);
}

function drawRun(run) {
  $("run-status").replaceWith(badge(run.status, "run-status"));
  $("run-status").setAttribute("role", "status");
  const started = when(run.created_at);
  const ended = finished(run.status) ? when(run.updated_at) : new Date();
  const facts = [["Workflow", run.workflow_name], ["Started", clock(run.created_at)],
    ["Last change", clock(run.updated_at)], ["Duration", span(ended - started)]];
  if (run.deadline_at && !finished(run.status)) facts.push(["Deadline", clock(run.deadline_at)]);
  $("run-facts").replaceChildren(...facts.flatMap(([k, v]) => [el("dt", { text: k }), el("dd", { text: v })]));
  const error = run.error && run.status !== "cancelled" ? `${run.error.type}: ${run.error.message}` : "";
  $("run-error").textContent = error;
  $("run-error").hidden = !error;
  $("waits").replaceChildren(...run.waiters.map((w) => el("li", {
    text: `${w.step} waits for ${w.waiting_for}` + (w.timeout ? ` (times out after ${w.timeout} s)` : ""),
  })));
}

function drawTimeline(run, deliveries) {
  const start = when(run.created_at).getTime();
  const ends = deliveries.map((d) => when(d.updated_at).getTime());
  const stop = finished(run.status) ? Math.max(when(run.updated_at).getTime(), ...ends) : Date.now();
  const total = Math.max(stop - start, 1);
  const pct = (t) => `${Math.min(100, Math.max(0, ((t - start) / total) * 100)).toFixed(2)}%`;
  const items = deliveries.map((d) => {
    const from = when(d.created_at).getTime();
    const open = d.status === "pending" || d.status === "running";
    const to = open && !finished(run.status) ? Date.now() : when(d.updated_at).getTime();
    const label = `${d.step} on ${d.event}: ${d.status}, attempt ${d.attempt}, ${span(to - from)}`;
    const bar = el("span", { class: `bar ${d.status}`, title: label });
    bar.style.left = pct(from);
    bar.style.width = `calc(${pct(to)} - ${pct(from)})`;
    const meta = [`${d.event}`, `attempt ${d.attempt}`, span(to - from)];
    if (d.wait_timeout) meta.push(`wait timeout, due ${clock(d.not_before)}`);
    const track = el("div", { class: "track", role: "img", "aria-label": label }, bar);
    for (const failedAt of d.retry ? [d.retry.first_failed_at, d.retry.last_failed_at] : []) {
      if (!failedAt) continue; // a failed attempt of a retried step: a red tick
      const tick = el("span", { class: "tick", title: `attempt failed at ${clock(failedAt)}` });
      tick.style.left = pct(when(failedAt).getTime());
      track.append(tick);
    }
    const notes = el("div", { class: "notes" });
    if (d.retry) {
      notes.append(el("div", { class: "retry", text: `retried ${d.retry.count}×` +
        (d.retry.last_error ? ` — last: ${d.retry.last_error.type}: ${d.retry.last_error.message}` : "") }));
    }
    if (d.status === "pending" && d.not_before && when(d.not_before) > new Date()) {
      notes.append(el("div", { class: "muted", text: `next attempt at ${clock(d.not_before)}` }));
    }
    if (d.error) notes.append(el("div", { class: "fail", text: `${d.error.type}: ${d.error.message}` }));
    return el("li", { "data-step": d.step, "data-status": d.status, "data-attempt": String(d.attempt) },
      el("div", {},
        el("div", { class: "step-name", text: d.step }),
        el("div", { class: "step-meta", text: meta.join(" · ") })),
      el("div", {},
        track,
        el("div", { class: "step-meta" }, badge(d.status)), notes));
  });
  const axis = el("li", { class: "axis", "aria-hidden": "true" }, el("span", {}),
    el("div", {}, ...[0, 0.25, 0.5, 0.75, 1].map((f) => el("span", { text: span(f * total) }))));
  $("timeline").replaceChildren(axis, ...items);
}

// --- the event stream (the protocol's SSE route, read with fetch to send the header) ---

async function followEvents(follow) {
  const internal = $("show-internal").checked;
  const params = new URLSearchParams({ after_sequence: "-1", include_internal: String(internal) });
  const response = await fetch(`../events/${encodeURIComponent(follow.runId)}?${params}`, {
    headers: { ...headers(), Accept: "text/event-stream" }, signal: follow.abort.signal,
  });
  if (response.status === 401) throw new Unauthorized();
  if (response.status === 204) return endOfEvents(follow);
  if (!response.ok) throw new Error(`${response.status} reading events`);
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  $("events-note").textContent = "(live)";
  for (;;) {
    let chunk;
    try {
      chunk = await reader.read();
    } catch (error) {
      if (follow.abort.signal.aborted) return;
      throw error;
    }
    if (chunk.done) break;
    buffer += chunk.value.replace(/\r\n/g, "\n");
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      onMessage(follow, buffer.slice(0, cut));
      buffer = buffer.slice(cut + 2);
    }
  }
  endOfEvents(follow);
}

function onMessage(follow, block) {
  let id = null;
  const data = [];
  for (const line of block.split("\n")) {
    if (line.startsWith(":")) continue; // a heartbeat
    const [field, ...rest] = line.split(":");
    const value = rest.join(":").replace(/^ /, "");
    if (field === "id") id = value;
    if (field === "data") data.push(value);
  }
  if (!data.length || state.follow !== follow) return;
  const event = JSON.parse(data.join("\n"));
  const internal = event.type === "StepStateChanged" || (event.types || []).includes("InternalDispatchEvent");
  $("events").append(el("li", { class: internal ? "internal" : null, "data-type": event.type },
    el("span", { class: "seq mono", text: id ?? "" }),
    el("span", { class: "type", text: event.type }),
    el("pre", { text: JSON.stringify(event.value) })));
  soonRefresh(follow);
}

function soonRefresh(follow) {
  // A burst of events reads the steps once, not once per event.
  if (follow.soon) return;
  follow.soon = setTimeout(() => {
    follow.soon = null;
    if (state.follow === follow) refreshTimeline(follow).catch(failed);
  }, 250);
}

function endOfEvents(follow) {
  if (state.follow !== follow) return;
  $("events-note").textContent = "(ended)";
  $("events").dataset.ended = "true";
  refreshTimeline(follow).catch(failed);
}

// --- routing -----------------------------------------------------------------------

function failed(error) {
  if (error instanceof Unauthorized) {
    askForToken(sessionStorage.getItem(TOKEN_KEY) ? "That token was refused." : "");
    return;
  }
  if (error && error.name === "AbortError") return;
  $("load-error").textContent = String(error && error.message ? error.message : error);
  $("load-error").hidden = false;
  document.body.dataset.state = "error";
}

function route() {
  $("token-form").hidden = true;
  $("load-error").hidden = true;
  const match = window.location.hash.match(/^#run=(.+)$/);
  const shown = match ? showRun(decodeURIComponent(match[1])) : showList();
  shown.catch(failed);
}

function start() {
  takeTokenFromAddress();
  $("token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, $("token-input").value);
    $("token-input").value = "";
    route();
  });
  $("forget-token").addEventListener("click", () => {
    sessionStorage.removeItem(TOKEN_KEY);
    askForToken("");
  });
  $("filter-status").addEventListener("change", refilter);
  $("filter-workflow").addEventListener("change", refilter);
  $("refresh").addEventListener("click", route);
  $("older").addEventListener("click", () => { state.page += 1; route(); });
  $("newer").addEventListener("click", () => { state.page = Math.max(0, state.page - 1); route(); });
  $("show-internal").addEventListener("change", route);
  window.addEventListener("hashchange", route);
  route();
}

start();
