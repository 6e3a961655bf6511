"""``callcenter/db/schema.sql`` is what the migrations build, never a stale picture."""

from __future__ import annotations

import difflib

import asyncpg
import pytest

from callcenter.db.schema import SNAPSHOT, dump_schema, normalise


async def test_the_schema_snapshot_matches_the_migrated_template(template_url: str) -> None:
    conn = await asyncpg.connect(template_url)
    try:
        major = int(await conn.fetchval("SHOW server_version_num")) // 10000
    finally:
        await conn.close()
    if major != 18:
        pytest.skip(f"the snapshot is PostgreSQL 18's pg_dump; this server is {major}")
    dumped = await dump_schema(template_url)
    kept = SNAPSHOT.read_text()
    diff = "\n".join(
        difflib.unified_diff(kept.splitlines(), dumped.splitlines(), "schema.sql", "migrated", n=1)
    )
    assert dumped == kept, (
        "callcenter/db/schema.sql differs from what the migrations build; "
        f"run `callcenter schema` and commit it:\n{diff[:4000]}"
    )


def test_normalise_drops_what_changes_between_dumps() -> None:
    def dump(key: str, version: str) -> str:
        return (
            f"\\restrict {key}\n-- Dumped from database version {version}\n"
            f"CREATE TABLE t ();\n\\unrestrict {key}\n"
        )

    one, two = dump("abc", "18.6"), dump("xyz", "18.7")
    assert normalise(one) == normalise(two)
    assert "CREATE TABLE t ();" in normalise(one)
