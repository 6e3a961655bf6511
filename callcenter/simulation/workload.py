"""The calls a what-if run offers, drawn once and shown to every policy.

Comparing policies on different random calls would mix the policy's effect
with luck, so each call's arrival, tier, patience, handle time and value are
fixed *before* any policy sees them (common random numbers): the policies
differ only in the order they serve the same callers. Each quantity has its
own random stream, so changing the patience does not change who arrives when.

A workload is also what a replay of the service's history produces
(``history.py``), so the event loop does not care where calls came from.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass, field

from callcenter.simulation.distributions import gap, lognormal, patience

#: Who calls, out of 1, most valuable first: a line's usual pyramid.
DEFAULT_TIER_MIX: tuple[tuple[str, float], ...] = (
    ("platinum", 0.02),
    ("gold", 0.08),
    ("silver", 0.20),
    ("standard", 0.70),
)

#: Net value at stake per tier when there is no customer record to read it from
#: (about the middle of each tier's band of the default value thresholds).
DEFAULT_TIER_VALUE: Mapping[str, float] = {
    "platinum": 40_000.0,
    "gold": 12_000.0,
    "silver": 2_500.0,
    "standard": 300.0,
}


@dataclass(frozen=True)
class Workload:
    """Calls in arrival order as parallel lists (the event loop indexes them).

    ``tier`` holds an index into ``tiers`` (most valuable first); ``patience``
    is how long the caller would wait before hanging up (``inf``: never);
    ``handle`` is how long an agent is busy with the call once answered.

    ``callback_draw`` and ``ring_draw`` are each caller's uniform draws in
    (0, 1] for the callback model (``des.Callbacks``): they take an offered
    callback when ``callback_draw`` is below the share who take it, and
    ``ring_draw`` says at which ring they pick up. Drawn with the rest, so a
    run with callbacks and one without serve the very same callers. Empty in
    a workload built without them (a run with callbacks refuses it).
    """

    tiers: tuple[str, ...]
    arrival: list[float]
    tier: list[int]
    patience: list[float]
    handle: list[float]
    value: list[float]
    callback_draw: list[float] = field(default_factory=list)
    ring_draw: list[float] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.arrival)

    @property
    def span(self) -> float:
        """Seconds from the first to the last arrival (0 for fewer than two calls)."""
        return self.arrival[-1] - self.arrival[0] if len(self.arrival) > 1 else 0.0


@dataclass(frozen=True)
class Traffic:
    """What a synthetic run offers: ``rate`` calls a second for ``seconds``."""

    rate: float
    aht: float
    seconds: float
    patience: float = 90.0  # mean, exponential; inf: nobody hangs up
    handle_cv: float | None = None  # None: exponential handle times; else lognormal with this cv
    tier_mix: tuple[tuple[str, float], ...] = DEFAULT_TIER_MIX
    tier_value: Mapping[str, float] | None = None


def synthetic(traffic: Traffic, seed: int) -> Workload:
    """Poisson arrivals for ``traffic.seconds``, each with its tier, patience and handle time.

    Handle times are exponential by default because that is what Erlang C
    assumes, so the two can be compared; ``handle_cv`` makes them lognormal,
    closer to a real line's long tail.
    """
    if traffic.rate <= 0 or traffic.aht <= 0 or traffic.seconds <= 0:
        raise ValueError("rate, aht and seconds must be positive")
    names = ("arrival", "tier", "patience", "hand", "callback", "ring")
    streams = [random.Random(f"{seed}:{name}") for name in names]
    arrivals_rng, tier_rng, patience_rng, handle_rng, callback_rng, ring_rng = streams
    tiers = tuple(name for name, _ in traffic.tier_mix)
    weights = [w for _, w in traffic.tier_mix]
    values = traffic.tier_value if traffic.tier_value is not None else DEFAULT_TIER_VALUE
    arrival: list[float] = []
    t = gap(arrivals_rng, traffic.rate)
    while t < traffic.seconds:
        arrival.append(t)
        t += gap(arrivals_rng, traffic.rate)
    n = len(arrival)
    tier = tier_rng.choices(range(len(tiers)), weights=weights, k=n)
    patiences = [patience(patience_rng, traffic.patience) for _ in range(n)]
    if traffic.handle_cv is None:
        handle = [handle_rng.expovariate(1.0 / traffic.aht) for _ in range(n)]
    else:
        handle = [lognormal(handle_rng, traffic.aht, traffic.handle_cv) for _ in range(n)]
    return Workload(
        tiers=tiers,
        arrival=arrival,
        tier=tier,
        patience=patiences,
        handle=handle,
        value=[values.get(tiers[k], 0.0) for k in tier],
        callback_draw=uniforms(callback_rng, n),
        ring_draw=uniforms(ring_rng, n),
    )


def uniforms(rng: random.Random, n: int) -> list[float]:
    """``n`` draws in (0, 1]: never 0, so a share of 0 is never reached and a log is finite."""
    return [1.0 - rng.random() for _ in range(n)]
