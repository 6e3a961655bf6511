"""Seeded draws for simulated traffic: arrivals, patience, handle times, answers.

Pure functions of a ``random.Random``, so one seed replays a run and every
user of simulated traffic (the demo, the whole-path benchmark, the what-if
simulator) draws from the same shapes:

* arrivals are a Poisson stream: exponential gaps at the configured rate;
* a caller's patience is exponential, the usual first model of abandonment
  (a caller who has waited a while is no more likely to stay than a new one);
* talk and wrap-up times are lognormal, right-skewed as real handle times
  are: most calls short, a few long.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from typing import Any


def gap(rng: random.Random, rate: float) -> float:
    """Seconds until the next arrival of a Poisson stream of ``rate`` per second."""
    return rng.expovariate(rate)


def patience(rng: random.Random, mean: float) -> float:
    """Seconds a caller waits before hanging up, exponential with ``mean``
    (an infinite mean: a caller who never hangs up, as a benchmark wants)."""
    return math.inf if math.isinf(mean) else rng.expovariate(1.0 / mean)


def lognormal(rng: random.Random, mean: float, cv: float) -> float:
    """A lognormal draw with the given mean and coefficient of variation.

    Parametrised by mean and spread rather than the underlying normal's
    ``mu``/``sigma``, because a handle time is thought of as "12 s on
    average, give or take half of it".
    """
    if mean <= 0:
        return 0.0  # no time at all: a benchmark's agent that ends at once
    sigma2 = math.log(1.0 + cv * cv)
    return rng.lognormvariate(math.log(mean) - sigma2 / 2.0, math.sqrt(sigma2))


def chance(rng: random.Random, p: float) -> bool:
    return rng.random() < p


def pick_weighted(rng: random.Random, weights: Sequence[tuple[str, float]]) -> str:
    """One name of ``weights`` (name, weight), in proportion to its weight."""
    names = [name for name, _ in weights]
    return rng.choices(names, weights=[w for _, w in weights])[0]


def answer_for(rng: random.Random, question: dict[str, Any]) -> Any:
    """A plausible answer to a panel ``question`` (its JSON), or ``None`` to skip.

    Answers are spread evenly over what the question accepts, so conditions
    on earlier answers hold for some callers and follow-up questions appear.
    """
    kind = question.get("kind")
    if kind == "yes_no":
        return rng.choice(("yes", "no"))
    if kind == "choice":
        choices = question.get("choices") or []
        return rng.choice(choices) if choices else None
    if kind == "number":
        low = question.get("min_value")
        high = question.get("max_value")
        lo = math.ceil(low) if low is not None else 0
        hi = math.floor(high) if high is not None else max(lo, 0) + 10
        return rng.randint(lo, max(lo, hi))
    if kind == "text":
        return rng.choice(("as discussed", "see notes", "will call back"))
    return None
