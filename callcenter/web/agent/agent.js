// The agent panel: one websocket to /ws/agent, rendered purely from what the server sends.
//
// The server is the source of truth: every (re)connect starts with a full `state` (and a
// `panel` while the agent holds a call), so this page keeps no state of its own beyond
// the token (sessionStorage, this tab only), the agent's unsent wrap-up drafts, and the
// wrap-ups of calls that went away before they were saved (the server accepts those for
// an hour after the call ended, but never says which are open, so the page remembers).
// All text from the server goes through textContent, never innerHTML.
//
// ES modules, loaded by the browser as they are (no build step), each named for what it
// holds; this one wires the page's controls and starts:
//   socket.js      the connection: websocket, ping, reconnect with backoff, the pill
//   messages.js    what the server sends, and the requests it answers
//   session.js     sign in and out
//   state.js       what the server told us, and the little the page tracks itself
//   render.js      the bar's controls, the idle card, notices: drawing a `state`
//   offer.js       the offer banner: Accept / Reject and its clocks
//   sound.js       the ringing sound (off unless the agent turns it on)
//   assist.js      the call on hand and its assist panel: customer (and Confirm identity),
//                  needs, treatments, history
//   lastcontact.js the last conversation on top, and the abandoned attempts since it
//   callers.js     who is calling, when the service could not say: candidates, search,
//                  pick, or a new customer from the call
//   wrapup.js      the wrap-up form and the drafts of what the agent typed
//   waiting.js     who waits in the agent's queues, on the offline / available screen
//   timers.js      talk time, the wrap-up countdown, and the wrap-up held while typing
//   question.js    the learning question's inputs and answer
//   unfinished.js  cards for wrap-ups of calls that went away before Finish
//   storage.js     what is kept in the browser (sessionStorage, the sound in localStorage)
//   format.js      times, money, answers and callers as the agent reads them
//   dom.js         small DOM helpers (text only, never markup)
// Only this module does anything when it loads (the others define functions and read the
// URL and storage), so modules may import each other both ways: a call across them always
// happens later, once every module is loaded.

import { askOlderHistory, confirmIdentity } from "./assist.js";
import { createCaller, searchCaller } from "./callers.js";
import { $, isTyping } from "./dom.js";
import { accept, reject, tickRing } from "./offer.js";
import { renderAll, showNotice } from "./render.js";
import { signIn, signOut, start } from "./session.js";
import { reconnectIfIdle, reconnectNow, send, showConn, tickConnection } from "./socket.js";
import { toggleSound } from "./sound.js";
import { holdsCall, page } from "./state.js";
import { noteTyping, tickTimers } from "./timers.js";
import { loadUnfinished } from "./unfinished.js";
import { tickWaiting } from "./waiting.js";
import { endCall, finish, wrapChanged } from "./wrapup.js";

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
  tickConnection();
  tickTimers();
  tickWaiting();
}

function init() {
  $("sign-in-form").addEventListener("submit", signIn);
  $("sign-out").addEventListener("click", () => signOut(""));
  $("go-available").addEventListener("click", () => send({ type: "available" }, "available"));
  $("go-offline").addEventListener("click", () => send({ type: "offline" }, "offline"));
  $("reconnect-now").addEventListener("click", reconnectNow);
  $("sound").addEventListener("click", toggleSound);
  $("notice-close").addEventListener("click", () => {
    $("notice").dataset.sticky = "";
    showNotice("");
  });
  $("accept").addEventListener("click", accept);
  $("reject").addEventListener("click", reject);
  $("end-call").addEventListener("click", endCall);
  $("older").addEventListener("click", askOlderHistory);
  $("verify").addEventListener("click", confirmIdentity);
  $("caller-search").addEventListener("submit", searchCaller);
  $("caller-create").addEventListener("submit", createCaller);
  $("wrap").addEventListener("submit", finish);
  $("wrap").addEventListener("input", wrapChanged);
  $("wrap").addEventListener("input", noteTyping);
  $("question-skip").addEventListener("change", wrapChanged);
  document.addEventListener("keydown", onKey);
  window.addEventListener("online", reconnectIfIdle);
  setInterval(tick, 250);
  if (page.token) loadUnfinished();
  if (page.token) start();
  else {
    showConn("signed-out", "Signed out");
    renderAll();
  }
}

init();
