"""The what-if replay reads the service's own calls and reproduces them exactly."""

from __future__ import annotations

import asyncio
import json
import math
import os
import subprocess
import sys
from datetime import datetime, timedelta
from typing import Any, TypeAlias

import asyncpg
import pytest

from callcenter.simulation.history import (
    UNIDENTIFIED,
    mean_patience,
    peak_agents,
    read_history,
    replay,
    tiers_of,
)

Pool: TypeAlias = "asyncpg.Pool[Any]"
TIERS = ["platinum", "gold", "silver", "standard"]

#: (queue, tier or None, state, enqueued, connected, ended, wrapped up): seconds after T0.
CALLS: list[tuple[str, str | None, str, float, float | None, float, float | None]] = [
    ("general", "gold", "completed", 0.0, 2.5, 62.5, 70.0),  # handle 67.5 (wrap-up included)
    ("general", "standard", "completed", 10.25, 30.0, 90.0, None),  # handle 60 (no wrap-up)
    ("general", "standard", "abandoned", 12.0, None, 52.0, None),  # hung up after 40 s
    ("general", None, "completed", 40.0, 71.0, 101.0, 105.5),  # never identified; handle 34.5
    ("billing", "platinum", "completed", 41.0, 41.5, 100.0, 101.0),  # another queue
    ("general", "standard", "transferred", 50.0, None, 80.0, None),  # left unanswered at 80
]


async def _fixture(pool: Pool) -> datetime:
    """The calls above, ending a minute ago, plus one too old and one still waiting."""
    async with pool.acquire() as conn:
        t0: datetime = await conn.fetchval("SELECT now() - interval '1 hour'")
        await conn.execute(
            "INSERT INTO queues (name, credits, service_level_seconds)"
            """ VALUES ('billing', '{"platinum": 45, "gold": 15}', 30)"""
        )
        gold = await conn.fetchval(
            "INSERT INTO customers (customer_number, name, lifetime_value, cost_to_serve,"
            " computed_tier) VALUES ('C1', 'Gold', 9000, 1500, 'gold') RETURNING id"
        )

        def at(s: float | None) -> datetime | None:
            return None if s is None else t0 + timedelta(seconds=s)

        rows = [*CALLS, ("general", "gold", "completed", -9 * 86400.0, 1.0 - 9 * 86400,
                         2.0 - 9 * 86400, None)]  # fmt: skip
        for n, (queue, tier, state, enq, con, end, wrap) in enumerate(rows):
            await conn.execute(
                "INSERT INTO calls (external_id, queue, tier, state, service_key, enqueued_at,"
                " connected_at, ended_at, wrapped_up_at, customer_id)"
                " VALUES ($1, $2, $3, $4, $5, $5, $6, $7, $8, $9)",
                f"h{n}", queue, tier, state, at(enq), at(con), at(end), at(wrap),
                gold if n == 0 else None,
            )  # fmt: skip
        await conn.execute(
            "INSERT INTO calls (external_id, queue, tier, service_key, enqueued_at)"
            " VALUES ('still', 'general', 'gold', now(), now())"
        )
    return t0


async def test_replay_reproduces_arrivals_handle_times_and_patience(pool: Pool) -> None:
    await _fixture(pool)
    calls = await read_history(pool, timedelta(days=7), None)
    assert len(calls) == len(CALLS)  # not the 9-day-old call, not the one still waiting
    tiers = tiers_of(calls, TIERS)
    assert tiers == (*TIERS, UNIDENTIFIED)
    load = replay(calls, tiers, seed=1)
    assert load.arrival == [c[3] for c in CALLS]
    recorded = {0: 67.5, 1: 60.0, 3: 34.5, 4: 59.5}
    for i, seconds in recorded.items():
        assert load.handle[i] == seconds
    assert load.handle[2] in recorded.values() and load.handle[5] in recorded.values()
    assert load.patience[2] == 40.0 and load.patience[5] == 30.0  # what they showed
    # Answered callers waited at least their recorded wait.
    assert load.patience[0] > 2.5 and load.patience[3] > 31.0
    assert [tiers[k] for k in load.tier] == [c[1] or UNIDENTIFIED for c in CALLS]
    assert load.value[0] == 7500.0 and load.value[1] == 0.0
    # Two abandonments; all waits sum to 2.5 + 19.75 + 40 + 31 + 0.5 + 30.
    assert mean_patience(calls) == pytest.approx(123.75 / 2)
    assert peak_agents(calls) == 3


async def test_queue_filter_and_the_window(pool: Pool) -> None:
    await _fixture(pool)
    billing = await read_history(pool, timedelta(days=7), "billing")
    assert [c.tier for c in billing] == ["platinum"]
    assert len(await read_history(pool, timedelta(days=10), None)) == len(CALLS) + 1
    assert await read_history(pool, timedelta(minutes=1), None) == []


def _cli(db_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "callcenter", "simulate", *args],
        env=os.environ | {"CALLCENTER_DATABASE_URL": db_url, "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


async def test_the_command_replays_history_and_refuses_an_empty_window(
    pool: Pool, db_url: str
) -> None:
    await _fixture(pool)
    done = await asyncio.to_thread(_cli, db_url, "--from-history", "--since", "7d", "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["scenario"]["calls"] == len(CALLS) and report["scenario"]["agents"] == 3
    assert [r["policy"] for r in report["reports"]] == ["fifo", "strict", "value"]
    fifo_all = report["reports"][0]["tiers"][-1]["figures"]
    assert fifo_all["calls"]["mean"] == len(CALLS)
    assert "replaying 6 calls" in done.stderr
    empty = await asyncio.to_thread(_cli, db_url, "--from-history", "--since", "1m")
    assert empty.returncode == 2
    assert "--since: no finished calls in the last 1m" in empty.stderr
    bad = await asyncio.to_thread(_cli, db_url, "--from-history", "--since", "lately")
    assert bad.returncode == 2 and "--since" in bad.stderr
    assert not math.isnan(fifo_all["asa"]["mean"])


async def test_a_queue_replays_with_its_own_credits_and_target(pool: Pool, db_url: str) -> None:
    await _fixture(pool)
    done = await asyncio.to_thread(
        _cli, db_url, "--from-history", "--queue", "billing", "--policy", "value", "--json"
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["scenario"]["target"] == "80/30" and report["scenario"]["calls"] == 1
    assert report["reports"][0]["overtaking_bound"] == 45.0
    missing = await asyncio.to_thread(_cli, db_url, "--from-history", "--queue", "nosuch")
    assert missing.returncode == 2
    assert "--queue: there is no queue named 'nosuch'" in missing.stderr
