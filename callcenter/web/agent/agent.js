// The agent panel: one websocket to /ws/agent, rendered purely from what the server sends.
//
// The server is the source of truth: every (re)connect starts with a full `state` (and a
// `panel` while the agent holds a call), so this page keeps no state of its own beyond
// the token (sessionStorage, this tab only) and the agent's unsent wrap-up draft.
// All text from the server goes through textContent, never innerHTML.
(() => {
  "use strict";

  const params = new URLSearchParams(location.search);
  // How often to ping; a connection silent for 2.5 pings is taken for dead. `?ping=` is for tests.
  const PING_SECONDS = clampNumber(params.get("ping"), 0.2, 60, 10);
  const BACKOFF_FIRST = 0.5; // seconds; doubles per failed attempt ...
  const BACKOFF_MAX = 15; //    ... up to this, with jitter, and resets once connected
  const TOKEN_KEY = "callcenter.agent.token";
  const DRAFT_PREFIX = "callcenter.agent.draft.";
  const SOUND_KEY = "callcenter.agent.sound";

  const STATE_LABELS = {
    offline: "Offline",
    available: "Available",
    offered: "Ringing",
    on_call: "On call",
    wrap_up: "Wrap-up",
    not_responding: "Not responding",
  };
  const IDLE_TEXT = {
    offline: "You are offline: press Available to take calls.",
    available: "Waiting for a call…",
    not_responding: "An offer was missed or rejected: press Available to take calls again.",
  };
  const RECOGNISED = {
    phone: "by phone",
    customer_number: "by customer number",
    linked: "by customer number; the phone is now linked",
    conflict: "by customer number; the phone belongs to someone else",
    multiple: "not sure: the phone is shared",
    unknown: "new caller",
    withheld: "number withheld",
  };

  const $ = (id) => document.getElementById(id);
  const store = window.sessionStorage;

  // -- what the server told us ------------------------------------------------------
  const view = {
    agent: null,
    offer: null,
    call: null,
    panels: new Map(), // call id -> the last `panel` message for it
    history: new Map(), // call id -> {items, next}
  };
  let token = store.getItem(TOKEN_KEY);
  let ws = null;
  let connected = false; // a `state` arrived on the current socket
  let attempt = 0;
  let reconnectTimer = null;
  let reconnectAt = 0;
  let lastHeard = 0;
  let pingTimer = null;
  let refs = 0;
  const pending = new Map(); // ref -> {kind, callId}
  let ringingId = null;
  let shownCallId = null;
  const savedCalls = new Set(); // calls whose wrap-up the server acknowledged
  let shownQuestionKey; // undefined: nothing rendered yet for this call
  let audio = null;
  let soundOn = localStorage.getItem(SOUND_KEY) === "on";
  let beepTimer = null;
  let focusOnState = false; // just signed in: put focus on the first useful control

  // -- small helpers -----------------------------------------------------------------

  function clampNumber(raw, lo, hi, fallback) {
    const n = Number(raw);
    return raw !== null && Number.isFinite(n) ? Math.min(hi, Math.max(lo, n)) : fallback;
  }

  function setText(node, value) {
    node.textContent = value === null || value === undefined ? "" : String(value);
  }

  function h(tag, text, className) {
    const node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = String(text);
    if (className) node.className = className;
    return node;
  }

  function clock(seconds) {
    const s = Math.max(0, Math.floor(seconds));
    const hours = Math.floor(s / 3600);
    const mm = String(Math.floor((s % 3600) / 60));
    const ss = String(s % 60).padStart(2, "0");
    return hours ? `${hours}:${mm.padStart(2, "0")}:${ss}` : `${mm}:${ss}`;
  }

  function when(iso) {
    if (!iso) return "";
    const d = new Date(iso);
    return Number.isNaN(d.getTime())
      ? String(iso)
      : d.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
  }

  /** An answer as the agent reads it: stored yes/no answers may come back as booleans. */
  function answerText(value) {
    if (value === true) return "yes";
    if (value === false) return "no";
    return value === null || value === undefined ? "" : String(value);
  }

  function money(raw) {
    const n = Number(raw);
    if (raw === null || raw === undefined || !Number.isFinite(n)) return raw ?? "";
    return n.toLocaleString(undefined, { minimumFractionDigits: 2, maximumFractionDigits: 2 });
  }

  function secondsSince(iso) {
    return (Date.now() - new Date(iso).getTime()) / 1000;
  }

  function isTyping(target) {
    if (!target || !target.tagName) return false;
    const tag = target.tagName.toLowerCase();
    return tag === "textarea" || tag === "select" || target.isContentEditable ||
      (tag === "input" && !["checkbox", "radio", "button", "submit"].includes(target.type));
  }

  /** What to call the caller: a provisional record (a first call) has no name yet. */
  function callerName(customer, ani) {
    if (customer && customer.name) return customer.name;
    return ani ? `Caller ${ani}` : "Unknown caller";
  }

  function addFact(list, term, value) {
    if (value === null || value === undefined || value === "") return;
    const dt = h("dt", term);
    const dd = h("dd", value);
    list.append(dt, dd);
    return dd;
  }

  // -- connection ----------------------------------------------------------------------

  function showConn(kind, label) {
    const node = $("conn");
    node.dataset.conn = kind;
    setText(node, label);
    $("reconnect-now").hidden = kind !== "reconnecting";
    document.body.dataset.conn = kind;
    renderControls();
  }

  function wsUrl() {
    const url = new URL("/ws/agent", location.href);
    url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
    url.searchParams.set("token", token);
    return url.toString();
  }

  function connect() {
    clearTimeout(reconnectTimer);
    reconnectTimer = null;
    if (!token) return;
    showConn("connecting", "Connecting…");
    const sock = new WebSocket(wsUrl());
    let opened = false;
    ws = sock;
    connected = false;
    sock.onopen = () => {
      if (ws !== sock) return;
      opened = true;
      lastHeard = Date.now();
      startPing();
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
      onMessage(message);
    };
    sock.onclose = (event) => {
      if (ws !== sock) return;
      dropped(event.code, opened);
    };
  }

  function dropped(code, opened) {
    ws = null;
    connected = false;
    stopPing();
    pending.clear();
    $("finish").dataset.busy = "";
    stopRinging();
    if (!token) return;
    if (code === 4001 || code === 4401) {
      signOut("Token not accepted: sign in again with a valid token.");
      return;
    }
    if (opened) {
      scheduleReconnect();
      return;
    }
    // The handshake failed: a browser cannot see why, so ask whether the token still counts.
    checkToken(token).then((verdict) => {
      if (!token || ws) return;
      if (verdict === "rejected") {
        signOut("Token not accepted: sign in again with a valid token.");
      } else {
        scheduleReconnect();
      }
    });
  }

  function scheduleReconnect() {
    const ceiling = Math.min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** attempt);
    attempt += 1;
    const delay = ceiling / 2 + (Math.random() * ceiling) / 2;
    reconnectAt = Date.now() + delay * 1000;
    clearTimeout(reconnectTimer);
    reconnectTimer = setTimeout(connect, delay * 1000);
    showReconnecting();
    renderAll();
  }

  function showReconnecting() {
    const left = Math.max(1, Math.ceil((reconnectAt - Date.now()) / 1000));
    showConn("reconnecting", `Reconnecting in ${left} s`);
  }

  function startPing() {
    stopPing();
    pingTimer = setInterval(() => {
      if (!ws || ws.readyState !== WebSocket.OPEN) return;
      if (Date.now() - lastHeard > PING_SECONDS * 2500) {
        // Nothing came back, not even a pong: the connection is dead even if the socket
        // does not know yet. Let it go and start a new one.
        const dead = ws;
        dead.onclose = null;
        dead.onmessage = null;
        try {
          dead.close(4000, "no answer to ping");
        } catch {
          /* already closing */
        }
        dropped(1006, true);
        return;
      }
      ws.send(JSON.stringify({ type: "ping" }));
    }, PING_SECONDS * 1000);
  }

  function stopPing() {
    clearInterval(pingTimer);
    pingTimer = null;
  }

  function send(message, kind, callId) {
    if (!ws || ws.readyState !== WebSocket.OPEN || !connected) {
      showNotice("Not connected: try again once the panel shows Connected.");
      return false;
    }
    refs += 1;
    const ref = `p${refs}`;
    pending.set(ref, { kind, callId });
    ws.send(JSON.stringify({ ...message, ref }));
    return true;
  }

  async function checkToken(candidate) {
    try {
      const response = await fetch("/agent/session", {
        headers: { Authorization: `Bearer ${candidate}` },
        cache: "no-store",
      });
      if (response.status === 401) return "rejected";
      if (!response.ok) return "unreachable";
      return await response.json();
    } catch {
      return "unreachable";
    }
  }

  // -- sign in and out -------------------------------------------------------------------

  async function signIn(event) {
    event.preventDefault();
    const error = $("sign-in-error");
    const candidate = $("token").value.trim();
    if (!candidate) {
      setText(error, "Paste your agent token first.");
      $("token").focus();
      return;
    }
    setText(error, "Checking…");
    const verdict = await checkToken(candidate);
    if (verdict === "rejected") {
      setText(error, "Token not accepted: check it, or ask for a new one.");
      $("token").select();
      return;
    }
    if (verdict === "unreachable") {
      setText(error, "The service does not answer; try again in a moment.");
      return;
    }
    setText(error, "");
    $("token").value = "";
    token = candidate;
    store.setItem(TOKEN_KEY, token);
    setText($("agent-name"), verdict.name);
    focusOnState = true;
    start();
  }

  function start() {
    $("sign-in").hidden = true;
    $("who").hidden = false;
    attempt = 0;
    connect();
    renderAll();
  }

  function signOut(reason) {
    const sock = ws;
    $("notice").dataset.sticky = ""; // it may quote a customer's notes: not for the next person
    showNotice("");
    const state = view.agent && view.agent.state;
    token = null;
    ws = null;
    connected = false;
    store.removeItem(TOKEN_KEY);
    for (const key of Object.keys(store)) {
      if (key.startsWith(DRAFT_PREFIX)) store.removeItem(key);
    }
    clearTimeout(reconnectTimer);
    stopPing();
    stopRinging();
    pending.clear();
    if (sock) {
      sock.onclose = null;
      sock.onmessage = null;
      if (sock.readyState === WebSocket.OPEN && ["available", "offered", "not_responding"].includes(state)) {
        // Signing out ends the shift: take no more calls. The server reads this message
        // before the close that follows it, so there is nothing to wait for.
        sock.send(JSON.stringify({ type: "offline", ref: "sign-out" }));
      }
      sock.close(1000, "signed out");
    }
    view.agent = null;
    view.offer = null;
    view.call = null;
    view.panels.clear();
    view.history.clear();
    shownCallId = null;
    shownQuestionKey = undefined;
    $("who").hidden = true;
    $("sign-in").hidden = false;
    setText($("sign-in-error"), reason || "");
    showConn("signed-out", "Signed out");
    renderAll();
    $("token").focus();
  }

  // -- messages ------------------------------------------------------------------------

  function onMessage(message) {
    switch (message.type) {
      case "state":
        if (!connected) {
          connected = true;
          attempt = 0;
          showConn("connected", "Connected");
        }
        view.agent = message.agent;
        view.offer = message.offer;
        view.call = message.call;
        forgetOtherCalls();
        renderAll();
        if (focusOnState) {
          focusOnState = false;
          focusFirstControl();
        }
        break;
      case "offer":
        if (!view.offer || view.offer.offer_id !== message.offer_id) view.offer = message;
        renderAll();
        break;
      case "panel":
        view.panels.set(message.call_id, message);
        view.history.set(message.call_id, {
          items: (message.history && message.history.items) || [],
          next: message.history ? message.history.next_before : null,
        });
        renderAll();
        break;
      case "history": {
        const page = view.history.get(message.call_id);
        if (page) {
          page.items = page.items.concat(message.items || []);
          page.next = message.next_before;
        }
        settle(message.ref);
        renderHistory();
        break;
      }
      case "ack":
        onAck(message);
        break;
      case "error":
        onError(message);
        break;
      default:
        break; // pong and anything newer than this page
    }
  }

  function settle(ref) {
    const request = pending.get(ref);
    pending.delete(ref);
    return request;
  }

  function onAck(message) {
    const request = settle(message.ref);
    if (!request) return;
    showNotice("");
    if (request.kind === "wrap_up" || request.kind === "finish") {
      // Stored: the draft has done its job. The `state` that follows hides the call.
      savedCalls.add(request.callId);
      store.removeItem(DRAFT_PREFIX + request.callId);
      $("finish").dataset.busy = "";
    } else if (request.kind === "finish-end") {
      send({ type: "available" }, "finish", request.callId);
    }
  }

  function onError(message) {
    const request = settle(message.ref);
    const detail = message.detail || `error ${message.status}`;
    if (!request) {
      showNotice(detail);
      return;
    }
    switch (request.kind) {
      case "accept":
      case "reject":
        setText($("ring-error"), detail);
        break;
      case "history":
        setText($("history-error"), detail);
        break;
      case "wrap_up":
      case "finish":
      case "finish-end":
      case "end":
        $("finish").dataset.busy = "";
        renderControls();
        showWrapError(message.field, detail);
        break;
      default:
        showNotice(detail);
    }
  }

  function showWrapError(field, detail) {
    const f = field || "";
    let slot = "wrap-error";
    let focus = null;
    if (f.startsWith("answer")) {
      slot = "question-error";
      focus = $("question-input").querySelector("input") || $("question-skip");
    } else if (f.startsWith("notes")) {
      slot = "notes-error";
      focus = $("notes");
    } else if (f.startsWith("outcome")) {
      slot = "outcome-error";
      focus = $("outcome");
    }
    setText($(slot), detail);
    if (slot !== "wrap-error" && !$("question").hidden) $("question").hidden = false;
    if (focus) focus.focus();
  }

  function focusFirstControl() {
    if (!$("ring").hidden) $("accept").focus();
    else if (!$("call").hidden) $("call-title").focus();
    else if (!$("go-available").disabled) $("go-available").focus();
    else if (!$("go-offline").disabled) $("go-offline").focus();
  }

  /** A message outside any form. Sticky ones (unsaved notes) stay until dismissed. */
  function showNotice(text, sticky = false) {
    const node = $("notice");
    if (!text && node.dataset.sticky === "1") return;
    node.dataset.sticky = sticky ? "1" : "";
    setText($("notice-text"), text);
    node.hidden = !text;
  }

  function forgetOtherCalls() {
    const current = view.call ? view.call.id : null;
    for (const id of [...view.panels.keys()]) {
      if (id !== current) {
        view.panels.delete(id);
        view.history.delete(id);
      }
    }
  }

  // -- rendering -------------------------------------------------------------------------

  function holdsCall() {
    const a = view.agent;
    return Boolean(view.call && a && (a.state === "on_call" || a.state === "wrap_up"));
  }

  function renderAll() {
    renderControls();
    renderRing();
    renderCall();
    renderIdle();
  }

  function renderControls() {
    const a = view.agent;
    const live = connected && Boolean(a);
    document.body.classList.toggle("stale", Boolean(token) && !connected);
    if (a) {
      setText($("agent-name"), a.name);
      setText($("agent-state"), STATE_LABELS[a.state] || a.state);
      $("agent-state").dataset.state = a.state;
    }
    const state = a ? a.state : null;
    const panelled = view.call && view.panels.has(view.call.id);
    $("go-available").disabled =
      !live || !(state === "offline" || state === "not_responding" || (state === "wrap_up" && !panelled));
    $("go-offline").disabled = !live || !(state === "available" || state === "not_responding");
    $("accept").disabled = !live;
    $("reject").disabled = !live;
    $("finish").disabled = !live || $("finish").dataset.busy === "1";
    $("end-call").disabled = !live;
    $("older").disabled = !live;
    $("sound").setAttribute("aria-pressed", String(soundOn));
    setText($("sound"), soundOn ? "Sound on" : "Sound off");
  }

  function renderIdle() {
    const a = view.agent;
    const text = a && !view.offer && !holdsCall() ? IDLE_TEXT[a.state] : null;
    $("idle").hidden = !text || !token;
    setText($("idle-text"), text);
  }

  function renderRing() {
    const offer = token ? view.offer : null;
    const ring = $("ring");
    if (!offer) {
      ring.hidden = true;
      ring.dataset.offerId = "";
      if (ringingId !== null) setText($("live"), "");
      stopRinging();
      ringingId = null;
      return;
    }
    const customer = offer.customer;
    const name = callerName(customer, offer.ani);
    const priority = offer.priority || null;
    const tier = (priority && priority.tier) || offer.tier || (customer && customer.tier) || "unidentified";
    setText($("ring-name"), name);
    setText($("ring-tier"), tier);
    $("ring-tier").dataset.tier = tier;
    setText($("ring-reason"), priority ? priority.reason : "");
    $("ring-reason").hidden = !priority;
    const line = [];
    if (customer && customer.customer_number) line.push(`customer ${customer.customer_number}`);
    if (customer && customer.provisional) line.push("provisional record");
    if (offer.ani) line.push(`calling from ${offer.ani}`);
    line.push(`queue ${offer.queue}`);
    setText($("ring-line"), line.join(" · "));
    ring.dataset.offerId = String(offer.offer_id);
    ring.hidden = false;
    tickRing();
    if (ringingId !== offer.offer_id) {
      ringingId = offer.offer_id;
      setText($("ring-error"), "");
      setText($("live"), `Incoming call: ${name}, ${tier}. Press A to accept or R to reject.`);
      if (!isTyping(document.activeElement)) $("accept").focus();
      startRinging();
    }
  }

  function tickRing() {
    const offer = view.offer;
    if (!offer || $("ring").hidden) return;
    setText($("ring-waited"), `waited ${clock(secondsSince(offer.enqueued_at))}`);
    const left = -secondsSince(offer.expires_at);
    setText($("ring-expires"), left > 0 ? `answer within ${clock(Math.ceil(left))}` : "offer expiring");
  }

  function renderCall() {
    const section = $("call");
    if (!token || !holdsCall()) {
      section.hidden = true;
      if (shownCallId !== null) {
        warnIfUnsaved(shownCallId);
        store.removeItem(DRAFT_PREFIX + shownCallId);
      }
      shownCallId = null;
      shownQuestionKey = undefined;
      return;
    }
    const call = view.call;
    const panel = view.panels.get(call.id) || null;
    const onCall = view.agent.state === "on_call";
    const customer = (panel && panel.customer) || call.customer;
    const name = callerName(customer, call.ani);
    const fresh = shownCallId !== call.id;
    if (fresh) {
      shownCallId = call.id;
      shownQuestionKey = undefined;
      loadDraft(call.id);
      clearWrapErrors();
    }
    section.hidden = false;
    // A newly taken call: move focus to it (the Accept button just went away with the ring).
    if (fresh && !isTyping(document.activeElement)) $("call-title").focus();
    section.dataset.callId = String(call.id);
    setText($("call-title"), onCall ? `On call with ${name}` : `Wrap-up: ${name}`);
    const meta = [`queue ${call.queue}`];
    if (call.connected_at) meta.push(`connected ${when(call.connected_at)}`);
    if (call.ani) meta.push(`from ${call.ani}`);
    setText($("call-meta"), meta.join(" · "));
    $("end-call").hidden = !onCall;
    $("panel-missing").hidden = Boolean(panel);
    renderCustomer(call, panel, customer);
    renderNeeds(panel);
    renderTreatments(panel);
    renderHistory();
    renderQuestion(panel);
  }

  /** The call went away (wrap-up time ran out, a supervisor ended it) before the agent
   * finished: say so, with the notes, rather than drop them silently. */
  function warnIfUnsaved(callId) {
    if (!token || savedCalls.has(callId)) return;
    for (const request of pending.values()) if (request.callId === callId) return;
    const draft = readDraft(callId);
    const answered = Object.values(draft.answers || {}).length > 0;
    if (!draft.notes && !answered) return;
    const notes = draft.notes ? ` Your notes were: “${draft.notes}”` : "";
    showNotice(`The wrap-up ended before Finish, so it was not saved.${notes}`, true);
  }

  function renderCustomer(call, panel, customer) {
    const facts = $("customer-facts");
    facts.replaceChildren();
    if (customer) {
      addFact(facts, "Name", customer.name);
      addFact(facts, "Customer number", customer.customer_number);
      const tier = addFact(facts, "Tier", customer.tier);
      if (tier) {
        tier.className = "tier";
        tier.dataset.tier = customer.tier;
        if (customer.tier_pinned) tier.append(h("span", " (pinned)", "muted"));
      }
      if (customer.provisional) addFact(facts, "Record", "provisional (first contact from this number)");
    } else {
      addFact(facts, "Caller", "not identified");
    }
    if (panel && panel.recognised) {
      const how = RECOGNISED[panel.recognised.by] || panel.recognised.by;
      addFact(facts, "Recognised", panel.recognised.detail || how);
    } else if (call.identified_by) {
      addFact(facts, "Recognised", RECOGNISED[call.identified_by] || call.identified_by);
    }
    if (customer && panel) {
      addFact(facts, "Lifetime value", money(customer.lifetime_value));
      addFact(facts, "Annual margin", money(customer.annual_margin));
      addFact(facts, "Cost to serve", money(customer.cost_to_serve));
      if (customer.phones && customer.phones.length) addFact(facts, "Phones", customer.phones.join(", "));
    }
  }

  function renderNeeds(panel) {
    const list = $("needs-list");
    list.replaceChildren();
    const needs = panel ? panel.needs || [] : [];
    for (const need of needs) {
      const dd = addFact(list, need.question || need.key, answerText(need.value));
      if (dd && need.answered_at) dd.title = `answered ${when(need.answered_at)}`;
    }
    $("needs").hidden = !panel;
    $("needs-empty").hidden = needs.length > 0;
  }

  function renderTreatments(panel) {
    const list = $("treatment-list");
    list.replaceChildren();
    const items = panel ? panel.treatments || [] : [];
    for (const t of items) {
      const li = h("li");
      li.dataset.key = t.key || "";
      const head = h("p");
      head.append(h("strong", t.title), " ", h("span", t.kind, "badge"));
      li.append(head);
      if (t.detail) li.append(h("p", t.detail));
      li.append(h("p", `Why: ${t.reason}`, "reason"));
      list.append(li);
    }
    $("treatments").hidden = !panel;
    $("treatments-empty").hidden = items.length > 0;
  }

  function renderHistory() {
    const call = view.call;
    const page = call ? view.history.get(call.id) : null;
    $("history").hidden = !page;
    const rows = $("history-rows");
    rows.replaceChildren();
    if (!page) return;
    for (const item of page.items) {
      const tr = h("tr");
      tr.dataset.interactionId = String(item.interaction_id);
      let answer = "";
      if (item.answer) {
        answer = item.answer.skipped
          ? `${item.answer.question}: skipped`
          : `${item.answer.question}: ${answerText(item.answer.value)}`;
      }
      for (const cell of [when(item.started_at), item.channel, item.agent, item.outcome, item.notes, answer]) {
        tr.append(h("td", cell));
      }
      rows.append(tr);
    }
    $("history-table").hidden = page.items.length === 0;
    $("history-empty").hidden = page.items.length > 0;
    $("older").hidden = page.next === null || page.next === undefined;
  }

  function renderQuestion(panel) {
    const q = panel ? panel.question : null;
    const key = q ? `${q.key}|${q.kind}|${(q.choices || []).join("\u0000")}` : null;
    if (key === shownQuestionKey) return;
    shownQuestionKey = key;
    const box = $("question-input");
    box.replaceChildren();
    $("question").hidden = !q;
    $("question").dataset.key = q ? q.key : "";
    setText($("question-error"), "");
    if (!q) return;
    setText($("question-text"), q.text);
    const draft = readDraft(shownCallId);
    const saved = draft.answers ? draft.answers[q.key] : undefined;
    if (q.kind === "choice" || q.kind === "yes_no") {
      const options = q.kind === "yes_no" ? [["yes", "Yes"], ["no", "No"]] : (q.choices || []).map((c) => [c, c]);
      const group = h("div", null, "choices");
      group.setAttribute("role", "radiogroup");
      group.setAttribute("aria-labelledby", "question-text");
      options.forEach(([value, label], i) => {
        const id = `answer-${i}`;
        const input = document.createElement("input");
        input.type = "radio";
        input.name = "answer";
        input.id = id;
        input.value = value;
        input.checked = saved === value;
        const lab = h("label", label, "inline");
        lab.htmlFor = id;
        lab.prepend(input, " ");
        group.append(lab);
      });
      box.append(group);
    } else {
      const lab = h("label", q.kind === "number" ? "Answer (a number)" : "Answer");
      lab.htmlFor = "answer-text";
      const input = document.createElement("input");
      input.id = "answer-text";
      input.name = "answer";
      input.type = "text";
      input.autocomplete = "off";
      if (q.kind === "number") input.inputMode = "decimal";
      input.maxLength = 500;
      input.setAttribute("aria-describedby", "question-error");
      input.value = saved === undefined ? "" : saved;
      box.append(lab, input);
    }
    $("question-skip").checked = Boolean(draft.skip && draft.skip[q.key]);
    syncSkip();
  }

  function syncSkip() {
    const skip = $("question-skip").checked;
    for (const input of $("question-input").querySelectorAll("input")) input.disabled = skip;
  }

  // -- wrap-up ---------------------------------------------------------------------------

  function readDraft(callId) {
    try {
      return JSON.parse(store.getItem(DRAFT_PREFIX + callId) || "{}") || {};
    } catch {
      return {};
    }
  }

  function loadDraft(callId) {
    const draft = readDraft(callId);
    $("notes").value = draft.notes || "";
    $("outcome").value = draft.outcome || "completed";
    $("question-skip").checked = false;
    $("finish").dataset.busy = "";
  }

  function saveDraft() {
    if (shownCallId === null) return;
    const draft = readDraft(shownCallId);
    draft.notes = $("notes").value;
    draft.outcome = $("outcome").value;
    const key = $("question").dataset.key;
    if (key) {
      draft.answers = draft.answers || {};
      draft.skip = draft.skip || {};
      const value = currentAnswer();
      if (value === null) delete draft.answers[key];
      else draft.answers[key] = value;
      draft.skip[key] = $("question-skip").checked;
    }
    store.setItem(DRAFT_PREFIX + shownCallId, JSON.stringify(draft));
  }

  function currentAnswer() {
    const box = $("question-input");
    const radio = box.querySelector("input[type=radio]:checked");
    if (radio) return radio.value;
    const text = box.querySelector("input[type=text]");
    if (text && text.value.trim() !== "") return text.value.trim();
    return null;
  }

  /** A number question's answer goes out as a JSON number when it reads as one; anything
   * else is sent as typed, so the server's check names what is wrong. */
  function wireAnswer(question, raw) {
    if (question.kind !== "number") return raw;
    const n = Number(raw.replace(",", "."));
    return Number.isFinite(n) ? n : raw;
  }

  function clearWrapErrors() {
    for (const id of ["question-error", "outcome-error", "notes-error", "wrap-error"]) setText($(id), "");
  }

  function finish(event) {
    event.preventDefault();
    if (!holdsCall() || $("finish").disabled) return;
    clearWrapErrors();
    saveDraft();
    const call = view.call;
    const panel = view.panels.get(call.id);
    const outcome = $("outcome").value;
    let sent;
    if (panel) {
      let answer = null;
      const q = panel.question;
      if (q && $("question-skip").checked) answer = { question_key: q.key, skip: true };
      else if (q && currentAnswer() !== null) answer = { question_key: q.key, value: wireAnswer(q, currentAnswer()) };
      const notes = $("notes").value.trim();
      sent = send(
        { type: "wrap_up", call_id: call.id, outcome, notes: notes || null, answer },
        "wrap_up",
        call.id,
      );
    } else if (view.agent.state === "on_call") {
      // A service without the assist panel: end the call, then go available.
      sent = send({ type: "end", call_id: call.id, outcome }, "finish-end", call.id);
    } else {
      sent = send({ type: "available" }, "finish", call.id);
    }
    if (sent) {
      $("finish").dataset.busy = "1";
      $("finish").disabled = true;
    }
  }

  function endCall() {
    if (!holdsCall() || view.agent.state !== "on_call") return;
    clearWrapErrors();
    send({ type: "end", call_id: view.call.id, outcome: $("outcome").value }, "end", view.call.id);
  }

  // -- the ringing sound (off unless the agent turns it on) ---------------------------------

  function beep() {
    if (!soundOn || !audio) return;
    const osc = audio.createOscillator();
    const gain = audio.createGain();
    osc.frequency.value = 880;
    gain.gain.setValueAtTime(0.15, audio.currentTime);
    gain.gain.exponentialRampToValueAtTime(0.001, audio.currentTime + 0.35);
    osc.connect(gain).connect(audio.destination);
    osc.start();
    osc.stop(audio.currentTime + 0.35);
  }

  function startRinging() {
    stopRinging();
    beep();
    beepTimer = setInterval(beep, 1500);
  }

  function stopRinging() {
    clearInterval(beepTimer);
    beepTimer = null;
  }

  function toggleSound() {
    soundOn = !soundOn;
    localStorage.setItem(SOUND_KEY, soundOn ? "on" : "off");
    if (soundOn && !audio && window.AudioContext) audio = new AudioContext();
    if (audio && audio.state === "suspended") audio.resume();
    renderControls();
  }

  // -- wiring ------------------------------------------------------------------------------

  function accept() {
    const offer = view.offer;
    if (!offer || $("accept").disabled) return;
    setText($("ring-error"), "");
    send({ type: "accept", offer_id: offer.offer_id }, "accept");
  }

  function reject() {
    const offer = view.offer;
    if (!offer || $("reject").disabled) return;
    setText($("ring-error"), "");
    send({ type: "reject", offer_id: offer.offer_id }, "reject");
  }

  function onKey(event) {
    if (event.ctrlKey && event.key === "Enter" && holdsCall()) {
      event.preventDefault();
      $("wrap").requestSubmit();
      return;
    }
    if (event.ctrlKey || event.metaKey || event.altKey || isTyping(event.target)) return;
    if ($("ring").hidden) return;
    const key = event.key.toLowerCase();
    if (key === "a") {
      event.preventDefault();
      accept();
    } else if (key === "r") {
      event.preventDefault();
      reject();
    }
  }

  function tick() {
    tickRing();
    if ($("conn").dataset.conn === "reconnecting") showReconnecting();
  }

  function init() {
    $("sign-in-form").addEventListener("submit", signIn);
    $("sign-out").addEventListener("click", () => signOut(""));
    $("go-available").addEventListener("click", () => send({ type: "available" }, "available"));
    $("go-offline").addEventListener("click", () => send({ type: "offline" }, "offline"));
    $("reconnect-now").addEventListener("click", () => {
      attempt = 0;
      connect();
    });
    $("sound").addEventListener("click", toggleSound);
    $("notice-close").addEventListener("click", () => {
      $("notice").dataset.sticky = "";
      showNotice("");
    });
    $("accept").addEventListener("click", accept);
    $("reject").addEventListener("click", reject);
    $("end-call").addEventListener("click", endCall);
    $("older").addEventListener("click", () => {
      const page = view.call && view.history.get(view.call.id);
      if (!page || page.next === null || page.next === undefined) return;
      setText($("history-error"), "");
      send({ type: "history", call_id: view.call.id, before: page.next }, "history", view.call.id);
    });
    $("wrap").addEventListener("submit", finish);
    $("wrap").addEventListener("input", () => {
      syncSkip();
      saveDraft();
    });
    $("question-skip").addEventListener("change", () => {
      syncSkip();
      saveDraft();
    });
    document.addEventListener("keydown", onKey);
    window.addEventListener("online", () => {
      if (token && !ws) {
        attempt = 0;
        connect();
      }
    });
    setInterval(tick, 250);
    if (token) start();
    else {
      showConn("signed-out", "Signed out");
      renderAll();
    }
  }

  init();
})();
