"""Settings of the gateway (the `[gateway]` table of shopfloor.toml): the spool and the sources."""

from __future__ import annotations

from collections import Counter
from typing import Iterable

import msgspec

from gateway.camera.config import CameraFolderSourceConfig
from gateway.http import HttpConfig
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
    flush_interval: float = 0.1
    """Seconds what every source publishes waits to share one spool record and fsync (group commit); 0: at once."""
    flush_rows: int = 1000
    """Readings of sources that wait for the disk (MQTT, OPC UA) that start a record before flush_interval is up."""

    def __post_init__(self) -> None:
        if not 0 <= self.flush_interval <= 1:
            raise ValueError(f"flush_interval: must be 0..1 seconds, got {self.flush_interval}")
        if self.flush_rows < 1:
            raise ValueError(f"flush_rows: must be at least 1, got {self.flush_rows}")
        if self.segment_bytes < 4096:
            raise ValueError(f"segment_bytes must be >= 4096, got {self.segment_bytes}")
        if self.max_bytes < 2 * self.segment_bytes:
            raise ValueError(f"max_bytes ({self.max_bytes}) must be at least two segments ({2 * self.segment_bytes})")


class GatewayConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Where data comes from and how it is kept until the historian has it."""

    spool: SpoolConfig = msgspec.field(default_factory=SpoolConfig)
    status_interval: float = 2.0
    http: HttpConfig = msgspec.field(default_factory=HttpConfig)
    """`[gateway.http]`: /health and /metrics of `shopfloor gateway run`."""
    sources: list[SourceConfig] = []

    def __post_init__(self) -> None:
        dupes = repeated(s.name for s in self.sources)
        if dupes:
            raise ValueError(f"sources: names must be unique, repeated: {', '.join(dupes)}")
        owner: dict[str, str] = {}
        clashes: list[str] = []
        for s in self.sources:
            for t in _tags(s):
                first = owner.setdefault(t.name, s.name)
                if first != s.name:
                    clashes.append(f"{t.name!r} in {first!r} and {s.name!r}")
        if clashes:
            raise ValueError(f"sources: tag names must be unique across sources, repeated: {', '.join(clashes[:5])}")


def repeated(names: Iterable[str]) -> list[str]:
    """The names that occur more than once, sorted; one pass (a 20,000-tag config must load in well under 1 s)."""
    return sorted(n for n, k in Counter(names).items() if k > 1)


def _tags(source: SourceConfig) -> list:  # type: ignore[type-arg]
    return list(getattr(source, "tags", []))
