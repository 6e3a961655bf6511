"""One rule at the edge for text PostgreSQL cannot store.

A ``text`` column refuses the NUL character, and UTF-8 has no lone
surrogates (JSON's ``"\\ud800"`` decodes to one). Either would reach the
database and fail there as a 500, after part of a request's work was done;
checked at the edge, such input is a 422 naming the field, REST and agent
socket alike, and nothing is stored.
"""

from __future__ import annotations

import re
from typing import Any

from callcenter.http.problems import field_path

_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def unstorable_field(data: Any, where: tuple[int | str, ...] = ()) -> str | None:
    """The path of the first string (or key) in ``data`` that cannot be stored, if any.

    An empty path (the whole value is such a string) comes back as ``""``.
    """
    if isinstance(data, str):
        return field_path(where) if _UNSTORABLE.search(data) else None
    if isinstance(data, dict):
        for key, value in data.items():
            if isinstance(key, str) and _UNSTORABLE.search(key):
                return field_path((*where, key))
            found = unstorable_field(value, (*where, str(key)))
            if found is not None:
                return found
    elif isinstance(data, list):
        for index, value in enumerate(data):
            found = unstorable_field(value, (*where, index))
            if found is not None:
                return found
    return None


def storable(text: str) -> str:
    """``text`` with what cannot be stored replaced by U+FFFD: for what a peer said that
    is kept anyway (refusing it would lose the rest of the record)."""
    return _UNSTORABLE.sub("\ufffd", text)


def describe(field: str) -> str:
    return (
        f"{field or 'the value'}: text may not contain the NUL character or unpaired "
        "surrogates (the database cannot store them)"
    )
