// The call's clocks: talk time while on the call, the wrap-up's countdown after it; and
// the wrap-up held while the agent writes (`wrap_up_extend`), so a timer never cuts off a
// note being typed nor lets the next call ring over it. The server bounds how long (the
// queue's maximum); the page only asks while the agent is actually typing.

import { $, setText } from "./dom.js";
import { clock, secondsSince } from "./format.js";
import { send } from "./socket.js";
import { holdsCall, page, pending, view } from "./state.js";

/** Ask for more time when the wrap-up has less than this many seconds left ... */
const ASK_BELOW = 6;
/** ... and the agent typed within this many: a pause to think still counts as writing. */
const TYPING_WITHIN = 8;
/** How much each ask is for (the server caps it at the queue's maximum). */
const ASK_FOR = 15;

let lastTyped = 0;
let maxedCallId = null; // the wrap-up the server said is at its maximum
// When this page saw the wrap-up of `wrapCallId` begin (its own clock, so a browser clock
// that is off does not matter): only typing after it holds the wrap-up. Notes typed during
// the call and left alone do not: the agent is done, and the timer should run.
let wrapCallId = null;
let wrapSeenAt = 0;

/** Whether the agent is writing the wrap-up now (typed in it within TYPING_WITHIN s). */
function writing() {
  return lastTyped >= wrapSeenAt && Date.now() - lastTyped <= TYPING_WITHIN * 1000;
}

function noteWrapUp() {
  const a = view.agent;
  const callId = a && a.state === "wrap_up" && view.call ? view.call.id : null;
  if (callId !== wrapCallId) {
    wrapCallId = callId;
    wrapSeenAt = Date.now();
  }
}

/** The agent typed in the wrap-up form. */
export function noteTyping() {
  noteWrapUp();
  lastTyped = Date.now();
  holdIfWriting();
}

/** Once a tick: the clock, and more time if the agent is writing as the wrap-up runs out. */
export function tickTimers() {
  renderClock();
  holdIfWriting();
}

function wrapUpLeft() {
  const a = view.agent;
  if (!a || a.state !== "wrap_up" || !a.wrap_up_until || !holdsCall()) return null;
  return -secondsSince(a.wrap_up_until);
}

function asking(callId) {
  for (const request of pending.values()) {
    if (request.kind === "wrap_up_extend" && request.callId === callId) return true;
  }
  return false;
}

function holdIfWriting() {
  noteWrapUp();
  const left = wrapUpLeft();
  if (left === null || left > ASK_BELOW) return;
  if (!writing()) return;
  const callId = view.call.id;
  if (maxedCallId === callId || asking(callId) || !page.connected) return;
  send({ type: "wrap_up_extend", call_id: callId, seconds: ASK_FOR }, "wrap_up_extend", callId);
}

/** The server's answer: the `state` it pushes carries the new end; nothing else to do. */
export function extended() {
  renderClock();
}

/** At the maximum: stop asking, and say so in the clock. */
export function extendRefused(callId, status) {
  if (status === 409) maxedCallId = callId;
  renderClock();
}

export function renderClock() {
  noteWrapUp();
  const node = $("call-clock");
  const a = view.agent;
  if (!holdsCall() || !a) {
    node.hidden = true;
    return;
  }
  node.hidden = false;
  const call = view.call;
  if (a.state === "on_call") {
    node.dataset.kind = "talk";
    setText(node, call.connected_at ? `Talk ${clock(secondsSince(call.connected_at))}` : "Talk");
    return;
  }
  const left = wrapUpLeft();
  node.dataset.kind = "wrap";
  if (left === null) {
    setText(node, "Wrap-up: finish when ready");
    return;
  }
  const held = writing() && maxedCallId !== call.id;
  node.dataset.held = held ? "1" : "";
  node.dataset.low = left <= ASK_BELOW ? "1" : "";
  if (maxedCallId === call.id) {
    setText(node, `Wrap-up at its limit: ${clock(Math.max(0, Math.ceil(left)))} left, finish now`);
  } else if (held) {
    setText(node, `Wrap-up ${clock(Math.max(0, Math.ceil(left)))}, held while you write`);
  } else {
    setText(node, `Wrap-up ends in ${clock(Math.max(0, Math.ceil(left)))}`);
  }
}
