// Rendering the agent's state: the bar's controls, the idle card, notices, and which
// part of the page is drawn when the server's `state` changes.

import { renderCall } from "./assist.js";
import { $, setText } from "./dom.js";
import { renderRing } from "./offer.js";
import { soundIsOn } from "./sound.js";
import { renderClock } from "./timers.js";
import { renderWaiting } from "./waiting.js";
import { holdsCall, page, view } from "./state.js";
import { openCount, renderCardControls, renderUnfinished } from "./unfinished.js";

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

export function renderAll() {
  renderControls();
  renderRing();
  renderCall();
  renderClock();
  renderIdle();
  renderUnfinished();
}

export function renderControls() {
  const a = view.agent;
  const live = page.connected && Boolean(a);
  document.body.classList.toggle("stale", Boolean(page.token) && !page.connected);
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
  $("older").disabled = !live || (view.call !== null && page.historyBusy === view.call.id);
  $("verify").disabled = !live || (view.call !== null && page.verifyBusy === view.call.id);
  renderCardControls(live);
  const open = openCount();
  $("unfinished-link").hidden = !page.token || open === 0;
  setText($("unfinished-link"), open === 1 ? "1 wrap-up to finish" : `${open} wrap-ups to finish`);
  const soundOn = soundIsOn();
  $("sound").setAttribute("aria-pressed", String(soundOn));
  setText($("sound"), soundOn ? "Sound on" : "Sound off");
}

function renderIdle() {
  const a = view.agent;
  const text = a && !view.offer && !holdsCall() ? IDLE_TEXT[a.state] : null;
  $("idle").hidden = !text || !page.token;
  setText($("idle-text"), text);
  renderWaiting(!$("idle").hidden);
}

/** A message outside any form. Sticky ones (unsaved notes) stay until dismissed. */
export function showNotice(text, sticky = false) {
  const node = $("notice");
  if (!text && node.dataset.sticky === "1") return;
  node.dataset.sticky = sticky ? "1" : "";
  setText($("notice-text"), text);
  node.hidden = !text;
}

export function focusFirstControl() {
  if (!$("ring").hidden) $("accept").focus();
  else if (!$("call").hidden) $("call-title").focus();
  else if (!$("go-available").disabled) $("go-available").focus();
  else if (!$("go-offline").disabled) $("go-offline").focus();
}
