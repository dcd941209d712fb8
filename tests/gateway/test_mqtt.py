"""MQTT source, JSON side and the connection: against the real Mosquitto broker, no mocks."""

from __future__ import annotations

import asyncio
import re
import tomllib
import uuid
from contextlib import asynccontextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, AsyncIterator, Callable, Sequence

import aiomqtt
import msgspec
import pytest

from gateway.mqtt import MqttSource, MqttSourceConfig
from gateway.source import NotWritableError, Reading
from gateway.testing import MemorySink
from historian.samples import Quality
from plant.mqtt_publisher import MqttPlant
from tests.gateway.dbproxy import CuttableProxy
from tests.support import ROOT, mqtt_broker, wait_until
from tests.support import running as run_service

def broker() -> tuple[str, int]:
    """The test broker: $SHOPFLOOR_TEST_MQTT, else .shopfloor/services.env, else 127.0.0.1:1883."""
    return mqtt_broker()


def unique(prefix: str) -> str:
    """A topic level no other test (or earlier run) uses."""
    return f"{prefix}{uuid.uuid4().hex[:10]}"


def config(**fields: Any) -> MqttSourceConfig:
    """A source config for the test broker; fields as they would come from TOML."""
    host, port = broker()
    return msgspec.convert({"type": "mqtt", "name": "test", "host": host, "port": port, **fields}, MqttSourceConfig)


def plant(**kwargs: Any) -> MqttPlant:
    """A plant on the test broker that publishes only what the test tells it to."""
    host, port = broker()
    return MqttPlant(host, port, period=None, **kwargs)


async def until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    """Wait until predicate() holds, or fail saying what was awaited."""
    await wait_until(predicate, timeout=timeout, what="an MQTT source condition")


@asynccontextmanager
async def running(source: MqttSource, sink: Any) -> AsyncIterator[MqttSource]:
    """Run a source until the block ends; enter once it is connected and subscribed."""
    async with run_service(source.run(sink), ready=lambda: source.status.connected,
                           what=f"MQTT source {source.name!r} to connect"):
        yield source


def readings(sink: MemorySink, tag: str) -> list[Reading]:
    """Every reading of one tag, in order."""
    return [r for r in sink.readings if r.tag == tag]


@pytest.fixture(scope="module", autouse=True)
def broker_is_up() -> None:
    """Fail clearly when no broker answers, instead of every test timing out."""
    import socket

    host, port = broker()
    try:
        socket.create_connection((host, port), timeout=2).close()
    except OSError as e:
        pytest.fail(f"no MQTT broker at {host}:{port} ({e}): run `scripts/services up` first")


# -- configuration ------------------------------------------------------------------------------

BAD_CONFIGS = [
    ({"qos": 2, "json": [{"topic": "a", "fields": {"x": "y"}}]}, "qos"),
    ({"port": 0, "json": [{"topic": "a", "fields": {"x": "y"}}]}, "port"),
    ({"protocol": "4", "json": [{"topic": "a", "fields": {"x": "y"}}]}, "protocol"),
    ({"bogus": 1, "json": [{"topic": "a", "fields": {"x": "y"}}]}, "bogus"),
    ({}, "json"),
    ({"password": "p", "json": [{"topic": "a", "fields": {"x": "y"}}]}, "password"),
    ({"ca_file": "/ca.pem", "json": [{"topic": "a", "fields": {"x": "y"}}]}, "ca_file"),
    ({"reconnect_min": 5, "reconnect_max": 1, "json": [{"topic": "a", "fields": {"x": "y"}}]}, "reconnect_min"),
    ({"json": [{"topic": "a/{m}", "fields": {"x": "{n}.t"}}]}, "fields"),
    ({"json": [{"topic": "a/#/b", "fields": {"x": "y"}}]}, "topic"),
    ({"json": [{"topic": "a/x{m}", "fields": {"x": "y"}}]}, "topic"),
    ({"json": [{"topic": "a", "fields": {"x..y": "t"}}]}, "fields"),
    (
        {"json": [{"topic": "a", "fields": {"x": "t"}, "timestamp": "ts", "timestamp_format": "unix"}]},
        "timestamp_format",
    ),
    ({"json": [{"topic": "a/{m}", "fields": {"x": "t"}, "command_topic": "a/{m}/cmd"}]}, "command_topic"),
    ({"json": [{"topic": "a", "fields": {"x": "t"}, "extra": True}]}, "extra"),
    ({"sparkplug": [{"group_id": "a/b"}]}, "group_id"),
    ({"sparkplug": [{"group_id": "g", "device_tag": "{edge_node}.{plc}"}]}, "device_tag"),
    ({"sparkplug": [{"group_id": "g", "node_tag": "{edge_node}.{device}"}]}, "node_tag"),
    ({"sparkplug": [{"group_id": "g", "node_machine": "{device}"}]}, "node_machine"),
    (
        {
            "sparkplug": [
                {"group_id": "g", "metrics": [{"name": "t", "edge_node": "e", "metric": "m", "category": "x"}]}
            ]
        },
        "category",
    ),
    ({"sparkplug": [{"group_id": "g", "metrics": [{"name": "t", "edge_node": "e"}]}]}, "metric"),
    ({"sparkplug": [{"group_id": "g"}, {"group_id": "g"}]}, "sparkplug"),
]


@pytest.mark.parametrize(("fields", "field"), BAD_CONFIGS, ids=[f for _, f in BAD_CONFIGS])
def test_config_errors_name_the_field(fields: dict[str, Any], field: str) -> None:
    with pytest.raises(msgspec.ValidationError, match=re.escape(field)):
        msgspec.convert({"type": "mqtt", "name": "t", **fields}, MqttSourceConfig)


def test_readme_sample_config_is_valid() -> None:
    text = (ROOT / "gateway" / "mqtt" / "README.md").read_text()
    sample = re.search(r"```toml\n(.*?)```", text, re.S)
    assert sample, "gateway/mqtt/README.md has no ```toml sample"
    sources = tomllib.loads(sample.group(1))["gateway"]["sources"]
    cfg = msgspec.convert(sources[0], MqttSourceConfig)
    assert cfg.json and cfg.sparkplug
    assert {t.name for t in cfg.tag_configs()} >= {m.name for m in cfg.sparkplug[0].metrics}


# -- JSON ---------------------------------------------------------------------------------------


async def test_json_mapping_with_captures_and_timestamps() -> None:
    prefix = unique("j")
    source = MqttSource(
        config(
            json=[
                {
                    "topic": f"{prefix}/{{machine}}/telemetry",
                    "fields": {"data.temp": "{machine}.temperature", "data.speed": "{machine}.speed"},
                    "timestamp": "ts",
                    "timestamp_format": "epoch_ms",
                },
                {
                    "topic": f"{prefix}/{{line}}/{{machine}}/iso",
                    "fields": {"v.0": "{line}.{machine}.first", "state": "{machine}.state"},
                    "timestamp": "meta.time",
                    "timestamp_format": "iso8601",
                    "quality": "q",
                },
                {
                    "topic": f"+/{prefix}/secs",
                    "fields": {"x": "secs.x"},
                    "timestamp": "t",
                    "timestamp_format": "epoch_s",
                },
                {"topic": f"{prefix}/nots/#", "fields": {"x": "nots.x"}},
            ]
        )
    )
    sink = MemorySink()
    async with running(source, sink), plant(json_prefix=prefix) as p:
        await p.publish_json("press1", {"temp": 21.5, "speed": 3}, ts=1_700_000_000_123)
        await p.publish_raw(
            f"{prefix}/L2/oven1/iso",
            b'{"v": [7, 8], "state": "RUN", "q": 64, "meta": {"time": "2024-01-02T03:04:05.5+01:00"}}',
        )
        await p.publish_raw(f"site/{prefix}/secs", b'{"x": true, "t": 1700000000.25}')
        await p.publish_raw(f"{prefix}/nots/a/b", b'{"x": "hello"}')
        await sink.wait_for(lambda s: len(s.readings) == 6)

    at_ms = datetime(2023, 11, 14, 22, 13, 20, 123000, tzinfo=timezone.utc)
    assert readings(sink, "press1.temperature") == [Reading("press1.temperature", 21.5, at_ms)]
    assert readings(sink, "press1.speed") == [Reading("press1.speed", 3, at_ms)]
    iso = datetime(2024, 1, 2, 2, 4, 5, 500000, tzinfo=timezone.utc)
    assert readings(sink, "L2.oven1.first") == [Reading("L2.oven1.first", 7, iso, Quality.UNCERTAIN)]
    assert readings(sink, "oven1.state") == [Reading("oven1.state", "RUN", iso, Quality.UNCERTAIN)]
    assert readings(sink, "secs.x") == [
        Reading("secs.x", True, datetime(2023, 11, 14, 22, 13, 20, 250000, tzinfo=timezone.utc))
    ]
    assert readings(sink, "nots.x") == [Reading("nots.x", "hello", None)]
    assert source.status.readings_total == 6
    assert not sink.dead_letters


async def test_malformed_json_is_dead_lettered_and_the_source_keeps_running() -> None:
    prefix = unique("j")
    source = MqttSource(
        config(
            json=[
                {"topic": f"{prefix}/{{machine}}/telemetry", "fields": {"data.temp": "{machine}.t"}, "timestamp": "ts"}
            ]
        )
    )
    sink = MemorySink()
    topic = f"{prefix}/press1/telemetry"
    async with running(source, sink), plant(json_prefix=prefix) as p:
        await p.publish_raw(topic, b'{"ts": 1, "data": {"temp": ')
        await p.publish_raw(topic, b"[1, 2]")
        await p.publish_raw(topic, b'{"ts": "yesterday", "data": {"temp": 1}}')
        await p.publish_raw(topic, b'{"ts": 1, "data": {"temp": {"deep": 1}}}')
        await p.publish_raw(topic, b'{"ts": 1, "other": 2}')
        await p.publish_json("press1", {"temp": 30.0})
        await sink.wait_for(lambda s: s.values("press1.t") == [30.0] and len(s.dead_letters) == 5)

    reasons = [reason for reason, _ in sink.dead_letters]
    assert "malformed JSON" in reasons[0] and topic in reasons[0]
    assert sink.dead_letters[0][1] == {"topic": topic, "payload": '{"ts": 1, "data": {"temp": '}
    assert "not an object" in reasons[1]
    assert "ts: timestamp 'yesterday' is not a number" in reasons[2]
    assert "data.temp: a dict, not a value" in reasons[3]
    assert "none of the fields" in reasons[4]
    assert source.status.dead_letters_total == 5


async def test_json_write_goes_to_the_command_topic() -> None:
    prefix = unique("j")
    source = MqttSource(
        config(
            json=[
                {
                    "topic": f"{prefix}/{{machine}}/telemetry",
                    "fields": {"data.setpoint": "{machine}.setpoint"},
                    "command_topic": f"{prefix}/{{machine}}/cmd",
                },
                {"topic": f"{prefix}/{{machine}}/other", "fields": {"x": "{machine}.readonly"}},
            ]
        )
    )
    async with running(source, MemorySink()), plant(json_prefix=prefix) as p:
        await source.write("oven1.setpoint", 180.5)
        await p.wait_for(lambda pl: len(pl.commands) == 1)
        with pytest.raises(NotWritableError, match=re.escape("oven1.readonly")):
            await source.write("oven1.readonly", 1)
        with pytest.raises(NotWritableError, match="nosuch"):
            await source.write("nosuch", 1)

    command = p.commands[0]
    assert command.topic == f"{prefix}/oven1/cmd"
    assert {k: command.values[k] for k in ("tag", "field", "value")} == {
        "tag": "oven1.setpoint",
        "field": "data.setpoint",
        "value": 180.5,
    }


async def test_unreachable_broker_reconnects_with_backoff() -> None:
    host, _ = broker()
    source = MqttSource(
        msgspec.convert(
            {
                "type": "mqtt",
                "name": "nowhere",
                "host": host,
                "port": 9,  # discard: nothing listens
                "reconnect_min": 0.01,
                "reconnect_max": 0.05,
                "json": [{"topic": "a", "fields": {"x": "y"}}],
            },
            MqttSourceConfig,
        )
    )
    task = asyncio.create_task(source.run(MemorySink()))
    try:
        await until(lambda: source.status.reconnects_total >= 3)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert not source.status.connected
    assert f"{host}:9" in source.status.last_error
    assert source.status.last_error_at is not None


# -- acknowledgement ----------------------------------------------------------------------------


class GatedSink(MemorySink):
    """A sink whose publish blocks until the test opens the gate."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = asyncio.Event()
        self.gate = asyncio.Event()

    async def publish(self, readings: Sequence[Reading]) -> None:
        """Block until the gate opens, then keep the readings."""
        self.entered.set()
        await self.gate.wait()
        await super().publish(readings)


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
async def test_qos1_message_is_acked_only_after_the_sink_returned(protocol: str) -> None:
    prefix = unique("ack")
    client_id = unique("sf-ack-")
    cfg = config(
        client_id=client_id,
        clean_start=False,
        session_expiry=60,
        protocol=protocol,
        qos=1,
        json=[{"topic": f"{prefix}/{{machine}}/telemetry", "fields": {"data.n": "{machine}.n"}}],
    )
    try:
        async with plant(json_prefix=prefix) as p:
            # 1: the sink never returns; the source goes away without acknowledging
            gated = GatedSink()
            async with running(MqttSource(cfg), gated):
                await p.publish_json("m", {"n": 1}, qos=1)
                await asyncio.wait_for(gated.entered.wait(), 10)
            assert gated.readings == []

            # 2: same persistent session: the broker delivers the message again
            sink = MemorySink()
            async with running(MqttSource(cfg), sink):
                await sink.wait_for(lambda s: s.values("m.n") == [1])

            # 3: that delivery was acknowledged once spooled: the next session gets only new messages
            later = MemorySink()
            async with running(MqttSource(cfg), later):
                await p.publish_json("m", {"n": 2}, qos=1)
                await later.wait_for(lambda s: s.values("m.n") == [2])
            assert later.values("m.n") == [2]
    finally:
        await _end_session(client_id, protocol)


async def _end_session(client_id: str, protocol: str) -> None:
    """Make the broker forget a persistent test session (Mosquitto here persists to disk)."""
    host, port = broker()
    if protocol == "5":
        # clean start with the default session expiry of 0: the session ends with this connection
        client = aiomqtt.Client(host, port, identifier=client_id, protocol=aiomqtt.ProtocolVersion.V5, clean_start=True)
    else:
        client = aiomqtt.Client(host, port, identifier=client_id, clean_session=True)
    async with client:
        pass


async def test_broker_dropping_mid_session_reconnects_and_redelivers_qos1() -> None:
    """The connection to the broker dies while a QoS 1 message is in hand and more are queued."""
    host, port = broker()
    proxy = CuttableProxy(host, port)  # the source's only way to the broker: cut it to drop the broker
    await proxy.start()
    prefix = unique("drop")
    client_id = unique("sf-drop-")
    cfg = msgspec.convert(
        {"type": "mqtt", "name": "dropped", "host": "127.0.0.1", "port": proxy.port, "client_id": client_id,
         "clean_start": False, "session_expiry": 60, "qos": 1, "reconnect_min": 0.05, "reconnect_max": 0.2,
         "json": [{"topic": f"{prefix}/{{machine}}/telemetry", "fields": {"data.n": "{machine}.n"}}]},
        MqttSourceConfig,
    )
    source = MqttSource(cfg)
    sink = GatedSink()
    try:
        async with plant(json_prefix=prefix) as p, running(source, sink):
            await p.publish_json("m", {"n": 1}, qos=1)
            await asyncio.wait_for(sink.entered.wait(), 10)  # in hand, not yet acknowledged
            await proxy.cut()
            sink.gate.set()  # the sink returns, but the acknowledgement has no connection to go on
            await until(lambda: not source.status.connected)
            for n in (2, 3):  # published while the source is away: queued in its persistent session
                await p.publish_json("m", {"n": n}, qos=1)
            await proxy.start()
            await wait_until(lambda: source.status.connected, timeout=15, what="the source to reconnect")
            await sink.wait_for(lambda s: {1, 2, 3} <= set(s.values("m.n")))
            await p.publish_json("m", {"n": 4}, qos=1)  # and the session goes on live
            await sink.wait_for(lambda s: 4 in s.values("m.n"))
        assert source.status.reconnects_total >= 1
        assert "Disconnected" in source.status.last_error
        values = sink.values("m.n")
        # at least once: 1 was in hand at the cut (kept) and, never acknowledged, redelivered by the
        # broker after the reconnect; the historian dedupes the second copy
        assert values.count(1) == 2, values
        assert sorted(set(values)) == [1, 2, 3, 4]
        assert values.index(2) < values.index(3) < values.index(4)
    finally:
        await proxy.cut()
        await _end_session(client_id, "5")
