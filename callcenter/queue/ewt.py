"""Estimated wait time (EWT), recomputed from the live state whenever it is asked for.

The peers estimate from past average waits, which change only when someone is
answered. We estimate from what serves the queue *now*: the service rate is
the larger of the observed answer rate (answers in a recent window) and the
capacity of the staffed agents (agents / mean handling time). The observed
rate alone under-reads capacity when the queue was empty (answers then follow
arrivals, not capacity); capacity alone over-reads it when agents are away.

A call with ``ahead`` calls in front of it and ``free`` agents available waits
for ``ahead + 1 - free`` services at that rate.

With nobody staffed (no agent of the queue signed in, every one offline) the
wait is unknown, not a number: answers earlier in the window say how fast the
agents who left served, not when anyone will come back.
"""

from __future__ import annotations

from dataclasses import dataclass

#: Fewer answers than this in the window are too few to trust as a rate.
MIN_ANSWERS = 3


@dataclass(frozen=True)
class QueueRates:
    answered: int
    window_seconds: float
    mean_handle_seconds: float | None
    staffed: int
    available: int

    @property
    def service_rate(self) -> float | None:
        """Calls served per second, or None with no basis for an estimate."""
        observed = self.answered / self.window_seconds if self.answered >= MIN_ANSWERS else 0.0
        capacity = 0.0
        if self.staffed > 0 and self.mean_handle_seconds and self.mean_handle_seconds > 0:
            capacity = self.staffed / self.mean_handle_seconds
        rate = max(observed, capacity)
        return rate if rate > 0 else None


def estimated_wait(ahead: int, rates: QueueRates) -> float | None:
    """Seconds until a call with ``ahead`` calls in front of it is answered; None unknown."""
    return wait_for(ahead, rates.staffed, rates.available, rates.service_rate)


def wait_for(ahead: int, staffed: int, available: int, rate: float | None) -> float | None:
    """``estimated_wait`` from the rates' numbers (``rate``: None, or positive).

    The exact twin of the SQL function ``queue_estimated_wait`` (migration
    0023), which the enqueue statement runs to store the estimate told at
    enqueue with the calls ahead it counts itself; a test holds the two equal.
    """
    if staffed <= 0:
        return None
    services = ahead + 1 - available
    if services <= 0:
        return 0.0
    if rate is None:
        return None
    return services / rate
