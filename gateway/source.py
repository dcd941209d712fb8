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
from typing import Any, Iterable, NamedTuple, Protocol, Sequence

from historian.samples import Quality, to_us


class Reading(NamedTuple):
    """One value of one configured tag as a source read it (a named tuple: cheap to make by the 100k)."""

    tag: str
    value: float | int | bool | str | None
    source_ts: datetime | int | None = None
    """The device's own timestamp, an aware datetime or µs since the Unix epoch (cheaper for sources
    that get integers from the device); None when it gives none (the gateway stamps it on receipt)."""
    quality: int = Quality.GOOD


@dataclass(slots=True)
class ReadingColumns:
    """Readings as four equal-length columns, every one stamped (µs since the Unix epoch).

    How a poll hands over a whole response: a list per column instead of a Reading per value,
    which at 100k values/s is most of what the gateway's own path costs.
    """

    tags: list[str] = field(default_factory=list)
    values: list[float | int | bool | str | None] = field(default_factory=list)
    ts_us: list[int] = field(default_factory=list)
    quality: list[int] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.tags)

    @classmethod
    def of(cls, readings: Iterable[Reading], now_us: int | None = None) -> ReadingColumns:
        """Columns of readings; one without a device time is stamped now_us (default: now)."""
        cols = cls()
        cols.add_readings(readings, now_us)
        return cols

    def add(self, reading: Reading, now_us: int) -> None:
        """Append one reading; without a device time it gets now_us."""
        ts = reading.source_ts
        self.tags.append(reading.tag)
        self.values.append(reading.value)
        self.ts_us.append(now_us if ts is None else ts if type(ts) is int else to_us(ts))  # type: ignore[arg-type]
        self.quality.append(int(reading.quality))

    def add_readings(self, readings: Iterable[Reading], now_us: int | None = None) -> None:
        """Append readings in order; those without a device time get now_us (default: now)."""
        now = time.time_ns() // 1000 if now_us is None else now_us
        rows = readings if isinstance(readings, (list, tuple)) else list(readings)
        # a comprehension per column: Sparkplug hands over 500 readings a message, 300k a second
        self.tags.extend([r.tag for r in rows])
        self.values.extend([r.value for r in rows])
        self.ts_us.extend([now if (ts := r.source_ts) is None else ts if type(ts) is int else to_us(ts)
                           for r in rows])
        self.quality.extend([int(r.quality) for r in rows])

    def extend(self, other: ReadingColumns) -> None:
        """Append every row of other, in order."""
        self.tags.extend(other.tags)
        self.values.extend(other.values)
        self.ts_us.extend(other.ts_us)
        self.quality.extend(other.quality)

    def drop_first(self, n: int) -> None:
        """Forget the n oldest rows."""
        del self.tags[:n], self.values[:n], self.ts_us[:n], self.quality[:n]

    def readings(self) -> list[Reading]:
        """The rows as Readings (for sinks and tests that want objects)."""
        return [Reading(*row) for row in zip(self.tags, self.values, self.ts_us, self.quality)]


class Sink(Protocol):
    """Where sources put what they read."""

    async def publish(self, readings: Sequence[Reading]) -> None:
        """Spool readings durably; returns once they survive a crash of the gateway."""

    async def publish_columns(self, columns: ReadingColumns) -> None:
        """As publish, for readings already in columns."""

    async def dead_letter(self, reason: str, payload: dict[str, Any]) -> None:
        """Spool something unusable with the reason, durably, for the dead_letters table."""


class SinkError(Exception):
    """The sink can no longer store what a source hands it (the spool's disk failed): stop, do not retry."""


class WriteError(Exception):
    """A write-back that failed at the device; the message says why."""


class NotWritableError(WriteError):
    """A write to a tag that is not configured writable, or not served by this source."""


class InvalidValueError(WriteError):
    """A value that does not fit the tag's type or range (70000 for a uint16): refused before the device."""


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
    readings_skipped: int = 0
    """Readings not taken because the spool was full: polls skipped (backpressure), never read and dropped."""
    started_at: float = field(default_factory=time.time)
    tags_total: int = 0
    """How many tags the source is configured to read."""
    tag_errors: dict[str, str] = field(default_factory=dict)
    """Tags that are not live (refused by the server, bad status), each with why."""

    def error(self, message: str) -> None:
        """Record the latest error."""
        self.last_error = message
        self.last_error_at = time.time()

    recovered_from: str = ""
    """The error the source last recovered from (last_error is cleared on recovery)."""

    def recovered(self) -> None:
        """Connected again: the previous connection error no longer describes the source."""
        if self.last_error:
            self.recovered_from = self.last_error
        self.last_error = ""
        self.last_error_at = None

    def tag_failed(self, tag: str, reason: str) -> None:
        """Mark one tag as not live, with why."""
        self.tag_errors[tag] = reason

    def tag_live(self, tag: str) -> None:
        """Mark one tag live again."""
        self.tag_errors.pop(tag, None)

    @property
    def tags_live(self) -> int:
        """Configured tags not currently failed."""
        return max(0, self.tags_total - len(self.tag_errors))


class Source(Protocol):
    """A protocol adapter: one OPC UA server, one Modbus device, one MQTT broker connection."""

    name: str
    status: SourceStatus

    async def run(self, sink: Sink) -> None:
        """Read until cancelled, reconnecting with backoff after any failure; never returns otherwise."""

    async def write(self, tag: str, value: float | int | bool | str) -> None:
        """Write a value to a writable tag at the device, or raise NotWritableError / WriteError."""
