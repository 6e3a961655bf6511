"""Agents: who they are, which queues they serve, what state they are in.

States: *offline*, *available* (free; the longest idle gets the next call),
*offered* (a call waits for its accept), *on_call*, *wrap_up* (after a call,
for the queue's wrap-up time or until the agent says it is ready) and
*not_responding* (let an offer time out or rejected it: nothing more until it
says it is available again). Presence is refreshed by the agent's open
socket; an agent not seen for the grace period goes offline.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence

import asyncpg

from callcenter.db.pool import Conn
from callcenter.errors import Conflict, NotFound
from callcenter.queue.directory import QueueDirectory
from callcenter.queue.models import Agent, AgentCreated, AgentIn
from callcenter.queue.sql import Q

#: The unique constraint a second agent with the same name runs into (0002).
NAME_TAKEN = "agents_name_key"


def token_digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def _agent(row: asyncpg.Record) -> Agent:
    return Agent.model_validate(dict(row))


async def create_agent(conn: Conn, data: AgentIn, directory: QueueDirectory) -> AgentCreated:
    for i, name in enumerate(data.queues):
        await directory.require(conn, name, field=f"queues[{i}]")
    for i, name in enumerate(data.overflow_queues):
        await directory.require(conn, name, field=f"overflow_queues[{i}]")
    token = secrets.token_urlsafe(32)
    try:
        agent_id = await conn.fetchval(
            Q["create_agent"],
            data.name,
            token_digest(token),
            list(dict.fromkeys(data.queues)),
            list(dict.fromkeys(data.overflow_queues)),
            data.endpoint,
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
    agent_id: int | None = await conn.fetchval(Q["agent_by_token"], token_digest(token))
    return agent_id


async def set_available(conn: Conn, agent_id: int) -> bool:
    """False when the agent cannot be (it is on a call or holds an offer)."""
    return await conn.fetchval(Q["set_available"], agent_id) is not None


async def set_offline(conn: Conn, agent_id: int) -> list[int]:
    """Take the agent offline; return the offers it held, for the caller to return
    (in the same transaction, so the agent is never seen offline holding an offer)."""
    changed = await conn.fetchval(Q["set_offline"], agent_id)
    if changed is None:
        return []
    return [r["offer_id"] for r in await conn.fetch(Q["offers_of_agents"], [agent_id])]


async def mark_seen(conn: Conn, agent_ids: Sequence[int]) -> None:
    if agent_ids:
        await conn.execute(Q["seen"], list(agent_ids))
