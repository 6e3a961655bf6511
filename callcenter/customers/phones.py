"""Phone numbers as callers and CRMs write them, turned into one E.164 form.

Callers' numbers arrive as ``(212) 555-0100``, ``+1 212-555-0100``,
``001 212 555 0100`` or ``12125550100``; a CRM has its own habits. Matching
works only if all of them become the same key, so everything stored and
looked up goes through ``normalize``. Parsing is the ``phonenumbers``
library's job; this module adds only the two rules it does not have: the
``00`` international prefix used outside North America, and the words that
switches send for a withheld number.
"""

from __future__ import annotations

from functools import lru_cache

import phonenumbers

from callcenter.errors import InvalidPhoneNumber

#: What switches put in the caller field when there is no usable number.
WITHHELD_WORDS = frozenset(
    {"anonymous", "restricted", "unknown", "private", "unavailable", "withheld", "blocked"}
)


@lru_cache(maxsize=4096)
def normalize(raw: str | None, region: str) -> str | None:
    """Return the E.164 form of ``raw``, or ``None`` when it is no usable number.

    ``None`` covers withheld callers, empty strings, too-short and invalid
    numbers: such a caller must never match anyone, so the caller of this
    function treats it as "no phone".

    Remembered for the last few thousand numbers: the library's parse is 30-40 µs
    of Python, an incoming call's number is read twice (the gateway's first
    look-up, then the identification), and callers ring again. The answer
    depends on nothing but the two arguments.
    """
    if raw is None:
        return None
    text = raw.strip()
    if not text or text.lower().strip("+ ") in WITHHELD_WORDS:
        return None
    candidates = [text]
    digits = "" if text.startswith("+") else "".join(ch for ch in text if ch.isdigit())
    if digits.startswith("00"):
        # "00" is the international prefix in most of the world; the library
        # only knows the dialling prefix of the default region ("011" in the US).
        # In North America no number starts with 0, so the national reading of
        # "00…" can never be valid there: skip that parse (a tenth of a CRM's numbers).
        international = "+" + digits[2:]
        candidates = [international] if _north_american(region) else [text, international]
    for candidate in candidates:
        try:
            number = phonenumbers.parse(candidate, region)
        except phonenumbers.NumberParseException:
            continue
        if phonenumbers.is_valid_number(number):
            return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    return None


@lru_cache(maxsize=64)
def _north_american(region: str) -> bool:
    return phonenumbers.country_code_for_region(region) == 1


def require(raw: str, region: str, *, field: str = "phone") -> str:
    """Like ``normalize`` but raise a clear 422 for input that must be a real number."""
    number = normalize(raw, region)
    if number is None:
        raise InvalidPhoneNumber(
            f"{raw!r} is not a valid phone number (default region {region})", field=field
        )
    return number
