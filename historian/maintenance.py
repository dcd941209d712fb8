"""Housekeeping the historian does on a timer: rollup refresh, partitions ahead, retention."""

from __future__ import annotations

import asyncio
import logging
from datetime import date, datetime, timedelta, timezone

import psycopg

from historian.config import HistorianConfig
from historian.db import connect
from historian.metrics import METRICS, MetricsRegistry

log = logging.getLogger(__name__)


async def refresh_rollups(conn: psycopg.AsyncConnection) -> int:
    """Fold the buckets touched since the last refresh into rollup_1m and rollup_1h; returns 1m rows."""
    cur = await conn.execute("SELECT refresh_rollups()")
    row = await cur.fetchone()
    return int(row[0]) if row else 0


async def apply_retention(conn: psycopg.AsyncConnection, at: datetime | None = None) -> dict[str, int]:
    """Remove what each retention class no longer keeps; returns rows (or chunks) removed per table."""
    cur = await conn.execute("SELECT relation, removed FROM apply_retention(%s)", (at or datetime.now(timezone.utc),))
    return {r: int(n) for r, n in await cur.fetchall()}


async def ensure_partitions(conn: psycopg.AsyncConnection, first: date, last: date) -> int:
    """Create day partitions first..last on plain PostgreSQL (no-op on TimescaleDB); returns how many."""
    made = 0
    for table in ("samples", "events"):
        cur = await conn.execute("SELECT sf_ensure_partitions(%s, %s, %s)", (table, first, last))
        row = await cur.fetchone()
        made += int(row[0]) if row else 0
    return made


async def run_maintenance(dsn: str, config: HistorianConfig, *, metrics: MetricsRegistry = METRICS) -> None:
    """Refresh rollups every refresh_interval, keep partitions ahead and apply retention, until cancelled."""
    refreshed = metrics.counter("shopfloor_historian_rollup_rows_total", "Rollup rows recomputed")
    failures = metrics.counter("shopfloor_historian_maintenance_errors_total", "Failed maintenance runs")
    loop = asyncio.get_running_loop()
    next_retention = loop.time()
    conn: psycopg.AsyncConnection | None = None
    while True:
        try:
            if conn is None or conn.closed:
                conn = await connect(dsn)
            today = datetime.now(timezone.utc).date()
            await ensure_partitions(conn, today - timedelta(days=1), today + timedelta(days=3))
            refreshed.inc(await refresh_rollups(conn))
            if loop.time() >= next_retention:
                removed = await apply_retention(conn)
                log.info("retention applied", extra={"action": "retention", **removed})
                next_retention = loop.time() + config.retention_interval
        except (psycopg.Error, OSError) as e:
            failures.inc()
            log.warning("maintenance failed, will retry", extra={"action": "maintenance", "error": str(e)})
            if conn is not None:
                await conn.close()
                conn = None
        await asyncio.sleep(config.refresh_interval)
