"""The audit log of what supervisors and admins do to calls, agents and queues.

A bump, a move, a call ended from the API, an agent forced offline, a queue
changed: each leaves one entry (migration 0015, append-only), written in the
same transaction as the change, so there is never a change without its entry
or an entry for a change that was rolled back. Who did it is the request's
principal (``customers.audit.of_request``), never a name the client sends.

Customers' records keep their own log (``customers/audit.py``: reads,
changes, tier pins); this one is about calls, agents and queues, and a call's
timeline reads both.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from callcenter.customers.audit import Audit, Channel
from callcenter.db.pool import Conn
from callcenter.db.sql import load_queries
from callcenter.http.routing import BIGINT_MAX

A = load_queries("callcenter.queue", "actions.sql")


async def record(
    conn: Conn,
    audit: Audit,
    *,
    call_id: int | None = None,
    agent_id: int | None = None,
    queue: str | None = None,
    **detail: Any,
) -> None:
    """One entry for ``audit``, its detail with ``detail`` added; run it inside the
    transaction that makes the change."""
    who, channel, remote, action, base = audit.params()
    await conn.execute(
        A["record"], who, channel, remote, action, base | detail, call_id, agent_id, queue
    )


class ActionEntry(BaseModel):
    id: int
    at: datetime
    who: str = Field(description="The principal, role:name, from the session or token.")
    channel: Channel
    remote: str | None
    action: str = Field(
        description="bump_call, unbump_call, move_call, end_call, identify_call, "
        "force_offline, put_queue, patch_queue"
    )
    call_id: int | None
    agent_id: int | None
    queue: str | None
    detail: dict[str, Any]


class ActionPage(BaseModel):
    entries: list[ActionEntry]
    next_before: int | None = Field(
        default=None, description="Pass as ?before= for older entries; null when none are left."
    )


class ActionQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    who: str | None = Field(
        default=None, max_length=200, description="Entries by this principal (role:name)."
    )
    call: int | None = Field(default=None, gt=0, le=BIGINT_MAX, description="About this call.")
    agent: int | None = Field(default=None, gt=0, le=BIGINT_MAX, description="About this agent.")
    queue: str | None = Field(default=None, max_length=63, description="About this queue.")
    since: datetime | None = Field(default=None, description="Entries at or after this time.")
    before: int | None = Field(
        default=None, gt=0, le=BIGINT_MAX, description="Paging cursor from next_before."
    )
    limit: int = Field(default=50, ge=1, le=500)


async def page(conn: Conn, query: ActionQuery) -> ActionPage:
    rows = await conn.fetch(
        A["page"],
        query.who,
        query.call,
        query.agent,
        query.queue,
        query.since,
        query.before,
        query.limit + 1,
    )
    entries = [ActionEntry(**dict(r)) for r in rows[: query.limit]]
    more = len(rows) > query.limit
    return ActionPage(entries=entries, next_before=entries[-1].id if more else None)
