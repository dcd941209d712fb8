"""The contract between the gateway core and its protocol adapters (sources).

A source runs until cancelled, reconnecting by itself, and hands what it reads to a Sink. The
sink returns only once the readings are durably spooled, so a source may acknowledge a device or
a broker after `await sink.publish(...)` and not before. Anything a source cannot turn into a
reading (a payload that does not decode, an unknown alias) goes to `sink.dead_letter`, which is
durable too, and the source keeps running.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple, Protocol, Sequence

from historian.samples import Quality


class Reading(NamedTuple):
    """One value of one configured tag as a source read it (a named tuple: cheap to make by the 100k)."""

    tag: str
    value: float | int | bool | str | None
    source_ts: datetime | int | None = None
    """The device's own timestamp, an aware datetime or µs since the Unix epoch (cheaper for sources
    that get integers from the device); None when it gives none (the gateway stamps it on receipt)."""
    quality: int = Quality.GOOD


class Sink(Protocol):
    """Where sources put what they read."""

    async def publish(self, readings: Sequence[Reading]) -> None:
        """Spool readings durably; returns once they survive a crash of the gateway."""

    async def dead_letter(self, reason: str, payload: dict[str, Any]) -> None:
        """Spool something unusable with the reason, durably, for the dead_letters table."""


class WriteError(Exception):
    """A write-back that failed at the device; the message says why."""


class NotWritableError(WriteError):
    """A write to a tag that is not configured writable, or not served by this source."""


@dataclass
class SourceStatus:
    """Health of one source, for /metrics and GET /api/v1/sources."""

    name: str
    kind: str
    connected: bool = False
    last_error: str = ""
    last_error_at: float | None = None
    readings_total: int = 0
    dead_letters_total: int = 0
    reconnects_total: int = 0
    started_at: float = field(default_factory=time.time)

    def error(self, message: str) -> None:
        """Record the latest error."""
        self.last_error = message
        self.last_error_at = time.time()


class Source(Protocol):
    """A protocol adapter: one OPC UA server, one Modbus device, one MQTT broker connection."""

    name: str
    status: SourceStatus

    async def run(self, sink: Sink) -> None:
        """Read until cancelled, reconnecting with backoff after any failure; never returns otherwise."""

    async def write(self, tag: str, value: float | int | bool | str) -> None:
        """Write a value to a writable tag at the device, or raise NotWritableError / WriteError."""
