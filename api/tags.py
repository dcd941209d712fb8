"""/api/v1/tags: the tag registry and each tag's samples, aggregates, latest and value-at."""

from __future__ import annotations

import math
from datetime import datetime
from typing import Annotated

import msgspec
import psycopg
from litestar import Controller, get
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath, QueryParameter

from api import cursor as cursors
from api.auth import requires
from api.deps import provide_conn
from historian import query
from historian.errors import InvalidParameterError
from historian.samples import Quality


class TagOut(msgspec.Struct):
    """A tag as the registry holds it."""

    name: str
    unit: str
    description: str
    category: str
    machine: str | None
    data_type: str
    deadband: float
    source: str
    retention_class: str


class SampleOut(msgspec.Struct):
    """One stored value; NaN (a bad sample without a value) is sent as null."""

    ts: datetime
    value: float | str | None
    quality: str
    quality_code: int


class BucketOut(msgspec.Struct):
    """One aggregate over a bucket."""

    ts: datetime
    value: float | None
    count: int


class SamplesOut(msgspec.Struct):
    """Raw samples, or bucketed aggregates when a bucket was asked for."""

    tag: str
    unit: str
    start: datetime
    end: datetime
    source: str
    points: list[SampleOut] | None = None
    """raw values, when no bucket was asked for"""
    buckets: list[BucketOut] | None = None
    """aggregates per bucket, when a bucket was asked for"""
    bucket: str | None = None
    agg: str | None = None
    next_cursor: str | None = None
    """raw pages: pass as `cursor` for the rows after this page; null when the range has no more"""


class LatestOut(msgspec.Struct):
    """The newest value of a tag."""

    tag: str
    unit: str
    ts: datetime
    value: float | str | None
    quality: str


class ValueAtOut(msgspec.Struct):
    """The value of a tag at a time, with the samples it came from."""

    tag: str
    at: datetime
    value: float | str | None
    mode: str
    exact: bool
    before: SampleOut | None
    after: SampleOut | None
    note: str


def _value(v: float | str) -> float | str | None:
    return None if isinstance(v, float) and not math.isfinite(v) else v


def _point(p: query.Point | None) -> SampleOut | None:
    if p is None:
        return None
    return SampleOut(p.ts, _value(p.value), Quality.name_of(p.quality), p.quality)


class TagController(Controller):
    """Read the historian by tag name."""

    path = "/api/v1/tags"
    tags = ["historian"]
    guards = [requires("viewer")]
    dependencies = {"conn": Provide(provide_conn)}

    @get("/", summary="List tags")
    async def list_tags(self, conn: NamedDependency[psycopg.AsyncConnection]) -> list[TagOut]:
        """Every registered tag with its 4M1E category, machine and unit."""
        cur = await conn.execute(
            "SELECT name, unit, description, category, machine, data_type, deadband, source, retention_class "
            "FROM tag_list ORDER BY name"
        )
        return [TagOut(*r) for r in await cur.fetchall()]

    @get("/latest", summary="Latest value of each tag")
    async def latest(
        self,
        conn: NamedDependency[psycopg.AsyncConnection],
        tag: Annotated[list[str] | None, QueryParameter(description="tag names; all tags when absent")] = None,
    ) -> list[LatestOut]:
        """The newest stored value of each tag, whatever its quality."""
        rows = await query.latest(conn, tag)
        return [LatestOut(r.tag, r.unit, r.ts, _value(r.value), Quality.name_of(r.quality)) for r in rows]

    @get("/{name:str}/samples", summary="Samples or bucketed aggregates of a tag")
    async def samples(
        self,
        conn: NamedDependency[psycopg.AsyncConnection],
        name: FromPath[str],
        start: Annotated[datetime, QueryParameter(description="inclusive, ISO 8601 with a zone")],
        end: Annotated[datetime, QueryParameter(description="exclusive, ISO 8601 with a zone")],
        bucket: Annotated[str | None, QueryParameter(description="e.g. 30s, 5m, 1h, 1d or PT5M")] = None,
        agg: Annotated[str, QueryParameter(description="avg, min, max, count, first or last")] = "avg",
        limit: Annotated[int, QueryParameter(description="raw rows per page", ge=1, le=query.MAX_RAW_ROWS)] = 10_000,
        cursor: Annotated[str | None, QueryParameter(
            description="raw pages: the `next_cursor` of the previous page (same tag, start and end)",
            max_length=cursors.MAX_CURSOR)] = None,
    ) -> SamplesOut:
        """Raw samples in [start, end) a page at a time, or aggregates per bucket from the coarsest rollup that answers.

        A full raw page carries `next_cursor`; asking again with it returns the rows after the page's last one,
        each row once, even while new rows arrive.
        """
        if bucket is None:
            if agg != "avg":
                raise InvalidParameterError("agg", "needs a bucket")
            after = cursors.decode(cursor, name) if cursor is not None else None
            tag = await query.resolve(conn, name)
            points = await query.raw(conn, name, start, end, limit, after=after)
            more = cursors.encode(name, points[-1].ts) if len(points) == limit else None
            return SamplesOut(tag.name, tag.unit, start, end, tag.table,  # type: ignore[misc]
                              points=[_point(p) for p in points], next_cursor=more)
        if cursor is not None:
            raise InvalidParameterError("cursor", "only raw pages (no bucket) have cursors")
        try:
            width = query.parse_interval(bucket, "bucket")
        except OverflowError:
            raise InvalidParameterError("bucket", f"{bucket!r} is longer than any range") from None
        result = await query.aggregate(conn, name, start, end, width, agg)
        buckets = [BucketOut(b.ts, _value(b.value), b.count) for b in result.buckets]  # type: ignore[arg-type]
        return SamplesOut(
            result.tag.name, result.tag.unit, start, end, result.source, buckets=buckets, bucket=bucket, agg=agg
        )

    @get("/{name:str}/value", summary="Value of a tag at a time")
    async def value_at(
        self,
        conn: NamedDependency[psycopg.AsyncConnection],
        name: FromPath[str],
        at: Annotated[datetime, QueryParameter(description="ISO 8601 with a zone")],
        mode: Annotated[str, QueryParameter(description="previous or linear")] = "previous",
    ) -> ValueAtOut:
        """The previous value at `at`, or the linear interpolation between the samples around it."""
        v = await query.value_at(conn, name, at, mode)
        return ValueAtOut(v.tag, v.at, _value(v.value) if v.value is not None else None, v.mode, v.exact,
                          _point(v.before), _point(v.after), v.note)
