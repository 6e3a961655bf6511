"""A typed customer number over the agent socket: served for this call, linked once verified.

Issue 14, hole 4: a caller who types someone else's customer number must not
become them for good. The call is served as that customer for this call only,
the phone link waits on the call, and the agent's ``verify`` (recorded with
who and when) is what links it.
"""

from __future__ import annotations

from typing import Any

import asyncpg

from tests.conftest import AppFactory
from tests.integration.queue_helpers import (
    FAST,
    Panel,
    enqueue,
    make_agent,
    make_customer,
    make_queue,
    take_call,
)

HOME = "+12125550100"
NEW_PHONE = "+442079460018"


async def _phone_rows(pool: asyncpg.Pool[Any], phone: str) -> list[tuple[Any, ...]]:
    rows = await pool.fetch(
        "SELECT customer_id, source, linked_via FROM customer_phones WHERE phone_e164 = $1"
        " ORDER BY customer_id",
        phone,
    )
    return [tuple(r) for r in rows]


async def test_a_typed_number_serves_this_call_only_until_the_agent_confirms(
    app_factory: AppFactory, pool: asyncpg.Pool[Any]
) -> None:
    client = await app_factory(**FAST, questions_file=None)
    await make_queue(client, "general", wrap_up_seconds=60)
    ada_customer = await make_customer(client, "C1001", 30000, HOME)
    _, token = await make_agent(client, "ada")

    panel, answer, shown = await take_call(
        client, token, "pbx-1", ani="+44 20 7946 0018", customer_number="C1001"
    )
    call_id = answer["call"]["id"]
    assert answer["identify"] == "pending"
    assert answer["call"]["customer"]["id"] == ada_customer
    assert answer["call"]["tier"] == "platinum"  # served as them, for this call
    assert shown["customer"]["id"] == ada_customer
    assert shown["customer"]["phones"] == [HOME]
    recognised = shown["recognised"]
    assert recognised["by"] == "pending"
    assert recognised["pending_link"] == NEW_PHONE
    assert recognised["verified_by"] is None
    assert "for this call only" in recognised["detail"]
    assert "not linked until you confirm who is calling" in recognised["detail"]
    assert await _phone_rows(pool, NEW_PHONE) == []

    # Meanwhile the phone calls again without typing: not recognised as C1001.
    second = await enqueue(client, "pbx-2", ani=NEW_PHONE)
    assert second["identify"] == "unknown"
    provisional = second["call"]["customer"]["id"]
    assert provisional != ada_customer and second["call"]["customer"]["provisional"]

    # A second open panel of the same agent is told too.
    other_tab = await Panel.open(client, token)
    await other_tab.until(lambda m: m["type"] == "panel" and m["call_id"] == call_id)

    await panel.send(type="verify", call_id=call_id, ref="v1")
    ack = await panel.until(lambda m: m["type"] in ("ack", "error"))
    assert ack["type"] == "ack" and ack["ref"] == "v1" and ack["to"] == "verify"
    assert ack["call_id"] == call_id
    now = ack["recognised"]
    assert now["by"] == "linked" and now["pending_link"] is None
    assert now["verified_by"] == "agent:ada" and now["verified_at"] is not None
    assert "agent:ada confirmed who is calling" in now["detail"]
    fresh = await other_tab.until(lambda m: m["type"] == "panel" and m["call_id"] == call_id)
    assert fresh["recognised"]["by"] == "linked"

    stored = await pool.fetchrow(
        "SELECT verified_by, verified_at, identified_by FROM calls WHERE id = $1", call_id
    )
    assert stored["verified_by"] == "agent:ada" and stored["identified_by"] == "linked"
    assert await _phone_rows(pool, NEW_PHONE) == [(ada_customer, "linked", "verified by agent:ada")]
    # The provisional record of the caller's other call is merged in, history and all.
    merged = await pool.fetchval("SELECT merged_into FROM customers WHERE id = $1", provisional)
    assert merged == ada_customer

    # From now on the phone is theirs.
    third = await enqueue(client, "pbx-3", ani="0044 20 7946 0018")
    assert third["identify"] == "known"
    assert third["call"]["customer"]["id"] == ada_customer

    # Verifying again changes nothing: neither who nor when, nor the link.
    await panel.send(type="verify", call_id=call_id, ref="v2")
    again = await panel.until(lambda m: m["type"] in ("ack", "error"))
    assert again["type"] == "ack" and again["ref"] == "v2"
    assert again["recognised"] == now
    after = await pool.fetchrow("SELECT verified_by, verified_at FROM calls WHERE id = $1", call_id)
    assert tuple(after) == (stored["verified_by"], stored["verified_at"])
    assert await _phone_rows(pool, NEW_PHONE) == [(ada_customer, "linked", "verified by agent:ada")]
    await other_tab.close()
    await panel.close()


async def test_another_agents_call_cannot_be_verified_and_answers_like_a_missing_one(
    app_factory: AppFactory, pool: asyncpg.Pool[Any]
) -> None:
    client = await app_factory(**FAST, questions_file=None)
    await make_queue(client, "general", wrap_up_seconds=60)
    await make_customer(client, "C1001", 30000, HOME)
    _, ada = await make_agent(client, "ada")
    _, bob = await make_agent(client, "bob")
    panel, answer, _ = await take_call(client, ada, "pbx-1", ani=NEW_PHONE, customer_number="C1001")
    call_id = answer["call"]["id"]

    bobs = await Panel.open(client, bob)
    await bobs.until(lambda m: m["type"] == "state")
    await bobs.send(type="verify", call_id=call_id, ref="theirs")
    theirs = await bobs.until(lambda m: m["type"] == "error")
    await bobs.send(type="verify", call_id=call_id + 1000, ref="none")
    missing = await bobs.until(lambda m: m["type"] == "error")
    assert (theirs["ref"], theirs["status"], theirs["field"]) == ("theirs", 404, "call_id")
    assert (missing["ref"], missing["status"], missing["field"]) == ("none", 404, "call_id")
    assert theirs["detail"].replace(str(call_id), "N") == missing["detail"].replace(
        str(call_id + 1000), "N"
    )

    row = await pool.fetchrow(
        "SELECT verified_by, identified_by, link_phone FROM calls WHERE id = $1", call_id
    )
    assert tuple(row) == (None, "pending", NEW_PHONE)
    assert await _phone_rows(pool, NEW_PHONE) == []
    await bobs.close()
    await panel.close()


async def test_a_conflict_is_served_for_this_call_and_nothing_is_relinked(
    app_factory: AppFactory, pool: asyncpg.Pool[Any]
) -> None:
    client = await app_factory(**FAST, questions_file=None)
    await make_queue(client, "general", wrap_up_seconds=60)
    owner = await make_customer(client, "A1", 100, HOME)
    typed = await make_customer(client, "B1", 30000, "+16465550199")
    _, token = await make_agent(client, "ada")

    panel, answer, shown = await take_call(client, token, "pbx-1", ani=HOME, customer_number="B1")
    call_id = answer["call"]["id"]
    assert answer["identify"] == "conflict"
    assert shown["customer"]["id"] == typed
    recognised = shown["recognised"]
    assert recognised["by"] == "conflict" and recognised["pending_link"] is None
    assert "for this call only" in recognised["detail"]
    assert "belongs to someone else" in recognised["detail"]

    await panel.send(type="verify", call_id=call_id, ref="v")
    ack = await panel.until(lambda m: m["type"] in ("ack", "error"))
    assert ack["type"] == "ack"
    assert ack["recognised"]["by"] == "conflict"
    assert ack["recognised"]["verified_by"] == "agent:ada"
    assert "agent:ada confirmed who is calling" in ack["recognised"]["detail"]

    # The phone stays its owner's, confirmed or not, and the next call is theirs.
    assert await _phone_rows(pool, HOME) == [(owner, "crm", "api")]
    assert await pool.fetchval("SELECT count(*) FROM identity_conflicts") == 1
    next_call = await enqueue(client, "pbx-2", ani=HOME)
    assert next_call["identify"] == "known"
    assert next_call["call"]["customer"]["id"] == owner
    await panel.close()


async def test_a_caller_nobody_is_served_as_has_nobody_to_confirm(
    app_factory: AppFactory, pool: asyncpg.Pool[Any]
) -> None:
    client = await app_factory(**FAST, questions_file=None)
    await make_queue(client, "general", wrap_up_seconds=60)
    _, token = await make_agent(client, "ada")
    panel, answer, shown = await take_call(client, token, "pbx-1", ani="anonymous")
    assert shown["recognised"]["by"] == "withheld"
    await panel.send(type="verify", call_id=answer["call"]["id"], ref="v")
    refused = await panel.until(lambda m: m["type"] in ("ack", "error"))
    assert (refused["type"], refused["status"], refused["field"]) == ("error", 409, "call_id")
    assert "nobody to confirm" in refused["detail"]
    verified = await pool.fetchval(
        "SELECT verified_by FROM calls WHERE id = $1", answer["call"]["id"]
    )
    assert verified is None
    # The socket stays open and answers.
    await panel.send(type="ping", ref="still")
    pong = await panel.until(lambda m: m["type"] == "pong")
    assert pong["ref"] == "still"
    await panel.close()
