"""Group commit: appends of many sources within the spool's sync_interval share one fdatasync, and stay durable."""

import asyncio
import os
from pathlib import Path

import pytest

from gateway.config import SpoolConfig
from gateway.spool import Spool


async def test_appends_within_the_interval_share_one_fsync(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    syncs = []
    real = os.fdatasync

    def counted(fd: int) -> None:
        syncs.append(fd)
        real(fd)  # the real fsync still happens: only counted

    monkeypatch.setattr(os, "fdatasync", counted)
    spool = Spool(tmp_path, sync_interval=0.05)
    seqs = await asyncio.gather(*(spool.append(f"source {i}".encode()) for i in range(200)))
    assert sorted(seqs) == list(range(1, 201))
    assert len(syncs) == 1  # 200 sources' records, one fsync
    spool.close()
    # what append acknowledged is on disk: a new spool (a restart) reads all of it back
    again = Spool(tmp_path)
    got = []
    async for seq, payload in again.records():
        got.append(payload)
        if len(got) == 200:
            break
    assert sorted(got) == sorted(f"source {i}".encode() for i in range(200))
    again.close()


async def test_an_append_returns_only_after_its_fsync(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    synced = []
    real = os.fdatasync
    monkeypatch.setattr(os, "fdatasync", lambda fd: (real(fd), synced.append(True)))
    spool = Spool(tmp_path, sync_interval=0.05)
    await spool.append(b"x")
    assert synced  # acknowledged after, not before, the fsync
    spool.close()


def test_flush_interval_is_bounded():
    with pytest.raises(ValueError, match="flush_interval: must be 0..1 seconds, got 5"):
        SpoolConfig(flush_interval=5)


async def test_sources_sharing_a_collector_share_one_record_and_keep_their_names(tmp_path: Path):
    from gateway.exception import ExceptionFilter
    from gateway.records import decode, to_batch
    from gateway.sink import Collector, SpoolSink
    from gateway.source import Reading, SourceStatus
    from historian.registry import TagInfo, TagRegistry

    spool = Spool(tmp_path)
    collector = Collector(spool, 0.05)
    sinks = [SpoolSink(spool, SourceStatus(f"plc{i}", "modbus"), ExceptionFilter([]), collector) for i in range(3)]
    await asyncio.gather(
        sinks[0].publish([Reading("a", 1.5, 10), Reading("b", 2, 11)]),
        sinks[1].publish([Reading("c", 3.0, 12)]),
        sinks[2].dead_letter("cannot decode", {"tag": "x"}),
        sinks[1].publish([Reading("lot", "L-1", 13)]),
    )
    assert spool.depth == 1  # four publishes of three sources: one record, one fsync
    async for _, payload in spool.records():
        record = decode(payload)
        break
    assert record.sections == [("plc0", 2), ("plc1", 2)]
    registry = TagRegistry([TagInfo(1, "a", "float", "", "m", False), TagInfo(2, "b", "int", "", "m", False),
                            TagInfo(3, "c", "float", "", "m", False), TagInfo(4, "lot", "text", "", "m", False)])
    batch = to_batch(record, registry)
    assert batch.samples.tag_id.tolist() == [1, 2, 3] and batch.samples.value.tolist() == [1.5, 2.0, 3.0]
    assert [(e.tag_id, e.value) for e in batch.events] == [(4, "L-1")]
    assert batch.sections == [("plc0", 2, 0), ("plc1", 1, 1)]  # whose rows are whose, for letters and rollups
    assert [(d.source, d.reason) for d in batch.rejects] == [("plc2", "cannot decode")]
    numeric = to_batch(decode(payload.replace(b"L-1", b"L-2")), TagRegistry(registry.by_id.values()))
    assert len(numeric.samples) == 3
    spool.close()


async def test_all_numeric_sources_take_one_vectorised_pass(tmp_path: Path):
    from gateway.exception import ExceptionFilter
    from gateway.records import decode, to_batch
    from gateway.sink import Collector, SpoolSink
    from gateway.source import Reading, SourceStatus
    from historian.registry import TagInfo, TagRegistry

    spool = Spool(tmp_path)
    collector = Collector(spool, 0.02)
    sinks = [SpoolSink(spool, SourceStatus(f"plc{i}", "modbus"), ExceptionFilter([]), collector) for i in range(2)]
    await asyncio.gather(sinks[0].publish([Reading("a", 1.0, 10)]), sinks[1].publish([Reading("b", 2, 11),
                                                                                    Reading("b", 3, 12)]))
    async for _, payload in spool.records():
        break
    registry = TagRegistry([TagInfo(1, "a", "float", "", "m", False), TagInfo(2, "b", "int", "", "m", False)])
    batch = to_batch(decode(payload), registry)
    assert batch.sections == [("plc0", 1, 0), ("plc1", 2, 0)]
    assert batch.samples.tag_id.tolist() == [1, 2, 2] and batch.samples.ts_us.tolist() == [10, 11, 12]
    spool.close()


async def test_blocks_count_as_read_only_once_on_disk_and_reach_the_historian_batch_by_source(tmp_path: Path):
    import numpy as np

    from gateway.exception import ExceptionFilter
    from gateway.records import count_samples, decode, to_batch
    from gateway.sink import Collector, SpoolSink
    from gateway.source import SourceStatus
    from historian.registry import TagInfo, TagRegistry
    from historian.samples import Quality

    spool = Spool(tmp_path)
    collector = Collector(spool, 0.05)
    status = [SourceStatus(f"plc{i}", "modbus") for i in range(2)]
    sinks = [SpoolSink(spool, s, ExceptionFilter([]), collector) for s in status]
    assert sinks[0].takes_blocks
    names = ("a", "b")
    sinks[0].put_block(names, 100, np.array([1.5, 2.0]), None)
    sinks[1].put_block(("c",), 101, np.array([np.nan]), np.array([int(Quality.BAD_SENSOR_FAILURE)], dtype=np.int16))
    sinks[0].put_block(names, 200, np.array([3.5, 4.0]), None)
    assert status[0].readings_total == 0 and collector.unsynced_rows == 5  # handed over, not yet on disk
    await sinks[0].durable()
    assert (status[0].readings_total, status[1].readings_total, collector.unsynced_rows) == (4, 1, 0)
    assert spool.depth == 1
    async for _, payload in spool.records():
        break
    record = decode(payload)
    assert count_samples(payload) == 5 and record.blocks is not None
    assert [record.blocks.names(k) for k in range(2)] == [["a", "b"], ["c"]]  # the same poll twice: its names once
    assert len(record.blocks.tagsets) == 2
    registry = TagRegistry([TagInfo(1, "a", "float", "", "m", False), TagInfo(2, "b", "int", "", "m", False),
                            TagInfo(3, "c", "float", "", "m", False)])
    batch = to_batch(record, registry)
    assert batch.samples.tag_id.tolist() == [1, 2, 3, 1, 2]
    assert batch.samples.ts_us.tolist() == [100, 100, 101, 200, 200]
    assert batch.samples.value.tolist()[:2] == [1.5, 2.0] and np.isnan(batch.samples.value[2])
    assert batch.samples.quality.tolist() == [192, 192, int(Quality.BAD_SENSOR_FAILURE), 192, 192]
    assert batch.sections == [("plc0", 2, 0), ("plc1", 1, 0), ("plc0", 2, 0)]
    # a tag the registry does not know: refused by name, with its source; the others still go in
    partial = to_batch(record, TagRegistry([TagInfo(1, "a", "float", "", "m", False),
                                            TagInfo(2, "b", "int", "", "m", False)]))
    assert len(partial.samples) == 4
    assert [(d.source, d.reason) for d in partial.rejects] == [("plc1", "unknown tag 'c'")]
    spool.close()


async def test_points_with_a_time_each_share_the_record_with_blocks_and_rows_and_count_once_on_disk(tmp_path: Path):
    import numpy as np

    from gateway.exception import ExceptionFilter
    import msgspec

    from gateway.records import count_samples, decode, to_batch
    from gateway.sink import Collector, SpoolSink
    from gateway.source import Reading, SourceStatus
    from historian.registry import TagInfo, TagRegistry
    from historian.samples import Quality

    spool = Spool(tmp_path)
    collector = Collector(spool, 0.05)
    opc, plc = SourceStatus("opc", "opcua"), SourceStatus("plc", "modbus")
    opc_sink, plc_sink = (SpoolSink(spool, s, ExceptionFilter([]), collector) for s in (opc, plc))
    assert opc_sink.takes_points
    names = ("x", "y")  # the source's numeric tags, one tuple for its life
    opc_sink.put_points(names, np.array([1, 0, 1], dtype=np.int32), np.array([30, 10, 20], dtype=np.int64),
                        np.array([2.5, 1.0, 3.5]), np.array([192, int(Quality.UNCERTAIN), 192], dtype=np.int16))
    plc_sink.put_block(("a",), 100, np.array([7.0]), None)
    opc_sink.put_points(names, np.array([0], dtype=np.int32), np.array([40], dtype=np.int64), np.array([4.0]), None)
    published = asyncio.create_task(opc_sink.publish([Reading("lot", "L-1", 50)]))  # a text row beside them
    assert opc.readings_total == 0 and collector.unsynced_rows == 5  # handed over, not yet on disk
    await opc_sink.durable()
    await published
    assert (opc.readings_total, plc.readings_total, collector.unsynced_rows) == (4, 1, 0)  # the row: its outbox's
    assert spool.depth == 1
    async for _, payload in spool.records():
        break
    record = decode(payload)
    assert count_samples(payload) == 6 and record.points is not None and record.tags == ["lot"]
    assert record.points.count == [3, 1] and [record.points.names(k) for k in record.points.tagset] == [["x", "y"]] * 2
    registry = TagRegistry([TagInfo(1, "x", "float", "", "m", False), TagInfo(2, "y", "int", "", "m", False),
                            TagInfo(3, "a", "float", "", "m", False), TagInfo(4, "lot", "text", "", "m", False)])
    batch = to_batch(record, registry)
    assert batch.samples.tag_id.tolist() == [3, 2, 1, 2, 1]  # rows, blocks, then points in the order handed over
    assert batch.samples.ts_us.tolist() == [100, 30, 10, 20, 40]
    assert batch.samples.value.tolist() == [7.0, 2.5, 1.0, 3.5, 4.0]
    assert batch.samples.quality.tolist() == [192, 192, int(Quality.UNCERTAIN), 192, 192]
    assert [(e.tag_id, e.ts_us, e.value) for e in batch.events] == [(4, 50, "L-1")]
    assert batch.sections == [("opc", 0, 1), ("plc", 1, 0), ("opc", 4, 0)]
    # a tag the registry does not know as a number: refused by name, with its source; the others still go in
    partial = to_batch(record, TagRegistry([TagInfo(1, "x", "float", "", "m", False),
                                            TagInfo(3, "a", "float", "", "m", False)]))
    assert partial.samples.tag_id.tolist() == [3, 1, 1]
    assert [(d.source, d.reason) for d in partial.rejects] == [("opc", f"unknown tag {t!r}") for t in ("lot", "y", "y")]
    # a record as a gateway before points wrote it (eight fields) still decodes
    old = decode(msgspec.msgpack.encode(["plc", ["a"], [1], [1.0], [192], [], [], None]))
    assert old.points is None and to_batch(old, registry).samples.tag_id.tolist() == [3]
    spool.close()


async def test_room_holds_a_source_back_until_its_blocks_are_on_disk(tmp_path: Path):
    import numpy as np

    from gateway.exception import ExceptionFilter
    from gateway.sink import Collector, SpoolSink
    from gateway.source import SourceStatus

    spool = Spool(tmp_path)
    sink = SpoolSink(spool, SourceStatus("plc", "modbus"), ExceptionFilter([]), Collector(spool, 0.05))
    sink.put_block(("a",) * 10, 1, np.zeros(10), None)
    await sink.room(20)  # below the limit: no wait
    assert spool.depth == 0
    sink.put_block(("a",) * 10, 2, np.zeros(10), None)
    sink.put_block(("a",) * 10, 3, np.zeros(10), None)
    await sink.room(20)  # 30 not on disk: waits for the record
    assert spool.depth == 1
    spool.close()


async def test_a_spool_that_cannot_write_stops_a_source_that_only_puts_blocks(tmp_path: Path):
    import shutil

    import numpy as np

    from gateway.exception import ExceptionFilter
    from gateway.sink import Collector, SpoolSink
    from gateway.source import SinkError, SourceStatus

    status = SourceStatus("plc", "modbus")
    spool = Spool(tmp_path / "spool", segment_bytes=4096, max_bytes=1 << 20)
    sink = SpoolSink(spool, status, ExceptionFilter([]), Collector(spool, 0.01))
    sink.put_block(("a",) * 1000, 1, np.zeros(1000), None)  # 8 kB: the next record needs a new segment
    await sink.durable()
    assert status.readings_total == 1000
    shutil.rmtree(tmp_path / "spool")  # the disk is gone from under the gateway
    sink.put_block(("a",) * 10, 2, np.zeros(10), None)
    with pytest.raises(SinkError) as failed:
        await sink.durable()
    assert isinstance(failed.value.__cause__, FileNotFoundError)
    with pytest.raises(SinkError):  # and from then on the source's next poll stops too
        await sink.room(100_000)
    assert status.readings_total == 1000  # what did not reach the disk is not counted as read


async def test_publishes_that_wait_start_the_record_at_flush_rows_and_blocks_never_do(tmp_path: Path):
    import numpy as np

    from gateway.sink import Collector
    from gateway.source import ReadingColumns, SourceStatus

    def rows(n: int) -> ReadingColumns:
        return ReadingColumns([f"t{i}" for i in range(n)], [float(i) for i in range(n)], [1] * n, [0] * n)

    spool = Spool(tmp_path)
    loop = asyncio.get_running_loop()
    collector = Collector(spool, 0.5, flush_rows=100)
    t0 = loop.time()
    await asyncio.gather(collector.publish("a", rows(60)), collector.publish("b", rows(60)))
    assert loop.time() - t0 < 0.25  # 120 waiting readings >= 100: on disk without sitting out the 0.5 s
    assert spool.depth == 1  # both in one record
    t0 = loop.time()
    await collector.publish("a", rows(10))  # below flush_rows: it waits for the interval, gathering others
    assert loop.time() - t0 >= 0.45
    status = SourceStatus("plc", "modbus")
    t0 = loop.time()
    collector.put_block(status, ("x",) * 500, 1, np.zeros(500), None)  # a poll's block: nobody waits on it
    await collector.durable()
    assert loop.time() - t0 >= 0.45 and status.readings_total == 500
    with pytest.raises(ValueError, match="flush_rows: must be at least 1, got 0"):
        SpoolConfig(flush_rows=0)
    spool.close()


async def test_points_a_source_waits_for_start_the_record_at_flush_rows_and_others_do_not(tmp_path: Path):
    import numpy as np

    from gateway.sink import Collector
    from gateway.source import SourceStatus

    spool = Spool(tmp_path)
    loop = asyncio.get_running_loop()
    collector = Collector(spool, 0.5, flush_rows=100)
    tags = tuple(f"t{i}" for i in range(200))
    status = SourceStatus("sp", "mqtt")

    def put(n: int, waits: bool) -> None:
        at = np.arange(n, dtype=np.int32)
        collector.put_points(status, tags, at, np.full(n, 1, dtype=np.int64), at.astype(np.float64), None, waits=waits)

    t0 = loop.time()
    put(60, True)
    put(60, True)  # MQTT's Sparkplug numbers: acknowledged after the record, so 120 >= 100 start it
    await collector.durable()
    assert loop.time() - t0 < 0.25 and spool.depth == 1 and status.readings_total == 120
    t0 = loop.time()
    put(150, False)  # OPC UA's points: nobody waits on them, the record sits out its interval
    await collector.durable()
    assert loop.time() - t0 >= 0.45 and status.readings_total == 270
    spool.close()
