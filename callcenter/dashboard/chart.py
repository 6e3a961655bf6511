"""The last hour's chart, derived from the day's buckets instead of sampled in memory.

Sampling the board every 10 s into a per-process list had three faults: the
chart started empty after every restart, two instances behind a load balancer
drew two different charts, and a fresh start showed nothing until a second
sample. The buckets (``buckets.py``) already hold, per 10 s of the day and per
queue, the calls that came in, were answered (and within the service level)
and left unanswered, read once from the database through the timestamp
indexes. From them, and from the number waiting now, every point of the hour
follows:

* **waiting** at the end of bucket *k* is the number waiting now minus the
  calls that arrived after *k* plus those that left after *k* (answered, or
  ended unanswered): counted back from the present, so it ends exactly at
  what the board shows;
* **service level** at the end of bucket *k* is answered-within ÷ answered
  over the window's buckets up to *k*, as the board's own window figure.

So the series depends only on the database: the same on every instance, and
back in full after a restart. What it cannot know: a call moved between
queues counts as having waited in its new queue since it arrived (its row
names the queue it is in now).

Pure: buckets in, points out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

from callcenter.dashboard.buckets import Flow
from callcenter.dashboard.models import ChartPoint

#: The chart covers this long.
CHART_SECONDS = 3600.0


def series(
    flows: Mapping[int, Mapping[str, Flow]],
    *,
    last: int,
    points: int,
    bucket_seconds: float,
    window_buckets: int,
    waiting_now: Mapping[str, int],
    now_index: int,
    queues: Sequence[str],
) -> list[ChartPoint]:
    """One point per bucket end, for the ``points`` buckets up to index ``last``.

    ``flows`` must hold every bucket from ``last - points - window_buckets + 2``
    to ``now_index`` that had any call (a missing bucket had none).
    """
    first = last - points + 1
    # Walk back from now: net arrivals after each bucket's end, per queue.
    after = {q: 0 for q in queues}
    waiting_at: dict[int, dict[str, int]] = {}
    for b in range(now_index, first - 1, -1):
        if b <= last:
            waiting_at[b] = {q: max(0, waiting_now.get(q, 0) - after[q]) for q in queues}
        for q, f in flows.get(b, {}).items():
            if q in after:
                after[q] += f.offered - f.answered - f.left
    # Walk forward: the window's answered and within-level, as a running sum.
    answered = {q: 0 for q in queues}
    within = {q: 0 for q in queues}
    out: list[ChartPoint] = []
    start = first - window_buckets + 1
    for b in range(start, last + 1):
        for q, f in flows.get(b, {}).items():
            if q in answered:
                answered[q] += f.answered
                within[q] += f.answered_in_sl
        gone = flows.get(b - window_buckets, {}) if b - window_buckets >= start else {}
        for q, f in gone.items():
            if q in answered:
                answered[q] -= f.answered
                within[q] -= f.answered_in_sl
        if b < first:
            continue
        out.append(
            ChartPoint(
                at=datetime.fromtimestamp((b + 1) * bucket_seconds, UTC),
                waiting=waiting_at[b],
                service_level={q: within[q] / answered[q] if answered[q] else None for q in queues},
            )
        )
    return out
