"""A policy's figures per tier, from what happened to each call.

The figures are the ones a contact-center manager reads on a wallboard, with
two choices stated because they change the numbers:

* **service level** is the share of *all* calls answered within the target.
  A caller who hung up counts as missed, however soon, so a policy cannot
  look better by letting the long waiters go. Without abandonment it is
  exactly what Erlang C's service-level formula predicts.
* **ASA and the wait percentiles** are over answered calls (the time to
  answer); a caller who hung up shows in the abandon rate and in value
  abandoned instead.
* **a callback** is answered when the caller picks up the ring that reached
  them, so its wait counts the whole time to the conversation: to its turn,
  the ring, and any retry delays. Counting only to the agent taking it would
  flatter callbacks by the ring and the retries the caller still waits out.
  A callback whose last ring nobody answered (``callback_failed``) is counted
  apart from the callers who hung up holding, and misses the target like them.

Pure: a workload and an outcome in, numbers out.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from callcenter.simulation.des import Outcome
from callcenter.simulation.workload import Workload

#: The tier name of the row that sums every tier.
ALL = "all"


@dataclass(frozen=True)
class TierFigures:
    tier: str
    calls: int
    answered: int
    abandoned: int  # hung up while holding
    abandon_rate: float | None
    asa: float | None  # seconds, over answered calls
    service_level: float | None  # answered within target / all calls
    wait_p50: float | None
    wait_p95: float | None
    wait_max: float | None
    value_answered: float
    value_abandoned: float  # of every call not answered: hung up, or callback failed
    # Callbacks (all 0 in a run without them):
    offered: int  # callers offered a callback
    callbacks: int  # callers who took it (virtual calls)
    answered_on_ring: int  # callbacks answered: the caller picked up a ring
    callback_failed: int  # callbacks whose last ring nobody answered
    callback_failed_rate: float | None  # ÷ calls
    lost_rate: float | None  # not answered ÷ calls: hung up or callback failed
    rings: int  # rings made, answered or not
    ring_agent_seconds: float  # agent time spent ringing


def quantile(ordered: Sequence[float], p: float) -> float | None:
    """The nearest-rank ``p`` quantile (0..1) of sorted values, the one a report quotes."""
    if not ordered:
        return None
    return ordered[min(len(ordered) - 1, max(0, math.ceil(p * len(ordered)) - 1))]


def tier_figures(
    workload: Workload, outcome: Outcome, target: float, calls: Sequence[int] | None = None
) -> list[TierFigures]:
    """One row per tier of the workload (most valuable first), then the ``all`` row.

    ``calls`` limits the figures to those call indices (a window of the run).
    """
    tiers = workload.tiers
    waits: list[list[float]] = [[] for _ in tiers]
    count = [0] * len(tiers)
    abandoned = [0] * len(tiers)
    within = [0] * len(tiers)
    value_answered = [0.0] * len(tiers)
    value_abandoned = [0.0] * len(tiers)
    tally = [_Callbacks() for _ in tiers]
    arrival = workload.arrival
    answered_at = outcome.answered_at
    failed_at = outcome.failed_at
    taken = outcome.taken
    indices = range(len(workload)) if calls is None else calls
    for i in indices:
        k = workload.tier[i]
        count[k] += 1
        answer = answered_at[i]
        if answer == answer:  # not nan: answered
            wait = answer - arrival[i]
            waits[k].append(wait)
            within[k] += wait <= target
            value_answered[k] += workload.value[i]
        else:
            value_abandoned[k] += workload.value[i]
            if failed_at[i] != failed_at[i]:  # nan: not a failed callback
                abandoned[k] += 1
        if taken and taken[i]:
            t = tally[k]
            t.callbacks += 1
            t.answered_on_ring += answer == answer
            t.failed += failed_at[i] == failed_at[i]
            t.rings += len(outcome.rings_at.get(i, ()))
            t.ring_seconds += outcome.ring_seconds.get(i, 0.0)
        if outcome.offered and outcome.offered[i]:
            tally[k].offered += 1
    rows = [
        _row(
            tiers[k],
            count[k],
            abandoned[k],
            within[k],
            waits[k],
            value_answered[k],
            value_abandoned[k],
            tally[k],
        )
        for k in range(len(tiers))
    ]
    rows.append(
        _row(
            ALL,
            sum(count),
            sum(abandoned),
            sum(within),
            [w for tier_waits in waits for w in tier_waits],
            sum(value_answered),
            sum(value_abandoned),
            _Callbacks.total(tally),
        )
    )
    return rows


@dataclass
class _Callbacks:
    """A tier's callback counts while they are tallied."""

    offered: int = 0
    callbacks: int = 0
    answered_on_ring: int = 0
    failed: int = 0
    rings: int = 0
    ring_seconds: float = 0.0

    @staticmethod
    def total(parts: Sequence[_Callbacks]) -> _Callbacks:
        return _Callbacks(
            offered=sum(p.offered for p in parts),
            callbacks=sum(p.callbacks for p in parts),
            answered_on_ring=sum(p.answered_on_ring for p in parts),
            failed=sum(p.failed for p in parts),
            rings=sum(p.rings for p in parts),
            ring_seconds=sum(p.ring_seconds for p in parts),
        )


def _row(
    tier: str,
    calls: int,
    abandoned: int,
    within: int,
    waits: list[float],
    value_answered: float,
    value_abandoned: float,
    cb: _Callbacks,
) -> TierFigures:
    waits.sort()
    answered = len(waits)
    return TierFigures(
        tier=tier,
        calls=calls,
        answered=answered,
        abandoned=abandoned,
        abandon_rate=abandoned / calls if calls else None,
        asa=sum(waits) / answered if answered else None,
        service_level=within / calls if calls else None,
        wait_p50=quantile(waits, 0.50),
        wait_p95=quantile(waits, 0.95),
        wait_max=waits[-1] if waits else None,
        value_answered=value_answered,
        value_abandoned=value_abandoned,
        offered=cb.offered,
        callbacks=cb.callbacks,
        answered_on_ring=cb.answered_on_ring,
        callback_failed=cb.failed,
        callback_failed_rate=cb.failed / calls if calls else None,
        lost_rate=(calls - answered) / calls if calls else None,
        rings=cb.rings,
        ring_agent_seconds=cb.ring_seconds,
    )


def service_level_over_time(
    workload: Workload, outcome: Outcome, target: float, bucket: float
) -> list[tuple[float, float | None]]:
    """(start of bucket, service level of the calls that arrived in it), for the plot."""
    if not len(workload):
        return []
    start = 0.0
    buckets = math.floor(workload.arrival[-1] / bucket) + 1
    calls = [0] * buckets
    within = [0] * buckets
    for i, t in enumerate(workload.arrival):
        b = math.floor((t - start) / bucket)
        calls[b] += 1
        answer = outcome.answered_at[i]
        within[b] += answer == answer and answer - t <= target
    return [(b * bucket, within[b] / calls[b] if calls[b] else None) for b in range(buckets)]
