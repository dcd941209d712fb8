"""OpcUaSource: the gateway.source.Source of one OPC UA server.

run() keeps a session open forever (subscribe or poll), turns each DataValue into a Reading and
hands them to the sink in batches from its own task, so asyncua's notification callbacks never
wait for the spool. A notification's numeric values skip the Reading: they go to a sink that
takes them (the gateway's SpoolSink) as columns, without waiting either. write() writes one
writable tag with the node's own data type.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import OrderedDict
from datetime import datetime, timezone
from typing import Any

import numpy as np
from asyncua import ua
from asyncua.common.node import Node
from asyncua.common.ua_utils import data_type_to_variant_type

from gateway.opcua.config import OpcUaEvents, OpcUaSourceConfig, OpcUaTag
from gateway.opcua.session import RECOVERABLE, Backoff, Session, describe, open_session
from gateway.opcua.subscription import EVENT_PREFIX, Monitor
from gateway.cancel import honour_cancellation
from gateway.outbox import Outbox, run_beside
from gateway.source import InvalidValueError, NotWritableError, Reading, Sink, SourceStatus, WriteError
from gateway.tags import TagConfig
from gateway.values import float32_value, shortest_float32
from historian.samples import Quality, to_us

log = logging.getLogger(__name__)

_BAD: dict[int, int] = {
    ua.StatusCodes.BadConfigurationError: Quality.BAD_CONFIG_ERROR,
    ua.StatusCodes.BadNodeIdUnknown: Quality.BAD_CONFIG_ERROR,
    ua.StatusCodes.BadNodeIdInvalid: Quality.BAD_CONFIG_ERROR,
    ua.StatusCodes.BadAttributeIdInvalid: Quality.BAD_CONFIG_ERROR,
    ua.StatusCodes.BadNotReadable: Quality.BAD_CONFIG_ERROR,
    ua.StatusCodes.BadNotConnected: Quality.BAD_NOT_CONNECTED,
    ua.StatusCodes.BadDeviceFailure: Quality.BAD_DEVICE_FAILURE,
    ua.StatusCodes.BadSensorFailure: Quality.BAD_SENSOR_FAILURE,
    ua.StatusCodes.BadNoCommunication: Quality.BAD_COMM_FAILURE,
    ua.StatusCodes.BadCommunicationError: Quality.BAD_COMM_FAILURE,
    ua.StatusCodes.BadOutOfService: Quality.BAD_OUT_OF_SERVICE,
}
_INT_RANGES = {
    ua.VariantType.SByte: (-(2**7), 2**7 - 1),
    ua.VariantType.Byte: (0, 2**8 - 1),
    ua.VariantType.Int16: (-(2**15), 2**15 - 1),
    ua.VariantType.UInt16: (0, 2**16 - 1),
    ua.VariantType.Int32: (-(2**31), 2**31 - 1),
    ua.VariantType.UInt32: (0, 2**32 - 1),
    ua.VariantType.Int64: (-(2**63), 2**63 - 1),
    ua.VariantType.UInt64: (0, 2**64 - 1),
}

# the variant types a scalar numeric tag takes straight into a float64 column, as the row path would
# store them (an int tag's Float must be integral, a bool is no number: those take the row path)
_INTEGER_TYPES = frozenset(_INT_RANGES)
_COLUMN_TYPES = {"float": _INTEGER_TYPES | {ua.VariantType.Float, ua.VariantType.Double}, "int": _INTEGER_TYPES}


def quality_of(status: ua.StatusCode | None) -> int:
    """OPC DA quality of an OPC UA status: good 192, uncertain 64 (68: last usable), bad 0 or its sub-status."""
    if status is None or status.is_good():
        return Quality.GOOD
    code = status.value & 0xFFFF0000  # the low 16 bits are info bits (limits, overflow), not the status
    if status.is_uncertain():
        return Quality.UNCERTAIN_LAST_USABLE if code == ua.StatusCodes.UncertainLastUsableValue else Quality.UNCERTAIN
    return _BAD.get(code, Quality.BAD)


def _timestamp(dv: ua.DataValue) -> datetime | None:
    for ts in (dv.SourceTimestamp, dv.ServerTimestamp):
        # some servers send 0 for "no timestamp", which decodes to 1601-01-01
        if ts is not None and ts.year > 1601:
            return ts
    return None


def _value(tag: OpcUaTag, variant: ua.Variant) -> float | int | bool | str:
    v = variant.Value
    if variant.is_array or isinstance(v, (list, tuple)):
        if tag.index is None:
            raise ValueError(f"an array of {len(v)}: set `index` to read one element per tag")
        if len(v) != 1:  # the server ignored the IndexRange
            raise ValueError(f"asked for element {tag.index}, got an array of {len(v)}")
        v = v[0]
    if variant.VariantType is ua.VariantType.Float and isinstance(v, float):
        # a Float arrives widened to double: 20.3 would read 20.299999237060547
        v = float32_value(v)
    if isinstance(v, ua.LocalizedText):
        v = v.Text or ""
    if tag.data_type == "float" and isinstance(v, (int, float)) and not isinstance(v, bool):
        return float(v)
    if tag.data_type == "int":
        if isinstance(v, int) or (isinstance(v, float) and v.is_integer()):
            return int(v)
    elif tag.data_type == "bool":
        if isinstance(v, bool) or v in (0, 1):
            return bool(v)
    elif tag.data_type == "text":
        if isinstance(v, datetime):
            return v.isoformat()
        if isinstance(v, (str, int, float)):
            return str(v)
    raise ValueError(f"a {variant.VariantType.name} value {v!r} does not fit data_type {tag.data_type!r}")


def to_reading(tag: OpcUaTag, dv: ua.DataValue) -> Reading:
    """The Reading of a DataValue: source timestamp (else server timestamp), quality, None for bad values."""
    quality = quality_of(dv.StatusCode)
    ts = _timestamp(dv)
    if quality < Quality.UNCERTAIN:
        return Reading(tag.name, None, ts, quality)
    if dv.Value is None or dv.Value.Value is None:
        raise ValueError(f"status {dv.StatusCode.name if dv.StatusCode else 'Good'} but no value")
    return Reading(tag.name, _value(tag, dv.Value), ts, quality)


def _json_value(value: Any) -> Any:
    """An event field's value as JSON can hold it; ValueError for a structure we do not know."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError(f"{value!r} has no JSON form")
        return value
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=timezone.utc)).isoformat()
    if isinstance(value, ua.LocalizedText):
        return value.Text
    if isinstance(value, (ua.NodeId, ua.QualifiedName)):
        return value.to_string()
    if isinstance(value, ua.StatusCode):
        return value.name
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, (list, tuple)):
        return [_json_value(v) for v in value]
    raise ValueError(f"a {type(value).__name__} has no JSON form here")


class EventStamps:
    """Gives each event of one events tag a distinct timestamp: the events table keeps one row per (tag, ts).

    Two different events (EventId) with the same Time are 1 µs apart; the same event delivered
    again (a republish) gets the same time, so the historian stores it once.
    """

    def __init__(self, remember: int = 4096) -> None:
        self._ids: OrderedDict[int, bytes] = OrderedDict()
        self._remember = remember

    def stamp(self, ts_us: int, event_id: bytes | None) -> int:
        """The time to store an event under: its own, or the next free microsecond after it."""
        while (held := self._ids.get(ts_us)) is not None and (event_id is None or held != event_id):
            ts_us += 1
        self._ids[ts_us] = event_id or b""
        self._ids.move_to_end(ts_us)
        if len(self._ids) > self._remember:
            self._ids.popitem(last=False)
        return ts_us


def to_event_reading(notifier: OpcUaEvents, fields: list[ua.Variant], stamps: EventStamps, now_us: int) -> Reading:
    """The reading of an event: a JSON object of the kept fields it carries, at its Time (else now_us)."""
    skip = len(EVENT_PREFIX)
    if len(fields) != len(notifier.fields) + skip:
        raise ValueError(f"{len(fields)} event fields for {len(notifier.fields) + skip} select clauses")
    event_id = fields[0].Value if isinstance(fields[0].Value, bytes) else None
    kept: dict[str, Any] = {}
    for name, variant in zip(notifier.fields, fields[skip:]):
        if variant.Value is None:
            continue  # a field this event type does not have (ConditionName of a plain event)
        try:
            kept[name] = _json_value(variant.Value)
        except ValueError as e:
            raise ValueError(f"field {name}: {e}") from None
    if not kept:
        raise ValueError("the event carries none of the kept fields")
    # the event's Time when kept (and sent), else the time it arrived, as readings without a device time
    time_field = next((v.Value for n, v in zip(notifier.fields, fields[skip:]) if n == "Time"), None)
    ts_us = to_us(time_field) if isinstance(time_field, datetime) and time_field.year > 1601 else now_us
    value = json.dumps(kept, separators=(",", ":"), ensure_ascii=False)
    return Reading(notifier.name, value, stamps.stamp(ts_us, event_id), Quality.GOOD)


def _for_variant(value: Any, vtype: ua.VariantType) -> Any:
    """The value as the Python type asyncua encodes as vtype; ValueError if it does not fit."""
    if vtype is ua.VariantType.Boolean:
        if isinstance(value, bool) or value in (0, 1):
            return bool(value)
    elif vtype in _INT_RANGES:
        low, high = _INT_RANGES[vtype]
        integral = isinstance(value, (int, float)) and not isinstance(value, bool) and float(value).is_integer()
        if integral and low <= value <= high:
            return int(value)
    elif vtype in (ua.VariantType.Float, ua.VariantType.Double):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif vtype is ua.VariantType.String:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
    else:
        raise ValueError(f"writing a {vtype.name} node is not supported")
    raise ValueError(f"{value!r} does not fit the node's data type {vtype.name}")


class _Intake:
    """The Monitor's listener and the poll loop's receiver: DataValues in, readings into the outbox.

    With a sink that takes points (the gateway's SpoolSink), a notification's good and uncertain
    values of scalar float and int tags go to it as columns instead (tag position, source time,
    float64 value, quality), one call per notification; bad values, text, bools, arrays and
    anything to dead-letter keep the Reading path.
    """

    def __init__(self, source: OpcUaSource, outbox: Outbox, sink: Sink | None = None) -> None:
        self.source = source
        self.outbox = outbox
        self._last: dict[str, tuple[Any, int, datetime | None]] = {}
        self._stamps: dict[str, EventStamps] = {}
        self._points = sink if getattr(sink, "takes_points", False) else None
        numeric = [t for t in source.config.tags if t.data_type in _COLUMN_TYPES and t.index is None]
        # only numeric tags in the list: the forwarder looks the whole list up as numeric tags
        self._names = tuple(t.name for t in numeric)
        self._slots = {t.name: (i, _COLUMN_TYPES[t.data_type]) for i, t in enumerate(numeric)}

    def on_values(self, items: list[tuple[OpcUaTag, ua.DataValue]]) -> None:
        """A notification's values: numbers as columns straight to the sink, the rest one by one."""
        sink = self._points
        if sink is None or self.outbox.handed > self.source.config.max_pending:
            # no columnar sink (tests' MemorySink), or the spool is far behind: rows, which the
            # outbox bounds by max_pending (dropping the oldest, counted) as for any push source
            for tag, dv in items:
                self.on_value(tag, dv)
            return
        slots = self._slots
        errors = self.source.status.tag_errors
        at: list[int] = []
        stamps: list[int] = []
        values: list[float] = []
        quality: list[int] = []
        floats: list[int] = []  # where the Floats are: their shortest decimals are found for all at once
        rest: list[tuple[OpcUaTag, ua.DataValue]] = []
        all_good = True
        now_us: int | None = None
        for tag, dv in items:
            slot = slots.get(tag.name)
            variant = dv.Value
            code = dv.StatusCode
            q = Quality.GOOD if code is None or not code.value else quality_of(code)
            if (slot is None or q < Quality.UNCERTAIN or variant is None or variant.is_array
                    or variant.VariantType not in slot[1] or variant.Value is None):
                rest.append((tag, dv))
                continue
            if errors and tag.name in errors:
                self.source.status.tag_live(tag.name)
            if variant.VariantType is ua.VariantType.Float:
                floats.append(len(values))
            ts = dv.SourceTimestamp
            if ts is None or ts.year <= 1601:
                ts = _timestamp(dv)
            if ts is not None:
                stamps.append(to_us(ts))
            else:  # no device time: stamped on receipt, as the outbox stamps a Reading
                if now_us is None:
                    now_us = time.time_ns() // 1000
                stamps.append(now_us)
            at.append(slot[0])
            values.append(variant.Value)
            quality.append(q)
            all_good = all_good and q == Quality.GOOD
        if values:
            column = np.array(values, dtype=np.float64)
            if floats:  # a Float arrives widened to double: 20.3 would read 20.299999237060547
                where = np.array(floats, dtype=np.intp)
                column[where] = shortest_float32(column[where])
            sink.put_points(self._names, np.array(at, dtype=np.int32), np.array(stamps, dtype=np.int64), column,
                            None if all_good else np.array(quality, dtype=np.int16))
            self.outbox.handed_over(len(values))
        for tag, dv in rest:
            self.on_value(tag, dv)

    def on_event(self, notifier: OpcUaEvents, fields: list[ua.Variant]) -> None:
        """Queue an event as a reading of its events tag; one that cannot be mapped goes to the dead letters."""
        stamps = self._stamps.setdefault(notifier.name, EventStamps())
        try:
            reading = to_event_reading(notifier, fields, stamps, time.time_ns() // 1000)
        except ValueError as e:
            payload = {"source": self.source.name, "tag": notifier.name, "notifier": notifier.notifier,
                       "fields": {n: repr(v.Value) for n, v in zip([*EVENT_PREFIX, *notifier.fields], fields)}}
            self.outbox.put_dead(f"{notifier.name}: event not stored: {e}", payload)
            return
        self.outbox.put(reading)

    def on_value(self, tag: OpcUaTag, dv: ua.DataValue, only_changes: bool = False) -> None:
        """Convert and queue; something that is no reading goes to the dead letters."""
        status = self.source.status
        code = dv.StatusCode
        if code is not None and code.is_bad():
            status.tag_failed(tag.name, f"{code.name} from {tag.node_id}")
        elif tag.name in status.tag_errors:
            status.tag_live(tag.name)
        try:
            reading = to_reading(tag, dv)
        except ValueError as e:
            value = dv.Value.Value if dv.Value is not None else None
            payload = {"source": self.source.name, "tag": tag.name, "node_id": tag.node_id, "value": repr(value)}
            self.outbox.put_dead(f"{tag.name}: {e}", payload)
            return
        if only_changes and reading.source_ts is not None:
            # a poll that finds the same stamped value again has nothing new to say
            key = (reading.value, reading.quality, reading.source_ts)
            if self._last.get(tag.name) == key:
                return
            self._last[tag.name] = key
        self.outbox.put(reading)

    def not_connected(self, tags: list[OpcUaTag]) -> None:
        """Mark every tag bad (not connected): the historian shows the gap instead of a line across it."""
        for tag in tags:
            self.outbox.put(Reading(tag.name, None, None, Quality.BAD_NOT_CONNECTED))
        # after the gap, the first poll must publish every value again, changed or not
        self._last.clear()

    def on_problem(self, message: str) -> None:
        """Record and log a problem that does not end the session."""
        self.source.status.error(message)
        log.warning("%s: %s", self.source.name, message)

    def on_tag_refused(self, tag: OpcUaTag, reason: str) -> None:
        """Keep why the server refused a tag, for /api/v1/sources."""
        self.source.status.tag_failed(tag.name, reason)

    def on_recreated(self) -> None:
        """Count a subscription recreated after a stall."""
        self.source.stalls_total += 1


class OpcUaSource:
    """Reads the configured tags from one OPC UA server into a Sink, reconnecting by itself forever."""

    kind = "opcua"

    def __init__(self, config: OpcUaSourceConfig) -> None:
        self.config = config
        self.name = config.name
        self.status = SourceStatus(config.name, self.kind, tags_total=len(config.tags))
        self.stalls_total = 0
        """How often a stalled subscription was recreated (without losing the session)."""
        self._tags = {tag.name: tag for tag in config.tags}
        self._session: Session | None = None
        self._variant_types: dict[str, ua.VariantType] = {}

    def known_tags(self) -> dict[str, TagConfig]:
        """The events tags (text), registered by the gateway when their first event reaches the historian."""
        return {n.name: n.tag_config() for n in self.config.events}

    async def run(self, sink: Sink) -> None:
        """Read until cancelled, reconnecting with backoff after any failure."""
        c = self.config
        outbox = Outbox(
            sink, self.status, batch_size=c.batch_size, batch_interval=c.batch_interval, max_pending=c.max_pending
        )
        intake = _Intake(self, outbox, sink)
        await run_beside(outbox, self._connect_forever(intake), f"opcua:{self.name}")

    async def _connect_forever(self, intake: _Intake) -> None:
        backoff = Backoff(self.config.reconnect_min, self.config.reconnect_max)
        connected_before = False
        while True:
            try:
                async with open_session(self.config) as session:
                    if connected_before:
                        self.status.reconnects_total += 1
                    connected_before = True
                    self._session = session
                    self.status.connected = True
                    self.status.recovered()
                    log.info("%s: connected to %s", self.name, self.config.endpoint)
                    for tag in self.config.tags:
                        if tag.name in session.unresolved:
                            intake.on_tag_refused(tag, session.unresolved[tag.name])
                    if self.config.mode == "subscribe":
                        await self._subscribe(session, intake, backoff)
                    else:
                        await self._poll(session, intake, backoff)
            except RECOVERABLE as e:
                self.status.error(describe(e, self.config))
            except Exception as e:
                # a gateway must outlive a bug in a library or a server's oddity: report it loudly, retry
                log.exception("%s: unexpected failure", self.name)
                self.status.error(f"unexpected {type(e).__name__}: {e}")
            finally:
                self._session = None
                was_connected, self.status.connected = self.status.connected, False
            if was_connected:
                intake.not_connected(self.config.tags)
            delay = backoff.next()
            log.warning("%s: %s; reconnecting in %.1f s", self.name, self.status.last_error, delay)
            await asyncio.sleep(delay)

    async def _subscribe(self, session: Session, intake: _Intake, backoff: Backoff) -> None:
        monitor = Monitor(session, self.config, intake)
        await monitor.start()
        backoff.reset()
        await monitor.watch()
        raise ConnectionError(session.lost_reason or "connection lost")

    async def _poll(self, session: Session, intake: _Intake, backoff: Backoff) -> None:
        if not self.config.events:
            return await self._poll_tags(session, intake, backoff)
        # events cannot be polled: a subscription carries the notifiers beside the Read loop
        monitor = Monitor(session, self.config, intake, tags=False)
        await monitor.start()
        watcher = asyncio.create_task(monitor.watch(), name=f"opcua:{self.name}:events")
        polling = asyncio.create_task(self._poll_tags(session, intake, backoff), name=f"opcua:{self.name}:poll")
        try:
            await asyncio.wait((watcher, polling), return_when=asyncio.FIRST_COMPLETED)
            for task in (polling, watcher):
                if task.done():
                    task.result()  # the failure that ended it (a recreate that could not be done)
        finally:
            for task in (watcher, polling):
                task.cancel()
            await asyncio.gather(watcher, polling, return_exceptions=True)
        raise ConnectionError(session.lost_reason or "connection lost")

    async def _poll_tags(self, session: Session, intake: _Intake, backoff: Backoff) -> None:
        tags = [tag for tag in self.config.tags if tag.name in session.nodes]
        params = ua.ReadParameters(
            MaxAge=0,
            TimestampsToReturn=ua.TimestampsToReturn.Both,
            NodesToRead=[
                ua.ReadValueId(NodeId=session.nodes[t.name].nodeid, AttributeId=ua.AttributeIds.Value,
                               IndexRange=t.index_range)
                for t in tags
            ],
        )
        loop = asyncio.get_running_loop()
        while not session.lost.is_set():
            started = loop.time()
            if tags:
                # one Read service call for every tag: one round trip per poll whatever the tag count
                for tag, dv in zip(tags, await session.client.uaclient.read(params)):
                    intake.on_value(tag, dv, only_changes=True)
            backoff.reset()
            with contextlib.suppress(TimeoutError):
                rest = self.config.poll_interval - (loop.time() - started)
                await asyncio.wait_for(session.lost.wait(), max(0.0, rest))
            honour_cancellation()
        raise ConnectionError(session.lost_reason or "connection lost")

    async def write(self, tag: str, value: float | int | bool | str) -> None:
        """Write a writable tag's node with the node's own data type, or raise NotWritableError / WriteError."""
        config = self._tags.get(tag)
        if config is None:
            raise NotWritableError(f"{tag}: not a tag of OPC UA source {self.name!r}")
        if not config.writable:
            raise NotWritableError(f"{tag}: not writable (the tag's config does not say writable = true)")
        session = self._session
        if session is None or session.lost.is_set() or tag not in session.nodes:
            raise WriteError(f"{tag}: not connected to {self.config.endpoint}")
        node = session.nodes[tag]
        try:
            vtype = await self._variant_type(session, tag, node)
            variant = ua.Variant(_for_variant(value, vtype), vtype)
            await node.write_attribute(ua.AttributeIds.Value, ua.DataValue(variant))
        except ValueError as e:
            raise InvalidValueError(f"{tag}: {e}") from None
        except ua.UaStatusCodeError as e:
            raise WriteError(f"{tag}: the server refused the write ({ua.StatusCode(e.code).name})") from e
        except RECOVERABLE as e:
            raise WriteError(f"{tag}: {describe(e, self.config)}") from e
        log.info("%s: wrote %r to %s", self.name, value, tag)

    async def _variant_type(self, session: Session, tag: str, node: Node) -> ua.VariantType:
        """The variant type of a node's DataType, read once per tag."""
        if tag not in self._variant_types:
            datatype = await node.read_data_type()
            self._variant_types[tag] = await data_type_to_variant_type(session.client.get_node(datatype))
        return self._variant_types[tag]

