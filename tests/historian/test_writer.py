"""The writer: commits, idempotent replays, dead letters, backpressure, acks after commit."""

import asyncio
import math
import time
from datetime import timedelta

import numpy as np
import pytest

from historian import Quality, Sample, SampleBatch
from historian.config import HistorianConfig
from historian.db import connect
from historian.maintenance import ensure_partitions
from historian.samples import Batch, to_us
from historian.writer import MINUTE_US, merge_spans
from historian.writer import HistorianWriter
from tests.historian.helpers import T0, at, scalar, setup_tags
from tests.support import wait_for_sql


def numeric_batch(reg, n: int, start_s: float = 0.0, tag: str = "press1.temperature") -> Batch:
    tid = reg.get(tag).id
    ts = to_us(T0) + (np.arange(n) * 1_000_000 + int(start_s * 1e6))
    return Batch(SampleBatch.from_columns(np.full(n, tid), ts, np.sin(np.arange(n) / 10.0) * 50 + 20))


async def table_digest(conn) -> dict[str, tuple[int, str]]:
    """Every table of the schema as (row count, md5 of its sorted rows), to compare before and after a replay."""
    cur = await conn.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' "
        "AND table_type = 'BASE TABLE' ORDER BY table_name"
    )
    digest = {}
    for (table,) in await cur.fetchall():
        # the rows' text, sorted: independent of physical order, sensitive to any added or changed row
        row = await (await conn.execute(
            f'SELECT count(*), md5(coalesce(string_agg(t::text, E\'\\n\' ORDER BY t::text), \'\')) FROM "{table}" t'
        )).fetchone()
        digest[table] = (row[0], row[1])
    return digest


async def writer_waits_on_lock(conn) -> None:
    """Wait until the writer's connection is blocked on a lock (its flush has started and cannot finish)."""
    await wait_for_sql(
        conn,
        "SELECT count(*) > 0 FROM pg_stat_activity WHERE datname = current_database() "
        "AND application_name = 'shopfloor' AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()",
        True,
    )


async def test_records_land_in_samples_and_events(conn, dsn):
    await setup_tags(conn)
    async with HistorianWriter(dsn) as w:
        r = await w.write_records(
            [
                Sample("press1.temperature", at(0), 21.5),
                Sample("press1.temperature", at(1), 22.0, Quality.UNCERTAIN),
                Sample("press1.count", at(0), 7),
                Sample("press1.running", at(0), True),
                Sample("press1.lot", at(0), "LOT-42"),
            ]
        )
    assert (r.written, r.duplicates, r.dead_letters) == (5, 0, 0)
    cur = await conn.execute(
        "SELECT tag, value, quality, machine FROM samples_named WHERE tag = 'press1.temperature' ORDER BY ts"
    )
    assert await cur.fetchall() == [
        ("press1.temperature", 21.5, "good", "press1"),
        ("press1.temperature", 22.0, "uncertain", "press1"),
    ]
    assert await scalar(conn, "SELECT value FROM events_named WHERE tag = 'press1.lot'") == "LOT-42"
    assert await scalar(conn, "SELECT value FROM samples_named WHERE tag = 'press1.running'") == 1.0


async def test_replay_leaves_tables_unchanged(conn, dsn):
    reg = await setup_tags(conn)
    batch = numeric_batch(reg, 5000)
    events = [Sample("press1.lot", at(i * 60), f"LOT-{i}") for i in range(10)]
    # a batch with refused rows among good ones: an unknown tag, a string for a number, a fraction for an int
    mixed = [
        Sample("press1.temperature", at(7000), 21.5),
        Sample("no.such.tag", at(7001), 1.0),
        Sample("press1.temperature", at(7002), "hot"),
        Sample("press1.count", at(7003), 3.5),
        Sample("press1.lot", at(7004), "LOT-X"),
    ]
    refused_ids = Batch(SampleBatch.from_columns([99999, -1], [to_us(T0)] * 2, [1.0, 2.0]), source="columns")
    async with HistorianWriter(dsn) as w:
        first = await w.write(batch)
        await w.write_records(events)
        first_mixed = await w.write_records(mixed, source="test")
        first_ids = await w.write(refused_ids)
        await conn.execute("SELECT refresh_rollups()")
        before = await table_digest(conn)
        again = await w.write(batch)
        again_events = await w.write_records(events)
        again_mixed = await w.write_records(mixed, source="test")
        again_ids = await w.write(refused_ids)
        await conn.execute("SELECT refresh_rollups()")
        after = await table_digest(conn)
    assert (first.written, first.duplicates) == (5000, 0)
    assert (again.written, again.duplicates) == (0, 5000)
    assert (again_events.written, again_events.duplicates) == (0, 10)
    assert (first_mixed.written, first_mixed.dead_letters) == (2, 3)
    assert (again_mixed.written, again_mixed.duplicates) == (0, 2)
    assert first_ids.dead_letters == again_ids.dead_letters == 2
    assert before["dead_letters"][0] == 5
    assert {t for t, (n, _) in before.items() if n} >= {"samples", "events", "dead_letters", "tags"}
    changed = sorted(t for t in before if before[t] != after[t])
    assert changed == [], f"a replay changed {changed}"


async def test_the_same_refused_row_from_another_source_is_its_own_letter(conn, dsn):
    await setup_tags(conn)
    async with HistorianWriter(dsn) as w:
        await w.write_records([Sample("no.such.tag", at(0), 1.0)], source="a")
        await w.write_records([Sample("no.such.tag", at(0), 1.0)], source="b")
        await w.write_records([Sample("no.such.tag", at(1), 1.0)], source="a")  # another timestamp: another row
    assert await scalar(conn, "SELECT count(*) FROM dead_letters") == 3


async def test_partly_replayed_batch_adds_only_the_new_rows(conn, dsn):
    reg = await setup_tags(conn)
    async with HistorianWriter(dsn) as w:
        await w.write(numeric_batch(reg, 100))
        r = await w.write(numeric_batch(reg, 100, start_s=50))  # 50 old, 50 new
    assert (r.written, r.duplicates) == (50, 50)
    assert await scalar(conn, "SELECT count(*) FROM samples") == 150


async def test_duplicates_inside_one_batch_keep_one_row(conn, dsn):
    reg = await setup_tags(conn)
    tid = reg.get("press1.temperature").id
    ts = to_us(T0)
    batch = Batch(SampleBatch.from_columns([tid, tid, tid], [ts, ts, ts + 1], [1.0, 1.0, 2.0]))
    async with HistorianWriter(dsn) as w:
        r = await w.write(batch)
    assert (r.written, r.duplicates) == (2, 1)


async def test_bad_samples_become_dead_letters_with_reasons(conn, dsn):
    await setup_tags(conn)
    from datetime import datetime, timezone

    future = datetime.now(timezone.utc) + timedelta(days=2)
    records = [
        Sample("no.such.tag", at(0), 1.0),
        Sample("press1.temperature", at(1), "hot"),
        Sample("press1.lot", at(2), 17),
        Sample("press1.temperature", at(3), math.nan),
        Sample("press1.temperature", at(4), math.inf),
        Sample("press1.temperature", future, 1.0),
        Sample("press1.count", at(5), 3.5),
        Sample("press1.running", at(6), 2),
        # these three are fine: NaN on an allow_nan tag, NaN on a bad sample, a normal value
        Sample("meter1.energy", at(7), math.nan),
        Sample("press1.temperature", at(8), math.nan, Quality.BAD_COMM_FAILURE),
        Sample("press1.temperature", at(9), 20.0),
    ]
    async with HistorianWriter(dsn) as w:
        r = await w.write_records(records, source="test")
    assert (r.written, r.dead_letters) == (3, 8)
    cur = await conn.execute("SELECT reason, payload->>'tag', source FROM dead_letters ORDER BY id")
    rows = await cur.fetchall()
    reasons = " | ".join(r[0] for r in rows)
    for expected in (
        "unknown tag 'no.such.tag'",
        "wrong type: tag 'press1.temperature' is float, got str",
        "wrong type: tag 'press1.lot' is text, got int",
        "value nan not allowed for tag 'press1.temperature'",
        "value inf not allowed for tag 'press1.temperature'",
        "in the future",
        "tag 'press1.count' is int, got 3.5",
        "tag 'press1.running' is bool, got 2.0",
    ):
        assert expected in reasons
    assert all(src == "test" for *_, src in rows)
    assert {t for _, t, _ in rows} >= {"no.such.tag", "press1.temperature", "press1.count", "press1.running"}


async def test_unknown_tag_id_in_columns_is_dead_lettered(conn, dsn):
    await setup_tags(conn)
    batch = Batch(SampleBatch.from_columns([99999, -1], [to_us(T0)] * 2, [1.0, 2.0]), source="columns")
    async with HistorianWriter(dsn) as w:
        r = await w.write(batch)
    assert (r.written, r.dead_letters) == (0, 2)
    assert await scalar(conn, "SELECT count(*) FROM dead_letters WHERE reason LIKE 'unknown tag id%'") == 2


async def test_tag_registered_after_start_is_accepted(conn, dsn):
    async with HistorianWriter(dsn) as w:
        reg = await setup_tags(conn)  # registered while the writer runs with an empty registry
        r = await w.write(numeric_batch(reg, 10))
    assert r.written == 10


async def test_ack_only_after_commit_and_backpressure(conn, dsn):
    reg = await setup_tags(conn)
    config = HistorianConfig(dsn=dsn, flush_rows=100, max_pending_rows=300, flush_interval=0.05)
    await ensure_partitions(conn, T0.date(), T0.date())  # as maintenance does ahead of time
    blocker = await connect(dsn, autocommit=False)
    async with HistorianWriter(dsn, config) as w:
        await blocker.execute("LOCK TABLE samples IN EXCLUSIVE MODE")  # the writer's COPY now waits
        futures = [await w.submit(numeric_batch(reg, 100, start_s=i * 100)) for i in range(3)]
        fourth = asyncio.create_task(w.submit(numeric_batch(reg, 100, start_s=300)))
        await writer_waits_on_lock(conn)
        assert not any(f.done() for f in futures), "acknowledged before commit"
        assert not fourth.done(), "submit did not wait for room in a full queue"
        assert w.queued_rows == 300
        assert await scalar(conn, "SELECT count(*) FROM samples") == 0
        await blocker.rollback()  # release the lock
        results = await asyncio.gather(*futures)
        last = await (await fourth)
    await blocker.close()
    assert [r.written for r in results] + [last.written] == [100, 100, 100, 100]
    assert await scalar(conn, "SELECT count(*) FROM samples") == 400


async def test_lost_connection_is_retried_without_loss(conn, dsn):
    reg = await setup_tags(conn)
    config = HistorianConfig(dsn=dsn, flush_interval=0.01)
    await ensure_partitions(conn, T0.date(), T0.date())  # as maintenance does ahead of time
    blocker = await connect(dsn, autocommit=False)
    async with HistorianWriter(dsn, config) as w:
        await blocker.execute("LOCK TABLE samples IN EXCLUSIVE MODE")
        future = await w.submit(numeric_batch(reg, 1000))
        await writer_waits_on_lock(conn)
        # kill the writer's backend while its COPY waits on the lock
        await conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND application_name = 'shopfloor' AND pid <> pg_backend_pid() "
            "AND pid <> %s",
            (blocker.info.backend_pid,),
        )
        await blocker.rollback()
        r = await asyncio.wait_for(future, 20)
    await blocker.close()
    assert r.written == 1000
    assert await scalar(conn, "SELECT count(*) FROM samples") == 1000


async def test_closed_writer_refuses_batches(dsn, conn):
    reg = await setup_tags(conn)
    w = HistorianWriter(dsn)
    await w.start()
    await w.close()
    with pytest.raises(Exception, match="closing"):
        await w.submit(numeric_batch(reg, 1))


def test_copy_encoding_round_trips_through_numpy():
    b = SampleBatch.from_columns([1, 2], [to_us(T0), to_us(T0) + 1], [1.5, -2.25], [192, 0])
    raw = b.to_copy_binary()
    assert raw.startswith(b"PGCOPY\n\xff\r\n\x00") and raw.endswith(b"\xff\xff")
    assert len(raw) == 19 + 2 * 40 + 2
    with pytest.raises(ValueError, match="columns differ in length"):
        SampleBatch.from_columns([1], [1, 2], [1.0])


async def test_binary_copy_stores_exact_values(conn, dsn):
    reg = await setup_tags(conn)
    values = [0.1, -1e300, 5e-324, 123456.789]
    tid = reg.get("press1.temperature").id
    ts = [to_us(T0) + i * 1_000_007 for i in range(4)]
    async with HistorianWriter(dsn) as w:
        await w.write(Batch(SampleBatch.from_columns([tid] * 4, ts, values)))
    cur = await conn.execute("SELECT ts, value FROM samples ORDER BY ts")
    rows = await cur.fetchall()
    assert [r[1] for r in rows] == values
    assert [to_us(r[0]) for r in rows] == ts


@pytest.mark.parametrize("bad", [{"flush_rows": 0}, {"max_pending_rows": 10, "flush_rows": 100}])
def test_config_errors_name_the_field(bad):
    with pytest.raises(ValueError, match=next(iter(bad))):
        HistorianConfig(**bad)


async def test_writer_keeps_going_after_a_refused_batch(conn, dsn):
    reg = await setup_tags(conn)
    async with HistorianWriter(dsn) as w:
        r1 = await w.write_records([Sample("nope", at(0), 1.0)])
        r2 = await w.write(numeric_batch(reg, 10))
    assert (r1.dead_letters, r2.written) == (1, 10)


def test_neighbouring_batches_of_the_same_tags_share_one_rollup_mark() -> None:
    t0 = 1_800_000_000_000_000
    polls = [([1, 2], t0 + i * 10_000, t0 + i * 10_000 + 5_000) for i in range(30)]  # a poll every 10 ms
    assert merge_spans(polls) == [([1, 2], t0, t0 + 29 * 10_000 + 5_000)]


def test_a_backfill_and_live_data_keep_their_own_rollup_marks() -> None:
    live = 1_800_000_000_000_000
    day_ago = live - 86_400_000_000
    spans = [([1], day_ago, day_ago + 1_000), ([1], live, live + 1_000), ([2], live + 2_000, live + 3_000)]
    assert merge_spans(spans) == spans  # a day apart, or other tags: nothing in between gets marked
    assert merge_spans([([1], live, live + 1), ([1], live + MINUTE_US + 2, live + MINUTE_US + 3)]) == [
        ([1], live, live + 1), ([1], live + MINUTE_US + 2, live + MINUTE_US + 3)]


async def test_a_batch_of_several_sources_names_each_refusal_by_its_source(conn, dsn):
    reg = await setup_tags(conn)
    tid = reg.get("press1.temperature").id
    t = to_us(T0)
    # plc-a's two rows are fine; plc-b's second row is a day in the future
    future = time.time_ns() // 1000 + 86_400_000_000 * 3
    samples = SampleBatch.from_columns([tid, tid, tid, tid], [t, t + 1, t + 2, future], [1.0, 2.0, 3.0, 4.0])
    batch = Batch(samples, sections=[("plc-a", 2, 0), ("plc-b", 2, 0)])
    async with HistorianWriter(dsn) as w:
        r = await w.write(batch)
    assert (r.written, r.dead_letters) == (3, 1)
    cur = await conn.execute("SELECT source, reason FROM dead_letters")
    (source, reason), = await cur.fetchall()
    assert source == "plc-b" and "in the future" in reason
    # one rollup mark per source's rows
    assert await scalar(conn, "SELECT count(*) FROM rollup_dirty") >= 1


def test_a_source_polled_between_other_sources_still_gets_one_rollup_mark() -> None:
    t0 = 1_800_000_000_000_000
    spans = [([1, 2], t0, t0 + 1), ([3], t0, t0 + 1), ([1, 2], t0 + 100_000, t0 + 100_001), ([3], t0 + 5, t0 + 6)]
    assert merge_spans(spans) == [([1, 2], t0, t0 + 100_001), ([3], t0, t0 + 6)]


async def test_rollup_marks_keep_the_exact_microseconds_and_tags(conn, dsn):
    reg = await setup_tags(conn)
    a, b = reg.get("press1.temperature").id, reg.get("press1.count").id
    t = to_us(T0) + 123_457  # not a whole millisecond: the mark must not round it
    samples = SampleBatch.from_columns([b, a, a], [t, t + 1, t + 999_999], [1.0, 2.0, 3.0])
    async with HistorianWriter(dsn) as w:
        await w.write(Batch(samples, sections=[("plc-a", 1, 0), ("plc-b", 2, 0)]))
    cur = await conn.execute("SELECT tag_ids, lo, hi FROM rollup_dirty ORDER BY lo")
    assert [(tags, to_us(lo), to_us(hi)) for tags, lo, hi in await cur.fetchall()] == [
        ([b], t, t), ([a], t + 1, t + 999_999)]
