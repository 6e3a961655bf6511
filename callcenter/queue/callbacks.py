"""Callbacks: a caller who would rather not hold keeps their place without the line.

A caller offered a callback (the queue's ``callback`` rule; see
``policy.callback_offered``) who takes it hangs up, and their call becomes a
**virtual call**: the same waiting row with the same service key, so the
claim serves it exactly when it would have served them holding on, at no
cost to the claim. When an agent accepts it, the telephony room rings the
caller back (the bridger, through the peer's connector) and bridges them to
the agent when they answer.

A ring nobody answers frees the agent at once and puts the call aside for the
queue's ``retry_seconds`` (no waiting row, ``callback_retry_at``); the
router's sweep (``due``) puts it back with its key. After the queue's
``attempts`` rings it ends *abandoned*, reason ``callback_failed``. Every
ring is a row of ``callback_attempts``, which the call's timeline shows.

This module owns those state changes; the telephony room decides when they
happen, the queue room never rings anyone.
"""

from __future__ import annotations

import logging

from callcenter.db.pool import Conn
from callcenter.errors import Conflict, NotFound
from callcenter.events import Event, EventBus
from callcenter.queue.calls import CallDesk
from callcenter.queue.models import CallState, EndOutcome
from callcenter.queue.sql import Q

_log = logging.getLogger(__name__)

#: The end reason of a callback nobody answered after the queue's attempts.
CALLBACK_FAILED = "callback_failed"

#: What an unanswered ring was: the callee did not pick up (or was busy), the
#: peer could not ring at all, or the ring was called off (the call ended).
MISSED_RESULTS = frozenset({"no_answer", "failed", "cancelled"})


async def request(desk: CallDesk, conn: Conn, call_id: int, number: str) -> bool:
    """The caller of waiting call ``call_id`` takes a callback to ``number`` (E.164).

    True when this made it a virtual call; False for a repeat (a duplicate
    opt-in changes nothing, whatever number it names). A call that does not
    wait any more is a conflict: there is no place left to keep.
    """
    async with conn.transaction():
        row = await conn.fetchrow(Q["request_callback"], call_id, number)
        if row is None:
            raise NotFound(f"no call with id {call_id}", field="call_id")
        if not row["requested"] and row["callback_number"] is None:
            # A second opt-in that waited on the first's lock read the call as it was
            # before: a fresh look sees the first one's number (a repeat, a no-op).
            row = await conn.fetchrow(Q["callback_of_call"], call_id)
            assert row is not None
        if not row["requested"] and row["callback_number"] is None:
            raise Conflict(
                f"call {call_id} is {row['state']}: a callback is taken only while the "
                "caller waits",
                field="call_id",
            )
        if row["requested"]:
            await desk.bus.publish(conn, [Event("queue", row["queue"])])
    if row["requested"]:
        _log.info("call %s: the caller takes a callback to %s", call_id, number)
    return bool(row["requested"])


async def ringing(conn: Conn, call_id: int, bridge_id: int, agent_id: int, number: str) -> int:
    """Record a ring of ``call_id`` for the bridger's claim ``bridge_id``; its number (1 = first).

    Repeating it for the same claim records nothing more.
    """
    attempt: int | None = await conn.fetchval(
        Q["callback_ringing"], call_id, bridge_id, agent_id, number
    )
    if attempt is None:
        raise NotFound(f"no call with id {call_id}", field="call_id")
    return attempt


async def not_rung(conn: Conn, call_id: int, bridge_id: int, cause: str) -> None:
    """Ring ``bridge_id`` never went out: recorded as called off and not counted as an
    attempt (the caller's phone never rang; the telephony room puts the call back)."""
    await conn.execute(Q["callback_not_rung"], call_id, bridge_id, cause[:500])


async def record_leg(conn: Conn, bridge_id: int, leg: str) -> None:
    """The peer's id of the ring's outbound leg, for its later reports and a hang-up."""
    await conn.execute(Q["callback_leg"], bridge_id, leg[:200])


async def answered(conn: Conn, call_id: int, bridge_id: int) -> bool:
    """The caller picked up ring ``bridge_id``: their hang-up now ends the conversation.

    False when that ring is over already (reported twice) or the call is no
    longer connected (a supervisor ended it while it rang): the caller must
    then be let go, which is the telephony room's to do.
    """
    # The agent's panel learns the caller is on the line from the agents' trigger.
    row = await conn.fetchrow(Q["callback_answered"], call_id, bridge_id)
    return row is not None


async def missed(
    desk: CallDesk,
    conn: Conn,
    call_id: int,
    bridge_id: int,
    agent_id: int,
    result: str,
    cause: str | None,
) -> str:
    """Nobody answered ring ``bridge_id``: free the agent, then retry later or give up.

    Returns ``retry`` (the call waits out the queue's delay), ``failed`` (the
    last attempt: the call ended abandoned, ``callback_failed``) or ``stale``
    (the ring was reported already, or the call is no longer connected to that
    agent: nothing changes but the ring's record).
    """
    if result not in MISSED_RESULTS:
        raise ValueError(f"not an unanswered ring: {result!r}")
    async with conn.transaction():
        closed = await conn.fetchval(
            Q["callback_attempt_closed"], bridge_id, result, (cause or "")[:500] or None
        )
        row = await conn.fetchrow(Q["call"], call_id)
        if closed is None or row is None:
            return "stale"
        queue = await desk.directory.get(conn, row["queue"])
        rule = queue.callback
        allowed = rule.attempts if rule is not None else 1
        final = row["callback_attempts"] >= allowed
        retry = None if final else (rule.retry_seconds if rule is not None else None)
        back = await conn.fetchrow(Q["callback_missed"], call_id, agent_id, retry)
        if back is None:
            return "stale"
        agent = str(agent_id)
        events = [Event("agent", agent), Event("free", agent), Event("queue", back["queue"])]
        await desk.bus.publish(conn, events)
        if final:
            await desk.end(
                call_id,
                EndOutcome.abandoned,
                CALLBACK_FAILED,
                expect=CallState.waiting,
                conn=conn,
            )
    _log.warning(
        "callback of call %s not answered (%s%s), ring %s of %s: %s",
        call_id,
        result,
        f": {cause}" if cause else "",
        row["callback_attempts"],
        allowed,
        "the call ends callback_failed" if final else f"again in {retry:g} s",
    )
    return "failed" if final else "retry"


async def due(conn: Conn, bus: EventBus) -> int:
    """Put the callbacks whose retry delay is over back in their queues (the router's sweep)."""
    queues = [r["queue"] for r in await conn.fetch(Q["callbacks_due"])]
    if queues:
        await bus.publish(conn, [Event("queue", q) for q in queues])
    return len(queues)
