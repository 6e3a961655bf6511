"""Which numbers a callback may ring: a real number, never a premium-rate one.

The number comes from the caller (the calling number, or digits typed at the
prompt), so it is untrusted: ringing a premium-rate number on the caller's
word would let anyone make the contact center pay for calls to a number they
own. ``phonenumbers`` types most such ranges; the configured prefixes
(``CALLCENTER_CALLBACK_REFUSED_PREFIXES``) cover what it does not know.
"""

from __future__ import annotations

from collections.abc import Iterable

import phonenumbers

from callcenter.customers.phones import normalize
from callcenter.errors import Unprocessable

#: Number types a callback never rings.
_REFUSED_TYPES = {
    phonenumbers.PhoneNumberType.PREMIUM_RATE: "a premium-rate number",
    phonenumbers.PhoneNumberType.SHARED_COST: "a shared-cost number",
}


def callback_number(
    raw: str | None, *, region: str, refused_prefixes: Iterable[str], field: str = "number"
) -> str:
    """``raw`` in E.164 if a callback may ring it, else a 422 naming ``field`` that says why."""
    number = normalize(raw, region)
    if number is None:
        shown = "nothing" if raw is None or not raw.strip() else repr(raw)
        raise Unprocessable(
            f"{shown} is no number a callback can ring (default region {region})", field=field
        )
    kind = _REFUSED_TYPES.get(phonenumbers.number_type(phonenumbers.parse(number)))
    if kind is not None:
        raise Unprocessable(f"{number} is {kind}: callbacks never ring those", field=field)
    for prefix in refused_prefixes:
        if number.startswith(prefix):
            raise Unprocessable(
                f"{number} starts with {prefix}, a range callbacks never ring "
                "(CALLCENTER_CALLBACK_REFUSED_PREFIXES)",
                field=field,
            )
    return number
