"""Issue 18, part 3: the last conversation on top of the panel, abandoned attempts in one line.

Computed by the panel's one statement: the last real contact (when, with
whom, outcome, notes, answer) and the calls the customer gave up on since
it, counted with their longest wait.
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
)

PHONE = "+12125550100"


async def test_the_panel_puts_the_last_contact_and_the_abandoned_attempts_since_on_top(
    app_factory: AppFactory, pool: asyncpg.Pool[Any]
) -> None:
    client = await app_factory(**FAST, questions_file=None)
    await make_queue(client, "general", wrap_up_seconds=60)
    customer = await make_customer(client, "C1", 30000, PHONE)
    _, token = await make_agent(client, "grace")
    # An attempt before the conversation: not counted (it is before the last contact).
    early = await enqueue(client, "pbx-0", ani=PHONE)
    resp = await client.post(f"/api/calls/{early['call']['id']}/end", json={"outcome": "abandoned"})
    assert resp.status == 200, await resp.text()

    panel = await Panel.open(client, token)
    await panel.send(type="available")
    await panel.state("available")
    talked = (await enqueue(client, "pbx-1", ani=PHONE))["call"]["id"]
    offer = await panel.until(lambda m: m["type"] == "offer")
    await panel.send(type="accept", offer_id=offer["offer_id"])
    first = await panel.until(lambda m: m["type"] == "panel")
    assert first["last_contact"] is None  # the abandoned attempt is no conversation
    assert first["attempts_since"]["count"] == 1
    await panel.send(
        type="wrap_up", call_id=talked, notes="new card sent", ref="w", available=False
    )
    assert (await panel.until(lambda m: m.get("ref") == "w"))["type"] == "ack"
    await panel.send(type="offline")
    await panel.state("offline")

    for i in range(3):
        gave_up = await enqueue(client, f"pbx-a{i}", ani=PHONE)
        resp = await client.post(
            f"/api/calls/{gave_up['call']['id']}/end", json={"outcome": "abandoned"}
        )
        assert resp.status == 200, await resp.text()
    # The waits as the history recorded them (the hand-ins were a moment apart).
    waits = await pool.fetchval(
        "SELECT max((details->>'waited_seconds')::float8) FROM interactions"
        " WHERE customer_id = $1 AND outcome = 'abandoned' AND details->>'call_id' <> $2",
        customer,
        str(early["call"]["id"]),
    )

    await panel.send(type="available")
    await panel.state("available")
    await enqueue(client, "pbx-2", ani=PHONE)
    offer = await panel.until(lambda m: m["type"] == "offer")
    await panel.send(type="accept", offer_id=offer["offer_id"])
    shown = await panel.until(lambda m: m["type"] == "panel")
    last = shown["last_contact"]
    assert last["call_id"] == talked and last["notes"] == "new card sent"
    assert last["agent"] == "grace" and last["outcome"] == "completed"
    assert last["waited_seconds"] is not None
    since = shown["attempts_since"]
    assert since["count"] == 3
    assert since["longest_wait_seconds"] == waits
    assert since["latest_at"] is not None
    # The history still lists every contact, each with its wait.
    items = shown["history"]["items"]
    assert [i["outcome"] for i in items] == ["abandoned"] * 3 + ["completed", "abandoned"]
    assert all(i["waited_seconds"] is not None for i in items)
    await panel.close()
