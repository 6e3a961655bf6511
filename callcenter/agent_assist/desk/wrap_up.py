"""The agent's side of a call: what it may see, and the wrap-up it records.

A call belongs to the agent that accepted it while it is connected and,
after it ended, until the agent has wrapped it up (within ``WRAP_UP_WINDOW``).
No other agent ever gets its panel, its history or its wrap-up: this is
checked here, on the server, for every request.

The wrap-up is checked in full before anything changes (the answer's kind
and that it answers the question shown on this call), so a mistake leaves
the call up and nothing stored; the agent corrects it and sends again. Then
the call ends (if it is still up), and notes, answer and the agent's return
to taking calls are stored once per call: a retried wrap-up stores nothing
twice.

Two round trips (issue 21; there were eight): one statement reads the call
with everything the answer is checked against (``wrap_up_call``), the checks
run here, in Python, and one statement stores it all (``finish_wrap_up``,
migration 0022), which first makes sure, under the locks, that what was
checked still holds. If it does not (another tab picked another caller, an
answer was stored on the call meanwhile, the customer was merged), it writes
nothing and the wrap-up is read and checked again, so the agent gets the
error the new state calls for, never an answer stored unchecked.

One round trip when this instance built the call's panel and the agent's
pushed state is this call's wrap-up (migration 0026): the hub hands over what
the panel showed (``Shown``: the call, its customer, the question), the
answer is checked against that as if it had been read (nobody merged, no
answer on the call yet), and ``finish_wrap_up`` alone stores it. A guess
that is wrong costs the read it saved: the function rechecks everything the
read would have given (migration 0026 adds that the call has ended, within
``WRAP_UP_WINDOW``), answers 'changed' or 'done' with nothing written, and
the wrap-up then goes the read's way; a check that fails on the guess is made
again on the read too, so the agent gets the error it always got. A call
still connected is always read first: its wrap-up ends it, and a mistake the
guess cannot see (an answer on the call, a merge) must leave it up.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from callcenter.agent_assist.knowledge.questions import check_answer
from callcenter.agent_assist.knowledge.store import (
    Bank,
    BankCache,
    bank_question,
    check_not_merged,
    check_retry,
    check_skip,
)
from callcenter.agent_assist.protocol import AnswerIn, PanelMessage, WrapUp
from callcenter.db.pool import Conn
from callcenter.db.sql import load_queries
from callcenter.errors import CallCenterError, Conflict, NotFound
from callcenter.events import CHANNEL
from callcenter.queue.calls import CallDesk, freeing
from callcenter.queue.models import AgentState, EndOutcome

W = load_queries("callcenter.agent_assist.desk", "wrap_up.sql")

#: How long after a call ended its agent may still wrap it up. Its exact twin is the
#: SQL function ``wrap_up_window()`` (migration 0026), which ``finish_wrap_up``
#: rechecks; a test holds the two equal: change both in one commit.
WRAP_UP_WINDOW = timedelta(hours=1)

#: How often a wrap-up is read and checked again when what it was checked against
#: changed before it was stored (each time another tab or writer got in between).
ATTEMPTS = 3


@dataclass(frozen=True)
class OwnCall:
    id: int
    connected: bool
    customer_id: int | None
    question_key: str | None
    agent_in_wrap_up: bool


async def own_call(conn: Conn, agent_id: int, call_id: int) -> OwnCall:
    """``call_id`` if it is still the agent's own; a clear error otherwise."""
    return _own(await conn.fetchrow(W["own_call"], agent_id, call_id), call_id)


def _own(row: asyncpg.Record | None, call_id: int) -> OwnCall:
    """The call of an ``own_call`` row (or of ``wrap_up_call``'s), or why it is not one."""
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


@dataclass(frozen=True)
class WrapUpCall:
    """What a wrap-up is checked against, read in one statement."""

    call: OwnCall
    #: Whom the call's customer was merged into (None: nobody).
    merged_into: int | None
    #: The answer to the wrap-up's question stored on the call already, as
    #: ``(value, skipped)``: the wrap-up is then a retry, or a different answer.
    earlier: tuple[Any, bool] | None


async def wrap_up_call(
    conn: Conn, agent_id: int, call_id: int, question_key: str | None
) -> WrapUpCall:
    """Call ``call_id`` if it is the agent's own, with what an answer to
    ``question_key`` is checked against; a clear error otherwise (as ``own_call``)."""
    row = await conn.fetchrow(W["wrap_up_call"], agent_id, call_id, question_key)
    call = _own(row, call_id)
    assert row is not None  # _own refused a missing one
    earlier = (row["value"], row["skipped"]) if row["answered"] else None
    return WrapUpCall(call, row["merged_into"], earlier)


@dataclass(frozen=True)
class Shown:
    """What this instance showed on the panel of the agent's call, kept by the hub
    so the call's wrap-up need not read it back (see the module's docstring).

    Only a guess: ``finish_wrap_up`` rechecks all of it under the locks.
    """

    call_id: int
    customer_id: int | None
    #: The question on the panel (None: none shown, or one withdrawn from the bank).
    question_key: str | None
    #: Whether the agent's state last pushed here is this call's wrap-up (the call
    #: ended). False until a push says so: only then is a wrap-up stored unread.
    in_wrap_up: bool = False


def shown_on(panel: PanelMessage) -> Shown:
    """What ``panel`` shows of its call, as a wrap-up is checked against it."""
    return Shown(
        call_id=panel.call_id,
        customer_id=panel.customer.id if panel.customer is not None else None,
        question_key=panel.question.key if panel.question is not None else None,
    )


def followed(shown: Shown | None, state: AgentState, call_id: int | None) -> Shown | None:
    """``shown`` once the agent's state ``state``, holding ``call_id``, was pushed: None
    when the agent no longer holds the call (wrapped up, ended by the clock, taken
    back), else whether the agent is in its wrap-up."""
    if shown is None or call_id != shown.call_id:
        return None
    in_wrap_up = state == AgentState.wrap_up
    if in_wrap_up == shown.in_wrap_up:
        return shown
    return Shown(shown.call_id, shown.customer_id, shown.question_key, in_wrap_up)


def guessed(shown: Shown | None, call_id: int) -> WrapUpCall | None:
    """What a read of ``call_id`` would most likely give, from what its panel showed;
    None when there is doubt (no panel of this call built here, the agent not in its
    wrap-up as last pushed): then it is read."""
    if shown is None or shown.call_id != call_id or not shown.in_wrap_up:
        return None
    call = OwnCall(
        id=call_id,
        connected=False,
        customer_id=shown.customer_id,
        question_key=shown.question_key,
        agent_in_wrap_up=True,
    )
    return WrapUpCall(call, merged_into=None, earlier=None)


@dataclass(frozen=True)
class AnswerToStore:
    """An answer checked for its call: the key, the normalised value (None for a skip)."""

    question_key: str
    value: Any
    skipped: bool


def answer_to_store(seen: WrapUpCall, answer: AnswerIn, bank: Bank) -> AnswerToStore | None:
    """The wrap-up's answer as it is to be stored; None when it is stored already (the
    same answer on the same call: a retry); the error otherwise.

    It must answer the question shown on the call (or skip it), in the
    question's kind, for a customer that was not merged away; the errors name the
    question as the agent read it. The same checks as ``store_answer`` makes,
    in the same order, so the wrap-up answers a mistake as it always did.
    """
    call = seen.call
    if call.question_key is None or call.customer_id is None:
        raise Conflict(f"no question was asked on call {call.id}", field="answer.question_key")
    if answer.question_key != call.question_key:
        asked = bank.question(call.question_key)
        shown = repr(asked.text) if asked is not None else repr(call.question_key)
        raise Conflict(
            f"question {answer.question_key!r} is not the pending one "
            f"({shown} is, the one asked on this call)",
            field="answer.question_key",
        )
    value: Any = None
    if not answer.skipped:
        question = bank.question(answer.question_key)
        if question is None:
            raise Conflict(
                f"question {answer.question_key!r} was withdrawn from the bank; skip it",
                field="answer.question_key",
            )
        value = check_answer(question, answer.value, in_words=True)
    check_skip(answer.value, answer.skipped)
    check_not_merged(call.customer_id, seen.merged_into)
    bank_question(bank, answer.question_key)
    if seen.earlier is not None:
        earlier, earlier_skipped = seen.earlier
        check_retry(answer.question_key, call.id, earlier, earlier_skipped, value, answer.skipped)
        return None
    return AnswerToStore(answer.question_key, value, answer.skipped)


class WrapUpDesk:
    """Wrap-ups, handed the queue's desk (it ends a call that is still up), the bank
    the answers are checked against and the pool it reads and writes with."""

    def __init__(self, desk: CallDesk, bank: BankCache, *, pool: asyncpg.Pool[Any]) -> None:
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
        shown: Shown | None = None,
    ) -> None:
        """Store the wrap-up; ``who`` (``agent:<name>``) and ``remote`` go to the audit log.

        ``shown``: what this instance's panel showed of the agent's call (the hub's
        ``Shown``); when it is this call's, in its wrap-up, the call is not read first.
        """
        guess = guessed(shown, message.call_id)
        if guess is not None and await self._unread(agent_id, message, now, guess, who, remote):
            return
        for _ in range(ATTEMPTS):
            store: AnswerToStore | None = None
            async with self.pool.acquire() as conn:
                seen = await wrap_up_call(
                    conn,
                    agent_id,
                    message.call_id,
                    message.answer.question_key if message.answer is not None else None,
                )
                if message.answer is not None:
                    store = answer_to_store(seen, message.answer, await self.bank.get(conn))
            call = seen.call
            if call.connected:
                await self.desk.finish(call.id, EndOutcome(message.outcome), agent_id=agent_id)
            outcome = await self._store(agent_id, message, now, seen, store, who, remote)
            # "done": a retry raced the first one, which stored it all.
            if outcome != "changed":
                return
        raise Conflict(
            f"call {message.call_id} kept changing while its wrap-up was stored; send it again",
            field="call_id",
        )

    async def _unread(
        self,
        agent_id: int,
        message: WrapUp,
        now: datetime,
        guess: WrapUpCall,
        who: str | None,
        remote: str | None,
    ) -> bool:
        """The wrap-up stored against ``guess`` instead of a read: True when it was.

        False, with nothing written, whenever the read may answer otherwise: a
        check that fails on the guess (the read says which error is due), the
        call found changed or wrapped up already (the read tells a resend so).
        """
        store: AnswerToStore | None = None
        if message.answer is not None:
            try:
                store = answer_to_store(guess, message.answer, await self.bank.get())
            except CallCenterError:
                return False
        outcome = await self._store(agent_id, message, now, guess, store, who, remote)
        return outcome == "stored"

    async def _store(
        self,
        agent_id: int,
        message: WrapUp,
        now: datetime,
        seen: WrapUpCall,
        store: AnswerToStore | None,
        who: str | None,
        remote: str | None,
    ) -> str:
        """``finish_wrap_up`` with what was checked: 'stored', 'done' or 'changed'."""
        answer = message.answer
        detail = {
            "notes": bool(message.notes),
            "question_key": answer.question_key if answer is not None else None,
        }
        # Only from the wrap-up of this call: one the clock ended, or a next call the
        # agent is on already, is left as it is (finish_wrap_up checks). The panel gets
        # the agent's new state from the agents' trigger. With this instance's router
        # running, the statement runs its claim too and the router takes the offer
        # (``calls.Offers``), else the routers hear ``free`` and a round offers it.
        free = freeing(self.desk.offers if message.available else None, agent_id)
        async with self.pool.acquire() as conn:
            row = await conn.fetchrow(
                W["finish_wrap_up"],
                seen.call.id,
                agent_id,
                seen.call.customer_id,
                who or f"agent:{agent_id}",
                remote,
                detail,
                message.notes or None,
                store.question_key if store is not None else None,
                store.value if store is not None else None,
                store.skipped if store is not None else None,
                now,
                message.available,
                CHANNEL,
                free.events,
                free.claim,
            )
        assert row is not None  # the function always answers
        outcome: str = row["outcome"]
        if outcome == "stored":
            free.committed(row)
        return outcome
