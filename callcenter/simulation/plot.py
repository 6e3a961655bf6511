"""The what-if picture: how long each tier waits under each policy, and the day's service level.

Top row, one panel per policy: for each tier, the share of its calls answered
within *t* seconds (the empirical distribution of the answered waits; a
caller who hung up never reaches the top, so a curve that flattens below
100 % is the tier's abandonment). The target is a dashed line, so "80 % in
20 s" is read where a curve crosses it. Bottom: each policy's service level
per interval of arrivals, so a manager sees *when* in the day a policy
gives way, not only that it does.

Matplotlib with the Agg backend: a file, no display, works on a server.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from callcenter.simulation.des import Outcome
from callcenter.simulation.figures import service_level_over_time
from callcenter.simulation.workload import Workload

#: The picture's size in pixels: a README-wide figure.
WIDTH, HEIGHT, DPI = 1400, 900, 100


def plot(
    path: Path,
    workload: Workload,
    outcomes: Sequence[Outcome],
    target: float,
    title: str,
) -> None:
    """Write the PNG of ``outcomes`` (one per policy, all on ``workload``) to ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    fig = plt.figure(figsize=(WIDTH / DPI, HEIGHT / DPI), dpi=DPI)
    grid = fig.add_gridspec(2, len(outcomes), height_ratios=(3, 2))
    horizon = _wait_axis(workload, outcomes)
    floor = _share_floor(workload, outcomes)
    for col, outcome in enumerate(outcomes):
        ax = fig.add_subplot(grid[0, col])
        for k, tier in enumerate(workload.tiers):
            calls = [i for i, t in enumerate(workload.tier) if t == k]
            if not calls:
                continue
            waits = sorted(
                outcome.answered_at[i] - workload.arrival[i]
                for i in calls
                if not math.isnan(outcome.answered_at[i])
            )
            shares = [(n + 1) / len(calls) for n in range(len(waits))]
            ax.step([0.0, *waits, horizon], [0.0, *shares, shares[-1] if shares else 0.0],
                    where="post", label=tier)  # fmt: skip
        ax.axvline(target, color="grey", linestyle="--", linewidth=1)
        ax.set_xlim(0, horizon)
        ax.set_ylim(floor, 1.01)
        ax.set_title(f"{outcome.policy.name.value}: answered within t, by tier")
        ax.set_xlabel("wait t (s)")
        if col == 0:
            ax.set_ylabel("share of the tier's calls")
        ax.legend(loc="lower right", fontsize="small")
    bucket = _bucket(workload)
    ax = fig.add_subplot(grid[1, :])
    for outcome in outcomes:
        points = service_level_over_time(workload, outcome, target, bucket)
        ax.plot(
            [start / 3600.0 for start, _ in points],
            [level if level is not None else math.nan for _, level in points],
            marker=".",
            label=outcome.policy.name.value,
        )
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("hour of arrival")
    ax.set_ylabel(f"answered within {target:g} s")
    ax.set_title(f"service level per {bucket / 60:g} minutes of arrivals")
    ax.legend(loc="lower left", fontsize="small")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)


def _wait_axis(workload: Workload, outcomes: Sequence[Outcome]) -> float:
    """Seconds shown on the wait axis: the 99th percentile of answered waits, at least 60."""
    waits = sorted(
        o.answered_at[i] - workload.arrival[i]
        for o in outcomes
        for i in range(len(workload))
        if not math.isnan(o.answered_at[i])
    )
    return max(60.0, waits[int(0.99 * (len(waits) - 1))] if waits else 0.0)


def _share_floor(workload: Workload, outcomes: Sequence[Outcome]) -> float:
    """Where the share axis starts: below the least share answered at once, in tenths.

    The curves live above the share of callers answered at once, so the axis
    starts there rather than at 0 and the differences between tiers show.
    """
    lowest = 1.0
    for o in outcomes:
        for k in range(len(workload.tiers)):
            calls = [i for i, t in enumerate(workload.tier) if t == k]
            if calls:
                at_once = sum(1 for i in calls if o.answered_at[i] == workload.arrival[i])
                lowest = min(lowest, at_once / len(calls))
    return max(0.0, math.floor(lowest * 10) / 10 - 0.1)


def _bucket(workload: Workload) -> float:
    """About 24 points over the run, in whole minutes of at least 5."""
    span = workload.arrival[-1] if len(workload) else 3600.0
    return max(5, math.ceil(span / 24 / 60 / 5) * 5) * 60.0
