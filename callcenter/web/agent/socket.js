// The connection: one websocket to /ws/agent, pinged, reconnected with backoff when it
// drops, and the pill in the bar that says how it is.

import { $, h, setText } from "./dom.js";
import { clampNumber } from "./format.js";
import { forgetInFlight, onMessage } from "./messages.js";
import { renderAll, renderControls, showNotice } from "./render.js";
import { signOut } from "./session.js";
import { stopRinging } from "./sound.js";
import { page, pending } from "./state.js";

const params = new URLSearchParams(location.search);
// How often to ping; a connection silent for 2.5 pings is taken for dead. `?ping=` is for tests.
const PING_SECONDS = clampNumber(params.get("ping"), 0.2, 60, 10);
const BACKOFF_FIRST = 0.5; // seconds; doubles per failed attempt ...
const BACKOFF_MAX = 15; //    ... up to this, with jitter, and resets once connected

let ws = null;
let attempt = 0;
let reconnectTimer = null;
let reconnectAt = 0;
let lastHeard = 0;
let pingTimer = null;
let refs = 0;

/** The connection pill (a status region, so a change is announced once). `countdown`
 * is left out of what is announced: it changes every second. */
export function showConn(kind, label, countdown = "") {
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
  url.searchParams.set("token", page.token);
  url.searchParams.set("queues", "1"); // who waits in the agent's queues, pushed
  return url.toString();
}

function connect() {
  clearTimeout(reconnectTimer);
  reconnectTimer = null;
  page.restarting = false;
  if (!page.token) return;
  showConn("connecting", "Connecting…");
  const sock = new WebSocket(wsUrl());
  let opened = false;
  ws = sock;
  page.connected = false;
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

/** A fresh start: now, with the backoff reset (sign-in, "Reconnect now", back online). */
export function reconnectNow() {
  attempt = 0;
  connect();
}

/** The browser is back online: connect if signed in and no socket is trying already. */
export function reconnectIfIdle() {
  if (page.token && !ws) reconnectNow();
}

/** The first `state` on this socket: the connection counts from now on. */
export function markConnected() {
  if (page.connected) return;
  page.connected = true;
  attempt = 0;
  showConn("connected", "Connected");
}

function dropped(code, opened) {
  ws = null;
  page.connected = false;
  stopPing();
  forgetInFlight();
  stopRinging();
  if (!page.token) return;
  if (code === 4001 || code === 4401) {
    signOut("Token not accepted: sign in again with a valid token.");
    return;
  }
  if (opened && (code === 1012 || code === 1001)) {
    // The service is restarting (or this instance stopping): another may already be up
    // behind the same address, so try again at once, backing off only if that fails.
    restarting();
    return;
  }
  if (opened) {
    scheduleReconnect();
    return;
  }
  // The handshake failed: a browser cannot see why, so ask whether the token still counts.
  checkToken(page.token).then((verdict) => {
    if (!page.token || ws) return;
    if (verdict === "rejected") {
      signOut("Token not accepted: sign in again with a valid token.");
    } else {
      scheduleReconnect();
    }
  });
}

function restarting() {
  page.restarting = true;
  attempt = 1; // the next failure waits a little, as after any first failure
  reconnectAt = Date.now();
  clearTimeout(reconnectTimer);
  // A few hundred ms of jitter, so a room of panels does not reconnect in one burst.
  reconnectTimer = setTimeout(connect, Math.random() * 250);
  showConn("reconnecting", "Service restarting: reconnecting…");
  renderAll();
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

/** Once a tick: the countdown to the next attempt. */
export function tickConnection() {
  if ($("conn").dataset.conn === "reconnecting" && !page.restarting) showReconnecting();
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

/** Close the connection for good (signing out). The agent (in `agentState`) is taken
 * offline first, from whatever state: signing out ends the shift. From a wrap-up too,
 * which its clock ends in `available` (calls were then offered to the closed panel
 * until the grace period ran out); on a call the agent stays on it, the caller being on
 * the line, and the server takes it offline once the call is over. */
export function hangUp(agentState) {
  const sock = ws;
  ws = null;
  page.connected = false;
  clearTimeout(reconnectTimer);
  stopPing();
  if (!sock) return;
  sock.onclose = null;
  sock.onmessage = null;
  if (sock.readyState === WebSocket.OPEN && agentState && agentState !== "offline") {
    // The server reads this message before the close that follows it, so there is
    // nothing to wait for.
    sock.send(JSON.stringify({ type: "offline", ref: "sign-out" }));
  }
  sock.close(1000, "signed out");
}

/** Send `message` as a request of `kind` (about `callId`); its answer (`ack` or `error`)
 * carries the same `ref`. False, with a notice, when not connected. */
export function send(message, kind, callId) {
  if (!ws || ws.readyState !== WebSocket.OPEN || !page.connected) {
    showNotice("Not connected: try again once the panel shows Connected.");
    return false;
  }
  refs += 1;
  const ref = `p${refs}`;
  pending.set(ref, { kind, callId });
  ws.send(JSON.stringify({ ...message, ref }));
  return true;
}

/** Whose token `candidate` is (the agent, from `GET /agent/session`), or "rejected", or
 * "unreachable". */
export async function checkToken(candidate) {
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
