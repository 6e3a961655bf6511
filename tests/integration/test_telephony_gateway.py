"""The telephony gateway and the bridger, with a recording connector as the peer.

Every adapter goes through these two, so the rules of a call's life at the
telephone (idempotency, events out of order, exactly-once connect, failed
connects) are tested here once, on the real database.
"""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import pytest

from callcenter import app_keys
from callcenter.errors import NotFound, Unprocessable
from callcenter.events import Event
from callcenter.telephony_adapters.base import (
    Digits,
    Hangup,
    Incoming,
    external_id,
    split_external_id,
)
from callcenter.telephony_adapters.gateway import GONE_BEFORE_INCOMING, TelephonyGateway
from tests.conftest import AppFactory
from tests.integration.queue_helpers import (
    FAST,
    enqueue,
    eventually,
    make_agent,
    make_customer,
)
from tests.integration.telephony_helpers import (
    RecordingConnector,
    accept_next_offer,
    available_panel,
    make_agent_with_endpoint,
)

#: Quick connect retries so failure paths finish within a test.
QUICK = FAST | {"connect_backoff_seconds": 0.05, "connect_attempts": 3}


def test_external_ids_carry_the_peer() -> None:
    assert external_id("twilio", "CA1") == "twilio:CA1"
    assert split_external_id("twilio:CA1") == ("twilio", "CA1")
    assert split_external_id("ari:1754402591.17") == ("ari", "1754402591.17")
    assert split_external_id("generic:a:b") == ("generic", "a:b")
    assert split_external_id("pbx-42") is None
    assert split_external_id("other:x") is None
    assert split_external_id("twilio:") is None


async def _waiting(pool: asyncpg.Pool[Any], call_id: int) -> bool:
    found = await pool.fetchval("SELECT 1 FROM waiting_calls WHERE call_id = $1", call_id)
    return found is not None


async def test_incoming_is_idempotent_by_peer_call_id(
    app_factory: AppFactory, pool: asyncpg.Pool[Any]
) -> None:
    client = await app_factory(**FAST)
    gateway = client.app[app_keys.GATEWAY]
    first = await gateway.handle("generic", Incoming("c-1", ani="+12125550100"))
    assert first.created and first.waiting and first.call is not None
    assert first.call.call_id == "generic:c-1" and first.call.position == 1
    again = await gateway.handle("generic", Incoming("c-1", ani="+12125550100"))
    assert not again.created and again.call is not None and again.call.id == first.call.id
    # The same peer call id from another peer is another call.
    other = await gateway.handle("twilio", Incoming("c-1", ani="+12125550100"))
    assert other.created and other.call is not None and other.call.id != first.call.id
    assert await pool.fetchval("SELECT count(*) FROM calls") == 2
    assert await pool.fetchval("SELECT count(*) FROM waiting_calls") == 2


async def test_hangup_while_waiting_abandons_once(
    app_factory: AppFactory, pool: asyncpg.Pool[Any]
) -> None:
    client = await app_factory(**FAST)
    gateway = client.app[app_keys.GATEWAY]
    view = await gateway.handle("generic", Incoming("c-2", ani="+12125550101"))
    assert view.call is not None
    gone = await gateway.handle("generic", Hangup("c-2", cause="caller"))
    assert gone.call is not None and gone.call.state == "abandoned"
    assert gone.call.end_reason == "hangup: caller"
    assert not await _waiting(pool, view.call.id)
    repeat = await gateway.handle("generic", Hangup("c-2"))
    assert repeat.call is not None and repeat.call.state == "abandoned"
    assert repeat.call.ended_at == gone.call.ended_at
    late = await gateway.handle("generic", Digits("c-2", "1001"))
    assert late.digits == "ignored" and late.note == "the call is abandoned"
    retried = await gateway.handle("generic", Incoming("c-2", ani="+12125550101"))
    assert not retried.created and retried.state == "abandoned"


async def test_hangup_before_incoming_records_the_call_abandoned_never_queued(
    app_factory: AppFactory, pool: asyncpg.Pool[Any]
) -> None:
    client = await app_factory(**FAST)
    gateway = client.app[app_keys.GATEWAY]
    customer_id = await make_customer(client, "C-7", 30000, "+12125550107")
    early = await gateway.handle("twilio", Hangup("CAearly", cause="completed"))
    assert early.call is None and early.note is not None
    digits = await gateway.handle("twilio", Digits("CAearly", "C-7"))
    assert digits.digits == "ignored"
    late = await gateway.handle("twilio", Incoming("CAearly", ani="+12125550107"))
    assert late.created and late.call is not None
    assert late.call.state == "abandoned" and late.call.end_reason == GONE_BEFORE_INCOMING
    assert late.call.customer is not None and late.call.customer.id == customer_id
    assert not await _waiting(pool, late.call.id)
    waited = await pool.fetchval(
        "SELECT details->>'waited_seconds' FROM interactions WHERE id ="
        " (SELECT interaction_id FROM calls WHERE id = $1)",
        late.call.id,
    )
    assert float(waited) == 0
    again = await gateway.handle("twilio", Incoming("CAearly", ani="+12125550107"))
    assert not again.created and again.call is not None and again.call.id == late.call.id


async def test_a_hangup_while_the_incoming_is_being_stored_still_ends_the_call(
    app_factory: AppFactory, pool: asyncpg.Pool[Any], db_url: str
) -> None:
    """The hang-up comes after the incoming's look-up found no call, and is over (its
    tombstone written, its own second look-up finding no call) before the incoming's
    call is stored: the incoming must see the tombstone and end the call itself.

    The incoming's insert is held by a transaction of the test's own that inserted
    the same external id and has not committed (the unique index makes it wait);
    its rollback lets the incoming go on. A tombstone read in the snapshot the
    enqueue started with would miss the hang-up and leave the call waiting."""
    client = await app_factory(**FAST)
    gateway = client.app[app_keys.GATEWAY]
    blocker = await asyncpg.connect(db_url)
    try:
        holding = blocker.transaction()
        await holding.start()
        await blocker.execute(
            "INSERT INTO calls (external_id, queue, service_key)"
            " VALUES ('generic:c-race', 'general', now())"
        )
        incoming = asyncio.create_task(gateway.handle("generic", Incoming("c-race")))

        async def held() -> bool:  # the incoming's insert waits for the test's transaction
            stuck = await pool.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE $1 = ANY (pg_blocking_pids(pid))",
                blocker.get_server_pid(),
            )
            return bool(stuck)

        await eventually(held)
        gone = await gateway.handle("generic", Hangup("c-race", cause="caller"))
        assert gone.call is None and gone.note is not None  # no call for it to end yet
        await holding.rollback()
        view = await asyncio.wait_for(incoming, 10)
    finally:
        await blocker.close()
    assert view.created and view.call is not None
    assert view.call.state == "abandoned" and view.call.end_reason is not None
    assert view.call.end_reason.startswith("hangup")  # the peer knows: nothing to tell it
    assert not await _waiting(pool, view.call.id)


async def test_digits_identify_a_waiting_caller_and_say_when_nobody_matches(
    app_factory: AppFactory,
) -> None:
    client = await app_factory(**FAST)
    gateway = client.app[app_keys.GATEWAY]
    await make_customer(client, "C-9", 30000, "+12125550109")
    view = await gateway.handle("generic", Incoming("c-3", ani="+44 20 7946 0999"))
    assert view.identify == "unknown" and not view.known_caller
    wrong = await gateway.handle("generic", Digits("c-3", "NOPE"))
    assert wrong.digits == "not_found" and wrong.waiting
    right = await gateway.handle("generic", Digits("c-3", "C-9"))
    assert right.digits == "identified" and right.known_caller
    assert right.call is not None and right.call.tier == "platinum"
    with pytest.raises(NotFound):
        await gateway.handle("generic", Digits("never-came", "C-9"))


async def test_bad_events_are_refused_naming_the_field(app_factory: AppFactory) -> None:
    client = await app_factory(**FAST)
    gateway = client.app[app_keys.GATEWAY]
    with pytest.raises(Unprocessable) as bad_id:
        await gateway.handle("generic", Incoming(" padded "))
    assert bad_id.value.field == "call_id"
    with pytest.raises(Unprocessable) as bad_queue:
        await gateway.handle("generic", Incoming("c-4", queue="no-such-queue"))
    assert bad_queue.value.field == "queue"
    with pytest.raises(Unprocessable) as bad_ani:
        await gateway.handle("generic", Incoming("c-5", ani="1" * 100))
    assert bad_ani.value.field == "ani"
    # Text PostgreSQL cannot store is refused naming the field, never a 500.
    with pytest.raises(Unprocessable) as nul_ani:
        await gateway.handle("twilio", Incoming("c-6", ani="+1212\x00555"))
    assert nul_ani.value.field == "ani"
    with pytest.raises(Unprocessable) as nul_number:
        await gateway.handle("twilio", Incoming("c-6", customer_number="C\x001"))
    assert nul_number.value.field == "customer_number"
    with pytest.raises(Unprocessable) as surrogate:
        await gateway.handle("twilio", Incoming("c-6", ani="\ud800"))
    assert surrogate.value.field == "ani"
    waiting = await gateway.handle("twilio", Incoming("c-6"))
    with pytest.raises(Unprocessable) as nul_digits:
        await gateway.handle("twilio", Digits("c-6", "1\x002"))
    assert nul_digits.value.field == "digits"
    # A hang-up is never refused for its free-text cause: the call must end.
    gone = await gateway.handle("twilio", Hangup("c-6", cause="bye?\x00\udfff"))
    assert gone.call is not None and gone.call.state == "abandoned"
    assert gone.call.end_reason == "hangup: bye?\ufffd\ufffd"
    assert waiting.call is not None and gone.call.id == waiting.call.id
    early = await gateway.handle("twilio", Hangup("c-7", cause="\x00"))
    assert early.call is None


async def test_accept_connects_once_and_hangup_completes(
    app_factory: AppFactory, pool: asyncpg.Pool[Any]
) -> None:
    client = await app_factory(**QUICK)
    fake = RecordingConnector("generic")
    client.app[app_keys.GATEWAY].register(fake)
    await client.put("/api/queues/general", json={"wrap_up_seconds": 30})
    agent_id, token = await make_agent_with_endpoint(client, "ada", "sip:ada@pbx.example")
    panel = await available_panel(client, token)
    gateway = client.app[app_keys.GATEWAY]
    view = await gateway.handle("generic", Incoming("c-10", ani="+12125550110"))
    assert view.call is not None
    assert await accept_next_offer(panel) == view.call.id
    await eventually(lambda: _connected(pool, view.call.id))  # type: ignore[union-attr]
    assert len(fake.connects) == 1
    call, agent = fake.connects[0]
    assert call.peer_call_id == "c-10" and call.id == view.call.id
    assert (agent.agent_id, agent.name, agent.endpoint) == (agent_id, "ada", "sip:ada@pbx.example")

    done = await gateway.handle("generic", Hangup("c-10"))
    assert done.call is not None and done.call.state == "completed"
    await panel.state("wrap_up")
    assert len(fake.connects) == 1
    await panel.close()


async def _connected(pool: asyncpg.Pool[Any], call_id: int) -> bool:
    state = await pool.fetchval(
        "SELECT state FROM call_bridges WHERE call_id = $1 AND state <> 'failed'", call_id
    )
    return state == "connected"


async def test_two_instances_connect_a_call_exactly_once(
    app_factory: AppFactory, pool: asyncpg.Pool[Any]
) -> None:
    one = await app_factory(**QUICK)
    two = await app_factory(**QUICK)
    fakes = [RecordingConnector("twilio"), RecordingConnector("twilio")]
    one.app[app_keys.GATEWAY].register(fakes[0])
    two.app[app_keys.GATEWAY].register(fakes[1])
    _, token = await make_agent_with_endpoint(one, "ada", "client:ada")
    panel = await available_panel(two, token)
    ids = []
    for n in range(3):
        gateway = (one if n % 2 else two).app[app_keys.GATEWAY]
        view = await gateway.handle("twilio", Incoming(f"CA{n}", ani=f"+1212555012{n}"))
        assert view.call is not None
        ids.append(view.call.id)
        assert await accept_next_offer(panel) == view.call.id
        await eventually(lambda cid=view.call.id: _connected(pool, cid))  # type: ignore[misc]
        await gateway.handle("twilio", Hangup(f"CA{n}", cause="completed"))
        await panel.send(type="available")
    connected = [c.id for f in fakes for c, _ in f.connects]
    assert sorted(connected) == sorted(ids)
    # Both catch-ups find nothing left to do.
    assert await one.app[app_keys.BRIDGER].catch_up() == 0
    assert await two.app[app_keys.BRIDGER].catch_up() == 0
    await panel.close()


async def test_failed_connect_is_retried_then_the_call_goes_back_with_its_key(
    app_factory: AppFactory, pool: asyncpg.Pool[Any]
) -> None:
    client = await app_factory(**QUICK)
    fake = RecordingConnector("generic", fail=3)
    client.app[app_keys.GATEWAY].register(fake)
    _, token = await make_agent_with_endpoint(client, "ada", "+15551230000")
    panel = await available_panel(client, token)
    gateway = client.app[app_keys.GATEWAY]
    view = await gateway.handle("generic", Incoming("c-20", ani="+12125550120"))
    assert view.call is not None
    call_id = view.call.id
    key = view.call.service_key
    await accept_next_offer(panel)
    await panel.state("not_responding")
    back = await client.get(f"/api/calls/{call_id}")
    body = await back.json()
    assert body["state"] == "waiting" and body["agent_id"] is None
    row = await pool.fetchrow(
        "SELECT service_key, offered_to FROM waiting_calls WHERE call_id = $1", call_id
    )
    assert row["service_key"] == key
    assert len(fake.connects) == 3
    await eventually(lambda: _bridge_failed(pool, call_id))
    bridges = await pool.fetch(
        "SELECT state, attempts, last_error FROM call_bridges WHERE call_id = $1", call_id
    )
    assert [(b["state"], b["attempts"]) for b in bridges] == [("failed", 3)]
    assert "refuses" in bridges[0]["last_error"]
    # The agent says it is available again: the call comes back to it and connects.
    await panel.send(type="available")
    assert await accept_next_offer(panel) == call_id
    await eventually(lambda: _connected(pool, call_id))
    assert len(fake.connects) == 4
    await panel.close()


async def test_a_call_that_never_connects_ends_transferred_and_is_hung_up(
    app_factory: AppFactory, pool: asyncpg.Pool[Any]
) -> None:
    client = await app_factory(**(QUICK | {"connect_max_requeues": 0, "connect_attempts": 2}))
    fake = RecordingConnector("generic", fail=100)
    client.app[app_keys.GATEWAY].register(fake)
    _, token = await make_agent_with_endpoint(client, "ada", "client:ada")
    panel = await available_panel(client, token)
    view = await client.app[app_keys.GATEWAY].handle("generic", Incoming("c-30"))
    assert view.call is not None
    call_id = view.call.id
    await accept_next_offer(panel)

    async def ended() -> bool:
        state = await pool.fetchval("SELECT state FROM calls WHERE id = $1", call_id)
        return bool(state == "transferred")

    await eventually(ended)
    await eventually(lambda: _true(bool(fake.hangups)))
    assert fake.hangups[0].id == call_id
    reason = await pool.fetchval("SELECT end_reason FROM calls WHERE id = $1", call_id)
    assert reason == "connect_failed"
    assert len(fake.connects) == 2

    # The releaser hears of the end too, and leaves the hang-up to the bridger: one, not two.
    async def release_decided() -> bool:
        state = await pool.fetchval("SELECT state FROM call_releases WHERE call_id = $1", call_id)
        return bool(state == "not_needed")

    await eventually(release_decided)
    assert len(fake.hangups) == 1
    await panel.close()


async def _bridge_failed(pool: asyncpg.Pool[Any], call_id: int) -> bool:
    state = await pool.fetchval("SELECT state FROM call_bridges WHERE call_id = $1", call_id)
    return bool(state == "failed")


async def _true(value: bool) -> bool:
    return value


async def test_an_agent_without_endpoint_sends_the_call_back(
    app_factory: AppFactory, pool: asyncpg.Pool[Any]
) -> None:
    client = await app_factory(**QUICK)
    fake = RecordingConnector("generic")
    client.app[app_keys.GATEWAY].register(fake)
    _, token = await make_agent(client, "noend")
    panel = await available_panel(client, token)
    view = await client.app[app_keys.GATEWAY].handle("generic", Incoming("c-40"))
    assert view.call is not None
    await accept_next_offer(panel)
    await panel.state("not_responding")
    assert await _waiting(pool, view.call.id)
    assert fake.connects == []
    await eventually(lambda: _bridge_failed(pool, view.call.id))  # type: ignore[union-attr]
    error = await pool.fetchval(
        "SELECT last_error FROM call_bridges WHERE call_id = $1", view.call.id
    )
    assert "no endpoint" in error
    await panel.close()


async def test_api_calls_need_no_connect_and_lost_events_are_caught_up(
    app_factory: AppFactory, pool: asyncpg.Pool[Any]
) -> None:
    client = await app_factory(**QUICK)
    gateway: TelephonyGateway = client.app[app_keys.GATEWAY]
    _, token = await make_agent_with_endpoint(client, "ada", "client:ada")
    panel = await available_panel(client, token)
    plain = await enqueue(client, "pbx-1")
    assert await accept_next_offer(panel) == plain["call"]["id"]
    await panel.send(type="end", call_id=plain["call"]["id"], outcome="completed")
    await panel.send(type="available")
    # No connector for generic yet: the accept's connect event finds nothing to do.
    view = await gateway.handle("generic", Incoming("c-50"))
    assert view.call is not None
    assert await accept_next_offer(panel) == view.call.id
    assert await pool.fetchval("SELECT count(*) FROM call_bridges") == 0
    fake = RecordingConnector("generic")
    gateway.register(fake)
    assert await client.app[app_keys.BRIDGER].catch_up() == 1
    assert [c.id for c, _ in fake.connects] == [view.call.id]
    assert await _connected(pool, view.call.id)
    assert await pool.fetchval("SELECT count(*) FROM call_bridges") == 1
    await panel.close()


async def _connect_events_until_marker(client: Any, sub: Any) -> list[str]:
    """The ``connect`` keys ``sub`` heard before a marker committed now: notifications
    reach the listener in commit order, so whatever committed before is in."""
    bus = client.app[app_keys.BUS]
    async with client.app[app_keys.POOL].acquire() as conn, conn.transaction():
        # Inside a transaction: delivered through the listener, after the earlier commits.
        await bus.publish(conn, [Event("connect", "marker")])
    keys = []
    while (event := await sub.get()).key != "marker":
        keys.append(event.key)
    return keys


async def test_the_accept_claims_the_bridge_for_this_instances_bridger(
    app_factory: AppFactory, pool: asyncpg.Pool[Any]
) -> None:
    client = await app_factory(**QUICK)
    fake = RecordingConnector("generic")
    client.app[app_keys.GATEWAY].register(fake)
    bridger = client.app[app_keys.BRIDGER]
    claimed_by_event: list[int] = []
    by_claim = bridger.bridge

    async def bridge(call_id: int) -> str | None:
        claimed_by_event.append(call_id)
        return await by_claim(call_id)

    bridger.bridge = bridge  # type: ignore[method-assign]
    agent_id, token = await make_agent_with_endpoint(client, "ada", "sip:ada@pbx.example")
    panel = await available_panel(client, token)
    view = await client.app[app_keys.GATEWAY].handle("generic", Incoming("c-60"))
    assert view.call is not None
    call_id = view.call.id
    sub = client.app[app_keys.BUS].subscribe(kinds={"connect"})
    assert await accept_next_offer(panel) == call_id
    # Committed with the accept, before its ack: the claim is this instance's bridger's.
    claim = await pool.fetchrow(
        "SELECT agent_id, claimed_by FROM call_bridges WHERE call_id = $1", call_id
    )
    assert claim is not None
    assert (claim["agent_id"], claim["claimed_by"]) == (agent_id, bridger.instance)
    await eventually(lambda: _connected(pool, call_id))
    assert [(c.id, c.peer_call_id, a.endpoint) for c, a in fake.connects] == [
        (call_id, "c-60", "sip:ada@pbx.example")
    ]
    # No connect event went out, so no bridger claimed it after the accept.
    assert await _connect_events_until_marker(client, sub) == []
    assert call_id not in claimed_by_event
    assert await pool.fetchval("SELECT count(*) FROM call_bridges WHERE call_id = $1", call_id) == 1
    await panel.close()


async def test_a_call_of_a_peer_this_instance_does_not_command_goes_to_the_one_that_does(
    app_factory: AppFactory, pool: asyncpg.Pool[Any]
) -> None:
    one = await app_factory(**QUICK)
    two = await app_factory(**QUICK)
    twilio = RecordingConnector("twilio")
    one.app[app_keys.GATEWAY].register(twilio)
    generic = RecordingConnector("generic")
    two.app[app_keys.GATEWAY].register(generic)
    _, token = await make_agent_with_endpoint(one, "ada", "client:ada")
    # The agent's panel, and so its accept, is on the instance without Twilio.
    panel = await available_panel(two, token)
    view = await one.app[app_keys.GATEWAY].handle("twilio", Incoming("CA60"))
    assert view.call is not None
    call_id = view.call.id
    sub = two.app[app_keys.BUS].subscribe(kinds={"connect"})
    assert await accept_next_offer(panel) == call_id
    assert await _connect_events_until_marker(two, sub) == [str(call_id)]
    await eventually(lambda: _connected(pool, call_id))
    claimed_by = await pool.fetchval(
        "SELECT claimed_by FROM call_bridges WHERE call_id = $1", call_id
    )
    assert claimed_by == one.app[app_keys.BRIDGER].instance
    assert [c.id for c, _ in twilio.connects] == [call_id]
    assert generic.connects == []
    await panel.close()


async def test_racing_accepts_and_claims_connect_every_call_once(
    app_factory: AppFactory, pool: asyncpg.Pool[Any]
) -> None:
    one = await app_factory(**QUICK)
    two = await app_factory(**QUICK)
    fakes = [RecordingConnector("twilio"), RecordingConnector("twilio")]
    instances = [one, two]
    for client, fake in zip(instances, fakes, strict=True):
        client.app[app_keys.GATEWAY].register(fake)
    bridgers = [c.app[app_keys.BRIDGER] for c in instances]
    panels = []
    for n in range(6):
        _, token = await make_agent_with_endpoint(one, f"agent{n}", f"client:agent{n}")
        panels.append(await available_panel(instances[n % 2], token))
    ids = []
    for n in range(6):
        gateway = instances[n % 2].app[app_keys.GATEWAY]
        view = await gateway.handle("twilio", Incoming(f"CA7{n}", ani=f"+1212555017{n}"))
        assert view.call is not None
        ids.append(view.call.id)

    async def accept_and_claim_again(panel: Any) -> int:
        call_id = await accept_next_offer(panel)
        # A duplicate connect on both instances, and their catch-ups, at once with the
        # accept's own claim being carried out.
        await asyncio.gather(
            *(b.bridge(call_id) for b in bridgers), *(b.catch_up() for b in bridgers)
        )
        return call_id

    accepted = await asyncio.gather(*(accept_and_claim_again(p) for p in panels))
    assert sorted(accepted) == sorted(ids)
    for call_id in ids:
        await eventually(lambda cid=call_id: _connected(pool, cid))  # type: ignore[misc]
    connected = [c.id for f in fakes for c, _ in f.connects]
    assert sorted(connected) == sorted(ids)
    live = await pool.fetch(
        "SELECT call_id, count(*) AS n FROM call_bridges WHERE call_id = ANY ($1::bigint[])"
        " GROUP BY call_id",
        ids,
    )
    assert {r["call_id"]: r["n"] for r in live} == dict.fromkeys(ids, 1)
    for panel in panels:
        await panel.close()


class _DeadBridger:
    """A bridger whose instance dies right after its accept claimed the bridge: the
    claim is recorded (with a lease already over) and never carried out."""

    instance = "dead-instance"
    lease_seconds = 0.0

    def peers(self) -> list[str]:
        return ["generic"]

    def take(self, recorded: asyncpg.Record) -> None:
        pass


async def test_a_claim_the_accept_recorded_for_a_dead_instance_is_taken_over(
    app_factory: AppFactory, pool: asyncpg.Pool[Any]
) -> None:
    client = await app_factory(**QUICK)
    fake = RecordingConnector("generic")
    client.app[app_keys.GATEWAY].register(fake)
    client.app[app_keys.DESK].bridges = _DeadBridger()
    _, token = await make_agent_with_endpoint(client, "ada", "sip:ada@pbx.example")
    panel = await available_panel(client, token)
    view = await client.app[app_keys.GATEWAY].handle("generic", Incoming("c-70"))
    assert view.call is not None
    call_id = view.call.id
    assert await accept_next_offer(panel) == call_id
    # The catch-up gives the expired claim up and this instance's bridger connects.
    await eventually(lambda: _connected(pool, call_id))
    claims = await pool.fetch(
        "SELECT claimed_by, state, last_error FROM call_bridges WHERE call_id = $1 ORDER BY id",
        call_id,
    )
    assert [(c["claimed_by"], c["state"]) for c in claims] == [
        ("dead-instance", "failed"),
        (client.app[app_keys.BRIDGER].instance, "connected"),
    ]
    assert "claim lease expired" in claims[0]["last_error"]
    assert [c.id for c, _ in fake.connects] == [call_id]
    await panel.close()
