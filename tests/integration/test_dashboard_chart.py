"""The last hour's chart comes from the database: the same on every instance, in full
after a restart, and equal to the calls' own times counted by hand."""

from __future__ import annotations

import itertools
import json
from datetime import datetime, timedelta
from typing import Any

import asyncpg
from aiohttp.test_utils import TestClient

from tests.conftest import AppFactory
from tests.integration.dashboard_helpers import call, person, utcnow
from tests.integration.queue_helpers import FAST, make_agent

WINDOW = 300.0


async def snapshot_chart(client: TestClient[Any, Any], token: str) -> list[dict[str, Any]]:
    ws = await client.ws_connect(f"/ws/dashboard?token={token}", headers={"Authorization": ""})
    try:
        first = json.loads((await ws.receive(timeout=5)).data)
    finally:
        await ws.close()
    assert first["type"] == "snapshot"
    chart: list[dict[str, Any]] = first["chart"]
    return chart


async def test_the_chart_is_derived_from_the_calls_and_the_same_everywhere(
    app_factory: AppFactory, pool: asyncpg.Pool[Any]
) -> None:
    first = await app_factory(stats_window_seconds=WINDOW, **FAST)
    agent_id, _ = await make_agent(first, "ada")
    token = await person(first, "sam")
    now = utcnow()
    # (arrived, left, answered within the service level?) in seconds before now;
    # left None: still waiting. The queue's service level is 20 s.
    calls = {
        "a": (1500.0, 1400.0, False),  # answered after 100 s
        "b": (900.0, 895.0, True),  # answered after 5 s
        "c": (600.0, None, None),  # waiting
        "d": (500.0, 400.0, None),  # abandoned
        "e": (4000.0, None, None),  # waiting since before the hour
    }
    async with pool.acquire() as conn:
        for name, (arrived, left, within) in calls.items():
            if left is None:
                await call(
                    conn, name, tier="standard", customer_id=None, enqueued=arrived,
                    state="waiting", now=now,
                )  # fmt: skip
            elif within is None:
                await call(
                    conn, name, tier="standard", customer_id=None, enqueued=arrived,
                    ended=left, state="abandoned", now=now,
                )  # fmt: skip
            else:
                await call(
                    conn, name, tier="standard", customer_id=None, enqueued=arrived,
                    connected=left, ended=left - 30, state="completed", agent_id=agent_id,
                    now=now,
                )  # fmt: skip

    chart = await snapshot_chart(first, token)
    assert len(chart) == 360  # one point per 10 s of the hour, from the first reading
    ats = [datetime.fromisoformat(p["at"]) for p in chart]
    assert all(b - a == timedelta(seconds=10) for a, b in itertools.pairwise(ats))
    assert now - timedelta(seconds=3620) < ats[0] and ats[-1] <= now + timedelta(seconds=10)

    def by_hand(at: datetime) -> tuple[int, float | None]:
        """Waiting at ``at`` and the window's service level, from the calls' own times."""
        waiting = 0
        answered = within_sl = 0
        for arrived, left, within in calls.values():
            came, went = now - timedelta(seconds=arrived), None
            if left is not None:
                went = now - timedelta(seconds=left)
            if came < at and (went is None or went >= at):
                waiting += 1
            if (
                within is not None
                and went is not None
                and at - timedelta(seconds=WINDOW) <= went < at
            ):
                answered += 1
                within_sl += within
        return waiting, (within_sl / answered if answered else None)

    for point, at in zip(chart, ats, strict=True):
        waiting, level = by_hand(at)
        assert point["waiting"]["general"] == waiting, (at, point)
        assert point["service_level"]["general"] == level, (at, point)
    seen = {p["waiting"]["general"] for p in chart}
    assert seen >= {1, 2, 3}, seen  # the hand counts are not trivially all the same
    # 0 after the slow answer, none once it is out of the window, 1 after the quick one.
    assert {p["service_level"]["general"] for p in chart} == {None, 0.0, 1.0}

    # Another instance (or this one after a restart) draws the same hour.
    second = await app_factory(stats_window_seconds=WINDOW, **FAST)
    again = await snapshot_chart(second, token)
    same_at = {p["at"]: p for p in chart}
    overlap = [p for p in again if p["at"] in same_at]
    assert len(overlap) >= 350
    assert all(p == same_at[p["at"]] for p in overlap)
