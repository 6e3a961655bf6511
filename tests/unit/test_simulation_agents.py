"""The simulated agent's habits that the whole-path benchmark relies on."""

from __future__ import annotations

import asyncio
import json
import random
from typing import Any

from callcenter.simulation.agents import AgentLedger, Behaviour, SimAgent


class FakeSocket:
    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    async def send(self, raw: str) -> None:
        self.sent.append(json.loads(raw))


def _agent(behaviour: Behaviour) -> tuple[SimAgent, FakeSocket]:
    agent = SimAgent("sim-01", "token", "ws://unused", random.Random(1), behaviour, AgentLedger())
    ws = FakeSocket()
    agent._ws = ws  # type: ignore[assignment]
    return agent, ws


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_talk_starts_at_the_accept_by_default() -> None:
    agent, ws = _agent(Behaviour(mean_talk=0))
    agent._on_ack({"type": "ack", "to": "accept", "call_id": 7})
    await _settle()
    assert ws.sent == [{"type": "end", "call_id": 7, "ref": "end"}]


async def test_talk_after_panel_waits_for_the_panel_and_its_question() -> None:
    agent, ws = _agent(Behaviour(mean_talk=0, talk_after_panel=True, verify=0))
    agent._on_ack({"type": "ack", "to": "accept", "call_id": 7})
    await _settle()
    assert ws.sent == []  # no panel yet: the agent has not started talking
    question = {"key": "q1", "kind": "yes_no"}
    agent._on_panel({"type": "panel", "call_id": 7, "question": question})
    await _settle()
    assert ws.sent == [{"type": "end", "call_id": 7, "ref": "end"}]
    assert agent.question[7] == question  # so the wrap-up carries its answer
    assert "panel" in agent.steps.at[7]


async def test_a_panel_before_the_accept_ack_starts_the_talk_at_the_ack() -> None:
    agent, ws = _agent(Behaviour(mean_talk=0, talk_after_panel=True, verify=0))
    agent._on_panel({"type": "panel", "call_id": 7})
    agent._on_ack({"type": "ack", "to": "accept", "call_id": 7})
    await _settle()
    assert ws.sent == [{"type": "end", "call_id": 7, "ref": "end"}]


def _state(state: str, call: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"type": "state", "agent": {"state": state}, "offer": None, "call": call}


async def test_a_callback_nobody_answered_is_not_served_nor_a_double_accept() -> None:
    ledger = AgentLedger()
    first = SimAgent("sim-01", "t", "ws://unused", random.Random(1), Behaviour(), ledger)
    second = SimAgent("sim-02", "t", "ws://unused", random.Random(2), Behaviour(), ledger)
    for agent in (first, second):
        agent._ws = FakeSocket()  # type: ignore[assignment]
    ringing = {"id": 9, "callback": {"number": "+12125550100", "answered_at": None}}
    first._on_ack({"type": "ack", "to": "accept", "call_id": 9})
    first._on_panel(
        {"type": "panel", "call_id": 9, "customer": {"lifetime_value": 900, "cost_to_serve": 0}}
    )
    first._on_state(_state("on_call", ringing))
    assert ledger.value_served == 900 and not first.free.is_set()
    # Nobody picked up: the service frees the agent without any call.
    first._on_state(_state("available"))
    assert ledger.value_served == 0 and first.free.is_set() and first.call_id is None
    # Rung again later for another agent, and answered: one accept each, no fault.
    second._on_ack({"type": "ack", "to": "accept", "call_id": 9})
    answered = {"id": 9, "callback": {"number": "+12125550100", "answered_at": "now"}}
    second._on_state(_state("on_call", answered))
    second._on_state(_state("wrap_up", answered))
    assert ledger.double_accepts == 0 and ledger.accepted_by == {9: "sim-02"}
    for agent in (first, second):
        for task in list(agent._tasks):
            task.cancel()
