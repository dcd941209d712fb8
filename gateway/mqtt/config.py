"""Configuration of an MQTT source: broker connection, JSON topic mappings and Sparkplug B groups."""

from __future__ import annotations

import re
import string
from typing import Literal

import msgspec

from gateway.tags import TagConfig
from historian.registry import CATEGORIES, DATA_TYPES

_CAPTURE = re.compile(r"^\{([A-Za-z_][A-Za-z0-9_]*)\}$")
TIMESTAMP_FORMATS = ("epoch_s", "epoch_ms", "iso8601")
SPARKPLUG_FIELDS = ("group", "edge_node", "device", "metric")


def template_fields(template: str, field: str) -> list[str]:
    """The {names} a tag or topic template uses; ValueError naming `field` if it is malformed."""
    try:
        parts = list(string.Formatter().parse(template))
    except ValueError as e:
        raise ValueError(f"{field}: {template!r} is not a valid template: {e}") from None
    names = []
    for _, name, spec, conversion in parts:
        if name is None:
            continue
        if not name.isidentifier() or spec or conversion:
            raise ValueError(f"{field}: {template!r}: placeholders are plain {{name}}, got {{{name}}}")
        names.append(name)
    return names


def topic_captures(topic: str, field: str = "topic") -> list[str]:
    """The named captures of an MQTT topic pattern; ValueError naming `field` if it is malformed."""
    if not topic:
        raise ValueError(f"{field}: must not be empty")
    levels = topic.split("/")
    names: list[str] = []
    for i, level in enumerate(levels):
        m = _CAPTURE.match(level)
        if m:
            if m.group(1) in names:
                raise ValueError(f"{field}: {topic!r} captures {{{m.group(1)}}} twice")
            names.append(m.group(1))
        elif level == "#":
            if i != len(levels) - 1:
                raise ValueError(f"{field}: {topic!r}: '#' may only be the last level")
        elif level != "+" and any(c in level for c in "{}+#"):
            raise ValueError(f"{field}: {topic!r}: a wildcard or capture must be a whole level, got {level!r}")
    return names


class CreatedTagMeta(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Historian metadata of the tags one field creates, overriding the mapping's defaults."""

    category: str | None = None
    unit: str | None = None
    data_type: str | None = None
    """None: inferred from the first value (number: float, true/false: bool, text: text)."""
    description: str | None = None

    def check(self, where: str = "") -> None:
        """ValueError naming the field (after the prefix `where`) when a value is not one the registry accepts."""
        if self.category is not None and self.category not in CATEGORIES:
            raise ValueError(f"{where}category: {self.category!r} is not one of {', '.join(CATEGORIES)}")
        if self.data_type is not None and self.data_type not in DATA_TYPES:
            raise ValueError(f"{where}data_type: {self.data_type!r} is not one of {', '.join(DATA_TYPES)}")


class JsonMapping(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """JSON messages on matching topics: which fields become which tags."""

    topic: str
    """MQTT topic pattern: '+' and '#' wildcards, and named captures '{machine}' matching one level."""
    fields: dict[str, str]
    """Dotted field path in the payload ('data.temp', 'values.0') -> tag name template ('{machine}.temperature')."""
    timestamp: str | None = None
    """Field path of the device timestamp; None: the gateway stamps readings on receipt."""
    timestamp_format: str = "epoch_ms"
    """'epoch_s', 'epoch_ms' (numbers) or 'iso8601' (text; without a zone it is UTC)."""
    quality: str | None = None
    """Field path of an OPC DA quality code (0..255); absent: good."""
    command_topic: str | None = None
    """Where write() publishes for these tags, e.g. 'plant/{machine}/cmd'; None: the tags are read-only."""
    create_tags: bool = False
    """Register a tag this mapping resolves (from the topic's captures) on first sight, under the
    metadata below, instead of needing it listed in `tags`; capped by the source's max_created_tags."""
    category: str | None = None
    """Category of created tags (default 'machine')."""
    unit: str | None = None
    """Unit of created tags (default none); per field in field_meta."""
    data_type: str | None = None
    """Data type of created tags; None: inferred from the first value seen."""
    machine: str | None = None
    """Machine template of created tags, e.g. '{machine}'; None: the {machine} capture if the topic has one."""
    field_meta: dict[str, CreatedTagMeta] = {}
    """Field path -> category/unit/data_type/description of the tags that field creates."""

    def __post_init__(self) -> None:
        captures = topic_captures(self.topic)
        self._check_created(captures)
        if not self.fields:
            raise ValueError("fields: map at least one field path to a tag name")
        for path, tag in self.fields.items():
            _check_path(path, "fields")
            unknown = set(template_fields(tag, "fields")) - set(captures)
            if unknown:
                raise ValueError(
                    f"fields: tag {tag!r} uses {sorted(unknown)} which topic {self.topic!r} does not capture"
                )
        if self.timestamp is not None:
            _check_path(self.timestamp, "timestamp")
        if self.timestamp_format not in TIMESTAMP_FORMATS:
            raise ValueError(
                f"timestamp_format: {self.timestamp_format!r} is not one of {', '.join(TIMESTAMP_FORMATS)}"
            )
        if self.quality is not None:
            _check_path(self.quality, "quality")
        if self.command_topic is not None:
            if any(c in self.command_topic for c in "+#"):
                raise ValueError(f"command_topic: {self.command_topic!r} must not contain wildcards")
            needed = set(template_fields(self.command_topic, "command_topic"))
            for tag in self.fields.values():
                missing = needed - set(template_fields(tag, "fields"))
                if missing:
                    # write() recovers the captures from the tag name, so the tag must carry them all
                    raise ValueError(
                        f"command_topic: uses {sorted(missing)} which tag template {tag!r} does not contain"
                    )

    def _check_created(self, captures: list[str]) -> None:
        """The created-tag options: valid values, and only with create_tags = true."""
        if not self.create_tags:
            for key in ("category", "unit", "data_type", "machine"):
                if getattr(self, key) is not None:
                    raise ValueError(f"{key}: set, but create_tags is false (metadata of listed tags goes in `tags`)")
            if self.field_meta:
                raise ValueError("field_meta: set, but create_tags is false (metadata of listed tags goes in `tags`)")
            return
        CreatedTagMeta(category=self.category, data_type=self.data_type).check()
        if self.machine is not None:
            unknown = set(template_fields(self.machine, "machine")) - set(captures)
            if unknown:
                raise ValueError(
                    f"machine: {self.machine!r} uses {sorted(unknown)} which topic {self.topic!r} does not capture"
                )
        for path, meta in self.field_meta.items():
            if path not in self.fields:
                raise ValueError(f"field_meta: {path!r} is not one of this mapping's fields {sorted(self.fields)}")
            meta.check(f"field_meta.{path}.")

    def created_tag(self, path: str, tag: str, captures: dict[str, str], value: object) -> TagConfig:
        """The registry entry of a tag this mapping creates for field `path`, on its first value."""
        meta = self.field_meta.get(path, _NO_META)
        data_type = meta.data_type or self.data_type or infer_data_type(value)
        machine_template = self.machine if self.machine is not None else ("{machine}" if "machine" in captures else "")
        return TagConfig(
            name=tag,
            category=meta.category or self.category or "machine",
            unit=meta.unit if meta.unit is not None else (self.unit or ""),
            description=meta.description if meta.description is not None else f"MQTT {self.topic} {path}",
            machine=machine_template.format(**captures) or None,
            data_type=data_type,
        )


def infer_data_type(value: object) -> str:
    """The registry data_type of a JSON value: bool, text, or float for any number (21 then 21.5 stays one type)."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, str):
        return "text"
    return "float"  # numbers, and null (no value yet to tell by)


_NO_META = CreatedTagMeta()


class SparkplugMetric(TagConfig, kw_only=True, forbid_unknown_fields=True):
    """One Sparkplug metric mapped to a tag by hand, with the tag's historian metadata."""

    edge_node: str
    device: str | None = None
    """None for a node metric (NBIRTH/NDATA)."""
    metric: str
    """The metric name as the edge node births it, e.g. 'Motor/Speed'."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.edge_node:
            raise ValueError("edge_node: must not be empty")
        if not self.metric:
            raise ValueError("metric: must not be empty")


class SparkplugGroup(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A Sparkplug B group this source follows as a host application."""

    group_id: str
    host_id: str | None = None
    """Our Sparkplug host application id: publishes spBv1.0/STATE/<host_id> online/offline (retained)."""
    device_tag: str = "{edge_node}.{device}.{metric}"
    """Tag name of a device metric not mapped in `metrics`; may use {group}, {edge_node}, {device}, {metric}."""
    node_tag: str = "{edge_node}.{metric}"
    """Tag name of a node metric not mapped in `metrics`; may use {group}, {edge_node}, {metric}."""
    node_machine: str = "{edge_node}"
    """Machine of a node metric's tag ({group}, {edge_node}); "" when the edge node is a gateway, not a machine."""
    metrics: list[SparkplugMetric] = []
    """Explicit metric -> tag mapping with metadata; needed for write()."""

    def __post_init__(self) -> None:
        if not self.group_id or any(c in self.group_id for c in "/+#"):
            raise ValueError(f"group_id: {self.group_id!r} must be a non-empty topic level")
        if self.host_id is not None and (not self.host_id or any(c in self.host_id for c in "/+#")):
            raise ValueError(f"host_id: {self.host_id!r} must be a non-empty topic level")
        bad = set(template_fields(self.device_tag, "device_tag")) - set(SPARKPLUG_FIELDS)
        if bad:
            raise ValueError(f"device_tag: unknown placeholders {sorted(bad)}")
        bad = set(template_fields(self.node_tag, "node_tag")) - {"group", "edge_node", "metric"}
        if bad:
            raise ValueError(f"node_tag: unknown placeholders {sorted(bad)} (a node metric has no device)")
        bad = set(template_fields(self.node_machine, "node_machine")) - {"group", "edge_node"}
        if bad:
            raise ValueError(f"node_machine: unknown placeholders {sorted(bad)}")
        seen: set[tuple[str, str | None, str]] = set()
        for m in self.metrics:
            key = (m.edge_node, m.device, m.metric)
            if key in seen:
                raise ValueError(f"metrics: {m.edge_node}/{m.device or ''}/{m.metric} is mapped twice")
            seen.add(key)


class MqttSourceConfig(msgspec.Struct, tag="mqtt", tag_field="type", kw_only=True, forbid_unknown_fields=True):
    """One MQTT broker connection: `[[gateway.sources]]` with type = "mqtt"."""

    name: str
    host: str = "127.0.0.1"
    port: int = 1883
    protocol: Literal["5", "3.1.1"] = "5"
    client_id: str = ""
    """Empty: 'shopfloor-<name>-<random>'. Set it (with clean_start = false) for a persistent session."""
    username: str | None = None
    password: str | None = None
    tls: bool = False
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    qos: int = 1
    """Subscription QoS: 1 acknowledges each message only after the sink has spooled it."""
    keepalive: int = 30
    clean_start: bool = True
    """False keeps the broker session (subscriptions, unacknowledged messages) across reconnects."""
    session_expiry: int = 3600
    """MQTT 5: seconds the broker keeps a persistent session after a disconnect (clean_start = false)."""
    reconnect_min: float = 0.5
    reconnect_max: float = 10.0
    rebirth_interval: float = 5.0
    """Least seconds between two rebirth requests to one edge node (a broken node is not flooded)."""
    batch_messages: int = 500
    """Messages decoded into one sink.publish call at most (only what has already arrived is batched)."""
    tags: list[TagConfig] = []
    """Historian metadata of tags the JSON mappings produce (by their concrete names)."""
    max_created_tags: int = 1000
    """At most this many tags created by JSON mappings with create_tags (per run of the source);
    readings of further new tags are dead-lettered, already created tags keep flowing."""
    json: list[JsonMapping] = []
    sparkplug: list[SparkplugGroup] = []

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("name: a source needs a non-empty name")
        if not self.host:
            raise ValueError("host: must not be empty")
        if not 0 < self.port < 65536:
            raise ValueError(f"port: {self.port} is not a TCP port")
        if self.qos not in (0, 1):
            raise ValueError(f"qos: must be 0 or 1, got {self.qos}")
        if self.keepalive < 1:
            raise ValueError(f"keepalive: must be >= 1 second, got {self.keepalive}")
        if self.session_expiry < 0:
            raise ValueError(f"session_expiry: must be >= 0, got {self.session_expiry}")
        if not 0 < self.reconnect_min <= self.reconnect_max:
            raise ValueError(
                f"reconnect_min: must be > 0 and <= reconnect_max ({self.reconnect_max}), got {self.reconnect_min}"
            )
        if self.rebirth_interval < 0:
            raise ValueError(f"rebirth_interval: must be >= 0, got {self.rebirth_interval}")
        if self.max_created_tags < 1:
            raise ValueError(
                f"max_created_tags: must be >= 1, got {self.max_created_tags} (create_tags = false creates none)"
            )
        if self.batch_messages < 1:
            raise ValueError(f"batch_messages: must be >= 1, got {self.batch_messages}")
        if self.password is not None and self.username is None:
            raise ValueError("password: given without a username")
        for key in ("ca_file", "cert_file", "key_file"):
            if getattr(self, key) is not None and not self.tls:
                raise ValueError(f"{key}: set, but tls is false")
        if self.key_file is not None and self.cert_file is None:
            raise ValueError("key_file: given without a cert_file")
        if not self.json and not self.sparkplug:
            raise ValueError("json: a source needs at least one json mapping or sparkplug group")
        groups = [g.group_id for g in self.sparkplug]
        if len(set(groups)) != len(groups):
            raise ValueError(f"sparkplug: a group_id appears twice in {groups}")
        names = [t.name for t in self.tags]
        if len(set(names)) != len(names):
            raise ValueError("tags: a tag name appears twice")

    def tag_configs(self) -> list[TagConfig]:
        """Every tag configured by hand here (JSON `tags` and Sparkplug `metrics`), for the registry."""
        return [*self.tags, *(m for g in self.sparkplug for m in g.metrics)]


def _check_path(path: str, field: str) -> None:
    if not path or any(not part for part in path.split(".")):
        raise ValueError(f"{field}: {path!r} is not a dotted field path")
