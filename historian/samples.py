"""What flows into the historian: samples as records or numpy columns, events, dead letters."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Iterable, Sequence

import numpy as np

# PostgreSQL counts timestamps in microseconds from 2000-01-01 UTC.
PG_EPOCH_US = 946_684_800_000_000
_UNIX_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + b"\x00\x00\x00\x00" + b"\x00\x00\x00\x00"
_COPY_TRAILER = b"\xff\xff"
_ROW = np.dtype(
    [
        ("nfields", ">i2"),
        ("tag_len", ">i4"),
        ("tag_id", ">i4"),
        ("ts_len", ">i4"),
        ("ts", ">i8"),
        ("value_len", ">i4"),
        ("value", ">f8"),
        ("quality_len", ">i4"),
        ("quality", ">i2"),
    ]
)


class Quality(enum.IntEnum):
    """OPC DA quality: 192 and up good, 64..191 uncertain, below 64 bad."""

    BAD = 0
    BAD_CONFIG_ERROR = 4
    BAD_NOT_CONNECTED = 8
    BAD_DEVICE_FAILURE = 12
    BAD_SENSOR_FAILURE = 16
    BAD_LAST_KNOWN = 20
    BAD_COMM_FAILURE = 24
    BAD_OUT_OF_SERVICE = 28
    UNCERTAIN = 64
    UNCERTAIN_LAST_USABLE = 68
    GOOD = 192

    @staticmethod
    def name_of(code: int) -> str:
        """Return 'good', 'uncertain' or 'bad' for a quality code."""
        return "good" if code >= 192 else "uncertain" if code >= 64 else "bad"


def to_us(ts: datetime) -> int:
    """Microseconds since the Unix epoch of an aware datetime (naive ones are taken as UTC)."""
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=timezone.utc)
    delta = ts - _UNIX_EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_us(us: int) -> datetime:
    """The aware UTC datetime of microseconds since the Unix epoch."""
    return datetime.fromtimestamp(us // 1_000_000, tz=timezone.utc).replace(microsecond=us % 1_000_000)


@dataclass(frozen=True, slots=True)
class Sample:
    """One value of one tag at one time, as a device or a person gives it."""

    tag: str
    ts: datetime
    value: float | int | bool | str
    quality: int = Quality.GOOD


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """Something the historian refused, with the reason, kept in the dead_letters table."""

    reason: str
    payload: dict[str, Any]
    source: str = ""


@dataclass(frozen=True, slots=True)
class SampleBatch:
    """Numeric samples as columns: the fast path from adapters to binary COPY."""

    tag_id: np.ndarray  # int32
    ts_us: np.ndarray  # int64, microseconds since the Unix epoch, UTC
    value: np.ndarray  # float64
    quality: np.ndarray  # int16

    @classmethod
    def from_columns(
        cls,
        tag_id: Iterable[int] | np.ndarray,
        ts_us: Iterable[int] | np.ndarray,
        value: Iterable[float] | np.ndarray,
        quality: Iterable[int] | np.ndarray | None = None,
    ) -> SampleBatch:
        """Build a batch from equal-length columns, converting dtypes; quality defaults to good."""
        t = np.ascontiguousarray(tag_id, dtype=np.int32)
        ts = np.ascontiguousarray(ts_us, dtype=np.int64)
        v = np.ascontiguousarray(value, dtype=np.float64)
        q = (
            np.full(len(t), Quality.GOOD, dtype=np.int16)
            if quality is None
            else np.ascontiguousarray(quality, dtype=np.int16)
        )
        if not len(t) == len(ts) == len(v) == len(q):
            raise ValueError(
                f"columns differ in length: tag_id {len(t)}, ts_us {len(ts)}, value {len(v)}, quality {len(q)}"
            )
        return cls(t, ts, v, q)

    @classmethod
    def empty(cls) -> SampleBatch:
        """A batch with no samples."""
        return cls.from_columns([], [], [], [])

    @classmethod
    def concat(cls, batches: Sequence[SampleBatch]) -> SampleBatch:
        """One batch holding every sample of the given batches, in order."""
        if len(batches) == 1:
            return batches[0]
        if not batches:
            return cls.empty()
        return cls(
            np.concatenate([b.tag_id for b in batches]),
            np.concatenate([b.ts_us for b in batches]),
            np.concatenate([b.value for b in batches]),
            np.concatenate([b.quality for b in batches]),
        )

    def __len__(self) -> int:
        return len(self.tag_id)

    def take(self, mask: np.ndarray) -> SampleBatch:
        """The samples where mask is true (or at the given indices)."""
        return SampleBatch(self.tag_id[mask], self.ts_us[mask], self.value[mask], self.quality[mask])

    def to_copy_binary(self) -> bytes:
        """PostgreSQL binary COPY of (tag_id int4, ts timestamptz, value float8, quality int2)."""
        rows = np.empty(len(self), dtype=_ROW)
        rows["nfields"] = 4
        rows["tag_len"] = 4
        rows["tag_id"] = self.tag_id
        rows["ts_len"] = 8
        rows["ts"] = self.ts_us - PG_EPOCH_US
        rows["value_len"] = 8
        rows["value"] = self.value
        rows["quality_len"] = 2
        rows["quality"] = self.quality
        return b"".join((_COPY_HEADER, rows.tobytes(), _COPY_TRAILER))

    def payload(self, i: int) -> dict[str, Any]:
        """Sample i as JSON-able data for a dead letter."""
        v = float(self.value[i])
        return {
            "tag_id": int(self.tag_id[i]),
            "ts": from_us(int(self.ts_us[i])).isoformat(),
            "value": v if np.isfinite(v) else str(v),
            "quality": int(self.quality[i]),
        }


@dataclass(frozen=True, slots=True)
class Event:
    """A text or state value (a lot number, a badge, a machine state name) of a text tag."""

    tag_id: int
    ts_us: int
    value: str
    quality: int = Quality.GOOD


@dataclass(slots=True)
class Batch:
    """The unit a writer accepts and acknowledges: numeric samples, events and refusals."""

    samples: SampleBatch = field(default_factory=SampleBatch.empty)
    events: list[Event] = field(default_factory=list)
    rejects: list[DeadLetter] = field(default_factory=list)
    source: str = ""
    sections: list[tuple[str, int, int]] = field(default_factory=list)
    """A batch of several sources (the gateway's group commit): (source, samples, events) in order,
    so refusals name their source and rollup marks stay per source; empty: all is `source`'s."""

    def __len__(self) -> int:
        return len(self.samples) + len(self.events) + len(self.rejects)
