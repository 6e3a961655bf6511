"""The supervisor's figures, read in a handful of bounded statements.

One reading serves every open dashboard (the hub reads once per batch of
changes and fans the result out) and ``GET /api/stats``. What it costs does
not grow with the ``calls`` table:

* the history (window and today) comes from ``DayBuckets``: after the first
  reading, each one reads only the rows stamped in the last seconds, through
  the indexes on ``enqueued_at``, ``connected_at``, ``ended_at`` (per queue)
  and ``answers.answered_at``;
* the present (what waits, who works) reads ``waiting_calls`` and ``agents``,
  which hold what is live now, and the head of each queue (``list_limit``).

"Today" starts at local midnight in the service's time zone (``TZ``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo

import asyncpg

from callcenter.customers.value import ordered_tiers
from callcenter.dashboard import chart
from callcenter.dashboard.buckets import Agg, DayBuckets, Key
from callcenter.dashboard.models import (
    AgentRow,
    Board,
    ChartPoint,
    Figures,
    QueueStats,
    Stats,
    TierStats,
    WaitingRow,
)
from callcenter.dashboard.sql import Q
from callcenter.db.pool import Conn
from callcenter.queue import policy
from callcenter.queue.calls import CallDesk
from callcenter.queue.ewt import QueueRates, estimated_wait
from callcenter.queue.models import AgentState


def local_midnight(now: datetime, zone: tzinfo | None = None) -> datetime:
    """The start of ``now``'s day in ``zone`` (None: the service's local zone)."""
    local = now.astimezone(zone)
    return local.replace(hour=0, minute=0, second=0, microsecond=0)


def figures(agg: Agg | None) -> Figures:
    a = agg or Agg()
    decided = a.answered + a.abandoned
    return Figures(
        offered=a.offered,
        answered=a.answered,
        answered_within_service_level=a.answered_in_sl,
        abandoned=a.abandoned,
        service_level=a.answered_in_sl / a.answered if a.answered else None,
        average_speed_of_answer_seconds=a.wait_sum / a.answered if a.answered else None,
        abandon_rate=a.abandoned / decided if decided else None,
        longest_answered_wait_seconds=a.wait_max if a.answered else None,
        abandoned_value=round(a.abandoned_value, 2),
        learning_answered=a.learned,
        learning_skipped=a.skipped,
    )


def _sum(aggs: Iterable[Agg]) -> Agg:
    out = Agg()
    for a in aggs:
        out.add(a)
    return out


@dataclass
class DashboardStats:
    """Reads the board; holds the day's buckets between readings (one per process)."""

    desk: CallDesk
    window_seconds: float
    list_limit: int = 50
    zone: tzinfo | None = None
    buckets: DayBuckets = field(default_factory=DayBuckets)
    #: Queues whose bound check failed at some reading, by the day it happened.
    _exceeded: dict[str, datetime] = field(default_factory=dict)

    async def read(self, conn: Conn) -> Board:
        directory = self.desk.directory
        queues = sorted(await directory.all(conn), key=lambda q: q.name)
        names = [q.name for q in queues]
        tiers = ordered_tiers(self.desk.rules.thresholds)
        lowest = self.desk.rules.lowest_tier

        clock = datetime.now(UTC)
        midnight = local_midnight(clock, self.zone)
        # The chart's first point needs a window of buckets before it.
        oldest = min(
            midnight.timestamp(), clock.timestamp() - self.window_seconds - chart.CHART_SECONDS
        )
        since = self.buckets.since(oldest)
        rows = await conn.fetch(
            Q["buckets"],
            datetime.fromtimestamp(since, UTC),
            self.buckets.bucket_seconds,
            names,
        )
        db_now = float(rows[0]["now"])
        self.buckets.fold(db_now, since, _bucket_rows(rows))
        self.buckets.forget_before(oldest)
        at = datetime.fromtimestamp(db_now, UTC)
        window = self.buckets.totals(db_now - self.window_seconds)
        today = self.buckets.totals(midnight.timestamp(), remember=True)

        groups = {(r["queue"], r["tier"]): r for r in await conn.fetch(Q["waiting_groups"])}
        set_aside = {r["queue"]: r["n"] for r in await conn.fetch(Q["callbacks_set_aside"])}
        rules = {q.name: directory.policy(q) for q in queues}
        tier_names = [*tiers, "unknown"]
        ahead_q, ahead_c, ahead_o = [], [], []
        for q in queues:
            for t in tier_names:
                ahead_q.append(q.name)
                ahead_c.append(policy.credit(rules[q.name], None if t == "unknown" else t))
                ahead_o.append(q.offset_seconds)
        ahead = {
            (r["queue"], r["credit"]): r["ahead"]
            for r in await conn.fetch(Q["calls_ahead"], ahead_q, ahead_c, ahead_o)
        }
        bounds = [rules[n].overtaking_bound for n in names]
        overtaken = {
            r["queue"]: r["overtaken"] for r in await conn.fetch(Q["overtaken"], names, bounds)
        }
        agent_rows = await conn.fetch(Q["agents"])
        waiting_rows = await conn.fetch(Q["waiting_list"], self.list_limit)
        rates = {q.name: await self.desk.rates(conn, q) for q in queues}

        for name, n in overtaken.items():
            if n > 0:
                self._exceeded[name] = midnight
        out: list[QueueStats] = []
        for q in queues:
            rule = rules[q.name]
            tier_stats = []
            for t in tier_names:
                g = groups.get((q.name, t))
                if t == "unknown" and g is None and (q.name, t, 0) not in today:
                    continue  # no unidentified caller today: no row for them
                credit = policy.credit(rule, None if t == "unknown" else t)
                tier_stats.append(
                    TierStats(
                        tier=t,
                        waiting=g["waiting"] if g else 0,
                        offering=g["offering"] if g else 0,
                        longest_wait_seconds=g["longest_wait"] if g else None,
                        estimated_wait_seconds=estimated_wait(
                            ahead.get((q.name, credit), 0), rates[q.name]
                        ),
                        value_at_risk=round(g["value"], 2) if g else 0.0,
                        window=figures(window.get((q.name, t, 0))),
                        today=figures(today.get((q.name, t, 0))),
                    )
                )
            mine = [g for (name, _), g in groups.items() if name == q.name]
            by_state = dict.fromkeys(AgentState, 0)
            for a in agent_rows:
                if q.name in a["queues"]:
                    by_state[AgentState(a["state"])] += 1
            low_now = groups.get((q.name, lowest))
            low_today = today.get((q.name, lowest, 0))
            low_waits = [
                w
                for w in (
                    low_now["longest_wait"] if low_now is not None else None,
                    low_today.wait_max if low_today is not None and low_today.answered else None,
                )
                if w is not None
            ]
            exceeded = self._exceeded.get(q.name)
            out.append(
                QueueStats(
                    name=q.name,
                    policy=q.policy.value,
                    service_level_seconds=q.service_level_seconds,
                    overtaking_bound_seconds=rule.overtaking_bound,
                    waiting=sum(g["waiting"] for g in mine),
                    offering=sum(g["offering"] for g in mine),
                    callbacks_waiting=sum(g["callbacks"] for g in mine),
                    callbacks_set_aside=set_aside.get(q.name, 0),
                    longest_wait_seconds=max((g["longest_wait"] for g in mine), default=None),
                    estimated_wait_seconds=estimated_wait(
                        ahead.get((q.name, policy.credit(rule, lowest)), 0), rates[q.name]
                    ),
                    agents=by_state,
                    value_at_risk=round(sum(g["value"] for g in mine), 2),
                    lowest_tier=lowest,
                    longest_lowest_tier_wait_seconds=max(low_waits, default=None),
                    overtaken_now=overtaken.get(q.name, 0),
                    bound_exceeded_today=exceeded is not None and exceeded >= midnight,
                    window=figures(_sum(a for k, a in window.items() if k[0] == q.name)),
                    today=figures(_sum(a for k, a in today.items() if k[0] == q.name)),
                    tiers=tier_stats,
                )
            )
        stats = Stats(
            at=at, window_seconds=self.window_seconds, day_started_at=midnight, queues=out
        )
        return Board(
            stats=stats,
            waiting=_waiting(waiting_rows, rates),
            agents=[
                AgentRow(
                    id=a["id"],
                    name=a["name"],
                    queues=list(a["queues"]),
                    state=a["state"],
                    state_since=a["state_since"],
                    seconds_in_state=max(0.0, a["in_state"]),
                    call_id=a["call_id"],
                    call_queue=a["call_queue"],
                    customer_name=a["customer_name"],
                    customer_number=a["customer_number"],
                    handled_today=today[("", "", a["id"])].handled
                    if ("", "", a["id"]) in today
                    else 0,
                    last_seen_at=a["last_seen_at"],
                )
                for a in agent_rows
            ],
        )

    def chart(self, board: Board) -> list[ChartPoint]:
        """The last hour, one point per 10 s bucket that has ended (see ``chart.py``):
        from the buckets this reading holds, no statement of its own."""
        b = self.buckets
        now_index = b.index(board.stats.at.timestamp())
        last = now_index - 1
        points = round(chart.CHART_SECONDS / b.bucket_seconds)
        window = max(1, round(self.window_seconds / b.bucket_seconds))
        return chart.series(
            b.flows(last - points - window + 2),
            last=last,
            points=points,
            bucket_seconds=b.bucket_seconds,
            window_buckets=window,
            waiting_now={q.name: q.waiting for q in board.stats.queues},
            now_index=now_index,
            queues=[q.name for q in board.stats.queues],
        )


def _bucket_rows(rows: Iterable[asyncpg.Record]) -> list[tuple[int, Key, Agg]]:
    return [
        (
            r["b"],
            (r["queue"], r["tier"], r["agent_id"]),
            Agg(
                offered=r["offered"],
                answered=r["answered"],
                answered_in_sl=r["in_sl"],
                wait_sum=r["wait_sum"],
                wait_max=r["wait_max"] or 0.0,
                abandoned=r["abandoned"],
                abandoned_value=r["abandoned_value"],
                learned=r["learned"],
                skipped=r["skipped"],
                handled=r["handled"],
                left=r["left_unanswered"],
            ),
        )
        for r in rows
        if r["b"] is not None
    ]


def _waiting(rows: Iterable[asyncpg.Record], rates: dict[str, QueueRates]) -> list[WaitingRow]:
    """The heads of the queues; position and EWT as the queue's own API gives them."""
    out: list[WaitingRow] = []
    position: dict[str, int] = {}
    for r in rows:
        queue = r["queue"]
        n = position[queue] = position.get(queue, 0) + 1
        out.append(
            WaitingRow(
                id=r["call_id"],
                call_id=r["external_id"],
                queue=queue,
                position=n,
                ani=r["ani"],
                customer_id=r["customer_id"],
                customer_name=r["customer_name"],
                customer_number=r["customer_number"],
                tier=r["tier"],
                credit_seconds=r["credit_seconds"],
                credit_explicit=r["credit_explicit"],
                bumped_by=r["bumped_by"],
                enqueued_at=r["enqueued_at"],
                waited_seconds=max(0.0, r["waited"]),
                estimated_wait_seconds=estimated_wait(n - 1, rates[queue]),
                offered_to=r["offered_to"],
                value=round(r["value"], 2),
                why=policy.explain_credit(r["tier"], r["credit_seconds"], r["credit_explicit"]),
                callback=r["callback"],
                resumed=r["resumed"],
            )
        )
    return out
