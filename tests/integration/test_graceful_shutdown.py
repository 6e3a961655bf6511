"""Issue 18, part 4: a stopping service closes every agent socket with a reason, at once.

Two instances on one database, as behind a load balancer. When one stops, its
panels get a close frame 1012 (service restart) within a moment, after the
answer to the message they had just sent (a Finish is never left unanswered),
and reconnect to the other one, which knows the agent as it was.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import asyncpg
from aiohttp import WSMsgType

from tests.conftest import AppFactory
from tests.integration.queue_helpers import FAST, Panel, enqueue, make_agent, make_queue


async def test_stopping_closes_the_panels_with_1012_after_answering_what_they_sent(
    app_factory: AppFactory, pool: asyncpg.Pool[Any]
) -> None:
    first = await app_factory(**(FAST | {"agent_grace_seconds": 30}), questions_file=None)
    second = await app_factory(**(FAST | {"agent_grace_seconds": 30}), questions_file=None)
    await make_queue(first, "general", wrap_up_seconds=60)
    _, token = await make_agent(first, "ada")
    panel = await Panel.open(first, token)
    idle = await Panel.open(first, token)  # a second tab, doing nothing
    await panel.send(type="available")
    await panel.state("available")
    call_id = (await enqueue(first, "pbx-1", ani="+12125550100"))["call"]["id"]
    offer = await panel.until(lambda m: m["type"] == "offer")
    await panel.send(type="accept", offer_id=offer["offer_id"])
    await panel.state("on_call")

    # Finish, and the service is stopped right after it was sent.
    await panel.send(type="wrap_up", call_id=call_id, notes="sent as it stopped", ref="fin")
    started = time.monotonic()
    stopping = asyncio.create_task(first.server.close())  # the service, not its clients
    messages: list[dict[str, Any]] = []
    while True:
        msg = await panel.ws.receive(timeout=5)
        if msg.type != WSMsgType.TEXT:
            break
        messages.append(json.loads(msg.data))
    assert msg.type == WSMsgType.CLOSE, msg
    assert msg.data == 1012
    assert (msg.extra or "").startswith("service restarting")
    assert time.monotonic() - started < 2
    answers = [m for m in messages if m.get("ref") == "fin"]
    assert [a["type"] for a in answers] == ["ack"], messages
    while (idle_close := await idle.ws.receive(timeout=5)).type == WSMsgType.TEXT:
        pass
    assert idle_close.type == WSMsgType.CLOSE and idle_close.data == 1012
    await stopping
    assert time.monotonic() - started < 5

    stored = await pool.fetchval(
        "SELECT i.notes FROM calls c JOIN interactions i ON i.id = c.interaction_id"
        " WHERE c.id = $1",
        call_id,
    )
    assert stored == "sent as it stopped"
    # The other instance has the agent as it left: available again after its Finish.
    again = await Panel.open(second, token)
    state = await again.until(lambda m: m["type"] == "state")
    assert state["agent"]["state"] == "available"
    await again.close()
