"""Which of an agent's panels a state is sent to, by version (``AgentHub._send_state``).

A panel that opens reads the agent's state for itself while the agent's other
panels are pushed from notifications: a read can be overtaken by a newer
notification, and a notification can arrive after a read that already saw its
change. Each panel keeps the version it has, so none gets an older state after
a newer one and none misses a newer one.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from typing import Any, cast

from callcenter.agent_assist.desk.hub import AgentHub, AgentSocket
from callcenter.queue.agents import AgentSnapshot
from callcenter.queue.models import Agent, AgentState


class FakeSocket:
    """What ``_send_state`` uses of a panel, recording the states it was sent."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.agent_id = 1
        self.version = -1
        self.who: str | None = None
        self.wants_queues = False
        self.queues: list[str] = []
        self.offer_sent: int | None = None
        self.panel_sent: int | None = None
        self.states: list[str] = []

    def send_json(self, body: str) -> None:
        self.states.append(json.loads(body)["agent"]["state"])

    def send(self, message: Any) -> None:  # offers: none in these snapshots
        raise AssertionError(message)


def _snapshot(version: int, state: AgentState) -> AgentSnapshot:
    agent = Agent(
        id=1,
        name="ada",
        queues=["general"],
        overflow_queues=[],
        state=state,
        state_since=datetime(2026, 12, 4, tzinfo=UTC),
        idle_since=None,
        call_id=None,
        wrap_up_until=None,
        last_seen_at=None,
    )
    return AgentSnapshot(agent, None, None, version)


def _hub() -> AgentHub:
    hub = AgentHub.__new__(AgentHub)  # only _send_state's own attributes are needed
    hub._queues_changed = asyncio.Event()
    return hub


def _sockets(*names: str) -> list[AgentSocket]:
    return [cast(AgentSocket, FakeSocket(n)) for n in names]


def _states(sock: AgentSocket) -> list[str]:
    return cast(FakeSocket, sock).states


async def test_a_panel_that_opened_on_a_read_does_not_make_the_others_miss_the_notification() -> (
    None
):
    hub = _hub()
    a, b = _sockets("a", "b")
    await hub._send_state(_snapshot(5, AgentState.available), [a], read=True)
    # The agent was offered a call (version 6); panel b opens and reads it first.
    await hub._send_state(_snapshot(6, AgentState.offered), [b], read=True)
    # Then version 6's notification: a has not seen it, b has.
    await hub._send_state(_snapshot(6, AgentState.offered), [a, b], read=False)
    assert _states(a) == ["available", "offered"]
    assert _states(b) == ["offered"]


async def test_a_read_overtaken_by_a_newer_notification_is_not_sent_after_it() -> None:
    hub = _hub()
    (c,) = _sockets("c")
    await hub._send_state(_snapshot(7, AgentState.on_call), [c], read=False)
    await hub._send_state(_snapshot(6, AgentState.offered), [c], read=True)
    assert _states(c) == ["on_call"]


async def test_a_read_of_the_same_version_is_sent_but_a_repeated_notification_is_not() -> None:
    """A change the agent's row does not count (the held call's caller identified) is
    only ever read: a read of the version a panel has is sent again."""
    hub = _hub()
    (a,) = _sockets("a")
    await hub._send_state(_snapshot(3, AgentState.available), [a], read=False)
    await hub._send_state(_snapshot(3, AgentState.available), [a], read=False)
    await hub._send_state(_snapshot(3, AgentState.available), [a], read=True)
    assert _states(a) == ["available", "available"]
