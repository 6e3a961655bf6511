// The call on hand and its assist panel: who the caller is and how they were recognised,
// their needs profile, suggested treatments and contact history. Without a `panel` from
// the server, what the call record says is shown.

import { renderCallerBox } from "./callers.js";
import { $, addFact, h, isTyping, setText } from "./dom.js";
import { answerText, callerName, clock, day, dialable, money, when } from "./format.js";
import { attemptsText, renderLastContact } from "./lastcontact.js";
import { send } from "./socket.js";
import { holdsCall, page, view } from "./state.js";
import { dropUnfinished, keepUnfinished, unfinished } from "./unfinished.js";
import { clearWrapErrors, loadDraft, renderQuestion } from "./wrapup.js";

const RECOGNISED = {
  phone: "by phone",
  customer_number: "by customer number",
  pending: "by customer number, for this call only: confirm who is calling",
  linked: "by customer number; the phone is now linked",
  conflict: "by customer number; the phone belongs to someone else",
  multiple: "not sure: the phone is shared",
  agent: "picked by the agent",
  unknown: "new caller",
  withheld: "number withheld",
};

export function renderCall() {
  const section = $("call");
  if (!page.token || !holdsCall()) {
    section.hidden = true;
    if (page.shownCallId !== null) keepUnfinished(page.shown);
    page.shownCallId = null;
    page.shownQuestionKey = undefined;
    page.shown = null;
    return;
  }
  const call = view.call;
  const panel = view.panels.get(call.id) || null;
  const onCall = view.agent.state === "on_call";
  const customer = (panel && panel.customer) || call.customer;
  const name = callerName(customer, call.ani);
  const fresh = page.shownCallId !== call.id;
  if (fresh) {
    // The call before this one went straight away (no `state` without it in between).
    if (page.shownCallId !== null) keepUnfinished(page.shown);
    // A card for this very call (kept across a reload): the form takes over, same draft.
    if (unfinished.has(call.id)) dropUnfinished(call.id);
    page.shownCallId = call.id;
    page.shownQuestionKey = undefined;
    loadDraft(call.id);
    clearWrapErrors();
  }
  page.shown = { callId: call.id, name, queue: call.queue, question: panel ? panel.question : null };
  section.hidden = false;
  // A newly taken call: move focus to it (the Accept button just went away with the ring).
  if (fresh && !isTyping(document.activeElement)) $("call-title").focus();
  section.dataset.callId = String(call.id);
  setText($("call-title"), onCall ? `On call with ${name}` : `Wrap-up: ${name}`);
  const meta = [`queue ${call.queue}`];
  if (call.connected_at) meta.push(`connected ${when(call.connected_at)}`);
  meta.push(dialable(call.ani) ? `from ${call.ani}` : "number withheld");
  setText($("call-meta"), meta.join(" · "));
  const ringing = call.callback ? callbackLine(call.callback, onCall) : "";
  setText($("call-keep"), ringing);
  $("call-keep").hidden = !ringing;
  $("end-call").hidden = !onCall;
  $("panel-missing").hidden = Boolean(panel);
  // A panel without a customer (a withheld number): nothing to show but who it is.
  const known = !panel || Boolean(panel.customer);
  renderLastContact(panel);
  renderCustomer(call, panel, customer);
  renderNeeds(panel, known);
  renderTreatments(panel, known);
  renderHistory();
  renderQuestion(panel);
}

/** A callback on the phone: the ring, then the caller on the line. */
function callbackLine(callback, onCall) {
  if (!onCall) return "";
  if (callback.answered_at) return `Callback: the caller answered at ${callback.number}.`;
  return `Callback: ringing the caller at ${callback.number}; they come on the line when they answer.`;
}

function renderCustomer(call, panel, customer) {
  const facts = $("customer-facts");
  facts.replaceChildren();
  // How the caller was recognised comes first: "shared phone: ask who is calling" matters
  // before anything else on the card.
  let by = call.identified_by;
  let how = by ? RECOGNISED[by] || by : null;
  if (panel && panel.recognised) {
    by = panel.recognised.by;
    how = panel.recognised.detail || RECOGNISED[by] || by;
  }
  const recognised = addFact(facts, "Recognised", how);
  if (recognised) {
    recognised.className = "recognised";
    recognised.dataset.by = by || "";
  }
  if (customer) {
    addFact(facts, "Name", customer.name);
    addFact(facts, "Customer number", customer.customer_number);
    const tier = addFact(facts, "Tier", customer.tier);
    if (tier) {
      tier.className = "tier";
      tier.dataset.tier = customer.tier;
      if (customer.tier_pinned) tier.append(h("span", " (pinned)", "muted"));
    }
    if (customer.provisional) addFact(facts, "Record", "provisional (first contact from this number)");
  } else {
    addFact(facts, "Caller", "not identified");
  }
  if (customer && panel) {
    const cur = customer.currency;
    // The net value first: it is what the tier is earned on (lifetime value minus cost).
    if (customer.net_value !== undefined) {
      const net = addFact(facts, "Net value", money(customer.net_value, cur));
      if (net) net.className = "net-value";
    }
    addFact(facts, "Lifetime value", money(customer.lifetime_value, cur));
    addFact(facts, "Annual margin", money(customer.annual_margin, cur));
    addFact(facts, "Cost to serve", money(customer.cost_to_serve, cur));
    if (customer.phones && customer.phones.length) addFact(facts, "Phones", customer.phones.join(", "));
  }
  $("customer-none").hidden = !panel || Boolean(panel.customer);
  renderVerify(call, panel);
  renderCallerBox(call, panel);
}

/** The pending link of a typed customer number, and **Confirm identity**: until the agent
 * confirms who is calling, the phone is not linked and the next call from it is not theirs. */
function renderVerify(call, panel) {
  const r = panel ? panel.recognised : null;
  const box = $("verify-box");
  const pendingLink = r && r.pending_link ? r.pending_link : null;
  box.hidden = !pendingLink && !(r && r.verified_by);
  box.dataset.verified = r && r.verified_by ? "1" : "";
  const button = $("verify");
  button.hidden = !pendingLink;
  button.disabled = !page.connected || page.verifyBusy === call.id;
  if (pendingLink) {
    const number = (panel.customer && panel.customer.customer_number) || "this customer";
    setText(
      $("verify-text"),
      `Served as ${number} for this call only. ${pendingLink} is not linked to them until you ` +
        "confirm who is calling (ask your security questions first).",
    );
  } else if (r && r.verified_by) {
    setText($("verify-text"), `Identity confirmed by ${r.verified_by} ${when(r.verified_at)}.`);
  }
  if (box.hidden) setText($("verify-error"), "");
}

/** "Confirm identity": the agent vouches for the caller; the ack says how they stand now. */
export function confirmIdentity() {
  if (!holdsCall() || page.verifyBusy === view.call.id) return;
  setText($("verify-error"), "");
  if (send({ type: "verify", call_id: view.call.id }, "verify", view.call.id)) {
    page.verifyBusy = view.call.id;
    $("verify").disabled = true;
  }
}

/** The server's answer to `verify` for `callId`: its `recognised` replaces the panel's. */
export function verified(callId, recognised) {
  if (page.verifyBusy === callId) page.verifyBusy = null;
  const panel = view.panels.get(callId);
  if (panel && recognised) panel.recognised = recognised;
  if (view.call && view.call.id === callId) renderCall();
}

export function verifyRefused(callId, detail) {
  if (page.verifyBusy === callId) page.verifyBusy = null;
  if (view.call && view.call.id === callId) {
    renderCall();
    setText($("verify-error"), detail);
  }
}

function renderNeeds(panel, known) {
  const list = $("needs-list");
  list.replaceChildren();
  const needs = panel ? panel.needs || [] : [];
  for (const need of needs) {
    const dd = addFact(list, need.question || need.key, answerText(need.value));
    if (dd && need.answered_at) dd.append(" ", h("span", `(${day(need.answered_at)})`, "muted small"));
  }
  $("needs").hidden = !panel || !known;
  $("needs-empty").hidden = needs.length > 0;
}

function renderTreatments(panel, known) {
  const list = $("treatment-list");
  list.replaceChildren();
  const items = panel ? panel.treatments || [] : [];
  for (const t of items) {
    const li = h("li");
    li.dataset.key = t.key || "";
    const head = h("p", null, "treatment-title");
    head.append(h("strong", t.title), " ", h("span", t.kind, "badge"));
    li.append(head);
    if (t.detail) li.append(h("p", t.detail));
    li.append(h("p", `Why: ${t.reason}`, "reason"));
    const because = t.because || [];
    if (because.length) {
      // The caller's own facts that made the rule apply: the agent can check them.
      const box = h("div", null, "because");
      const label = h("span", "Applies because:", "muted");
      const facts = h("ul", null, "chips");
      facts.setAttribute("aria-label", `Applies because`);
      for (const fact of because) facts.append(h("li", fact));
      box.append(label, facts);
      li.append(box);
    }
    list.append(li);
  }
  $("treatments").hidden = !panel || !known;
  $("treatments-empty").hidden = items.length > 0;
}

export function renderHistory() {
  const call = view.call;
  const kept = call ? view.history.get(call.id) : null;
  const panel = call ? view.panels.get(call.id) : null;
  $("history").hidden = !kept || Boolean(panel && !panel.customer);
  const rows = $("history-rows");
  rows.replaceChildren();
  if (!kept) return;
  for (const run of runs(kept.items)) {
    const item = run[0];
    const tr = h("tr");
    tr.dataset.interactionId = String(item.interaction_id);
    if (run.length > 1) {
      // Calls the caller gave up on in a row: one line, not a wall of empty rows.
      const longest = Math.max(...run.map((i) => i.waited_seconds || 0));
      tr.className = "attempts";
      tr.dataset.count = String(run.length);
      const span = `${when(run[run.length - 1].started_at)} – ${when(item.started_at)}`;
      tr.append(h("td", span), h("td", item.channel), h("td", ""));
      const text = attemptsText({ count: run.length, longest_wait_seconds: longest }, false);
      const cell = h("td", text);
      cell.colSpan = 3;
      tr.append(cell);
      rows.append(tr);
      continue;
    }
    const outcome = item.outcome === "abandoned" && item.waited_seconds !== null && item.waited_seconds !== undefined
      ? `abandoned after ${clock(item.waited_seconds)}`
      : item.outcome;
    for (const cell of [when(item.started_at), item.channel, item.agent, outcome, item.notes]) {
      tr.append(h("td", cell));
    }
    const answer = h("td", null, "answer");
    if (item.answer) {
      const value = item.answer.skipped ? "skipped" : answerText(item.answer.value);
      answer.append(h("span", item.answer.question, "muted"), " ", h("strong", value));
    }
    tr.append(answer);
    rows.append(tr);
  }
  $("history-table").hidden = kept.items.length === 0;
  $("history-empty").hidden = kept.items.length > 0;
  const more = kept.next !== null && kept.next !== undefined;
  $("older").hidden = !more;
  $("older").disabled = !page.connected || page.historyBusy === call.id;
  $("history").setAttribute("aria-busy", String(page.historyBusy === call.id));
}

/** The history's items in runs: consecutive abandoned attempts together, others alone. */
function runs(items) {
  const out = [];
  for (const item of items) {
    const prev = out.length ? out[out.length - 1] : null;
    if (item.outcome === "abandoned" && prev && prev[0].outcome === "abandoned") prev.push(item);
    else out.push([item]);
  }
  return out;
}

/** "Older contacts": the next page of history, one page at a time. */
export function askOlderHistory() {
  const kept = view.call && view.history.get(view.call.id);
  if (!kept || kept.next === null || kept.next === undefined) return;
  if (page.historyBusy === view.call.id) return; // one page at a time
  setText($("history-error"), "");
  if (send({ type: "history", call_id: view.call.id, before: kept.next }, "history", view.call.id)) {
    page.historyBusy = view.call.id;
    renderHistory();
  }
}
