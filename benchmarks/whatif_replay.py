"""What-if replay benchmark: a week of a 100-agent center's history under three policies.

The issue's target: a week's replay in under a minute. A fresh database on
the embedded PostgreSQL gets a week of finished calls (``--calls-per-day``,
30,000 by default: about 210,000 calls; 90 % answered with exponential
handle times of 240 s and 10 s of wrap-up, 10 % hung up), written by one
``INSERT … SELECT generate_series``. Then, timed, what
``callcenter simulate --from-history --since 8d`` does: ``read_history``
(the one SQL statement and its rows into Python) and the replay under fifo,
strict and value on the peak number of busy agents.

Baseline, same run: ``SELECT count(*)`` of the same rows, the floor of
finding them.

    .venv/bin/python benchmarks/whatif_replay.py
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import WORK, fresh_database, load_average, machine
from callcenter.db.embedded import start_embedded
from callcenter.simulation.history import read_history
from callcenter.simulation.whatif_run import history_plan, replay_history

FILL = """
INSERT INTO calls (external_id, queue, tier, state, service_key, enqueued_at,
                   connected_at, ended_at, wrapped_up_at)
SELECT 'b' || i, 'general', tier, state, enq, enq, con, fin, wrap
  FROM (
    SELECT i, enq, tier, state,
           CASE WHEN state = 'completed' THEN enq + make_interval(secs => random() * 30) END AS con,
           handle
      FROM (
        SELECT i,
               now() - interval '7 days' + make_interval(secs => i * 604800.0 / $1) AS enq,
               (ARRAY['platinum', 'gold', 'silver', 'standard', 'standard',
                      'standard', 'standard', 'standard', 'standard', 'standard'])
                 [1 + floor(random() * 10)::int] AS tier,
               CASE WHEN random() < 0.9 THEN 'completed' ELSE 'abandoned' END AS state,
               -240 * ln(1 - random()) AS handle
          FROM generate_series(1, $1) AS i
      ) a
  ) b,
  LATERAL (SELECT coalesce(con + make_interval(secs => handle),
                           enq + make_interval(secs => random() * 60)) AS fin) f,
  LATERAL (SELECT CASE WHEN con IS NOT NULL THEN fin + interval '10 seconds' END AS wrap) w
"""


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls-per-day", type=int, default=30_000)
    args = parser.parse_args()
    start_load = load_average()
    server = await asyncio.to_thread(start_embedded, WORK / "pgdata-whatif")
    try:
        url = await fresh_database(server.url(), "bench_whatif")
        pool = await asyncpg.create_pool(url, min_size=1, max_size=2)
        try:
            total = args.calls_per_day * 7
            async with pool.acquire() as conn:
                pg_version = await conn.fetchval("SHOW server_version")
                await conn.execute(FILL, total)
                await conn.execute("VACUUM (ANALYZE) calls")
                began = time.perf_counter()
                await conn.fetchval(
                    "SELECT count(*) FROM calls WHERE enqueued_at >= now() - interval '8 days'"
                )
                baseline = time.perf_counter() - began
            began = time.perf_counter()
            calls = await read_history(pool, timedelta(days=8), None)
            read = time.perf_counter() - began
            began = time.perf_counter()
            hp = history_plan(
                calls,
                ["platinum", "gold", "silver", "standard"],
                since="8d",
                queue=None,
                agents=None,
                policy_names=["all"],
                credits=None,
                target="80/20",
                seed=1,
                runs=1,
            )
            comparison, _, _ = replay_history(hp)
            replayed = time.perf_counter() - began
        finally:
            await pool.close()
    finally:
        await asyncio.to_thread(server.stop)
    held = all(r.bound_held for r in comparison.reports)
    print(f"#### {datetime.now(UTC):%Y-%m-%d %H:%M} UTC\n")
    print(f"- machine: {machine(pg_version)}")
    print(f"- load average at start / end: {start_load} | {load_average()}")
    command = f".venv/bin/python benchmarks/whatif_replay.py --calls-per-day {args.calls_per_day}"
    print(f"- command: `{command}`")
    print(f"- a week: {len(calls)} calls, replayed on {hp.agents} agents; bounds held: {held}\n")
    print("| figure | value |\n|---|---|")
    print(f"| read the week (`read_history`) | {read:.2f} s |")
    print(f"| replay under fifo + strict + value | {replayed:.2f} s |")
    print(f"| **total** | **{read + replayed:.2f} s** |")
    print(f"| baseline: `count(*)` of the week | {baseline * 1000:.0f} ms |")
    print(f"| ratio (read ÷ baseline) | {read / baseline:.0f} |")


if __name__ == "__main__":
    asyncio.run(main())
