"""Agents: who they are, which queues they serve, what state they are in.

States: *offline*, *available* (free; the longest idle gets the next call),
*offered* (a call waits for its accept), *on_call*, *wrap_up* (after a call,
for the queue's wrap-up time or until the agent says it is ready) and
*not_responding* (let an offer time out or rejected it: nothing more until it
says it is available again). Presence is refreshed by the agent's open
socket; an agent not seen for the grace period goes offline.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg

from callcenter.db.pool import Conn
from callcenter.errors import Conflict, NotFound
from callcenter.events import CHANNEL, Event, payloads
from callcenter.http.auth import Principal, Role, new_token, token_digest
from callcenter.queue.calls import Offers, call_of, caller_summary, freeing, resumed_from
from callcenter.queue.directory import QueueDirectory
from callcenter.queue.models import (
    Agent,
    AgentCreated,
    AgentIn,
    Call,
    Offer,
    Priority,
    QueueWaiting,
)
from callcenter.queue.policy import explain_credit
from callcenter.queue.sql import Q

#: The unique constraint a second agent with the same name runs into (0002).
NAME_TAKEN = "agents_name_key"


def _agent(row: asyncpg.Record) -> Agent:
    return Agent.model_validate(dict(row))


async def create_agent(
    conn: Conn, data: AgentIn, directory: QueueDirectory, *, token_days: float
) -> AgentCreated:
    for i, name in enumerate(data.queues):
        await directory.require(conn, name, field=f"queues[{i}]")
    for i, name in enumerate(data.overflow_queues):
        await directory.require(conn, name, field=f"overflow_queues[{i}]")
    token, digest = new_token()
    try:
        agent_id = await conn.fetchval(
            Q["create_agent"],
            data.name,
            digest,
            list(dict.fromkeys(data.queues)),
            list(dict.fromkeys(data.overflow_queues)),
            data.endpoint,
            token_days * 86_400.0,
        )
    except asyncpg.UniqueViolationError as exc:
        if exc.constraint_name != NAME_TAKEN:
            detail = f"the agent conflicts with an existing one ({exc.constraint_name})"
            raise Conflict(detail) from exc
        raise Conflict(f"an agent named {data.name!r} exists", field="name") from None
    return AgentCreated(agent=await get_agent(conn, agent_id), token=token)


async def get_agent(conn: Conn, agent_id: int) -> Agent:
    row = await conn.fetchrow(Q["agent"], agent_id)
    if row is None:
        raise NotFound(f"no agent with id {agent_id}")
    return _agent(row)


async def set_endpoint(conn: Conn, agent_id: int, endpoint: str | None) -> Agent:
    """Where the PBX reaches the agent from the next connect on (None: nowhere)."""
    if await conn.fetchval(Q["set_agent_endpoint"], agent_id, endpoint) is None:
        raise NotFound(f"no agent with id {agent_id}")
    return await get_agent(conn, agent_id)


async def list_agents(conn: Conn) -> list[Agent]:
    return [_agent(r) for r in await conn.fetch(Q["agents"])]


async def agent_for_token(conn: Conn, token: str) -> int | None:
    """The agent a live token belongs to (not removed, not expired)."""
    agent_id: int | None = await conn.fetchval(Q["agent_by_token"], token_digest(token), False)
    return agent_id


async def principal_for_token(conn: Conn, token: str, *, seen: bool = False) -> Principal | None:
    """An agent's token as a principal: the agent role opens its own desk, never /api.

    ``seen``: the token opens the agent's socket, so the agent is marked seen now
    (``mark_seen``) by the same statement.
    """
    row = await conn.fetchrow(Q["agent_by_token"], token_digest(token), seen)
    if row is None:
        return None
    return Principal(
        "agent", Role.AGENT, row["name"], id=row["id"], expires_at=row["token_expires_at"]
    )


async def find_id(conn: Conn, name_or_id: str) -> int:
    """An agent named by its name or its id, as the command line takes it."""
    agent_id: int | None = await conn.fetchval(Q["agent_id_by_name"], name_or_id)
    if agent_id is None:
        raise NotFound(f"no agent {name_or_id!r}")
    return agent_id


async def reset_token(conn: Conn, agent_id: int, *, token_days: float) -> AgentCreated:
    """A new token for the agent; the old one stops working at once (a lost or leaked one)."""
    token, digest = new_token()
    async with conn.transaction():
        changed = await conn.fetchval(
            Q["reset_agent_token"], agent_id, digest, token_days * 86_400.0
        )
        if changed is None:
            raise NotFound(f"no agent with id {agent_id}")
        # Sockets opened with the old token are closed by the hub that holds them.
        await conn.execute(Q["notify_all"], CHANNEL, payloads([Event("revoked", str(agent_id))]))
    return AgentCreated(agent=await get_agent(conn, agent_id), token=token)


async def remove(conn: Conn, agent_id: int) -> Agent:
    """Remove the agent: its token dies, it goes offline and any offer it held goes back.

    One transaction, announced to every instance: ``revoked`` makes the hub that
    holds the agent's socket close it. A call in progress goes on and ends as usual.
    """
    _, unusable = new_token()
    async with conn.transaction():
        # The offered call's waiting row before the agent, as ``set_offline`` says.
        # Then the removal, before ``set_offline``: it always matches the agent's row,
        # so it locks it, and an ``available`` committing meanwhile waits and then
        # finds the agent removed. ``set_offline`` first matches no row while the
        # agent is still offline, locks nothing, and let that ``available`` through:
        # a removed agent left available (test_access caught it once in a full run).
        await conn.fetch(Q["lock_offers_of_agent"], agent_id)
        if await conn.fetchval(Q["remove_agent"], agent_id, unusable) is None:
            raise NotFound(f"no agent with id {agent_id}")
        offers = await set_offline(conn, agent_id)
        returned = (
            await conn.fetch(Q["return_offers"], offers, "withdrawn", "offline") if offers else []
        )
        events = [Event("agent", str(agent_id)), Event("revoked", str(agent_id))]
        events += [Event("queue", r["queue"]) for r in returned]
        await conn.execute(Q["notify_all"], CHANNEL, payloads(events))
    return await get_agent(conn, agent_id)


async def set_queues(
    conn: Conn,
    agent_id: int,
    queues: Sequence[str],
    overflow_queues: Sequence[str],
    directory: QueueDirectory,
) -> None:
    """What the agent serves from its next offer on."""
    for i, name in enumerate(queues):
        await directory.require(conn, name, field=f"queues[{i}]")
    for i, name in enumerate(overflow_queues):
        await directory.require(conn, name, field=f"overflow_queues[{i}]")
    changed = await conn.fetchval(
        Q["set_agent_queues"],
        agent_id,
        list(dict.fromkeys(queues)),
        list(dict.fromkeys(overflow_queues)),
    )
    if changed is None:
        raise NotFound(f"no agent with id {agent_id}")


async def set_available(conn: Conn, agent_id: int, offers: Offers | None = None) -> bool:
    """False when the agent cannot be (it is on a call or holds an offer).

    With ``offers`` (this instance's router), the same statement runs the router's
    claim and the router is handed its offer, or asked for a round only if a call
    moved meanwhile (``Offers.freed``); else it publishes ``free:<id>`` at commit
    and the routers' round offers the agent its call. The panel's new state goes
    out from the agents' trigger (migration 0024).
    """
    free = freeing(offers, agent_id)
    row = await conn.fetchrow(Q["set_available"], agent_id, CHANNEL, free.events, free.claim)
    if row is None:
        return False
    free.committed(row)
    return True


async def set_offline(conn: Conn, agent_id: int) -> list[int]:
    """Take the agent offline; return the offers it held, for the caller to return
    (in the same transaction, so the agent is never seen offline holding an offer).
    An agent on a call stays on it, and goes offline instead of available once the
    call is over (``offline_after_call``: signing out ends the shift).

    The caller's transaction locks the offered call's waiting row before the agent
    (``lock_offers_of_agent``), in the order the end of that call takes them.
    """
    await conn.fetch(Q["lock_offers_of_agent"], agent_id)
    state = await conn.fetchval(Q["set_offline"], agent_id)
    if state != "offline":  # offline already, or on a call (marked, in the same statement)
        return []
    # An offer made between the lock and the agent's update is read here (its row is
    # then locked by the return, after the agent: a window of one statement).
    return [r["offer_id"] for r in await conn.fetch(Q["offers_of_agents"], [agent_id])]


async def force_offline(conn: Conn, agent_id: int) -> list[int]:
    """A supervisor takes the agent offline: like ``set_offline``, from wrap-up and
    not-responding too; refused (409) while it holds a call, which would be left
    without an agent. Returns the offers it held, for the caller to return (locked
    in the order ``set_offline`` says)."""
    await conn.fetch(Q["lock_offers_of_agent"], agent_id)
    changed = await conn.fetchval(Q["force_offline"], agent_id)
    if changed is None:
        agent = await get_agent(conn, agent_id)
        if agent.removed_at is not None:
            raise NotFound(f"no agent with id {agent_id}")
        raise Conflict(
            f"agent {agent_id} is on call {agent.call_id}: end the call first", field="agent_id"
        )
    return [r["offer_id"] for r in await conn.fetch(Q["offers_of_agents"], [agent_id])]


async def mark_seen(conn: Conn, agent_ids: Sequence[int]) -> None:
    if agent_ids:
        await conn.execute(Q["seen"], list(agent_ids))


async def waiting_in(conn: Conn, queues: Sequence[str]) -> list[QueueWaiting]:
    """Callers waiting in each of ``queues`` and the longest wait's start, in one statement."""
    if not queues:
        return []
    rows = await conn.fetch(Q["waiting_in_queues"], sorted(set(queues)))
    return [QueueWaiting.model_validate(dict(r)) for r in rows]


@dataclass(frozen=True)
class AgentSnapshot:
    """An agent, the offer it holds (if any) and the call it holds, as its panel shows them.

    ``call`` is None when the agent holds no call, and also when the call it holds
    waits again (its position is not read here: ``CallDesk.get`` reads it).
    ``version`` counts the changes of the agent's row (``agents.state_version``):
    of two snapshots the one with the higher version is the later.
    """

    agent: Agent
    offer: Offer | None
    call: Call | None = None
    version: int = 0


#: The prefix of the held call's columns in ``agent_snapshot``.
HELD = "held_"


async def snapshot(conn: Conn, agent_id: int) -> AgentSnapshot | None:
    """The agent, its pending offer and its call in one round trip; None when there is no
    such agent.

    The panel is pushed on every change of the agent; the change's own
    notification carries this snapshot (``snapshot_of`` reads it, migration
    0024), so this read is for a panel that opens, a ``resync``, and changes
    that do not touch the agent's row (a bare ``agent:<id>``).
    """
    data = await conn.fetchval(Q["agent_snapshot"], agent_id)
    return None if data is None else snapshot_of(data)


def snapshot_of(data: Mapping[str, Any]) -> AgentSnapshot:
    """An ``agent_snapshot`` (SQL function, jsonb), read or sent with a notification."""
    agent = Agent.model_validate({k: data[k] for k in Agent.model_fields if k in data})
    call = None
    if data[HELD + "id"] is not None:
        held = {k.removeprefix(HELD): v for k, v in data.items() if k.startswith(HELD)}
        call = call_of(held | {"offered_to": None})  # a call no longer waiting is offered to nobody
    offer = _offer(data) if data["offer_id"] is not None else None
    return AgentSnapshot(agent, offer, call, int(data["state_version"]))


def _offer(row: Mapping[str, Any]) -> Offer:
    return Offer(
        offer_id=row["offer_id"],
        call_id=row["offer_call_id"],
        queue=row["queue"],
        expires_at=row["offer_expires_at"],
        enqueued_at=row["enqueued_at"],
        ani=row["ani"],
        tier=row["tier"],
        customer=caller_summary(row),
        priority=Priority(
            tier=row["tier"],
            credit_seconds=row["credit_seconds"],
            explicit=row["credit_explicit"],
            reason=explain_credit(row["tier"], row["credit_seconds"], row["credit_explicit"]),
        ),
        callback=row["callback_number"],
        resumed=resumed_from(row),
    )
