"""Last week's calls as a what-if workload: replay your own traffic under each policy.

What the tables record is replayed as it was: each call's arrival, its
caller's tier and net value, and for an answered call the agent's time
(connect to wrap-up done, or to hang-up without wrap-up). What they cannot
record is filled in, and only that:

* **patience.** A caller who hung up showed their patience (the wait until
  they hung up). A caller who was answered only showed that it exceeded
  their wait; they get that wait plus an exponential remainder whose mean is
  the censored-data estimate (all the time callers spent waiting ÷ the
  number who hung up), the same memoryless model the synthetic runs use.
* **handle time of a call never answered**, needed if another policy would
  answer it: one of the recorded handle times, drawn at random.

A transferred call that was never answered left the queue at its end, so it
replays as a caller who left then. Calls with no tier (never identified)
get the tier ``unidentified``, which every policy credits as the least.
The draws are seeded: ``--runs`` replays the same history with different
fill-ins, and the interval shows how much the unknowns matter.
"""

from __future__ import annotations

import json
import math
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from callcenter.db.sql import load_queries
from callcenter.simulation.workload import Workload, uniforms

Q = load_queries("callcenter.simulation", "history.sql")

#: The tier of a caller the service never identified.
UNIDENTIFIED = "unidentified"

_SINCE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([mhdw])\s*$")
_UNIT = {"m": 60.0, "h": 3600.0, "d": 86400.0, "w": 7 * 86400.0}


@dataclass(frozen=True)
class HistoryCall:
    """One finished call as the ``calls`` table holds it."""

    id: int
    queue: str
    tier: str | None
    state: str
    enqueued_at: datetime
    connected_at: datetime | None
    ended_at: datetime
    wrapped_up_at: datetime | None
    net_value: float

    @property
    def handle(self) -> float | None:
        """Seconds an agent spent on the call, wrap-up included; None if never answered."""
        if self.connected_at is None:
            return None
        done = self.wrapped_up_at or self.ended_at
        return max(0.0, (done - self.connected_at).total_seconds())

    @property
    def waited(self) -> float:
        """Seconds in the queue: to the answer, or to leaving unanswered."""
        return ((self.connected_at or self.ended_at) - self.enqueued_at).total_seconds()


def parse_since(text: str) -> timedelta:
    """``7d``, ``12h``, ``30m``, ``2w`` as a timedelta; ``ValueError`` otherwise."""
    match = _SINCE.match(text)
    if not match or float(match.group(1)) <= 0:
        raise ValueError(f"{text!r} is not a positive duration such as 7d, 12h or 30m")
    return timedelta(seconds=float(match.group(1)) * _UNIT[match.group(2)])


async def read_history(conn: Any, since: timedelta, queue: str | None) -> list[HistoryCall]:
    """The window's finished calls, oldest first (``conn``: an asyncpg connection or pool)."""
    rows = await conn.fetch(Q["finished_calls"], since, queue)
    return [HistoryCall(**dict(row)) for row in rows]


@dataclass(frozen=True)
class QueueSettings:
    """What a queue is configured with that a replay of it should honour."""

    credits: dict[str, float]  # the value policy's credits; empty: the defaults
    service_level_seconds: float


async def read_queue(conn: Any, name: str) -> QueueSettings | None:
    """The queue's credits and service-level target, or None if there is no such queue."""
    row = await conn.fetchrow(Q["queue_settings"], name)
    if row is None:
        return None
    credits = {str(k): float(v) for k, v in json.loads(row["credits"]).items()}
    return QueueSettings(credits, float(row["service_level_seconds"]))


def tiers_of(calls: Sequence[HistoryCall], known: Sequence[str]) -> tuple[str, ...]:
    """The tiers to report, most valuable first: the configured ones, then any other seen."""
    seen = {c.tier or UNIDENTIFIED for c in calls}
    others = sorted(seen - set(known) - {UNIDENTIFIED})
    return tuple([*known, *others, *([UNIDENTIFIED] if UNIDENTIFIED in seen else [])])


def mean_patience(calls: Sequence[HistoryCall]) -> float:
    """The exponential patience that explains the abandonments (``inf`` if nobody hung up)."""
    gave_up = sum(1 for c in calls if c.connected_at is None)
    return math.inf if not gave_up else sum(c.waited for c in calls) / gave_up


def peak_agents(calls: Sequence[HistoryCall]) -> int:
    """The most calls agents were busy with at once: the staffing the history shows, at least."""
    events: list[tuple[datetime, int]] = []
    for c in calls:
        if c.connected_at is not None:
            events.append((c.connected_at, 1))
            events.append((c.wrapped_up_at or c.ended_at, -1))
    busy = peak = 0
    for _, step in sorted(events):
        busy += step
        peak = max(peak, busy)
    return max(1, peak)


def replay(calls: Sequence[HistoryCall], tiers: Sequence[str], seed: int) -> Workload:
    """The calls as a workload: recorded facts kept exactly, the unrecorded drawn from ``seed``."""
    if not calls:
        raise ValueError("no calls to replay")
    rng = random.Random(f"{seed}:history")
    start = calls[0].enqueued_at
    handles = [h for c in calls if (h := c.handle) is not None]
    patience = mean_patience(calls)
    index = {t: k for k, t in enumerate(tiers)}
    arrival: list[float] = []
    tier: list[int] = []
    patiences: list[float] = []
    handle: list[float] = []
    value: list[float] = []
    for c in calls:
        arrival.append((c.enqueued_at - start).total_seconds())
        tier.append(index[c.tier or UNIDENTIFIED])
        value.append(c.net_value)
        recorded = c.handle
        if recorded is None:
            patiences.append(c.waited)
            handle.append(rng.choice(handles) if handles else 0.0)
        else:
            extra = math.inf if math.isinf(patience) else rng.expovariate(1.0 / patience)
            patiences.append(c.waited + extra)
            handle.append(recorded)
    return Workload(
        tiers=tuple(tiers),
        arrival=arrival,
        tier=tier,
        patience=patiences,
        handle=handle,
        value=value,
        callback_draw=uniforms(random.Random(f"{seed}:callback"), len(arrival)),
        ring_draw=uniforms(random.Random(f"{seed}:ring"), len(arrival)),
    )
