"""Erlang C: the textbook answer to "how long will my callers wait".

Workforce tools staff with it, so the simulator states it next to its own
figures: where the two agree (exponential handle times, nobody hangs up) the
simulation is checked against it, and where they differ (callers who hang
up, other policies, real traffic) the difference is what the simulation adds.

The model is M/M/c: Poisson arrivals at ``rate`` a second, exponential handle
times of mean ``aht`` seconds, ``agents`` identical agents, an infinite
queue served in order, nobody abandons. ``load = rate * aht`` is the offered
traffic in Erlangs; above ``agents`` the queue grows without bound.

Pure functions; computed through Erlang B's recursion, which stays finite
for hundreds of agents where the factorial formula overflows.
"""

from __future__ import annotations

import math


def erlang_b(agents: int, load: float) -> float:
    """Blocking probability of ``agents`` servers offered ``load`` Erlangs (no queue)."""
    if agents < 0 or load < 0:
        raise ValueError("agents and load must not be negative")
    b = 1.0
    for k in range(1, agents + 1):
        b = load * b / (k + load * b)
    return b


def wait_probability(agents: int, load: float) -> float:
    """Erlang C: the share of callers who find every agent busy and wait.

    1 when the load reaches the agents: the queue never empties.
    """
    if load >= agents:
        return 1.0
    if load == 0:
        return 0.0
    b = erlang_b(agents, load)
    return agents * b / (agents - load * (1.0 - b))


def average_speed_of_answer(agents: int, load: float, aht: float) -> float:
    """Mean wait in seconds over all callers (those answered at once count 0)."""
    if load >= agents:
        return math.inf
    return wait_probability(agents, load) * aht / (agents - load)


def service_level(agents: int, load: float, aht: float, target: float) -> float:
    """Share of callers answered within ``target`` seconds.

    The wait of a caller who waits is exponential with rate
    ``(agents - load) / aht``, hence ``1 - C * exp(-(c - A) * T / aht)``.
    """
    if load >= agents:
        return 0.0
    c = wait_probability(agents, load)
    return 1.0 - c * math.exp(-(agents - load) * target / aht)


def agents_needed(rate: float, aht: float, share: float, target: float) -> int:
    """The fewest agents for which Erlang C answers ``share`` of calls within ``target`` s."""
    if rate <= 0 or aht <= 0:
        raise ValueError("rate and aht must be positive")
    if not 0 < share < 1:
        raise ValueError("share must be between 0 and 1")
    load = rate * aht
    agents = max(1, math.floor(load) + 1)
    while service_level(agents, load, aht, target) < share:
        agents += 1
    return agents
