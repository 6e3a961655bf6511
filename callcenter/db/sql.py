"""Named SQL blocks kept in ``.sql`` files next to the room that owns the tables.

A file holds blocks that start with a header line ``-- name --``; each block is
one statement. Loading them once into a dict keeps SQL greppable, reviewable
and out of f-strings.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from importlib import resources
from types import MappingProxyType

_HEADER = re.compile(r"^--\s*([a-z_][a-z0-9_]*)\s*--\s*$", re.MULTILINE)


def parse_queries(text: str) -> dict[str, str]:
    """Split a file's text into ``{name: statement}``; text before the first header is ignored."""
    parts = _HEADER.split(text)
    queries: dict[str, str] = {}
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        if name in queries:
            raise ValueError(f"query {name!r} is defined twice")
        statement = body.strip()
        if not statement:
            raise ValueError(f"query {name!r} is empty")
        queries[name] = statement
    return queries


def load_queries(package: str, filename: str) -> Mapping[str, str]:
    """Read ``filename`` from ``package`` and return its named statements, read-only."""
    text = resources.files(package).joinpath(filename).read_text(encoding="utf-8")
    return MappingProxyType(parse_queries(text))
