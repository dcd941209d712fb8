"""OPC UA notifications on the columnar path (SpoolSink.put_points), from the plant's real asyncua server into the historian.

Each value is written to the server with its own source timestamp and status; the historian must
hold exactly those (Floats as their shortest decimals, Uncertain as 64/68), a gateway-side
deadband must keep exactly the moves, and a text tag in the same notifications keeps the row path.
"""

from __future__ import annotations

import asyncio
import math
import shutil
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
import pytest

from gateway.exception import ExceptionFilter
from gateway.forwarder import forward
from gateway.opcua import OpcUaSource, OpcUaSourceConfig, OpcUaTag
from gateway.records import decode
from gateway.sink import Collector, SpoolSink
from gateway.source import SinkError
from gateway.spool import Spool
from historian.config import HistorianConfig
from historian.registry import register
from historian.samples import Quality, to_us
from historian.writer import HistorianWriter
from plant.opcua_server import OpcUaPlant
from tests.support import running, wait_until

T0 = datetime(2026, 11, 20, 8, 0, tzinfo=timezone.utc)
# tag -> (signal of press1, data_type, gateway-side exception reporting)
TAGS: dict[str, tuple[str, str, dict[str, Any]]] = {
    "temp": ("Temperature", "float", {}),  # Float: stored as its shortest decimal
    "energy": ("EnergyKWh", "float", {}),  # Double
    "good": ("GoodCount", "int", {}),  # UInt32
    "vib": ("Vibration", "float", {"deadband": 1.0}),  # stored only when it moved by 1 or more
    "state": ("State", "text", {}),  # text beside the numbers: the row path
}
QUALITY = {"Good": Quality.GOOD, "Uncertain": Quality.UNCERTAIN,
           "UncertainLastUsableValue": Quality.UNCERTAIN_LAST_USABLE}
# bursts of writes, each within one publishing interval: (tag, value, status); every write gets its own time
BURSTS: list[list[tuple[str, Any, str]]] = [
    [("temp", 20.3, "Good"), ("energy", 1.5, "Good"), ("good", 7, "Good"), ("vib", 5.0, "Good"),
     ("state", "Running", "Good")],
    [("temp", 20.4, "Uncertain"), ("temp", 20.5, "Good"), ("energy", 2.25, "UncertainLastUsableValue"),
     ("good", 8, "Good"), ("good", 9, "Good"), ("vib", 5.5, "Good"), ("state", "Blocked", "Good")],
    [("vib", 7.0, "Good"), ("temp", 123.456, "Good"), ("good", 4_000_000_000, "Good")],
    [("vib", 7.2, "Good"), ("energy", -0.125, "Good"), ("state", "Running", "Good")],
    # one tag several times in one notification: the filter decides those one by one, in order
    [("vib", 6.5, "Good"), ("vib", 3.0, "Good"), ("vib", 3.9, "Good"), ("vib", 1.9, "Good")],
]
DEADBANDED = {(b, i) for b, i in [(1, 5), (3, 0), (4, 0), (4, 2)]}  # 5.5, 7.2, 6.5, 3.9 stay inside the band


def source_config(plant: OpcUaPlant) -> OpcUaSourceConfig:
    """Every write reported (sampling 0, a queue per item), published twice a second."""
    tags = [OpcUaTag(name=n, node_id=plant.node_id("press1", sig), data_type=dt, machine="press1",
                     sampling_interval=0.0, queue_size=20, **extra)
            for n, (sig, dt, extra) in TAGS.items()]
    return OpcUaSourceConfig(name="plant", endpoint=plant.endpoint, publishing_interval=0.5, stall_timeout=5.0,
                             reconnect_min=0.1, reconnect_max=0.5, timeout=2.0, tags=tags)


def expected(writes: list[tuple[str, Any, str, datetime]]) -> tuple[set[tuple[str, int, float, int]], set[tuple]]:
    """The samples and text events the historian must hold for these writes."""
    samples, events = set(), set()
    for tag, value, status, ts in writes:
        if TAGS[tag][1] == "text":
            events.add((tag, to_us(ts), value, int(QUALITY[status])))
        else:
            samples.add((tag, to_us(ts), float(value), int(QUALITY[status])))
    return samples, events


async def test_notifications_reach_the_historian_as_columns_exactly_as_the_server_published(
        conn: psycopg.AsyncConnection, dsn: str, tmp_path: Path) -> None:
    async with OpcUaPlant(machines=["press1"]) as plant:
        config = source_config(plant)
        await register(conn, [t.spec(config.name, "device") for t in config.tags])
        # the values the subscription starts with, stamped by us too
        writes: list[tuple[str, Any, str, datetime]] = []
        initial = {"temp": 19.5, "energy": 0.5, "good": 1, "vib": 1.0, "state": "Idle"}
        for i, (tag, value) in enumerate(initial.items()):
            writes.append((tag, value, "Good", T0 + timedelta(milliseconds=i)))
            await plant.set("press1", TAGS[tag][0], value, source_ts=writes[-1][3])
        spool = Spool(tmp_path / "spool")
        source = OpcUaSource(config)
        sink = SpoolSink(spool, source.status, ExceptionFilter(config.tags), Collector(spool, 0.05))
        async with running(source.run(sink), ready=lambda: source.status.readings_total == len(initial)):
            stored_vib = [v for t, v, _, _ in writes if t == "vib"]
            for b, burst in enumerate(BURSTS):
                before = source.status.readings_total
                for i, (tag, value, status) in enumerate(burst):
                    ts = T0 + timedelta(seconds=b + 1, milliseconds=7 * i)
                    await plant.set("press1", TAGS[tag][0], value, source_ts=ts, status=status)
                    writes.append((tag, value, status, ts))
                    if tag == "vib" and (b, i) not in DEADBANDED:
                        stored_vib.append(value)
                # every write read and on disk before the next burst: bursts are notifications apart
                await wait_until(lambda: source.status.readings_total == before + len(burst),
                                 what=f"burst {b} counted as read")
            assert source.status.readings_total == len(writes)  # read, stored or not
            assert source.status.dead_letters_total == 0 and source.status.last_error == ""
        # the numbers went as points: no spool record holds a numeric tag as a row
        points = 0
        async for seq, payload in spool.records():
            record = decode(payload)
            assert set(record.tags) <= {"state"}, record.tags
            points += record.points.rows() if record.points is not None else 0
            if seq == spool.depth:
                break
        want_samples, want_events = expected(writes)
        want_samples = {s for s in want_samples if s[0] != "vib" or s[2] in stored_vib}
        assert points == len(want_samples)
        async with HistorianWriter(dsn, HistorianConfig(dsn=dsn, flush_interval=0.05)) as writer:
            forwarder = asyncio.create_task(forward(spool, writer))
            await wait_until(lambda: spool.depth == 0, what="the spool forwarded")
            forwarder.cancel()
            await asyncio.gather(forwarder, return_exceptions=True)
        spool.close()
    cur = await conn.execute("SELECT t.name, (extract(epoch FROM s.ts) * 1e6)::bigint, s.value, s.quality "
                             "FROM samples s JOIN tags t ON t.id = s.tag_id")
    got = [(n, ts, v, q) for n, ts, v, q in await cur.fetchall()]
    assert len(got) == len(set(got))  # exactly once
    assert set(got) == want_samples
    assert [v for n, _, v, _ in sorted(got, key=lambda r: r[1]) if n == "vib"] == [1.0, 5.0, 7.0, 3.0, 1.9]
    assert not any(math.isnan(v) for _, _, v, _ in got)
    cur = await conn.execute("SELECT t.name, (extract(epoch FROM e.ts) * 1e6)::bigint, e.value, e.quality "
                             "FROM events e JOIN tags t ON t.id = e.tag_id")
    assert set(await cur.fetchall()) == want_events


async def test_a_bad_value_takes_the_row_path_and_the_next_good_one_on_points_clears_the_tag(tmp_path: Path) -> None:
    async with OpcUaPlant(machines=["press1"]) as plant:
        config = source_config(plant)
        spool = Spool(tmp_path / "spool")
        source = OpcUaSource(config)
        sink = SpoolSink(spool, source.status, ExceptionFilter([]), Collector(spool, 0.05))
        async with running(source.run(sink), ready=lambda: source.status.readings_total == len(TAGS)):
            await plant.set_bad("press1", "Temperature", "BadSensorFailure")
            await wait_until(lambda: "temp" in source.status.tag_errors, what="the bad status reported")
            await plant.set("press1", "Temperature", 30.5, source_ts=T0)
            await wait_until(lambda: source.status.readings_total == len(TAGS) + 2, what="both counted")
            assert source.status.tag_errors == {}
        rows, points = [], []
        async for seq, payload in spool.records():
            record = decode(payload)
            rows += [(t, v, q) for t, v, q in zip(record.tags, record.values, record.quality) if t == "temp"]
            if record.points is not None:
                points.append(record.points)
            if seq == spool.depth:
                break
        spool.close()
    assert rows == [("temp", None, Quality.BAD_SENSOR_FAILURE)]
    last = points[-1]
    assert last.names(last.tagset[-1])[int(np.frombuffer(last.at, "<i4")[-1])] == "temp"
    assert (np.frombuffer(last.values)[-1], np.frombuffer(last.ts_us, "<i8")[-1]) == (30.5, to_us(T0))


async def test_a_spool_that_cannot_write_stops_the_opcua_source(tmp_path: Path) -> None:
    async with OpcUaPlant(machines=["press1"]) as plant:
        spool = Spool(tmp_path / "spool", segment_bytes=4096, max_bytes=1 << 20)
        source = OpcUaSource(source_config(plant))
        task = asyncio.create_task(source.run(SpoolSink(spool, source.status, ExceptionFilter([]),
                                                         Collector(spool, 0.01))))
        await wait_until(lambda: source.status.readings_total > 0, what="the first values on disk")
        shutil.rmtree(tmp_path / "spool")  # the next segment cannot be made
        for i in range(3000):  # numbers only: points, which nothing awaits but the outbox; until a segment is full
            await plant.set("press1", "EnergyKWh", float(i))
            if task.done():
                break
            await asyncio.sleep(0.01)
        with pytest.raises(SinkError):  # the source stops (so does the gateway) rather than read on unstored
            await asyncio.wait_for(task, 10)
