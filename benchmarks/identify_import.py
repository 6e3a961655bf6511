"""Identify and import benchmark: the CRM import's rows/s and ``resolve``'s latency at scale.

Loads ``--customers`` seeded sample customers (``callcenter.customers.sample_data``,
cached as CSV in ``benchmarks/.work/``) into a fresh, migrated database through
the project's importer, then times ``identity.resolve`` from Python through
asyncpg, one connection, one call after the other (latency, not throughput):

* import: the importer over the whole CSV, in rows/s; baseline in the same run:
  a raw ``COPY`` of the same file into an unindexed unlogged table of text columns;
* identify, ``--lookups`` calls each after ``--warmup`` unmeasured ones:
  (a) known callers by phone (existing numbers, written in varied formats),
  (b) known callers by customer number with no or a withheld calling number,
  (c) unknown numbers (each creates a provisional customer: a committed write);
  baseline: ``SELECT 1`` through the same connection, as many times.

It prints a Markdown block for ``benchmarks/README.md``: figures, the command,
the machine and the date.

    .venv/bin/python benchmarks/identify_import.py                # 1,000,000 customers
    .venv/bin/python benchmarks/identify_import.py --customers 50000 --lookups 2000
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import csv
import gc
import io
import itertools
import math
import os
import platform
import pstats
import random
import shlex
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import phonenumbers
from phonenumbers import PhoneNumberFormat

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "benchmarks" / ".work"
sys.path.insert(0, str(ROOT))

from callcenter.config import DEFAULT_TIER_THRESHOLDS
from callcenter.customers import sample_data
from callcenter.customers.identity import resolve
from callcenter.customers.importer import import_file
from callcenter.customers.phones import normalize
from callcenter.customers.store import CustomerRules, Q
from callcenter.db.embedded import start_embedded
from callcenter.db.migrate import migrate
from callcenter.db.pool import Conn, create_pool

DB = "bench_identify"
PROFILE_DB = "bench_identify_profile"
IMPORT_TARGET_ROWS_S = 20_000
LOOKUP_TARGET_P99_MS = 2.0
RULES = CustomerRules(region="US", thresholds=dict(DEFAULT_TIER_THRESHOLDS))
WITHHELD = (None, "", "anonymous", "restricted", "Unknown", "+private")
# US area codes for the unknown callers' numbers; any number the sample data
# happens to hold already is dropped (checked against the database).
UNKNOWN_AREA_CODES = ("212", "305", "312", "415", "512", "617", "702", "713", "206", "404")


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --- data -------------------------------------------------------------------------------------


def customers_csv(count: int, seed: int) -> tuple[Path, float | None]:
    """The cached CSV of ``count`` customers from ``seed``; seconds spent generating, if any."""
    path = WORK / f"customers-{count}-seed{seed}.csv"
    if path.exists():
        return path, None
    WORK.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    log(f"generating {count:,} customers (seed {seed}) into {path.name}")
    started = time.perf_counter()
    sample_data.write_csv(partial, sample_data.generate(count, seed))
    partial.replace(path)
    return path, time.perf_counter() - started


def slice_csv(path: Path, rows: int) -> Path:
    """The header and the first ``rows`` rows of ``path``, as a file next to it."""
    out = path.with_name(f"{path.stem}-first{rows}.csv")
    if not out.exists():
        with path.open(encoding="utf-8") as src, out.open("w", encoding="utf-8") as dst:
            dst.writelines(itertools.islice(src, rows + 1))
    return out


def read_through(path: Path) -> None:
    """Read the file once so both import runs find it in the page cache."""
    with path.open("rb") as fh:
        while fh.read(1 << 20):
            pass


@dataclass(frozen=True)
class Sampled:
    customer_number: str
    phones: tuple[str, ...]  # as written in the CSV


def sample_customers(path: Path, total: int, k: int, rng: random.Random) -> list[Sampled]:
    """``k`` random rows of the CSV (with repeats only when ``k > total``), in random order."""
    if k <= total:
        wanted = Counter(rng.sample(range(total), k))
    else:
        wanted = Counter(rng.choices(range(total), k=k))
    found: list[Sampled] = []
    with path.open(encoding="utf-8", newline="") as fh:
        for index, row in enumerate(csv.DictReader(fh)):
            times = wanted.get(index)
            if times:
                phones = tuple(p for p in row["phones"].split(";") if p.strip())
                found.extend([Sampled(row["customer_number"], phones)] * times)
    rng.shuffle(found)
    return found


def restyle(raw: str, rng: random.Random) -> str:
    """The same number as a caller ID or a person might write it: one of several styles."""
    e164 = normalize(raw, RULES.region)
    assert e164 is not None, raw
    number = phonenumbers.parse(e164)
    international = phonenumbers.format_number(number, PhoneNumberFormat.INTERNATIONAL)
    code, _, rest = international.partition(" ")
    styles = [raw, e164, international, f"00{code[1:]} {rest}"]
    if number.country_code == 1:  # the default region is US: no country code needed
        national = phonenumbers.format_number(number, PhoneNumberFormat.NATIONAL)
        styles += [national, f"1{number.national_number}", f"1-{national}"]
    return rng.choice(styles)


async def unknown_numbers(conn: Conn, k: int, rng: random.Random) -> list[str]:
    """``k`` valid US numbers nobody in the database has, in varied styles."""
    chosen: dict[str, None] = {}
    while len(chosen) < k:
        candidates: dict[str, None] = {}
        while len(candidates) < 2 * (k - len(chosen)):
            national = int(
                f"{rng.choice(UNKNOWN_AREA_CODES)}{rng.randrange(200, 1000)}"
                f"{rng.randrange(10_000):04d}"
            )
            number = phonenumbers.PhoneNumber(country_code=1, national_number=national)
            if phonenumbers.is_valid_number(number):
                e164 = phonenumbers.format_number(number, PhoneNumberFormat.E164)
                if e164 not in chosen:
                    candidates[e164] = None
        taken = await conn.fetch(
            "SELECT phone_e164 FROM customer_phones WHERE phone_e164 = ANY($1::text[])",
            list(candidates),
        )
        for e164 in set(candidates) - {r["phone_e164"] for r in taken}:
            if len(chosen) < k:
                chosen[e164] = None
    return [restyle(e164, rng) for e164 in chosen]


# --- database ---------------------------------------------------------------------------------


def with_database(url: str, database: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path=f"/{database}"))


async def fresh_database(server_url: str, name: str) -> str:
    admin = await asyncpg.connect(server_url)
    try:
        await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        await admin.execute(f"CREATE DATABASE {name}")
    finally:
        await admin.close()
    url = with_database(server_url, name)
    conn = await asyncpg.connect(url)
    try:
        await migrate(conn)
    finally:
        await conn.close()
    return url


async def drop_database(server_url: str, name: str) -> None:
    admin = await asyncpg.connect(server_url)
    try:
        await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    finally:
        await admin.close()


# --- measurements -----------------------------------------------------------------------------


@dataclass
class Rate:
    rows: int
    seconds: float

    @property
    def per_second(self) -> float:
        return self.rows / self.seconds


@dataclass
class Latencies:
    label: str
    ns: list[int]
    outcomes: Counter[str]
    wrong: int = 0

    def pct(self, p: float) -> float:
        """Nearest-rank percentile, in ms."""
        ordered = sorted(self.ns)
        return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)] / 1e6

    @property
    def mean(self) -> float:
        return sum(self.ns) / len(self.ns) / 1e6


async def time_import(url: str, path: Path, batch_size: int) -> tuple[Rate, Any]:
    pool = await create_pool(url, min_size=1, max_size=1)
    try:
        started = time.perf_counter()
        report = await import_file(pool, path, RULES, batch_size=batch_size)
        seconds = time.perf_counter() - started
    finally:
        await pool.close()
    return Rate(report.rows, seconds), report


async def time_raw_copy(conn: Conn, path: Path) -> Rate:
    columns = ", ".join(f"{c} text" for c in sample_data.COLUMNS)
    await conn.execute(f"CREATE UNLOGGED TABLE bench_raw_copy ({columns})")
    try:
        started = time.perf_counter()
        status = await conn.copy_to_table("bench_raw_copy", source=path, format="csv", header=True)
        seconds = time.perf_counter() - started
    finally:
        await conn.execute("DROP TABLE bench_raw_copy")
    return Rate(int(status.split()[-1]), seconds)


async def profile_import(server_url: str, path: Path, rows: int, batch_size: int) -> str:
    """cProfile of the importer over the first ``rows`` rows, into a database of its own."""
    part = slice_csv(path, rows)
    url = await fresh_database(server_url, PROFILE_DB)
    pool = await create_pool(url, min_size=1, max_size=1)
    profiler = cProfile.Profile()
    try:
        started = time.perf_counter()
        profiler.enable()
        await import_file(pool, part, RULES, batch_size=batch_size)
        profiler.disable()
        seconds = time.perf_counter() - started
    finally:
        await pool.close()
        await drop_database(server_url, PROFILE_DB)
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.sort_stats("cumulative").print_stats(30)
    stats.sort_stats("tottime").print_stats(15)
    return f"importer over {rows:,} rows under cProfile: {seconds:.1f} s\n{out.getvalue()}"


Call = tuple[str | None, str | None, str | None]  # ani, typed number, who must be found
Runner = Callable[[Conn, "Latencies", Any], Awaitable[None]]


async def select_one(conn: Conn, out: Latencies, calls: Sequence[object]) -> None:
    clock = time.perf_counter_ns
    for _ in calls:
        t0 = clock()
        await conn.fetchval("SELECT 1")
        out.ns.append(clock() - t0)


async def candidates_query(conn: Conn, out: Latencies, phones: list[str]) -> None:
    """The one read ``resolve`` makes, with the phone already in E.164: the database's share."""
    query = Q["identify_candidates"]
    clock = time.perf_counter_ns
    for phone in phones:
        t0 = clock()
        await conn.fetch(query, phone, None)
        out.ns.append(clock() - t0)


async def resolve_calls(conn: Conn, out: Latencies, calls: list[Call]) -> None:
    """Time ``resolve(ani, number)`` for each call and check whom it found.

    The third item of a call is the customer number that must be found, or
    ``"*new*"`` for a provisional customer; a known answer naming anyone else
    counts as wrong (a shared number answers ``multiple``, which is right).
    """
    lowest = RULES.lowest_tier
    region = RULES.region
    clock = time.perf_counter_ns
    for ani, number, expected in calls:
        t0 = clock()
        answer = await resolve(conn, ani, number, region=region, lowest_tier=lowest)
        out.ns.append(clock() - t0)
        out.outcomes[answer.outcome.value] += 1
        found = answer.customer
        if expected == "*new*":
            out.wrong += found is None or not found.provisional
        elif answer.outcome.value == "known":
            out.wrong += found is None or found.customer_number != expected


async def time_identify(
    conn: Conn,
    cases: list[tuple[str, list[Call]]],
    phones: list[str],
    n: int,
    warmup: int,
    block: int,
) -> tuple[Latencies, list[Latencies]]:
    """The baseline, each case and the bare query, ``n`` timed calls each after ``warmup``.

    The series take turns in blocks of ``block`` calls, each turn starting with
    the next series, so the baseline and the cases are measured over the same
    minutes and none always follows the writes of (c): on a machine that is not
    quiet, a baseline measured apart can be off by a factor of two or more.
    """
    baseline = Latencies("baseline: `SELECT 1` round trip", [], Counter())
    bare = Latencies("for reference: the candidates query alone (E.164 given)", [], Counter())
    runs: list[tuple[Latencies, Runner, Sequence[Any]]] = [
        (baseline, select_one, range(warmup + n)),
        *((Latencies(label, [], Counter()), resolve_calls, calls) for label, calls in cases),
        (bare, candidates_query, phones),
    ]
    scratch = Latencies("warm-up", [], Counter())
    for _, run, items in runs:
        await run(conn, scratch, items[:warmup])
    gc.collect()
    for turn, start in enumerate(range(warmup, warmup + n, block)):
        stop = min(start + block, warmup + n)
        first = turn % len(runs)
        for out, run, items in runs[first:] + runs[:first]:
            await run(conn, out, items[start:stop])
    return baseline, [out for out, _, _ in runs[1:]]


# --- report -----------------------------------------------------------------------------------


def cpu_model() -> str:
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return platform.processor() or "?"
    return next((ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("model name")), "?")


def redact(arg: str) -> str:
    """``arg`` with the password of a URL replaced, so the command can be pasted anywhere."""
    if arg.startswith("--") and "=" in arg:
        option, _, value = arg.partition("=")
        return f"{option}={redact(value)}"
    parts = urlsplit(arg)
    if parts.scheme.startswith("postgres") and parts.password:
        return urlunsplit(parts._replace(netloc=parts.netloc.replace(parts.password, "***", 1)))
    return arg


def loadavg() -> str:
    return " / ".join(f"{x:.2f}" for x in os.getloadavg())


def print_report(
    args: argparse.Namespace,
    info: dict[str, str],
    data: dict[str, Any],
    copy_rate: Rate,
    import_rate: Rate,
    report: Any,
    baseline: Latencies,
    cases: list[Latencies],
) -> None:
    out = print
    out(f"\n### Identify and import, {time.strftime('%Y-%m-%d')}\n")
    argv = [redact(a) for a in sys.argv[1:]]
    command = shlex.join([".venv/bin/python", "benchmarks/identify_import.py", *argv])
    out(f"command: `{command}`")
    out()
    out(
        f"machine: {info['cpu']}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"PostgreSQL {info['pg']} ({info['where']}; shared_buffers {info['shared_buffers']}, "
        f"synchronous_commit {info['synchronous_commit']}), asyncpg {asyncpg.__version__}, "
        f"{info['loop']}; client and server on the same machine. "
        f"Load average (1/5/15 min) at start {info['load_start']}, at end {info['load_end']}."
    )
    out()
    out(
        f"data: {data['customers']:,} customers, seed {args.seed}, {data['phones']:,} phone links, "
        f"CSV {data['mb']:.1f} MB ({data['origin']})"
    )
    out()
    out("| import | rows | seconds | rows/s | ratio to baseline |")
    out("|---|---:|---:|---:|---:|")
    out(
        f"| baseline: raw `COPY` of the file into an unindexed unlogged table | "
        f"{copy_rate.rows:,} | {copy_rate.seconds:.2f} | {copy_rate.per_second:,.0f} | 1 |"
    )
    ratio = import_rate.per_second / copy_rate.per_second
    out(
        f"| `callcenter.customers.importer` (batch {args.batch_size:,}), empty tables | "
        f"{import_rate.rows:,} | {import_rate.seconds:.2f} | {import_rate.per_second:,.0f} | "
        f"{ratio:.3f} |"
    )
    out()
    verdict = "met" if import_rate.per_second >= IMPORT_TARGET_ROWS_S else "NOT met"
    out(
        f"importer: {report.inserted:,} new, {report.updated:,} updated, "
        f"{report.unchanged:,} unchanged, {len(report.rejected):,} rejected, "
        f"{report.phones_linked:,} phone links. Target ≥ {IMPORT_TARGET_ROWS_S:,} rows/s: "
        f"{verdict}. Then `VACUUM (ANALYZE)` of both tables: {data['vacuum_s']:.1f} s."
    )
    out()
    out(
        f"Identify: {args.lookups:,} timed calls per line after {args.warmup:,} warm-up calls, "
        f"one after the other on one asyncpg connection, the lines taking turns in blocks of "
        f"{args.block:,}, with {data['customers']:,} customers loaded. Times in ms, measured "
        "around the `await` in Python."
    )
    out()
    out("| case | p50 | p90 | p99 | max | mean | p99 ÷ baseline p99 | outcomes |")
    out("|---|---:|---:|---:|---:|---:|---:|---|")
    base99 = baseline.pct(99)
    for lat in [baseline, *cases]:
        outcomes = ", ".join(f"{k} {v:,}" for k, v in sorted(lat.outcomes.items()))
        if lat.wrong:
            outcomes += f", **wrong customer {lat.wrong:,}**"
        out(
            f"| {lat.label} | {lat.pct(50):.3f} | {lat.pct(90):.3f} | {lat.pct(99):.3f} | "
            f"{max(lat.ns) / 1e6:.3f} | {lat.mean:.3f} | {lat.pct(99) / base99:.1f} | "
            f"{outcomes or '-'} |"
        )
    out()
    targeted = [c for c in cases if c.label.startswith(("(a)", "(b)"))]
    worst = max(c.pct(99) for c in targeted)
    verdict = "met" if worst < LOOKUP_TARGET_P99_MS else "NOT met"
    out(
        f"Target p99 < {LOOKUP_TARGET_P99_MS:g} ms for (a) and (b): {verdict} "
        f"(worst p99 {worst:.3f} ms)."
    )


# --- main -------------------------------------------------------------------------------------


async def main(args: argparse.Namespace) -> None:
    rng = random.Random(args.seed + 1)
    load_start = loadavg()
    path, generated = customers_csv(args.customers, args.seed)
    server = None
    if args.database_url:
        server_url = args.database_url
        where = "at --database-url"
    else:
        log("starting the embedded PostgreSQL in benchmarks/.work/pgdata")
        server = await asyncio.to_thread(start_embedded, WORK / "pgdata")
        server_url = server.url()
        where = "embedded, Unix socket"
    try:
        if args.profile_import:
            log(f"profiling the importer over the first {args.profile_import:,} rows")
            text = await profile_import(server_url, path, args.profile_import, args.batch_size)
            print(text, file=sys.stderr)
        url = await fresh_database(server_url, DB)
        read_through(path)
        conn = await asyncpg.connect(url)
        try:
            log("baseline: raw COPY of the file")
            copy_rate = await time_raw_copy(conn, path)
            log(f"  {copy_rate.per_second:,.0f} rows/s; now the importer")
            import_rate, report = await time_import(url, path, args.batch_size)
            log(f"  {import_rate.per_second:,.0f} rows/s; VACUUM (ANALYZE)")
            started = time.perf_counter()
            await conn.execute("VACUUM (ANALYZE) customers, customer_phones")
            vacuum_s = time.perf_counter() - started
            try:
                await conn.execute("CHECKPOINT")  # not in the middle of the look-ups
            except asyncpg.InsufficientPrivilegeError:
                log("  no CHECKPOINT (not allowed for this user)")
            phones = await conn.fetchval("SELECT count(*) FROM customer_phones")

            n, w = args.lookups, args.warmup
            log("choosing the callers")
            # Three disjoint sets of customers (when there are enough): by phone, by
            # number, and for the bare query (so it does not find (a)'s pages cached).
            known = sample_customers(path, report.rows, 3 * (n + w), rng)
            by_phone: list[Call] = [
                (restyle(rng.choice(s.phones), rng), None, s.customer_number)
                for s in known[: n + w]
            ]
            by_number: list[Call] = [
                (rng.choice(WITHHELD), s.customer_number, s.customer_number)
                for s in known[n + w : 2 * (n + w)]
            ]
            unknown: list[Call] = [
                (ani, None, "*new*") for ani in await unknown_numbers(conn, n + w, rng)
            ]
            e164 = [
                normalize(rng.choice(s.phones), RULES.region) or "" for s in known[2 * (n + w) :]
            ]

            log(f"identify: {n:,} calls per case, in turns of {args.block:,}")
            baseline, cases = await time_identify(
                conn,
                [
                    ("(a) known by phone, varied formats", by_phone),
                    ("(b) known by customer number, no or withheld ANI", by_number),
                    ("(c) unknown number: creates a provisional customer", unknown),
                ],
                e164,
                n,
                w,
                args.block,
            )
            info = {
                "cpu": cpu_model(),
                "pg": await conn.fetchval("SHOW server_version"),
                "shared_buffers": await conn.fetchval("SHOW shared_buffers"),
                "synchronous_commit": await conn.fetchval("SHOW synchronous_commit"),
                "where": where,
                "loop": type(asyncio.get_running_loop()).__module__.split(".")[0],
                "load_start": load_start,
                "load_end": loadavg(),
            }
        finally:
            await conn.close()
        if not args.keep:
            await drop_database(server_url, DB)
    finally:
        if server is not None:
            await asyncio.to_thread(server.stop)
    data = {
        "customers": report.inserted + report.updated + report.unchanged,
        "phones": phones,
        "mb": path.stat().st_size / 1e6,
        "origin": f"generated in {generated:.0f} s" if generated is not None else "cached",
        "vacuum_s": vacuum_s,
    }
    print_report(args, info, data, copy_rate, import_rate, report, baseline, cases)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--customers", type=int, default=1_000_000, help="customers to load")
    parser.add_argument("--lookups", type=int, default=10_000, help="measured calls per case")
    parser.add_argument("--warmup", type=int, default=500, help="unmeasured calls per case first")
    parser.add_argument(
        "--block", type=int, default=500, help="calls per turn: the series take turns"
    )
    parser.add_argument("--seed", type=int, default=42, help="sample data seed")
    parser.add_argument("--batch-size", type=int, default=5000, help="the importer's batch size")
    parser.add_argument(
        "--database-url",
        help="a PostgreSQL server to use instead of the embedded one; its user must be "
        f"allowed to create databases ({DB} is dropped and created)",
    )
    parser.add_argument(
        "--profile-import",
        type=int,
        default=0,
        metavar="ROWS",
        help="first print a cProfile of the importer over the first ROWS rows (to stderr)",
    )
    parser.add_argument(
        "--keep", action="store_true", help=f"keep the {DB} database afterwards (for a look)"
    )
    args = parser.parse_args()
    if min(args.customers, args.lookups, args.block, args.batch_size) < 1 or args.warmup < 0:
        parser.error("counts must be positive (--warmup may be 0)")
    return args


if __name__ == "__main__":
    arguments = parse_args()
    try:
        import uvloop
    except ImportError:
        asyncio.run(main(arguments))
    else:
        uvloop.run(main(arguments))
