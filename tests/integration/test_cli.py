"""`callcenter import|migrate|sample-data` as an operator runs them, on a real database."""

from __future__ import annotations

import csv
import gzip
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, TypeAlias

import asyncpg
import pytest

from callcenter.customers.importer import COLUMNS
from callcenter.db.migrate import latest_version

Pool: TypeAlias = "asyncpg.Pool[Any]"
HEADER = ",".join(COLUMNS)
GOOD = [
    "C1,Ada Lovelace,ada@example.com,(212) 555-0100;+44 20 7946 0018,30000,,200",
    "C2,Bob Byte,,001 212 555 0101,6000,,500",
    "C3,Cy Cipher,,,,,",
]


def _cli(db_url: str, *args: str | Path) -> subprocess.CompletedProcess[str]:
    # A wide console: rich wraps its output at 80 columns when not on a terminal.
    env = os.environ | {"CALLCENTER_DATABASE_URL": db_url, "COLUMNS": "500"}
    return subprocess.run(
        [sys.executable, "-m", "callcenter", *map(str, args)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _flat(text: str) -> str:
    """Output with rich's line wrapping undone."""
    return " ".join(text.split())


def _csv(path: Path, lines: list[str], header: str = HEADER) -> Path:
    path.write_text("\n".join([header, *lines]) + "\n", encoding="utf-8")
    return path


async def _numbers(pool: Pool) -> list[str]:
    async with pool.acquire() as conn:
        rows = await conn.fetch("SELECT customer_number FROM customers ORDER BY customer_number")
    return [r["customer_number"] for r in rows]


async def test_import_prints_a_summary_and_a_second_run_changes_nothing(
    db_url: str, pool: Pool, tmp_path: Path
) -> None:
    path = _csv(tmp_path / "crm.csv", GOOD)
    done = _cli(db_url, "import", path)
    assert done.returncode == 0, done.stderr
    assert "3 rows: 3 new, 0 updated, 0 unchanged, 0 rejected; 3 phone links added" in _flat(
        done.stdout
    )
    assert "Rejected rows" not in done.stdout
    assert await _numbers(pool) == ["C1", "C2", "C3"]

    again = _cli(db_url, "import", path)
    assert again.returncode == 0, again.stderr
    assert "3 rows: 0 new, 0 updated, 3 unchanged, 0 rejected; 0 phone links added" in _flat(
        again.stdout
    )


async def test_import_writes_rejected_rows_with_line_and_reason(
    db_url: str, pool: Pool, tmp_path: Path
) -> None:
    lines = [GOOD[0], "C2,Bad Phone,,12,1,,", GOOD[2], "C4,Negative,,,-1,,", "C1,Again,,,,,"]
    rejects = tmp_path / "out.csv"
    path = _csv(tmp_path / "crm.csv", lines)
    done = _cli(db_url, "import", path, "--rejects", rejects, "--batch-size", "1")
    assert done.returncode == 0, done.stderr
    out = _flat(done.stdout)
    assert "5 rows: 2 new, 0 updated, 0 unchanged, 3 rejected; 2 phone links added" in out
    assert "Rejected rows" in out
    assert f"rejected rows written to {rejects}" in _flat(done.stdout)

    with rejects.open(newline="", encoding="utf-8") as fh:
        written = list(csv.reader(fh))
    assert written[0] == ["line", "reason"]
    assert [row[0] for row in written[1:]] == ["3", "5", "6"]
    assert written[1][1].startswith("phone '12' is not a valid number")
    assert written[2][1] == "lifetime_value must not be negative, got -1"
    assert written[3][1] == "customer_number C1 already appeared on line 2"
    assert await _numbers(pool) == ["C1", "C3"]


@pytest.mark.parametrize("fault", ["header", "encoding"])
async def test_a_file_that_cannot_be_read_exits_2_with_a_message_and_stores_nothing(
    db_url: str, pool: Pool, tmp_path: Path, fault: str
) -> None:
    path = tmp_path / "crm.csv"
    if fault == "header":
        _csv(path, GOOD, header="customer_number,name,tier")
        expected = "line 1: wrong CSV header; unknown columns: tier"
    else:  # a Windows CRM export in cp1252
        path.write_bytes(f"{HEADER}\nC1,Jos\xe9 Mu\xf1oz,,,,,\n".encode("cp1252"))
        expected = "the file cannot be read: not UTF-8 text (byte 0xe9: invalid continuation byte)"
    done = _cli(db_url, "import", path)
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert expected in _flat(done.stderr)
    assert "Traceback" not in done.stderr
    assert "rows:" not in done.stdout
    assert await _numbers(pool) == []


async def test_migrate_on_a_current_database_applies_nothing(db_url: str) -> None:
    done = _cli(db_url, "migrate")
    assert done.returncode == 0, done.stderr
    assert "0 migration(s) applied; the database is current" in _flat(done.stderr)


async def test_migrate_refuses_a_database_migrated_by_newer_code(db_url: str, pool: Pool) -> None:
    future = latest_version() + 1
    async with pool.acquire() as conn:
        await conn.execute(
            "INSERT INTO schema_migrations (version, name) VALUES ($1, 'from_the_future')", future
        )
    done = _cli(db_url, "migrate")
    assert done.returncode == 2, (done.stdout, done.stderr)
    message = _flat(done.stderr)
    assert "Database is newer than this code" in message
    assert f"the database is at migration {future}" in message
    assert "Traceback" not in done.stderr


def test_sample_data_writes_count_rows_and_the_same_seed_gives_the_same_file(
    tmp_path: Path,
) -> None:
    unused = "postgresql://nobody@127.0.0.1:1/none"  # sample-data needs no database
    files = {name: tmp_path / name for name in ("a.csv", "b.csv", "c.csv")}
    for name, seed in [("a.csv", "1"), ("b.csv", "1"), ("c.csv", "2")]:
        done = _cli(unused, "sample-data", files[name], "--count", "50", "--seed", seed)
        assert done.returncode == 0, done.stderr
        assert f"50 customers written to {files[name]}" in _flat(done.stdout)

    with files["a.csv"].open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 50
    assert list(rows[0]) == list(COLUMNS)
    assert [r["customer_number"] for r in rows] == [f"C{i:08d}" for i in range(1, 51)]
    assert files["a.csv"].read_bytes() == files["b.csv"].read_bytes()
    assert files["a.csv"].read_bytes() != files["c.csv"].read_bytes()


@pytest.mark.parametrize("name", ["s.txt", "s.tsv.gz", "customers"])
def test_sample_data_refuses_a_name_import_could_not_read(tmp_path: Path, name: str) -> None:
    # Whatever sample-data writes must import: a name the importer cannot place is refused.
    unused = "postgresql://nobody@127.0.0.1:1/none"
    path = tmp_path / name
    done = _cli(unused, "sample-data", path, "--count", "5")
    assert done.returncode == 2, done.stdout + done.stderr
    assert f"cannot tell the format of {name}: name it .csv or .jsonl" in _flat(
        done.stdout + done.stderr
    )
    assert not path.exists()
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("name", ["out.jsonl.gz", "out.ndjson.gz"])
async def test_sample_data_writes_gzipped_json_lines_that_import(
    db_url: str, pool: Pool, tmp_path: Path, name: str
) -> None:
    path = tmp_path / name
    done = _cli(db_url, "sample-data", path, "--count", "50", "--seed", "1")
    assert done.returncode == 0, done.stderr

    with gzip.open(path, "rt", encoding="utf-8") as fh:
        records = [json.loads(line) for line in fh]
    assert len(records) == 50
    assert all(set(r) == set(COLUMNS) and isinstance(r["phones"], list) for r in records)
    assert records[0]["customer_number"] == "C00000001"

    imported = _cli(db_url, "import", path)
    assert imported.returncode == 0, imported.stderr
    assert "50 rows: 50 new, 0 updated, 0 unchanged, 0 rejected" in _flat(imported.stdout)
    assert await _numbers(pool) == [r["customer_number"] for r in records]
