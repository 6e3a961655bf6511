// Wrap-ups of calls that went away before Finish.
//
// A queue's wrap-up timer, a caller hanging up with no wrap-up time, a supervisor: the
// call leaves the screen before the agent saved its wrap-up. The server still takes the
// wrap-up (`available: false`, so the agent's state is left alone) for an hour after the
// call ended, once, but never says which are open, so the page remembers: until it is
// saved, a "Finish the wrap-up" card holds the question that was shown on the call and
// the draft, kept in this tab's storage so a reload keeps it too.

import { $, clearInvalid, h, markInvalid, setText } from "./dom.js";
import { answerFor, questionInputs, syncSkip } from "./question.js";
import { focusFirstControl, renderAll, renderControls } from "./render.js";
import { send } from "./socket.js";
import { page, pending, savedCalls } from "./state.js";
import {
  dropDraft,
  dropUnfinishedCall,
  keepUnfinishedCall,
  readDraft,
  readUnfinishedCalls,
} from "./storage.js";
import { writeDraft } from "./wrapup.js";

/** Call id -> {callId, name, queue, question, sending, quiet, error}. */
export const unfinished = new Map();
const cardNodes = new Map(); // call id -> its card's <form>

export function keepUnfinished(snap) {
  if (!page.token || !snap || savedCalls.has(snap.callId) || unfinished.has(snap.callId)) return;
  const draft = readDraft(snap.callId);
  const typed =
    Boolean(draft.notes && draft.notes.trim()) ||
    Object.keys(draft.answers || {}).length > 0 ||
    Object.values(draft.skip || {}).some(Boolean);
  if (!typed && !snap.question) {
    dropDraft(snap.callId); // nothing typed, nothing to ask
    return;
  }
  // Finish was pressed and its answer is still on the way: keep the card out of sight
  // unless that wrap-up is refused (or the connection drops before the answer).
  const inFlight = [...pending.values()].some((r) => r.kind === "wrap_up" && r.callId === snap.callId);
  const item = { ...snap, sending: inFlight, quiet: inFlight, error: null };
  unfinished.set(snap.callId, item);
  keepUnfinishedCall(snap);
  if (!inFlight) setText($("status"), `The wrap-up of ${snap.name} is not saved yet: finish it below.`);
}

export function dropUnfinished(callId) {
  unfinished.delete(callId);
  dropUnfinishedCall(callId);
  const node = cardNodes.get(callId);
  if (node) node.remove();
  cardNodes.delete(callId);
}

/** The cards this tab kept (a reload while signed in). */
export function loadUnfinished() {
  for (const snap of readUnfinishedCalls()) {
    unfinished.set(snap.callId, { ...snap, sending: false, quiet: false, error: null });
  }
}

/** Signing out: the cards go (their storage is cleared with the session's). */
export function forgetUnfinished() {
  unfinished.clear();
}

/** The connection dropped: whether a wrap-up in flight was stored is unknown now, so its
 * card shows again. Sending it once more is safe, the server answers "already wrapped up"
 * if it was. */
export function showUnsentCards() {
  for (const item of unfinished.values()) {
    item.sending = false;
    item.quiet = false;
  }
}

/** How many cards the agent can see (the bar's "N wrap-ups to finish"). */
export function openCount() {
  return [...unfinished.values()].filter((item) => !item.quiet).length;
}

export function cardHasFocus(callId) {
  const node = cardNodes.get(callId);
  return Boolean(node && node.contains(document.activeElement));
}

/** The cards' buttons: Save needs the connection (`live`), neither works while sending. */
export function renderCardControls(live) {
  for (const [callId, form] of cardNodes) {
    const item = unfinished.get(callId);
    form.querySelector(".save").disabled = !live || !item || item.sending;
    form.querySelector(".discard").disabled = !item || item.sending;
  }
}

export function renderUnfinished() {
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
  section.hidden = !page.token || !ordered.some((item) => !item.quiet);
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
    dropDraft(item.callId);
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

export function focusCardError(item) {
  const form = cardNodes.get(item.callId);
  if (!form) return;
  const field = renderCardError(item, form);
  if (field) markInvalid(field, $(`late${item.callId}-skip`));
  else form.querySelector(".save").focus();
}

/** After a card went (saved or discarded): the next card, else the call, else the panel. */
export function focusAfterCard() {
  const next = [...cardNodes.values()].find((form) => !form.hidden);
  if (next) next.querySelector("h3").focus();
  else if (!$("call").hidden) $("call-title").focus();
  else focusFirstControl();
}
