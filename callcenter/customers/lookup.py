"""Finding the caller of one call: the search behind an agent's "who is calling?".

Not a customer browser: a search is for one caller, so it answers at most a
handful of live, real customers (never provisional, merged or erased
records), by an exact customer number, an exact phone, or a part of the name
of at least ``MIN_NAME`` characters. Who may search, for which call, how often,
and the audit entry are the agent desk's (``agent_assist.desk.callers``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from callcenter.customers import phones
from callcenter.db.pool import Conn
from callcenter.db.sql import load_queries
from callcenter.errors import Unprocessable

L = load_queries("callcenter.customers", "lookup.sql")

#: The fewest characters of a name a search matches on ("Al" is too many people).
MIN_NAME = 3
#: The most candidates one search answers: enough to pick from, too few to browse.
MAX_FOUND = 10
#: A query with this many digits may be a phone number.
PHONE_DIGITS = 6


@dataclass(frozen=True)
class Terms:
    """What a search looks for: any of an exact number, an exact phone, a name pattern."""

    customer_number: str
    phone: str | None
    name_pattern: str | None


@dataclass(frozen=True)
class Candidate:
    id: int
    customer_number: str | None
    name: str
    tier: str
    last_contact_at: datetime | None


def terms(query: str, region: str) -> Terms:
    """The search ``query`` stands for; 422 (field ``query``) when it can find nobody.

    Pure. A query is tried as each kind it could be, so the agent need not say
    which it typed: ``C1001`` is a number, ``+44 20 7946 0018`` a phone,
    ``lovelace`` part of a name.
    """
    text = " ".join(query.split())
    if not text:
        raise Unprocessable(
            "type a customer number, a name or a phone number to search for", field="query"
        )
    digits = sum(ch.isdigit() for ch in text)
    phone = phones.normalize(text, region) if digits >= PHONE_DIGITS else None
    letters = sum(ch.isalpha() for ch in text)
    name = None
    if letters and len(text) >= MIN_NAME:
        name = "%" + re.sub(r"([\\%_])", r"\\\1", text) + "%"
    if phone is None and name is None and digits < PHONE_DIGITS and len(text) < MIN_NAME:
        raise Unprocessable(
            f"search with at least {MIN_NAME} characters of a name, a customer number or "
            "a phone number",
            field="query",
        )
    return Terms(customer_number=text, phone=phone, name_pattern=name)


async def find(conn: Conn, found: Terms, limit: int = MAX_FOUND) -> list[Candidate]:
    """At most ``limit`` customers the terms name, exact matches first."""
    rows = await conn.fetch(
        L["find_callers"], found.customer_number, found.phone, found.name_pattern, limit
    )
    return [
        Candidate(
            id=r["id"],
            customer_number=r["customer_number"],
            name=r["name"],
            tier=r["tier"],
            last_contact_at=r["last_contact_at"],
        )
        for r in rows
    ]
