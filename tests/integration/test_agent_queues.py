"""Issue 18, part 5: the agent sees who waits in its queues before going available, pushed.

After the first ``state`` a panel that asks (``?queues=1``) gets ``queues``
(callers waiting, since when the longest has waited) for the agent's queues
only, and again whenever the figures change: a call in, a caller gone. Nothing
is sent when nothing changed, and nothing at all to a client that did not ask.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from tests.conftest import AppFactory
from tests.integration.queue_helpers import FAST, Panel, enqueue, make_agent, make_queue


def _queues(message: dict[str, Any]) -> dict[str, tuple[int, str | None]]:
    return {q["name"]: (q["waiting"], q["oldest_enqueued_at"]) for q in message["queues"]}


async def test_the_panel_is_told_who_waits_in_its_queues_as_it_changes(
    app_factory: AppFactory,
) -> None:
    client = await app_factory(**FAST)
    await make_queue(client, "general")
    await make_queue(client, "billing")
    await make_queue(client, "elsewhere")
    _, token = await make_agent(client, "ada", queues=["general", "billing"])
    await enqueue(client, "pbx-x", queue="elsewhere")  # not ada's: never shown to her

    panel = Panel(await client.ws_connect(f"/ws/agent?token={token}&queues=1"))
    first = await panel.until(lambda m: m["type"] == "queues")
    assert _queues(first) == {"billing": (0, None), "general": (0, None)}

    one = await enqueue(client, "pbx-1")
    shown = _queues(await panel.until(lambda m: m["type"] == "queues"))
    assert shown["general"][0] == 1 and shown["billing"] == (0, None)
    assert datetime.fromisoformat(shown["general"][1] or "") == datetime.fromisoformat(
        one["call"]["enqueued_at"]
    )
    await enqueue(client, "pbx-2")
    await enqueue(client, "pbx-3", queue="billing")
    got = await panel.until(
        lambda m: (
            m["type"] == "queues"
            and _queues(m)["billing"][0] == 1
            and _queues(m)["general"][0] == 2
        )
    )
    assert _queues(got)["general"][1] == shown["general"][1]  # the longest is still pbx-1

    # The first caller hangs up: the longest wait is now the second's.
    resp = await client.post(f"/api/calls/{one['call']['id']}/end", json={"outcome": "abandoned"})
    assert resp.status == 200, await resp.text()
    after = await panel.until(lambda m: m["type"] == "queues" and _queues(m)["general"][0] == 1)
    assert _queues(after)["general"][1] != shown["general"][1]
    assert all(m["type"] != "queues" or "elsewhere" not in _queues(m) for m in panel.received)
    await panel.close()

    # A client that did not ask (one written before these messages) gets none.
    plain = await Panel.open(client, token)
    await plain.until(lambda m: m["type"] == "state")
    await enqueue(client, "pbx-4")
    await plain.send(type="ping", ref="p")
    await plain.until(lambda m: m["type"] == "pong")
    await enqueue(client, "pbx-5")
    await plain.send(type="ping", ref="q")
    await plain.until(lambda m: m.get("ref") == "q")
    assert [m["type"] for m in plain.received if m["type"] == "queues"] == []
    await plain.close()
