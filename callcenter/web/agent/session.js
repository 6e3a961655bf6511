// Signing in (the token is checked before the socket opens) and out.

import { $, setText } from "./dom.js";
import { renderAll, showNotice } from "./render.js";
import { checkToken, hangUp, reconnectNow, showConn } from "./socket.js";
import { stopRinging } from "./sound.js";
import { page, pending, view } from "./state.js";
import { forgetSession, keepToken } from "./storage.js";
import { forgetUnfinished } from "./unfinished.js";

export async function signIn(event) {
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
  page.token = candidate;
  keepToken(page.token);
  setText($("agent-name"), verdict.name);
  page.focusOnState = true;
  start();
}

/** Signed in (now, or by a token this tab kept): the panel, and a connection. */
export function start() {
  $("sign-in").hidden = true;
  $("who").hidden = false;
  reconnectNow();
  renderAll();
}

export function signOut(reason) {
  $("notice").dataset.sticky = ""; // it may quote a customer's notes: not for the next person
  showNotice("");
  const state = view.agent && view.agent.state;
  page.token = null;
  hangUp(state);
  forgetSession();
  forgetUnfinished();
  stopRinging();
  pending.clear();
  view.agent = null;
  view.offer = null;
  view.call = null;
  view.panels.clear();
  view.history.clear();
  page.shownCallId = null;
  page.shownQuestionKey = undefined;
  page.shown = null;
  page.historyBusy = null;
  $("who").hidden = true;
  $("sign-in").hidden = false;
  setText($("sign-in-error"), reason || "");
  showConn("signed-out", "Signed out");
  renderAll();
  $("token").focus();
}
