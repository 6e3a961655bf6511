"""The agent socket's own limits, and bad input that never closes it."""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import pytest
from aiohttp import WSMsgType

from tests.conftest import AppFactory
from tests.integration.queue_helpers import Panel, make_agent


async def test_a_message_too_big_gets_an_error_and_the_socket_stays(
    app_factory: AppFactory,
) -> None:
    client = await app_factory(agent_max_message_bytes=2048)
    _, token = await make_agent(client, "ada", ["general"])
    panel = await Panel.open(client, token)
    assert (await panel.next())["type"] == "state"
    await panel.send(type="ping", ref="x" * 4096)
    error = await panel.next()
    assert error["type"] == "error" and error["status"] == 413 and "2048" in error["detail"]
    await panel.send(type="ping", ref=1)
    assert (await panel.until(lambda m: m["type"] == "pong"))["ref"] == 1
    await panel.close()


async def test_a_flood_of_messages_is_answered_429_and_the_socket_stays(
    app_factory: AppFactory,
) -> None:
    client = await app_factory(agent_messages_per_second=5)
    _, token = await make_agent(client, "ada", ["general"])
    panel = await Panel.open(client, token)
    assert (await panel.next())["type"] == "state"
    for i in range(30):
        await panel.send(type="ping", ref=i)
    answers = [await panel.next() for _ in range(30)]
    pongs = [a for a in answers if a["type"] == "pong"]
    refused = [a for a in answers if a["type"] == "error"]
    assert refused and all(a["status"] == 429 for a in refused)
    assert 5 <= len(pongs) < 30 and len(pongs) + len(refused) == 30
    assert not panel.ws.closed
    await panel.close()


async def test_an_agent_has_a_bounded_number_of_panels(app_factory: AppFactory) -> None:
    client = await app_factory(agent_max_sockets=2)
    _, token = await make_agent(client, "ada", ["general"])
    panels = [await Panel.open(client, token) for _ in range(2)]
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await Panel.open(client, token)
    assert refused.value.status == 429
    await panels[0].close()
    # One closed, one may open again (the hub forgets a panel as its socket ends).
    again = None
    for _ in range(50):
        try:
            again = await Panel.open(client, token)
            break
        except aiohttp.WSServerHandshakeError:
            await panels[1].send(type="ping")  # let the hub's loop run
            await panels[1].next()
    assert again is not None
    await again.close()
    await panels[1].close()


@pytest.mark.parametrize(
    ("message", "field"),
    [
        ({"type": "ping", "ref": "a\u0000"}, "ref"),
        ({"type": "wrap_up", "call_id": 1, "outcome": "completed", "notes": "a\u0000b"}, "notes"),
        ({"type": "ping", "ref": "\ud800"}, "ref"),
    ],
)
async def test_unstorable_text_is_an_error_not_a_closed_socket(
    client: Any, message: dict[str, Any], field: str
) -> None:
    _, token = await make_agent(client, "ada", ["general"])
    panel = await Panel.open(client, token)
    assert (await panel.next())["type"] == "state"
    await panel.ws.send_str(json.dumps(message))
    error = await panel.next()
    assert error["type"] == "error" and error["status"] == 422 and error["field"] == field
    await panel.send(type="ping", ref=2)
    assert (await panel.until(lambda m: m["type"] == "pong"))["ref"] == 2
    await panel.close()


async def test_a_reset_token_closes_the_panels_opened_with_the_old_one(client: Any) -> None:
    agent_id, token = await make_agent(client, "ada", ["general"])
    panel = await Panel.open(client, token)
    assert (await panel.next())["type"] == "state"
    reset = await client.post(f"/api/agents/{agent_id}/token")
    assert reset.status == 201
    new_token = (await reset.json())["token"]
    closed = await panel.ws.receive(timeout=10)
    while closed.type is WSMsgType.TEXT:
        closed = await panel.ws.receive(timeout=10)
    assert closed.type is WSMsgType.CLOSE and closed.data == 4401, closed
    fresh = await Panel.open(client, new_token)
    assert (await fresh.next())["type"] == "state"
    await fresh.close()
