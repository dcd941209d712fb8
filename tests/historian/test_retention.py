"""Retention per tag class: rows past a class's horizon go, whole chunks or partitions when all may."""

from datetime import datetime, timedelta, timezone

from historian.maintenance import apply_retention, refresh_rollups
from historian.registry import TagSpec, register
from historian.samples import Sample
from historian.writer import HistorianWriter
from tests.historian.helpers import scalar

NOW = datetime.now(timezone.utc).replace(microsecond=0)
AGES = (timedelta(days=10), timedelta(days=3), timedelta(hours=1))


async def write_history(conn, dsn, tags):
    await conn.execute(
        "INSERT INTO retention_classes (name, raw, rollup_1m, rollup_1h) VALUES "
        "('short', interval '2 days', interval '5 days', NULL), ('week', interval '7 days', NULL, NULL)"
    )
    await register(conn, tags)
    async with HistorianWriter(dsn) as w:
        r = await w.write_records(
            [Sample(t.name, NOW - age, "B-17" if t.data_type == "text" else 1.0) for t in tags for age in AGES]
        )
    assert r.dead_letters == 0
    await refresh_rollups(conn)


async def test_each_class_keeps_its_own_horizon(conn, dsn):
    tags = [
        TagSpec("short.tag", "machine", retention_class="short"),
        TagSpec("week.tag", "machine", retention_class="week"),
        TagSpec("kept.tag", "energy", retention_class="forever"),
        TagSpec("op.badge", "man", data_type="text", retention_class="short"),
    ]
    await write_history(conn, dsn, tags)
    removed = await apply_retention(conn, NOW)
    cur = await conn.execute("SELECT tag, count(*) FROM samples_named GROUP BY 1 ORDER BY 1")
    assert await cur.fetchall() == [("kept.tag", 3), ("short.tag", 1), ("week.tag", 2)]
    assert await scalar(conn, "SELECT count(*) FROM events") == 1
    assert removed["samples"] == 3 and removed["events"] == 2
    # a class that keeps forever means no chunk may go whole
    assert removed["samples (chunks dropped)"] == 0
    # rollups: 'short' keeps minutes 5 days, so its 10-day-old minute is gone; hours are kept
    cur = await conn.execute("SELECT tag, count(*) FROM rollup_1m_named GROUP BY 1 ORDER BY 1")
    assert await cur.fetchall() == [("kept.tag", 3), ("short.tag", 2), ("week.tag", 3)]
    assert await scalar(conn, "SELECT count(*) FROM rollup_1h") == 9
    again = await apply_retention(conn, NOW)
    assert sum(again.values()) == 0


async def test_whole_chunks_go_when_every_class_is_done_with_them(conn, dsn, backend):
    await write_history(conn, dsn, [TagSpec("a", "machine", retention_class="short"),
                                    TagSpec("b", "machine", retention_class="week")])
    removed = await apply_retention(conn, NOW)
    # the 10-day-old day is past every class's horizon (7 days): dropped whole, not row by row
    assert removed["samples (chunks dropped)"] >= 1
    cur = await conn.execute("SELECT tag, count(*) FROM samples_named GROUP BY 1 ORDER BY 1")
    assert await cur.fetchall() == [("a", 1), ("b", 2)]
    if backend == "postgresql":
        old_day = (NOW - timedelta(days=10)).strftime("%Y%m%d")
        assert await scalar(conn, "SELECT to_regclass(%s) IS NULL", (f"samples_p{old_day}",))
