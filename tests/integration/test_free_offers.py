"""The statements that free an agent make the router's step themselves (issue 21).

The wrap-up that frees its agent and the agent's ``available`` run the
router's claim (``queue_offer_next``, as the enqueue does since migration
0027) after they free the agent, and hand the offer they made to this
instance's router (``calls.Offers.made``). They send no ``free`` event: a
round is asked for only when a call may have come in that their claim could
not see (``Router.freed``). These tests hold each part: the agent freed gets
the call waiting for it with no round, the race the rule is for (a call
queued between the claim and the commit, whose own round missed the agent)
ends with the call offered, and wrap-ups and enqueues racing on two
instances leave nothing waiting with the sweep an hour away.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
from aiohttp.test_utils import TestClient

from callcenter import app_keys
from callcenter.events import CHANNEL, Event
from tests.conftest import AppFactory
from tests.integration.queue_helpers import (
    FAST,
    Panel,
    enqueue,
    eventually,
    make_agent,
    make_queue,
    no_call_offered_twice_at_once,
    waits_behind,
)
from tests.integration.test_enqueue_offer import SLOW_COMMIT

#: Fast clocks, but no sweep within a test: whatever is offered, is offered by an event.
NO_SWEEP = FAST | {"sweep_seconds": 3600.0, "agent_messages_per_second": 1000}

#: A test-only gate at the commit of every wrap-up: it waits while the test holds
#: advisory lock 2128 (the call's deferred trigger runs at commit, once it is wrapped up).
GATED_WRAP_UP = """
CREATE FUNCTION gated_wrap_up() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_lock_shared(2128);
    PERFORM pg_advisory_unlock_shared(2128);
    RETURN NULL;
END
$$;
CREATE CONSTRAINT TRIGGER gated_wrap_up AFTER UPDATE ON calls
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW
    WHEN (OLD.wrapped_up_at IS NULL AND NEW.wrapped_up_at IS NOT NULL)
    EXECUTE FUNCTION gated_wrap_up();
"""


async def _waiting(client: TestClient[Any, Any], call: str) -> dict[str, Any]:
    """Queue ``call`` while nobody is free, and wait for the round its ``queue`` event
    wakes (a miss): after it, no event of the call is left to wake a round later."""
    router = client.app[app_keys.ROUTER]
    rounds = router.rounds
    waiting = await enqueue(client, call)
    assert waiting["call"]["offered_to"] is None

    async def its_round() -> bool:
        return router.rounds > rounds

    await eventually(its_round)
    return waiting


async def _on_a_call(client: TestClient[Any, Any], panel: Panel, call: str) -> int:
    """Queue ``call``, let the panel's agent take it and end it: the agent is in its
    wrap-up; the call's id."""
    await enqueue(client, call)
    offer = await panel.until(lambda m: m["type"] == "offer")
    await panel.send(type="accept", offer_id=offer["offer_id"], ref=f"accept-{call}")
    ack = await panel.until(lambda m: m.get("ref") == f"accept-{call}")
    assert ack["type"] == "ack", ack
    await panel.send(type="end", call_id=ack["call_id"], outcome="completed", ref=f"end-{call}")
    await panel.until(lambda m: m.get("ref") == f"end-{call}")
    await panel.state("wrap_up")
    call_id: int = ack["call_id"]
    return call_id


async def test_a_wrap_up_offers_the_agent_it_frees_the_call_waiting_with_no_round(
    app_factory: AppFactory,
) -> None:
    client = await app_factory(**NO_SWEEP)
    router = client.app[app_keys.ROUTER]
    await make_queue(client, "general", wrap_up_seconds=600, wrap_up_max_seconds=600)
    _, token = await make_agent(client, "ada")
    panel = await Panel.open(client, token)
    await panel.send(type="available")
    await panel.state("available")
    first = await _on_a_call(client, panel, "first")
    waiting = await _waiting(client, "second")  # nobody free: it waits
    wakes, made = router.wakes, router.offers_made

    await panel.send(type="wrap_up", call_id=first, ref="w")
    ack = await panel.until(lambda m: m.get("ref") == "w")
    assert ack["type"] == "ack", ack
    # The offer came from the wrap-up's own statement: counted and armed by the
    # router, and no round was asked for.
    offer = await panel.until(lambda m: m["type"] == "offer")
    assert offer["call_id"] == waiting["call"]["id"]
    assert router.offers_made == made + 1 and offer["offer_id"] in router._timers
    assert router.wakes == wakes
    # The agent went from its wrap-up straight to the offer (one commit).
    states = [m["agent"]["state"] for m in panel.received if m["type"] == "state"]
    assert states[-1] == "offered" and "available" not in states[states.index("wrap_up") :]
    await panel.close()


async def _queued_while_committing(
    client: TestClient[Any, Any],
    pool: asyncpg.Pool[Any],
    gate: tuple[str, int],
    free: Callable[[], Awaitable[None]],
) -> dict[str, Any]:
    """``free`` sends a statement that frees an agent, held at its commit by ``gate``
    (a deferred trigger's SQL and the advisory lock it waits on). Meanwhile a call is
    queued, unseen by that statement's claim, and its own round runs and misses the
    agent, who is not free yet. Then the commit goes on. The late call's answer."""
    router = client.app[app_keys.ROUTER]
    trigger, lock = gate
    await pool.execute(trigger)
    holder = await pool.acquire()
    try:
        await holder.execute("SELECT pg_advisory_lock($1)", lock)
        await free()

        async with pool.acquire() as probe:
            await waits_behind(probe, holder)  # freed, claimed (nothing waits), waiting to commit
        rounds = router.rounds
        late = await enqueue(client, "late")
        assert late["call"]["offered_to"] is None  # the agent is not free in its snapshot

        async def missed() -> bool:
            return router.rounds > rounds  # the call's own round (its queue event)

        await eventually(missed)
        assert await pool.fetchval("SELECT count(*) FROM call_offers WHERE result IS NULL") == 0
        await holder.execute("SELECT pg_advisory_unlock($1)", lock)
    finally:
        await pool.release(holder)
    return late


async def test_a_call_queued_while_the_wrap_up_commits_is_offered_to_the_agent_it_frees(
    app_factory: AppFactory, pool: asyncpg.Pool[Any]
) -> None:
    """The race ``Router.freed`` is for: the wrap-up's claim finds nothing waiting, a
    call is queued before the wrap-up commits, and that call's round runs while the
    agent is not free yet and misses it. Only the wrap-up's own instance can then
    bring the two together, and it does: the call's event came after its mark."""
    client = await app_factory(**NO_SWEEP)
    await make_queue(client, "general", wrap_up_seconds=600, wrap_up_max_seconds=600)
    _, token = await make_agent(client, "ada")
    panel = await Panel.open(client, token)
    await panel.send(type="available")
    await panel.state("available")
    first = await _on_a_call(client, panel, "first")

    async def wrap_up() -> None:
        await panel.send(type="wrap_up", call_id=first, ref="w")

    late = await _queued_while_committing(client, pool, (GATED_WRAP_UP, 2128), wrap_up)
    ack = await panel.until(lambda m: m.get("ref") == "w")
    assert ack["type"] == "ack", ack
    offer = await panel.until(lambda m: m["type"] == "offer")
    assert offer["call_id"] == late["call"]["id"]
    await panel.close()


async def test_wrap_ups_and_enqueues_racing_on_two_instances_leave_no_pair_waiting(
    app_factory: AppFactory, pool: asyncpg.Pool[Any]
) -> None:
    """Agents on either instance wrap up (and so go free) while calls are handed in to
    either, all at once, round after round: every call is offered and answered by the
    statements' own claims and the events (the sweep is an hour away), once each."""
    one = await app_factory(**NO_SWEEP)
    two = await app_factory(**NO_SWEEP)
    instances: list[TestClient[Any, Any]] = [one, two]
    # Each enqueue's claim and its commit drawn apart (test-only), as in the
    # enqueue's race test: the window in which a wrap-up's claim cannot see the call.
    await pool.execute(SLOW_COMMIT)
    await make_queue(one, "general", wrap_up_seconds=600, wrap_up_max_seconds=600)
    panels = []
    for i in range(6):
        _, token = await make_agent(instances[i % 2], f"agent{i}")
        panel = await Panel.open(instances[i % 2], token)
        await panel.send(type="available")
        await panel.state("available")
        panels.append(panel)
    rounds = 6
    answered: list[int] = []
    held: dict[int, int] = {}

    async def agent(n: int, panel: Panel) -> None:
        """Wrap up the call held (going free), take the next offer and end it."""
        if n in held:
            await panel.send(type="wrap_up", call_id=held.pop(n), ref="w")
        offer = await panel.until(lambda m: m["type"] == "offer", timeout=20)
        await panel.send(type="accept", offer_id=offer["offer_id"], ref="accept")
        ack = await panel.until(lambda m: m["type"] == "error" or m.get("to") == "accept")
        assert ack["type"] == "ack", ack
        answered.append(ack["call_id"])
        await panel.send(type="end", call_id=ack["call_id"], outcome="completed", ref="end")
        await panel.until(lambda m: m["type"] == "ack" and m["to"] == "end")
        held[n] = ack["call_id"]

    for r in range(rounds):
        await asyncio.gather(
            *(
                enqueue(instances[n % 2], f"race-{r}-{n}", ani=f"+1212555{r:02d}{n:02d}")
                for n in range(len(panels))
            ),
            *(agent(n, p) for n, p in enumerate(panels)),
        )
        assert await pool.fetchval("SELECT count(*) FROM waiting_calls") == 0
    total = rounds * len(panels)
    assert len(answered) == total and len(set(answered)) == total
    await no_call_offered_twice_at_once(pool)
    for p in panels:
        await p.close()


#: A test-only gate at the commit of every agent's going available (the agents' row
#: deferred trigger): it waits while the test holds advisory lock 2129.
GATED_AVAILABLE = """
CREATE FUNCTION gated_available() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_lock_shared(2129);
    PERFORM pg_advisory_unlock_shared(2129);
    RETURN NULL;
END
$$;
CREATE CONSTRAINT TRIGGER gated_available AFTER UPDATE ON agents
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW
    WHEN (OLD.state <> 'available' AND NEW.state = 'available')
    EXECUTE FUNCTION gated_available();
"""


async def test_going_available_is_offered_the_call_waiting_with_no_round(
    app_factory: AppFactory,
) -> None:
    client = await app_factory(**NO_SWEEP)
    router = client.app[app_keys.ROUTER]
    await make_queue(client, "general")
    waiting = await _waiting(client, "first")  # nobody is available: it waits
    _, token = await make_agent(client, "ada")
    panel = await Panel.open(client, token)
    wakes, made = router.wakes, router.offers_made
    await panel.send(type="available", ref="a")
    ack = await panel.until(lambda m: m.get("ref") == "a")
    assert ack["type"] == "ack", ack
    offer = await panel.until(lambda m: m["type"] == "offer")
    assert offer["call_id"] == waiting["call"]["id"]
    assert router.offers_made == made + 1 and offer["offer_id"] in router._timers
    assert router.wakes == wakes
    await panel.close()


async def test_a_call_queued_while_going_available_commits_is_offered_to_the_agent(
    app_factory: AppFactory, pool: asyncpg.Pool[Any]
) -> None:
    """``Router.freed``'s race again, for ``available``: the claim finds nothing, a
    call is queued before the agent's commit, and its own round misses the agent."""
    client = await app_factory(**NO_SWEEP)
    await make_queue(client, "general")
    _, token = await make_agent(client, "ada")
    panel = await Panel.open(client, token)

    async def available() -> None:
        await panel.send(type="available", ref="a")

    late = await _queued_while_committing(client, pool, (GATED_AVAILABLE, 2129), available)
    ack = await panel.until(lambda m: m.get("ref") == "a")
    assert ack["type"] == "ack", ack
    offer = await panel.until(lambda m: m["type"] == "offer")
    assert offer["call_id"] == late["call"]["id"]
    await panel.close()


#: Holds at commit the transaction that offers one call (a deferred trigger on the
#: offer's insert waits while the test holds advisory lock 2130).
GATED_OFFER = """
CREATE FUNCTION gated_offer() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.call_id = {call} THEN
        PERFORM pg_advisory_lock_shared(2130);
        PERFORM pg_advisory_unlock_shared(2130);
    END IF;
    RETURN NULL;
END
$$;
CREATE CONSTRAINT TRIGGER gated_offer AFTER INSERT ON call_offers
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION gated_offer();
"""


async def test_a_call_another_claim_locked_and_let_go_is_offered_to_the_agent_that_skipped_it(
    app_factory: AppFactory, pool: asyncpg.Pool[Any]
) -> None:
    """A claim locks the head of every queue its agent serves and offers one (migration
    0030). Bob serves q1 and q2 and his claim offers him w1 while it holds w2, so Ada's
    claim, serving q2 only, skips w2 and offers nothing. At Bob's commit the claim
    announces w2's queue, and Ada is offered w2 (found by a review: before, nothing
    woke a round and Ada stayed free beside w2 until the sweep)."""
    client = await app_factory(**NO_SWEEP)
    await make_queue(client, "q1")
    await make_queue(client, "q2")
    w1 = (await enqueue(client, "w1", queue="q1"))["call"]["id"]
    w2 = (await enqueue(client, "w2", queue="q2"))["call"]["id"]
    _, bob = await make_agent(client, "bob", ["q1", "q2"])
    _, ada = await make_agent(client, "ada", ["q2"])
    b = await Panel.open(client, bob)
    a = await Panel.open(client, ada)
    await pool.execute(GATED_OFFER.format(call=w1))
    holder = await pool.acquire()
    try:
        await holder.execute("SELECT pg_advisory_lock(2130)")
        await b.send(type="available", ref="b")  # locks w1 and w2, offers w1, held

        async with pool.acquire() as probe:
            await waits_behind(probe, holder)
        await a.send(type="available", ref="a")  # w2 is locked: skipped, no offer
        ack = await a.until(lambda m: m.get("ref") == "a")
        assert ack["type"] == "ack", ack
        offered = "SELECT offered_to FROM waiting_calls WHERE call_id = $1"
        assert await pool.fetchval(offered, w2) is None
        await holder.execute("SELECT pg_advisory_unlock(2130)")
    finally:
        await pool.release(holder)
    assert (await b.until(lambda m: m["type"] == "offer"))["call_id"] == w1
    assert (await a.until(lambda m: m["type"] == "offer"))["call_id"] == w2
    await a.close()
    await b.close()


def test_the_claims_notification_is_the_queue_event() -> None:
    """Migration 0030 writes the channel and the ``queue`` event's payload as literals."""
    assert CHANNEL == "callcenter"
    assert Event("queue", "q2").encode() == "queue:q2"
