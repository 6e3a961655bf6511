"""The enqueue makes the router's one step itself (migration 0027, issue 21).

The statement that stores a new call also runs the router's claim
(``queue_offer_next``, the function ``offer_next`` runs) and hands the offer
it made to this instance's router. Its event is ``offered:<queue>``, which
wakes no router, only when that offer is of the new call; otherwise it is
``queue:<queue>`` as before, since an agent freed by a transaction
concurrent with the enqueue may not have seen the call (see
``Router.dispatch``). These tests hold each part: the claim sees the call the
same statement inserted, the offer reaches the agent with no router round,
the events' kinds, no claim when the peer hung up first or inside a caller's
transaction, and enqueues and frees racing on two instances leave no pair
waiting for the sweep.
"""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
from aiohttp.test_utils import TestClient

from callcenter import app_keys
from callcenter.events import Event, Subscription
from callcenter.queue.calls import MadeOffer
from callcenter.queue.models import CallIn
from callcenter.queue.router import WAKING, offer_next
from tests.conftest import AppFactory
from tests.integration.queue_helpers import (
    FAST,
    Panel,
    enqueue,
    make_agent,
    make_queue,
    no_call_offered_twice_at_once,
    waits_behind,
)
from tests.integration.test_router import BASE, _add_agents, _add_call

#: Fast clocks, but no sweep within a test: whatever is offered, is offered by an event.
NO_SWEEP = FAST | {"sweep_seconds": 3600.0}


#: A test-only pause at the commit of every enqueue (the waiting row's deferred trigger).
SLOW_COMMIT = """
CREATE FUNCTION slow_commit() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_sleep(random() * 0.02);
    RETURN NULL;
END
$$;
CREATE CONSTRAINT TRIGGER slow_commit AFTER INSERT ON waiting_calls
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION slow_commit();
"""


def _drain(sub: Subscription) -> list[Event]:
    events = []
    while (event := sub.get_nowait()) is not None:
        events.append(event)
    return events


class Recorder:
    """A router as the desk sees it (``calls.Offers``): the offers handed over."""

    def __init__(self) -> None:
        self.offers: list[MadeOffer] = []

    def made(self, offer: MadeOffer) -> None:
        self.offers.append(offer)


async def test_the_enqueue_offers_its_call_to_a_free_agent_with_no_router_round(
    app_factory: AppFactory,
) -> None:
    client = await app_factory(**NO_SWEEP)
    router = client.app[app_keys.ROUTER]
    bus = client.app[app_keys.BUS]
    await make_queue(client, "general")
    agent_id, token = await make_agent(client, "ada")
    panel = await Panel.open(client, token)
    await panel.send(type="available")
    # Delivered in commit order: set_available's free:<id> before the state the panel shows.
    await panel.state("available")
    before = router.offers_made
    heard = bus.subscribe(1000)
    try:
        answer = await enqueue(client, "own-offer")
        call_id = answer["call"]["id"]
        # The answer is the call as the statement left it: offered to the free agent
        # (the claim saw the call inserted by its own statement).
        assert answer["call"]["offered_to"] == agent_id
        offer = await panel.until(lambda m: m["type"] == "offer")
        assert offer["call_id"] == call_id
        # The enqueue's event (sent before the agent's, which the offer followed)
        # says the queue changed, and wakes no router.
        events = _drain(heard)
    finally:
        bus.unsubscribe(heard)
    assert Event("offered", "general") in events, events
    assert not [e for e in events if e.kind in WAKING], events
    # The router took the offer over as one of its own: counted, its timer armed.
    assert router.offers_made == before + 1
    assert offer["offer_id"] in router._timers
    await panel.close()


async def test_an_offer_of_another_call_still_wakes_the_routers(
    app_factory: AppFactory, pool: asyncpg.Pool[Any]
) -> None:
    """The claim offers the head of the free agent's queues, which may be an older
    call: the new one still waits, and its event must wake every router (an agent
    freed concurrently may not have seen it)."""
    client = await app_factory(**NO_SWEEP)
    desk = client.app[app_keys.DESK]
    bus = client.app[app_keys.BUS]
    await make_queue(client, "general")
    # No router rounds here: only the enqueue's own claim offers anything.
    await client.app[app_keys.ROUTER].supervisor.stop()
    async with pool.acquire() as conn:
        # An older call and a free agent left unmatched, as when the agent's free round
        # has not run yet.
        older = await _add_call(conn, 0, BASE, 0.0)
        (agent_id,) = await _add_agents(conn, 1)
    recorder = Recorder()
    desk.offers = recorder
    heard = bus.subscribe(1000)
    try:
        answer = await desk.incoming(CallIn(call_id="newer", queue="general"))
        await _until(heard, Event("queue", "general"))
    finally:
        bus.unsubscribe(heard)
    assert answer.call.offered_to is None
    assert [(o.call_id, o.agent_id, o.more) for o in recorder.offers] == [(older, agent_id, False)]


#: A test-only gate at the commit of every enqueue: it waits while the test holds
#: advisory lock 2127 (the waiting row's deferred trigger runs at commit).
GATED_COMMIT = """
CREATE FUNCTION gated_commit() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_lock_shared(2127);
    PERFORM pg_advisory_unlock_shared(2127);
    RETURN NULL;
END
$$;
CREATE CONSTRAINT TRIGGER gated_commit AFTER INSERT ON waiting_calls
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION gated_commit();
"""


async def test_an_agent_freed_while_the_enqueue_commits_is_brought_the_call_by_its_event(
    app_factory: AppFactory, pool: asyncpg.Pool[Any]
) -> None:
    """The race the ``queue`` event is kept for: the enqueue's claim finds no free
    agent, an agent goes available before the enqueue commits, and that agent's round
    cannot see the uncommitted call. The pair exists only after the enqueue's commit,
    so that commit must wake the routers."""
    client = await app_factory(**NO_SWEEP)
    desk = client.app[app_keys.DESK]
    bus = client.app[app_keys.BUS]
    await make_queue(client, "general")
    await client.app[app_keys.ROUTER].supervisor.stop()  # this test runs the rounds
    async with pool.acquire() as conn:
        (agent_id,) = await _add_agents(conn, 1)
        await conn.execute("UPDATE agents SET state = 'offline' WHERE id = $1", agent_id)
        await conn.execute(GATED_COMMIT)
    recorder = Recorder()
    desk.offers = recorder
    heard = bus.subscribe(1000)
    gate = await pool.acquire()
    try:
        await gate.execute("SELECT pg_advisory_lock(2127)")
        enqueueing = asyncio.create_task(desk.incoming(CallIn(call_id="held")))

        async with pool.acquire() as probe:
            await waits_behind(probe, gate)  # claimed (nothing: nobody free), waiting to commit
        async with pool.acquire() as conn:
            await conn.execute(
                "UPDATE agents SET state = 'available', idle_since = now() WHERE id = $1",
                agent_id,
            )
            assert await offer_next(conn) is None, "the agent's round cannot see the call"
        await gate.execute("SELECT pg_advisory_unlock(2127)")
        answer = await enqueueing
        await _until(heard, Event("queue", "general"))
    finally:
        bus.unsubscribe(heard)
        await pool.release(gate)
    assert answer.call.offered_to is None and recorder.offers == []
    async with pool.acquire() as conn:
        row = await offer_next(conn)  # the round the event wakes
    assert row is not None and (row["call_id"], row["agent_id"]) == (answer.call.id, agent_id)


async def test_no_claim_when_the_peer_hung_up_first_or_in_a_callers_transaction(
    app_factory: AppFactory, pool: asyncpg.Pool[Any]
) -> None:
    client = await app_factory(**NO_SWEEP)
    desk = client.app[app_keys.DESK]
    await make_queue(client, "general")
    await client.app[app_keys.ROUTER].supervisor.stop()
    async with pool.acquire() as conn:
        (agent_id,) = await _add_agents(conn, 1)
    recorder = Recorder()
    desk.offers = recorder
    # The hang-up came first (migration 0020): the gateway ends the call next, and the
    # enqueue offers it to nobody.
    await pool.execute("INSERT INTO telephony_tombstones (external_id) VALUES ('generic:gone')")
    answer = await desk.incoming(CallIn(call_id="generic:gone"), peer=("generic", "gone"))
    assert answer.peer_hung_up and answer.call.offered_to is None
    # Inside a caller's transaction the offer could not be handed over once committed.
    async with pool.acquire() as conn, conn.transaction():
        answer = await desk.incoming(CallIn(call_id="in-tx"), conn=conn)
    assert answer.call.offered_to is None
    assert recorder.offers == []
    # Nothing else held those claims back: the next enqueue's claim offers the agent
    # the head of its queue.
    await desk.incoming(CallIn(call_id="next"))
    assert [o.agent_id for o in recorder.offers] == [agent_id]


async def test_a_retried_enqueue_makes_no_second_offer(
    app_factory: AppFactory, pool: asyncpg.Pool[Any]
) -> None:
    client = await app_factory(**NO_SWEEP)
    router = client.app[app_keys.ROUTER]
    await make_queue(client, "general")
    _, token = await make_agent(client, "ada")
    _, token2 = await make_agent(client, "bob")
    panels = [await Panel.open(client, t) for t in (token, token2)]
    for p in panels:
        await p.send(type="available")
        await p.state("available")
    before = router.offers_made
    first = await enqueue(client, "twice")
    again = await enqueue(client, "twice")
    assert again["created"] is False and again["call"]["id"] == first["call"]["id"]
    assert router.offers_made == before + 1
    offers = await pool.fetchval(
        "SELECT count(*) FROM call_offers WHERE call_id = $1", first["call"]["id"]
    )
    assert offers == 1
    for p in panels:
        await p.close()


async def _until(sub: Subscription, wanted: Event) -> None:
    """Until ``wanted`` is heard (``sub.get`` waits for the next event)."""
    while await asyncio.wait_for(sub.get(), 10) != wanted:
        pass


async def test_enqueues_and_frees_racing_on_two_instances_leave_no_pair_waiting(
    app_factory: AppFactory, pool: asyncpg.Pool[Any]
) -> None:
    """Calls handed in to either instance while agents of either go available, all at
    once, round after round: every call is offered and answered by the events alone
    (the sweep is an hour away), once each, never to two agents at a time."""
    # Agents here act as fast as the test runs: no limit on their messages.
    one = await app_factory(**NO_SWEEP, agent_messages_per_second=1000)
    two = await app_factory(**NO_SWEEP, agent_messages_per_second=1000)
    instances: list[TestClient[Any, Any]] = [one, two]
    # The enqueue's claim and its commit drawn apart (a few ms at commit, test-only):
    # the window in which an agent freed concurrently sees neither the call nor its
    # offer, which only the enqueue's own event can then make up for.
    await pool.execute(SLOW_COMMIT)
    # Agents stay in their wrap-up after a call (the sweep that would end it is an
    # hour away): they take a call only after going available.
    await make_queue(one, "general", wrap_up_seconds=600, wrap_up_max_seconds=600)
    panels = []
    for i in range(8):
        _, token = await make_agent(instances[i % 2], f"agent{i}")
        panels.append(await Panel.open(instances[i % 2], token))
    rounds = 8
    answered: list[int] = []

    async def agent(panel: Panel) -> None:
        """Go available, take an offer, end the call (and stay in its wrap-up)."""
        await panel.send(type="available")
        offer = await panel.until(lambda m: m["type"] == "offer", timeout=20)
        await panel.send(type="accept", offer_id=offer["offer_id"], ref="accept")
        ack = await panel.until(lambda m: m["type"] == "error" or m.get("to") == "accept")
        assert ack["type"] == "ack", ack
        answered.append(ack["call_id"])
        await panel.send(type="end", call_id=ack["call_id"], outcome="completed")
        await panel.until(lambda m: m["type"] == "ack" and m["to"] == "end")

    for r in range(rounds):
        # Each round: as many calls as agents, handed in while every agent goes
        # available, all at once; each agent takes one. A call and an agent that miss
        # each other are left waiting unless an event brings them together.
        await asyncio.gather(
            *(
                enqueue(instances[n % 2], f"race-{r}-{n}", ani=f"+1212555{r:02d}{n:02d}")
                for n in range(len(panels))
            ),
            *(agent(p) for p in panels),
        )
        assert await pool.fetchval("SELECT count(*) FROM waiting_calls") == 0
    total = rounds * len(panels)
    assert len(answered) == total and len(set(answered)) == total
    offers = await pool.fetch("SELECT call_id, result FROM call_offers")
    assert sorted(r["call_id"] for r in offers if r["result"] == "accepted") == sorted(answered)
    await no_call_offered_twice_at_once(pool)
    for p in panels:
        await p.close()
