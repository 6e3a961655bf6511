// Who is calling, when the service could not say (a shared or withheld number, a first
// call): the customers a shared number belongs to, a search, a pick, or a new customer
// made from the call. The server checks it is the agent's own call and that a pick is
// one of the candidates it was shown; the new `panel` after a pick redraws the card.

import { $, h, markInvalid, setText } from "./dom.js";
import { ago, day } from "./format.js";
import { send } from "./socket.js";
import { holdsCall, page, view } from "./state.js";

/** How the caller must have been recognised for the agent to look for them. */
const UNRECOGNISED = new Set(["multiple", "unknown", "withheld", "agent"]);

const HINTS = {
  multiple: "Several customers share this number: ask who is calling and pick them.",
  withheld: "The number is withheld: ask who is calling, then find them.",
  unknown: "A first call from this number: if they are a customer, find them; if not, " +
    "create them so the next call is recognised.",
  agent: "Picked the wrong customer? Find the right one and pick them instead.",
};

/** Found candidates per call (what the last search answered). */
const found = new Map();

export function renderCallerBox(call, panel) {
  const by = panel && panel.recognised ? panel.recognised.by : null;
  const open = Boolean(panel) && view.agent.state === "on_call" && UNRECOGNISED.has(by);
  const box = $("caller-box");
  box.hidden = !open;
  if (!open) return;
  if (box.dataset.by !== by || box.dataset.callId !== String(call.id)) {
    // Open while nobody is picked; once the agent picked someone, a re-pick is one click away.
    box.open = by !== "agent";
    box.dataset.by = by;
    box.dataset.callId = String(call.id);
  }
  setText($("caller-title"), by === "agent" ? "Not them? Find the caller again" : "Who is calling?");
  setText($("caller-hint"), HINTS[by] || "");
  const candidates = panel.candidates || [];
  fillList($("caller-candidates"), candidates);
  $("caller-candidates").hidden = candidates.length === 0;
  const results = found.get(call.id);
  fillList($("caller-found"), results || []);
  $("caller-nobody").hidden = !results || results.length > 0;
  const busy = page.callerBusy === call.id;
  for (const id of ["caller-search-button", "caller-create-button"]) {
    $(id).disabled = !page.connected || busy;
  }
  box.setAttribute("aria-busy", String(busy));
}

function fillList(list, candidates) {
  list.replaceChildren();
  for (const c of candidates) {
    const li = h("li");
    li.dataset.customerId = String(c.id);
    const who = h("p", null, "candidate-who");
    who.append(h("strong", c.name || "(no name)"));
    if (c.customer_number) who.append(" ", h("span", c.customer_number, "muted"));
    const tier = h("span", c.tier, "tier");
    tier.dataset.tier = c.tier;
    who.append(tier);
    const last = c.last_contact_at
      ? `last contact ${day(c.last_contact_at)} (${ago(c.last_contact_at)})`
      : "no contact yet";
    const button = h("button", "This is the caller");
    button.type = "button";
    button.disabled = !page.connected || page.callerBusy === (view.call && view.call.id);
    button.setAttribute("aria-label", `${c.name || c.customer_number}: this is the caller`);
    button.addEventListener("click", () => pickCaller(c.id));
    li.append(who, h("p", last, "muted small"), button);
    list.append(li);
  }
}

function startRequest(message, kind) {
  if (!holdsCall() || page.callerBusy === view.call.id) return;
  setText($("caller-error"), "");
  for (const id of ["caller-query", "caller-name"]) $(id).removeAttribute("aria-invalid");
  if (send({ ...message, call_id: view.call.id }, kind, view.call.id)) {
    page.callerBusy = view.call.id;
    renderCallerBox(view.call, view.panels.get(view.call.id));
  }
}

export function searchCaller(event) {
  event.preventDefault();
  startRequest({ type: "find_caller", query: $("caller-query").value }, "find_caller");
}

export function createCaller(event) {
  event.preventDefault();
  startRequest({ type: "create_caller", name: $("caller-name").value }, "create_caller");
}

function pickCaller(customerId) {
  startRequest({ type: "pick_caller", customer_id: customerId }, "pick_caller");
}

function settled(callId) {
  if (page.callerBusy === callId) page.callerBusy = null;
}

/** The answer to a search. */
export function onCallers(message, request) {
  if (request) settled(request.callId);
  found.set(message.call_id, message.candidates || []);
  redraw(message.call_id);
  const first = $("caller-found").querySelector("button");
  if (first) first.focus();
}

/** A pick or a new customer was stored: the `panel` that follows draws the card. */
export function callerPicked(request, recognised) {
  settled(request.callId);
  found.delete(request.callId);
  $("caller-query").value = "";
  $("caller-name").value = "";
  const panel = view.panels.get(request.callId);
  if (panel && recognised) panel.recognised = recognised;
  setText($("status"), "The caller is identified; their record is loading.");
  redraw(request.callId);
}

export function callerRefused(request, field, detail) {
  settled(request.callId);
  redraw(request.callId);
  setText($("caller-error"), detail);
  const f = field || "";
  if (f.endsWith("query")) markInvalid($("caller-query"));
  else if (f.endsWith("name")) markInvalid($("caller-name"));
}

export function forgetCallerRequests() {
  page.callerBusy = null;
}

function redraw(callId) {
  if (view.call && view.call.id === callId) renderCallerBox(view.call, view.panels.get(callId));
}
