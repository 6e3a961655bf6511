// The last conversation on top: under the caller's name, when the last real contact was,
// with whom, how it ended, its notes and answer; and the calls the caller gave up on since,
// as one line. The server computes both in the panel's one statement.

import { $, h, setText } from "./dom.js";
import { ago, answerText, clock, when } from "./format.js";

export function renderLastContact(panel) {
  const section = $("last-contact");
  const shown = Boolean(panel && panel.customer);
  const last = shown ? panel.last_contact : null;
  const since = shown ? panel.attempts_since : null;
  const attempts = since && since.count > 0 ? since : null;
  section.hidden = !shown || (!last && !attempts);
  if (section.hidden) return;
  const head = $("last-contact-head");
  head.replaceChildren();
  if (last) {
    const at = last.ended_at || last.started_at;
    head.append(h("strong", "Last contact"), " ", h("span", ago(at), "last-ago"));
    const bits = [when(last.started_at)];
    if (last.agent) bits.push(`with ${last.agent}`);
    if (last.outcome) bits.push(last.outcome);
    if (last.channel && last.channel !== "phone") bits.push(last.channel);
    head.append(h("span", ` · ${bits.join(" · ")}`, "muted"));
  } else {
    head.append(h("strong", "No conversation yet"));
  }
  const notes = $("last-contact-notes");
  notes.hidden = !(last && last.notes);
  setText(notes, last && last.notes ? last.notes : "");
  if (last && last.notes) notes.title = last.notes;
  const answer = $("last-contact-answer");
  answer.replaceChildren();
  answer.hidden = !(last && last.answer);
  if (last && last.answer) {
    const value = last.answer.skipped ? "skipped" : answerText(last.answer.value);
    answer.append(h("span", "Answer: ", "muted"), `${last.answer.question} `, h("strong", value));
  }
  const line = $("last-contact-attempts");
  line.hidden = !attempts;
  if (attempts) setText(line, attemptsText(attempts, Boolean(last)));
}

/** "3 abandoned attempts since, longest wait 4:10 (the latest 2 hours ago)". */
export function attemptsText(attempts, since) {
  const n = attempts.count;
  let text = `${n} abandoned attempt${n === 1 ? "" : "s"}${since ? " since" : ""}`;
  if (attempts.longest_wait_seconds !== null && attempts.longest_wait_seconds !== undefined) {
    text += `, ${n === 1 ? "waited" : "longest wait"} ${clock(attempts.longest_wait_seconds)}`;
  }
  if (attempts.latest_at) text += ` (${n === 1 ? "" : "the latest "}${ago(attempts.latest_at)})`;
  return text;
}
