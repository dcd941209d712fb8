"""What one spool record holds: a source's readings as columns, and dead letters, as msgpack."""

from __future__ import annotations

from typing import Any

import msgspec

from historian.registry import TagRegistry
from historian.samples import Batch, DeadLetter


class SpooledLetter(msgspec.Struct, array_like=True):
    """Something a source could not read, with the reason."""

    reason: str
    payload: dict[str, Any]


class SpoolRecord(msgspec.Struct, array_like=True):
    """One publish of one source: equal-length columns of tag, µs since the epoch, value, quality; dead letters.

    Columns, not rows: msgpack packs a list of floats far faster than a list of row tuples, and
    the forwarder turns them into numpy columns without a Python loop per sample.
    """

    source: str
    tags: list[str] = []
    ts_us: list[int] = []
    values: list[float | int | bool | str | None] = []
    quality: list[int] = []
    letters: list[SpooledLetter] = []

    def __len__(self) -> int:
        return len(self.tags)


class _RowRecord(msgspec.Struct, array_like=True):
    """The record as spools written before version 0.3 hold it: rows, not columns."""

    source: str
    rows: list[tuple[str, int, float | int | bool | str | None, int]]
    letters: list[SpooledLetter] = []


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(SpoolRecord)
_row_decoder = msgspec.msgpack.Decoder(_RowRecord)


def encode(record: SpoolRecord) -> bytes:
    """The record as spool bytes."""
    return _encoder.encode(record)


def decode(payload: bytes) -> SpoolRecord:
    """Spool bytes back into a record (also a row record that an older gateway left in the spool)."""
    try:
        return _decoder.decode(payload)
    except msgspec.ValidationError:
        old = _row_decoder.decode(payload)
        tags, ts_us, values, quality = (list(c) for c in zip(*old.rows)) if old.rows else ([], [], [], [])
        return SpoolRecord(old.source, tags, ts_us, values, quality, old.letters)


def count_samples(payload: bytes) -> int:
    """Readings plus dead letters in a spooled record (to count what a full spool drops)."""
    record = decode(payload)
    return len(record.tags) + len(record.letters)


def to_batch(record: SpoolRecord, registry: TagRegistry) -> Batch:
    """The historian batch of a spooled record."""
    batch = registry.batch_from_columns(record.tags, record.ts_us, record.values, record.quality, record.source)
    if record.letters:  # rare: no generator per record on the hot path
        batch.rejects.extend(DeadLetter(d.reason, d.payload, record.source) for d in record.letters)
    return batch
