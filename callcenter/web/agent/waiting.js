// Who waits in the agent's queues, on the offline / available screen: how many callers
// and the longest wait, so going available (or staying on a break) is an informed choice.
// The server pushes `queues` when the figures change; the longest wait ticks here.

import { $, h, setText } from "./dom.js";
import { clock, secondsSince } from "./format.js";
import { view } from "./state.js";

export function renderWaiting(visible) {
  const box = $("waiting");
  const queues = view.queues || [];
  box.hidden = !visible || queues.length === 0;
  if (box.hidden) return;
  const list = $("waiting-list");
  const items = list.children;
  if (items.length !== queues.length || [...items].some((li, i) => li.dataset.queue !== queues[i].name)) {
    list.replaceChildren(
      ...queues.map((q) => {
        const li = h("li");
        li.dataset.queue = q.name;
        li.append(h("span", q.name, "waiting-queue"), " ", h("span", "", "waiting-figures"));
        return li;
      }),
    );
  }
  queues.forEach((q, i) => {
    const li = list.children[i];
    li.dataset.waiting = String(q.waiting);
    setText(li.querySelector(".waiting-figures"), figures(q));
  });
}

function figures(q) {
  if (!q.waiting) return "nobody waiting";
  const longest = q.oldest_enqueued_at ? `, longest ${clock(secondsSince(q.oldest_enqueued_at))}` : "";
  return `${q.waiting} waiting${longest}`;
}

/** Once a tick: the longest waits grow. */
export function tickWaiting() {
  if (!$("waiting").hidden) renderWaiting(true);
}
