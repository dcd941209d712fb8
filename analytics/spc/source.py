"""Where a chart's data comes from and how it is grouped: a tag's samples, or a machine's part counts.

Variables charts (xbar_r, xbar_s, imr, ewma, cusum) read the tag's usable samples (quality good or
uncertain, not NaN) in [start, end) and group them by count or by time bucket.

Attribute charts (p, np, c, u) take counts per subgroup from one of two places:

* `machine=NAME`: the twin's `part_counts` of that machine, scrap as defectives (p, np) or defects
  (c, u) and good + scrap as units inspected, summed per subgroup (a time bucket such as 1h, or a
  count of part_counts rows). The tag in the URL then only names where limits and the spec are kept.
* otherwise the tag's own values: each sample is the count of defectives (or defects) found in one
  inspection of `n` units (`n` required for p, np and u), summed per subgroup like the above.

Samples leave the database packed into one bytea per column (one statement), read by numpy in place: no
row objects, so ten million samples load in seconds rather than minutes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
import psycopg

from analytics.spc.charts import ATTRIBUTES, CHARTS, MAX_RANGE_N, Counts, Subgroups
from analytics.spc.charts import counts_by_count, counts_by_time, individuals, subgroup_by_count, subgroup_by_time
from historian.errors import InvalidParameterError
from historian.query import TagRef, check_range, parse_interval

PG_EPOCH_US = 946_684_800_000_000  # 2000-01-01 UTC in Unix µs: timestamptz_send counts from there
_COUNT = re.compile(r"^\s*(\d+)\s*$")
_USABLE = "quality >= 64 AND value <> 'NaN'::float8"  # as the historian's aggregates: not bad, not NaN
MAX_SAMPLES = 10_000_000
"""Samples (or part-count rows) one chart may read; more is refused with 400 naming `end`."""
MAX_COUNT = 100_000
"""Samples per count subgroup at most."""


class UnknownMachineError(LookupError):
    """A machine name that is not registered."""

    def __init__(self, name: str) -> None:
        super().__init__(f"unknown machine {name!r}")
        self.name = name


@dataclass(frozen=True, slots=True)
class Subgroup:
    """How samples are grouped: consecutive `count` samples, or the samples of each `width` bucket."""

    text: str
    count: int | None = None
    width: timedelta | None = None

    @property
    def width_us(self) -> int:
        """The bucket width in µs (time buckets only)."""
        assert self.width is not None
        return self.width // timedelta(microseconds=1)


@dataclass(frozen=True, slots=True)
class DataSpec:
    """What one chart reads: the tag, the chart kind, the grouping and, for attribute charts, the counts."""

    tag: TagRef
    chart: str
    subgroup: Subgroup
    machine: str | None = None  # attribute counts from this machine's part_counts
    n: float | None = None  # units inspected per sample, for attribute counts from the tag's values


def parse_subgroup(text: str) -> Subgroup:
    """'5' (a count of samples) or '1m', '15s', 'PT1H' (a time bucket); errors name 'subgroup'."""
    m = _COUNT.match(text)
    if m:
        if len(m.group(1)) > 7 or not 1 <= int(m.group(1)) <= MAX_COUNT:
            raise InvalidParameterError("subgroup", f"a count of samples must be 1..{MAX_COUNT}, got {m.group(1)}")
        count = int(m.group(1))
        return Subgroup(text.strip(), count=count)
    try:
        width = parse_interval(text, "subgroup")
    except OverflowError:
        raise InvalidParameterError("subgroup", f"{text!r} is longer than any range") from None
    if width < timedelta(microseconds=1):
        raise InvalidParameterError("subgroup", f"{text!r} is shorter than a microsecond")
    return Subgroup(text.strip(), width=width)


def default_subgroup(chart: str, machine: str | None = None) -> Subgroup:
    """Subgroups of 5 for X̄ charts, hours of a machine's part counts, else each sample its own."""
    if machine is not None:
        return parse_subgroup("1h")
    return parse_subgroup("5" if chart in ("xbar_r", "xbar_s") else "1")


def check(spec: DataSpec) -> None:
    """Refuse a chart, grouping or count source that cannot go together, naming the parameter at fault."""
    if spec.chart not in CHARTS:
        raise InvalidParameterError("chart", f"{spec.chart!r} is not one of {', '.join(CHARTS)}")
    if spec.tag.data_type == "text":
        raise InvalidParameterError("tag", f"tag {spec.tag.name!r} holds text; SPC charts need numbers")
    sg, chart = spec.subgroup, spec.chart
    if chart in ATTRIBUTES:
        if spec.machine is None and chart != "c" and not (spec.n is not None and spec.n > 0):
            raise InvalidParameterError("n", f"{chart} over a tag's values needs n, the units inspected per sample "
                                             "(> 0); or give machine= to chart its part counts")
        return
    if spec.machine is not None:
        raise InvalidParameterError("machine", "part counts feed attribute charts (p, np, c, u) only")
    if chart == "xbar_r" and sg.count is not None and not 2 <= sg.count <= MAX_RANGE_N:
        raise InvalidParameterError("subgroup", f"xbar_r needs 2..{MAX_RANGE_N} samples per subgroup, got "
                                                f"{sg.count}; use xbar_s for larger subgroups")
    if chart == "xbar_s" and sg.count is not None and sg.count < 2:
        raise InvalidParameterError("subgroup", f"xbar_s needs at least 2 samples per subgroup, got {sg.count}")
    if chart == "imr" and sg.count != 1:
        raise InvalidParameterError("subgroup", f"imr charts individual values: subgroup 1, got {sg.text!r}")
    if chart in ("ewma", "cusum") and (sg.count is None or sg.count > MAX_RANGE_N):
        raise InvalidParameterError("subgroup", f"{chart} takes individual values (1) or means of 2..{MAX_RANGE_N} "
                                                f"consecutive samples, got {sg.text!r}")


async def load(conn: psycopg.AsyncConnection, spec: DataSpec, start: datetime, end: datetime) -> Subgroups | Counts:
    """The chart's data over [start, end), grouped as the spec says."""
    check_range(start, end)
    check(spec)
    sg = spec.subgroup
    if spec.chart in ATTRIBUTES:
        ts, count, size = await _counts(conn, spec, start, end)
        if sg.width is not None:
            return counts_by_time(ts, count, size, sg.width_us)
        assert sg.count is not None
        return counts_by_count(ts, count, size, sg.count)
    ts, values = await samples(conn, spec.tag, start, end)
    if sg.width is not None:
        return subgroup_by_time(ts, values, sg.width_us)
    assert sg.count is not None
    return individuals(ts, values) if sg.count == 1 else subgroup_by_count(ts, values, sg.count)


async def samples(conn: psycopg.AsyncConnection, tag: TagRef, start: datetime, end: datetime) -> tuple[np.ndarray, np.ndarray]:
    """(Unix µs, value) of a tag's usable samples in [start, end), oldest first."""
    ts, values = await _packed(
        conn, f"SELECT ts, value AS v1 FROM samples WHERE tag_id = %s AND ts >= %s AND ts < %s AND {_USABLE}",
        (tag.id,), start, end, 1,
    )
    keep = np.isfinite(values)  # infinities are stored as values but are no measurement
    return ts[keep], values[keep]


async def part_counts(conn: psycopg.AsyncConnection, machine: str, start: datetime,
                      end: datetime) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(Unix µs, scrap, good + scrap) of a machine's part_counts rows in [start, end), oldest first."""
    cur = await conn.execute("SELECT id FROM machines WHERE name = %s", (machine,))
    row = await cur.fetchone()
    if row is None:
        raise UnknownMachineError(machine)
    ts, scrap, total = await _packed(
        conn, "SELECT ts, scrap::float8 AS v1, (good + scrap)::float8 AS v2 FROM part_counts "
              "WHERE machine_id = %s AND ts >= %s AND ts < %s",
        (row[0],), start, end, 2,
    )
    return ts, scrap, total


async def _counts(conn: psycopg.AsyncConnection, spec: DataSpec, start: datetime,
                  end: datetime) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if spec.machine is not None:
        return await part_counts(conn, spec.machine, start, end)
    ts, values = await samples(conn, spec.tag, start, end)
    return ts, values, np.full(values.shape[0], spec.n if spec.n is not None else 1.0)


async def _packed(conn: psycopg.AsyncConnection, select: str, params: tuple, start: datetime, end: datetime,
                  floats: int) -> list[np.ndarray]:
    """Rows (ts, v1..v<floats>) of `select` over [start, end) as numpy columns, ts in Unix µs, oldest first.

    The server packs each column into one bytea of big-endian values (timestamptz_send,
    float8send), which numpy reads in place: no Python object per row, where fetchall (or COPY,
    which psycopg yields row by row) costs a microsecond or more for each. One aggregate per
    column over the ordered rows, not one bytea of concatenated records: a `||` per row and an
    ORDER BY inside the aggregate tripled the server's time. The rows are capped at MAX_SAMPLES + 1
    (80 MB a column, far below bytea's 1 GB), so a range too long is refused after reading one
    row more than allowed, not all of it.
    """
    aggs = ", ".join(["string_agg(timestamptz_send(ts), ''::bytea)"]
                     + [f"string_agg(float8send(v{i + 1}), ''::bytea)" for i in range(floats)])
    # every aggregate sees the rows in the same order, so the columns stay paired whatever that order is
    query = f"SELECT count(*), {aggs} FROM ({select} ORDER BY ts LIMIT {MAX_SAMPLES + 1}) r"
    cur = conn.cursor(binary=True)
    await cur.execute(query, (*params, start, end))
    row = await cur.fetchone()
    assert row is not None  # an aggregate without GROUP BY always answers one row
    if row[0] > MAX_SAMPLES:
        raise InvalidParameterError("end", f"the range holds more than {MAX_SAMPLES} samples; chart a shorter one")
    if row[0] == 0:
        return [np.zeros(0, dtype=np.int64)] + [np.zeros(0) for _ in range(floats)]
    ts = np.frombuffer(row[1], dtype=">i8").astype(np.int64) + PG_EPOCH_US
    cols_out = [np.frombuffer(b, dtype=">f8").astype(np.float64) for b in row[2:]]
    if ts.shape[0] > 1 and not np.all(ts[1:] >= ts[:-1]):
        # an aggregate over a sorted subquery keeps its order in practice, not by guarantee
        order = np.argsort(ts, kind="stable")
        ts, cols_out = ts[order], [c[order] for c in cols_out]
    return [ts, *cols_out]
