// What the server sends on the socket, and what becomes of the requests it answers.

import { renderHistory, verified, verifyRefused } from "./assist.js";
import { callerPicked, callerRefused, forgetCallerRequests, onCallers } from "./callers.js";
import { $, setText } from "./dom.js";
import { focusFirstControl, renderAll, renderControls, showNotice } from "./render.js";
import { markConnected, send } from "./socket.js";
import { forgetOtherCalls, page, pending, savedCalls, view } from "./state.js";
import { dropDraft } from "./storage.js";
import {
  cardHasFocus,
  dropUnfinished,
  focusAfterCard,
  focusCardError,
  renderUnfinished,
  showUnsentCards,
  unfinished,
} from "./unfinished.js";
import { extended, extendRefused } from "./timers.js";
import { showWrapError } from "./wrapup.js";

export function onMessage(message) {
  switch (message.type) {
    case "state":
      markConnected();
      view.agent = message.agent;
      view.offer = message.offer;
      view.call = message.call;
      forgetOtherCalls();
      renderAll();
      if (page.focusOnState) {
        page.focusOnState = false;
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
      const kept = view.history.get(message.call_id);
      if (kept) {
        // A page the panel already has (a request repeated across a reconnect) adds nothing.
        const have = new Set(kept.items.map((item) => item.interaction_id));
        kept.items = kept.items.concat((message.items || []).filter((i) => !have.has(i.interaction_id)));
        kept.next = message.next_before;
      }
      // The server's history page carries no `ref`: it answers the oldest request for it.
      for (const [ref, request] of pending) {
        if (request.kind === "history" && request.callId === message.call_id) {
          pending.delete(ref);
          break;
        }
      }
      if (page.historyBusy === message.call_id) page.historyBusy = null;
      renderHistory();
      break;
    }
    case "queues":
      view.queues = message.queues || [];
      renderAll();
      break;
    case "callers":
      onCallers(message, settle(message.ref));
      break;
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

/** The connection dropped: whatever was in flight may or may not have been done. */
export function forgetInFlight() {
  pending.clear();
  $("finish").dataset.busy = "";
  page.historyBusy = null;
  page.verifyBusy = null;
  forgetCallerRequests();
  showUnsentCards();
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
  if (request.kind === "verify") {
    verified(request.callId, message.recognised);
    return;
  }
  if (request.kind === "pick_caller" || request.kind === "create_caller") {
    callerPicked(request, message.recognised);
    return;
  }
  if (request.kind === "wrap_up_extend") {
    extended();
    return;
  }
  if (request.kind === "wrap_up" || request.kind === "late") {
    // Stored: the draft has done its job. The `state` that follows hides the call.
    wrapUpSaved(request.callId);
  }
}

/** The server stored the wrap-up of `callId` (or had it already): forget the draft and
 * any card for it. */
function wrapUpSaved(callId) {
  savedCalls.add(callId);
  dropDraft(callId);
  if (callId === page.shownCallId) $("finish").dataset.busy = "";
  const item = unfinished.get(callId);
  if (item) {
    const hadFocus = cardHasFocus(callId);
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
      if (page.historyBusy === request.callId) page.historyBusy = null;
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
      } else if (request.callId === page.shownCallId) {
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
    case "verify":
      verifyRefused(request.callId, detail);
      break;
    case "wrap_up_extend":
      extendRefused(request.callId, message.status);
      break;
    case "find_caller":
    case "pick_caller":
    case "create_caller":
      callerRefused(request, message.field, detail);
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
