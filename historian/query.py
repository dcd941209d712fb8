"""The queries automation engineers expect from a historian: raw, bucketed, latest, value-at."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Literal

import psycopg

from historian.errors import InvalidParameterError, UnknownTagError

Agg = Literal["avg", "min", "max", "count", "first", "last"]
AGGREGATES: tuple[str, ...] = ("avg", "min", "max", "count", "first", "last")
MAX_RAW_ROWS = 100_000
# rollups, coarsest first: (table, the granularity its buckets have)
_ROLLUPS = (("rollup_1h", timedelta(hours=1)), ("rollup_1m", timedelta(minutes=1)))
_FROM_ROLLUP = {
    "avg": "sum(avg * count) / sum(count)",
    "min": "min(min)",
    "max": "max(max)",
    "count": "sum(count)",
    "first": "first(first, bucket)",
    "last": "last(last, bucket)",
}
_FROM_RAW = {
    "avg": "avg(value)",
    "min": "min(value)",
    "max": "max(value)",
    "count": "count(*)",
    "first": "first(value, ts)",
    "last": "last(value, ts)",
}
# what counts as a usable value in aggregates and interpolation: not bad, not NaN
_USABLE = "quality >= 64 AND value <> 'NaN'::float8"


@dataclass(frozen=True, slots=True)
class TagRef:
    """A tag resolved by name: its id, type and unit."""

    id: int
    name: str
    data_type: str
    unit: str

    @property
    def table(self) -> str:
        """Where this tag's values are stored."""
        return "events" if self.data_type == "text" else "samples"


@dataclass(frozen=True, slots=True)
class Point:
    """One stored value."""

    ts: datetime
    value: float | str
    quality: int


@dataclass(frozen=True, slots=True)
class Bucket:
    """One aggregate over a time bucket."""

    ts: datetime
    value: float
    count: int


@dataclass(frozen=True, slots=True)
class Aggregated:
    """Bucketed aggregates and the table they were computed from."""

    tag: TagRef
    bucket: timedelta
    agg: str
    source: str
    buckets: list[Bucket]


@dataclass(frozen=True, slots=True)
class Latest:
    """The newest stored value of a tag."""

    tag: str
    unit: str
    ts: datetime
    value: float | str
    quality: int


@dataclass(frozen=True, slots=True)
class ValueAt:
    """The value of a tag at a time: the samples around it and how the value was found."""

    tag: str
    at: datetime
    value: float | str | None
    mode: str
    exact: bool
    before: Point | None
    after: Point | None
    note: str = ""


def check_range(start: datetime, end: datetime) -> None:
    """Refuse naive or inverted ranges, naming the parameter at fault."""
    for name, t in (("start", start), ("end", end)):
        if t.tzinfo is None:
            raise InvalidParameterError(name, f"{t.isoformat()} has no time zone; add Z or +hh:mm")
    if end <= start:
        raise InvalidParameterError("end", f"end ({end.isoformat()}) must be after start ({start.isoformat()})")


async def resolve(conn: psycopg.AsyncConnection, name: str) -> TagRef:
    """The tag of this name, or UnknownTagError."""
    cur = await conn.execute("SELECT id, name, data_type, unit FROM tags WHERE name = %s", (name,))
    row = await cur.fetchone()
    if row is None:
        raise UnknownTagError(name)
    return TagRef(*row)


async def raw(
    conn: psycopg.AsyncConnection, name: str, start: datetime, end: datetime, limit: int = MAX_RAW_ROWS,
    after: datetime | None = None,
) -> list[Point]:
    """Every stored value of a tag in [start, end), oldest first, at most limit rows; only those after `after`.

    (tag_id, ts) is unique, so `after` = the last row's time continues a page exactly where it stopped
    (a keyset page: each row once, however many rows arrive meanwhile).
    """
    check_range(start, end)
    if not 1 <= limit <= MAX_RAW_ROWS:
        raise InvalidParameterError("limit", f"must be 1..{MAX_RAW_ROWS}, got {limit}")
    tag = await resolve(conn, name)
    if after is not None and after >= start:
        start, first = after, "ts > %s"  # a plain range keeps the (tag_id, ts) index scan
    else:
        first = "ts >= %s"
    cur = await conn.execute(
        f"SELECT ts, value, quality FROM {tag.table} WHERE tag_id = %s AND {first} AND ts < %s ORDER BY ts LIMIT %s",
        (tag.id, start, end, limit),
    )
    return [Point(*r) for r in await cur.fetchall()]


def pick_source(start: datetime, end: datetime, bucket: timedelta) -> str:
    """The coarsest table whose buckets tile [start, end) in buckets of this width exactly."""
    for table, grain in _ROLLUPS:
        if bucket % grain == timedelta(0) and _aligned(start, grain) and _aligned(end, grain):
            return table
    return "samples"


def _aligned(t: datetime, grain: timedelta) -> bool:
    return (t - datetime(2000, 1, 3, tzinfo=timezone.utc)) % grain == timedelta(0)


async def aggregate(
    conn: psycopg.AsyncConnection,
    name: str,
    start: datetime,
    end: datetime,
    bucket: timedelta,
    agg: str = "avg",
    source: str | None = None,
) -> Aggregated:
    """Aggregates of good and uncertain values per bucket, from the coarsest rollup that answers.

    `source` forces a finer table ('samples' or 'rollup_1m') than the one picked, to cross-check.
    """
    check_range(start, end)
    if bucket <= timedelta(0):
        raise InvalidParameterError("bucket", f"must be a positive interval, got {bucket}")
    if agg not in AGGREGATES:
        raise InvalidParameterError("agg", f"{agg!r} is not one of {', '.join(AGGREGATES)}")
    if (end - start) / bucket > MAX_RAW_ROWS:
        raise InvalidParameterError("bucket", f"{bucket} over this range gives more than {MAX_RAW_ROWS} buckets")
    tag = await resolve(conn, name)
    if tag.data_type == "text":
        raise InvalidParameterError("agg", f"tag {name!r} holds text; it has raw values only")
    picked = pick_source(start, end, bucket)
    order = ["samples", "rollup_1m", "rollup_1h"]
    if source is None:
        source = picked
    elif source not in order:
        raise InvalidParameterError("source", f"{source!r} is not one of {', '.join(order)}")
    elif order.index(source) > order.index(picked):
        raise InvalidParameterError("source", f"{source} does not tile this range and bucket; {picked} does")
    if source == "samples":
        time_col, expr = "ts", _FROM_RAW[agg]
        count = "count(*)"
        where = f"tag_id = %s AND ts >= %s AND ts < %s AND {_USABLE}"
    else:
        # exact answers: fold in what came since, but only when something came for this tag and range
        # (a refresh serialises on a lock; clean ranges, the usual case for dashboards, skip it)
        await conn.execute("SELECT refresh_rollups() WHERE EXISTS (SELECT 1 FROM rollup_dirty WHERE %s = ANY(tag_ids) "
                           "AND lo < %s AND hi >= %s)", (tag.id, end, start))
        time_col, expr = "bucket", _FROM_ROLLUP[agg]
        count = "sum(count)"
        where = "tag_id = %s AND bucket >= %s AND bucket < %s"
    cur = await conn.execute(
        f"""SELECT time_bucket(%s::interval, {time_col}) AS b, ({expr})::float8, ({count})::bigint
            FROM {source} WHERE {where} GROUP BY b ORDER BY b""",
        (bucket, tag.id, start, end),
    )
    return Aggregated(tag, bucket, agg, source, [Bucket(*r) for r in await cur.fetchall()])


async def latest(conn: psycopg.AsyncConnection, names: list[str] | None = None) -> list[Latest]:
    """The newest value of each tag (of the given names, or all), whatever its quality."""
    if names:
        cur = await conn.execute("SELECT name FROM tags WHERE name = ANY(%s)", (names,))
        found = {r[0] for r in await cur.fetchall()}
        for n in names:
            if n not in found:
                raise UnknownTagError(n)
    cur = await conn.execute(
        """SELECT t.name, t.unit, s.ts, s.value::text, s.quality, t.data_type FROM tags t
           CROSS JOIN LATERAL (SELECT ts, value, quality FROM samples
                               WHERE tag_id = t.id ORDER BY ts DESC LIMIT 1) s
           WHERE t.data_type <> 'text' AND (%(names)s::text[] IS NULL OR t.name = ANY(%(names)s))
           UNION ALL
           SELECT t.name, t.unit, e.ts, e.value, e.quality, t.data_type FROM tags t
           CROSS JOIN LATERAL (SELECT ts, value, quality FROM events
                               WHERE tag_id = t.id ORDER BY ts DESC LIMIT 1) e
           WHERE t.data_type = 'text' AND (%(names)s::text[] IS NULL OR t.name = ANY(%(names)s))
           ORDER BY 1""",
        {"names": names or None},
    )
    return [
        Latest(n, u, ts, v if dt == "text" else float(v), q) for n, u, ts, v, q, dt in await cur.fetchall()
    ]


async def value_at(conn: psycopg.AsyncConnection, name: str, at: datetime, mode: str = "previous") -> ValueAt:
    """The value at a time: the previous usable value, or linear interpolation between neighbours.

    Bad-quality and NaN samples are skipped. Text, int and bool tags are stepped: 'linear' gives
    the previous value for them. Linear with no sample after `at` gives no value, as it would
    otherwise extrapolate.
    """
    if mode not in ("previous", "linear"):
        raise InvalidParameterError("mode", f"{mode!r} is not one of previous, linear")
    if at.tzinfo is None:
        raise InvalidParameterError("at", f"{at.isoformat()} has no time zone; add Z or +hh:mm")
    tag = await resolve(conn, name)
    usable = "quality >= 64" if tag.table == "events" else _USABLE
    cur = await conn.execute(
        f"SELECT ts, value, quality FROM {tag.table} WHERE tag_id = %s AND ts <= %s AND {usable} "
        "ORDER BY ts DESC LIMIT 1",
        (tag.id, at),
    )
    row = await cur.fetchone()
    before = Point(*row) if row else None
    if before is not None and before.ts == at:
        return ValueAt(name, at, before.value, mode, True, before, before)
    stepped = tag.data_type in ("text", "int", "bool")
    if mode == "previous" or stepped:
        note = "" if before else "no usable sample at or before this time"
        if mode == "linear" and stepped:
            note = f"{tag.data_type} tags are stepped; previous value given"
        return ValueAt(name, at, before.value if before else None, mode, False, before, None, note)
    cur = await conn.execute(
        f"SELECT ts, value, quality FROM samples WHERE tag_id = %s AND ts >= %s AND {_USABLE} ORDER BY ts LIMIT 1",
        (tag.id, at),
    )
    row = await cur.fetchone()
    after = Point(*row) if row else None
    if before is None or after is None:
        missing = "before" if before is None else "after"
        return ValueAt(name, at, None, mode, False, before, after, f"no usable sample {missing} this time")
    assert isinstance(before.value, float) and isinstance(after.value, float)
    frac = (at - before.ts) / (after.ts - before.ts)
    value = before.value + (after.value - before.value) * frac
    return ValueAt(name, at, value, mode, False, before, after)


_INTERVAL = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|sec|m|min|h|hr|d|day|days|w|week|weeks)?\s*$", re.I)
_ISO = re.compile(r"^P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?)?$", re.I)
_UNITS = {
    "ms": 0.001, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "hr": 3600,
    "d": 86400, "day": 86400, "days": 86400, "w": 604800, "week": 604800, "weeks": 604800,
}


def parse_interval(text: str, parameter: str = "bucket") -> timedelta:
    """'15s', '5m', '1h', '1d', '1w' or ISO 8601 'PT5M' as a timedelta; errors name the parameter."""
    m = _INTERVAL.match(text)
    if m:
        seconds = float(m.group(1)) * _UNITS[(m.group(2) or "s").lower()]
    else:
        iso = _ISO.match(text.strip())
        if not iso or not any(iso.groups()):
            raise InvalidParameterError(parameter, f"{text!r} is not an interval like 30s, 5m, 1h, 1d or PT5M")
        d, h, mi, s = (float(g) if g else 0.0 for g in iso.groups())
        seconds = d * 86400 + h * 3600 + mi * 60 + s
    if seconds <= 0:
        raise InvalidParameterError(parameter, f"{text!r} must be longer than zero")
    return timedelta(seconds=seconds)
