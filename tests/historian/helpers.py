"""Tags and samples the historian tests share."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import psycopg

from historian.registry import MachineSpec, TagRegistry, TagSpec, register

T0 = datetime(2026, 11, 20, 8, 0, tzinfo=timezone.utc)

TAGS = [
    TagSpec("press1.temperature", "machine", unit="degC", machine="press1"),
    TagSpec("press1.count", "machine", data_type="int", machine="press1"),
    TagSpec("press1.running", "machine", data_type="bool", machine="press1"),
    TagSpec("press1.lot", "material", data_type="text", machine="press1"),
    TagSpec("meter1.energy", "energy", unit="kWh", allow_nan=True),
]


async def setup_tags(conn: psycopg.AsyncConnection) -> TagRegistry:
    """Register the shared test tags and their machine."""
    return await register(conn, TAGS, [MachineSpec("press1", line="L1")])


def at(seconds: float) -> datetime:
    """T0 plus some seconds."""
    return T0 + timedelta(seconds=seconds)


async def scalar(conn: psycopg.AsyncConnection, sql: str, params: tuple = ()) -> object:
    """The first column of the first row."""
    cur = await conn.execute(sql, params or None)  # type: ignore[arg-type]
    row = await cur.fetchone()
    return row[0] if row else None
