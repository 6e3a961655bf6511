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


# -- taking an offered callback ------------------------------------------------------

#: What a caller offered a callback presses to take it: a lone ``1``, ended like a
#: customer number (``#`` or the pause). Any other number, ``12`` or ``1212…``
#: included, is a customer number as before; so is ``1`` when no offer stands.
CALLBACK_KEY = "1"


@dataclass(frozen=True)
class Choice:
    """The number a caller chose to be rung back at; None: the number they call from."""

    number: str | None


@dataclass
class CallbackChoice:
    """After a caller took the callback: which number to ring them at (pure).

    ``#`` alone, or no key for ``timeout`` seconds, confirms the calling
    number; digits then ``#`` (or then the pause) are another number; ``*``
    throws the typed digits away. The window restarts at every key and when
    the caller's prompt ends (``restart``), so a long prompt never eats it.
    """

    timeout: float
    since: float
    max_digits: int = 32
    digits: str = ""

    def restart(self, now: float) -> None:
        self.since = now

    def press(self, key: str, now: float) -> Choice | None:
        """Take one key; the choice when this key made it."""
        self.since = now
        if key == FINISH:
            return Choice(self.digits or None)
        if key == CLEAR:
            self.digits = ""
        elif key in DIGITS:
            self.digits += key
            if len(self.digits) >= self.max_digits:
                return Choice(self.digits)
        return None

    @property
    def deadline(self) -> float:
        return self.since + self.timeout

    def expire(self, now: float) -> Choice | None:
        """The choice, if the window is over at ``now``; otherwise None."""
        if now < self.deadline:
            return None
        return Choice(self.digits or None)
