"""`callcenter demo` as a newcomer runs it, its bookkeeping held against the database.

The demo runs for real: its own embedded PostgreSQL, the service as a child
process, callers through the signed webhook and agents on their websockets.
Afterwards its database is opened and every figure it printed is computed
again from the tables.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from callcenter.db.embedded import start_embedded


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _demo(*args: str | Path, timeout: float = 150) -> subprocess.CompletedProcess[str]:
    env = os.environ | {"COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "callcenter", "demo", *map(str, args)],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _flat(text: str) -> str:
    return " ".join(text.split())


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any], str]:
    """One 20-second run, kept: its data folder, its JSON summary and its output."""
    folder = tmp_path_factory.mktemp("demo")
    out = folder / "summary.json"
    done = _demo(
        "--duration", "20", "--rate", "3", "--agents", "10", "--seed", "7",
        "--port", str(_free_port()), "--data-dir", folder / "data", "--keep", "--json", out,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    return folder / "data", json.loads(out.read_text()), done.stdout


@pytest.fixture(scope="module")
async def tables(demo_run: tuple[Path, dict[str, Any], str]) -> AsyncIterator[asyncpg.Connection]:
    """The stopped demo's database, started again to be read."""
    server = await asyncio.to_thread(start_embedded, demo_run[0] / "pgdata")
    conn = await asyncpg.connect(server.url())
    try:
        yield conn
    finally:
        await conn.close()
        await asyncio.to_thread(server.stop)


async def test_every_call_the_pbx_placed_is_stored_once_and_ended(
    demo_run: tuple[Path, dict[str, Any], str], tables: asyncpg.Connection
) -> None:
    _, summary, output = demo_run
    placed: dict[str, int] = summary["ledger"]["placed"]
    assert summary["calls"] == len(placed) > 20
    rows = await tables.fetch(
        "SELECT peer_call_id, id, state FROM calls WHERE peer = 'generic' "
        "AND peer_call_id = ANY($1::text[])",
        list(placed),
    )
    assert len(rows) == len(placed)  # once each: peer ids are unique per peer
    assert {r["peer_call_id"]: r["id"] for r in rows} == placed
    assert {r["state"] for r in rows} <= {"completed", "abandoned", "transferred"}
    assert summary["not_ended"] == 0 and summary["faults"] == []
    assert "no faults" in output and "Dashboard" in output and "token" in output


async def test_no_call_was_offered_to_two_agents_at_once(
    demo_run: tuple[Path, dict[str, Any], str], tables: asyncpg.Connection
) -> None:
    ids = list(demo_run[1]["ledger"]["placed"].values())
    overlapping = await tables.fetchval(
        """SELECT count(*) FROM call_offers a JOIN call_offers b
             ON a.call_id = b.call_id AND a.id < b.id
            WHERE a.call_id = ANY($1::bigint[])
              AND b.offered_at < coalesce(a.ended_at, 'infinity')""",
        ids,
    )
    assert overlapping == 0
    # Every offer an agent was shown is the service's offer of that call to that agent.
    # (An offer withdrawn or rejected between two pushes is never shown: the
    # tables may hold more than the agents saw, never another.)
    stored = {
        (r["id"], r["call_id"], r["name"])
        for r in await tables.fetch(
            "SELECT o.id, o.call_id, a.name FROM call_offers o JOIN agents a ON a.id = o.agent_id "
            "WHERE o.call_id = ANY($1::bigint[])",
            ids,
        )
    }
    shown = {tuple(o) for o in demo_run[1]["ledger"]["offers"]}
    assert shown and shown <= stored


async def test_every_answer_an_agent_sent_is_stored_once(
    demo_run: tuple[Path, dict[str, Any], str], tables: asyncpg.Connection
) -> None:
    summary = demo_run[1]
    sent = sorted((c, k, s) for c, k, s in summary["ledger"]["answers"])
    ids = list(summary["ledger"]["placed"].values())
    rows = await tables.fetch(
        "SELECT call_id, question_key, skipped FROM answers WHERE call_id = ANY($1::bigint[]) "
        "ORDER BY call_id",
        ids,
    )
    assert sorted((r["call_id"], r["question_key"], r["skipped"]) for r in rows) == sent
    assert summary["questions_answered"] == sum(1 for r in rows if not r["skipped"]) > 0
    assert summary["questions_skipped"] == sum(1 for r in rows if r["skipped"])


async def test_the_printed_figures_are_the_tables_figures(
    demo_run: tuple[Path, dict[str, Any], str], tables: asyncpg.Connection
) -> None:
    summary = demo_run[1]
    ids = list(summary["ledger"]["placed"].values())
    whole = await tables.fetchrow(
        """SELECT count(*) AS calls,
                  count(*) FILTER (WHERE connected_at IS NOT NULL) AS answered,
                  count(*) FILTER (WHERE state = 'abandoned') AS abandoned,
                  count(*) FILTER (WHERE state = 'transferred') AS transferred,
                  sum(cu.lifetime_value - cu.cost_to_serve)
                      FILTER (WHERE c.connected_at IS NOT NULL) AS value_served
             FROM calls c LEFT JOIN customers cu ON cu.id = c.customer_id
            WHERE c.id = ANY($1::bigint[])""",
        ids,
    )
    assert summary["calls"] == whole["calls"]
    assert summary["answered"] == whole["answered"] > 0
    # The tables know a call was abandoned; only the PBX knows it dropped it at the end.
    assert summary["abandoned"] + summary["cut_off"] == whole["abandoned"]
    assert summary["transferred"] == whole["transferred"]
    assert float(summary["value_served"]) == pytest.approx(float(whole["value_served"] or 0))
    tiers = await tables.fetch(
        """SELECT coalesce(c.tier, 'unknown') AS tier, count(*) AS calls,
                  count(*) FILTER (WHERE connected_at IS NOT NULL) AS answered,
                  avg(extract(epoch FROM connected_at - enqueued_at)) AS asa,
                  avg((extract(epoch FROM connected_at - enqueued_at)
                       <= q.service_level_seconds)::int)
                      FILTER (WHERE connected_at IS NOT NULL) AS service_level,
                  max(extract(epoch FROM coalesce(connected_at, ended_at) - enqueued_at))
                      AS longest
             FROM calls c JOIN queues q ON q.name = c.queue
            WHERE c.id = ANY($1::bigint[])
            GROUP BY 1""",
        ids,
    )
    printed = {t["tier"]: t for t in summary["tiers"]}
    for row in tiers:
        mine = printed[row["tier"]]
        assert mine["calls"] == row["calls"]
        assert mine["answered"] == row["answered"]
        if row["answered"]:
            assert mine["asa_seconds"] == pytest.approx(float(row["asa"]), abs=1e-6)
            assert mine["service_level"] == pytest.approx(float(row["service_level"]))
        assert mine["longest_wait_seconds"] == pytest.approx(float(row["longest"]), abs=1e-6)
    assert sum(t["calls"] for t in summary["tiers"]) == summary["calls"]
    assert sum(t["abandoned"] for t in summary["tiers"]) == summary["abandoned"]
    kept = await tables.fetchrow(
        """SELECT count(*) FILTER (WHERE callback_number IS NOT NULL) AS callbacks,
                  count(*) FILTER (WHERE callback_answered_at IS NOT NULL) AS answered,
                  count(*) FILTER (WHERE end_reason = 'callback_failed') AS failed,
                  count(*) FILTER (WHERE resumed_from IS NOT NULL) AS resumed
             FROM calls WHERE id = ANY($1::bigint[])""",
        ids,
    )
    assert summary["callbacks"] == kept["callbacks"]
    assert summary["callbacks_answered"] == kept["answered"]
    assert summary["callbacks_failed"] == kept["failed"]
    assert summary["resumed"] == kept["resumed"]


def test_bad_options_and_a_busy_port_are_one_line_and_exit_2(tmp_path: Path) -> None:
    zero = _demo("--duration", "0", "--data-dir", tmp_path / "d")
    assert zero.returncode == 2
    assert "--duration must be more than 0 seconds" in _flat(zero.stderr)
    assert not (tmp_path / "d").exists()  # nothing started, nothing made
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        taken = _demo("--duration", "5", "--port", str(port), "--data-dir", tmp_path / "d")
    assert taken.returncode == 2
    assert f"cannot listen on 127.0.0.1:{port}" in _flat(taken.stderr)
    blocked = tmp_path / "file"
    blocked.write_text("")
    unwritable = _demo("--duration", "5", "--data-dir", blocked / "sub")
    assert unwritable.returncode == 2
    assert "cannot be used" in _flat(unwritable.stderr)


async def test_a_data_folder_in_use_is_refused(
    demo_run: tuple[Path, dict[str, Any], str], tables: asyncpg.Connection
) -> None:
    # ``tables`` holds the kept folder's PostgreSQL running.
    busy = await asyncio.to_thread(
        _demo, "--duration", "5", "--port", str(_free_port()), "--data-dir", demo_run[0]
    )
    assert busy.returncode == 2
    assert "is in use" in _flat(busy.stderr)
    assert await tables.fetchval("SELECT count(*) FROM calls") == demo_run[1]["calls"]  # kept


async def test_ctrl_c_stops_everything_and_still_prints_the_summary(tmp_path: Path) -> None:
    env = os.environ | {"COLUMNS": "200"}
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "callcenter", "demo", "--rate", "3", "--agents", "4",
        "--port", str(_free_port()), "--data-dir", str(tmp_path / "data"),
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert child.stdout is not None
    seen = []
    async with asyncio.timeout(90):
        while True:
            line = (await child.stdout.readline()).decode()
            assert line, "the demo ended before it was ready: " + "".join(seen)
            seen.append(line)
            if "calls are flowing" in line:
                break
    child.send_signal(signal.SIGINT)
    async with asyncio.timeout(90):
        rest, _ = await child.communicate()
    out = _flat("".join(seen) + rest.decode())
    assert child.returncode == 0, out
    assert "Summary" in out and "answered" in out
    assert not (tmp_path / "data" / "pgdata" / "postmaster.pid").exists()  # PostgreSQL stopped
