"""OPC UA notifications on the columnar path (SpoolSink.put_points) against node-opcua, started by the suite.

What the spool holds is turned into the historian's batch exactly as the forwarder does it
(records.to_batch) and compared with what the node-opcua process logged: per value its source
timestamp, value (a Float as its shortest decimal) and status; a gateway-side deadband keeps
exactly the moves; a bool and a text tag in the same notifications keep the row path.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from pathlib import Path
from typing import Any, AsyncIterator

import numpy as np
import pytest_asyncio

from gateway.exception import ExceptionFilter
from gateway.opcua import OpcUaSource, OpcUaSourceConfig, OpcUaTag
from gateway.records import decode, to_batch
from gateway.sink import Collector, SpoolSink
from gateway.spool import Spool
from historian.registry import TagInfo, TagRegistry
from historian.samples import Quality, to_us
from tests.gateway.interop.peers import NodePeer, free_port
from tests.support import running, wait_until

# tag -> (node-opcua variable, data_type, gateway-side exception reporting)
TAGS: dict[str, tuple[str, str, dict[str, Any]]] = {
    "temp": ("Press1.Temperature", "float", {}),  # Double
    "pressure": ("Press1.Pressure", "float", {}),  # Float
    "count": ("Press1.Count", "int", {}),  # Int32
    "total": ("Press2.Total", "int", {}),  # UInt32
    "speed": ("Press2.Speed", "float", {"deadband": 1.0}),  # Double, stored when it moved by 1 or more
    "running": ("Press1.Running", "bool", {}),
    "recipe": ("Press1.Recipe", "text", {}),
}
QUALITY = {"Good": Quality.GOOD, "UncertainSensorNotAccurate": Quality.UNCERTAIN,
           "UncertainLastUsableValue": Quality.UNCERTAIN_LAST_USABLE}
# bursts of sets, each within about one publishing interval: (tag, value set = value to store, status)
BURSTS: list[list[tuple[str, Any, str]]] = [
    [("temp", 20.25, "Good"), ("pressure", 123.456, "Good"), ("count", -42, "Good"), ("total", 4_000_000_000, "Good"),
     ("speed", 10.0, "Good"), ("running", True, "Good"), ("recipe", "B-7", "Good")],
    [("temp", 21.5, "UncertainSensorNotAccurate"), ("temp", 22.0, "Good"), ("pressure", 1.1, "UncertainLastUsableValue"),
     ("count", 5, "Good"), ("speed", 10.5, "Good"), ("recipe", "B-8", "Good")],
    [("speed", 12.0, "Good"), ("count", 6, "Good"), ("running", False, "Good")],
    [("speed", 12.5, "Good"), ("speed", 9.0, "Good"), ("speed", 9.9, "Good"), ("speed", 7.5, "Good"),
     ("total", 7, "Good")],
]
STORED_SPEED = [10.0, 12.0, 9.0, 7.5]  # 10.5, 12.5 and 9.9 stay inside the band of the last stored value


@pytest_asyncio.fixture(loop_scope="session")
async def peer() -> AsyncIterator[NodePeer]:
    """A fresh node-opcua server."""
    p = await NodePeer("opcua_server.js", f"--port={free_port()}").start()
    yield p
    await p.stop()


def config(peer: NodePeer) -> OpcUaSourceConfig:
    """Every set reported (sampling 0, a queue per item), published twice a second."""
    port = peer.ready_line.split()[1]
    tags = [OpcUaTag(name=n, node_id=f"ns=1;s={var}", data_type=dt, sampling_interval=0.0, queue_size=20, **extra)
            for n, (var, dt, extra) in TAGS.items()]
    return OpcUaSourceConfig(name="node-opcua", endpoint=f"opc.tcp://127.0.0.1:{port}/shopfloor",
                             publishing_interval=0.5, stall_timeout=5.0, reconnect_min=0.1, reconnect_max=1.0,
                             timeout=3.0, tags=tags)


def logged_us(entry: dict[str, Any]) -> int:
    """The source timestamp node-opcua logged, in µs."""
    return to_us(datetime.fromisoformat(entry["ts"].replace("Z", "+00:00")))


async def test_notifications_reach_the_spool_as_columns_exactly_as_node_opcua_logged_them(
        peer: NodePeer, tmp_path: Path) -> None:
    cfg = config(peer)
    spool = Spool(tmp_path / "spool")
    source = OpcUaSource(cfg)
    sink = SpoolSink(spool, source.status, ExceptionFilter(cfg.tags), Collector(spool, 0.05))
    async with running(source.run(sink), ready=lambda: source.status.readings_total >= len(TAGS)):
        start = source.status.readings_total  # the values the subscription started with
        logged: list[tuple[str, dict[str, Any]]] = []
        for b, burst in enumerate(BURSTS):
            before = source.status.readings_total
            for i, (tag, value, status) in enumerate(burst):
                ts = f"2026-03-02T08:00:0{b}.{100 + 37 * i:03d}Z"
                entry = await peer.command({"set": TAGS[tag][0], "value": value, "ts": ts, "status": status})
                assert entry["set"] == TAGS[tag][0] and entry["status"] == status
                logged.append((tag, entry))
                # node-opcua samples a variable even at sampling interval 0 (sets within one of its ticks
                # reach a client as the last one only); the queue still brings several in one publish
                await asyncio.sleep(0.06)
            await wait_until(lambda: source.status.readings_total == before + len(burst),
                             what=f"burst {b} counted as read")
        assert source.status.dead_letters_total == 0 and source.status.last_error == ""
    names = list(TAGS)
    registry = TagRegistry([TagInfo(i + 1, n, TAGS[n][1], "", "m", True) for i, n in enumerate(names)])
    samples: set[tuple[str, int, float, int]] = set()
    events: set[tuple[str, int, str, int]] = set()
    speeds: list[tuple[int, float]] = []
    points = 0
    async for seq, payload in spool.records():
        record = decode(payload)
        assert set(record.tags) <= {"running", "recipe"}, record.tags  # the numbers went as points
        points += record.points.rows() if record.points is not None else 0
        batch = to_batch(record, registry)
        assert not batch.rejects
        s = batch.samples
        for tag_id, ts, value, q in zip(s.tag_id.tolist(), s.ts_us.tolist(), s.value.tolist(), s.quality.tolist()):
            if names[tag_id - 1] == "speed":
                speeds.append((ts, value))
            samples.add((names[tag_id - 1], ts, value, q))
        events.update((names[e.tag_id - 1], e.ts_us, e.value, e.quality) for e in batch.events)
        if seq == spool.depth:
            break
    spool.close()
    for (tag, value, _), (_, e) in zip((w for burst in BURSTS for w in burst), logged):
        # node-opcua logs a Float as the double it holds (123.45600128173828): the same float32
        assert np.float32(e["value"]) == np.float32(value) if tag == "pressure" else e["value"] == value, (tag, e)
    want = {(tag, logged_us(e), float(value), int(QUALITY[e["status"]]))
            for (tag, value, _), (_, e) in zip((w for burst in BURSTS for w in burst), logged)
            if TAGS[tag][1] != "text" and (tag != "speed" or value in STORED_SPEED)}
    # beside the initial values (one per tag, whatever the peer held), exactly what it logged
    assert want <= samples and len(samples - want) == 6
    assert {t for t, *_ in samples - want} == set(TAGS) - {"recipe"}
    assert points == len([s for s in samples if s[0] != "running"])  # the bool took the row path
    sent = {logged_us(e) for tag, e in logged if tag == "speed"}
    assert [v for ts, v in sorted(speeds) if ts in sent] == STORED_SPEED
    assert events >= {("recipe", logged_us(e), e["value"], 192) for tag, e in logged if tag == "recipe"}
    assert source.status.readings_total == start + sum(len(b) for b in BURSTS)
