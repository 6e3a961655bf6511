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

from typing import Any

from callcenter.customers.audit import Audit
from callcenter.db.pool import Conn
from callcenter.db.sql import load_queries

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
