"""A scratch database for a benchmark: created on the server, migrated, dropped afterwards."""

from __future__ import annotations

import uuid
from contextlib import asynccontextmanager
from typing import AsyncIterator

import psycopg
from psycopg import conninfo

from historian.db import connect
from historian.migrate import migrate


@asynccontextmanager
async def scratch_database(admin: str, prefix: str = "sf_bench") -> AsyncIterator[str]:
    """The DSN of a new, migrated database on admin's server; dropped on the way out, whatever happened."""
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    params = conninfo.conninfo_to_dict(admin)
    params["dbname"] = name
    async with await psycopg.AsyncConnection.connect(admin, autocommit=True) as c:
        await c.execute(f'CREATE DATABASE "{name}"')
    dsn = conninfo.make_conninfo(**params)  # type: ignore[arg-type]
    try:
        conn = await connect(dsn)
        try:
            await migrate(conn)
        finally:
            await conn.close()
        yield dsn
    finally:
        async with await psycopg.AsyncConnection.connect(admin, autocommit=True) as c:
            await c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
