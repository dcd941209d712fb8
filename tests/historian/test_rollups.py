"""Rollups: equal to aggregates over raw samples, refreshed incrementally, picked when they answer."""

from datetime import timedelta

import numpy as np
import pytest

from historian.maintenance import refresh_rollups
from historian.query import aggregate, pick_source
from historian.samples import Batch, Quality, SampleBatch, to_us
from historian.writer import HistorianWriter
from tests.historian.helpers import T0, at, setup_tags

RAW_1M = """
    SELECT tag_id, time_bucket(interval '1 minute', ts) b, min(value), max(value), avg(value), count(*),
           first(value, ts), last(value, ts)
    FROM samples WHERE quality >= 64 AND value <> 'NaN'::float8 GROUP BY 1, 2 ORDER BY 1, 2"""
RAW_1H = RAW_1M.replace("'1 minute'", "'1 hour'")


def irregular_batch(reg, rng, n: int, start_s: float, span_s: float) -> Batch:
    """Samples at random times on two tags, some bad, some NaN on the allow_nan tag."""
    tags = np.array([reg.get("press1.temperature").id, reg.get("meter1.energy").id])
    tid = tags[rng.integers(0, 2, n)]
    ts = to_us(T0) + (start_s * 1e6 + np.sort(rng.uniform(0, span_s * 1e6, n))).astype(np.int64)
    value = rng.normal(50, 10, n)
    quality = np.where(rng.random(n) < 0.05, Quality.BAD, np.where(rng.random(n) < 0.1, Quality.UNCERTAIN, Quality.GOOD))
    value[(tid == tags[1]) & (rng.random(n) < 0.03)] = np.nan
    return Batch(SampleBatch.from_columns(tid, ts, value, quality))


async def assert_rollups_match_raw(conn):
    for table, sql in (("rollup_1m", RAW_1M), ("rollup_1h", RAW_1H)):
        cur = await conn.execute(sql)
        expected = await cur.fetchall()
        cur = await conn.execute(f"SELECT tag_id, bucket, min, max, avg, count, first, last FROM {table} ORDER BY 1, 2")
        got = await cur.fetchall()
        assert len(got) == len(expected), table
        for g, e in zip(got, expected):
            assert g[:2] == e[:2] and g[5] == e[5], table
            assert g[2:5] + g[6:] == pytest.approx(e[2:5] + e[6:], rel=1e-12), (table, g, e)


async def test_rollups_equal_raw_aggregates_and_refresh_incrementally(conn, dsn):
    reg = await setup_tags(conn)
    rng = np.random.default_rng(1)
    async with HistorianWriter(dsn) as w:
        await w.write(irregular_batch(reg, rng, 20_000, 0, 3 * 3600))
        assert await refresh_rollups(conn) > 0
        await assert_rollups_match_raw(conn)
        assert await refresh_rollups(conn) == 0, "nothing new, nothing recomputed"
        # late data into the first hour and new data after: only those buckets are recomputed
        await w.write(irregular_batch(reg, rng, 500, 600, 60))
        await w.write(irregular_batch(reg, rng, 500, 4 * 3600, 120))
        touched = await refresh_rollups(conn)
    assert 0 < touched <= 2 * (2 + 3)  # two tags, a couple of minutes each
    await assert_rollups_match_raw(conn)


def test_pick_source_uses_the_coarsest_rollup_that_tiles_the_range():
    h = timedelta(hours=1)
    assert pick_source(T0, T0 + 24 * h, h) == "rollup_1h"
    assert pick_source(T0, T0 + 24 * h, timedelta(days=1)) == "rollup_1h"
    assert pick_source(T0, T0 + 24 * h, timedelta(minutes=15)) == "rollup_1m"
    assert pick_source(T0 + timedelta(minutes=30), T0 + 24 * h, h) == "rollup_1m"  # start inside an hour
    assert pick_source(T0 + timedelta(seconds=30), T0 + h, h) == "samples"
    assert pick_source(T0, T0 + h, timedelta(seconds=10)) == "samples"


@pytest.mark.parametrize("agg", ["avg", "min", "max", "count", "first", "last"])
async def test_aggregate_from_rollups_equals_aggregate_from_raw(conn, dsn, agg):
    reg = await setup_tags(conn)
    rng = np.random.default_rng(2)
    async with HistorianWriter(dsn) as w:
        await w.write(irregular_batch(reg, rng, 5000, 0, 2 * 3600))
    start, end = T0, T0 + timedelta(hours=2)
    hourly = await aggregate(conn, "press1.temperature", start, end, timedelta(hours=1), agg)
    minutely = await aggregate(conn, "press1.temperature", start, end, timedelta(hours=1), agg, source="rollup_1m")
    raw = await aggregate(conn, "press1.temperature", start, end, timedelta(hours=1), agg, source="samples")
    assert (hourly.source, minutely.source, raw.source) == ("rollup_1h", "rollup_1m", "samples")
    cur = await conn.execute(
        f"""SELECT time_bucket(interval '1 hour', ts), {'count(*)' if agg == 'count' else
                   {'avg': 'avg(value)', 'min': 'min(value)', 'max': 'max(value)',
                    'first': 'first(value, ts)', 'last': 'last(value, ts)'}[agg]}
            FROM samples WHERE tag_id = %s AND quality >= 64 AND value <> 'NaN'::float8
              AND ts >= %s AND ts < %s GROUP BY 1 ORDER BY 1""",
        (reg.get("press1.temperature").id, start, end),
    )
    expected = await cur.fetchall()
    for result in (hourly, minutely, raw):
        assert [b.ts for b in result.buckets] == [e[0] for e in expected]
        assert [b.value for b in result.buckets] == pytest.approx([float(e[1]) for e in expected], rel=1e-12)
    fifteen = await aggregate(conn, "press1.temperature", start, end, timedelta(minutes=15), agg)
    assert fifteen.source == "rollup_1m" and len(fifteen.buckets) == 8
    odd = await aggregate(conn, "press1.temperature", at(7), end, timedelta(minutes=15), agg)
    assert odd.source == "samples"
