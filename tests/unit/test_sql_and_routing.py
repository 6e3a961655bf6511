from __future__ import annotations

import pytest

from callcenter.customers.store import Q
from callcenter.db.migrate import known_migrations
from callcenter.db.sql import parse_queries


def test_named_blocks() -> None:
    text = "-- header comment\n-- first --\nSELECT 1\n\n-- second --\nSELECT 2;\n"
    assert parse_queries(text) == {"first": "SELECT 1", "second": "SELECT 2;"}


def test_duplicate_or_empty_names_are_refused() -> None:
    with pytest.raises(ValueError, match="twice"):
        parse_queries("-- a --\nSELECT 1\n-- a --\nSELECT 2")
    with pytest.raises(ValueError, match="empty"):
        parse_queries("-- a --\n\n-- b --\nSELECT 2")


def test_customers_queries_load() -> None:
    assert "identify_candidates" in Q
    assert "import_upsert" in Q


def test_migrations_are_ordered_from_one() -> None:
    # Gaps are allowed: parallel branches number their migrations before they merge.
    versions = [m.version for m in known_migrations()]
    assert versions[0] == 1
    assert versions == sorted(set(versions))
