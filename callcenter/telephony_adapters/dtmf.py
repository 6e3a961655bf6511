"""Collecting a typed customer number from single DTMF keys (pure).

ARI reports each key on its own (``ChannelDtmfReceived``), so the number is
put together here: digits ``0``–``9`` accumulate; ``#`` ends the number;
``*`` throws away what was typed so far (a caller who mistyped starts
again); ``A``–``D`` are ignored. A number also ends when no key came for
``timeout`` seconds after the last digit, or when it reaches ``max_digits``.
An ended number that is empty (``#`` alone) is no number at all.

The collector holds no clock and no timer: the caller passes the time in and
arms a timer for ``deadline``, so every rule here is a plain function of the
keys and the times they came.
"""

from __future__ import annotations

from dataclasses import dataclass

DIGITS = frozenset("0123456789")
FINISH = "#"
CLEAR = "*"


@dataclass
class DigitCollector:
    timeout: float
    max_digits: int = 32
    digits: str = ""
    last_at: float | None = None

    def press(self, key: str, now: float) -> str | None:
        """Take one key; returns the number when this key ended it."""
        if key == FINISH:
            return self._finish()
        if key == CLEAR:
            self.digits, self.last_at = "", None
            return None
        if key not in DIGITS:
            return None
        self.digits += key
        self.last_at = now
        if len(self.digits) >= self.max_digits:
            return self._finish()
        return None

    @property
    def deadline(self) -> float | None:
        """When the number ends by itself if no key comes; None with nothing typed."""
        if self.last_at is None:
            return None
        return self.last_at + self.timeout

    def expire(self, now: float) -> str | None:
        """The number, if its time is up at ``now``; otherwise None and nothing changes."""
        deadline = self.deadline
        if deadline is None or now < deadline:
            return None
        return self._finish()

    def _finish(self) -> str | None:
        number, self.digits, self.last_at = self.digits, "", None
        return number or None
