"""The audit log of customers' records: who read or changed whose record, when, from where.

Every read of a customer's record (through the API or an agent's panel) and
every change leaves one entry per customer touched. The log is append-only in
the database (migration 0012: a trigger refuses UPDATE, DELETE and TRUNCATE),
so an entry is written together with what it records, never fixed up later.

Entries say *what* happened in an action name and a small detail (field
names, counts, a call id), never the customer's text: an erasure (GDPR art.
17) must leave nothing personal behind, and the log cannot be changed.

Keeping it cheap: where a statement already runs for the action (reading the
record, building a panel), the entry is written by that statement as a CTE
(``Audit.params`` fills its parameters); otherwise ``record`` is one INSERT.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from callcenter.db.pool import Conn
from callcenter.db.sql import load_queries
from callcenter.http.auth import principal
from callcenter.http.routing import BIGINT_MAX

A = load_queries("callcenter.customers", "audit.sql")

Channel = Literal["api", "panel", "cli", "job"]


@dataclass(frozen=True)
class Audit:
    """One audited action, before it is written: who, what, and from where."""

    who: str
    action: str
    channel: Channel = "api"
    remote: str | None = None
    detail: Mapping[str, Any] = field(default_factory=dict)

    def params(self) -> tuple[str, str, str | None, str, dict[str, Any]]:
        """``who, channel, remote, action, detail``: the order every audited statement takes."""
        return (self.who, self.channel, self.remote, self.action, dict(self.detail))


def of_request(request: web.Request, action: str, **detail: Any) -> Audit:
    """The entry for an API request: its principal and remote address."""
    return Audit(principal(request).who, action, "api", request.remote, detail)


async def record(conn: Conn, audit: Audit, customer_ids: Sequence[int]) -> None:
    """One INSERT: an entry for each of ``customer_ids`` (nothing when there are none)."""
    if not customer_ids:
        return
    who, channel, remote, action, detail = audit.params()
    await conn.execute(A["record"], who, channel, remote, action, list(customer_ids), detail)


class AuditEntry(BaseModel):
    id: int
    at: datetime
    customer_id: int
    who: str = Field(description="The principal, role:name (system:retention for the job).")
    channel: Channel
    remote: str | None = Field(description="The request's or the agent socket's address.")
    action: str
    detail: dict[str, Any]


class AuditPage(BaseModel):
    entries: list[AuditEntry]
    next_before: int | None = Field(
        default=None, description="Pass as ?before= for older entries; null when none are left."
    )


class AuditQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    customer: int | None = Field(
        default=None, gt=0, le=BIGINT_MAX, description="Entries about this customer."
    )
    who: str | None = Field(
        default=None, max_length=200, description="Entries by this principal (role:name)."
    )
    since: datetime | None = Field(default=None, description="Entries at or after this time.")
    before: int | None = Field(
        default=None, gt=0, le=BIGINT_MAX, description="Paging cursor from next_before."
    )
    limit: int = Field(default=50, ge=1, le=500)


async def page(conn: Conn, query: AuditQuery) -> AuditPage:
    rows = await conn.fetch(
        A["page"], query.customer, query.who, query.since, query.before, query.limit + 1
    )
    entries = [AuditEntry(**dict(r)) for r in rows[: query.limit]]
    more = len(rows) > query.limit
    return AuditPage(entries=entries, next_before=entries[-1].id if more else None)


async def about(conn: Conn, customer_id: int) -> list[AuditEntry]:
    """Every entry about ``customer_id``, newest first (for the export)."""
    found: list[AuditEntry] = []
    before: int | None = None
    while True:
        got = await page(conn, AuditQuery(customer=customer_id, before=before, limit=500))
        found.extend(got.entries)
        if got.next_before is None:
            return found
        before = got.next_before
