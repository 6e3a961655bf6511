// The offer banner: who is calling, how long they waited, how long is left to answer,
// and Accept / Reject.

import { $, isTyping, setText } from "./dom.js";
import { callerName, clock, dialable, secondsSince } from "./format.js";
import { send } from "./socket.js";
import { startRinging, stopRinging } from "./sound.js";
import { page, view } from "./state.js";

let ringingId = null; // the offer the agent was told about (announced, rung, focused)

export function renderRing() {
  const offer = page.token ? view.offer : null;
  const ring = $("ring");
  if (!offer) {
    ring.hidden = true;
    ring.dataset.offerId = "";
    if (ringingId !== null) setText($("live"), "");
    stopRinging();
    ringingId = null;
    return;
  }
  const customer = offer.customer;
  const name = callerName(customer, offer.ani);
  const priority = offer.priority || null;
  const tier = (priority && priority.tier) || offer.tier || (customer && customer.tier) || "unidentified";
  setText($("ring-name"), name);
  setText($("ring-tier"), tier);
  $("ring-tier").dataset.tier = tier;
  setText($("ring-reason"), priority ? priority.reason : "");
  $("ring-reason").hidden = !priority;
  const keep = keptPlace(offer);
  setText($("ring-keep"), keep);
  $("ring-keep").hidden = !keep;
  const line = [];
  if (customer && customer.customer_number) line.push(`customer ${customer.customer_number}`);
  if (customer && customer.provisional) line.push("provisional record");
  line.push(dialable(offer.ani) ? `calling from ${offer.ani}` : "number withheld");
  line.push(`queue ${offer.queue}`);
  setText($("ring-line"), line.join(" · "));
  ring.dataset.offerId = String(offer.offer_id);
  ring.hidden = false;
  tickRing();
  if (ringingId !== offer.offer_id) {
    ringingId = offer.offer_id;
    setText($("ring-error"), "");
    setText($("live"), `Incoming call: ${name}, ${tier}. Press A to accept or R to reject.`);
    if (!isTyping(document.activeElement)) $("accept").focus();
    startRinging();
  }
}

/** How the caller kept their place, if they did: a callback, or a redial after a drop. */
export function keptPlace(offer) {
  if (offer.callback) {
    return `Callback: the caller is not on the line; we ring them at ${offer.callback} when you accept.`;
  }
  if (offer.resumed) {
    const before = clock(Math.round(offer.resumed.waited_before_seconds));
    return `Called back after a drop (waited ${before} before): they kept their place.`;
  }
  return "";
}

/** Once a tick: the offer's clocks. */
export function tickRing() {
  const offer = view.offer;
  if (!offer || $("ring").hidden) return;
  setText($("ring-waited"), `waited ${clock(secondsSince(offer.enqueued_at))}`);
  const left = -secondsSince(offer.expires_at);
  setText($("ring-expires"), left > 0 ? `answer within ${clock(Math.ceil(left))}` : "offer expiring");
}

export function accept() {
  const offer = view.offer;
  if (!offer || $("accept").disabled) return;
  setText($("ring-error"), "");
  send({ type: "accept", offer_id: offer.offer_id }, "accept");
}

export function reject() {
  const offer = view.offer;
  if (!offer || $("reject").disabled) return;
  setText($("ring-error"), "");
  send({ type: "reject", offer_id: offer.offer_id }, "reject");
}
