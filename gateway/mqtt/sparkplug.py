"""Sparkplug B host side: births, aliases, sequence numbers and deaths of one group's edge nodes.

Decoding runs on the C (upb) protobuf runtime. For a sink that takes points (the gateway's
SpoolSink) a message's numeric metrics become numpy columns (tag position, µs, float64, quality):
each field is read for all metrics at once through map() over the metrics, so no Python step runs
per metric unless its value reads as zero or it is a negative signed integer; text, bools, nulls
and anything to report keep the row path: a dict lookup, a oneof read and four list appends per
metric (the outcome's columns, no object per metric).
"""

from __future__ import annotations

import base64
import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from operator import attrgetter, itemgetter, methodcaller
from typing import Any, Callable, Iterable

import msgspec
import numpy as np
from google.protobuf.message import DecodeError

from gateway.mqtt import sparkplug_b_pb2 as pb
from gateway.mqtt.config import SparkplugGroup, SparkplugMetric
from gateway.source import InvalidValueError, NotWritableError, Reading, ReadingColumns, WriteError
from gateway.tags import TagConfig
from gateway.values import float32_value, shortest_float32
from historian.samples import Quality

log = logging.getLogger(__name__)

NAMESPACE = "spBv1.0"
REBIRTH = "Node Control/Rebirth"
STALE_QUALITY = Quality.BAD_COMM_FAILURE
"""Quality of the value-less readings that mark a dead node's or device's metrics stale."""

_CONTROL_PREFIXES = ("Node Control/", "Device Control/")
_INTS = frozenset(("int_value", "long_value"))
_FLOATS = frozenset(("float_value", "double_value"))
_UTC = timezone.utc
_NUMERIC = frozenset(("float", "int"))
_ALIAS = attrgetter("alias")
_TIMESTAMP = attrgetter("timestamp")
_HAS_PROPERTIES = methodcaller("HasField", "properties")
_MAX_MS = (2**63 - 1) // 1000  # a later ms stamp does not fit int64 µs: such a message takes the row path
ROW = -1
"""Columns.point of a metric the row path decides (text, bool, DateTime; an unknown one is named there)."""
SKIP = -2
"""Columns.point of a metric never published (a control metric, a datatype refused at birth)."""


def _signed(bits: int) -> Callable[[int], int]:
    mask, sign = (1 << bits) - 1, 1 << (bits - 1)

    def convert(v: int) -> int:
        # Tahu's Python client wraps negatives to `bits` wide, its Java client to 32/64 bits: mask both
        v &= mask
        return v - (mask + 1) if v & sign else v

    return convert


def _datetime(ms: int) -> str:
    return datetime.fromtimestamp(ms // 1000, tz=_UTC).replace(microsecond=(ms % 1000) * 1000).isoformat()


@dataclass(frozen=True, slots=True)
class Kind:
    """How values of one Sparkplug datatype are read and written."""

    name: str
    fields: frozenset[str]
    """The oneof value fields a sender may use for it."""
    convert: Callable[[Any], Any] | None
    data_type: str
    """The historian data_type of its tags."""
    write_field: str
    bits: int = 0
    signed: bool = False


KINDS: dict[int, Kind] = {
    pb.Int8: Kind("Int8", _INTS, _signed(8), "int", "int_value", 8, True),
    pb.Int16: Kind("Int16", _INTS, _signed(16), "int", "int_value", 16, True),
    pb.Int32: Kind("Int32", _INTS, _signed(32), "int", "int_value", 32, True),
    pb.Int64: Kind("Int64", _INTS, _signed(64), "int", "long_value", 64, True),
    pb.UInt8: Kind("UInt8", _INTS, None, "int", "int_value", 8),
    pb.UInt16: Kind("UInt16", _INTS, None, "int", "int_value", 16),
    # Tahu's Java client puts UInt32 in long_value, its Python client in int_value: accept both
    pb.UInt32: Kind("UInt32", _INTS, None, "int", "long_value", 32),
    pb.UInt64: Kind("UInt64", _INTS, None, "int", "long_value", 64),
    # the value policy (gateway/values.py): a float32 is stored as its shortest round-trip decimal
    pb.Float: Kind("Float", _FLOATS, float32_value, "float", "float_value"),
    pb.Double: Kind("Double", _FLOATS, None, "float", "double_value"),
    pb.Boolean: Kind("Boolean", frozenset(("boolean_value",)), None, "bool", "boolean_value"),
    pb.String: Kind("String", frozenset(("string_value",)), None, "text", "string_value"),
    pb.Text: Kind("Text", frozenset(("string_value",)), None, "text", "string_value"),
    pb.UUID: Kind("UUID", frozenset(("string_value",)), None, "text", "string_value"),
    pb.DateTime: Kind("DateTime", frozenset(("long_value",)), _datetime, "text", "long_value"),
}
"""The datatypes read; DataSet, Bytes, File, Template and the arrays are not (dead-lettered at birth)."""


def datatype_name(code: int) -> str:
    """The Sparkplug name of a datatype code."""
    try:
        return pb.DataType.Name(code)
    except ValueError:
        return f"datatype {code}"


@dataclass(slots=True)
class MetricInfo:
    """One metric as its birth declared it."""

    name: str
    datatype: int
    kind: Kind | None
    """None: a datatype this adapter does not read."""
    tag: str | None
    """None: a Sparkplug control metric (bdSeq, Node Control/...), never published."""
    writable: bool = False
    field: str = "int_value"
    """The oneof field its values came in last (senders differ, e.g. UInt32 in int_value or long_value)."""


@dataclass(slots=True)
class Scope:
    """The metrics of one edge node or one device, by alias and by name."""

    by_alias: dict[int, MetricInfo] = field(default_factory=dict)
    by_name: dict[str, MetricInfo] = field(default_factory=dict)
    columns: Columns | None = None
    """The same metrics as arrays (made at birth), for decoding a message's numbers in columns."""


class Columns:
    """A scope's metrics by index, with numpy arrays of what decoding a number needs per metric.

    `tags` are the tags of its numeric metrics (int and float tags: put_points' tag tuple, one
    object per distinct list for the host's life); `point[i]` is metric i's position in it, ROW
    or SKIP. The arrays have one entry more than there are metrics: index -1 (an unknown metric)
    reads ROW, so the row path names it.
    """

    __slots__ = ("infos", "alias_index", "name_index", "tags", "point", "fields", "is_float", "half", "_last")

    def __init__(self, scope: Scope, intern: Callable[[tuple[str, ...]], tuple[str, ...]],
                 data_type: Callable[[MetricInfo], str | None]) -> None:
        # a name born twice keeps its last info under the name and may keep the first under its alias
        infos = list({id(i): i for i in (*scope.by_name.values(), *scope.by_alias.values())}.values())
        index = {id(info): k for k, info in enumerate(infos)}
        self.infos = infos
        self.alias_index = {alias: index[id(info)] for alias, info in scope.by_alias.items()}
        self.name_index = {name: index[id(info)] for name, info in scope.by_name.items()}
        tags: list[str] = []
        point: list[int] = []
        for info in infos:
            if info.tag is None or info.kind is None:
                point.append(SKIP)
            elif info.kind.data_type in _NUMERIC and data_type(info) in _NUMERIC:
                point.append(len(tags))
                tags.append(info.tag)
            else:
                point.append(ROW)
        self.tags = intern(tuple(tags))
        self.point = np.array([*point, ROW], dtype=np.int32)
        self.fields = [info.field for info in infos]
        """The oneof field each metric's value came in last (its info.field, kept in step)."""
        kinds = [info.kind for info in infos]
        self.is_float = np.array([k is not None and k.name == "Float" for k in kinds] + [False])
        # signed kinds: a raw value at or above 2^(bits-1) is a negative one (or wrapped wider): converted exactly
        self.half = np.array([2.0 ** (k.bits - 1) if k is not None and k.signed else np.inf for k in kinds]
                             + [np.inf], dtype=np.float64)
        self._last: Layout | None = None

    def layout(self, metrics: list[Any]) -> Layout:
        """Where a message's metrics go, kept for the next message with the same aliases in the same order.

        An edge node publishes the same aliases message after message (all its metrics, or the same
        subset), so resolving them and gathering their settings is done once, not per message.
        """
        aliases = list(map(_ALIAS, metrics))
        last = self._last
        if last is not None and last.aliases == aliases:
            return last
        index = self._resolve(metrics, aliases)
        layout = Layout(self, aliases, index)
        if 0 not in aliases and -1 not in index:  # by aliases alone: the same list means the same metrics
            self._last = layout
        return layout

    def field_changed(self, i: int, which: str) -> None:
        """Metric i's values now come in `which` (a sender may change fields): the kept layout is stale."""
        self.infos[i].field = self.fields[i] = which
        self._last = None

    def _resolve(self, metrics: list[Any], aliases: list[int]) -> list[int]:
        """Each metric's index by alias (or name, as the row path resolves it); -1 where unknown."""
        if 0 not in aliases:  # the usual DDATA: every metric by its alias
            found = list(map(self.alias_index.get, aliases))
            if None not in found:
                return found  # type: ignore[return-value]
        by_alias, by_name = self.alias_index, self.name_index
        out: list[int] = []
        for m, alias in zip(metrics, aliases):
            name = m.name
            if alias:
                k = by_alias.get(alias)
                if k is None and name:
                    k = by_name.get(name)
            else:  # alias 0 is a valid alias, and also what an absent alias reads as: a name decides
                k = by_name.get(name) if name else by_alias.get(0)
            out.append(-1 if k is None else k)
        return out


class Layout:
    """One message's metrics as a scope's Columns sees them: which are numbers, where they go, how they are read."""

    __slots__ = ("aliases", "where", "at", "ats", "fields", "half", "floats", "any_float", "positions", "rows")

    def __init__(self, cols: Columns, aliases: list[int], index: list[int]) -> None:
        self.aliases = aliases
        point = cols.point[np.array(index, dtype=np.intp)]
        numeric = point >= 0
        self.where: list[int] | None = None if numeric.all() else np.flatnonzero(numeric).tolist()
        """The numbers' places in the message; None: every metric is one."""
        self.at = index if self.where is None else [index[k] for k in self.where]
        self.ats = np.array(self.at, dtype=np.intp)
        self.fields = tuple(cols.fields[i] for i in self.at)
        self.half = cols.half[self.ats]
        self.floats = cols.is_float[self.ats]
        self.any_float = bool(self.floats.any())
        self.positions = point[numeric]
        """Each number's position in the scope's tag tuple."""
        self.rows = [k for k, p in enumerate(point.tolist()) if p == ROW]
        """The places of the metrics the row path decides."""


@dataclass(slots=True)
class NodeState:
    """What the host knows of one edge node."""

    born: bool = False
    bd_seq: int | None = None
    next_seq: int | None = None
    metrics: Scope = field(default_factory=Scope)
    devices: dict[str, Scope] = field(default_factory=dict)
    rebirth_at: float = -1e18


Points = tuple[tuple[str, ...], np.ndarray, np.ndarray, np.ndarray, "np.ndarray | None"]
"""One message's numbers as SpoolSink.put_points takes them: tag tuple, int32 positions, int64 µs,
float64 values, int16 qualities or None (all good)."""


@dataclass(slots=True)
class Outcome:
    """What handling some messages produced: readings, dead letters, rebirth requests and errors."""

    readings: list[Reading] = field(default_factory=list)
    """Readings of JSON-mapped topics."""
    columns: ReadingColumns = field(default_factory=ReadingColumns)
    """Readings of Sparkplug metrics, straight into columns: 500 metrics a message, no object per metric."""
    dead_letters: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    rebirths: list[tuple[str, str]] = field(default_factory=list)
    """(group, edge node) pairs to send an NCMD Node Control/Rebirth."""
    errors: list[str] = field(default_factory=list)
    points: list[Points] | None = None
    """Sparkplug metrics' numbers as columns, a run per message, for a sink that takes points; None: all as rows."""

    def points_total(self) -> int:
        """How many readings the points runs hold."""
        return sum(len(run[3]) for run in self.points) if self.points else 0



def letter(topic: str, payload: bytes, **extra: Any) -> dict[str, Any]:
    """A dead-letter payload: the topic, the raw payload as base64 and what else explains it."""
    return {"topic": topic, "payload_base64": base64.b64encode(payload).decode(), **extra}


class SparkplugHost:
    """The host application state of one Sparkplug group: decodes its messages into readings."""

    def __init__(
        self, group: SparkplugGroup, rebirth_interval: float = 5.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.group = group
        self.group_id = group.group_id
        self.nodes: dict[str, NodeState] = {}
        self.tags: dict[str, TagConfig] = {}
        """Every tag births have shown, with its configured or derived metadata."""
        self._mapped: dict[tuple[str, str | None, str], SparkplugMetric] = {
            (m.edge_node, m.device, m.metric): m for m in group.metrics
        }
        self._by_tag = {m.name: m for m in group.metrics}
        self._rebirth_interval = rebirth_interval
        self._clock = clock
        self._tuples: dict[tuple[str, ...], tuple[str, ...]] = {}
        """Every scope's numeric tag tuple, one object per distinct list: a rebirth reuses it (sinks cache by tuple)."""

    # -- incoming -------------------------------------------------------------------------------

    def handle(self, topic: str, parts: list[str], payload: bytes, out: Outcome) -> None:
        """Handle one message on spBv1.0/<group>/<type>/<edge node>[/<device>]."""
        kind = parts[2] if len(parts) > 2 else ""
        if kind in ("NCMD", "DCMD"):
            return  # commands, ours included: for edge nodes, not data
        device_msg = kind in ("DBIRTH", "DDATA", "DDEATH")
        node_msg = kind in ("NBIRTH", "NDATA", "NDEATH")
        if not ((device_msg and len(parts) == 5) or (node_msg and len(parts) == 4)) or not all(parts[3:]):
            out.dead_letters.append((f"not a Sparkplug B message topic: {topic}", letter(topic, payload)))
            return
        try:
            msg = pb.Payload.FromString(payload)
        except DecodeError as e:
            out.dead_letters.append((f"Sparkplug B payload does not decode: {e}", letter(topic, payload)))
            return
        edge = parts[3]
        node = self.nodes.get(edge)
        if node is None:
            node = self.nodes[edge] = NodeState()
        if kind == "NBIRTH":
            self._nbirth(edge, node, msg, topic, payload, out)
            return
        if kind == "NDEATH":
            self._ndeath(edge, node, msg, out)
            return
        if not node.born:
            out.dead_letters.append((f"{kind} from edge node {edge} before its NBIRTH", letter(topic, payload)))
            self._rebirth(edge, node, out)
            return
        self._check_seq(edge, node, msg, kind, out)
        if kind == "NDATA":
            self._data(edge, None, node.metrics, node, msg, topic, payload, out)
            return
        device = parts[4]
        if kind == "DBIRTH":
            node.devices[device] = self._birth(edge, device, msg, topic, payload, out)
        elif kind == "DDEATH":
            scope = node.devices.pop(device, None)
            if scope is not None:
                self._stale(scope, msg, out)
        else:
            scope = node.devices.get(device)
            if scope is None:
                out.dead_letters.append(
                    (f"DDATA from device {edge}/{device} before its DBIRTH", letter(topic, payload))
                )
                self._rebirth(edge, node, out)
                return
            self._data(edge, device, scope, node, msg, topic, payload, out)

    def _nbirth(self, edge: str, node: NodeState, msg: Any, topic: str, payload: bytes, out: Outcome) -> None:
        # a new NBIRTH replaces everything known of the node: its devices birth again after it
        node.metrics = self._birth(edge, None, msg, topic, payload, out)
        node.devices.clear()
        node.born = True
        node.bd_seq = _bd_seq(msg)
        node.next_seq = (msg.seq + 1) % 256 if msg.HasField("seq") else None
        node.rebirth_at = -1e18  # the next problem may ask again at once

    def _ndeath(self, edge: str, node: NodeState, msg: Any, out: Outcome) -> None:
        bd_seq = _bd_seq(msg)
        if node.bd_seq is not None and bd_seq is not None and bd_seq != node.bd_seq:
            if older_bd_seq(bd_seq, node.bd_seq):
                # the will of an older session, published after the node already came back
                log.info("ignoring NDEATH of %s/%s with bdSeq %s (current %s)",
                         self.group_id, edge, bd_seq, node.bd_seq)
                return
            # not from an older session (pysparkplug 0.6 sends its next bdSeq on a clean stop): believe it
            log.info("NDEATH of %s/%s with bdSeq %s ahead of its NBIRTH's %s: taken as this session's death",
                     self.group_id, edge, bd_seq, node.bd_seq)
        if not node.born:
            return
        # Sparkplug 3.0: the host marks the node offline at its own time; a will's timestamp is its CONNECT's
        self._stale(node.metrics, None, out)
        for scope in node.devices.values():
            self._stale(scope, None, out)
        node.devices.clear()
        node.born = False
        node.next_seq = None

    def _birth(self, edge: str, device: str | None, msg: Any, topic: str, payload: bytes, out: Outcome) -> Scope:
        scope = Scope()
        problems: list[str] = []
        for m in msg.metrics:
            name = m.name
            if not name:
                problems.append(f"a metric without a name (alias {m.alias})")
                continue
            info = self._info(edge, device, name, m.datatype)
            if info.kind is None and info.tag is not None:
                problems.append(f"{name}: {datatype_name(m.datatype)} is not supported; its values are not read")
            scope.by_name[name] = info
            if m.HasField("alias"):
                if m.alias in scope.by_alias:
                    problems.append(f"{name}: alias {m.alias} already used by {scope.by_alias[m.alias].name}")
                scope.by_alias[m.alias] = info
        where = f"{edge}/{device}" if device else edge
        if problems:
            out.dead_letters.append(
                (f"birth of {self.group_id}/{where}: " + "; ".join(problems), letter(topic, payload))
            )
        scope.columns = Columns(scope, self._intern, self._data_type)
        # births carry the current values: publish them like data (nameless metrics are reported above)
        self._values(scope, msg, topic, payload, out, where)
        return scope

    def _intern(self, tags: tuple[str, ...]) -> tuple[str, ...]:
        """The one tuple object of this tag list (sinks and the exception filter cache their work by tuple)."""
        if len(self._tuples) > 10_000:  # bounded, should an edge node birth ever new lists without end
            self._tuples.clear()
        return self._tuples.setdefault(tags, tags)

    def _data_type(self, info: MetricInfo) -> str | None:
        """The historian data_type of a metric's tag (a mapped metric may set its own)."""
        t = self.tags.get(info.tag) if info.tag is not None else None
        return t.data_type if t is not None else None

    def _info(self, edge: str, device: str | None, name: str, datatype: int) -> MetricInfo:
        kind = KINDS.get(datatype)
        mapped = self._mapped.get((edge, device, name))
        if mapped is not None:
            tag: str | None = mapped.name
            self.tags[mapped.name] = mapped
        elif name == "bdSeq" or name.startswith(_CONTROL_PREFIXES):
            tag = None
        else:
            template = self.group.device_tag if device is not None else self.group.node_tag
            tag = template.format(group=self.group_id, edge_node=edge, device=device, metric=name)
            if kind is not None and tag not in self.tags:
                self.tags[tag] = TagConfig(
                    name=tag,
                    data_type=kind.data_type,
                    machine=device or self.group.node_machine.format(group=self.group_id, edge_node=edge) or None,
                    description=f"Sparkplug {self.group_id}/{edge}/{device + '/' if device else ''}{name}",
                )
        field = kind.write_field if kind is not None else "int_value"
        return MetricInfo(name, datatype, kind, tag, mapped is not None and mapped.writable, field)

    def _data(
        self,
        edge: str,
        device: str | None,
        scope: Scope,
        node: NodeState,
        msg: Any,
        topic: str,
        payload: bytes,
        out: Outcome,
    ) -> None:
        where = f"{edge}/{device}" if device else edge
        unknown = self._values(scope, msg, topic, payload, out, where)
        if unknown:
            reason = f"{self.group_id}/{where}: unknown {', '.join(unknown)}; rebirth requested"
            out.dead_letters.append((reason, letter(topic, payload)))
            self._rebirth(edge, node, out)

    def _values(self, scope: Scope, msg: Any, topic: str, payload: bytes, out: Outcome, where: str) -> list[str]:
        """Append msg's readings (numbers as points for a sink that takes them); return the metrics not in scope."""
        default_ms = msg.timestamp if msg.HasField("timestamp") else 0
        now_us = time.time_ns() // 1000  # a metric without a time of its own or its message's: received now
        rest: Iterable[Any] = msg.metrics
        if out.points is not None and scope.columns is not None:
            metrics = list(msg.metrics)  # the wrappers, made once: every pass below reads them
            rest = self._points(scope.columns, metrics, default_ms, now_us, out)
            if rest is None:
                rest = metrics
        problems: list[str] = []
        unknown = self._rows(scope, rest, default_ms, now_us, out, problems) if rest else []
        if problems:
            out.dead_letters.append((f"{self.group_id}/{where}: " + "; ".join(problems), letter(topic, payload)))
        return unknown

    def _points(self, cols: Columns, metrics: list[Any], default_ms: int, now_us: int,
                out: Outcome) -> list[Any] | None:
        """Put the metrics' numbers into out.points as one run; return those the row path must decide, in order.

        None: the message takes the row path whole (a millisecond stamp beyond int64 µs).
        """
        assert out.points is not None
        layout = cols.layout(metrics)
        nums = metrics if layout.where is None else [metrics[k] for k in layout.where]
        if not nums:
            return [metrics[k] for k in layout.rows]
        n = len(nums)
        ms = np.array(list(map(_TIMESTAMP, nums)), dtype=np.uint64)
        if int(ms.max()) > _MAX_MS or default_ms > _MAX_MS:
            return None
        raw = list(map(getattr, nums, layout.fields))
        values = np.array(raw, dtype=np.float64)
        at = layout.at
        drop: list[int] = []  # nulls and values in a field their datatype does not use: the row path's
        # a value reading zero may be unset (is_null), or sent in another field than last time: ask the oneof
        for k in np.flatnonzero(values == 0).tolist():
            m, i = nums[k], at[k]
            which = m.WhichOneof("value")
            if which is None or which not in cols.infos[i].kind.fields:  # type: ignore[union-attr]
                drop.append(k)
            elif which != cols.fields[i]:
                cols.field_changed(i, which)
                raw[k] = getattr(m, which)
                values[k] = raw[k]
        for k in np.flatnonzero(values >= layout.half).tolist():  # negative (or wrapped) signed ints: exact
            values[k] = cols.infos[at[k]].kind.convert(raw[k])  # type: ignore[union-attr, misc]
        if layout.any_float:  # a Float widened to double: its shortest decimal (the value policy), all at once
            values[layout.floats] = shortest_float32(values[layout.floats])
        quality: np.ndarray | None = None
        has = list(map(_HAS_PROPERTIES, nums))
        if any(has):
            quality = np.full(n, int(Quality.GOOD), dtype=np.int16)
            for k in (k for k, h in enumerate(has) if h):
                quality[k] = _quality(nums[k])
        ms = np.where(ms == 0, np.uint64(default_ms), ms).astype(np.int64)
        ts_us = np.where(ms == 0, now_us, ms * 1000)
        positions = layout.positions
        if drop:
            keep = np.ones(n, dtype=bool)
            keep[drop] = False
            positions, ts_us, values = positions[keep], ts_us[keep], values[keep]
            quality = None if quality is None else quality[keep]
        if len(values):
            out.points.append((cols.tags, positions, ts_us, values, quality))
        if not drop:
            return [metrics[k] for k in layout.rows]
        dropped = drop if layout.where is None else [layout.where[k] for k in drop]
        return [metrics[k] for k in sorted(layout.rows + dropped)]

    def _rows(self, scope: Scope, metrics: Iterable[Any], default_ms: int, now_us: int, out: Outcome,
              problems: list[str]) -> list[str]:
        """Append metrics' readings to out.columns, wrong values to problems; return the metrics not in scope."""
        by_alias, by_name = scope.by_alias, scope.by_name
        cols = out.columns
        tags, values, stamps, qualities = cols.tags.append, cols.values.append, cols.ts_us.append, cols.quality.append
        unknown: list[str] = []
        good: int = Quality.GOOD
        for m in metrics:
            alias = m.alias
            if alias:
                info = by_alias.get(alias)
            else:
                name = m.name
                # alias 0 is a valid alias, and also what an absent alias reads as: a name decides
                info = by_name.get(name) if name else by_alias.get(0)
            if info is None:
                name = m.name
                info = by_name.get(name) if name else None
                if info is None:
                    unknown.append(f"metric {name!r}" if name else f"alias {alias}")
                    continue
            tag = info.tag
            kind = info.kind
            if tag is None or kind is None:
                continue  # control metric, or a datatype refused at birth
            quality = good
            # fast path: a non-default value in the field this metric used last time is surely set
            value = getattr(m, info.field)
            if not value:
                which = m.WhichOneof("value")
                if which is None:
                    value = None
                    quality = Quality.BAD  # is_null: the edge node has no value
                elif which in kind.fields:
                    info.field = which
                    value = getattr(m, which)
                else:
                    problems.append(f"{info.name}: {kind.name} metric carries a {which}")
                    continue
            if value is not None:
                if kind.convert is not None:
                    value = kind.convert(value)
                if m.HasField("properties"):
                    quality = _quality(m)
            ms = m.timestamp or default_ms
            tags(tag)
            values(value)
            stamps(ms * 1000 if ms else now_us)
            qualities(quality)
        return unknown

    def _stale(self, scope: Scope, msg: Any, out: Outcome) -> None:
        ms = msg.timestamp if msg is not None and msg.HasField("timestamp") else 0
        ts = ms * 1000 if ms else time.time_ns() // 1000
        out.columns.add_readings(
            [Reading(info.tag, None, ts, STALE_QUALITY) for info in scope.by_name.values()
             if info.tag is not None and info.kind is not None]
        )

    def _check_seq(self, edge: str, node: NodeState, msg: Any, kind: str, out: Outcome) -> None:
        if not msg.HasField("seq"):
            return
        if node.next_seq is not None and msg.seq != node.next_seq:
            out.errors.append(
                f"{self.group_id}/{edge}: {kind} seq {msg.seq}, expected {node.next_seq}: "
                "messages lost; rebirth requested"
            )
            self._rebirth(edge, node, out)
        node.next_seq = (msg.seq + 1) % 256

    def _rebirth(self, edge: str, node: NodeState, out: Outcome) -> None:
        now = self._clock()
        if now - node.rebirth_at >= self._rebirth_interval:
            node.rebirth_at = now
            out.rebirths.append((self.group_id, edge))

    # -- outgoing -------------------------------------------------------------------------------

    def command(self, tag: str, value: float | int | bool | str) -> tuple[str, bytes] | None:
        """(topic, payload) of the NCMD/DCMD writing value to tag; None if this group lacks the tag."""
        mapped = self._by_tag.get(tag)
        if mapped is None:
            return None
        if not mapped.writable:
            raise NotWritableError(f"{tag}: not configured writable")
        where = f"{mapped.edge_node}/{mapped.device}" if mapped.device else mapped.edge_node
        node = self.nodes.get(mapped.edge_node)
        scope = None
        if node is not None and node.born:
            scope = node.devices.get(mapped.device) if mapped.device else node.metrics
        info = scope.by_name.get(mapped.metric) if scope is not None else None
        if info is None:
            raise WriteError(f"{tag}: {self.group_id}/{where} has not birthed metric {mapped.metric!r} (offline?)")
        if info.kind is None:
            raise WriteError(f"{tag}: writing {datatype_name(info.datatype)} metrics is not supported")
        msg = pb.Payload(timestamp=time.time_ns() // 1_000_000)
        metric = msg.metrics.add(name=mapped.metric, datatype=info.datatype, timestamp=msg.timestamp)
        setattr(metric, info.kind.write_field, encode_value(info.kind, value, tag))
        kind = "DCMD" if mapped.device else "NCMD"
        return f"{NAMESPACE}/{self.group_id}/{kind}/{where}", msg.SerializeToString()


def rebirth_request() -> bytes:
    """The NCMD payload asking an edge node to publish its births again."""
    msg = pb.Payload(timestamp=time.time_ns() // 1_000_000)
    msg.metrics.add(name=REBIRTH, datatype=pb.Boolean, boolean_value=True, timestamp=msg.timestamp)
    return msg.SerializeToString()


def state_payload(online: bool, timestamp_ms: int) -> bytes:
    """Sparkplug 3.0 host application STATE payload."""
    return msgspec.json.encode({"online": online, "timestamp": timestamp_ms})


def encode_value(kind: Kind, value: float | int | bool | str, tag: str) -> Any:
    """The protobuf field value of a write; InvalidValueError naming the tag if it does not fit the datatype."""
    if kind.bits:
        if isinstance(value, bool) or not isinstance(value, int):
            raise InvalidValueError(f"{tag}: {kind.name} needs an integer, got {value!r}")
        lo, hi = (-(1 << (kind.bits - 1)), (1 << (kind.bits - 1)) - 1) if kind.signed else (0, (1 << kind.bits) - 1)
        if not lo <= value <= hi:
            raise InvalidValueError(f"{tag}: {value} is out of range for {kind.name}")
        width = 64 if kind.write_field == "long_value" else 32
        return value & ((1 << width) - 1)  # two's complement, as Sparkplug carries signed ints
    if kind.write_field in ("float_value", "double_value"):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise InvalidValueError(f"{tag}: {kind.name} needs a number, got {value!r}")
        return float(value)
    if kind.write_field == "boolean_value":
        if not isinstance(value, bool):
            raise InvalidValueError(f"{tag}: Boolean needs true or false, got {value!r}")
        return value
    if kind.name == "DateTime":
        if isinstance(value, bool) or not isinstance(value, int):
            raise InvalidValueError(f"{tag}: DateTime needs epoch milliseconds, got {value!r}")
        return value
    if not isinstance(value, str):
        raise InvalidValueError(f"{tag}: {kind.name} needs text, got {value!r}")
    return value


def older_bd_seq(bd_seq: int, current: int) -> bool:
    """Whether bd_seq belongs to a session before current's on the 0..255 ring (within half of it)."""
    return 0 < (current - bd_seq) % 256 < 128


def _bd_seq(msg: Any) -> int | None:
    for m in msg.metrics:
        if m.name == "bdSeq":
            which = m.WhichOneof("value")
            return int(getattr(m, which)) if which in _INTS else None
    return None


def _quality(m: Any) -> int:
    """The OPC quality of a metric's 'Quality' property (Ignition's convention), else good."""
    props = m.properties
    for key, pv in zip(props.keys, props.values):
        if key == "Quality":
            which = pv.WhichOneof("value")
            q = getattr(pv, which) if which in ("int_value", "long_value") else 192
            if q == 500:  # Ignition: stale
                return Quality.UNCERTAIN_LAST_USABLE
            return q if 0 <= q <= 255 else Quality.UNCERTAIN
    return Quality.GOOD
