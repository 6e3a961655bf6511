"""The what-if event loop: one queue, identical agents, a policy's order.

A small heap-based discrete-event simulation of our own rather than a library
such as simpy: the model has three kinds of event (an arrival, an agent
coming free, a caller's patience running out) and no processes, so three
heaps and a ``while`` loop do it, and a simulated day of a 100-agent center
runs in a fraction of a second instead of paying for a generator switch per
event.

The order is the production order, computed by the production functions:
each call's key is ``policy.service_key`` of its arrival and
``policy.credit`` of its tier, in whole microseconds as PostgreSQL holds it,
and the queue serves the smallest key first, ties by arrival (the claim's
``ORDER BY service_key, id``). Nothing of the formula is repeated here.

While it runs it measures the one thing the value policy promises: the
largest gap between a caller still waiting and a later arrival answered
before them (the *overtaking*), which ``policy.overtaking_bound`` caps.

**Callbacks** (``Callbacks``, off unless given) add a fourth event, a
callback coming back after its retry delay. A caller who has to wait is
offered a callback by production's rule (``policy.callback_offered``) on
the queue's estimated wait at their arrival, computed by production's
``ewt.estimated_wait``; one who takes it hangs up but keeps their place
(the same key in the same heap) and no longer abandons. When an agent takes
it, the agent rings: a ring the caller answers costs ``pickup_seconds`` and
then the call is talked as usual; one nobody answers costs the agent the
ring timeout (``ring_seconds``), frees them, and sends the call out of the
queue for ``retry_seconds``, after which it waits again with its key; after
``attempts`` rings it ends ``callback_failed``.
"""

from __future__ import annotations

import math
from bisect import bisect_left, insort
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from heapq import heappop, heappush

from callcenter.queue.ewt import QueueRates, estimated_wait
from callcenter.queue.policy import (
    CallbackRule,
    QueuePolicy,
    callback_offered,
    credit,
    service_key,
)
from callcenter.simulation.workload import Workload

#: The simulated clock's zero, as a database time: late enough that strict
#: priority's centuries of credit still give a valid datetime.
EPOCH = datetime(2026, 1, 1, tzinfo=UTC)
MICROSECOND = timedelta(microseconds=1)


@dataclass(frozen=True)
class Callbacks:
    """The callback model of a run: the queue's rule and how callers respond to it.

    ``rule`` is production's pure rule (``policy.CallbackRule``), applied by
    production's ``policy.callback_offered``. ``take``: the share of offered
    callers who take it; ``answer``: the share of rings the caller answers
    (each ring independently). ``attempts`` rings at most, ``retry_seconds``
    apart. A ring nobody answers holds the agent for ``ring_seconds`` (the
    service's ring timeout, ``CALLCENTER_CALLBACK_RING_SECONDS``, 30 s by
    default); an answered one for ``pickup_seconds`` before the talk starts.
    """

    rule: CallbackRule
    take: float
    answer: float
    attempts: int = 3
    retry_seconds: float = 120.0
    ring_seconds: float = 30.0
    pickup_seconds: float = 10.0

    def answering_ring(self, draw: float) -> float:
        """The ring (1, 2, ...) a caller with uniform ``draw`` in (0, 1] picks up; inf: never.

        Each ring is answered with probability ``answer``, so the ring is
        geometric: the inverse of its distribution at ``draw``. A larger
        share never makes any caller pick up later (the same draw, shared by
        every run, answers at the same ring or sooner).
        """
        if self.answer >= 1.0:
            return 1.0
        if self.answer <= 0.0:
            return math.inf
        rings = math.log(draw) / math.log1p(-self.answer)
        return 1.0 + math.floor(rings) if math.isfinite(rings) else math.inf


@dataclass(frozen=True)
class Outcome:
    """What happened to each call of a workload under one policy.

    ``answered_at``, ``abandoned_at`` and ``failed_at`` are simulated
    seconds, ``nan`` where it did not happen; exactly one of the three is set
    for every call, because the loop runs until the queue is empty. A call is
    *answered* when the caller starts talking with an agent: for a callback,
    when they pick up the ring that reached them. ``abandoned_at``: the
    caller hung up while holding; ``failed_at``: a callback whose last ring
    nobody answered (``callback_failed``). ``max_overtaking`` is in seconds,
    ``overtaking_pair`` the (earlier, later) call indices that reached it.

    With callbacks: ``offered`` and ``taken`` by call (1 or 0),
    ``rings_at`` the times an agent took each callback call and rang
    (by call index), ``ring_seconds`` the agent time each call's rings cost.
    """

    policy: QueuePolicy
    agents: int
    answered_at: list[float]
    abandoned_at: list[float]
    max_overtaking: float
    overtaking_pair: tuple[int, int] | None
    failed_at: list[float] = field(default_factory=list)
    offered: bytes = b""
    taken: bytes = b""
    rings_at: dict[int, list[float]] = field(default_factory=dict)
    ring_seconds: dict[int, float] = field(default_factory=dict)


def arrival_micros(workload: Workload) -> list[int]:
    """Arrivals in whole microseconds, the resolution of a ``timestamptz``."""
    return [round(t * 1_000_000.0) for t in workload.arrival]


def service_keys(workload: Workload, policy: QueuePolicy, micros: list[int]) -> list[int]:
    """Each call's service key, microseconds after ``EPOCH``, as production computes it."""
    credits = [credit(policy, tier) for tier in workload.tiers]
    return [
        (service_key(EPOCH + timedelta(microseconds=us), credits[k]) - EPOCH) // MICROSECOND
        for us, k in zip(micros, workload.tier, strict=True)
    ]


def serve(
    workload: Workload, policy: QueuePolicy, agents: int, callbacks: Callbacks | None = None
) -> Outcome:
    """Run the workload through ``agents`` agents in ``policy``'s order, to the last call.

    Invariant the loop relies on: an agent is free only while no call waits
    (a freed agent takes the head at once), so an arriving call is answered
    at once exactly when an agent is free. Abandoned calls stay in the queue
    heap and are skipped when they surface, which is cheaper than removing them.

    With ``callbacks``, the estimated wait at a waiting caller's arrival is
    production's ``ewt.estimated_wait``: the calls ahead (waiting calls with
    a smaller key, virtual ones included, as ``calls_ahead`` counts them; a
    callback out for its retry delay has no waiting row and is not counted),
    no agent available (the caller waits because none is), and the service
    rate of the staffed agents, ``agents`` ÷ the workload's mean handle time.
    Production's other term, the answers observed in the last window, exceeds
    that capacity only when handle times run short by chance, so it is left out.
    """
    if agents < 1:
        raise ValueError("agents must be at least 1")
    n = len(workload)
    cb = callbacks
    if cb is not None and (len(workload.callback_draw) != n or len(workload.ring_draw) != n):
        raise ValueError("a run with callbacks needs the workload's callback and ring draws")
    arrival = workload.arrival
    patience = workload.patience
    handle = workload.handle
    micros = arrival_micros(workload)
    keys = service_keys(workload, policy, micros)
    nan = math.nan
    inf = math.inf
    answered_at = [nan] * n
    abandoned_at = [nan] * n
    failed_at = [nan] * n
    waiting = bytearray(n)  # 1 while the call waits
    offered = bytearray(n)
    taken = bytearray(n)  # 1: a callback, the caller is not on the line
    rings_at: dict[int, list[float]] = {}
    ring_cost: dict[int, float] = {}
    busy: list[float] = []  # when each busy agent comes free
    queue: list[tuple[int, int]] = []  # (service key, index)
    deadlines: list[tuple[float, int]] = []  # (when patience runs out, index)
    back: list[tuple[float, int]] = []  # (when a callback's retry delay ends, index)
    returned: list[int] = []  # callbacks waiting again, by index (they precede ``oldest``)
    ordered: list[tuple[int, int]] = []  # waiting (key, index) sorted, for the calls ahead
    rates = None
    if cb is not None and n:
        rates = QueueRates(
            answered=0,
            window_seconds=1.0,
            mean_handle_seconds=sum(handle) / n,
            staffed=agents,
            available=0,
        )
    free = agents
    oldest = 0  # no call before this index waits, but for those in ``returned``
    max_over = 0
    pair: tuple[int, int] | None = None

    def take(j: int, t: float) -> None:
        """An agent takes call ``j`` at ``t``: talk, or ring a callback."""
        if not taken[j]:
            answered_at[j] = t
            heappush(busy, t + handle[j])
            return
        assert cb is not None
        rings = rings_at.setdefault(j, [])
        rings.append(t)
        if len(rings) >= cb.answering_ring(workload.ring_draw[j]):
            ring_cost[j] = ring_cost.get(j, 0.0) + cb.pickup_seconds
            answered_at[j] = t + cb.pickup_seconds
            heappush(busy, t + cb.pickup_seconds + handle[j])
            return
        ring_cost[j] = ring_cost.get(j, 0.0) + cb.ring_seconds
        heappush(busy, t + cb.ring_seconds)
        if len(rings) >= cb.attempts:
            failed_at[j] = t + cb.ring_seconds
        else:
            heappush(back, (t + cb.ring_seconds + cb.retry_seconds, j))

    i = 0
    while True:
        t_arrive = arrival[i] if i < n else inf
        t_free = busy[0] if busy else inf
        t_quit = deadlines[0][0] if deadlines else inf
        t_back = back[0][0] if back else inf
        if back and t_back <= t_free and t_back <= t_quit and t_back <= t_arrive:
            # First at a tie: a callback back at the instant an agent frees is
            # in the queue when the agent takes the head (rings and delays are
            # fixed, so such ties recur).
            j = heappop(back)[1]
            if free:
                free -= 1
                take(j, t_back)
            else:
                waiting[j] = 1
                heappush(queue, (keys[j], j))
                heappush(returned, j)
                insort(ordered, (keys[j], j))
        elif t_free <= t_arrive and t_free <= t_quit:
            if t_free == inf:
                break
            heappop(busy)
            while queue:
                key, j = heappop(queue)
                if waiting[j]:
                    waiting[j] = 0
                    if rates is not None:
                        del ordered[bisect_left(ordered, (key, j))]
                    while oldest < i and not waiting[oldest]:
                        oldest += 1
                    first = oldest
                    while returned and not waiting[returned[0]]:
                        heappop(returned)
                    if returned and returned[0] < first:
                        first = returned[0]
                    if first < j and micros[j] - micros[first] > max_over:
                        max_over = micros[j] - micros[first]
                        pair = (first, j)
                    take(j, t_free)
                    break
            else:
                free += 1
        elif t_quit <= t_arrive:
            j = heappop(deadlines)[1]
            if waiting[j]:  # a callback has no deadline: it never abandons
                waiting[j] = 0
                abandoned_at[j] = t_quit
                if rates is not None:
                    del ordered[bisect_left(ordered, (keys[j], j))]
        else:
            if free:
                free -= 1
                take(i, t_arrive)
            else:
                waiting[i] = 1
                heappush(queue, (keys[i], i))
                if rates is not None:
                    assert cb is not None
                    # As calls_ahead: the waiting calls with a strictly smaller key.
                    ahead = bisect_left(ordered, (keys[i], -1))
                    insort(ordered, (keys[i], i))
                    local = (EPOCH + timedelta(seconds=t_arrive)).time()
                    tier = workload.tiers[workload.tier[i]]
                    if callback_offered(cb.rule, tier, estimated_wait(ahead, rates), local):
                        offered[i] = 1
                        taken[i] = workload.callback_draw[i] < cb.take
                if patience[i] != inf and not taken[i]:
                    heappush(deadlines, (t_arrive + patience[i], i))
            i += 1
    return Outcome(
        policy=policy,
        agents=agents,
        answered_at=answered_at,
        abandoned_at=abandoned_at,
        max_overtaking=max_over / 1_000_000.0,
        overtaking_pair=pair,
        failed_at=failed_at,
        offered=bytes(offered),
        taken=bytes(taken),
        rings_at=rings_at,
        ring_seconds=ring_cost,
    )
