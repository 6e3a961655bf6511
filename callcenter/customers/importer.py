"""Load a CRM export (CSV or JSON lines) into the customers tables.

The importer is idempotent: it upserts by customer number, leaves identical
rows untouched and only adds phone links, so running the same file twice
changes nothing. Every row is checked in Python first (the same rules as the
REST API: phones, e-mail, non-negative money); a bad row is rejected with its
line number and reason and never stops the good ones. Good rows are written
in batches, one transaction per batch, through COPY into staging tables and
one upsert statement; should a batch fail in the database anyway, it is
retried row by row so only the faulty row is rejected.

Checking is most of the importer's CPU (``phonenumbers`` above all), so for a
large file the rows are checked in worker processes, in chunks, while this
process reads the file and writes to the database; results are taken in file
order, so what is stored and rejected is the same as when checked here.
"""

from __future__ import annotations

import csv
import gc
import gzip
import io
import json
import multiprocessing
import os
import signal
import zlib
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from pathlib import Path
from typing import IO, Any

import asyncpg
from email_validator import EmailNotValidError, validate_email
from email_validator.rfc_constants import (
    CASE_INSENSITIVE_MAILBOX_NAMES,
    DOT_ATOM_TEXT,
    EMAIL_MAX_LENGTH,
)
from email_validator.syntax import validate_email_domain_name

from callcenter.customers.models import COLUMNS
from callcenter.customers.phones import normalize
from callcenter.customers.store import CustomerRules, Q
from callcenter.customers.value import ValueFigures, tier_for
from callcenter.db.pool import Conn
from callcenter.errors import BadRequest

REQUIRED = frozenset({"customer_number"})
_MONEY_LIMIT = Decimal("1e12")
# Rows per task for the worker processes, tasks sent ahead of the rows being
# stored, and the smallest file worth starting workers for (~25,000 rows:
# starting them takes about 0.2 s).
_CHUNK_ROWS = 1000
_AHEAD = 8
_POOL_MIN_BYTES = 2 << 20


@dataclass(frozen=True)
class Rejection:
    line: int
    reason: str


@dataclass
class ImportReport:
    rows: int = 0
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    phones_linked: int = 0
    rejected: list[Rejection] = field(default_factory=list)


@dataclass(frozen=True)
class GoodRow:
    line: int
    customer_number: str
    name: str
    email: str | None
    lifetime_value: Decimal
    annual_margin: Decimal
    cost_to_serve: Decimal
    tier: str
    phones: tuple[str, ...]


class RowError(ValueError):
    """One row's fault, said so an operator can fix the line."""


def _money(value: Any, name: str, *, negative_ok: bool = False) -> Decimal:
    if value is None or value == "":
        return Decimal(0)
    try:
        amount = Decimal(str(value).strip())
    except InvalidOperation:
        raise RowError(f"{name} {value!r} is not a number") from None
    if not amount.is_finite() or abs(amount) >= _MONEY_LIMIT:
        raise RowError(f"{name} {value!r} is out of range")
    if amount < 0 and not negative_ok:
        raise RowError(f"{name} must not be negative, got {value}")
    if amount != amount.quantize(Decimal("0.01")):
        raise RowError(f"{name} {value!r} has more than 2 decimal places")
    return amount


def _text(record: dict[str, Any], name: str) -> str:
    # A JSON line may hold any type; like the API, take only text (never a repr of a list).
    value = record.get(name)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise RowError(f"{name} must be a string, got {type(value).__name__}")
    return value.strip()


@lru_cache(maxsize=4096)
def _domain(domain: str) -> tuple[str, str] | None:
    """``(domain, ascii_domain)`` as ``validate_email`` finds them; ``None``: let it say why."""
    if not domain or domain.startswith("["):  # empty or an IP address literal
        return None
    try:
        found = validate_email_domain_name(
            domain, test_environment=False, globally_deliverable=True
        )
    except EmailNotValidError:
        return None
    return found["domain"], found["ascii_domain"]


def normalize_email(text: str) -> str:
    """``validate_email(text, check_deliverability=False).normalized``, in a fraction of the time.

    Most of ``validate_email``'s time goes to the domain (IDNA, UTS-46), and a
    CRM export has few distinct domains: for a plain ASCII ``local@domain``
    whose local part is a dot-atom, this repeats what ``validate_email`` does
    step by step (the same library functions, with its default options, as the
    API uses) with the domain checked once per distinct domain. Anything else
    (quotes, display names, non-ASCII, a bad or too long address) goes through
    ``validate_email`` itself, so the decisions and messages are the library's.
    """
    local, at, domain = text.rpartition("@")
    if at and text.isascii() and DOT_ATOM_TEXT.match(local):
        checked = _domain(domain)
        if checked is not None:
            if local.lower() in CASE_INSENSITIVE_MAILBOX_NAMES:  # RFC 2142: info@, sales@, ...
                local = local.lower()
            normalized = f"{local}@{checked[0]}"
            longest = max(len(text), len(normalized.encode()), len(local) + 1 + len(checked[1]))
            if longest <= EMAIL_MAX_LENGTH:
                return normalized
    return validate_email(text, check_deliverability=False).normalized


def check_row(line: int, record: dict[str, Any], rules: CustomerRules) -> GoodRow:
    """Turn one record into a row to store, or raise ``RowError`` saying what is wrong."""
    number = _text(record, "customer_number")
    if not number:
        raise RowError("customer_number is empty")
    if len(number) > 64 or any(ch.isspace() for ch in number):
        raise RowError(f"customer_number {number!r} must be 1-64 characters without spaces")
    name = _text(record, "name")
    if len(name) > 200:
        raise RowError("name is longer than 200 characters")
    email = _text(record, "email") or None
    if email is not None:
        try:
            email = normalize_email(email)
        except EmailNotValidError as exc:
            raise RowError(f"email {email!r}: {exc}") from None
    raw_phones = record.get("phones") or []
    if isinstance(raw_phones, str):
        raw_phones = [p for p in raw_phones.split(";") if p.strip()]
    if not isinstance(raw_phones, list) or not all(isinstance(p, str) for p in raw_phones):
        raise RowError("phones must be a list of strings or a ';'-separated string")
    phones: dict[str, None] = {}
    for raw in raw_phones:
        phone = normalize(raw, rules.region)
        if phone is None:
            raise RowError(f"phone {raw!r} is not a valid number (default region {rules.region})")
        phones[phone] = None
    figures = ValueFigures(
        _money(record.get("lifetime_value"), "lifetime_value"),
        _money(record.get("annual_margin"), "annual_margin", negative_ok=True),
        _money(record.get("cost_to_serve"), "cost_to_serve"),
    )
    return GoodRow(
        line=line,
        customer_number=number,
        name=name,
        email=email,
        lifetime_value=figures.lifetime_value,
        annual_margin=figures.annual_margin,
        cost_to_serve=figures.cost_to_serve,
        tier=tier_for(figures, rules.thresholds),
        phones=tuple(phones),
    )


def _open_text(path: Path) -> tuple[IO[bytes], IO[str]]:
    raw = path.open("rb")
    binary: IO[bytes] = gzip.GzipFile(fileobj=raw) if path.suffix == ".gz" else raw  # type: ignore[assignment]
    return raw, io.TextIOWrapper(binary, encoding="utf-8-sig", newline="")


def file_format(path: Path) -> str:
    """``csv`` or ``jsonl`` from the file name (``.gz`` allowed on top)."""
    name = path.name.lower().removesuffix(".gz")
    if name.endswith(".csv"):
        return "csv"
    if name.endswith((".jsonl", ".ndjson", ".json")):
        return "jsonl"
    raise BadRequest(f"cannot tell the format of {path.name}: name it .csv or .jsonl")


Record = tuple[int, dict[str, Any] | RowError]


def records(text: IO[str], fmt: str) -> Iterator[Record]:
    """``(line, record)`` pairs; a record that cannot even be read comes as a ``RowError``.

    A wrong CSV header is a fault of the whole file, not of a row, so it raises
    ``BadRequest`` before any row is read.
    """
    if fmt == "csv":
        # strict: bad quoting is a broken line to reject, not something to guess around.
        reader = csv.reader(text, strict=True)
        try:
            header = [h.strip() for h in next(reader)]
        except StopIteration:
            return
        except csv.Error as exc:
            raise BadRequest(f"line 1: the CSV header cannot be read: {exc}") from None
        unknown = [h for h in header if h not in COLUMNS]
        missing = sorted(REQUIRED - set(header))
        if unknown or missing or len(set(header)) != len(header):
            raise BadRequest(
                "line 1: wrong CSV header"
                + (f"; unknown columns: {', '.join(unknown)}" if unknown else "")
                + (f"; missing columns: {', '.join(missing)}" if missing else "")
                + ("; a column appears twice" if len(set(header)) != len(header) else "")
                + f". Expected columns: {', '.join(COLUMNS)}"
            )
        while True:
            line = reader.line_num + 1
            try:
                values = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                yield line, RowError(f"broken CSV line: {exc}")
                continue
            if not values or values == [""]:
                continue
            if len(values) != len(header):
                yield line, RowError(f"the row has {len(values)} fields, the header {len(header)}")
                continue
            yield line, dict(zip(header, values, strict=True))
    else:
        for number, line_text in enumerate(text, start=1):
            if not line_text.strip():
                continue
            try:
                value = json.loads(line_text)
            except json.JSONDecodeError as exc:
                yield number, RowError(f"not valid JSON: {exc.msg} at column {exc.colno}")
                continue
            if not isinstance(value, dict):
                yield number, RowError("a line must hold one JSON object")
                continue
            extra = sorted(set(value) - set(COLUMNS))
            if extra:
                yield number, RowError(f"unknown keys: {', '.join(extra)}")
                continue
            yield number, value


def _readable(
    rows: Iterator[tuple[int, dict[str, Any] | RowError]], path: Path
) -> Iterator[tuple[int, dict[str, Any] | RowError]]:
    """``rows``, with a file that is not UTF-8 (or a broken ``.gz``) as a ``BadRequest``."""
    line = 0
    try:
        for line, record in rows:
            yield line, record
    except (UnicodeDecodeError, EOFError, OSError, zlib.error) as exc:
        where = f" after line {line}" if line else ""
        why = (
            f"not UTF-8 text (byte 0x{exc.object[exc.start]:02x}: {exc.reason}); "
            "save the export as UTF-8"
            if isinstance(exc, UnicodeDecodeError)
            else str(exc)
        )
        raise BadRequest(
            f"the file cannot be read{where}: {why}. Rows stored before that stay stored, "
            "and importing the corrected file again is safe"
        ) from None


async def _write_batch(conn: Conn, rows: list[GoodRow]) -> tuple[int, int, int]:
    """Upsert ``rows`` in the current transaction; return (inserted, updated, phones linked)."""
    await conn.copy_records_to_table(
        "import_rows",
        records=[
            (
                r.line,
                r.customer_number,
                r.name,
                r.email,
                r.lifetime_value,
                r.annual_margin,
                r.cost_to_serve,
                r.tier,
            )
            for r in rows
        ],
    )
    await conn.copy_records_to_table(
        "import_phones", records=[(r.customer_number, p) for r in rows for p in r.phones]
    )
    changed = await conn.fetch(Q["import_upsert"])
    inserted = sum(1 for c in changed if c["inserted"])
    linked = await conn.fetchval(Q["import_link_phones"])
    return inserted, len(changed) - inserted, int(linked)


async def _store(conn: Conn, rows: list[GoodRow], report: ImportReport) -> None:
    try:
        async with conn.transaction():
            inserted, updated, linked = await _write_batch(conn, rows)
    except asyncpg.PostgresError:
        # Find the faulty rows one by one; the good ones still go in.
        for row in rows:
            try:
                async with conn.transaction():
                    inserted, updated, linked = await _write_batch(conn, [row])
            except asyncpg.PostgresError as exc:
                report.rejected.append(Rejection(row.line, f"database refused the row: {exc}"))
                continue
            _count(report, 1, inserted, updated, linked)
        return
    _count(report, len(rows), inserted, updated, linked)


def _count(report: ImportReport, rows: int, inserted: int, updated: int, linked: int) -> None:
    report.inserted += inserted
    report.updated += updated
    report.unchanged += rows - inserted - updated
    report.phones_linked += linked


def _check_chunk(chunk: list[Record], rules: CustomerRules) -> list[GoodRow | RowError]:
    """``check_row`` over ``chunk``, each row's result or fault in order (run in a worker)."""
    checked: list[GoodRow | RowError] = []
    for line, record in chunk:
        if isinstance(record, RowError):
            checked.append(record)
            continue
        try:
            checked.append(check_row(line, record, rules))
        except RowError as exc:
            checked.append(exc)
    return checked


def _checked(
    rows: Iterator[Record], rules: CustomerRules, executor: Executor | None, tell: Callable[[], int]
) -> Iterator[tuple[int, GoodRow | RowError, int]]:
    """``(line, row or its fault, bytes read by then)`` for every row of ``rows``, in order.

    Checking a row costs more CPU than everything else the importer does, so
    with ``executor`` (a process pool) rows are checked in chunks in other
    processes, up to ``_AHEAD`` chunks ahead of the caller: they check the
    next rows while this process parses the file and waits for the database.
    Results come back in file order, so line numbers, the report and the
    duplicate check (the caller's) are the same as without workers.
    """
    pending: deque[tuple[list[Record], int, Callable[[], list[GoodRow | RowError]]]] = deque()
    chunk: list[Record] = []

    def submit(part: list[Record]) -> None:
        if executor is None:
            results = _check_chunk(part, rules)
            pending.append((part, tell(), lambda: results))
        else:
            pending.append((part, tell(), executor.submit(_check_chunk, part, rules).result))

    def oldest() -> Iterator[tuple[int, GoodRow | RowError, int]]:
        part, read, results = pending.popleft()
        for (line, _), result in zip(part, results(), strict=True):
            yield line, result, read

    failure: BadRequest | None = None
    try:
        for record in rows:
            chunk.append(record)
            if len(chunk) >= _CHUNK_ROWS:
                submit(chunk)
                chunk = []
                if len(pending) > (_AHEAD if executor else 0):
                    yield from oldest()
    except BadRequest as exc:  # unreadable from here on: the rows before it still count
        failure = exc
    if chunk:
        submit(chunk)
    while pending:
        yield from oldest()
    if failure is not None:
        raise failure


def _worker_pool() -> ProcessPoolExecutor:
    """One process per CPU to check rows in; Ctrl-C is for the importer to handle.

    ``forkserver`` where there is one: forking this process, with its event
    loop, connections and threads, is not safe; the server preloads this module.
    """
    forkserver = "forkserver" in multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("forkserver" if forkserver else "spawn")
    context.set_forkserver_preload([__name__])  # used by forkserver only
    return ProcessPoolExecutor(
        os.cpu_count(),
        mp_context=context,
        initializer=signal.signal,
        initargs=(signal.SIGINT, signal.SIG_IGN),
    )


@contextmanager
def _no_cycle_collection() -> Iterator[None]:
    """Pause the cyclic garbage collector during the import (restored after).

    The import makes no reference cycles (a collection after 200,000 rows
    finds nothing to free), yet the collector's passes over the rows in flight
    cost about a quarter of this process's CPU when workers check the rows.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


async def import_file(
    pool: asyncpg.Pool[Any],
    path: Path,
    rules: CustomerRules,
    *,
    batch_size: int = 5000,
    on_progress: Callable[[int, int], None] | None = None,
    workers: bool | None = None,
) -> ImportReport:
    """Import ``path``; ``on_progress(bytes_read, total_bytes)`` is called after each batch.

    ``workers``: check the rows in worker processes (see ``_checked``); by
    default when the file is large enough for it to pay off and there are
    several CPUs. The result is the same either way. As always with
    ``multiprocessing``, the main module must be importable without side
    effects (``if __name__ == "__main__":``).
    """
    fmt = file_format(path)
    total = path.stat().st_size  # noqa: ASYNC240 - one stat before a long import
    if workers is None:
        workers = total >= _POOL_MIN_BYTES and (os.cpu_count() or 1) > 1
    report = ImportReport()
    seen: dict[str, int] = {}
    raw, text = _open_text(path)
    async with pool.acquire() as conn:
        await conn.execute(Q["import_stage"])
        executor = _worker_pool() if workers else None
        try:
            with raw, text, _no_cycle_collection():
                batch: list[GoodRow] = []
                rows = _readable(records(text, fmt), path)
                for line, row, read in _checked(rows, rules, executor, raw.tell):
                    report.rows += 1
                    if isinstance(row, RowError):
                        report.rejected.append(Rejection(line, str(row)))
                        continue
                    first = seen.setdefault(row.customer_number, line)
                    if first != line:
                        number = row.customer_number
                        reason = f"customer_number {number} already appeared on line {first}"
                        report.rejected.append(Rejection(line, reason))
                        continue
                    batch.append(row)
                    if len(batch) >= batch_size:
                        await _store(conn, batch, report)
                        batch = []
                        if on_progress is not None:
                            on_progress(read, total)
                if batch:
                    await _store(conn, batch, report)
        finally:
            if executor is not None:
                executor.shutdown(cancel_futures=True)
        if on_progress is not None:
            on_progress(total, total)
    return report
