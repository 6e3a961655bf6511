"""Apply the ordered ``migrations/NNNN_name.sql`` files, once each, under a lock.

Several service instances may start at once against one database, so the
runner takes a session advisory lock before it reads the versions table. A
database that has a version this code does not know was migrated by newer
code; running old code on it would corrupt it quietly, so we refuse instead.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from importlib import resources

from callcenter.db.pool import Conn
from callcenter.errors import DatabaseNewerThanCode

_log = logging.getLogger(__name__)

#: Arbitrary but fixed key of the advisory lock that serialises migrations.
MIGRATION_LOCK_KEY = 72_0031_0001
_FILENAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


def known_migrations() -> list[Migration]:
    """Every migration shipped with this code, in version order."""
    folder = resources.files("callcenter.db.migrations")
    found: list[Migration] = []
    for entry in folder.iterdir():
        match = _FILENAME.match(entry.name)
        if match:
            found.append(
                Migration(int(match.group(1)), match.group(2), entry.read_text(encoding="utf-8"))
            )
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise RuntimeError(f"two migrations share a version: {versions}")
    return found


def latest_version() -> int:
    migrations = known_migrations()
    return migrations[-1].version if migrations else 0


_CREATE_VERSIONS = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""


async def current_version(conn: Conn) -> int:
    """The highest applied version, 0 for an empty database."""
    exists = await conn.fetchval("SELECT to_regclass('schema_migrations') IS NOT NULL")
    if not exists:
        return 0
    version = await conn.fetchval("SELECT coalesce(max(version), 0) FROM schema_migrations")
    return int(version)


async def migrate(conn: Conn) -> list[Migration]:
    """Apply pending migrations; return the ones applied. Raises if the database is newer."""
    migrations = known_migrations()
    newest = migrations[-1].version if migrations else 0
    await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK_KEY)
    try:
        await conn.execute(_CREATE_VERSIONS)
        applied_versions = {
            r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")
        }
        applied = max(applied_versions, default=0)
        if applied > newest:
            raise DatabaseNewerThanCode(
                f"the database is at migration {applied}, this code knows up to {newest}; "
                "upgrade the code before running it on this database"
            )
        done: list[Migration] = []
        for migration in migrations:
            # Every known version not applied yet, gaps included: migrations of
            # parallel branches get numbers ahead of their merge, so a database
            # may have 0004 before it meets 0003. Such migrations are independent.
            if migration.version in applied_versions:
                continue
            _log.info("applying migration %04d_%s", migration.version, migration.name)
            async with conn.transaction():
                await conn.execute(migration.sql)
                await conn.execute(
                    "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                    migration.version,
                    migration.name,
                )
            done.append(migration)
        return done
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK_KEY)
