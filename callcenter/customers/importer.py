"""Load a CRM export (CSV or JSON lines) into the customers tables.

The importer is idempotent: it upserts by customer number, leaves identical
rows untouched and only adds phone links, so running the same file twice
changes nothing. Every row is checked in Python first (the same rules as the
REST API: phones, e-mail, non-negative money); a bad row is rejected with its
line number and reason and never stops the good ones. Good rows are written
in batches, one transaction per batch, through COPY into staging tables and
one upsert statement; should a batch fail in the database anyway, it is
retried row by row so only the faulty row is rejected.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import IO, Any

import asyncpg
from email_validator import EmailNotValidError, validate_email

from callcenter.customers.phones import normalize
from callcenter.customers.store import CustomerRules, Q
from callcenter.customers.value import ValueFigures, tier_for
from callcenter.db.pool import Conn
from callcenter.errors import BadRequest

COLUMNS = (
    "customer_number",
    "name",
    "email",
    "phones",
    "lifetime_value",
    "annual_margin",
    "cost_to_serve",
)
REQUIRED = frozenset({"customer_number"})
_MONEY_LIMIT = Decimal("1e12")


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
            email = validate_email(email, check_deliverability=False).normalized
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


def records(text: IO[str], fmt: str) -> Iterator[tuple[int, dict[str, Any] | RowError]]:
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


async def import_file(
    pool: asyncpg.Pool[Any],
    path: Path,
    rules: CustomerRules,
    *,
    batch_size: int = 5000,
    on_progress: Callable[[int, int], None] | None = None,
) -> ImportReport:
    """Import ``path``; ``on_progress(bytes_read, total_bytes)`` is called after each batch."""
    fmt = file_format(path)
    total = path.stat().st_size  # noqa: ASYNC240 - one stat before a long import
    report = ImportReport()
    seen: dict[str, int] = {}
    raw, text = _open_text(path)
    async with pool.acquire() as conn:
        await conn.execute(Q["import_stage"])
        with raw, text:
            batch: list[GoodRow] = []
            for line, record in _readable(records(text, fmt), path):
                report.rows += 1
                try:
                    if isinstance(record, RowError):
                        raise record
                    row = check_row(line, record, rules)
                    first = seen.setdefault(row.customer_number, line)
                    if first != line:
                        number = row.customer_number
                        raise RowError(f"customer_number {number} already appeared on line {first}")
                except RowError as exc:
                    report.rejected.append(Rejection(line, str(exc)))
                    continue
                batch.append(row)
                if len(batch) >= batch_size:
                    await _store(conn, batch, report)
                    batch = []
                    if on_progress is not None:
                        on_progress(raw.tell(), total)
            if batch:
                await _store(conn, batch, report)
        if on_progress is not None:
            on_progress(total, total)
    return report
