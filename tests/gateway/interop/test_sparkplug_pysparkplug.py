"""Sparkplug B against an edge node we did not write: pysparkplug 0.6.1 (pinned by scripts/peers).

The source is the host; pysparkplug's EdgeNode publishes births, DDATA of every datatype it encodes,
deaths, and answers our rebirth request. A plain MQTT client records what crossed the broker, so
bdSeq and aliases are asserted as pysparkplug sent them, not as we would have.
"""

from __future__ import annotations

import asyncio
import json
import time
from contextlib import asynccontextmanager
from datetime import datetime, timezone
from typing import Any, AsyncIterator

import aiomqtt

from gateway.mqtt import STALE_QUALITY, MqttSource
from gateway.mqtt import sparkplug_b_pb2 as pb
from gateway.source import Reading
from gateway.testing import MemorySink
from historian.samples import Quality, to_us
from tests.gateway.interop.peers import PythonPeer
from tests.gateway.test_mqtt import broker, broker_is_up, config, readings, running, unique  # noqa: F401
from tests.support import wait_until

# name -> (pysparkplug DataType, birth value, alias); DATETIME values are epoch ms
DEVICE = {
    "i8": ("INT8", 1, 1), "i16": ("INT16", 2, 2), "i32": ("INT32", 3, 3), "i64": ("INT64", 4, 4),
    "u8": ("UINT8", 5, 5), "u16": ("UINT16", 6, 6), "u32": ("UINT32", 7, 7), "u64": ("UINT64", 8, 8),
    "f": ("FLOAT", 0.5, 9), "d": ("DOUBLE", 0.25, 10), "b": ("BOOLEAN", False, 11), "s": ("STRING", "", 12),
    "t": ("TEXT", "x", 13), "uuid": ("UUID", "00000000-0000-0000-0000-000000000000", 14),
    "dt": ("DATETIME", 1_600_000_000_000, 15),
}  # fmt: skip
NODE = {"Properties/Hardware": ("STRING", "rev1", 100)}
T0 = 1_700_000_000_123
AT_T0 = to_us(datetime(2023, 11, 14, 22, 13, 20, 123000, tzinfo=timezone.utc))
AT_T1 = AT_T0 + 1_000_000


def spec() -> str:
    """The edge node's metrics as sparkplug_edge.py takes them."""
    rows = lambda d: [[n, t, v, a] for n, (t, v, a) in d.items()]  # noqa: E731
    return json.dumps({"node": rows(NODE), "devices": {"d1": rows(DEVICE)}})


@asynccontextmanager
async def edge(group: str) -> AsyncIterator[PythonPeer]:
    """pysparkplug's EdgeNode 'edge1' with device 'd1', connected and born."""
    host, port = broker()
    peer = await PythonPeer("sparkplug_edge.py", host, str(port), group, "edge1", spec()).start()
    try:
        yield peer
    finally:
        await peer.stop()


@asynccontextmanager
async def wire(group: str) -> AsyncIterator[list[tuple[str, Any]]]:
    """Every Sparkplug message of the group as it crossed the broker: (message type, decoded payload)."""
    host, port = broker()
    seen: list[tuple[str, Any]] = []
    async with aiomqtt.Client(host, port) as client:
        await client.subscribe(f"spBv1.0/{group}/#")

        async def record() -> None:
            async for m in client.messages:
                seen.append((str(m.topic).split("/")[2], pb.Payload.FromString(m.payload)))  # type: ignore[arg-type]

        task = asyncio.create_task(record())
        try:
            yield seen
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


def bd_seqs(seen: list[tuple[str, Any]], kind: str) -> list[int]:
    """The bdSeq metric of every message of one type, in order."""
    return [m.long_value for k, p in seen if k == kind for m in p.metrics if m.name == "bdSeq"]


async def test_births_and_ddata_of_every_datatype_with_aliases() -> None:
    group = unique("pss")
    source = MqttSource(config(sparkplug=[{"group_id": group}]))
    sink = MemorySink()
    async with running(source, sink), wire(group) as seen, edge(group) as peer:
        await sink.wait_for(lambda s: s.values("edge1.d1.dt") == ["2020-09-13T12:26:40+00:00"])
        assert sink.values("edge1.Properties/Hardware") == ["rev1"]
        low = {"i8": -128, "i16": -32768, "i32": -(2**31), "i64": -(2**63), "u8": 0, "u16": 0, "u32": 0, "u64": 0}
        high = {"i8": 127, "i16": 32767, "i32": 2**31 - 1, "i64": 2**63 - 1, "u8": 255, "u16": 65535,
                "u32": 2**32 - 1, "u64": 2**64 - 1}  # fmt: skip
        other = {"f": 123.456, "d": -2.25e-3, "b": True, "s": "héllo", "t": "a\nb",
                 "uuid": "9b2d4c2e-8f0e-4c6a-9a4e-1f2d3c4b5a69", "dt": 1_714_557_600_250}  # fmt: skip
        assert (await peer.command({"op": "ddata", "device": "d1", "values": low | other, "ts": T0}))["ts"] == T0
        await peer.command({"op": "ddata", "device": "d1", "values": high | {"b": False, "i8": -1}, "ts": T0 + 1000})
        await sink.wait_for(lambda s: len(s.values("edge1.d1.i8")) == 3)
        got = MemorySink()  # before the peer's stop (a will) marks everything stale
        got.readings, got.dead_letters = list(sink.readings), list(sink.dead_letters)
    sink = got

    def after_birth(name: str) -> list[Reading]:
        return readings(sink, f"edge1.d1.{name}")[1:]

    for name in low:
        second = -1 if name == "i8" else high[name]
        tag = f"edge1.d1.{name}"
        assert after_birth(name) == [Reading(tag, low[name], AT_T0), Reading(tag, second, AT_T1)], name
    first = {r.tag.rsplit(".", 1)[1]: r.value for r in sink.readings if r.source_ts == AT_T0}
    # a float32 is stored as its shortest round-trip decimal, whoever encoded it
    assert first["f"] == 123.456 and first["d"] == -2.25e-3 and first["b"] is True
    assert first["s"] == "héllo" and first["t"] == "a\nb" and first["uuid"] == other["uuid"]
    assert first["dt"] == "2024-05-01T10:00:00.250000+00:00"
    assert [r.value for r in after_birth("b")] == [True, False]
    assert all(r.quality == Quality.GOOD for r in sink.readings)
    assert not sink.dead_letters and not source.status.last_error
    # what pysparkplug sent: births with every alias and datatype, DDATA with the aliases
    dbirth = next(p for k, p in seen if k == "DBIRTH")
    codes = {name.upper(): code for name, code in pb.DataType.items()}
    assert {m.name: (m.alias, m.datatype) for m in dbirth.metrics} == {
        n: (a, codes[t]) for n, (t, _, a) in DEVICE.items()
    }
    ddata = [p for k, p in seen if k == "DDATA"]
    assert len(ddata) == 2 and all(m.alias == DEVICE[m.name][2] for p in ddata for m in p.metrics)
    assert [p.seq for k, p in seen if k != "NDEATH"] == [0, 1, 2, 3]  # NBIRTH, DBIRTH, DDATA, DDATA
    known = source.known_tags()
    assert known["edge1.d1.u64"].data_type == "int" and known["edge1.d1.f"].data_type == "float"
    assert known["edge1.d1.uuid"].data_type == "text" and known["edge1.d1.b"].data_type == "bool"


async def test_clean_ndeath_with_pysparkplugs_bdseq_and_the_will_mark_every_metric_stale() -> None:
    group = unique("pss")
    source = MqttSource(config(sparkplug=[{"group_id": group}]))
    sink = MemorySink()
    tags = {f"edge1.d1.{n}" for n in DEVICE} | {"edge1.Properties/Hardware"}
    stale = lambda s: [r for r in s.readings if r.value is None]  # noqa: E731
    async with running(source, sink), wire(group) as seen, edge(group) as peer:
        await sink.wait_for(lambda s: {r.tag for r in s.readings} == tags)
        before_us = time.time_ns() // 1000
        await peer.command({"op": "disconnect"})
        await sink.wait_for(lambda s: len(stale(s)) == len(tags))
        after_us = time.time_ns() // 1000
        # pysparkplug 0.6.1's clean NDEATH carries the bdSeq of its *next* session, one above its
        # NBIRTH's (Sparkplug 3.0 tck-id-payloads-ndeath-bdseq wants them equal); the host believes it
        # because it cannot be the will of an older session (gateway/mqtt/README.md)
        assert bd_seqs(seen, "NDEATH") == [bd_seqs(seen, "NBIRTH")[0] + 1]
        assert {r.tag for r in stale(sink)} == tags
        # the death carries no time: the host stamps the stale readings when it handles it
        assert all(r.quality == STALE_QUALITY and before_us <= r.source_ts <= after_us for r in stale(sink))

        await peer.command({"op": "connect"})  # a new session: births bring good values again
        await sink.wait_for(lambda s: len(s.values("edge1.d1.i8")) == 3)
        await peer.command({"op": "ddata", "device": "d1", "values": {"i8": 9}, "ts": T0})
        await sink.wait_for(lambda s: s.values("edge1.d1.i8")[-1] == 9)
        assert len(stale(sink)) == len(tags)

        peer.proc.stdin.write(b'{"op": "die"}\n')  # type: ignore[union-attr]  # no DISCONNECT: the will
        await sink.wait_for(lambda s: len(stale(s)) == 2 * len(tags))
        # the will is the NDEATH registered at CONNECT: it matches that session's NBIRTH
        # polled, not sink.wait_for: the wire subscriber may see the will after the sink's last change
        await wait_until(lambda: len(bd_seqs(seen, "NDEATH")) == 2, what="the will on the wire")
        births, deaths = bd_seqs(seen, "NBIRTH"), bd_seqs(seen, "NDEATH")
        assert deaths[1] == births[1] and births[1] != births[0]
    assert sink.readings[-1].quality == STALE_QUALITY and not source.status.last_error


async def test_data_from_a_node_born_before_we_listened_asks_pysparkplug_for_a_rebirth() -> None:
    group = unique("pss")
    source = MqttSource(config(sparkplug=[{"group_id": group}], rebirth_interval=30.0))
    sink = MemorySink()
    async with edge(group) as peer:  # births happen before the host listens
        async with running(source, sink):
            await peer.command({"op": "ddata", "device": "d1", "values": {"d": 1.5}, "ts": T0})
            assert await peer.next_logged() == {"event": "ncmd", "metrics": {"Node Control/Rebirth": True}}
            assert await peer.next_logged() == {"op": "rebirth"}
            # the new DBIRTH carries the current value: the one of the DDATA we could not read
            await sink.wait_for(lambda s: s.values("edge1.d1.d") == [1.5])
            assert readings(sink, "edge1.d1.d") == [Reading("edge1.d1.d", 1.5, AT_T0)]
            await peer.command({"op": "ddata", "device": "d1", "values": {"d": 2.5}, "ts": T0 + 1000})
            await sink.wait_for(lambda s: s.values("edge1.d1.d") == [1.5, 2.5])
    # a DBIRTH still in flight when we subscribed is refused the same way; the DDATA must be among the letters
    assert all("before its NBIRTH" in reason for reason, _ in sink.dead_letters), sink.dead_letters
    topics = [letter["topic"] for _, letter in sink.dead_letters]
    assert topics.count(f"spBv1.0/{group}/DDATA/edge1/d1") == 1
    assert set(topics) <= {f"spBv1.0/{group}/DDATA/edge1/d1", f"spBv1.0/{group}/DBIRTH/edge1/d1"}, topics
    assert readings(sink, "edge1.d1.d")[-1] == Reading("edge1.d1.d", 2.5, AT_T1)
