"""Policies side by side on the same calls: the what-if comparison.

Every policy serves the very same workloads (common random numbers), so a
difference between two columns is the policy's doing, not the dice's; with
several runs each figure carries a 95 % interval across them. Every run also
checks the policy's promise: the largest overtaking seen against
``overtaking_bound``.

Also the checks of what a user asks for (policy names, credits), which raise
``WhatIfError`` with the option's name so the command line can print one line.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

from callcenter.queue.policy import PolicyName, QueuePolicy, make_policy
from callcenter.simulation.confidence import Estimate, estimate
from callcenter.simulation.des import Outcome, serve
from callcenter.simulation.figures import TierFigures, tier_figures
from callcenter.simulation.workload import Workload

#: The figures of ``TierFigures`` that are estimated across runs.
METRICS: tuple[str, ...] = tuple(f.name for f in fields(TierFigures) if f.name != "tier")

#: The figures also given as a difference from the first policy, run by run.
PAIRED: tuple[str, ...] = ("asa", "service_level", "abandon_rate", "value_abandoned")


class WhatIfError(ValueError):
    """A what-if request that cannot be run; the message names the option."""


@dataclass(frozen=True)
class TierEstimate:
    """A tier's figures under one policy, and how they differ from the first policy's.

    The difference is taken run by run on the same calls before averaging
    (a paired comparison), so its interval holds only the policy's effect:
    much narrower than the two figures' own intervals, which also hold how
    busy each run's day happened to be.
    """

    tier: str
    figures: dict[str, Estimate | None]  # by METRICS name; None where no run had it
    versus_first: dict[str, Estimate | None]  # by PAIRED name; empty for the first policy


@dataclass(frozen=True)
class PolicyReport:
    policy: str
    credits: dict[str, float]
    overtaking_bound: float
    max_overtaking: float  # the largest over all runs
    bound_held: bool
    tiers: list[TierEstimate]

    def figure(self, tier: str, metric: str) -> Estimate | None:
        for row in self.tiers:
            if row.tier == tier:
                return row.figures[metric]
        raise KeyError(tier)


@dataclass(frozen=True)
class Comparison:
    runs: int
    agents: int
    target: float
    reports: list[PolicyReport]  # the first is what ``versus_first`` compares with

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def policies(
    names: Sequence[str], tiers: Sequence[str], credits: Mapping[str, float] | None
) -> list[QueuePolicy]:
    """The named policies (``all``: fifo, strict, value) for ``tiers``, most valuable first."""
    wanted: list[PolicyName] = []
    for name in names or ["all"]:
        if name == "all":
            wanted += [PolicyName.fifo, PolicyName.strict, PolicyName.value]
            continue
        try:
            wanted.append(PolicyName(name))
        except ValueError:
            raise WhatIfError(
                f"--policy: unknown policy {name!r}; use fifo, strict, value or all"
            ) from None
    if credits is not None:
        check_credits(credits, tiers)
    unique = list(dict.fromkeys(wanted))
    return [make_policy(p, credits or {}, tiers) for p in unique]


def check_credits(credits: Mapping[str, float], tiers: Sequence[str]) -> None:
    """Credits must name known tiers, be non-negative and never favour a less valuable tier.

    A less valuable tier with more credit than a more valuable one would
    invert the order the tiers exist to express.
    """
    unknown = [t for t in credits if t not in tiers]
    if unknown:
        raise WhatIfError(f"--credits: unknown tier {unknown[0]!r}; tiers are {', '.join(tiers)}")
    for tier, seconds in credits.items():
        if seconds < 0 or not math.isfinite(seconds):
            raise WhatIfError(f"--credits: {tier}={seconds:g} must be a finite number >= 0")
    given = [(t, credits[t]) for t in tiers if t in credits]
    for (better, high), (worse, low) in itertools.pairwise(given):
        if low > high:
            raise WhatIfError(
                f"--credits: {worse} ({low:g} s) would get more credit than {better} "
                f"({high:g} s); credits must not grow as value falls"
            )


def parse_credits(text: str) -> dict[str, float]:
    """``platinum=120,gold=60`` as a mapping; a malformed pair raises ``WhatIfError``."""
    out: dict[str, float] = {}
    for part in text.split(","):
        name, sep, seconds = part.partition("=")
        try:
            if not sep or not name.strip():
                raise ValueError
            out[name.strip()] = float(seconds)
        except ValueError:
            raise WhatIfError(
                f"--credits: {part.strip()!r} is not TIER=SECONDS (e.g. platinum=120,gold=60)"
            ) from None
    return out


def compare(
    workloads: Sequence[Workload],
    chosen: Sequence[QueuePolicy],
    agents: int,
    target: float,
) -> tuple[Comparison, list[list[Outcome]]]:
    """Each policy on each workload; the figures with intervals, and the outcomes by run."""
    if not workloads:
        raise WhatIfError("no calls to simulate")
    outcomes = [[serve(w, p, agents) for p in chosen] for w in workloads]
    reports: list[PolicyReport] = []
    figures_by = [
        [tier_figures(w, runs[col], target) for w, runs in zip(workloads, outcomes, strict=True)]
        for col in range(len(chosen))
    ]
    for col, policy in enumerate(chosen):
        per_run = figures_by[col]
        worst = max(runs[col].max_overtaking for runs in outcomes)
        rows: list[TierEstimate] = []
        for r, first in enumerate(per_run[0]):
            figures: dict[str, Estimate | None] = {}
            for metric in METRICS:
                samples = [
                    float(v) for run in per_run if (v := getattr(run[r], metric)) is not None
                ]
                figures[metric] = estimate(samples) if samples else None
            versus: dict[str, Estimate | None] = {}
            if col > 0:
                for metric in PAIRED:
                    diffs = [
                        float(a) - float(b)
                        for run, base in zip(per_run, figures_by[0], strict=True)
                        if (a := getattr(run[r], metric)) is not None
                        and (b := getattr(base[r], metric)) is not None
                    ]
                    versus[metric] = estimate(diffs) if diffs else None
            rows.append(TierEstimate(first.tier, figures, versus))
        reports.append(
            PolicyReport(
                policy=policy.name.value,
                credits=dict(policy.credits),
                overtaking_bound=policy.overtaking_bound,
                max_overtaking=worst,
                bound_held=worst <= policy.overtaking_bound,
                tiers=rows,
            )
        )
    return Comparison(len(workloads), agents, target, reports), outcomes
