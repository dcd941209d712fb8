"""MQTT source, Sparkplug B side: the simulated plant's edge node against the real broker."""

from __future__ import annotations

import base64
import json
import re
from datetime import datetime, timezone
from typing import Any

import aiomqtt
import pytest

from gateway.mqtt import STALE_QUALITY, MqttSource
from gateway.mqtt import sparkplug_b_pb2 as pb
from gateway.source import NotWritableError, Reading, WriteError
from gateway.testing import MemorySink
from historian.samples import Quality, to_us
from tests.gateway.test_mqtt import broker_is_up  # noqa: F401  (fails early without a broker)
from tests.gateway.test_mqtt import broker, config, plant, readings, running, unique, until

ALL_TYPES = {
    "i8": "Int8",
    "i16": "Int16",
    "i32": "Int32",
    "i64": "Int64",
    "u8": "UInt8",
    "u16": "UInt16",
    "u32": "UInt32",
    "u64": "UInt64",
    "f": "Float",
    "d": "Double",
    "b": "Boolean",
    "s": "String",
    "t": "Text",
    "dt": "DateTime",
}
T0 = 1_700_000_000_123
# the adapter hands Sparkplug's millisecond stamps on as µs since the epoch
AT_T0 = to_us(datetime(2023, 11, 14, 22, 13, 20, 123000, tzinfo=timezone.utc))


def group_config(group: str, **extra: Any) -> Any:
    """A source following one Sparkplug group."""
    return config(sparkplug=[{"group_id": group, **extra}])


async def test_births_and_ddata_decode_every_datatype() -> None:
    group = unique("g")
    source = MqttSource(group_config(group))
    sink = MemorySink()
    async with running(source, sink), plant(group_id=group, devices=["d1"], metrics=ALL_TYPES) as p:
        # DBIRTH carries the initial values
        await sink.wait_for(lambda s: s.values("line1.d1.s") == [""])
        low = {"i8": -128, "i16": -32768, "i32": -(2**31), "i64": -(2**63), "u8": 0, "u16": 0, "u32": 0, "u64": 0}
        high = {"i8": 127, "i16": 32767, "i32": 2**31 - 1, "i64": 2**63 - 1, "u8": 255, "u16": 65535}
        high |= {"u32": 2**32 - 1, "u64": 2**64 - 1}
        other = {
            "f": 1.5,
            "d": -2.25e-3,
            "b": True,
            "s": "héllo",
            "t": "a\nb",
            "dt": datetime(2024, 5, 1, 10, 0, 0, 250000, tzinfo=timezone.utc),
        }
        await p.ddata("d1", low | other, ts=T0)
        await p.ddata("d1", high | {"b": False, "i8": -1, "i64": -1}, ts=T0 + 1000)
        await sink.wait_for(lambda s: len(s.values("line1.d1.i8")) == 3)

        def last_two(tag: str) -> list[Reading]:
            return readings(sink, f"line1.d1.{tag}")[1:]

        at_t1 = to_us(datetime(2023, 11, 14, 22, 13, 21, 123000, tzinfo=timezone.utc))
        assert last_two("i8") == [Reading("line1.d1.i8", -128, AT_T0), Reading("line1.d1.i8", -1, at_t1)]
        assert last_two("i64") == [Reading("line1.d1.i64", -(2**63), AT_T0), Reading("line1.d1.i64", -1, at_t1)]
        for name in ("i16", "i32", "u8", "u16", "u32", "u64"):
            assert [r.value for r in last_two(name)] == [low[name], high[name]], name
        assert [r.value for r in last_two("b")] == [True, False]
        first = {r.tag.rsplit(".", 1)[1]: r.value for r in sink.readings if r.source_ts == AT_T0}
        assert first["f"] == 1.5 and first["d"] == -2.25e-3
        assert first["s"] == "héllo" and first["t"] == "a\nb"
        assert first["dt"] == "2024-05-01T10:00:00.250000+00:00"
        assert all(r.quality == Quality.GOOD for r in sink.readings)
        assert not sink.dead_letters
        # births are how the registry learns the tags: data types follow the Sparkplug ones
        known = source.known_tags()
        assert known["line1.d1.i8"].data_type == "int" and known["line1.d1.d"].data_type == "float"
        assert known["line1.d1.b"].data_type == "bool" and known["line1.d1.dt"].data_type == "text"
        assert known["line1.d1.i8"].machine == "d1"


async def test_node_metrics_names_timestamps_and_explicit_mapping() -> None:
    group = unique("g")
    source = MqttSource(
        group_config(
            group,
            node_tag="{group}.{edge_node}.{metric}",
            node_machine="",  # the edge node is a gateway: its own metrics belong to no machine
            metrics=[
                {"edge_node": "line1", "device": "press1", "metric": "Pressure", "name": "press1.p", "unit": "bar"}
            ],
        )
    )
    sink = MemorySink()
    async with running(source, sink), plant(group_id=group) as p:
        await sink.wait_for(lambda s: s.values("press1.p") == [0.0])
        await p.ndata({"Properties/Hardware": "rev2"}, ts=T0)
        # by name, no alias, and a metric without a timestamp takes the payload's
        msg = pb.Payload(timestamp=T0 + 5, seq=p.next_seq())
        msg.metrics.add(name="Pressure", float_value=2.5)
        msg.metrics.add(alias=p.devices["press1"]["Temperature"].alias, double_value=80.0, timestamp=T0 + 9)
        await p.publish_raw(f"spBv1.0/{group}/DDATA/line1/press1", msg.SerializeToString(), qos=0)
        await sink.wait_for(lambda s: len(s.values("press1.p")) == 2 and len(s.values("line1.press1.Temperature")) == 2)
        got = MemorySink()
        got.readings = list(sink.readings)  # before the plant's clean stop marks everything stale

    assert readings(got, f"{group}.line1.Properties/Hardware")[-1] == Reading(
        f"{group}.line1.Properties/Hardware", "rev2", AT_T0
    )
    at = AT_T0 + 5_000
    assert readings(got, "press1.p")[-1] == Reading("press1.p", 2.5, at)
    at = AT_T0 + 9_000
    assert readings(got, "line1.press1.Temperature")[-1] == Reading("line1.press1.Temperature", 80.0, at)
    # control metrics are protocol, not process data
    assert not [r for r in sink.readings if "bdSeq" in r.tag or "Node Control" in r.tag]
    assert source.known_tags()["press1.p"].unit == "bar"
    known = source.known_tags()
    assert known[f"{group}.line1.Properties/Hardware"].machine is None
    assert known["line1.press1.Temperature"].machine == "press1"


async def test_ndeath_and_ddeath_mark_metrics_stale() -> None:
    group = unique("g")
    source = MqttSource(group_config(group))
    sink = MemorySink()
    stale = lambda s: [r for r in s.readings if r.value is None]  # noqa: E731
    async with running(source, sink):
        p = plant(group_id=group)
        await p.start()
        await sink.wait_for(lambda s: s.values("line1.oven1.State") == [""])

        oven = {f"line1.oven1.{m}" for m in p.devices["oven1"]}
        press = {f"line1.press1.{m}" for m in p.devices["press1"]}
        await p.ddeath("oven1")
        await sink.wait_for(lambda s: len(stale(s)) == len(oven))
        assert {r.tag for r in stale(sink)} == oven

        await p.die()  # the broker publishes the will: NDEATH
        # press1's metrics and the node's Properties/Hardware; oven1 was already dead
        await sink.wait_for(lambda s: len(stale(s)) == len(oven) + len(press) + 1)
        assert {r.tag for r in stale(sink)[len(oven):]} == press | {"line1.Properties/Hardware"}
        assert all(r.quality == STALE_QUALITY and r.value is None for r in stale(sink))

        # back with a new bdSeq: births bring good values again
        await p.start()
        await sink.wait_for(lambda s: len(s.values("line1.oven1.State")) == 3)
        # a late will of the previous session (old bdSeq) does not kill the new one
        old = pb.Payload()
        old.metrics.add(name="bdSeq", datatype=pb.Int64, long_value=p.bd_seq - 1)
        await p.publish_raw(f"spBv1.0/{group}/NDEATH/line1", old.SerializeToString(), qos=0)
        await p.ddata("press1", {"Speed": 5})
        await sink.wait_for(lambda s: s.values("line1.press1.Speed")[-1] == 5)
        assert len(stale(sink)) == len(oven) + len(press) + 1
        await p.stop()
        # a clean stop is an NDEATH too: every metric of the node goes stale once more
        n = len(oven) + len(press) + 1
        await sink.wait_for(lambda s: len(stale(s)) == 2 * n)
    assert sink.readings[-1].quality == STALE_QUALITY


async def test_undecodable_payload_is_dead_lettered_and_the_source_keeps_running() -> None:
    group = unique("g")
    source = MqttSource(group_config(group))
    sink = MemorySink()
    bad = b"\x0a\xff\x01garbage"
    async with running(source, sink), plant(group_id=group) as p:
        await p.publish_raw(f"spBv1.0/{group}/DDATA/line1/press1", bad, qos=0)
        await p.publish_raw(f"spBv1.0/{group}/DDATA/line1", b"", qos=0)
        await p.ddata("press1", {"Speed": -3})
        await sink.wait_for(lambda s: s.values("line1.press1.Speed")[-1:] == [-3] and len(s.dead_letters) == 2)

    reason, letter = sink.dead_letters[0]
    assert "payload does not decode" in reason
    assert base64.b64decode(letter["payload_base64"]) == bad
    assert letter["topic"] == f"spBv1.0/{group}/DDATA/line1/press1"
    assert "not a Sparkplug B message topic" in sink.dead_letters[1][0]
    assert source.status.dead_letters_total == 2


async def test_unknown_alias_is_dead_lettered_and_a_rebirth_fixes_it() -> None:
    group = unique("g")
    source = MqttSource(group_config(group))
    sink = MemorySink()
    async with running(source, sink), plant(group_id=group) as p:
        await sink.wait_for(lambda s: s.values("line1.press1.State") == [""])
        new = p.add_metric("press1", "Torque", "Double")  # a new alias the births never announced
        await p.ddata("press1", {"Torque": 7.5, "Speed": 4})
        await p.wait_for(lambda pl: pl.rebirths_answered == 1)
        await sink.wait_for(lambda s: s.values("line1.press1.Torque") == [7.5])  # from the new DBIRTH
        await p.ddata("press1", {"Torque": 8.5})
        await sink.wait_for(lambda s: s.values("line1.press1.Torque") == [7.5, 8.5])

    assert len(sink.dead_letters) == 1
    reason, letter = sink.dead_letters[0]
    assert f"unknown alias {new.alias}" in reason and "rebirth requested" in reason
    assert letter["topic"] == f"spBv1.0/{group}/DDATA/line1/press1"
    # the known metric of the same message was still read
    assert 4 in sink.values("line1.press1.Speed")
    ncmd = [c for c in p.commands if c.topic == f"spBv1.0/{group}/NCMD/line1"]
    assert [c.values for c in ncmd] == [{"Node Control/Rebirth": True}]


async def test_data_before_birth_asks_for_a_rebirth() -> None:
    group = unique("g")
    source = MqttSource(group_config(group))
    sink = MemorySink()
    async with plant(group_id=group) as p:  # births happen before the source listens
        async with running(source, sink):
            await p.ddata("oven1", {"Temperature": 200.0})
            await p.wait_for(lambda pl: pl.rebirths_answered == 1)
            await p.ddata("oven1", {"Temperature": 201.0})
            await sink.wait_for(lambda s: s.values("line1.oven1.Temperature")[-1:] == [201.0])
    assert "before its NBIRTH" in sink.dead_letters[0][0]


async def test_sequence_gap_is_an_error_and_asks_for_a_rebirth() -> None:
    group = unique("g")
    source = MqttSource(group_config(group))
    sink = MemorySink()
    async with running(source, sink), plant(group_id=group) as p:
        await sink.wait_for(lambda s: s.values("line1.oven1.State") == [""])
        await p.ddata("press1", {"Speed": 9}, seq=(p.seq + 3) % 256)
        await p.wait_for(lambda pl: pl.rebirths_answered == 1)
        await sink.wait_for(lambda s: 9 in s.values("line1.press1.Speed"))
    assert "seq" in source.status.last_error and "expected" in source.status.last_error


async def test_write_sends_dcmd_and_refuses_what_is_not_writable() -> None:
    group = unique("g")
    source = MqttSource(
        group_config(
            group,
            metrics=[
                {
                    "edge_node": "line1",
                    "device": "press1",
                    "metric": "Speed",
                    "name": "press1.speed_sp",
                    "writable": True,
                    "data_type": "int",
                },
                {"edge_node": "line1", "device": "press1", "metric": "Count", "name": "press1.count"},
            ],
        )
    )
    sink = MemorySink()
    async with running(source, sink):
        with pytest.raises(WriteError, match=re.escape("press1.speed_sp")):
            await source.write("press1.speed_sp", 5)  # not born yet
        async with plant(group_id=group) as p:
            await sink.wait_for(lambda s: s.values("press1.speed_sp") == [0])
            await source.write("press1.speed_sp", -12)
            # the plant applies it and reports the new value in DDATA
            await sink.wait_for(lambda s: s.values("press1.speed_sp") == [0, -12])
            with pytest.raises(NotWritableError, match=re.escape("press1.count")):
                await source.write("press1.count", 1)
            with pytest.raises(NotWritableError, match=re.escape("line1.press1.Temperature")):
                await source.write("line1.press1.Temperature", 1.0)
            with pytest.raises(WriteError, match="needs an integer"):
                await source.write("press1.speed_sp", "fast")
            with pytest.raises(WriteError, match="out of range"):
                await source.write("press1.speed_sp", 2**31)
    dcmd = [c for c in p.commands if c.topic == f"spBv1.0/{group}/DCMD/line1/press1"]
    assert [c.values for c in dcmd] == [{"Speed": -12}]


async def test_host_application_state() -> None:
    group, host_id = unique("g"), unique("host")
    topic = f"spBv1.0/STATE/{host_id}"
    source = MqttSource(group_config(group, host_id=host_id))
    host, port = broker()
    states: list[dict[str, Any]] = []
    async with aiomqtt.Client(host, port) as watcher:
        await watcher.subscribe(topic, qos=1)
        try:
            async with running(source, MemorySink()):
                async for message in watcher.messages:
                    states.append(json.loads(message.payload))  # type: ignore[arg-type]
                    break
            async for message in watcher.messages:
                states.append(json.loads(message.payload))  # type: ignore[arg-type]
                break
        finally:
            await watcher.publish(topic, b"", qos=1, retain=True)  # leave no retained test state behind
    assert [s["online"] for s in states] == [True, False]
    assert all(isinstance(s["timestamp"], int) for s in states)


async def test_decoding_a_large_ddata_is_one_publish() -> None:
    group = unique("g")
    metrics = {f"m{i}": "Double" for i in range(500)}

    class CountingSink(MemorySink):
        def __init__(self) -> None:
            super().__init__()
            self.calls = 0

        async def publish(self, readings: Any) -> None:
            self.calls += 1
            await super().publish(readings)

    sink = CountingSink()
    source = MqttSource(group_config(group))
    async with running(source, sink), plant(group_id=group, devices=["big"], metrics=metrics) as p:
        await sink.wait_for(lambda s: len(s.readings) == 501)  # NBIRTH's Properties/Hardware + DBIRTH
        await until(lambda: source.status.readings_total == 501)
        before = sink.calls
        await p.ddata("big", {name: float(i) for i, name in enumerate(metrics)}, ts=T0)
        await sink.wait_for(lambda s: len(s.readings) == 1001)
        assert sink.calls == before + 1
        assert [r.value for r in sink.readings[501:]] == [float(i) for i in range(500)]
