"""What-if simulator benchmark: a simulated day of a 100-agent center, three policies.

The issue's target: a day of about 30,000 calls on 100 agents, served under
fifo, strict and value, in under 5 s on this machine. Measured end to end as
``callcenter simulate`` does it (``whatif_run.simulate``): drawing the calls,
computing every call's service key with the router's own ``credit`` and
``service_key``, the event loop for each policy, and the figures per tier.

Baseline, same run: one ``heappush`` and one ``heappop`` per call of a
float, the least a heap-based event loop can do per call in Python. Ratio =
the simulation's time ÷ the baseline's.

    .venv/bin/python benchmarks/whatif.py
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from datetime import UTC, datetime
from heapq import heappop, heappush
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from callcenter.simulation.whatif_run import SimulateOptions, plan, simulate


def load_average() -> str:
    return " / ".join(f"{x:.2f}" for x in os.getloadavg())


def machine() -> str:
    cpuinfo = Path("/proc/cpuinfo").read_text().splitlines()
    cpu = next((ln.split(":", 1)[1].strip() for ln in cpuinfo if "model name" in ln), "?")
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}"


def baseline(n: int) -> float:
    start = time.perf_counter()
    heap: list[float] = []
    for i in range(n):
        heappush(heap, float(i % 977))
    while heap:
        heappop(heap)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--agents", type=int, default=100)
    parser.add_argument("--calls-per-day", type=float, default=30_000)
    parser.add_argument("--aht", type=float, default=240.0)
    parser.add_argument("--patience", type=float, default=90.0)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    start_load = load_average()
    options = SimulateOptions(
        rate_per_hour=args.calls_per_day / 24,
        aht=args.aht,
        agents=args.agents,
        patience=args.patience,
        hours=24.0,
        policies=["all"],
        credits=None,
        target="80/20",
        seed=1,
        runs=1,
    )
    checked = plan(options)
    times: list[float] = []
    bases: list[float] = []
    calls = 0
    for r in range(args.repeat):
        began = time.perf_counter()
        comparison, loads, _ = simulate(checked)
        times.append(time.perf_counter() - began)
        calls = len(loads[0])
        bases.append(baseline(calls))
        if r == 0:
            held = all(rep.bound_held for rep in comparison.reports)
    best, median = min(times), statistics.median(times)
    base = statistics.median(bases)
    print(f"#### {datetime.now(UTC):%Y-%m-%d %H:%M} UTC\n")
    print(f"- machine: {machine()}")
    print(f"- load average at start / end: {start_load} | {load_average()}")
    print(
        f"- command: `.venv/bin/python benchmarks/whatif.py --agents {args.agents} "
        f"--calls-per-day {args.calls_per_day:g} --aht {args.aht:g} --repeat {args.repeat}`"
    )
    print(
        f"- a day: {calls} calls, {args.agents} agents, "
        f"{args.calls_per_day / 86400 * args.aht:.1f} Erlangs, patience {args.patience:g} s; "
        f"bounds held: {held}\n"
    )
    print("| figure | value |\n|---|---|")
    print(f"| fifo + strict + value, median of {args.repeat} | **{median:.2f} s** |")
    print(f"| best | {best:.2f} s |")
    print(f"| per call per policy | {median / calls / 3 * 1e6:.1f} µs |")
    print(f"| baseline: a heap push + pop per call | {base * 1000:.1f} ms |")
    print(f"| ratio (median ÷ baseline) | {median / base:.0f} |")


if __name__ == "__main__":
    main()
