"""Spool records: columns in, the same historian batch out as row by row; old row records still read."""

from __future__ import annotations

import math

import msgspec
import numpy as np

from gateway.records import SpoolRecord, _RowRecord, decode, encode, to_batch
from historian.registry import TagInfo, TagRegistry
from historian.samples import Quality

REGISTRY = TagRegistry(
    [
        TagInfo(1, "speed", "float", "", "machine", False),
        TagInfo(2, "count", "int", "", "material", False),
        TagInfo(3, "lot", "text", "", "material", False),
    ]
)


def batch_of(tags, ts, values, quality):
    return to_batch(decode(encode(SpoolRecord("src", tags, ts, values, quality))), REGISTRY)


def test_numeric_columns_take_the_vectorised_path_unchanged():
    batch = batch_of(["speed", "count", "speed"], [1, 2, 3], [1.5, 7, True], [192, 192, 0])
    assert batch.samples.tag_id.tolist() == [1, 2, 1]
    assert batch.samples.ts_us.tolist() == [1, 2, 3]
    assert batch.samples.value.tolist() == [1.5, 7.0, 1.0]
    assert batch.samples.quality.tolist() == [192, 192, 0]
    assert not batch.events and not batch.rejects


def test_mixed_columns_agree_with_the_row_path():
    tags = ["speed", "lot", "speed", "speed", "nope", "count"]
    ts = [10, 11, 12, 13, 14, 15]
    values = [2.0, "L-7", None, None, 1.0, "x"]
    quality = [192, 192, int(Quality.BAD_COMM_FAILURE), 192, 192, 192]
    got = batch_of(tags, ts, values, quality)
    want = REGISTRY.batch_from_rows(zip(tags, ts, values, quality), "src")
    for column in ("tag_id", "ts_us", "quality"):
        assert np.array_equal(getattr(got.samples, column), getattr(want.samples, column))
    assert got.samples.value[0] == 2.0 and math.isnan(got.samples.value[1])  # the bad reading keeps no value
    assert [(e.tag_id, e.value) for e in got.events] == [(3, "L-7")]
    # a good reading without a value, an unknown tag and text in an int tag are refused, with reasons
    reasons = sorted(r.reason for r in got.rejects)
    assert reasons == sorted(r.reason for r in want.rejects) and len(reasons) == 3
    assert any("unknown tag 'nope'" in r for r in reasons)


def test_a_row_record_left_by_an_older_gateway_still_reads():
    old = msgspec.msgpack.encode(_RowRecord("src", [("speed", 5, 3.25, 192), ("lot", 6, "L-1", 192)]))
    record = decode(old)
    assert (record.tags, record.ts_us, record.values, record.quality) == (
        ["speed", "lot"], [5, 6], [3.25, "L-1"], [192, 192]
    )
    batch = to_batch(record, REGISTRY)
    assert batch.samples.value.tolist() == [3.25] and batch.events[0].value == "L-1"
