"""How many agents for a service-level target: Erlang C's answer and the simulation's.

Erlang C assumes nobody hangs up; on a real line callers who wait long hang
up, which shortens the queue for those behind them, so a simulation with
abandonment usually needs fewer agents for the same target (at the price of
the callers it lost, which the report shows next to it). The search runs the
same calls (common random numbers) for every agent count, so the service
level it compares rises with the agents without the dice getting in the way.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from callcenter.queue.policy import QueuePolicy
from callcenter.simulation import erlang
from callcenter.simulation.des import serve
from callcenter.simulation.figures import ALL, tier_figures
from callcenter.simulation.workload import Workload


@dataclass(frozen=True)
class Target:
    """``share`` of calls answered within ``seconds``: 80/20 is (0.8, 20)."""

    share: float
    seconds: float

    def __str__(self) -> str:
        return f"{self.share * 100:g}/{self.seconds:g}"


def parse_target(text: str) -> Target:
    """``80/20`` as a Target; ``ValueError`` with a readable reason otherwise."""
    share, sep, seconds = text.partition("/")
    try:
        target = Target(float(share) / 100.0, float(seconds))
    except ValueError:
        raise ValueError(f"{text!r} is not PERCENT/SECONDS, e.g. 80/20") from None
    if not sep or not 0 < target.share < 1 or target.seconds < 0:
        raise ValueError(f"{text!r} needs a percent between 0 and 100 and seconds >= 0")
    return target


@dataclass(frozen=True)
class Level:
    """What one agent count gives, averaged over the runs."""

    agents: int
    service_level: float
    abandon_rate: float
    asa: float | None


def simulated_level(
    workloads: Sequence[Workload], policy: QueuePolicy, agents: int, target: Target
) -> Level:
    rows = [
        next(r for r in tier_figures(w, serve(w, policy, agents), target.seconds) if r.tier == ALL)
        for w in workloads
    ]
    asas = [r.asa for r in rows if r.asa is not None]
    return Level(
        agents=agents,
        service_level=statistics.fmean(r.service_level or 0.0 for r in rows),
        abandon_rate=statistics.fmean(r.abandon_rate or 0.0 for r in rows),
        asa=statistics.fmean(asas) if asas else None,
    )


def simulated_agents(
    workloads: Sequence[Workload], policy: QueuePolicy, target: Target, start: int
) -> tuple[Level, dict[int, Level]]:
    """The fewest agents whose simulated service level meets ``target``, and every level tried.

    Starts from ``start`` (Erlang C's answer) and walks down while the target
    still holds, or up until it does: a few runs, not a scan from one agent.
    """
    tried: dict[int, Level] = {}

    def level(agents: int) -> Level:
        if agents not in tried:
            tried[agents] = simulated_level(workloads, policy, agents, target)
        return tried[agents]

    agents = max(1, start)
    if level(agents).service_level >= target.share:
        while agents > 1 and level(agents - 1).service_level >= target.share:
            agents -= 1
    else:
        while level(agents).service_level < target.share:
            agents += 1
    return level(agents), tried


def erlang_level(rate: float, aht: float, agents: int, target: Target) -> Level:
    """Erlang C's figures for ``agents`` (nobody abandons in its model)."""
    load = rate * aht
    asa = erlang.average_speed_of_answer(agents, load, aht)
    return Level(
        agents=agents,
        service_level=erlang.service_level(agents, load, aht, target.seconds),
        abandon_rate=0.0,
        asa=asa if asa != float("inf") else None,
    )
