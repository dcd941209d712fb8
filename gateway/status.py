"""Publish each source's health to the sources table and to /metrics."""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import datetime, timezone
from typing import Sequence

import psycopg
from psycopg.types.json import Jsonb

from gateway.source import SourceStatus
from gateway.spool import Spool
from historian.db import connect
from historian.metrics import METRICS, MetricsRegistry

log = logging.getLogger(__name__)

_INSERT = """
INSERT INTO sources (name, kind, connected, last_error, last_error_at, readings_total, readings_per_s,
                     dead_letters_total, reconnects_total, spool_records, spool_bytes, spool_dropped,
                     tags_total, tags_live, tag_errors, readings_skipped, updated_at)
VALUES """
_ROW = "(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, now())"
_ON_CONFLICT = """
ON CONFLICT (name) DO UPDATE SET
    kind = EXCLUDED.kind, connected = EXCLUDED.connected, last_error = EXCLUDED.last_error,
    last_error_at = EXCLUDED.last_error_at, readings_total = EXCLUDED.readings_total,
    readings_per_s = EXCLUDED.readings_per_s, dead_letters_total = EXCLUDED.dead_letters_total,
    reconnects_total = EXCLUDED.reconnects_total, spool_records = EXCLUDED.spool_records,
    spool_bytes = EXCLUDED.spool_bytes, spool_dropped = EXCLUDED.spool_dropped,
    tags_total = EXCLUDED.tags_total, tags_live = EXCLUDED.tags_live, tag_errors = EXCLUDED.tag_errors,
    readings_skipped = EXCLUDED.readings_skipped, updated_at = now()
"""


def _upsert(n: int) -> str:
    """The upsert of n sources' rows in one statement."""
    return _INSERT + ", ".join([_ROW] * n) + _ON_CONFLICT


def export_spool_metrics(spool: Spool, metrics: MetricsRegistry = METRICS) -> None:
    """Register gauges that read the spool's depth, size and losses at scrape time."""
    metrics.gauge("shopfloor_spool_records", "Records spooled and not yet committed to the historian",
                  lambda: spool.depth)
    metrics.gauge("shopfloor_spool_bytes", "Bytes on disk in the spool", lambda: spool.bytes)
    metrics.gauge("shopfloor_spool_dropped_samples", "Samples dropped because the spool was full",
                  lambda: spool.dropped_samples)


async def publish_status(dsn: str, statuses: Sequence[SourceStatus], spool: Spool, *, every: float = 2.0,
                         metrics: MetricsRegistry = METRICS) -> None:
    """Write every source's status to the sources table every few seconds, until cancelled."""
    connected = metrics.gauge("shopfloor_source_connected", "1 when the source is connected")
    readings = metrics.gauge("shopfloor_source_readings_total", "Readings a source has produced")
    rates = metrics.gauge("shopfloor_source_readings_per_second", "Readings per second over the last interval")
    live = metrics.gauge("shopfloor_source_tags_live", "Configured tags of a source that are live")
    failed = metrics.gauge("shopfloor_source_tags_failed", "Configured tags of a source that failed")
    skipped = metrics.gauge("shopfloor_source_readings_skipped_total",
                            "Readings a polling source did not take because the spool was full")
    last = {s.name: (s.readings_total, time.monotonic()) for s in statuses}
    conn: psycopg.AsyncConnection | None = None
    try:
        while True:
            await asyncio.sleep(every)
            rows = []
            now = time.monotonic()
            for s in statuses:
                before, then = last[s.name]
                rate = (s.readings_total - before) / max(now - then, 1e-9)
                last[s.name] = (s.readings_total, now)
                labels = {"source": s.name, "kind": s.kind}
                connected.set(float(s.connected), **labels)
                readings.set(s.readings_total, **labels)
                rates.set(rate, **labels)
                live.set(s.tags_live, **labels)
                failed.set(len(s.tag_errors), **labels)
                skipped.set(s.readings_skipped, **labels)
                err_at = datetime.fromtimestamp(s.last_error_at, timezone.utc) if s.last_error_at else None
                rows.append((s.name, s.kind, s.connected, s.last_error, err_at, s.readings_total, rate,
                             s.dead_letters_total, s.reconnects_total, spool.depth, spool.bytes, spool.dropped_samples,
                             s.tags_total, s.tags_live, Jsonb(dict(s.tag_errors)), s.readings_skipped))
            try:
                if conn is None or conn.closed:
                    conn = await connect(dsn)
                # one statement for every source (one round trip, not one per source: with 100 sources
                # a statement each cost more CPU than the rest of the status); not executemany, whose
                # pipeline mode, cut short by a cancellation or a dropped connection, left the
                # connection unusable (psycopg asserts pipeline.level)
                if rows:
                    await conn.execute(_upsert(len(rows)), [v for row in rows for v in row])
            except (psycopg.Error, OSError) as e:
                # the database may be down: that is what the spool is for; try again next time
                log.info("could not publish source status", extra={"action": "status", "error": str(e)})
                if conn is not None:
                    await conn.close()
                    conn = None
    finally:  # cancelled at shutdown: give the server its connection back
        if conn is not None and not conn.closed:
            await conn.close()
