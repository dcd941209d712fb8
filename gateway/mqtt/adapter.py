"""MqttSource: one broker connection, JSON topics and Sparkplug B groups into a Sink."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import ssl
import time
import uuid
from typing import Any

import aiomqtt
import msgspec
import paho.mqtt.client as paho
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from gateway.mqtt import sparkplug
from gateway.mqtt.config import MqttSourceConfig
from gateway.mqtt.json_mapping import JsonDecoder, JsonError
from gateway.mqtt.sparkplug import NAMESPACE, Outcome, SparkplugHost, letter
from gateway.cancel import honour_cancellation
from gateway.source import NotWritableError, Reading, Sink, SourceStatus, WriteError
from gateway.tags import TagConfig

log = logging.getLogger(__name__)


class AckClient(aiomqtt.Client):
    """An aiomqtt Client that acknowledges QoS 1 messages only when told to.

    aiomqtt 2.5 has no manual acknowledgement (empicano/aiomqtt#345, PR #346 unmerged), but the
    paho client under it does; this is the one place that reaches into aiomqtt's `_client`/`_queue`.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # before connecting: a persistent session's queued messages arrive right after CONNACK
        self._client.manual_ack_set(True)

    def ack(self, message: aiomqtt.Message) -> None:
        """Send the PUBACK of a QoS 1 message (nothing for QoS 0)."""
        if message.qos:
            self._client.ack(message.mid, message.qos)

    def take_ready(self, limit: int) -> list[aiomqtt.Message]:
        """Up to limit messages that have already arrived, without waiting."""
        queue = self._queue
        out: list[aiomqtt.Message] = []
        while len(out) < limit and not queue.empty():
            out.append(queue.get_nowait())
        return out


class MqttSource:
    """A gateway Source reading JSON topics and Sparkplug B groups from one MQTT broker."""

    def __init__(self, config: MqttSourceConfig) -> None:
        self.config = config
        self.name = config.name
        self.status = SourceStatus(config.name, "mqtt")
        self._json = [JsonDecoder(m) for m in config.json]
        self._hosts = {g.group_id: SparkplugHost(g, config.rebirth_interval) for g in config.sparkplug}
        self._client: AckClient | None = None
        self._client_id = config.client_id or f"shopfloor-{config.name}-{uuid.uuid4().hex[:8]}"
        self._listed = {t.name for t in config.tag_configs()}
        self._created: dict[str, TagConfig] = {}
        """Tags JSON mappings with create_tags registered on first sight, in order (capped)."""
        self.created_refused_total = 0
        """Readings dead-lettered because their tag would have passed max_created_tags."""

    # -- Source -----------------------------------------------------------------------------------

    async def run(self, sink: Sink) -> None:
        """Read until cancelled, reconnecting with exponential backoff and jitter after any failure."""
        delay = self.config.reconnect_min
        while True:
            honour_cancellation()
            started = time.monotonic()
            try:
                await self._session(sink)
            except aiomqtt.MqttError as e:
                self._failed(f"broker {self.config.host}:{self.config.port}: {e}")
            except Exception as e:  # a source keeps running whatever broke: logged, counted, retried
                log.warning("mqtt source %s failed", self.name, exc_info=True)
                self._failed(f"{type(e).__name__}: {e}")
            finally:
                self._client = None
                self.status.connected = False
            if time.monotonic() - started > self.config.reconnect_max:
                delay = self.config.reconnect_min  # it was up a good while: start backing off afresh
            honour_cancellation()
            self.status.reconnects_total += 1
            # jitter keeps a fleet of gateways from reconnecting in lockstep after a broker restart
            await asyncio.sleep(random.uniform(delay / 2, delay))
            delay = min(delay * 2, self.config.reconnect_max)

    async def write(self, tag: str, value: float | int | bool | str) -> None:
        """Send a value to a writable tag: DCMD/NCMD for Sparkplug metrics, the command topic for JSON."""
        for host in self._hosts.values():
            cmd = host.command(tag, value)
            if cmd is not None:
                await self._publish(tag, *cmd, qos=0)  # Sparkplug sends commands with QoS 0
                return
        for decoder in self._json:
            target = decoder.command(tag)
            if target is not None:
                payload = msgspec.json.encode(
                    {"tag": tag, "field": target.field, "value": value, "ts": time.time_ns() // 1_000_000}
                )
                await self._publish(tag, target.topic, payload, qos=self.config.qos)
                return
        raise NotWritableError(f"{tag}: not a writable tag of MQTT source {self.name}")

    def known_tags(self) -> dict[str, TagConfig]:
        """The tags this source has configured or seen born, with their metadata, for the registry."""
        tags = {t.name: t for t in self.config.tag_configs()}
        for host in self._hosts.values():
            for name, t in host.tags.items():
                tags.setdefault(name, t)
        for name, t in self._created.items():
            tags.setdefault(name, t)
        return tags

    @property
    def created_tags(self) -> dict[str, TagConfig]:
        """The tags created from topic captures so far (create_tags), by name."""
        return dict(self._created)

    # -- internals --------------------------------------------------------------------------------

    async def _publish(self, tag: str, topic: str, payload: bytes, qos: int) -> None:
        client = self._client
        if client is None:
            raise WriteError(f"{tag}: MQTT source {self.name} is not connected")
        try:
            await client.publish(topic, payload, qos=qos)
        except aiomqtt.MqttError as e:
            raise WriteError(f"{tag}: publish to {topic} failed: {e}") from e

    def _failed(self, message: str) -> None:
        if self.status.connected or self.status.last_error != message:
            log.warning("mqtt source %s: %s", self.name, message)
        self.status.error(message)

    async def _session(self, sink: Sink) -> None:
        now_ms = time.time_ns() // 1_000_000
        async with self._connect(now_ms) as client:
            self._client = client
            for topic in self._filters():
                await client.subscribe(topic, qos=self.config.qos)
            for host in self._hosts.values():
                if host.group.host_id:
                    await client.publish(
                        _state_topic(host.group.host_id), sparkplug.state_payload(True, now_ms), qos=1, retain=True
                    )
            honour_cancellation()
            self.status.connected = True
            log.info("mqtt source %s connected to %s:%s", self.name, self.config.host, self.config.port)
            try:
                async for first in client.messages:
                    batch = [first, *client.take_ready(self.config.batch_messages - 1)]
                    await self._handle(client, sink, batch)
                    honour_cancellation()
            finally:
                await self._offline(client)

    async def _offline(self, client: AckClient) -> None:
        """Sparkplug 3.0: a host going away cleanly says so itself (the will covers only crashes)."""
        now_ms = time.time_ns() // 1_000_000
        for host in self._hosts.values():
            if host.group.host_id:
                with contextlib.suppress(aiomqtt.MqttError):
                    await client.publish(
                        _state_topic(host.group.host_id),
                        sparkplug.state_payload(False, now_ms),
                        qos=1,
                        retain=True,
                        timeout=2,
                    )

    def _connect(self, now_ms: int) -> AckClient:
        c = self.config
        v5 = c.protocol == "5"
        properties = None
        if v5 and not c.clean_start:
            properties = Properties(PacketTypes.CONNECT)
            properties.SessionExpiryInterval = c.session_expiry
        will = None
        host_ids = [g.group.host_id for g in self._hosts.values() if g.group.host_id]
        if host_ids:
            # MQTT allows one will; a source is normally one host application, so the first id gets it
            will = aiomqtt.Will(_state_topic(host_ids[0]), sparkplug.state_payload(False, now_ms), qos=1, retain=True)
        tls_context = None
        if c.tls:
            tls_context = ssl.create_default_context(cafile=c.ca_file)
            if c.cert_file:
                tls_context.load_cert_chain(c.cert_file, c.key_file)
        return AckClient(
            c.host,
            c.port,
            username=c.username,
            password=c.password,
            identifier=self._client_id,
            protocol=aiomqtt.ProtocolVersion.V5 if v5 else aiomqtt.ProtocolVersion.V311,
            will=will,
            clean_session=None if v5 else c.clean_start,
            clean_start=c.clean_start if v5 else paho.MQTT_CLEAN_START_FIRST_ONLY,
            properties=properties,
            keepalive=c.keepalive,
            tls_context=tls_context,
        )

    def _filters(self) -> list[str]:
        topics = [d.pattern.filter for d in self._json]
        topics += [f"{NAMESPACE}/{g}/#" for g in self._hosts]
        return list(dict.fromkeys(topics))

    async def _handle(self, client: AckClient, sink: Sink, batch: list[aiomqtt.Message]) -> None:
        """Decode a batch, spool it, then (and only then) acknowledge it, and ask for rebirths."""
        # a sink that takes points (the gateway's SpoolSink) gets Sparkplug's numbers as columns
        out = Outcome(points=[] if getattr(sink, "takes_points", False) else None)
        for message in batch:
            self._route(message.topic.value, message.payload, out)  # type: ignore[arg-type]  # paho gives bytes
        for reason, payload in out.dead_letters:
            await sink.dead_letter(reason, payload)
        for run in out.points or ():
            sink.put_points(*run, waits=True)  # type: ignore[attr-defined]
        if out.readings:
            await sink.publish(out.readings)
        if out.columns:
            await sink.publish_columns(out.columns)
        if out.points:
            # handed over without waiting: acknowledged only once their record is on disk (the sink
            # counts them in readings_total then); rows published above joined the same record or a later one
            await sink.durable()  # type: ignore[attr-defined]
        for message in batch:
            client.ack(message)
        self.status.readings_total += len(out.readings) + len(out.columns)
        self.status.dead_letters_total += len(out.dead_letters)
        for reason, _ in out.dead_letters:
            log.info("mqtt source %s dead letter: %s", self.name, reason)
        for error in out.errors:
            self._failed(error)
        for group, edge in out.rebirths:
            log.info("mqtt source %s: asking %s/%s to rebirth", self.name, group, edge)
            await client.publish(f"{NAMESPACE}/{group}/NCMD/{edge}", sparkplug.rebirth_request(), qos=0)

    def _route(self, topic: str, payload: bytes, out: Outcome) -> None:
        if topic.startswith(NAMESPACE + "/"):
            parts = topic.split("/")
            host = self._hosts.get(parts[1])
            if host is not None:
                host.handle(topic, parts, payload, out)
                return
        matched = False
        for decoder in self._json:
            fields = decoder.resolve(topic)
            if fields is None:
                continue
            matched = True
            try:
                readings, problems = decoder.decode(fields, payload)
            except JsonError as e:
                out.dead_letters.append((f"{topic}: {e}", _json_letter(topic, payload)))
                continue
            if decoder.mapping.create_tags:
                readings = self._admit(decoder, topic, fields, readings, payload, out)
            out.readings.extend(readings)
            if problems:
                out.dead_letters.append((f"{topic}: " + "; ".join(problems), _json_letter(topic, payload)))
        if not matched:
            # a broker may deliver what an overlapping subscription of the session caught
            log.debug("mqtt source %s: no mapping for topic %s", self.name, topic)

    def _admit(
        self,
        decoder: JsonDecoder,
        topic: str,
        fields: list[tuple[str, tuple[str, ...], str]],
        readings: list[Reading],
        payload: bytes,
        out: Outcome,
    ) -> list[Reading]:
        """Create the new tags of a create_tags mapping up to the cap; readings of tags past it are dead-lettered."""
        created, listed = self._created, self._listed
        if all(r.tag in created or r.tag in listed for r in readings):
            return readings  # the steady state: every tag already known
        cap = self.config.max_created_tags
        captures = decoder.pattern.match(topic) or {}
        paths = {tag: path for path, _, tag in fields}
        refused: list[str] = []
        for r in readings:
            if r.tag in created or r.tag in listed:
                continue
            if len(created) >= cap:
                refused.append(r.tag)
                continue
            # known_tags() now names it: the gateway registers it (as it does Sparkplug births) before its data
            created[r.tag] = decoder.mapping.created_tag(paths[r.tag], r.tag, captures, r.value)
            self.status.tags_total += 1
            log.debug("mqtt source %s created tag %s", self.name, r.tag)
        if not refused:
            return readings
        if not self.created_refused_total:
            log.warning("mqtt source %s: max_created_tags (%s) reached; readings of new tags are dead-lettered",
                        self.name, cap)
        self.created_refused_total += len(refused)
        distinct = list(dict.fromkeys(refused))
        names = ("tag " if len(distinct) == 1 else "tags ") + ", ".join(repr(t) for t in distinct)
        out.dead_letters.append(
            (f"{topic}: {names} not created: max_created_tags ({cap}) of source {self.name} reached",
             _json_letter(topic, payload))
        )
        # straight into the status, not out.errors: that would log a warning per refused message
        self.status.error(
            f"max_created_tags ({cap}) reached: {self.created_refused_total} readings of new tags dead-lettered, "
            f"the last of tag {refused[-1]!r}"
        )
        gone = set(refused)
        return [r for r in readings if r.tag not in gone]


def _state_topic(host_id: str) -> str:
    return f"{NAMESPACE}/STATE/{host_id}"


def _json_letter(topic: str, payload: bytes) -> dict[str, Any]:
    try:
        return {"topic": topic, "payload": payload.decode()}
    except UnicodeDecodeError:
        return letter(topic, payload)
