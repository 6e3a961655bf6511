"""Who is calling, when the service could not say: the agent finds and picks the caller.

A shared number (``multiple``) leaves the call with nobody, a withheld number
too, and a first call from a number gets a provisional record; only a person
can ask. The agent holding such a call searches (``find_callers``: customer
number, name or another phone), picks one of the candidates (``pick_caller``)
or creates the customer from the call (``create_caller``).

A pick goes through the queue's own identify path (``CallDesk.identify_as``,
the one the IVR's typed number takes): the call's customer, tier and key
follow, so its contact lands in that customer's history. It is recorded as
the agent's confirmation (who and when): the agent asked before picking, so
a phone that waited as a pending link is linked, and a provisional record
that stood for it is merged in, history included.

It is not a customer browser. Only the agent's own call, while it is
connected, and only a call whose caller the service did not recognise (or
that the agent picked before) may be searched for; a search answers a few
candidates; a pick must be one of the candidates this call was shown (the
shared phone's owners, or what this agent's searches for this call found).
Every search and pick is in the customer audit log, without the query text.
"""

from __future__ import annotations

from collections.abc import Collection

from callcenter.agent_assist.desk.wrap_up import own_call
from callcenter.customers import audit, identity, lookup
from callcenter.customers import store as customer_store
from callcenter.customers.audit import Audit
from callcenter.customers.models import CustomerIn, Outcome
from callcenter.db.pool import Conn
from callcenter.db.sql import load_queries
from callcenter.errors import Conflict
from callcenter.queue.calls import CallDesk

C = load_queries("callcenter.agent_assist.desk", "callers.sql")

#: How a call's caller must have been recognised for the agent to look for them.
UNRECOGNISED = frozenset({"multiple", "unknown", "withheld", "agent"})


async def _open_call(conn: Conn, agent_id: int, call_id: int) -> str | None:
    """The ani of the agent's connected, unrecognised call ``call_id``; a clear error else."""
    call = await own_call(conn, agent_id, call_id)
    if not call.connected:
        raise Conflict(
            f"call {call_id} has ended: the caller can be found only during the call",
            field="call_id",
        )
    row = await conn.fetchrow(C["caller_call"], call_id)
    assert row is not None  # own_call found it, and calls are never deleted
    if row["identified_by"] not in UNRECOGNISED:
        raise Conflict(
            f"the caller of call {call_id} was recognised ({row['identified_by']}): "
            "there is nobody to look for",
            field="call_id",
        )
    ani: str | None = row["ani"]
    return ani


async def find_callers(
    conn: Conn,
    agent_id: int,
    call_id: int,
    query: str,
    *,
    region: str,
    who: str,
    remote: str | None,
) -> list[lookup.Candidate]:
    """The customers ``query`` names, for the agent's call ``call_id`` (audited)."""
    terms = lookup.terms(query, region)
    async with conn.transaction():
        await _open_call(conn, agent_id, call_id)
        found = await lookup.find(conn, terms)
        by = [
            kind
            for kind, used in (
                ("customer_number", True),
                ("phone", terms.phone is not None),
                ("name", terms.name_pattern is not None),
            )
            if used
        ]
        entry = Audit(who, "caller_search", "panel", remote, {"call_id": call_id, "by": by})
        await audit.record(conn, entry, [c.id for c in found])
    return found


async def pick_caller(
    conn: Conn,
    desk: CallDesk,
    agent_id: int,
    call_id: int,
    customer_id: int,
    *,
    shown: Collection[int],
    who: str,
    remote: str | None,
    action: str = "pick_caller",
) -> bool:
    """Serve call ``call_id`` as ``customer_id``, the agent's confirmed pick.

    ``shown``: the customers this agent's searches found for this call. True
    when the call's phone is now linked to the customer.
    """
    async with conn.transaction():
        await _open_call(conn, agent_id, call_id)
        if customer_id not in shown and not await conn.fetchval(
            C["phone_owner"], call_id, customer_id
        ):
            raise Conflict(
                f"customer {customer_id} is not one of the callers found for call {call_id}: "
                "search for the caller first",
                field="customer_id",
            )
        resolution = await desk.identify_as(call_id, customer_id, conn=conn)
        linked = False
        if resolution.outcome is Outcome.pending and resolution.phone is not None:
            linked = await identity.confirm_link(
                conn, resolution.phone, customer_id, via=f"picked by {who}"
            )
        await conn.fetchval(
            C["mark_picked"], call_id, agent_id, resolution.phone if linked else None
        )
        detail = {"call_id": call_id, "linked": linked, "outcome": resolution.outcome.value}
        await audit.record(conn, Audit(who, action, "panel", remote, detail), [customer_id])
    return linked


async def create_caller(
    conn: Conn,
    desk: CallDesk,
    agent_id: int,
    call_id: int,
    name: str,
    *,
    who: str,
    remote: str | None,
) -> int:
    """A new customer ``name`` for the caller of ``call_id``, picked at once; its id.

    A first call's provisional record is merged into it (the pick links the
    phone), so what that record held is not lost.
    """
    async with conn.transaction():
        await _open_call(conn, agent_id, call_id)
        created = await customer_store.create_customer(
            conn,
            CustomerIn(name=name),
            desk.rules,
            audit=Audit(who, "create_from_call", "panel", remote, {"call_id": call_id}),
        )
        await pick_caller(
            conn,
            desk,
            agent_id,
            call_id,
            created.id,
            shown=[created.id],
            who=who,
            remote=remote,
            action="pick_created_caller",
        )
    return created.id
