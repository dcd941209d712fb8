"""Raw ranges, latest values, value-at with its edge cases, intervals, and the errors they raise."""

import math
from datetime import datetime, timedelta

import pytest

from historian import InvalidParameterError, Quality, Sample, UnknownTagError
from historian.query import aggregate, latest, parse_interval, raw, value_at
from historian.writer import HistorianWriter
from tests.historian.helpers import at, setup_tags

SERIES = [
    Sample("press1.temperature", at(0), 10.0),
    Sample("press1.temperature", at(10), 20.0),
    Sample("press1.temperature", at(15), 999.0, Quality.BAD),  # skipped by value-at
    Sample("press1.temperature", at(20), 40.0, Quality.UNCERTAIN),
    Sample("press1.count", at(0), 5),
    Sample("press1.count", at(10), 9),
    Sample("press1.lot", at(0), "LOT-1"),
    Sample("press1.lot", at(30), "LOT-2"),
    Sample("meter1.energy", at(5), math.nan),
]


@pytest.fixture
async def filled(conn, dsn):
    await setup_tags(conn)
    async with HistorianWriter(dsn) as w:
        r = await w.write_records(SERIES)
    assert r.written == len(SERIES)
    return conn


async def test_raw_range_is_half_open_and_ordered(filled):
    points = await raw(filled, "press1.temperature", at(0), at(20))
    assert [p.value for p in points] == [10.0, 20.0, 999.0]
    assert [p.quality for p in points] == [192, 192, 0]
    texts = await raw(filled, "press1.lot", at(0), at(60))
    assert [p.value for p in texts] == ["LOT-1", "LOT-2"]


async def test_raw_limit(filled):
    assert len(await raw(filled, "press1.temperature", at(0), at(60), limit=2)) == 2
    with pytest.raises(InvalidParameterError) as e:
        await raw(filled, "press1.temperature", at(0), at(60), limit=0)
    assert e.value.parameter == "limit"


@pytest.mark.parametrize(
    "t, mode, value, exact, note",
    [
        (5, "linear", 15.0, False, ""),
        (10, "linear", 20.0, True, ""),
        (15, "linear", 30.0, False, ""),  # the bad sample at 15 s is skipped
        (15, "previous", 20.0, False, ""),
        (25, "previous", 40.0, False, ""),
        (25, "linear", None, False, "no usable sample after this time"),
        (-5, "previous", None, False, "no usable sample at or before this time"),
        (-5, "linear", None, False, "no usable sample before this time"),
    ],
)
async def test_value_at_float_tag(filled, t, mode, value, exact, note):
    v = await value_at(filled, "press1.temperature", at(t), mode)
    assert (v.value, v.exact, v.note) == (value, exact, note)


async def test_value_at_stepped_tags(filled):
    count = await value_at(filled, "press1.count", at(5), "linear")
    assert count.value == 5.0 and "stepped" in count.note
    lot = await value_at(filled, "press1.lot", at(29), "previous")
    assert lot.value == "LOT-1"
    assert (await value_at(filled, "press1.lot", at(30))).exact


async def test_latest(filled):
    rows = {r.tag: r for r in await latest(filled)}
    assert rows["press1.temperature"].value == 40.0 and rows["press1.temperature"].ts == at(20)
    assert rows["press1.lot"].value == "LOT-2"
    assert math.isnan(rows["meter1.energy"].value)
    only = await latest(filled, ["press1.count"])
    assert [(r.tag, r.value) for r in only] == [("press1.count", 9.0)]
    with pytest.raises(UnknownTagError):
        await latest(filled, ["press1.count", "nope"])


async def test_errors_name_what_is_wrong(filled):
    with pytest.raises(UnknownTagError, match="'nope'"):
        await raw(filled, "nope", at(0), at(1))
    with pytest.raises(InvalidParameterError) as e:
        await raw(filled, "press1.temperature", at(10), at(0))
    assert e.value.parameter == "end"
    with pytest.raises(InvalidParameterError) as e:
        await raw(filled, "press1.temperature", datetime(2026, 1, 1), at(0))
    assert e.value.parameter == "start"
    with pytest.raises(InvalidParameterError) as e:
        await aggregate(filled, "press1.temperature", at(0), at(60), timedelta(seconds=10), "median")
    assert e.value.parameter == "agg"
    with pytest.raises(InvalidParameterError) as e:
        await aggregate(filled, "press1.lot", at(0), at(60), timedelta(seconds=10))
    assert e.value.parameter == "agg"
    with pytest.raises(InvalidParameterError) as e:
        await value_at(filled, "press1.temperature", at(0), "cubic")
    assert e.value.parameter == "mode"
    with pytest.raises(InvalidParameterError) as e:
        await aggregate(filled, "press1.temperature", at(0), at(60), timedelta(minutes=1), source="rollup_1h")
    assert e.value.parameter == "source"


@pytest.mark.parametrize(
    "text, seconds",
    [("30s", 30), ("5m", 300), ("5min", 300), ("1h", 3600), ("1d", 86400), ("1w", 604800), ("PT5M", 300),
     ("P1DT2H", 93600), ("0.5s", 0.5), ("250ms", 0.25), ("10", 10)],
)
def test_parse_interval(text, seconds):
    assert parse_interval(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["", "fast", "5 parsecs", "0s", "P", "-1m"])
def test_parse_interval_refuses(text):
    with pytest.raises(InvalidParameterError) as e:
        parse_interval(text, "bucket")
    assert e.value.parameter == "bucket"

