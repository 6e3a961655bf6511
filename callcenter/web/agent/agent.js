// The agent panel: one websocket to /ws/agent, rendered purely from what the server sends.
//
// The server is the source of truth: every (re)connect starts with a full `state` (and a
// `panel` while the agent holds a call), so this page keeps no state of its own beyond
// the token (sessionStorage, this tab only), the agent's unsent wrap-up drafts, and the
// wrap-ups of calls that went away before they were saved (the server accepts those for
// an hour after the call ended, but never says which are open, so the page remembers).
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
  const UNFINISHED_PREFIX = "callcenter.agent.unfinished.";
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
  let shown = null; // the call on screen as the wrap-up needs it: {callId, name, queue, question}
  // Calls that went away before their wrap-up was saved: call id -> {callId, name, queue,
  // question, sending, quiet, error}. Each has a "Finish the wrap-up" card until it is saved.
  const unfinished = new Map();
  const cardNodes = new Map(); // call id -> its card's <form>
  let historyBusy = null; // the call whose older history page is on its way
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

  function day(iso) {
    const d = new Date(iso);
    return Number.isNaN(d.getTime()) ? String(iso) : d.toLocaleDateString(undefined, { dateStyle: "medium" });
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

  /** A calling number the agent can read back; PBXs send words ("anonymous", "restricted")
   * for a withheld one. */
  function dialable(ani) {
    return Boolean(ani) && /\d{3}/.test(ani);
  }

  /** What to call the caller: a provisional record (a first call) has no name yet. */
  function callerName(customer, ani) {
    if (customer && customer.name) return customer.name;
    return dialable(ani) ? `Caller ${ani}` : "Withheld number";
  }

  /** "from 1 to 20", "of at least 1", "of at most 20" or "": a number question's range. */
  function numberRange(q) {
    const lo = q.min_value;
    const hi = q.max_value;
    const has = (v) => v !== null && v !== undefined;
    if (has(lo) && has(hi)) return ` from ${lo} to ${hi}`;
    if (has(lo)) return ` of at least ${lo}`;
    if (has(hi)) return ` of at most ${hi}`;
    return "";
  }

  function addFact(list, term, value) {
    if (value === null || value === undefined || value === "") return;
    const dt = h("dt", term);
    const dd = h("dd", value);
    list.append(dt, dd);
    return dd;
  }

  // -- connection ----------------------------------------------------------------------

  /** The connection pill (a status region, so a change is announced once). `countdown`
   * is left out of what is announced: it changes every second. */
  function showConn(kind, label, countdown = "") {
    const node = $("conn");
    if (node.dataset.conn === kind && node.firstChild && node.firstChild.textContent === label) {
      const tail = node.querySelector("span");
      if (tail) setText(tail, countdown);
    } else {
      const tail = h("span", countdown);
      tail.setAttribute("aria-hidden", "true");
      node.replaceChildren(label, tail);
    }
    node.dataset.conn = kind;
    $("reconnect-now").hidden = kind !== "reconnecting";
    $("stale").hidden = kind !== "reconnecting";
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
    historyBusy = null;
    for (const item of unfinished.values()) {
      // Whether a wrap-up in flight was stored is unknown now: show its card again. Sending
      // it once more is safe, the server answers "already wrapped up" if it was.
      item.sending = false;
      item.quiet = false;
    }
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
    showConn("reconnecting", "Reconnecting", ` in ${left} s`);
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
      if (key.startsWith(DRAFT_PREFIX) || key.startsWith(UNFINISHED_PREFIX)) store.removeItem(key);
    }
    unfinished.clear();
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
    shown = null;
    historyBusy = null;
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
          // A page the panel already has (a request repeated across a reconnect) adds nothing.
          const have = new Set(page.items.map((item) => item.interaction_id));
          page.items = page.items.concat((message.items || []).filter((i) => !have.has(i.interaction_id)));
          page.next = message.next_before;
        }
        // The server's history page carries no `ref`: it answers the oldest request for it.
        for (const [ref, request] of pending) {
          if (request.kind === "history" && request.callId === message.call_id) {
            pending.delete(ref);
            break;
          }
        }
        if (historyBusy === message.call_id) historyBusy = null;
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
    if (request.kind === "wrap_up" || request.kind === "late") {
      // Stored: the draft has done its job. The `state` that follows hides the call.
      wrapUpSaved(request.callId);
    }
  }

  /** The server stored the wrap-up of `callId` (or had it already): forget the draft and
   * any card for it. */
  function wrapUpSaved(callId) {
    savedCalls.add(callId);
    store.removeItem(DRAFT_PREFIX + callId);
    if (callId === shownCallId) $("finish").dataset.busy = "";
    const item = unfinished.get(callId);
    if (item) {
      const node = cardNodes.get(callId);
      const hadFocus = Boolean(node && node.contains(document.activeElement));
      dropUnfinished(callId);
      if (!item.quiet) setText($("status"), `The wrap-up of ${item.name} is saved.`);
      renderAll();
      if (hadFocus) focusAfterCard();
    } else {
      renderControls();
    }
  }

  /** Sent again after it was stored (another tab, a reply lost to a dropped connection). */
  function alreadyWrappedUp(message) {
    return message.status === 409 && /already wrapped up/.test(message.detail || "");
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
        if (historyBusy === request.callId) historyBusy = null;
        setText($("history-error"), detail);
        renderHistory();
        break;
      case "wrap_up":
      case "late":
        if (alreadyWrappedUp(message)) {
          wrapUpSaved(request.callId);
          // Finish means "and go available": do the rest if the call is still on screen.
          const a = view.agent;
          if (a && a.state === "wrap_up" && view.call && view.call.id === request.callId) {
            send({ type: "available" }, "available");
          }
        } else if (request.callId === shownCallId) {
          $("finish").dataset.busy = "";
          renderControls();
          showWrapError(message.field, detail);
        } else if (unfinished.has(request.callId)) {
          const item = unfinished.get(request.callId);
          item.sending = false;
          item.quiet = false;
          item.error = { field: message.field || "", detail };
          renderUnfinished();
          focusCardError(item);
        } else {
          showNotice(detail);
        }
        break;
      case "end":
        $("finish").dataset.busy = "";
        renderControls();
        showWrapError(message.field, detail);
        break;
      default:
        showNotice(detail);
    }
  }

  /** A refused wrap-up: the reason goes next to the field at fault (an alert, which the
   * field also points at), the field is marked invalid and gets the focus. */
  function showWrapError(field, detail) {
    const f = field || "";
    let slot = "wrap-error";
    let invalid = null;
    if (f.startsWith("answer") && !$("question").hidden) {
      slot = "question-error";
      invalid = $("question-input");
    } else if (f.startsWith("notes")) {
      slot = "notes-error";
      invalid = $("notes");
    } else if (f.startsWith("outcome")) {
      slot = "outcome-error";
      invalid = $("outcome");
    }
    setText($(slot), detail);
    if (invalid) markInvalid(invalid, $("question-skip"));
  }

  /** Mark `target` (a field, or the box of a question's inputs) invalid and focus it. */
  function markInvalid(target, skip) {
    const fields = target.matches("input, select, textarea")
      ? [target]
      : [...target.querySelectorAll("input, [role=radiogroup]")];
    for (const field of fields) field.setAttribute("aria-invalid", "true");
    const focusable = [target, ...target.querySelectorAll("input")].filter(
      (n) => n.matches("input, select, textarea") && !n.disabled,
    );
    const checked = focusable.find((n) => n.checked);
    const focus = checked || focusable[0] || skip;
    if (focus) focus.focus();
  }

  function clearInvalid(root) {
    for (const node of root.querySelectorAll("[aria-invalid]")) node.removeAttribute("aria-invalid");
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
    renderUnfinished();
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
    $("older").disabled = !live || (view.call !== null && historyBusy === view.call.id);
    for (const [callId, form] of cardNodes) {
      const item = unfinished.get(callId);
      form.querySelector(".save").disabled = !live || !item || item.sending;
      form.querySelector(".discard").disabled = !item || item.sending;
    }
    const open = [...unfinished.values()].filter((item) => !item.quiet).length;
    $("unfinished-link").hidden = !token || open === 0;
    setText($("unfinished-link"), open === 1 ? "1 wrap-up to finish" : `${open} wrap-ups to finish`);
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
    line.push(dialable(offer.ani) ? `calling from ${offer.ani}` : "number withheld");
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
      if (shownCallId !== null) keepUnfinished(shown);
      shownCallId = null;
      shownQuestionKey = undefined;
      shown = null;
      return;
    }
    const call = view.call;
    const panel = view.panels.get(call.id) || null;
    const onCall = view.agent.state === "on_call";
    const customer = (panel && panel.customer) || call.customer;
    const name = callerName(customer, call.ani);
    const fresh = shownCallId !== call.id;
    if (fresh) {
      // The call before this one went straight away (no `state` without it in between).
      if (shownCallId !== null) keepUnfinished(shown);
      // A card for this very call (kept across a reload): the form takes over, same draft.
      if (unfinished.has(call.id)) dropUnfinished(call.id);
      shownCallId = call.id;
      shownQuestionKey = undefined;
      loadDraft(call.id);
      clearWrapErrors();
    }
    shown = { callId: call.id, name, queue: call.queue, question: panel ? panel.question : null };
    section.hidden = false;
    // A newly taken call: move focus to it (the Accept button just went away with the ring).
    if (fresh && !isTyping(document.activeElement)) $("call-title").focus();
    section.dataset.callId = String(call.id);
    setText($("call-title"), onCall ? `On call with ${name}` : `Wrap-up: ${name}`);
    const meta = [`queue ${call.queue}`];
    if (call.connected_at) meta.push(`connected ${when(call.connected_at)}`);
    meta.push(dialable(call.ani) ? `from ${call.ani}` : "number withheld");
    setText($("call-meta"), meta.join(" · "));
    $("end-call").hidden = !onCall;
    $("panel-missing").hidden = Boolean(panel);
    // A panel without a customer (a withheld number): nothing to show but who it is.
    const known = !panel || Boolean(panel.customer);
    renderCustomer(call, panel, customer);
    renderNeeds(panel, known);
    renderTreatments(panel, known);
    renderHistory();
    renderQuestion(panel);
  }

  function renderCustomer(call, panel, customer) {
    const facts = $("customer-facts");
    facts.replaceChildren();
    // How the caller was recognised comes first: "shared phone: ask who is calling" matters
    // before anything else on the card.
    let by = call.identified_by;
    let how = by ? RECOGNISED[by] || by : null;
    if (panel && panel.recognised) {
      by = panel.recognised.by;
      how = panel.recognised.detail || RECOGNISED[by] || by;
    }
    const recognised = addFact(facts, "Recognised", how);
    if (recognised) {
      recognised.className = "recognised";
      recognised.dataset.by = by || "";
    }
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
    if (customer && panel) {
      addFact(facts, "Lifetime value", money(customer.lifetime_value));
      addFact(facts, "Annual margin", money(customer.annual_margin));
      addFact(facts, "Cost to serve", money(customer.cost_to_serve));
      if (customer.phones && customer.phones.length) addFact(facts, "Phones", customer.phones.join(", "));
    }
    $("customer-none").hidden = !panel || Boolean(panel.customer);
  }

  function renderNeeds(panel, known) {
    const list = $("needs-list");
    list.replaceChildren();
    const needs = panel ? panel.needs || [] : [];
    for (const need of needs) {
      const dd = addFact(list, need.question || need.key, answerText(need.value));
      if (dd && need.answered_at) dd.append(" ", h("span", `(${day(need.answered_at)})`, "muted small"));
    }
    $("needs").hidden = !panel || !known;
    $("needs-empty").hidden = needs.length > 0;
  }

  function renderTreatments(panel, known) {
    const list = $("treatment-list");
    list.replaceChildren();
    const items = panel ? panel.treatments || [] : [];
    for (const t of items) {
      const li = h("li");
      li.dataset.key = t.key || "";
      const head = h("p", null, "treatment-title");
      head.append(h("strong", t.title), " ", h("span", t.kind, "badge"));
      li.append(head);
      if (t.detail) li.append(h("p", t.detail));
      li.append(h("p", `Why: ${t.reason}`, "reason"));
      const because = t.because || [];
      if (because.length) {
        // The caller's own facts that made the rule apply: the agent can check them.
        const box = h("div", null, "because");
        const label = h("span", "Applies because:", "muted");
        const facts = h("ul", null, "chips");
        facts.setAttribute("aria-label", `Applies because`);
        for (const fact of because) facts.append(h("li", fact));
        box.append(label, facts);
        li.append(box);
      }
      list.append(li);
    }
    $("treatments").hidden = !panel || !known;
    $("treatments-empty").hidden = items.length > 0;
  }

  function renderHistory() {
    const call = view.call;
    const page = call ? view.history.get(call.id) : null;
    const panel = call ? view.panels.get(call.id) : null;
    $("history").hidden = !page || Boolean(panel && !panel.customer);
    const rows = $("history-rows");
    rows.replaceChildren();
    if (!page) return;
    for (const item of page.items) {
      const tr = h("tr");
      tr.dataset.interactionId = String(item.interaction_id);
      for (const cell of [when(item.started_at), item.channel, item.agent, item.outcome, item.notes]) {
        tr.append(h("td", cell));
      }
      const answer = h("td", null, "answer");
      if (item.answer) {
        const value = item.answer.skipped ? "skipped" : answerText(item.answer.value);
        answer.append(h("span", item.answer.question, "muted"), " ", h("strong", value));
      }
      tr.append(answer);
      rows.append(tr);
    }
    $("history-table").hidden = page.items.length === 0;
    $("history-empty").hidden = page.items.length > 0;
    const more = page.next !== null && page.next !== undefined;
    $("older").hidden = !more;
    $("older").disabled = !connected || historyBusy === call.id;
    $("history").setAttribute("aria-busy", String(historyBusy === call.id));
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
    box.append(questionInputs(q, "", saved, "question-error"));
    $("question-skip").checked = Boolean(draft.skip && draft.skip[q.key]);
    syncSkip($("question-input"), $("question-skip"));
  }

  /** The inputs for question `q`, for its kind: radio buttons for a choice or yes/no, a
   * text field for a number or text. Ids and names start with `prefix` (the main form
   * has none, each unfinished wrap-up its own); `errorId` is where a refusal is shown,
   * and the inputs point at it, so a screen reader reads the error with the field. */
  function questionInputs(q, prefix, saved, errorId) {
    const box = document.createDocumentFragment();
    if (q.kind === "choice" || q.kind === "yes_no") {
      const options = q.kind === "yes_no" ? [["yes", "Yes"], ["no", "No"]] : (q.choices || []).map((c) => [c, c]);
      const group = h("div", null, "choices");
      group.setAttribute("role", "radiogroup");
      group.setAttribute("aria-labelledby", `${prefix}question-text`);
      group.setAttribute("aria-describedby", errorId);
      options.forEach(([value, label], i) => {
        const input = document.createElement("input");
        input.type = "radio";
        input.name = `${prefix}answer`;
        input.id = `${prefix}answer-${i}`;
        input.value = value;
        input.checked = saved === value;
        const lab = h("label", label, "inline");
        lab.htmlFor = input.id;
        lab.prepend(input, " ");
        group.append(lab);
      });
      box.append(group);
    } else {
      const lab = h("label", q.kind === "number" ? `Answer (a number${numberRange(q)})` : "Answer");
      lab.htmlFor = `${prefix}answer-text`;
      const input = document.createElement("input");
      input.id = `${prefix}answer-text`;
      input.name = `${prefix}answer`;
      input.type = "text";
      input.autocomplete = "off";
      if (q.kind === "number") input.inputMode = "decimal";
      input.maxLength = 500;
      input.setAttribute("aria-describedby", errorId);
      input.value = saved === undefined ? "" : saved;
      box.append(lab, input);
    }
    return box;
  }

  function syncSkip(box, skip) {
    for (const input of box.querySelectorAll("input")) input.disabled = skip.checked;
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

  /** Keep what the agent typed for `callId`: its notes, outcome (`null`: leave as it was),
   * and the answer or skip of question `key` as read from `box` and `skip`. */
  function writeDraft(callId, notes, outcome, key, box, skip) {
    const draft = readDraft(callId);
    draft.notes = notes;
    if (outcome !== null) draft.outcome = outcome;
    if (key) {
      draft.answers = draft.answers || {};
      draft.skip = draft.skip || {};
      const value = currentAnswer(box);
      if (value === null) delete draft.answers[key];
      else draft.answers[key] = value;
      draft.skip[key] = skip.checked;
    }
    store.setItem(DRAFT_PREFIX + callId, JSON.stringify(draft));
  }

  function saveDraft() {
    if (shownCallId === null) return;
    const key = $("question").dataset.key;
    writeDraft(shownCallId, $("notes").value, $("outcome").value, key, $("question-input"), $("question-skip"));
  }

  function currentAnswer(box) {
    const radio = box.querySelector("input[type=radio]:checked");
    if (radio) return radio.value;
    const text = box.querySelector("input[type=text]");
    if (text && text.value.trim() !== "") return text.value.trim();
    return null;
  }

  /** The `answer` of a wrap-up: a skip, the value given, or null (nothing asked or given). */
  function answerFor(question, box, skip) {
    if (!question) return null;
    if (skip.checked) return { question_key: question.key, skipped: true };
    const value = currentAnswer(box);
    return value === null ? null : { question_key: question.key, value: wireAnswer(question, value) };
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
    clearInvalid($("wrap"));
  }

  function finish(event) {
    event.preventDefault();
    if (!holdsCall() || $("finish").disabled) return;
    clearWrapErrors();
    saveDraft();
    const call = view.call;
    const panel = view.panels.get(call.id);
    // Without a panel there was no question, but the notes are stored all the same.
    const answer = panel ? answerFor(panel.question, $("question-input"), $("question-skip")) : null;
    const notes = $("notes").value.trim();
    const message = { type: "wrap_up", call_id: call.id, outcome: $("outcome").value, notes: notes || null, answer };
    if (send(message, "wrap_up", call.id)) {
      $("finish").dataset.busy = "1";
      $("finish").disabled = true;
    }
  }

  function endCall() {
    if (!holdsCall() || view.agent.state !== "on_call") return;
    clearWrapErrors();
    send({ type: "end", call_id: view.call.id, outcome: $("outcome").value }, "end", view.call.id);
  }

  // -- wrap-ups of calls that went away before Finish ---------------------------------------
  //
  // A queue's wrap-up timer, a caller hanging up with no wrap-up time, a supervisor: the
  // call leaves the screen before the agent saved its wrap-up. The server still takes the
  // wrap-up (`available: false`, so the agent's state is left alone) for an hour after the
  // call ended, once. Until then the page keeps a card for it, with the question that was
  // shown on the call and the draft, in this tab's storage so a reload keeps it too.

  function keepUnfinished(snap) {
    if (!token || !snap || savedCalls.has(snap.callId) || unfinished.has(snap.callId)) return;
    const draft = readDraft(snap.callId);
    const typed =
      Boolean(draft.notes && draft.notes.trim()) ||
      Object.keys(draft.answers || {}).length > 0 ||
      Object.values(draft.skip || {}).some(Boolean);
    if (!typed && !snap.question) {
      store.removeItem(DRAFT_PREFIX + snap.callId); // nothing typed, nothing to ask
      return;
    }
    // Finish was pressed and its answer is still on the way: keep the card out of sight
    // unless that wrap-up is refused (or the connection drops before the answer).
    const inFlight = [...pending.values()].some((r) => r.kind === "wrap_up" && r.callId === snap.callId);
    const item = { ...snap, sending: inFlight, quiet: inFlight, error: null };
    unfinished.set(snap.callId, item);
    store.setItem(UNFINISHED_PREFIX + snap.callId, JSON.stringify(snap));
    if (!inFlight) setText($("status"), `The wrap-up of ${snap.name} is not saved yet: finish it below.`);
  }

  function dropUnfinished(callId) {
    unfinished.delete(callId);
    store.removeItem(UNFINISHED_PREFIX + callId);
    const node = cardNodes.get(callId);
    if (node) node.remove();
    cardNodes.delete(callId);
  }

  function loadUnfinished() {
    for (const key of Object.keys(store)) {
      if (!key.startsWith(UNFINISHED_PREFIX)) continue;
      try {
        const snap = JSON.parse(store.getItem(key));
        if (snap && Number.isInteger(snap.callId)) {
          unfinished.set(snap.callId, { ...snap, sending: false, quiet: false, error: null });
        }
      } catch {
        store.removeItem(key);
      }
    }
  }

  function renderUnfinished() {
    const section = $("unfinished");
    for (const callId of [...cardNodes.keys()]) if (!unfinished.has(callId)) dropUnfinished(callId);
    const ordered = [...unfinished.values()].sort((a, b) => a.callId - b.callId);
    let fresh = null;
    for (const item of ordered) {
      let form = cardNodes.get(item.callId);
      if (!form) {
        form = buildCard(item);
        cardNodes.set(item.callId, form);
        section.append(form);
        if (!item.quiet && !fresh) fresh = form;
      }
      form.hidden = item.quiet;
      renderCardError(item, form);
    }
    section.hidden = !token || !ordered.some((item) => !item.quiet);
    renderControls();
    // The form the agent was typing in went away with its call: carry on in its card.
    if (fresh && !fresh.hidden) {
      const active = document.activeElement;
      if (!active || active === document.body || ($("call").hidden && $("call").contains(active))) {
        fresh.querySelector("h3").focus();
      }
    }
  }

  /** The card of an unfinished wrap-up: the same fields as the wrap-up form, with the
   * question that was shown on the call, filled from its draft. */
  function buildCard(item) {
    const p = `late${item.callId}-`;
    const draft = readDraft(item.callId);
    const q = item.question;
    const form = h("form", null, "card wrap late");
    form.noValidate = true;
    form.dataset.callId = String(item.callId);
    form.setAttribute("aria-labelledby", `${p}title`);
    const title = h("h3", `Finish the wrap-up of ${item.name}`);
    title.id = `${p}title`;
    title.tabIndex = -1;
    form.append(
      title,
      h(
        "p",
        `The call (queue ${item.queue}) ended before its wrap-up was saved: nothing is stored yet. ` +
          "It can be saved up to an hour after the call ended.",
        "hint",
      ),
    );
    let box = null;
    let skip = null;
    if (q) {
      const fieldset = h("fieldset", null, "question");
      const legend = h("legend", "Learning question: ");
      const text = h("span", q.text);
      text.id = `${p}question-text`;
      legend.append(text);
      box = h("div", null, "question-input");
      box.append(questionInputs(q, p, draft.answers ? draft.answers[q.key] : undefined, `${p}question-error`));
      const error = h("p", null, "error");
      error.id = `${p}question-error`;
      error.setAttribute("role", "alert");
      skip = document.createElement("input");
      skip.type = "checkbox";
      skip.id = `${p}skip`;
      skip.checked = Boolean(draft.skip && draft.skip[q.key]);
      const skipLabel = h("label", null, "inline");
      skipLabel.append(skip, " Skip this question");
      fieldset.append(legend, box, error, skipLabel);
      form.append(fieldset);
      syncSkip(box, skip);
    }
    const notesLabel = h("label", "Notes");
    notesLabel.htmlFor = `${p}notes`;
    const notes = document.createElement("textarea");
    notes.id = `${p}notes`;
    notes.rows = 3;
    notes.maxLength = 4000;
    notes.value = draft.notes || "";
    notes.setAttribute("aria-describedby", `${p}notes-error`);
    const notesError = h("p", null, "error");
    notesError.id = `${p}notes-error`;
    notesError.setAttribute("role", "alert");
    const save = h("button", "Save this wrap-up", "primary save");
    save.type = "submit";
    save.setAttribute("aria-keyshortcuts", "Control+Enter");
    const discard = h("button", "Discard it", "discard");
    discard.type = "button";
    const actions = h("div", null, "actions");
    actions.append(save, discard);
    const error = h("p", null, "error");
    error.id = `${p}error`;
    error.setAttribute("role", "alert");
    form.append(notesLabel, notes, notesError, actions, error);

    form.addEventListener("input", () => {
      if (box) syncSkip(box, skip);
      writeDraft(item.callId, notes.value, null, q && q.key, box, skip);
    });
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      sendUnfinished(item.callId, form, box, skip, notes);
    });
    discard.addEventListener("click", () => {
      // The agent's own choice: nothing is sent, the draft goes.
      const name = item.name;
      store.removeItem(DRAFT_PREFIX + item.callId);
      dropUnfinished(item.callId);
      setText($("status"), `The wrap-up of ${name} was discarded.`);
      renderAll();
      focusAfterCard();
    });
    return form;
  }

  function sendUnfinished(callId, form, box, skip, notes) {
    const item = unfinished.get(callId);
    if (!item || item.sending || form.querySelector(".save").disabled) return;
    item.error = null;
    renderCardError(item, form);
    writeDraft(callId, notes.value, null, item.question && item.question.key, box, skip);
    const text = notes.value.trim();
    const message = {
      type: "wrap_up",
      call_id: callId,
      outcome: readDraft(callId).outcome || "completed", // the call has ended: only kept as told
      notes: text || null,
      answer: answerFor(item.question, box, skip),
      available: false, // the agent is already taking calls, or on the next one
    };
    if (send(message, "late", callId)) {
      item.sending = true;
      renderControls();
    }
  }

  /** A card's refusal, next to the field at fault (the question, the notes) or under it. */
  function renderCardError(item, form) {
    const p = `late${item.callId}-`;
    const slots = { question: $(`${p}question-error`), notes: $(`${p}notes-error`), general: $(`${p}error`) };
    for (const slot of Object.values(slots)) if (slot) setText(slot, "");
    clearInvalid(form);
    if (!item.error) return null;
    const f = item.error.field;
    if (f.startsWith("answer") && slots.question) {
      setText(slots.question, item.error.detail);
      return form.querySelector(".question-input");
    }
    if (f.startsWith("notes")) {
      setText(slots.notes, item.error.detail);
      return $(`${p}notes`);
    }
    setText(slots.general, item.error.detail);
    return null;
  }

  function focusCardError(item) {
    const form = cardNodes.get(item.callId);
    if (!form) return;
    const field = renderCardError(item, form);
    if (field) markInvalid(field, $(`late${item.callId}-skip`));
    else form.querySelector(".save").focus();
  }

  /** After a card went (saved or discarded): the next card, else the call, else the panel. */
  function focusAfterCard() {
    const next = [...cardNodes.values()].find((form) => !form.hidden);
    if (next) next.querySelector("h3").focus();
    else if (!$("call").hidden) $("call-title").focus();
    else focusFirstControl();
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
    if (event.ctrlKey && event.key === "Enter") {
      // In a card of an unfinished wrap-up: save that one; anywhere else: the call on hand.
      const card = event.target.closest ? event.target.closest("form.late") : null;
      if (card || holdsCall()) {
        event.preventDefault();
        (card || $("wrap")).requestSubmit();
        return;
      }
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
      if (historyBusy === view.call.id) return; // one page at a time
      setText($("history-error"), "");
      if (send({ type: "history", call_id: view.call.id, before: page.next }, "history", view.call.id)) {
        historyBusy = view.call.id;
        renderHistory();
      }
    });
    $("wrap").addEventListener("submit", finish);
    const wrapChanged = () => {
      syncSkip($("question-input"), $("question-skip"));
      saveDraft();
    };
    $("wrap").addEventListener("input", wrapChanged);
    $("question-skip").addEventListener("change", wrapChanged);
    document.addEventListener("keydown", onKey);
    window.addEventListener("online", () => {
      if (token && !ws) {
        attempt = 0;
        connect();
      }
    });
    setInterval(tick, 250);
    if (token) loadUnfinished();
    if (token) start();
    else {
      showConn("signed-out", "Signed out");
      renderAll();
    }
  }

  init();
})();
