// What the page knows. The server is the source of truth: every (re)connect starts with a
// full `state` (and a `panel` while the agent holds a call), so `view` is only ever what the
// server last said; `page` is the little the page tracks of its own.

import { readToken } from "./storage.js";

/** What the server told us. */
export const view = {
  agent: null,
  offer: null,
  call: null,
  panels: new Map(), // call id -> the last `panel` message for it
  history: new Map(), // call id -> {items, next}
  queues: [], // the callers waiting in the agent's queues (the last `queues` message)
};

export const page = {
  token: readToken(),
  connected: false, // a `state` arrived on the current socket
  focusOnState: false, // just signed in: put focus on the first useful control
  shownCallId: null,
  shownQuestionKey: undefined, // undefined: nothing rendered yet for this call
  shown: null, // the call on screen as the wrap-up needs it: {callId, name, queue, question}
  historyBusy: null, // the call whose older history page is on its way
  verifyBusy: null, // the call whose `verify` is on its way
  restarting: false, // the service closed the socket to restart: reconnecting at once
  callerBusy: null, // the call whose search, pick or new customer is on its way
};

/** Requests sent and not answered yet: ref -> {kind, callId}. */
export const pending = new Map();

/** Calls whose wrap-up the server acknowledged. */
export const savedCalls = new Set();

export function holdsCall() {
  const a = view.agent;
  return Boolean(view.call && a && (a.state === "on_call" || a.state === "wrap_up"));
}

export function forgetOtherCalls() {
  const current = view.call ? view.call.id : null;
  for (const id of [...view.panels.keys()]) {
    if (id !== current) {
      view.panels.delete(id);
      view.history.delete(id);
    }
  }
}
