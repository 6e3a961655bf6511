"""A queue's answers and talk time over the stats window, kept in time buckets.

EWT needs two live figures of a queue: how many calls were answered in the
window (15 minutes by default) and how long a call keeps an agent. Counting
them afresh reads every call of the window, and at 200 calls/s that is
180,000 rows a second, which grows with the traffic and showed as a routing
slowdown that got worse minute by minute. Instead the window is cut into
buckets of a few seconds by the database's own timestamps. A bucket that has
been over for ``settle_seconds`` cannot change any more (the statements that
write ``connected_at`` and ``ended_at`` commit within milliseconds), so it is
read once and kept; each reading fetches only the buckets after that point.

Pure bookkeeping: ``since`` says what to read, ``fold`` takes what was read,
``totals`` answers. Every instant is the database's: the service's own clock
is only used to tell how much time has passed since the last reading, so a
service whose clock is off still reads the right seconds. Readings may
overlap (several enqueues at once); one whose clock is older than a reading
already folded is dropped, so a bucket is never both kept and fresh. The
query is ``queue_rates`` (see ``CallDesk._rates``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Bucket:
    """Calls answered, and calls ended after an answer with their talk time, in one bucket."""

    answered: int = 0
    ended: int = 0
    talk_seconds: float = 0.0


@dataclass(frozen=True)
class WindowTotals:
    answered: int
    #: The seconds the buckets counted actually cover (at most the window).
    covered_seconds: float
    mean_talk_seconds: float | None


@dataclass
class RateWindow:
    window_seconds: float
    bucket_seconds: float = 5.0
    settle_seconds: float = 10.0
    #: Final buckets by index (start = index * bucket_seconds, epoch seconds).
    _final: dict[int, Bucket] = field(default_factory=dict)
    #: Every bucket that ends at or before this instant is in ``_final``.
    _final_until: float | None = None
    #: The latest reading of the buckets not final yet.
    _fresh: dict[int, Bucket] = field(default_factory=dict)
    #: The database clock of the latest reading folded.
    _clock: float | None = None
    #: The database clock minus the service's clock, at that reading.
    _offset: float = 0.0

    def __post_init__(self) -> None:
        # A short window (tests, tiny sites) gets buckets small enough to resolve it.
        self.bucket_seconds = min(self.bucket_seconds, self.window_seconds / 10)

    def _start(self, index: int) -> float:
        return index * self.bucket_seconds

    def _floor(self, t: float) -> float:
        return math.floor(t / self.bucket_seconds) * self.bucket_seconds

    def since(self, local_now: float) -> float:
        """The instant (database clock) from which to read, for a reading at the
        service's ``local_now``."""
        oldest = self._floor(local_now + self._offset - self.window_seconds)
        if self._final_until is None:
            return oldest
        return max(oldest, self._final_until)

    def fold(
        self,
        now: float,
        since: float,
        rows: list[tuple[int, Bucket]],
        *,
        local_now: float | None = None,
    ) -> None:
        """Take the buckets read from ``since`` at ``now`` (database clock);
        ``local_now`` is the service's clock when the reading was asked for."""
        if self._clock is not None and now < self._clock:
            return  # an older reading that finished after a newer one
        first = self._clock is None
        self._clock = now
        if local_now is not None:
            self._offset = now - local_now
        settled = self._floor(now - self.settle_seconds)
        oldest = self._floor(now - self.window_seconds)
        self._fresh = {}
        for index, bucket in rows:
            if self._start(index) + self.bucket_seconds <= settled:
                self._final[index] = bucket
            else:
                self._fresh[index] = bucket
        # Read from ``since`` on: everything up to ``settled`` is kept now. The
        # first reading went by the service's clock; unless it reached back to
        # the window's start by the database's, the next one reads it all again.
        if since <= settled and (not first or since <= oldest):
            self._final_until = settled
        for index in [i for i in self._final if self._start(i) < oldest]:
            del self._final[index]

    def totals(self, now: float) -> WindowTotals:
        oldest = self._floor(now - self.window_seconds)
        buckets = [
            b for i, b in (*self._final.items(), *self._fresh.items()) if self._start(i) >= oldest
        ]
        answered = sum(b.answered for b in buckets)
        ended = sum(b.ended for b in buckets)
        talk = sum(b.talk_seconds for b in buckets)
        return WindowTotals(
            answered=answered,
            covered_seconds=max(now - oldest, self.bucket_seconds),
            mean_talk_seconds=talk / ended if ended else None,
        )
