"""An agent socket remembers only the current offer and call, whatever it has handled.

It used to keep every offer id and call id it was ever sent (to send each
offer and assist panel once), so a panel left open all day grew without end.
"""

from __future__ import annotations

from callcenter import app_keys
from tests.conftest import AppFactory
from tests.integration.queue_helpers import FAST, Panel, enqueue, make_agent, make_queue


async def test_many_calls_on_one_socket_keep_one_offer_and_one_panel(
    app_factory: AppFactory,
) -> None:
    client = await app_factory(**FAST)
    await make_queue(client, "general", wrap_up_seconds=0)
    agent_id, token = await make_agent(client, "ada")
    panel = await Panel.open(client, token)
    await panel.send(type="available")
    await panel.state("available")
    (socket,) = client.app[app_keys.HUB]._sockets[agent_id]

    for n in range(4):
        call_id = (await enqueue(client, f"pbx-{n}"))["call"]["id"]
        offer = await panel.until(lambda m: m["type"] == "offer")
        assert offer["call_id"] == call_id
        assert socket.offer_sent == offer["offer_id"]
        await panel.send(type="accept", offer_id=offer["offer_id"])
        # Every call still gets its assist panel, once.
        shown = await panel.until(lambda m: m["type"] == "panel")
        assert shown["call_id"] == call_id
        assert socket.panel_sent == call_id
        await panel.send(type="end", call_id=call_id, outcome="completed")
        await panel.state("available")
        assert socket.panel_sent is None
    panels = [m for m in panel.received if m["type"] == "panel"]
    offers = [m for m in panel.received if m["type"] == "offer"]
    assert len(panels) == len({m["call_id"] for m in panels}) == 4
    assert len(offers) == len({m["offer_id"] for m in offers}) == 4
    # The state is pushed again and again; nothing more than the current ids is kept.
    assert not hasattr(socket, "offers_sent") and not hasattr(socket, "panels_sent")
    await panel.close()
