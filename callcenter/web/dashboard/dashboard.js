// The supervisor dashboard: sign in, one websocket to /ws/dashboard (a snapshot, then
// numbered changes), tables drawn from what it sends, actions as REST calls with the
// session token. Every text goes in as text (textContent), never as markup.

const TOKEN_KEY = "callcenter.dashboard.token";
const params = new URLSearchParams(location.search);
const clamp = (raw, lo, hi, dflt) => {
  const n = Number(raw);
  return raw !== null && Number.isFinite(n) ? Math.min(hi, Math.max(lo, n)) : dflt;
};
// How often to ping; a socket silent for 2.5 pings is taken for dead. `?ping=` is for tests.
const PING_SECONDS = clamp(params.get("ping"), 0.2, 60, 10);
const BACKOFF_FIRST = 0.5; // seconds, doubled per failed attempt ...
const BACKOFF_MAX = 15; //    ... up to this, with jitter; reset once connected

const $ = (id) => document.getElementById(id);
function h(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (className) node.className = className;
  return node;
}
function setText(node, value) {
  node.textContent = value === null || value === undefined ? "" : String(value);
}

const state = {
  token: sessionStorage.getItem(TOKEN_KEY),
  board: null, // {stats, waiting, agents}
  chart: [], // points
  receivedAt: 0, // ms, when the waits in the board were read
  selected: null, // call id the action panel is open for
  timeline: null, // call id the timeline panel shows
};

// -- formatting ------------------------------------------------------------------

function secs(s) {
  if (s === null || s === undefined) return "–";
  s = Math.max(0, Math.round(s));
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}:${String(s % 60).padStart(2, "0")}`;
  return `${Math.floor(m / 60)} h ${m % 60} min`;
}
const pct = (x) => (x === null || x === undefined ? "–" : `${Math.round(x * 100)} %`);
const money = (x) => Math.round(x || 0).toLocaleString("en-US");
const since = () => (Date.now() - state.receivedAt) / 1000;

// -- connection ------------------------------------------------------------------

let ws = null;
let seq = 0;
let attempt = 0;
let reconnectTimer = null;
let reconnectAt = 0;
let lastHeard = 0;
let pingTimer = null;

function showConn(kind, label, tail = "") {
  const node = $("conn");
  const span = h("span", tail);
  span.setAttribute("aria-hidden", "true");
  node.replaceChildren(label, span);
  node.dataset.conn = kind;
  $("reconnect-now").hidden = kind !== "reconnecting";
  $("stale").hidden = kind !== "reconnecting";
}

function wsUrl() {
  const url = new URL("/ws/dashboard", location.href);
  url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
  url.searchParams.set("token", state.token);
  return url.toString();
}

function connect() {
  clearTimeout(reconnectTimer);
  reconnectTimer = null;
  if (!state.token) return;
  showConn("connecting", "Connecting…");
  const sock = new WebSocket(wsUrl());
  let opened = false;
  ws = sock;
  seq = 0;
  sock.onopen = () => {
    if (ws !== sock) return;
    opened = true;
    lastHeard = Date.now();
    clearInterval(pingTimer);
    pingTimer = setInterval(ping, PING_SECONDS * 1000);
  };
  sock.onmessage = (event) => {
    if (ws !== sock) return;
    lastHeard = Date.now();
    let message;
    try {
      message = JSON.parse(event.data);
    } catch {
      return;
    }
    if (message.seq !== seq + 1) {
      // A message was missed: what the page shows may be wrong. Start again from a snapshot.
      sock.close(4000, "gap");
      dropped(sock, true);
      return;
    }
    seq = message.seq;
    onMessage(message);
  };
  sock.onclose = () => dropped(sock, opened);
}

function ping() {
  if (!ws || ws.readyState !== WebSocket.OPEN) return;
  if (Date.now() - lastHeard > PING_SECONDS * 2500) {
    const dead = ws;
    dead.close(4000, "silent");
    dropped(dead, true);
    return;
  }
  ws.send(JSON.stringify({ type: "ping" }));
}

async function dropped(sock, opened) {
  if (ws !== sock) return;
  ws = null;
  clearInterval(pingTimer);
  if (!state.token) return;
  if (opened) attempt = 0;
  else if (!(await sessionValid())) return signOut("Your session has ended: sign in again.");
  const delay = Math.min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** attempt) * (0.8 + Math.random() * 0.4);
  attempt += 1;
  reconnectAt = Date.now() + delay * 1000;
  reconnectTimer = setTimeout(connect, delay * 1000);
  countdown();
}

function countdown() {
  if (!reconnectTimer) return;
  const left = Math.max(0, Math.ceil((reconnectAt - Date.now()) / 1000));
  showConn("reconnecting", "Reconnecting", `in ${left} s`);
  setTimeout(countdown, 500);
}

// -- session ---------------------------------------------------------------------

async function api(method, path, body) {
  const headers = { Authorization: `Bearer ${state.token}` };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const resp = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  let data = null;
  try {
    data = await resp.json();
  } catch {
    data = null;
  }
  if (!resp.ok) {
    const detail = (data && data.detail) || `${resp.status} ${resp.statusText}`;
    const error = new Error(detail);
    error.status = resp.status;
    throw error;
  }
  return data;
}

async function sessionValid() {
  try {
    const who = await api("GET", "/api/session");
    return who.role === "supervisor" || who.role === "admin";
  } catch (error) {
    return !(error.status === 401 || error.status === 403);
  }
}

async function signIn(event) {
  event.preventDefault();
  const name = $("name").value.trim();
  const password = $("password").value;
  setText($("sign-in-error"), "");
  if (!name || !password) {
    setText($("sign-in-error"), "Give your name and password.");
    return;
  }
  try {
    const resp = await fetch("/api/session", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ name, password }),
    });
    const data = await resp.json();
    if (!resp.ok) {
      setText($("sign-in-error"), resp.status === 401 ? "Name or password not accepted." : data.detail);
      return;
    }
    state.token = data.token;
    sessionStorage.setItem(TOKEN_KEY, data.token);
    $("password").value = "";
    await start();
  } catch {
    setText($("sign-in-error"), "The service does not answer; try again.");
  }
}

async function start() {
  let who;
  try {
    who = await api("GET", "/api/session");
  } catch (error) {
    if (error.status === 401 || error.status === 403) return signOut("Sign in again.");
    return signOut("The service does not answer; try again.");
  }
  if (who.role !== "supervisor" && who.role !== "admin") {
    return signOut("The dashboard is for supervisors and admins.");
  }
  setText($("who-name"), who.who);
  $("who").hidden = false;
  $("sign-in").hidden = true;
  $("board").hidden = false;
  connect();
}

function signOut(message) {
  const token = state.token;
  state.token = null;
  sessionStorage.removeItem(TOKEN_KEY);
  if (ws) {
    const old = ws;
    ws = null;
    old.close(1000, "signed out");
  }
  clearTimeout(reconnectTimer);
  reconnectTimer = null;
  clearInterval(pingTimer);
  if (token && message === undefined) {
    fetch("/api/session", { method: "DELETE", headers: { Authorization: `Bearer ${token}` } });
  }
  $("who").hidden = true;
  $("board").hidden = true;
  $("sign-in").hidden = false;
  setText($("sign-in-error"), message || "");
  showConn("signed-out", "Signed out");
}

// -- messages --------------------------------------------------------------------

function onMessage(message) {
  if (message.type === "snapshot") {
    state.board = message.board;
    state.chart = message.chart || [];
    state.receivedAt = Date.now();
    attempt = 0;
    showConn("connected", "Live");
    asOf(message.board.stats.at);
    renderAll();
    drawChart();
  } else if (message.type === "change") {
    asOf(message.at);
    for (const part of ["stats", "waiting", "agents"]) {
      if (message[part] !== undefined) state.board[part] = message[part];
    }
    if (message.waiting !== undefined || message.agents !== undefined) state.receivedAt = Date.now();
    if (message.point) {
      // One point per 10 s bucket end, the same on every instance: a point for an
      // instant already drawn replaces it; the hour moves on.
      const at = Date.parse(message.point.at);
      const cutoff = at - 3600 * 1000;
      state.chart = state.chart.filter((p) => Date.parse(p.at) >= cutoff && Date.parse(p.at) !== at);
      state.chart.push(message.point);
      state.chart.sort((a, b) => Date.parse(a.at) - Date.parse(b.at));
    }
    renderAll();
    if (message.point || message.stats) drawChart();
    if (message.waiting !== undefined || message.agents !== undefined) refreshTimeline();
  } else if (message.type === "error") {
    notice(message.detail, "error");
  }
}

function asOf(at) {
  setText($("as-of"), `as of ${new Date(at).toLocaleTimeString("en-GB")}`);
}

// -- rendering -------------------------------------------------------------------

function cell(row, text, field, className) {
  const td = h("td", text, className);
  if (field) td.dataset.field = field;
  row.append(td);
  return td;
}

function renderAll() {
  if (!state.board) return;
  const stats = state.board.stats;
  renderQueues(stats);
  renderTiers(stats);
  renderWaiting();
  renderAgents();
  renderChoices(stats);
  renderAct();
}

function renderQueues(stats) {
  const body = $("queues").tBodies[0];
  body.replaceChildren();
  for (const q of stats.queues) {
    const tr = h("tr");
    tr.dataset.queue = q.name;
    cell(tr, q.name, "name");
    const waiting = cell(tr, q.waiting, "waiting", "num");
    if (q.callbacks_waiting || q.callbacks_set_aside) {
      const parts = [];
      if (q.callbacks_waiting) parts.push(`${q.callbacks_waiting} callback${q.callbacks_waiting > 1 ? "s" : ""}`);
      if (q.callbacks_set_aside) parts.push(`+${q.callbacks_set_aside} set aside`);
      waiting.append(h("span", ` (${parts.join(", ")})`, "muted small"));
    }
    cell(tr, q.offering, "offering", "num");
    cell(tr, secs(q.longest_wait_seconds), "longest", "num");
    cell(tr, secs(q.estimated_wait_seconds), "ewt", "num");
    const a = q.agents;
    cell(tr, `${a.available} free · ${a.on_call + a.offered} busy · ${a.wrap_up} wrap · ` +
      `${a.not_responding} not resp. · ${a.offline} off`, "agents");
    cell(tr, `${pct(q.window.service_level)} · ${pct(q.today.service_level)}`, "sl");
    cell(tr, secs(q.window.average_speed_of_answer_seconds), "asa", "num");
    cell(tr, `${q.window.abandoned} (${pct(q.window.abandon_rate)}) · ${q.today.abandoned}`, "abandoned");
    cell(tr, `${q.window.answered} · ${q.today.answered}`, "answered");
    cell(tr, `${money(q.value_at_risk)} · ${money(q.today.abandoned_value)}`, "value");
    const fair = cell(tr, `${secs(q.longest_lowest_tier_wait_seconds)} / ${secs(q.overtaking_bound_seconds)}`, "fair");
    if (q.bound_exceeded_today || q.overtaken_now > 0) {
      fair.append(h("span", ` ⚑ overtaken beyond the bound (${q.overtaken_now} now)`, "flag"));
    }
    body.append(tr);
  }
}

function renderTiers(stats) {
  const box = $("tiers");
  box.replaceChildren();
  for (const q of stats.queues) {
    const table = h("table", null, "tier-table");
    table.dataset.queue = q.name;
    table.append(h("caption", q.name));
    const head = h("tr");
    head.append(h("th", ""));
    for (const t of q.tiers) head.append(h("th", t.tier, "num"));
    table.append(h("thead"));
    table.tHead.append(head);
    const rows = [
      ["Waiting", (t) => t.waiting, "waiting"],
      ["Longest wait", (t) => secs(t.longest_wait_seconds), "longest"],
      ["EWT new caller", (t) => secs(t.estimated_wait_seconds), "ewt"],
      ["Service level (window)", (t) => pct(t.window.service_level), "sl"],
      ["Service level (today)", (t) => pct(t.today.service_level), "sl-today"],
      ["ASA (window)", (t) => secs(t.window.average_speed_of_answer_seconds), "asa"],
      ["Answered / abandoned today", (t) => `${t.today.answered} / ${t.today.abandoned}`, "counts"],
      ["Value at risk", (t) => money(t.value_at_risk), "value"],
      ["Learning answered / skipped", (t) => `${t.today.learning_answered} / ${t.today.learning_skipped}`, "learning"],
    ];
    const body = h("tbody");
    for (const [label, get, field] of rows) {
      const tr = h("tr");
      tr.append(h("th", label));
      for (const t of q.tiers) {
        const td = cell(tr, get(t), field, "num");
        td.dataset.tier = t.tier;
      }
      body.append(tr);
    }
    table.append(body);
    box.append(table);
  }
}

function renderWaiting() {
  const body = $("waiting").tBodies[0];
  body.replaceChildren();
  const late = since();
  for (const w of state.board.waiting) {
    const tr = h("tr");
    tr.dataset.callId = w.id;
    if (state.selected === w.id) tr.className = "selected";
    cell(tr, w.queue, "queue");
    cell(tr, w.position, "position", "num");
    const who = w.customer_name ? `${w.customer_name} (${w.customer_number || "no number"})` : w.ani || "unknown caller";
    cell(tr, who, "customer");
    cell(tr, w.tier || "unknown", "tier");
    const waited = cell(tr, secs(w.waited_seconds + late), "waited", "num");
    waited.dataset.base = w.waited_seconds;
    cell(tr, secs(w.estimated_wait_seconds), "ewt", "num");
    cell(tr, money(w.value), "value", "num");
    const why = cell(tr, w.why, "why", "why");
    if (w.bumped_by) why.append(h("span", ` (by ${w.bumped_by})`));
    if (w.offered_to) why.append(h("span", ` · ringing agent ${w.offered_to}`));
    if (w.callback) why.append(h("span", " · callback: the caller is not on the line, same place", "keep"));
    if (w.resumed) why.append(h("span", " · redial: kept the place of a dropped call", "keep"));
    const td = cell(tr, null, "actions");
    const act = h("button", "Act…");
    act.type = "button";
    act.addEventListener("click", (event) => {
      event.stopPropagation();
      openAct(w.id);
    });
    const story = h("button", "Timeline");
    story.type = "button";
    td.append(act, " ", story);
    // The row (or its button, for the keyboard) opens the call's timeline.
    tr.addEventListener("click", () => openTimeline(w.id));
    tr.classList.add("clickable");
    body.append(tr);
  }
  $("no-waiting").hidden = state.board.waiting.length > 0;
}

function renderAgents() {
  const body = $("agents").tBodies[0];
  body.replaceChildren();
  const late = since();
  for (const a of state.board.agents) {
    const tr = h("tr");
    tr.dataset.agentId = a.id;
    tr.dataset.state = a.state;
    cell(tr, a.name, "name");
    const st = cell(tr, null, "state");
    const pill = h("span", a.state.replace("_", " "), "state");
    pill.dataset.state = a.state;
    st.append(pill);
    if (a.state === "not_responding") st.append(h("span", " ⚑", "flag"));
    const inState = cell(tr, secs(a.seconds_in_state + late), "in-state", "num");
    inState.dataset.base = a.seconds_in_state;
    const callCell = cell(tr, null, "call");
    if (a.call_id) {
      const label = `#${a.call_id} ${a.call_queue || ""} ${a.customer_name || ""}`.trim();
      const open = h("button", label, "link");
      open.type = "button";
      open.title = "Show this call's timeline";
      open.addEventListener("click", () => openTimeline(a.call_id));
      callCell.append(open);
    }
    cell(tr, a.handled_today, "handled", "num");
    cell(tr, a.queues.join(", "), "queues");
    const td = cell(tr, null, "actions");
    if (a.state !== "offline") {
      const off = h("button", a.state === "on_call" ? "End call" : "Force offline");
      off.type = "button";
      off.addEventListener("click", () =>
        a.state === "on_call" ? endAgentCall(a) : act(`Forced ${a.name} offline`, "POST", `/api/agents/${a.id}/offline`));
      td.append(off);
    }
    body.append(tr);
  }
}

function tick() {
  if (!state.board) return;
  const late = since();
  for (const node of document.querySelectorAll("td[data-base]")) {
    setText(node, secs(Number(node.dataset.base) + late));
  }
}

function renderChoices(stats) {
  const names = stats.queues.map((q) => q.name);
  for (const id of ["move-queue", "chart-queue"]) {
    const select = $(id);
    const current = select.value;
    if ([...select.options].map((o) => o.value).join() !== names.join()) {
      select.replaceChildren(...names.map((n) => h("option", n)));
      if (names.includes(current)) select.value = current;
    }
  }
  const tiers = stats.queues.length ? stats.queues[0].tiers.map((t) => t.tier).filter((t) => t !== "unknown") : [];
  const pin = $("pin-tier");
  if ([...pin.options].map((o) => o.value).join() !== tiers.join()) {
    pin.replaceChildren(...tiers.map((t) => h("option", t)));
  }
}

// -- actions ---------------------------------------------------------------------

function notice(text, kind = "ok") {
  const node = $("notice");
  node.dataset.kind = kind;
  setText(node, text);
}

async function act(done, method, path, body) {
  setText($("act-error"), "");
  try {
    const result = await api(method, path, body);
    notice(done);
    return result;
  } catch (error) {
    if (error.status === 401) return signOut("Your session has ended: sign in again.");
    setText($("act-error"), error.message);
    notice(error.message, "error");
    return null;
  }
}

function selectedCall() {
  return state.board && state.board.waiting.find((w) => w.id === state.selected);
}

function openAct(callId) {
  state.selected = callId;
  renderWaiting();
  renderAct();
  const w = selectedCall();
  if (w) $("bump-seconds").value = Math.round(w.credit_seconds);
  setText($("act-error"), "");
  $("bump-seconds").focus();
}

function renderAct() {
  const w = selectedCall();
  $("act").hidden = !w;
  if (!w) return;
  const who = w.customer_name || w.ani || "unknown caller";
  setText($("act-call"), `#${w.id} · ${who} · ${w.tier || "unknown"} · ${w.queue} position ${w.position}`);
  $("pin-form").hidden = !w.customer_id;
  $("unpin").hidden = !w.customer_id;
}

// -- a call's timeline (GET /api/calls/{id}/timeline) ------------------------------------

let timelineTimer = null;
let timelineAsked = 0;

function openTimeline(callId) {
  state.timeline = callId;
  $("timeline").hidden = false;
  setText($("timeline-call"), `#${callId}`);
  setText($("timeline-error"), "");
  $("timeline-events").replaceChildren();
  setText($("timeline-summary"), "Loading…");
  loadTimeline(callId);
}

function closeTimeline() {
  state.timeline = null;
  $("timeline").hidden = true;
}

// While it is open, the board's changes may be this call's: ask again, at most once a second.
function refreshTimeline() {
  if (state.timeline === null || timelineTimer) return;
  const wait = Math.max(0, 1000 - (Date.now() - timelineAsked));
  timelineTimer = setTimeout(() => {
    timelineTimer = null;
    if (state.timeline !== null) loadTimeline(state.timeline);
  }, wait);
}

async function loadTimeline(callId) {
  timelineAsked = Date.now();
  let data;
  try {
    data = await api("GET", `/api/calls/${callId}/timeline`);
  } catch (error) {
    if (state.timeline !== callId) return;
    if (error.status === 401) return signOut("Your session has ended: sign in again.");
    setText($("timeline-summary"), "");
    setText($("timeline-error"), error.message);
    return;
  }
  if (state.timeline !== callId) return; // another call was opened meanwhile
  renderTimeline(data);
}

/** The event's sentence, the actor in it stressed (or added when the sentence does not name it). */
function said(e) {
  const what = h("span", null, "what");
  const at = e.who ? e.text.indexOf(e.who) : -1;
  if (at < 0) {
    what.textContent = e.text;
    if (e.who && e.who.includes(":") && !e.who.startsWith("agent:")) {
      what.append(" · ", h("strong", e.who, "actor"));
    }
    return what;
  }
  what.append(e.text.slice(0, at), h("strong", e.who, "actor"), e.text.slice(at + e.who.length));
  return what;
}

function renderTimeline(data) {
  const c = data.call;
  const who = c.customer ? `${c.customer.name || "customer"} (${c.customer.customer_number})` : c.ani || "unknown caller";
  setText($("timeline-call"), `#${c.id} · ${who}`);
  const where = c.state === "waiting" ? `waiting in ${c.queue}, position ${c.position}` : `${c.state} · ${c.queue}`;
  setText($("timeline-summary"), `${c.call_id} · ${c.tier || "unknown"} · ${where}`);
  setText($("timeline-error"), "");
  const list = $("timeline-events");
  list.replaceChildren(
    ...data.events.map((e) => {
      const li = h("li");
      li.dataset.kind = e.kind;
      const at = h("time", new Date(e.at).toLocaleTimeString("en-GB"));
      at.dateTime = e.at;
      li.append(at, said(e));
      return li;
    }),
  );
}

function wire() {
  $("timeline-close").addEventListener("click", closeTimeline);
  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && state.timeline !== null) closeTimeline();
  });
  $("sign-in-form").addEventListener("submit", signIn);
  $("sign-out").addEventListener("click", () => signOut());
  $("reconnect-now").addEventListener("click", () => connect());
  $("act-close").addEventListener("click", () => {
    state.selected = null;
    renderWaiting();
    renderAct();
  });
  $("bump-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const seconds = Number($("bump-seconds").value);
    if ($("bump-seconds").value === "" || !Number.isFinite(seconds)) {
      setText($("act-error"), "Give the credit in seconds.");
      return;
    }
    await act(`Call ${state.selected} bumped`, "POST", `/api/calls/${state.selected}/priority`, { credit_seconds: seconds });
  });
  $("unbump").addEventListener("click", () =>
    act(`Call ${state.selected} back to its tier`, "POST", `/api/calls/${state.selected}/priority`, { credit_seconds: null }));
  $("move-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const queue = $("move-queue").value;
    act(`Call ${state.selected} moved to ${queue}`, "POST", `/api/calls/${state.selected}/move`, { queue });
  });
  $("pin-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const w = selectedCall();
    if (!w) return;
    const reason = $("pin-reason").value.trim();
    if (!reason) {
      setText($("act-error"), "Say why the tier is pinned.");
      return;
    }
    act(`Pinned ${w.customer_name || "the customer"} to ${$("pin-tier").value}`, "PUT",
      `/api/customers/${w.customer_id}/tier-pin`, { tier: $("pin-tier").value, reason });
  });
  $("unpin").addEventListener("click", () => {
    const w = selectedCall();
    if (w) act("Tier pin removed", "DELETE", `/api/customers/${w.customer_id}/tier-pin`);
  });
  $("end-form").addEventListener("submit", (event) => {
    event.preventDefault();
    act(`Call ${state.selected} ended`, "POST", `/api/calls/${state.selected}/end`,
      { outcome: "transferred", reason: "ended by a supervisor" });
  });
  $("chart-queue").addEventListener("change", drawChart);
  setInterval(tick, 1000);
  window.addEventListener("resize", () => plot && plot.setSize(chartSize()));
}

function endAgentCall(agent) {
  act(`Call ${agent.call_id} ended`, "POST", `/api/calls/${agent.call_id}/end`,
    { outcome: "completed", reason: "ended by a supervisor" });
}

// -- the chart (uPlot, shipped beside this file) ------------------------------------

let plot = null;

/** Epoch seconds as the wall clock (HH:MM), for the chart's time axis. */
function clock(t) {
  return new Date(t * 1000).toLocaleTimeString("en-GB", { hour: "2-digit", minute: "2-digit" });
}

function chartSize() {
  const width = Math.max(300, $("chart").clientWidth || 600);
  return { width, height: 230 };
}

/** Dots where a line cannot show the data: a lone value (the first answer of the hour,
 * the first sample) draws no line at all, so a series with few values gets its points. */
function sparse(u, seriesIdx) {
  let values = 0;
  for (const v of u.data[seriesIdx]) if (v !== null && v !== undefined) values += 1;
  return values < 30;
}

const dots = (colour) => ({ show: sparse, size: 9, fill: colour, stroke: colour });

function drawChart() {
  if (typeof uPlot === "undefined" || !state.board) return;
  const queue = $("chart-queue").value || (state.board.stats.queues[0] || {}).name;
  // The hour's points end at the last 10 s bucket that has ended; the board's own
  // figures are "now", so the lines reach the present instead of stopping short.
  const points = [...state.chart];
  const stats = state.board.stats;
  const last = points.length ? Date.parse(points[points.length - 1].at) : 0;
  if (Date.parse(stats.at) > last) {
    points.push({
      at: stats.at,
      waiting: Object.fromEntries(stats.queues.map((q) => [q.name, q.waiting])),
      service_level: Object.fromEntries(stats.queues.map((q) => [q.name, q.window.service_level])),
    });
  }
  const xs = points.map((p) => Date.parse(p.at) / 1000);
  const waiting = points.map((p) => p.waiting[queue] ?? null);
  const sl = points.map((p) => {
    const v = p.service_level[queue];
    return v === null || v === undefined ? null : v * 100;
  });
  const data = [xs, waiting, sl];
  if (plot) {
    plot.setData(data);
    return;
  }
  plot = new uPlot(
    {
      ...chartSize(),
      series: [
        {},
        { label: "Waiting", stroke: "#1a5fb4", width: 2, scale: "n", points: dots("#1a5fb4") },
        { label: "Service level %", stroke: "#1e7b34", width: 2, scale: "%", points: dots("#1e7b34") },
      ],
      axes: [
        { values: (u, splits) => splits.map((t) => clock(t)) },
        { scale: "n" },
        { scale: "%", side: 1, grid: { show: false } },
      ],
      scales: {
        // Always the last hour, whatever the samples cover so far.
        x: { time: true, range: (u, lo, hi) => [(hi || Date.now() / 1000) - 3600, (hi || Date.now() / 1000) + 30] },
        "%": { range: [0, 100] },
        n: { range: (u, lo, hi) => [0, Math.max(5, hi || 0)] },
      },
    },
    data,
    $("chart"),
  );
}

// -- start -----------------------------------------------------------------------

wire();
if (state.token) start();
else showConn("signed-out", "Signed out");
