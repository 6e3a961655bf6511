"""Issue 18, part 1: a caller the service cannot name is still handled, over the agent socket.

A shared number lists its customers in the panel and the agent picks one; a
withheld number is searched for and picked; a first call's caller is created
from the call. The pick identifies the call as the IVR's number would (the
customer, tier and history follow), counts as the agent's confirmation, and
is audited. Bad input is an ``error`` with status and field, and the socket
stays open.
"""

from __future__ import annotations

from typing import Any

import asyncpg

from tests.conftest import AppFactory
from tests.integration.queue_helpers import (
    FAST,
    Panel,
    add_customer,
    enqueue,
    make_agent,
    make_queue,
    take_call,
)

SHARED = "+12125550100"
OTHER = "+16465550199"


async def _answer(panel: Panel, ref: str) -> dict[str, Any]:
    return await panel.until(
        lambda m: m["type"] in ("ack", "error", "callers") and m.get("ref") == ref
    )


async def test_a_shared_number_lists_its_customers_and_the_pick_brings_the_history(
    app_factory: AppFactory, pool: asyncpg.Pool[Any]
) -> None:
    client = await app_factory(**FAST, questions_file=None)
    await make_queue(client, "general", wrap_up_seconds=60)
    ada = await add_customer(
        client, "C1", "Ada Lovelace", phones=[SHARED], shared_phones=[SHARED], lifetime_value=30000
    )
    bob = await add_customer(client, "C2", "Bob Lovelace", phones=[SHARED], shared_phones=[SHARED])
    _, token = await make_agent(client, "grace")
    # Ada called before: that contact is her history.
    panel, answer, _ = await take_call(client, token, "pbx-0", customer_number="C1")
    first = answer["call"]["id"]
    await panel.send(type="wrap_up", call_id=first, notes="asked about her card", ref="w0")
    assert (await _answer(panel, "w0"))["type"] == "ack"
    await panel.close()

    panel, answer, shown = await take_call(client, token, "pbx-1", ani=SHARED)
    call_id = answer["call"]["id"]
    assert shown["recognised"]["by"] == "multiple"
    assert shown["customer"] is None
    listed = {c["id"]: c for c in shown["candidates"]}
    assert set(listed) == {ada, bob}
    assert listed[ada]["name"] == "Ada Lovelace" and listed[ada]["customer_number"] == "C1"
    assert listed[ada]["tier"] == "platinum" and listed[ada]["last_contact_at"] is not None
    assert listed[bob]["last_contact_at"] is None

    await panel.send(type="pick_caller", call_id=call_id, customer_id=ada, ref="p")
    ack = await _answer(panel, "p")
    assert ack["type"] == "ack" and ack["to"] == "pick_caller", ack
    assert ack["customer_id"] == ada
    assert ack["recognised"]["by"] == "agent"
    assert ack["recognised"]["verified_by"] == "agent:grace"
    assert "agent:grace picked them as the caller" in ack["recognised"]["detail"]
    fresh = await panel.until(lambda m: m["type"] == "panel")
    assert fresh["customer"]["id"] == ada
    assert [h["notes"] for h in fresh["history"]["items"]] == ["asked about her card"]
    assert fresh["candidates"] == []

    row = await pool.fetchrow(
        "SELECT customer_id, tier, identified_by, verified_by FROM calls WHERE id = $1", call_id
    )
    assert tuple(row) == (ada, "platinum", "agent", "agent:grace")
    # The contact goes into Ada's history.
    await panel.send(type="wrap_up", call_id=call_id, notes="picked", ref="w1")
    assert (await _answer(panel, "w1"))["type"] == "ack"
    notes = await pool.fetchval(
        "SELECT array_agg(notes ORDER BY id) FROM interactions WHERE customer_id = $1", ada
    )
    assert notes == ["asked about her card", "picked"]
    actions = await pool.fetch(
        "SELECT customer_id, who, action FROM customer_audit"
        " WHERE action IN ('panel_candidates', 'pick_caller') ORDER BY id"
    )
    assert {(r["customer_id"], r["action"]) for r in actions} == {
        (ada, "panel_candidates"),
        (bob, "panel_candidates"),
        (ada, "pick_caller"),
    }
    assert {r["who"] for r in actions} == {"agent:grace"}
    await panel.close()


async def test_a_withheld_caller_is_searched_for_and_picked(
    app_factory: AppFactory, pool: asyncpg.Pool[Any]
) -> None:
    client = await app_factory(**FAST, questions_file=None)
    await make_queue(client, "general", wrap_up_seconds=60)
    ada = await add_customer(client, "C1001", "Ada Lovelace", phones=[OTHER])
    await add_customer(client, "C1002", "Charles Babbage")
    _, token = await make_agent(client, "grace")
    panel, answer, shown = await take_call(client, token, "pbx-1", ani="anonymous")
    call_id = answer["call"]["id"]
    assert shown["recognised"]["by"] == "withheld" and shown["candidates"] == []

    for ref, query in (("n", "lovel"), ("c", "C1001"), ("t", "(646) 555-0199")):
        await panel.send(type="find_caller", call_id=call_id, query=query, ref=ref)
        found = await _answer(panel, ref)
        assert found["type"] == "callers", found
        assert [c["id"] for c in found["candidates"]] == [ada], query
        assert found["candidates"][0]["name"] == "Ada Lovelace"

    await panel.send(type="pick_caller", call_id=call_id, customer_id=ada, ref="p")
    ack = await _answer(panel, "p")
    assert ack["type"] == "ack" and ack["recognised"]["by"] == "agent"
    fresh = await panel.until(lambda m: m["type"] == "panel")
    assert fresh["customer"]["id"] == ada
    searched = await pool.fetch(
        "SELECT customer_id, detail FROM customer_audit WHERE action = 'caller_search'"
    )
    assert len(searched) == 3 and {r["customer_id"] for r in searched} == {ada}
    # The audit says what kind of search it was, never what was typed.
    assert all("lovel" not in str(r["detail"]) for r in searched)
    await panel.close()


async def test_a_first_callers_customer_is_created_from_the_call(
    app_factory: AppFactory, pool: asyncpg.Pool[Any]
) -> None:
    client = await app_factory(**FAST, questions_file=None)
    await make_queue(client, "general", wrap_up_seconds=60)
    _, token = await make_agent(client, "grace")
    panel, answer, shown = await take_call(client, token, "pbx-1", ani=OTHER)
    call_id = answer["call"]["id"]
    assert shown["recognised"]["by"] == "unknown"
    provisional = shown["customer"]["id"]

    await panel.send(type="create_caller", call_id=call_id, name="  Mary   Somerville ", ref="c")
    ack = await _answer(panel, "c")
    assert ack["type"] == "ack", ack
    created = ack["customer_id"]
    assert created != provisional
    assert f"{OTHER} is now linked to them" in ack["recognised"]["detail"]
    fresh = await panel.until(lambda m: m["type"] == "panel")
    assert fresh["customer"]["name"] == "Mary Somerville"
    assert fresh["customer"]["provisional"] is False
    assert fresh["customer"]["phones"] == [OTHER]
    merged = await pool.fetchval("SELECT merged_into FROM customers WHERE id = $1", provisional)
    assert merged == created
    # The next call from that phone is hers.
    again = await enqueue(client, "pbx-2", ani=OTHER)
    assert again["identify"] == "known" and again["call"]["customer"]["id"] == created
    await panel.close()


async def test_bad_searches_and_picks_get_clear_errors_and_the_socket_stays_open(
    app_factory: AppFactory, pool: asyncpg.Pool[Any]
) -> None:
    client = await app_factory(**FAST, questions_file=None)
    await make_queue(client, "general", wrap_up_seconds=60)
    stranger = await add_customer(client, "C9", "Someone Else")
    known = await add_customer(client, "C1", "Ada Lovelace", phones=[OTHER])
    _, token = await make_agent(client, "grace")
    _, bob_token = await make_agent(client, "bob")
    panel, answer, _ = await take_call(client, token, "pbx-1", ani="anonymous")
    call_id = answer["call"]["id"]

    cases = [
        ({"query": ""}, 422, "query"),
        ({"query": "x" * 101}, 422, "query"),
        ({"query": "   "}, 422, "query"),
        ({"query": "ab"}, 422, "query"),
        ({"query": "lovelace", "call_id": call_id + 1000}, 404, "call_id"),
    ]
    for i, (fields, status, field) in enumerate(cases):
        await panel.send(**{"type": "find_caller", "call_id": call_id, **fields, "ref": f"b{i}"})
        error = await _answer(panel, f"b{i}")
        # A field the message's validation refused is named with its type (find_caller.query).
        assert error["type"] == "error" and error["status"] == status, (fields, error)
        assert error["field"].split(".")[-1] == field, (fields, error)
    # A customer no search found is not the agent's to pick (no browsing by id).
    await panel.send(type="pick_caller", call_id=call_id, customer_id=stranger, ref="s")
    error = await _answer(panel, "s")
    assert (error["status"], error["field"]) == (409, "customer_id")
    assert "search for the caller first" in error["detail"]
    await panel.send(type="create_caller", call_id=call_id, name="   ", ref="e")
    error = await _answer(panel, "e")
    assert (error["status"], error["field"]) == (422, "name")

    # Another agent cannot search for, pick or create the caller of this call.
    bobs = await Panel.open(client, bob_token)
    await bobs.until(lambda m: m["type"] == "state")
    for ref, message in (
        ("f", {"type": "find_caller", "query": "lovelace"}),
        ("p", {"type": "pick_caller", "customer_id": known}),
        ("c", {"type": "create_caller", "name": "Bob's guess"}),
    ):
        await bobs.send(**message, call_id=call_id, ref=ref)
        error = await _answer(bobs, ref)
        assert (error["status"], error["field"]) == (404, "call_id"), error
    await bobs.close()

    # A flood of searches: 429 past the agent's limit (12 a minute, whichever tab sends
    # them: three of the refused ones above counted), the socket stays open.
    tab = await Panel.open(client, token)
    await tab.until(lambda m: m["type"] == "panel")
    answers = []
    for i in range(10):
        await tab.send(type="find_caller", call_id=call_id, query="lovelace", ref=f"f{i}")
        answers.append(await _answer(tab, f"f{i}"))
    assert [a["type"] for a in answers] == ["callers"] * 9 + ["error"]
    assert answers[-1]["status"] == 429
    assert "searches a minute" in answers[-1]["detail"]
    await tab.send(type="ping", ref="alive")
    assert (await tab.until(lambda m: m["type"] == "pong"))["ref"] == "alive"
    await tab.close()
    row = await pool.fetchrow("SELECT customer_id, identified_by FROM calls WHERE id = $1", call_id)
    assert tuple(row) == (None, "withheld")
    await panel.close()


async def test_a_caller_recognised_by_phone_is_not_searched_for(
    app_factory: AppFactory,
) -> None:
    client = await app_factory(**FAST, questions_file=None)
    await make_queue(client, "general", wrap_up_seconds=60)
    await add_customer(client, "C1", "Ada Lovelace", phones=[OTHER])
    _, token = await make_agent(client, "grace")
    panel, answer, _ = await take_call(client, token, "pbx-1", ani=OTHER)
    call_id = answer["call"]["id"]
    await panel.send(type="find_caller", call_id=call_id, query="lovelace", ref="r")
    error = await _answer(panel, "r")
    assert (error["status"], error["field"]) == (409, "call_id")
    assert "was recognised (phone)" in error["detail"]
    await panel.close()
