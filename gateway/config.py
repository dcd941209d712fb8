"""Settings of the gateway (the `[gateway]` table of shopfloor.toml): the spool and the sources."""

from __future__ import annotations

import msgspec

from gateway.camera.config import CameraFolderSourceConfig
from gateway.modbus.config import ModbusSourceConfig
from gateway.mqtt.config import MqttSourceConfig
from gateway.opcua.config import OpcUaSourceConfig

SourceConfig = ModbusSourceConfig | OpcUaSourceConfig | MqttSourceConfig | CameraFolderSourceConfig
"""One `[[gateway.sources]]` entry; its `type` key says which adapter reads it."""


class SpoolConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """The store-and-forward spool between the sources and the historian."""

    directory: str = ""
    """Empty: <state dir>/spool."""
    max_bytes: int = 1 << 30
    """Beyond this the oldest records are dropped, and counted."""
    segment_bytes: int = 16 << 20
    fsync: bool = True

    def __post_init__(self) -> None:
        if self.segment_bytes < 4096:
            raise ValueError(f"segment_bytes must be >= 4096, got {self.segment_bytes}")
        if self.max_bytes < 2 * self.segment_bytes:
            raise ValueError(f"max_bytes ({self.max_bytes}) must be at least two segments ({2 * self.segment_bytes})")


class GatewayConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Where data comes from and how it is kept until the historian has it."""

    spool: SpoolConfig = msgspec.field(default_factory=SpoolConfig)
    status_interval: float = 2.0
    sources: list[SourceConfig] = []

    def __post_init__(self) -> None:
        names = [s.name for s in self.sources]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"sources: names must be unique, repeated: {', '.join(dupes)}")
        tags = [t.name for s in self.sources for t in _tags(s)]
        dupes = sorted({n for n in tags if tags.count(n) > 1})
        if dupes:
            raise ValueError(f"sources: tag names must be unique across sources, repeated: {', '.join(dupes[:5])}")


def _tags(source: SourceConfig) -> list:  # type: ignore[type-arg]
    return list(getattr(source, "tags", []))
