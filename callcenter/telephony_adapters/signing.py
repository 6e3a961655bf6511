"""HMAC-SHA256 webhook signatures with a timestamp, as our generic adapter uses them.

The scheme is the one well-known webhook senders use: the header
``Callcenter-Signature: t=<unix seconds>,v1=<hex>`` where the hex is
``HMAC-SHA256(secret, f"{t}.{raw body}")``. Several ``v1`` entries may be
present (a sender rotating its secret signs with both); one match is
enough. Entries of other schemes are ignored. A timestamp further than the
tolerance from now, in either direction, is refused, so a captured request
cannot be replayed later. Pure functions: the clock is passed in.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence

from callcenter.errors import InvalidSignature

HEADER = "Callcenter-Signature"
SCHEME = "v1"
#: Unix seconds have 10 digits until the year 2286; more is not a timestamp.
MAX_TIMESTAMP_DIGITS = 12


def signature(secret: bytes, timestamp: int, body: bytes) -> str:
    """The hex HMAC-SHA256 of ``f"{timestamp}.{body}"``."""
    return hmac.new(secret, str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()


def header_value(secrets: Sequence[bytes], timestamp: int, body: bytes) -> str:
    """The header a sender puts on ``body``: one ``v1`` per secret."""
    parts = [f"t={timestamp}"] + [f"{SCHEME}={signature(s, timestamp, body)}" for s in secrets]
    return ",".join(parts)


def verify(
    header: str | None,
    body: bytes,
    secret: bytes,
    *,
    now: float,
    tolerance: float,
) -> int:
    """Check ``header`` against ``body``: the signed timestamp, or ``InvalidSignature``."""
    if not header:
        raise InvalidSignature(f"the {HEADER} header is missing")
    timestamp: int | None = None
    candidates: list[str] = []
    for item in header.split(","):
        key, sep, value = item.strip().partition("=")
        if not sep:
            continue
        if key == "t":
            # ASCII digits of a plausible length only: ``int()`` also takes signs,
            # underscores and other scripts' digits, and a huge value overflows
            # the float clock below (a 500 instead of a 403).
            value = value.strip()
            if not (value.isascii() and value.isdigit() and len(value) <= MAX_TIMESTAMP_DIGITS):
                raise InvalidSignature(
                    f"the {HEADER} timestamp {value[:20]!r} is not an integer number of seconds"
                )
            timestamp = int(value)
        elif key == SCHEME:
            candidates.append(value.strip())
    if timestamp is None:
        raise InvalidSignature(f"the {HEADER} header has no timestamp (t=)")
    if not candidates:
        raise InvalidSignature(f"the {HEADER} header has no {SCHEME} signature")
    if abs(now - timestamp) > tolerance:
        raise InvalidSignature(
            f"the {HEADER} timestamp is {abs(now - timestamp):.0f} s away from now; "
            f"at most {tolerance:.0f} s are accepted"
        )
    expected = signature(secret, timestamp, body).encode()
    # Every candidate is compared, in constant time each, whatever the first gave.
    matched = False
    for candidate in candidates:
        matched |= hmac.compare_digest(expected, candidate.encode("utf-8", "replace"))
    if not matched:
        raise InvalidSignature(f"no {SCHEME} signature in {HEADER} matches the body")
    return timestamp
