"""Exception reporting: deadband (absolute, percent), quality changes, strings, maximum interval."""

from pathlib import Path

import msgspec
import numpy as np
import pytest

from gateway.exception import ExceptionFilter
from gateway.tags import TagConfig

S = 1_000_000  # µs


def tag(**kw) -> TagConfig:
    return msgspec.convert({"name": "t", **kw}, TagConfig)


def kept(f: ExceptionFilter, values, quality=192, step_s=1.0) -> list:
    return [v for i, v in enumerate(values) if f.keep("t", v, int(i * step_s * S), quality)]


def test_no_deadband_keeps_everything():
    assert kept(ExceptionFilter([tag()]), [1.0, 1.0, 1.0]) == [1.0, 1.0, 1.0]


def test_absolute_deadband_measures_from_the_last_stored_value():
    f = ExceptionFilter([tag(deadband=1.0)])
    # 10.4 and 10.8 are within 1.0 of 10.0; 11.0 is not; 11.9 is within 1.0 of 11.0
    assert kept(f, [10.0, 10.4, 10.8, 11.0, 11.9, 9.5]) == [10.0, 11.0, 9.5]


def test_percent_deadband():
    f = ExceptionFilter([tag(deadband=5.0, deadband_mode="percent")])
    assert kept(f, [100.0, 104.0, 105.0, 109.0, 111.0]) == [100.0, 105.0, 111.0]


def test_max_interval_stores_a_value_even_inside_the_deadband():
    f = ExceptionFilter([tag(deadband=100.0, max_interval=5.0)])
    assert kept(f, [1.0] * 12) == [1.0, 1.0, 1.0]  # at 0 s, 5 s and 10 s


def test_quality_change_and_non_numbers_always_count():
    f = ExceptionFilter([tag(deadband=10.0)])
    assert f.keep("t", 1.0, 0, 192)
    assert f.keep("t", 1.0, S, 0)  # went bad
    assert f.keep("t", 1.0, 2 * S, 192)  # good again
    g = ExceptionFilter([tag(deadband=10.0, data_type="text")])
    assert [g.keep("t", v, i * S, 192) for i, v in enumerate(["A", "A", "B"])] == [True, False, True]
    assert ExceptionFilter([tag(deadband=1.0)]).keep("other-tag", 5, 0, 192)


# -- edges both paths share: NaN, zero, negative ------------------------------------------------


def test_nan_is_a_value_of_its_own_not_a_freeze():
    f = ExceptionFilter([tag(deadband=0.5)])
    nan = float("nan")
    # into NaN and out of it are moves (the old rule, abs(new - old) >= deadband, is never true with
    # a NaN: the tag stayed frozen at NaN until its quality changed); NaN after NaN is not
    assert [f.keep("t", v, i * S, 192) for i, v in enumerate([1.0, nan, nan, 1.0, 1.2, nan])] == [
        True, True, False, True, False, True]


def test_percent_deadband_at_zero_stores_changes_not_repeats():
    f = ExceptionFilter([tag(deadband=5.0, deadband_mode="percent")])
    # 5 % of 0 is 0: any change moves, but a tag resting at 0 is not stored on every poll
    assert kept(f, [0.0, 0.0, 0.0, 1e-9, -100.0, -104.0, -105.0]) == [0.0, 1e-9, -100.0, -105.0]


def test_max_interval_alone_stores_every_change_and_an_unchanged_value_when_overdue():
    f = ExceptionFilter([tag(max_interval=3.0)])
    assert kept(f, [1.0, 1.0, 2.0, 2.0, 2.0, 2.0, 2.0]) == [1.0, 2.0, 2.0]  # at 0 s, 2 s and 5 s


# -- the block path: what keep would decide, one state for both paths ----------------------------

TAGS = [
    tag(name="abs", deadband=1.0),
    tag(name="pct", deadband=5.0, deadband_mode="percent"),
    tag(name="abs_max", deadband=2.5, max_interval=3.0),
    tag(name="pct_max", deadband=10.0, deadband_mode="percent", max_interval=2.0),
    tag(name="max_only", max_interval=4.0),
    tag(name="plain"),  # no exception reporting: always kept
]
NAMES = tuple(t.name for t in TAGS)


def _walk(rng, n: int) -> np.ndarray:
    """A value per step: small and large moves, repeats, zeros, negatives, NaN and infinity."""
    out = np.empty(n)
    v = 0.0
    for i in range(n):
        r = rng.random()
        if r < 0.05:
            v = float("nan")
        elif r < 0.08:
            v = float(rng.choice([np.inf, -np.inf]))
        elif r < 0.15:
            v = 0.0
        elif r < 0.3:
            pass  # the same value again
        elif r < 0.35:
            v = -v if v == v else 1.0
        else:
            base = v if np.isfinite(v) else 0.0
            v = round(base + float(rng.choice([-1, 1])) * float(rng.choice([0.1, 0.5, 0.99, 1.0, 2.5, 3.0, 8.0])), 2)
        out[i] = v
    return out


def _same_state(a: ExceptionFilter, b: ExceptionFilter, names) -> None:
    for name in names:
        la, lb = a.last(name), b.last(name)
        assert (la is None) == (lb is None), name
        if la is None:
            continue
        (va, ta, qa), (vb, tb, qb) = la, lb
        assert (ta, qa) == (tb, qb), name
        assert va == vb or (va != va and vb != vb), (name, va, vb)


@pytest.mark.parametrize("seed", range(8))
def test_block_and_scalar_paths_decide_alike_on_random_sequences(seed: int):
    rng = np.random.default_rng(seed)
    steps = 400
    walks = np.stack([_walk(rng, steps) for _ in NAMES], axis=1)
    block, scalar = ExceptionFilter(TAGS), ExceptionFilter(TAGS)
    ts = 0
    for step in range(steps):
        ts += int(rng.choice([0, 1, 500_000, 1_000_000, 2_000_000]))  # some polls on the same µs
        values = walks[step].copy()
        r = rng.random()
        # all good (None), or a quality per tag that sometimes changes
        quality = None if r < 0.6 else rng.choice([192, 192, 192, 0, 64], size=len(NAMES)).astype(np.int16)
        got = block.keep_block(NAMES, ts, values, quality)
        q = [192] * len(NAMES) if quality is None else quality.tolist()
        want = [scalar.keep(n, v, ts, qq) for n, v, qq in zip(NAMES, values.tolist(), q)]
        assert got.dtype == bool and got.tolist() == want, step
        _same_state(block, scalar, NAMES)
    assert got[NAMES.index("plain")]


@pytest.mark.parametrize("seed", range(4))
def test_one_tag_seen_by_both_paths_is_decided_as_by_one(seed: int):
    rng = np.random.default_rng(100 + seed)
    names = NAMES[:4]
    sub = ("pct", "abs")  # a block of two of the tags, in another order
    mixed, reference = ExceptionFilter(TAGS), ExceptionFilter(TAGS)
    ts = 0
    for step in range(600):
        ts += int(rng.choice([0, 700_000, 1_500_000]))
        values = np.array([float(rng.choice([0.0, -1.0, 1.0, 1.04, 2.0, 3.5, 10.0, np.nan])) for _ in names])
        how = rng.random()
        if how < 0.35:  # the whole request as a block
            got = mixed.keep_block(names, ts, values, None).tolist()
            want = [reference.keep(n, v, ts, 192) for n, v in zip(names, values.tolist())]
        elif how < 0.55:  # another request holding two of the tags
            part = np.array([values[names.index(n)] for n in sub])
            got = mixed.keep_block(sub, ts, part, np.array([192, 0], dtype=np.int16)).tolist()
            want = [reference.keep(n, v, ts, q) for n, v, q in zip(sub, part.tolist(), [192, 0])]
        else:  # rows: numbers, ints, a link loss (None, bad), a bool, text
            name = names[int(rng.integers(len(names)))]
            value = [values[0], int(values[1]) if values[1] == values[1] else 3, None, True, "idle"][
                int(rng.choice(5, p=[0.5, 0.2, 0.15, 0.1, 0.05]))]
            quality = 0 if value is None else 192
            got = [mixed.keep(name, value, ts, quality)]
            want = [reference.keep(name, value, ts, quality)]
        assert got == want, step
        _same_state(mixed, reference, names)


def test_a_block_with_a_tag_twice_is_decided_in_order():
    f = ExceptionFilter([tag(deadband=1.0)])
    assert f.keep_block(("t", "t", "t"), 0, np.array([1.0, 1.5, 2.0]), None).tolist() == [True, False, True]
    assert f.last("t") == (2.0, 0, 192)


@pytest.mark.parametrize("seed", range(8))
def test_points_and_scalar_paths_decide_alike_on_random_sequences(seed: int):
    # OPC UA notifications: any subset of the tags, some twice, each reading with its own time and quality
    rng = np.random.default_rng(seed)
    walks = np.stack([_walk(rng, 300) for _ in NAMES], axis=1)
    points, scalar = ExceptionFilter(TAGS), ExceptionFilter(TAGS)
    ts, step = 0, 0
    while step < 300:
        n = int(rng.integers(1, 2 * len(NAMES)))
        at = rng.integers(0, len(NAMES), size=n).astype(np.int32)
        if rng.random() < 0.5:  # distinct tags (the vectorised decision), else repeats (one by one)
            at = np.unique(at)
        stamps = ts + np.cumsum(rng.choice([0, 1, 700_000, 2_500_000], size=len(at))).astype(np.int64)
        ts = int(stamps[-1])
        values = walks[np.minimum(step + np.arange(len(at)), 299), at]
        step += len(at)
        quality = None if rng.random() < 0.6 else rng.choice([192, 192, 0, 64], size=len(at)).astype(np.int16)
        got = points.keep_points(NAMES, at, stamps, values, quality)
        q = [192] * len(at) if quality is None else quality.tolist()
        want = [scalar.keep(NAMES[a], v, t, qq) for a, v, t, qq in zip(at.tolist(), values.tolist(), stamps.tolist(), q)]
        assert got.dtype == bool and got.tolist() == want, step
        _same_state(points, scalar, NAMES)


def test_a_block_without_filtered_tags_is_kept_whole():
    f = ExceptionFilter([tag(deadband=1.0)])
    assert f.keep_block(("x", "y"), 0, np.array([1.0, 1.0]), None).tolist() == [True, True]
    assert f.keep_block(("x", "y"), 1, np.array([1.0, 1.0]), None).tolist() == [True, True]


# -- the sink: only what is kept reaches the spool, every reading read is counted ----------------


async def test_spool_sink_filters_blocks_and_counts_what_was_read(tmp_path: Path):
    from gateway.records import count_samples, decode, to_batch
    from gateway.sink import Collector, SpoolSink
    from gateway.source import SourceStatus
    from gateway.spool import Spool
    from historian.registry import TagInfo, TagRegistry

    spool = Spool(tmp_path)
    status = SourceStatus("plc", "modbus")
    sink = SpoolSink(spool, status, ExceptionFilter([tag(name="a", deadband=1.0), tag(name="c", deadband=1.0)]),
                     Collector(spool, 0.05))
    assert sink.takes_blocks  # exception reporting no longer sends a Modbus source to the row path
    names = ("a", "b", "c")
    sink.put_block(names, 100, np.array([10.0, 1.0, 5.0]), None)  # first values: all kept
    sink.put_block(names, 200, np.array([10.5, 2.0, 7.0]), np.array([192, 192, 0], dtype=np.int16))  # a in band
    await sink.durable()
    assert status.readings_total == 6 and spool.depth == 1
    sink.put_block(names[::2], 300, np.array([10.9, 7.5]), np.array([192, 0], dtype=np.int16))  # nothing moved
    assert status.readings_total == 8 and spool.depth == 1  # read, counted at once; nothing to spool
    await sink.durable()
    assert spool.depth == 1
    async for _, payload in spool.records():
        break
    record = decode(payload)
    assert count_samples(payload) == 5 and record.blocks is not None and not record.tags
    registry = TagRegistry([TagInfo(1, "a", "float", "", "m", False), TagInfo(2, "b", "float", "", "m", False),
                            TagInfo(3, "c", "float", "", "m", False)])
    batch = to_batch(record, registry)
    assert batch.samples.tag_id.tolist() == [1, 2, 3, 2, 3]
    assert batch.samples.ts_us.tolist() == [100, 100, 100, 200, 200]
    assert batch.samples.value.tolist() == [10.0, 1.0, 5.0, 2.0, 7.0]
    assert batch.samples.quality.tolist() == [192, 192, 192, 192, 0]
    assert batch.sections == [("plc", 5, 0)]
    # a tag the registry does not know as numeric sends the blocks through the row path: same rows
    rows = to_batch(record, TagRegistry([TagInfo(1, "a", "float", "", "m", False),
                                         TagInfo(3, "c", "float", "", "m", False)]))
    assert rows.samples.tag_id.tolist() == [1, 3, 3] and rows.samples.value.tolist() == [10.0, 5.0, 7.0]
    assert [d.payload.get("tag") for d in rows.rejects] == ["b", "b"]
    spool.close()


async def test_publish_columns_filters_rows_as_before(tmp_path: Path):
    from gateway.records import decode
    from gateway.sink import SpoolSink
    from gateway.source import ReadingColumns, SourceStatus
    from gateway.spool import Spool

    spool = Spool(tmp_path)
    sink = SpoolSink(spool, SourceStatus("mqtt", "mqtt"), ExceptionFilter([tag(name="a", deadband=1.0)]))
    await sink.publish_columns(ReadingColumns(["a", "b", "a", "a"], [1.0, "x", 1.5, 3.0], [1, 2, 3, 4],
                                              [192, 192, 192, 192]))
    await sink.publish_columns(ReadingColumns(["a"], [3.2], [5], [192]))  # nothing to store: no record
    assert spool.depth == 1
    async for _, payload in spool.records():
        break
    record = decode(payload)
    assert (record.tags, record.values, record.ts_us) == (["a", "b", "a"], [1.0, "x", 3.0], [1, 2, 4])
    spool.close()
