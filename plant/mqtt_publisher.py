"""The simulated plant on MQTT: JSON telemetry per machine and a Sparkplug B edge node.

`async with MqttPlant(host, port) as plant:` connects with NDEATH as its will, births the node
and its devices (aliases in DBIRTH, aliases only in DDATA), answers NCMD rebirth requests, and,
with `period` set, publishes a random walk every period. Tests drive it exactly instead:
`publish_json`, `ddata`, `ndata`, `publish_raw`, `rebirth`, `ddeath`, `add_metric`, `die`.

Sparkplug B encoding uses the plant's own copy of the protobuf module (plant/sparkplug_b_pb2.py,
generated from Eclipse Tahu's schema): the plant imports nothing of Shopfloor's. Value encoding
follows Tahu's Python client (signed integers wrapped to their own width, UInt32 in int_value).
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Callable, Mapping, Sequence

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCode

from plant import sparkplug_b_pb2 as pb

log = logging.getLogger(__name__)

NAMESPACE = "spBv1.0"
REBIRTH = "Node Control/Rebirth"
DEFAULT_METRICS = {
    "Temperature": "Double",
    "Pressure": "Float",
    "Speed": "Int32",
    "Count": "UInt64",
    "Running": "Boolean",
    "State": "String",
    "EnergyKWh": "Double",
}
"""Every device's metrics (name -> Sparkplug datatype) unless `metrics` says otherwise."""

_INT_BITS = {"Int8": 8, "Int16": 16, "Int32": 32, "Int64": 64, "UInt8": 8, "UInt16": 16, "UInt32": 32, "UInt64": 64}
_INITIAL: dict[str, Any] = {"Float": 0.0, "Double": 0.0, "Boolean": False, "String": "", "Text": "", "UUID": ""}


@dataclass
class PlantMetric:
    """One metric of the edge node or of a device: its alias, datatype and current value."""

    name: str
    datatype: str
    alias: int
    value: Any


@dataclass
class Command:
    """A command the plant received: NCMD/DCMD metrics by name, or a JSON command."""

    topic: str
    values: dict[str, Any] = field(default_factory=dict)


class MqttPlant:
    """A simulated plant publishing JSON telemetry and a Sparkplug B edge node to one broker."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 1883,
        *,
        group_id: str = "plant",
        edge_node: str = "line1",
        devices: Sequence[str] = ("press1", "oven1"),
        metrics: Mapping[str, str] | None = None,
        json_prefix: str = "plant",
        period: float | None = 1.0,
        json_qos: int = 1,
    ) -> None:
        self.host, self.port = host, port
        self.group_id, self.edge_node = group_id, edge_node
        self.json_prefix = json_prefix
        self.period = period
        self.json_qos = json_qos
        self.bd_seq = -1  # the first connection makes it 0
        self.seq = 0
        self.rebirths_answered = 0
        self.commands: list[Command] = []
        self._aliases = 0
        self.node_metrics: dict[str, PlantMetric] = {}
        self._add(self.node_metrics, REBIRTH, "Boolean", False)
        self._add(self.node_metrics, "Properties/Hardware", "String", "simulated")
        self.devices: dict[str, dict[str, PlantMetric]] = {}
        for device in devices:
            self.devices[device] = {}
            for name, datatype in (metrics or DEFAULT_METRICS).items():
                self.add_metric(device, name, datatype)
        self._client: aiomqtt.Client | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._changed = asyncio.Event()

    # -- life -------------------------------------------------------------------------------------

    async def __aenter__(self) -> MqttPlant:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        """Connect (NDEATH as the will), birth the node and its devices, and start answering commands."""
        self.bd_seq = (self.bd_seq + 1) % 256
        will = aiomqtt.Will(self._topic("NDEATH"), self._death_payload(), qos=1)
        client = aiomqtt.Client(
            self.host,
            self.port,
            identifier=f"plant-{self.group_id}-{self.edge_node}-{uuid.uuid4().hex[:6]}",
            protocol=aiomqtt.ProtocolVersion.V5,
            will=will,
        )
        await client.__aenter__()
        self._client = client
        try:
            await client.subscribe(f"{NAMESPACE}/{self.group_id}/NCMD/{self.edge_node}", qos=0)
            await client.subscribe(f"{NAMESPACE}/{self.group_id}/DCMD/{self.edge_node}/+", qos=0)
            await client.subscribe(f"{self.json_prefix}/+/cmd", qos=1)
            self._tasks = [asyncio.create_task(self._listen(client), name="plant-mqtt-commands")]
            await self.rebirth()
        except BaseException:
            await self._cancel_tasks()
            self._client = None
            await client.__aexit__(None, None, None)
            raise
        if self.period:
            self._tasks.append(asyncio.create_task(self._simulate(self.period), name="plant-mqtt-simulation"))

    async def stop(self) -> None:
        """Clean stop: publish NDEATH, then disconnect (the broker then drops the will)."""
        await self._cancel_tasks()
        client, self._client = self._client, None
        if client is None:
            return
        try:
            await client.publish(self._topic("NDEATH"), self._death_payload(), qos=1)
        finally:
            await client.__aexit__(None, None, None)

    async def die(self) -> None:
        """Drop off like a crashed edge node: the broker publishes the will (NDEATH) for us.

        MQTT 5's DISCONNECT reason 0x04 'Disconnect with will message' makes the broker send the
        will at once, as it would after a lost connection, without waiting for a keepalive timeout.
        """
        await self._cancel_tasks()
        client, self._client = self._client, None
        if client is None:
            return
        paho_client = client._client  # aiomqtt's disconnect() sends no reason code
        paho_client.disconnect(reasoncode=ReasonCode(PacketTypes.DISCONNECT, "Disconnect with will message"))
        await client.__aexit__(None, None, None)

    # -- what tests drive -------------------------------------------------------------------------

    async def publish_json(
        self, machine: str, data: Mapping[str, Any], ts: datetime | int | None = None, qos: int | None = None
    ) -> None:
        """Publish {"ts": <epoch ms>, "data": data} on <json_prefix>/<machine>/telemetry."""
        body = {"ts": _ms(ts), "data": dict(data)}
        await self.publish_raw(f"{self.json_prefix}/{machine}/telemetry", json.dumps(body).encode(), qos)

    async def publish_raw(self, topic: str, payload: bytes, qos: int | None = None) -> None:
        """Publish exactly these bytes (for malformed-payload tests)."""
        await self._connected().publish(topic, payload, qos=self.json_qos if qos is None else qos)

    async def ddata(
        self, device: str, values: Mapping[str, Any], ts: datetime | int | None = None, seq: int | None = None
    ) -> None:
        """Set device metrics and publish them in one DDATA, by alias only; `seq` forces a sequence number."""
        metrics = self.devices[device]
        msg = pb.Payload(timestamp=_ms(ts), seq=self.next_seq() if seq is None else seq)
        for name, value in values.items():
            m = metrics[name]
            m.value = value
            self._encode(msg.metrics.add(alias=m.alias, timestamp=msg.timestamp), m.datatype, value)
        await self._connected().publish(self._topic("DDATA", device), msg.SerializeToString(), qos=0)

    async def ndata(self, values: Mapping[str, Any], ts: datetime | int | None = None) -> None:
        """Set node metrics and publish them in one NDATA, by alias only."""
        msg = pb.Payload(timestamp=_ms(ts), seq=self.next_seq())
        for name, value in values.items():
            m = self.node_metrics[name]
            m.value = value
            self._encode(msg.metrics.add(alias=m.alias, timestamp=msg.timestamp), m.datatype, value)
        await self._connected().publish(self._topic("NDATA"), msg.SerializeToString(), qos=0)

    def add_metric(self, device: str, name: str, datatype: str, value: Any = None) -> PlantMetric:
        """Give a device a new metric with a new alias; it is announced only by the next birth."""
        if datatype not in _INT_BITS and datatype not in _INITIAL and datatype != "DateTime":
            raise ValueError(f"datatype: {datatype!r} is not one the plant publishes")
        return self._add(self.devices.setdefault(device, {}), name, datatype, value)

    async def rebirth(self) -> None:
        """Publish NBIRTH (seq 0, this session's bdSeq) and a DBIRTH per device."""
        client = self._connected()
        self.seq = 0
        ts = _ms(None)
        msg = pb.Payload(timestamp=ts, seq=self.next_seq())
        self._encode(msg.metrics.add(name="bdSeq", timestamp=ts), "Int64", self.bd_seq)
        for m in self.node_metrics.values():
            self._encode(msg.metrics.add(name=m.name, alias=m.alias, timestamp=ts), m.datatype, m.value)
        await client.publish(self._topic("NBIRTH"), msg.SerializeToString(), qos=0)
        for device, metrics in self.devices.items():
            dmsg = pb.Payload(timestamp=ts, seq=self.next_seq())
            for m in metrics.values():
                self._encode(dmsg.metrics.add(name=m.name, alias=m.alias, timestamp=ts), m.datatype, m.value)
            await client.publish(self._topic("DBIRTH", device), dmsg.SerializeToString(), qos=0)

    async def ddeath(self, device: str) -> None:
        """Publish DDEATH for a device (it went offline behind the edge node)."""
        msg = pb.Payload(timestamp=_ms(None), seq=self.next_seq())
        await self._connected().publish(self._topic("DDEATH", device), msg.SerializeToString(), qos=0)

    async def wait_for(self, predicate: Callable[[MqttPlant], bool], timeout: float = 10.0) -> None:
        """Wait until predicate(self) is true (after a command arrived), or fail with TimeoutError."""

        async def loop() -> None:
            while not predicate(self):
                self._changed.clear()
                await self._changed.wait()

        await asyncio.wait_for(loop(), timeout)

    # -- internals --------------------------------------------------------------------------------

    def _add(self, metrics: dict[str, PlantMetric], name: str, datatype: str, value: Any) -> PlantMetric:
        self._aliases += 1  # aliases are unique across the edge node and all its devices
        m = PlantMetric(name, datatype, self._aliases, _INITIAL.get(datatype, 0) if value is None else value)
        metrics[name] = m
        return m

    def _topic(self, kind: str, device: str | None = None) -> str:
        base = f"{NAMESPACE}/{self.group_id}/{kind}/{self.edge_node}"
        return f"{base}/{device}" if device else base

    def _connected(self) -> aiomqtt.Client:
        if self._client is None:
            raise RuntimeError("the plant is not connected: use `async with MqttPlant(...)` or start()")
        return self._client

    def next_seq(self) -> int:
        """Take the next Sparkplug sequence number (for tests that build payloads by hand)."""
        seq, self.seq = self.seq, (self.seq + 1) % 256
        return seq

    def _death_payload(self) -> bytes:
        msg = pb.Payload()
        self._encode(msg.metrics.add(name="bdSeq"), "Int64", self.bd_seq)
        return msg.SerializeToString()

    @staticmethod
    def _encode(metric: Any, datatype: str, value: Any) -> None:
        metric.datatype = pb.DataType.Value(datatype)
        if value is None:
            metric.is_null = True
        elif datatype in _INT_BITS:
            bits = _INT_BITS[datatype]
            wrapped = value + (1 << bits) if value < 0 else value  # two's complement at its own width
            if bits == 64:
                metric.long_value = wrapped
            else:
                metric.int_value = wrapped
        elif datatype == "Float":
            metric.float_value = value
        elif datatype == "Double":
            metric.double_value = value
        elif datatype == "Boolean":
            metric.boolean_value = value
        elif datatype == "DateTime":
            metric.long_value = _ms(value)
        else:
            metric.string_value = value

    async def _cancel_tasks(self) -> None:
        pending, self._tasks = set(self._tasks), []
        while pending:
            # cancel again until they end: Python 3.11's asyncio.wait_for, which aiomqtt's publish
            # uses, can swallow a cancellation (CPython gh-86296) and the task runs on
            for t in pending:
                t.cancel()
            done, pending = await asyncio.wait(pending, timeout=0.5)
            for t in done:
                if not t.cancelled() and t.exception() is not None:
                    log.warning("plant task %s failed", t.get_name(), exc_info=t.exception())

    async def _listen(self, client: aiomqtt.Client) -> None:
        try:
            async for message in client.messages:
                await self._command(message.topic.value, message.payload)  # type: ignore[arg-type]
        except aiomqtt.MqttError as e:
            log.info("plant %s/%s: command listener stopped: %s", self.group_id, self.edge_node, e)

    async def _command(self, topic: str, payload: bytes) -> None:
        parts = topic.split("/")
        if parts[0] != NAMESPACE:
            try:
                self.commands.append(Command(topic, json.loads(payload)))
            except ValueError:
                log.warning("plant: command on %s is not JSON", topic)
            self._changed.set()
            return
        msg = pb.Payload.FromString(payload)
        values = {m.name: _decode(m) for m in msg.metrics}
        self.commands.append(Command(topic, values))
        if parts[2] == "NCMD" and values.get(REBIRTH) is True:
            self.rebirths_answered += 1
            await self.rebirth()
        elif parts[2] == "DCMD" and parts[4] in self.devices:
            # a real device applies the write and reports the new value
            known = {k: v for k, v in values.items() if k in self.devices[parts[4]]}
            if known:
                await self.ddata(parts[4], known)
        self._changed.set()

    async def _simulate(self, period: float) -> None:
        while True:
            for device, metrics in self.devices.items():
                values = {name: _walk(m) for name, m in metrics.items()}
                await self.ddata(device, values)
                numbers = {k.lower(): v for k, v in values.items() if isinstance(v, float)}
                await self.publish_json(device, numbers)
            await asyncio.sleep(period)


def _ms(ts: datetime | int | None) -> int:
    if ts is None:
        return time.time_ns() // 1_000_000
    if isinstance(ts, datetime):
        return round(ts.timestamp() * 1000)
    return ts


def _decode(m: Any) -> Any:
    which = m.WhichOneof("value")
    if which is None:
        return None
    value = getattr(m, which)
    name = pb.DataType.Name(m.datatype) if m.datatype in pb.DataType.values() else ""
    if name in _INT_BITS and not name.startswith("U"):
        bits = _INT_BITS[name]
        value &= (1 << bits) - 1  # senders wrap negatives to 32 or 64 bits, or to the type's own width
        if value >= 1 << (bits - 1):
            value -= 1 << bits
    return value


def _walk(m: PlantMetric) -> Any:
    if m.datatype in ("Float", "Double"):
        return round(float(m.value) + random.gauss(0, 1), 3)
    if m.datatype == "Boolean":
        return True
    if m.datatype in _INT_BITS:
        return (int(m.value) + 1) % (1 << (_INT_BITS[m.datatype] - 1))  # a counter that stays in range
    if m.datatype == "DateTime":
        return _ms(None)
    return m.value
