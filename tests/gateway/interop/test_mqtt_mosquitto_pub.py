"""Plain MQTT JSON against an independent publisher: Debian's mosquitto_pub (installed by scripts/peers).

Numeric and numeric-string timestamps, retained messages delivered at subscription, QoS 0 and 1 on
both sides, and a bad timestamp dead-lettered while the source goes on.
"""

from __future__ import annotations

import asyncio
import json
import shutil
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from gateway.mqtt import MqttSource
from gateway.source import Reading
from gateway.testing import MemorySink
from historian.samples import Quality
from tests.gateway.interop.peers import peers_dir
from tests.gateway.test_mqtt import broker, broker_is_up, config, readings, running, unique  # noqa: F401

T0_MS = 1_700_000_000_123
AT_T0 = datetime(2023, 11, 14, 22, 13, 20, 123000, tzinfo=timezone.utc)
SECOND = timedelta(seconds=1)


def mosquitto_pub_path() -> str:
    """mosquitto_pub, installed by scripts/peers when missing; fails (not skips) without it."""
    found = shutil.which("mosquitto_pub")
    if found is None:
        peers_dir()
        found = shutil.which("mosquitto_pub")
    if found is None:
        pytest.fail("mosquitto_pub is needed: apt-get install mosquitto-clients (scripts/peers does it as root)")
    return found


async def mosquitto_pub(topic: str, payload: Any, qos: int = 1, retain: bool = False, v5: bool = False) -> None:
    """Publish one message with mosquitto_pub and wait for it to exit (after PUBACK for QoS 1)."""
    host, port = broker()
    argv = [mosquitto_pub_path(), "-h", host, "-p", str(port), "-t", topic, "-q", str(qos)]
    argv += ["-V", "mqttv5"] if v5 else []
    argv += ["-r"] if retain else []
    argv += ["-n"] if payload is None else ["-m", payload if isinstance(payload, str) else json.dumps(payload)]
    proc = await asyncio.create_subprocess_exec(*argv, stderr=asyncio.subprocess.PIPE)
    _, err = await asyncio.wait_for(proc.communicate(), 15)
    assert proc.returncode == 0, err.decode()


def telemetry(prefix: str, **extra: Any) -> Any:
    """A source mapping '<prefix>/{machine}/telemetry' with temp, count and state, stamped by 'ts'."""
    mapping = {
        "topic": prefix + "/{machine}/telemetry",
        "fields": {"data.temp": "{machine}.temp", "data.count": "{machine}.count", "state": "{machine}.state"},
        "timestamp": "ts",
        **extra,
    }
    return mapping


@pytest.mark.parametrize("subscribe_qos", [0, 1])
async def test_json_with_numeric_and_numeric_string_timestamps_at_qos_0_and_1(subscribe_qos: int) -> None:
    p = unique("mp")
    seconds = unique("ms")
    source = MqttSource(config(qos=subscribe_qos, json=[telemetry(p), telemetry(seconds, timestamp_format="epoch_s")]))
    sink = MemorySink()
    async with running(source, sink):
        await mosquitto_pub(f"{p}/press1/telemetry",
                            {"ts": str(T0_MS), "data": {"temp": 21.5, "count": 7}, "state": "run"}, qos=1)
        await mosquitto_pub(f"{p}/press1/telemetry", {"ts": T0_MS + 1000, "data": {"temp": -0.1}}, qos=0)
        await mosquitto_pub(f"{p}/press2/telemetry", {"ts": str(T0_MS), "data": {"count": 0}}, qos=1, v5=True)
        await mosquitto_pub(f"{seconds}/oven/telemetry", {"ts": "1700000000.123456", "state": "idle"}, qos=0)
        await sink.wait_for(lambda s: len(s.readings) == 6)
    at_t1 = AT_T0 + SECOND
    assert readings(sink, "press1.temp") == [Reading("press1.temp", 21.5, AT_T0), Reading("press1.temp", -0.1, at_t1)]
    assert readings(sink, "press1.count") == [Reading("press1.count", 7, AT_T0)]
    assert readings(sink, "press1.state") == [Reading("press1.state", "run", AT_T0)]
    assert readings(sink, "press2.count") == [Reading("press2.count", 0, AT_T0)]
    # epoch seconds as text keep their microseconds exactly (decimal, not float)
    assert readings(sink, "oven.state") == [Reading("oven.state", "idle", AT_T0 + timedelta(microseconds=456))]
    assert all(r.quality == Quality.GOOD for r in sink.readings) and not sink.dead_letters


async def test_retained_messages_arrive_when_the_source_subscribes() -> None:
    p = unique("mr")
    topics = [f"{p}/press1/telemetry", f"{p}/press2/telemetry"]
    await mosquitto_pub(topics[0], {"ts": str(T0_MS), "data": {"temp": 30.25}}, qos=1, retain=True)
    await mosquitto_pub(topics[1], {"ts": T0_MS, "data": {"temp": 31.0}}, qos=0, retain=True)
    source = MqttSource(config(json=[telemetry(p)]))
    sink = MemorySink()
    try:
        async with running(source, sink):
            await sink.wait_for(lambda s: len(s.readings) == 2)
            # a live message after the retained ones
            await mosquitto_pub(topics[0], {"ts": str(T0_MS + 1000), "data": {"temp": 30.5}}, qos=1)
            await sink.wait_for(lambda s: len(s.readings) == 3)
    finally:
        for topic in topics:  # an empty retained message clears the broker's copy
            await mosquitto_pub(topic, None, qos=1, retain=True)
    assert readings(sink, "press1.temp") == [
        Reading("press1.temp", 30.25, AT_T0), Reading("press1.temp", 30.5, AT_T0 + SECOND)
    ]
    assert readings(sink, "press2.temp") == [Reading("press2.temp", 31.0, AT_T0)]


async def test_a_timestamp_that_is_not_a_number_is_dead_lettered_naming_the_field() -> None:
    p = unique("mb")
    source = MqttSource(config(json=[telemetry(p)]))
    sink = MemorySink()
    async with running(source, sink):
        for bad in ("1.7e12", "soon", " 1700000000123"):
            await mosquitto_pub(f"{p}/press1/telemetry", {"ts": bad, "data": {"temp": 1.0}})
        await mosquitto_pub(f"{p}/press1/telemetry", {"ts": str(T0_MS), "data": {"temp": 2.0}})
        await sink.wait_for(lambda s: len(s.readings) == 1 and len(s.dead_letters) == 3)
    assert readings(sink, "press1.temp") == [Reading("press1.temp", 2.0, AT_T0)]
    for (reason, letter), bad in zip(sink.dead_letters, ("1.7e12", "soon", " 1700000000123")):
        assert reason == f"{p}/press1/telemetry: ts: timestamp {bad!r} is not a number (epoch_ms)", reason
        assert letter["topic"] == f"{p}/press1/telemetry"
