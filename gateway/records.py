"""What one spool record holds: a source's readings and dead letters, as msgpack."""

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
    """One publish of one source: rows of (tag, µs since the epoch, value, quality) and dead letters."""

    source: str
    rows: list[tuple[str, int, float | int | bool | str | None, int]]
    letters: list[SpooledLetter] = []


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(SpoolRecord)


def encode(record: SpoolRecord) -> bytes:
    """The record as spool bytes."""
    return _encoder.encode(record)


def decode(payload: bytes) -> SpoolRecord:
    """Spool bytes back into a record."""
    return _decoder.decode(payload)


def count_samples(payload: bytes) -> int:
    """Readings plus dead letters in a spooled record (to count what a full spool drops)."""
    record = decode(payload)
    return len(record.rows) + len(record.letters)


def to_batch(record: SpoolRecord, registry: TagRegistry) -> Batch:
    """The historian batch of a spooled record."""
    batch = registry.batch_from_rows(record.rows, record.source)
    batch.rejects.extend(DeadLetter(d.reason, d.payload, record.source) for d in record.letters)
    return batch
