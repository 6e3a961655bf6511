// The wrap-up form of the call on hand (learning question, outcome, notes, End call and
// Finish) and the drafts that keep what the agent typed, per call, across reloads and
// reconnects until the server has stored it.

import { $, clearInvalid, markInvalid, setText } from "./dom.js";
import { answerFor, currentAnswer, questionInputs, syncSkip } from "./question.js";
import { send } from "./socket.js";
import { holdsCall, page, view } from "./state.js";
import { keepDraft, readDraft } from "./storage.js";

/** The learning question of the call's panel, drawn again only when it changed (so an
 * answer being typed is not wiped by the next `state`). */
export function renderQuestion(panel) {
  const q = panel ? panel.question : null;
  const key = q ? `${q.key}|${q.kind}|${(q.choices || []).join("\u0000")}` : null;
  if (key === page.shownQuestionKey) return;
  page.shownQuestionKey = key;
  const box = $("question-input");
  box.replaceChildren();
  $("question").hidden = !q;
  $("question").dataset.key = q ? q.key : "";
  setText($("question-error"), "");
  if (!q) return;
  setText($("question-text"), q.text);
  const draft = readDraft(page.shownCallId);
  const saved = draft.answers ? draft.answers[q.key] : undefined;
  box.append(questionInputs(q, "", saved, "question-error"));
  $("question-skip").checked = Boolean(draft.skip && draft.skip[q.key]);
  syncSkip($("question-input"), $("question-skip"));
}

export function loadDraft(callId) {
  const draft = readDraft(callId);
  $("notes").value = draft.notes || "";
  $("outcome").value = draft.outcome || "completed";
  $("question-skip").checked = false;
  $("finish").dataset.busy = "";
}

/** Keep what the agent typed for `callId`: its notes, outcome (`null`: leave as it was),
 * and the answer or skip of question `key` as read from `box` and `skip`. */
export function writeDraft(callId, notes, outcome, key, box, skip) {
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
  keepDraft(callId, draft);
}

function saveDraft() {
  if (page.shownCallId === null) return;
  const key = $("question").dataset.key;
  writeDraft(page.shownCallId, $("notes").value, $("outcome").value, key, $("question-input"), $("question-skip"));
}

/** The agent typed or ticked something in the form. */
export function wrapChanged() {
  syncSkip($("question-input"), $("question-skip"));
  saveDraft();
}

export function clearWrapErrors() {
  for (const id of ["question-error", "outcome-error", "notes-error", "wrap-error"]) setText($(id), "");
  clearInvalid($("wrap"));
}

export function finish(event) {
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

export function endCall() {
  if (!holdsCall() || view.agent.state !== "on_call") return;
  clearWrapErrors();
  send({ type: "end", call_id: view.call.id, outcome: $("outcome").value }, "end", view.call.id);
}

/** A refused wrap-up: the reason goes next to the field at fault (an alert, which the
 * field also points at), the field is marked invalid and gets the focus. */
export function showWrapError(field, detail) {
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
