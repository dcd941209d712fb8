"""GET /api/v1/sources: the health of every gateway source, as the gateway last reported it."""

from __future__ import annotations

from datetime import datetime

import msgspec
import psycopg
from litestar import Controller, get
from litestar.di import NamedDependency, Provide

from api.auth import requires
from api.deps import provide_conn


class SourceOut(msgspec.Struct):
    """One source: connection, errors, throughput, and the spool behind it."""

    name: str
    kind: str
    connected: bool
    last_error: str
    last_error_at: datetime | None
    readings_total: int
    readings_per_s: float
    dead_letters_total: int
    reconnects_total: int
    spool_records: int
    spool_bytes: int
    spool_dropped: int
    updated_at: datetime
    tags_total: int = 0
    tags_live: int = 0
    tag_errors: dict[str, str] = msgspec.field(default_factory=dict)
    """Tags that are not live, each with why (e.g. the server refused to monitor it)."""
    readings_skipped: int = 0
    """Readings a polling source did not take while the spool was full (backpressure, counted, never read)."""


class SourceController(Controller):
    """Gateway sources."""

    path = "/api/v1/sources"
    tags = ["gateway"]
    guards = [requires("viewer")]
    dependencies = {"conn": Provide(provide_conn)}

    @get("/", summary="Gateway sources and their health")
    async def list_sources(self, conn: NamedDependency[psycopg.AsyncConnection]) -> list[SourceOut]:
        """Every source the gateway reported, with when it last did."""
        cur = await conn.execute(
            """SELECT name, kind, connected, last_error, last_error_at, readings_total, readings_per_s,
                      dead_letters_total, reconnects_total, spool_records, spool_bytes, spool_dropped, updated_at,
                      tags_total, tags_live, tag_errors, readings_skipped
               FROM sources ORDER BY name"""
        )
        return [SourceOut(*r) for r in await cur.fetchall()]
