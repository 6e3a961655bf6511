"""The agent's side of a call: what it may see, and the wrap-up it records.

A call belongs to the agent that accepted it while it is connected and,
after it ended, until the agent has wrapped it up (within ``WRAP_UP_WINDOW``).
No other agent ever gets its panel, its history or its wrap-up: this is
checked here, on the server, for every request.

The wrap-up is checked in full before anything changes (the answer's kind
and that it answers the question shown on this call), so a mistake leaves
the call up and nothing stored; the agent corrects it and sends again. Then
the call ends (if it is still up), and notes and answer are stored in one
transaction, once per call: a retried wrap-up stores nothing twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from callcenter.agent_assist.knowledge import store as bank_store
from callcenter.agent_assist.knowledge.questions import check_answer
from callcenter.agent_assist.knowledge.store import BankCache
from callcenter.agent_assist.protocol import WrapUp
from callcenter.db.pool import Conn
from callcenter.db.sql import load_queries
from callcenter.errors import Conflict, NotFound
from callcenter.queue.calls import CallDesk
from callcenter.queue.models import AgentState, EndOutcome
from callcenter.queue.router import Router

W = load_queries("callcenter.agent_assist.desk", "wrap_up.sql")

#: How long after a call ended its agent may still wrap it up.
WRAP_UP_WINDOW = timedelta(hours=1)


@dataclass(frozen=True)
class OwnCall:
    id: int
    connected: bool
    customer_id: int | None
    question_key: str | None
    agent_in_wrap_up: bool


async def own_call(conn: Conn, agent_id: int, call_id: int) -> OwnCall:
    """``call_id`` if it is still the agent's own; a clear error otherwise."""
    row = await conn.fetchrow(W["own_call"], agent_id, call_id)
    if row is None:
        # The same answer whether the call does not exist or is someone else's:
        # an agent learns nothing about other agents' calls by probing ids.
        raise NotFound(f"call {call_id} is not a call of yours", field="call_id")
    if row["wrapped_up_at"] is not None:
        raise Conflict(f"call {call_id} is already wrapped up", field="call_id")
    if row["state"] != "connected" and (
        row["since_end"] is None or row["since_end"] > WRAP_UP_WINDOW
    ):
        raise Conflict(
            f"call {call_id} ended too long ago to be wrapped up ({row['state']})",
            field="call_id",
        )
    return OwnCall(
        id=call_id,
        connected=row["state"] == "connected",
        customer_id=row["customer_id"],
        question_key=row["question_key"],
        agent_in_wrap_up=row["agent_state"] == AgentState.wrap_up
        and row["agent_call_id"] == call_id,
    )


class WrapUpDesk:
    """Wrap-ups, handed the queue's objects it calls (the desk ends a call, the router
    makes the agent available) and the pool it reads and writes with."""

    def __init__(
        self, router: Router, desk: CallDesk, bank: BankCache, *, pool: asyncpg.Pool[Any]
    ) -> None:
        self.router = router
        self.desk = desk
        self.pool = pool
        self.bank = bank

    async def wrap_up(
        self,
        agent_id: int,
        message: WrapUp,
        now: datetime,
        *,
        who: str | None = None,
        remote: str | None = None,
    ) -> None:
        """Store the wrap-up; ``who`` (``agent:<name>``) and ``remote`` go to the audit log."""
        answer = message.answer
        async with self.pool.acquire() as conn:
            call = await own_call(conn, agent_id, message.call_id)
            value: Any = None
            if answer is not None:
                if call.question_key is None or call.customer_id is None:
                    raise Conflict(
                        f"no question was asked on call {call.id}", field="answer.question_key"
                    )
                bank = await self.bank.get(conn)
                if answer.question_key != call.question_key:
                    asked = bank.question(call.question_key)
                    shown = repr(asked.text) if asked is not None else repr(call.question_key)
                    raise Conflict(
                        f"question {answer.question_key!r} is not the pending one "
                        f"({shown} is, the one asked on this call)",
                        field="answer.question_key",
                    )
                if not answer.skipped:
                    question = bank.question(answer.question_key)
                    if question is None:
                        raise Conflict(
                            f"question {answer.question_key!r} was withdrawn from the bank; "
                            "skip it",
                            field="answer.question_key",
                        )
                    value = check_answer(question, answer.value, in_words=True)
        if call.connected:
            await self.desk.finish(call.id, EndOutcome(message.outcome), agent_id=agent_id)
            call = OwnCall(call.id, False, call.customer_id, call.question_key, True)
        async with self.pool.acquire() as conn, conn.transaction():
            detail = {
                "notes": bool(message.notes),
                "question_key": answer.question_key if answer is not None else None,
            }
            # The notes go on the call's contact in the same statement.
            done = await conn.fetchrow(
                W["mark_wrapped_up"],
                call.id,
                who or f"agent:{agent_id}",
                remote,
                detail,
                message.notes or None,
            )
            if done is None:
                return  # a retry raced the first one: it is stored already
            if answer is not None and done["customer_id"] is not None:
                await bank_store.record_answer(
                    conn,
                    customer_id=done["customer_id"],
                    call_id=call.id,
                    agent_id=agent_id,
                    interaction_id=done["interaction_id"],
                    question_key=answer.question_key,
                    value=None if answer.skipped else value,
                    skipped=answer.skipped,
                    now=now,
                    bank=await self.bank.get(conn),
                )
        if message.available:
            # Only from the wrap-up of this call: one the clock ended, or a next call
            # the agent is on already, is left as it is.
            await self.router.wrap_up_done(agent_id, call.id)
