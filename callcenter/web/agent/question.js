// The learning question's inputs and the answer read from them, shared by the wrap-up form
// and the cards of unfinished wrap-ups.

import { h } from "./dom.js";
import { numberRange } from "./format.js";

/** The inputs for question `q`, for its kind: radio buttons for a choice or yes/no, a
 * text field for a number or text. Ids and names start with `prefix` (the main form
 * has none, each unfinished wrap-up its own); `errorId` is where a refusal is shown,
 * and the inputs point at it, so a screen reader reads the error with the field. */
export function questionInputs(q, prefix, saved, errorId) {
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

/** "Skip this question" ticked: the answer's inputs are off. */
export function syncSkip(box, skip) {
  for (const input of box.querySelectorAll("input")) input.disabled = skip.checked;
}

export function currentAnswer(box) {
  const radio = box.querySelector("input[type=radio]:checked");
  if (radio) return radio.value;
  const text = box.querySelector("input[type=text]");
  if (text && text.value.trim() !== "") return text.value.trim();
  return null;
}

/** The `answer` of a wrap-up: a skip, the value given, or null (nothing asked or given). */
export function answerFor(question, box, skip) {
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
