"""The day's calls folded into time buckets, so a dashboard update reads seconds, not a day.

The dashboard shows, per queue and tier, figures over the rolling window and
since local midnight: calls offered, answered (within the service level or
not), their waits, abandoned calls and their value, learning answers. Counting
them afresh on every update would read every call of the day, and at 200
calls/s that grows to millions of rows by the afternoon. Instead, as in
``callcenter.queue.rates``, the day is cut into buckets of ``bucket_seconds``
by the database's own timestamps; a bucket that has been over for
``settle_seconds`` cannot change any more (the statements that stamp a call
commit within milliseconds), so it is read once and kept, and each update
reads only the rows after the last settled bucket. The first reading after a
start reads the day once (through the indexes on those timestamps).

The totals over a range of buckets are cached by the range's first bucket,
and a cached total only adds the buckets settled since: the "today" figures
cost the same at 23:00 as at 00:10.

Pure bookkeeping, no I/O: ``since`` says from where to read, ``fold`` takes
the rows read, ``totals`` answers.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields

#: What a row is about: (queue, tier, agent id); agent rows have queue and tier "".
Key = tuple[str, str, int]


@dataclass
class Agg:
    """Sums of one key over some buckets (maxima where a sum means nothing)."""

    offered: int = 0
    answered: int = 0
    answered_in_sl: int = 0
    wait_sum: float = 0.0
    wait_max: float = 0.0
    abandoned: int = 0
    abandoned_value: float = 0.0
    #: Calls that left the queue unanswered (abandoned, or ended while waiting).
    left: int = 0
    learned: int = 0
    skipped: int = 0
    #: Answered by this agent (agent keys only).
    handled: int = 0

    def add(self, other: Agg) -> None:
        for f in fields(self):
            if f.name == "wait_max":
                self.wait_max = max(self.wait_max, other.wait_max)
            else:
                setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))

    def copy(self) -> Agg:
        out = Agg()
        out.add(self)
        return out


@dataclass
class Flow:
    """One queue's calls in and out over one bucket, all tiers together (the chart's)."""

    offered: int = 0
    answered: int = 0
    answered_in_sl: int = 0
    left: int = 0


Buckets = dict[int, dict[Key, Agg]]


def _merge(into: dict[Key, Agg], buckets: Iterable[Mapping[Key, Agg]]) -> None:
    for bucket in buckets:
        for key, agg in bucket.items():
            found = into.get(key)
            if found is None:
                into[key] = agg.copy()
            else:
                found.add(agg)


@dataclass
class DayBuckets:
    bucket_seconds: float = 10.0
    settle_seconds: float = 10.0
    _final: Buckets = field(default_factory=dict)
    #: Every bucket that ends at or before this instant (database clock) is in ``_final``.
    _final_until: float | None = None
    _fresh: Buckets = field(default_factory=dict)
    _clock: float | None = None
    #: Totals of final buckets from a first index up to a last one: {first: (last, totals)}.
    _cache: dict[int, tuple[int, dict[Key, Agg]]] = field(default_factory=dict)

    def index(self, t: float) -> int:
        return math.floor(t / self.bucket_seconds)

    def since(self, oldest: float) -> float:
        """The instant to read from (database clock), when the figures reach back to ``oldest``.

        The first reading goes back to ``oldest``; later ones start where the
        settled buckets end.
        """
        start = self.index(oldest) * self.bucket_seconds
        return start if self._final_until is None else max(start, self._final_until)

    def fold(self, now: float, since: float, rows: Iterable[tuple[int, Key, Agg]]) -> None:
        """Take the rows read from ``since`` at ``now`` (both the database's clock)."""
        if self._clock is not None and now < self._clock:
            return  # an older reading that finished after a newer one
        self._clock = now
        settled = self.index(now - self.settle_seconds) * self.bucket_seconds
        self._fresh = {}
        for b, key, agg in rows:
            target = self._final if (b + 1) * self.bucket_seconds <= settled else self._fresh
            target.setdefault(b, {})[key] = agg
        if self._final_until is None or since <= self._final_until:
            self._final_until = max(settled, self._final_until or settled)

    def forget_before(self, oldest: float) -> None:
        """Drop final buckets that end before ``oldest`` (yesterday, once nobody shows it)."""
        first = self.index(oldest)
        for b in [b for b in self._final if b < first]:
            del self._final[b]
        for b in [b for b in self._cache if b < first]:
            del self._cache[b]

    def flows(self, first: int) -> dict[int, dict[str, Flow]]:
        """Per bucket from index ``first`` on (settled or not), per queue: what came in
        and went out of it. For the chart; agent keys are left out."""
        out: dict[int, dict[str, Flow]] = {}
        for source in (self._final, self._fresh):
            for b, bucket in source.items():
                if b < first:
                    continue
                queues = out.setdefault(b, {})
                for (queue, _, agent), agg in bucket.items():
                    if agent:
                        continue
                    f = queues.get(queue)
                    if f is None:
                        f = queues[queue] = Flow()
                    f.offered += agg.offered
                    f.answered += agg.answered
                    f.answered_in_sl += agg.answered_in_sl
                    f.left += agg.left
        return out

    def totals(self, start: float, *, remember: bool = False) -> dict[Key, Agg]:
        """Every key's sums over the buckets from the one holding ``start`` on.

        ``remember``: keep the settled part's sum for the next reading from the same
        start (the day's, which only grows). A rolling window starts one bucket later
        every 10 s: remembered, its sums piled up all day, one per bucket, never read.
        """
        first = self.index(start)
        final_keys = [b for b in self._final if b >= first]
        last = max(final_keys, default=first - 1)
        cached = self._cache.get(first) if remember else None
        if cached is None or cached[0] > last:
            base: dict[Key, Agg] = {}
            _merge(base, (self._final[b] for b in sorted(final_keys)))
        else:
            prev_last, prev = cached
            base = prev
            _merge(base, (self._final[b] for b in final_keys if b > prev_last))
        if remember:
            self._cache[first] = (last, base)
        out: dict[Key, Agg] = {k: v.copy() for k, v in base.items()}
        _merge(out, (bucket for b, bucket in self._fresh.items() if b >= first))
        return out
