"""The dashboard's named statements (``queries.sql``), loaded once."""

from __future__ import annotations

from callcenter.db.sql import load_queries

Q = load_queries("callcenter.dashboard", "queries.sql")
