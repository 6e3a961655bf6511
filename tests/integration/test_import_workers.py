"""Rows checked in worker processes import exactly as rows checked in the importer's process."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, TypeAlias

import asyncpg
import pytest

from callcenter.customers.importer import import_file
from callcenter.customers.sample_data import generate, write_csv
from callcenter.customers.store import CustomerRules
from callcenter.errors import BadRequest

Pool: TypeAlias = "asyncpg.Pool[Any]"

# Faults after 2,500 good rows, so in a later chunk of rows than the lines they repeat.
FAULTS = [
    "C00000001,Again,,,,,",  # line 2502: the number of line 2
    "X1,Bad Phone,,12,1,,",
    "X2,Nul\x00Name,,+1 212 555 0105,3000,,",  # the database refuses it
    "X3,Mail,not-an-email,,1,,",
    "X4,Too,few",
    'X5,"Bad"Quote,,,1,,',
    "X6,Info,INFO@Example.COM,0044 20 7946 0018,,,",
    'X7,Quoted,"""ada lovelace""@example.com",,,,',
    "X8,Intl,josé@bücher.de,0033 5 04 83 56 14,,,",
    "X9,Nine,,,-1,,",
    "C00001200,Twice,,,,,",  # the number of line 1201
]


async def _stored(pool: Pool) -> list[dict[str, Any]]:
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            """
            SELECT c.customer_number, c.name, c.email, c.lifetime_value, c.annual_margin,
                   c.cost_to_serve, c.computed_tier,
                   array_agg(p.phone_e164 ORDER BY p.phone_e164) AS phones
              FROM customers c LEFT JOIN customer_phones p ON p.customer_id = c.id
             GROUP BY c.id ORDER BY c.customer_number
            """
        )
    return [dict(r) for r in rows]


async def _reset(pool: Pool) -> None:
    async with pool.acquire() as conn:
        await conn.execute("TRUNCATE customers RESTART IDENTITY CASCADE")


async def test_workers_store_and_reject_exactly_as_the_importer_alone(
    pool: Pool, rules: CustomerRules, tmp_path: Path
) -> None:
    path = tmp_path / "crm.csv"
    write_csv(path, generate(2500, seed=11))
    with path.open("a", encoding="utf-8") as fh:
        fh.write("\n".join(FAULTS) + "\n")

    alone = await import_file(pool, path, rules, batch_size=700, workers=False)
    stored = await _stored(pool)
    await _reset(pool)
    helped = await import_file(pool, path, rules, batch_size=700, workers=True)

    assert helped == alone  # the counts, and every rejection with its line, in the same order
    assert await _stored(pool) == stored
    # The row the database refuses is found when its batch is written, so it comes last.
    lines = [r.line for r in alone.rejected]
    assert lines == [2502, 2503, 2505, 2506, 2507, 2509, 2511, 2512, 2504]
    assert alone.rejected[0].reason == "customer_number C00000001 already appeared on line 2"
    assert alone.rejected[-2].reason == "customer_number C00001200 already appeared on line 1201"
    assert (alone.rows, alone.inserted) == (2511, 2502)


async def test_with_workers_the_rows_before_an_unreadable_line_are_still_stored(
    pool: Pool, rules: CustomerRules, tmp_path: Path
) -> None:
    path = tmp_path / "crm.csv"
    write_csv(path, generate(3500, seed=5))
    with path.open("ab") as fh:
        fh.write("C9,Jos\xe9,,,,,\n".encode("cp1252"))

    details = []
    for workers in (False, True):
        await _reset(pool)
        with pytest.raises(BadRequest) as raised:
            await import_file(pool, path, rules, batch_size=1000, workers=workers)
        details.append(raised.value.detail)
        assert len(await _stored(pool)) == 3000
    assert details[0] == details[1]
    assert re.match(r"the file cannot be read after line \d+: not UTF-8 text", details[0])
