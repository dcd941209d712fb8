"""Apply sql/NNNN_name.sql migrations in order, each in one transaction, each once."""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import psycopg

from historian.errors import HistorianError

log = logging.getLogger(__name__)

SQL_DIR = Path(__file__).resolve().parent.parent / "sql"
_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
_LOCK_KEY = 0x5F_5F_4D_49  # one migrator per database at a time


@dataclass(frozen=True, slots=True)
class Migration:
    """One migration file: its version, name, text and checksum."""

    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        """sha256 of the file's text, to notice an applied migration edited afterwards."""
        return hashlib.sha256(self.sql.encode()).hexdigest()


def discover(sql_dir: Path = SQL_DIR) -> list[Migration]:
    """Every migration in sql_dir, ordered by version; refuses gaps, duplicates and odd names."""
    found: list[Migration] = []
    for path in sorted(sql_dir.glob("*.sql")):
        m = _NAME.match(path.name)
        if not m:
            raise HistorianError(f"{path}: migration files are named NNNN_lowercase_name.sql")
        found.append(Migration(int(m.group(1)), m.group(2), path.read_text()))
    for expected, mig in enumerate(found, start=1):
        if mig.version != expected:
            raise HistorianError(f"{sql_dir}: expected migration {expected:04d}, found {mig.version:04d}_{mig.name}")
    return found


async def migrate(conn: psycopg.AsyncConnection, sql_dir: Path = SQL_DIR) -> list[str]:
    """Apply the pending migrations; returns the names applied (empty when up to date)."""
    migrations = discover(sql_dir)
    await conn.set_autocommit(True)
    await conn.execute("SELECT pg_advisory_lock(%s)", (_LOCK_KEY,))
    try:
        await conn.execute(
            """CREATE TABLE IF NOT EXISTS schema_migrations (
                   version integer PRIMARY KEY,
                   name text NOT NULL,
                   checksum text NOT NULL,
                   applied_at timestamptz NOT NULL DEFAULT now())"""
        )
        cur = await conn.execute("SELECT version, name, checksum FROM schema_migrations")
        applied = {v: (n, c) for v, n, c in await cur.fetchall()}
        done: list[str] = []
        for mig in migrations:
            if mig.version in applied:
                name, checksum = applied[mig.version]
                if checksum != mig.checksum:
                    raise HistorianError(
                        f"migration {mig.version:04d}_{mig.name} was changed after it was applied "
                        f"(as {name}); add a new migration instead of editing an applied one"
                    )
                continue
            log.info("applying migration", extra={"action": "migrate", "migration": mig.name})
            async with conn.transaction():
                await conn.execute(mig.sql)  # type: ignore[arg-type]  # trusted files of our own
                await conn.execute(
                    "INSERT INTO schema_migrations (version, name, checksum) VALUES (%s, %s, %s)",
                    (mig.version, mig.name, mig.checksum),
                )
            done.append(f"{mig.version:04d}_{mig.name}")
        return done
    finally:
        await conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_KEY,))
