"""Issue 18, part 2: an agent who is still writing holds its wrap-up, up to the queue's maximum.

``wrap_up_extend`` moves the end of the agent's wrap-up (no call is offered
meanwhile), never past ``wrap_up_max_seconds`` from the call's end; at the
maximum it is a clear 409, and the wrap-up can still be saved afterwards.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import asyncpg

from tests.conftest import AppFactory
from tests.integration.queue_helpers import FAST, Panel, enqueue, make_agent, make_queue


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text)


async def test_the_wrap_up_is_held_while_the_agent_writes_up_to_the_queues_maximum(
    app_factory: AppFactory, pool: asyncpg.Pool[Any]
) -> None:
    client = await app_factory(**FAST, questions_file=None)
    queue = await make_queue(client, "general", wrap_up_seconds=1, wrap_up_max_seconds=3)
    assert queue["wrap_up_max_seconds"] == 3
    _, token = await make_agent(client, "ada")
    panel = await Panel.open(client, token)
    await panel.send(type="available")
    await panel.state("available")
    first = (await enqueue(client, "pbx-1", ani="+12125550100"))["call"]["id"]
    offer = await panel.until(lambda m: m["type"] == "offer")
    await panel.send(type="accept", offer_id=offer["offer_id"])
    await panel.state("on_call")
    await panel.send(type="end", call_id=first)
    wrapping = await panel.state("wrap_up")
    ended = await pool.fetchval("SELECT ended_at FROM calls WHERE id = $1", first)
    # A second caller waits: while the wrap-up is held, nobody rings.
    await enqueue(client, "pbx-2")

    await panel.send(type="wrap_up_extend", call_id=first, seconds=2, ref="x1")
    ack = await panel.until(lambda m: m.get("ref") == "x1")
    assert ack["type"] == "ack" and ack["to"] == "wrap_up_extend", ack
    held = _at(ack["wrap_up_until"])
    assert held > _at(wrapping["agent"]["wrap_up_until"])
    pushed = await panel.until(lambda m: m["type"] == "state")
    assert _at(pushed["agent"]["wrap_up_until"]) == held

    # Asking for more than the maximum gets the maximum ...
    await panel.send(type="wrap_up_extend", call_id=first, seconds=300, ref="x2")
    ack = await panel.until(lambda m: m.get("ref") == "x2")
    assert ack["type"] == "ack"
    assert abs(_at(ack["wrap_up_until"]) - (ended + timedelta(seconds=3))) < timedelta(
        milliseconds=5
    )
    # ... and past it, a clear refusal.
    await panel.send(type="wrap_up_extend", call_id=first, seconds=10, ref="x3")
    refused = await panel.until(lambda m: m.get("ref") == "x3")
    assert (refused["type"], refused["status"], refused["field"]) == ("error", 409, "seconds")
    assert "maximum" in refused["detail"]
    for i, (seconds, field) in enumerate(((0, "seconds"), (301, "seconds"))):
        await panel.send(type="wrap_up_extend", call_id=first, seconds=seconds, ref=f"b{i}")
        bad = await panel.until(lambda m, i=i: m.get("ref") == f"b{i}")
        assert bad["status"] == 422 and bad["field"].endswith(field)
    await panel.send(type="wrap_up_extend", call_id=first + 1000, ref="nf")
    missing = await panel.until(lambda m: m.get("ref") == "nf")
    assert (missing["status"], missing["field"]) == (404, "call_id")

    # At the maximum the wrap-up ends and the next call rings; the notes still save.
    offered = await panel.until(lambda m: m["type"] == "offer", timeout=10)
    rang_at = datetime.now(ended.tzinfo)
    assert rang_at >= ended + timedelta(seconds=3)
    await panel.send(type="wrap_up_extend", call_id=first, ref="late")
    late = await panel.until(lambda m: m.get("ref") == "late")
    assert (late["status"], late["field"]) == (409, "call_id")
    await panel.send(type="wrap_up", call_id=first, notes="all of it", available=False, ref="save")
    saved = await panel.until(lambda m: m.get("ref") == "save")
    assert saved["type"] == "ack"
    notes = await pool.fetchval(
        "SELECT i.notes FROM interactions i JOIN calls c ON c.interaction_id = i.id"
        " WHERE c.id = $1",
        first,
    )
    assert offered["call_id"] != first
    assert notes == "all of it"
    await panel.close()
