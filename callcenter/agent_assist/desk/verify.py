"""The agent confirms who is calling: ``verify`` on the agent socket.

A customer number typed in the IVR is a claim: anyone can read one off a
letter. So a typed number from a phone that is not the customer's serves
the call as that customer for this call only (``customers.identity``), and
the link from that phone to them waits on the call. The agent, who can ask
the questions a machine cannot, confirms the caller here; the server records
which agent and when, and only then links the phone (merging the provisional
record that stood for it). A conflict (the phone is someone else's) is
confirmed the same way but nothing is re-linked: that is a person's review.

Only the agent's own call, connected or in its wrap-up, may be verified;
another agent's call is "not a call of yours", the same as one that does not
exist (``own_call``). A repeat changes nothing.
"""

from __future__ import annotations

from callcenter.agent_assist.desk.wrap_up import own_call
from callcenter.customers import audit, identity
from callcenter.customers.audit import Audit
from callcenter.db.pool import Conn
from callcenter.db.sql import load_queries
from callcenter.errors import Conflict

V = load_queries("callcenter.agent_assist.desk", "verify.sql")


async def verify(conn: Conn, agent_id: int, call_id: int) -> None:
    """Record that ``agent_id`` confirmed the caller of ``call_id``; make its pending link."""
    async with conn.transaction():
        await own_call(conn, agent_id, call_id)
        row = await conn.fetchrow(V["lock_call"], call_id)
        assert row is not None  # own_call found it, and calls are never deleted
        if row["customer_id"] is None:
            raise Conflict(
                f"call {call_id} is not served as any customer: there is nobody to confirm",
                field="call_id",
            )
        if await conn.fetchval(V["customer_erased"], row["customer_id"]):
            raise Conflict(
                f"call {call_id}'s customer was erased: there is nobody to confirm",
                field="call_id",
            )
        who = await conn.fetchval(V["mark_verified"], call_id, agent_id)
        linked = False
        if row["identified_by"] == "pending" and row["link_phone"] is not None:
            linked = await identity.confirm_link(
                conn, row["link_phone"], row["link_customer_id"], via=f"verified by {who}"
            )
            if linked:
                await conn.execute(V["mark_linked"], call_id)
        if row["verified_at"] is None:  # the first confirmation, not a repeat
            entry = Audit(who, "verify", "panel", None, {"call_id": call_id, "linked": linked})
            await audit.record(conn, entry, [row["customer_id"]])
