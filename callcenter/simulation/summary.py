"""A run's figures, computed from the service's own record of each call.

The PBX keeps the id of every call the service took; at the end the run reads
each of those calls back through the API and the figures below are computed
from what the service stored, not from what the simulation believes. The
demo's test recomputes them from the tables with SQL and requires equality.

Pure: the facts in, the figures out.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from callcenter.simulation.figures import quantile

FINAL = frozenset({"completed", "abandoned", "transferred"})


@dataclass(frozen=True)
class CallFact:
    """One call as the service stored it."""

    id: int
    queue: str
    state: str
    tier: str
    enqueued_at: datetime
    connected_at: datetime | None
    ended_at: datetime | None
    cut_off: bool  # still waiting when the run ended; the PBX hung it up then
    callback: bool = False  # the caller took a callback (a virtual call)
    callback_answered: bool = False  # ...and picked up the service's ring
    end_reason: str | None = None
    resumed: bool = False  # a redial that took back a dropped call's place
    # The arrival its place counts from (a resumed redial's is its first call's).
    arrived_at: datetime | None = None

    @property
    def arrival(self) -> datetime:
        return self.arrived_at or self.enqueued_at

    @property
    def wait(self) -> float | None:
        """Seconds from enqueue to answer, or to hanging up unanswered."""
        end = self.connected_at or self.ended_at
        return None if end is None else (end - self.enqueued_at).total_seconds()


@dataclass
class TierFigures:
    tier: str
    calls: int = 0
    answered: int = 0
    abandoned: int = 0
    service_level: float | None = None  # share answered within the queue's target
    asa_seconds: float | None = None  # average speed of answer
    longest_wait_seconds: float | None = None


@dataclass
class Summary:
    seconds: float
    policy: str
    calls: int
    answered: int
    abandoned: int  # hung up waiting, patience ran out
    cut_off: int  # still waiting at the end, hung up then
    transferred: int
    not_ended: int  # must be 0: every call ends
    service_level: float | None
    tiers: list[TierFigures]
    bound_seconds: float | None
    overtaken: int  # callers answered later than one who arrived more than the bound after them
    questions_answered: int
    questions_skipped: int
    value_served: Decimal
    callbacks: int  # callers who took a callback
    callbacks_answered: int  # of those, rung back and picked up
    callbacks_failed: int  # ended callback_failed: nobody answered the rings (in abandoned)
    resumed: int  # redials that took back a dropped call's place
    offer_delay_p50_ms: float | None
    offer_delay_p99_ms: float | None
    faults: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["value_served"] = str(self.value_served)
        return data


def tier_figures(
    facts: Sequence[CallFact], tiers: Sequence[str], targets: Mapping[str, float]
) -> list[TierFigures]:
    """Per tier, most valuable first; ``targets`` is each queue's service-level seconds."""
    out = {t: TierFigures(t) for t in tiers}
    waits: dict[str, list[float]] = {t: [] for t in tiers}
    within: dict[str, int] = dict.fromkeys(tiers, 0)
    for f in facts:
        row = out.setdefault(f.tier, TierFigures(f.tier))
        row.calls += 1
        wait = f.wait
        if wait is not None:
            row.longest_wait_seconds = max(row.longest_wait_seconds or 0.0, wait)
        if f.connected_at is not None and wait is not None:
            row.answered += 1
            waits.setdefault(f.tier, []).append(wait)
            within[f.tier] = within.get(f.tier, 0) + (wait <= targets.get(f.queue, 20.0))
        elif f.state == "abandoned" and not f.cut_off:
            row.abandoned += 1
    for tier, row in out.items():
        if row.answered:
            row.service_level = within[tier] / row.answered
            row.asa_seconds = sum(waits[tier]) / row.answered
    return list(out.values())


def overtaken(facts: Sequence[CallFact], bound: float) -> int:
    """Callers answered (or given up) after a caller of their queue who arrived
    more than ``bound`` seconds later was answered: what the value policy
    promises never happens. A redial that resumed a dropped call arrived when
    that call did. (A call ringing an agent who lets it ring out is
    not waiting, so a long missed ring can show up here too.)"""
    count = 0
    by_queue: dict[str, list[CallFact]] = {}
    for f in facts:
        by_queue.setdefault(f.queue, []).append(f)
    for calls in by_queue.values():
        calls.sort(key=lambda f: f.arrival)
        arrivals = [f.arrival.timestamp() for f in calls]
        # The earliest answer among calls from index i on.
        earliest = [math.inf] * (len(calls) + 1)
        for i in range(len(calls) - 1, -1, -1):
            c = calls[i].connected_at
            earliest[i] = min(earliest[i + 1], c.timestamp() if c is not None else math.inf)
        for f in calls:
            left = f.connected_at or f.ended_at
            if left is None:
                continue
            later = bisect.bisect_right(arrivals, f.arrival.timestamp() + bound)
            if earliest[later] < left.timestamp():
                count += 1
    return count


def summarise(
    facts: Sequence[CallFact],
    *,
    seconds: float,
    policy: str,
    tiers: Sequence[str],
    targets: Mapping[str, float],
    bound: float | None,
    questions_answered: int,
    questions_skipped: int,
    value_served: Decimal,
    offer_delays: Sequence[float],
    faults: Sequence[str] = (),
) -> Summary:
    answered = sum(1 for f in facts if f.connected_at is not None)
    within = sum(
        1
        for f in facts
        if f.connected_at is not None and (f.wait or 0.0) <= targets.get(f.queue, 20.0)
    )
    delays = sorted(offer_delays)
    p50 = quantile(delays, 0.50)
    p99 = quantile(delays, 0.99)
    return Summary(
        seconds=round(seconds, 1),
        policy=policy,
        calls=len(facts),
        answered=answered,
        abandoned=sum(1 for f in facts if f.state == "abandoned" and not f.cut_off),
        cut_off=sum(1 for f in facts if f.state == "abandoned" and f.cut_off),
        transferred=sum(1 for f in facts if f.state == "transferred"),
        not_ended=sum(1 for f in facts if f.state not in FINAL),
        service_level=within / answered if answered else None,
        tiers=tier_figures(facts, tiers, targets),
        bound_seconds=bound,
        overtaken=overtaken(facts, bound) if bound is not None else 0,
        questions_answered=questions_answered,
        questions_skipped=questions_skipped,
        value_served=value_served,
        callbacks=sum(1 for f in facts if f.callback),
        callbacks_answered=sum(1 for f in facts if f.callback_answered),
        callbacks_failed=sum(1 for f in facts if f.end_reason == "callback_failed"),
        resumed=sum(1 for f in facts if f.resumed),
        offer_delay_p50_ms=None if p50 is None else round(p50 * 1000, 1),
        offer_delay_p99_ms=None if p99 is None else round(p99 * 1000, 1),
        faults=list(faults),
    )
