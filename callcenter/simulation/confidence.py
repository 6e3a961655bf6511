"""How sure a simulated figure is: confidence intervals from independent runs.

One run of a stochastic model is one draw; ``--runs N`` repeats it with N
seeds and quotes the mean with a 95 % Student-t interval, because a manager
deciding on a policy needs to know whether a difference of two seconds is
the policy or the dice. The same arithmetic over *batches* of one long run
(batch means) is what the Erlang C test uses to derive its tolerance.

Pure; the t quantiles are tabulated so the package needs no scipy.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

#: Two-sided 95 % Student-t quantiles t(0.975, df) for df = 1..30.
_T975 = (
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
    2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
    2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
)  # fmt: skip


def t975(df: int) -> float:
    """The 97.5 % quantile of Student's t with ``df`` degrees of freedom.

    Beyond the table the normal quantile with two Cornish-Fisher terms,
    within 0.001 of the true value for df > 30.
    """
    if df < 1:
        raise ValueError("df must be at least 1")
    if df <= len(_T975):
        return _T975[df - 1]
    z = 1.959964
    return z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df * df)


@dataclass(frozen=True)
class Estimate:
    """A mean and the half-width of its 95 % interval (``None`` from one sample)."""

    mean: float
    half_width: float | None


def estimate(samples: Sequence[float]) -> Estimate:
    """The mean of independent samples with its 95 % t interval."""
    if not samples:
        raise ValueError("no samples")
    mean = statistics.fmean(samples)
    if len(samples) < 2:
        return Estimate(mean, None)
    se = statistics.stdev(samples) / math.sqrt(len(samples))
    return Estimate(mean, t975(len(samples) - 1) * se)


def batch_means(values: Sequence[float], batches: int) -> list[float]:
    """The means of ``batches`` consecutive equal slices (the remainder dropped).

    Slices long against the queue's memory are nearly independent, so their
    spread measures the uncertainty of the whole run's mean, which the spread
    of single, correlated calls would understate.
    """
    size = len(values) // batches
    if size < 1:
        raise ValueError("fewer values than batches")
    return [statistics.fmean(values[b * size : (b + 1) * size]) for b in range(batches)]


def standard_error(samples: Sequence[float]) -> float:
    """Standard error of the mean of independent samples."""
    if len(samples) < 2:
        raise ValueError("need two samples")
    return statistics.stdev(samples) / math.sqrt(len(samples))
