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
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from callcenter.queue.policy import PolicyName, QueuePolicy, make_policy
from callcenter.simulation.confidence import Estimate, estimate
from callcenter.simulation.des import Callbacks, Outcome, serve
from callcenter.simulation.figures import TierFigures, tier_figures
from callcenter.simulation.workload import Workload

#: The figures of ``TierFigures`` that are estimated across runs.
METRICS: tuple[str, ...] = tuple(f.name for f in fields(TierFigures) if f.name != "tier")

#: The figures also given as a difference from the first policy, run by run.
PAIRED: tuple[str, ...] = ("asa", "service_level", "abandon_rate", "value_abandoned")

#: The figures given as the difference callbacks make to the same policy, run by run.
CALLBACK_EFFECT: tuple[str, ...] = (
    "service_level",
    "abandon_rate",
    "lost_rate",
    "asa",
    "value_abandoned",
)


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
    # With --compare-callbacks: these figures minus the same policy's without
    # callbacks, by CALLBACK_EFFECT name, run by run on the same calls; else empty.
    versus_without_callbacks: dict[str, Estimate | None] = field(default_factory=dict)


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
    # The callback model the reports ran with (None: no callbacks), and with
    # --compare-callbacks the same policies on the same calls without them.
    callbacks: dict[str, Any] | None = None
    without_callbacks: list[PolicyReport] | None = None

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def callbacks_json(cb: Callbacks) -> dict[str, Any]:
    """The callback model as the JSON and the title state it."""
    return {
        "after_seconds": cb.rule.after_seconds,
        "tiers": sorted(cb.rule.tiers) if cb.rule.tiers is not None else None,
        "take": cb.take,
        "answer": cb.answer,
        "attempts": cb.attempts,
        "retry_seconds": cb.retry_seconds,
        "ring_seconds": cb.ring_seconds,
        "pickup_seconds": cb.pickup_seconds,
    }


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
    callbacks: Callbacks | None = None,
    compare_callbacks: bool = False,
) -> tuple[Comparison, list[list[Outcome]]]:
    """Each policy on each workload; the figures with intervals, and the outcomes by run.

    With ``callbacks`` the policies run with them; with ``compare_callbacks``
    also without, on the same calls, and each row carries the difference.
    """
    if not workloads:
        raise WhatIfError("no calls to simulate")
    outcomes = [[serve(w, p, agents, callbacks) for p in chosen] for w in workloads]
    figures_by = _figures(workloads, outcomes, target)
    reports = _reports(chosen, outcomes, figures_by)
    without: list[PolicyReport] | None = None
    if callbacks is not None and compare_callbacks:
        plain = [[serve(w, p, agents) for p in chosen] for w in workloads]
        plain_figures = _figures(workloads, plain, target)
        without = _reports(chosen, plain, plain_figures)
        for col, report in enumerate(reports):
            for r, row in enumerate(report.tiers):
                row.versus_without_callbacks.update(
                    _paired(figures_by[col], plain_figures[col], r, CALLBACK_EFFECT)
                )
    comparison = Comparison(
        len(workloads),
        agents,
        target,
        reports,
        callbacks=callbacks_json(callbacks) if callbacks is not None else None,
        without_callbacks=without,
    )
    return comparison, outcomes


def _figures(
    workloads: Sequence[Workload], outcomes: list[list[Outcome]], target: float
) -> list[list[list[TierFigures]]]:
    """By policy, by run: the tier rows."""
    columns = len(outcomes[0]) if outcomes else 0
    return [
        [tier_figures(w, runs[col], target) for w, runs in zip(workloads, outcomes, strict=True)]
        for col in range(columns)
    ]


def _paired(
    runs: list[list[TierFigures]], base: list[list[TierFigures]], r: int, metrics: Sequence[str]
) -> dict[str, Estimate | None]:
    """Row ``r``'s ``metrics`` minus the base's, run by run, as estimates."""
    out: dict[str, Estimate | None] = {}
    for metric in metrics:
        diffs = [
            float(a) - float(b)
            for run, other in zip(runs, base, strict=True)
            if (a := getattr(run[r], metric)) is not None
            and (b := getattr(other[r], metric)) is not None
        ]
        out[metric] = estimate(diffs) if diffs else None
    return out


def _reports(
    chosen: Sequence[QueuePolicy],
    outcomes: list[list[Outcome]],
    figures_by: list[list[list[TierFigures]]],
) -> list[PolicyReport]:
    reports: list[PolicyReport] = []
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
            versus = _paired(per_run, figures_by[0], r, PAIRED) if col > 0 else {}
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
    return reports
