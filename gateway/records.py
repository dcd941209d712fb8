"""What one spool record holds: readings as columns, and dead letters, as msgpack.

A record holds one source's publish, or (group commit, gateway/sink.py Collector) everything every
source published in one flush interval, in sections: one spool append, one forwarder batch and
one COPY per interval instead of one per source and poll.
"""

from __future__ import annotations

from itertools import compress
from typing import Any, Sequence

import msgspec
import numpy as np

from historian.registry import TagRegistry
from historian.samples import Batch, DeadLetter, Quality, SampleBatch


class SpooledLetter(msgspec.Struct, array_like=True):
    """Something a source could not read, with the reason."""

    reason: str
    payload: dict[str, Any]
    source: str = ""
    """In a record of several sources: whose letter (empty: the record's `source`)."""


class SpooledBlocks(msgspec.Struct, array_like=True):
    """Numeric responses (a Modbus poll's register block) as columns: no Python object per value on the way.

    Block i is source[i]'s reading of the tags tagsets[tagset[i]], all at ts_us[i]; its values
    are the next len(those tags) float64s of `values` (little-endian), its qualities the next
    int16s of `quality` (empty: every value of every block is good). A poll reads the same tags
    every time, so a record names each tag list once however many polls it holds, and as one
    msgpack-encoded list (bytes): the forwarder looks a list's tag ids up once, not per record.
    With exception reporting, `kept` holds a byte per tag of every block (1: its value is in
    `values`, 0: not stored) and a block's values are only its kept tags'; empty: every tag has one.
    """

    source: list[str]
    tagsets: list[bytes]
    tagset: list[int]
    ts_us: list[int]
    values: bytes
    quality: bytes = b""
    kept: bytes = b""
    """Last, with a default: records written before exception reporting reached blocks still decode."""

    def rows(self) -> int:
        """Values in all blocks."""
        return len(self.values) // 8

    def names(self, k: int) -> list[str]:
        """The tag names of tag list k."""
        return _names.decode(self.tagsets[k])


class SpooledPoints(msgspec.Struct, array_like=True):
    """Numeric readings that each carry their own tag and time (OPC UA data changes) as columns.

    A block is one poll: every tag of its list once, all at one time. A data-change notification
    holds any of a source's tags, some several times (a queue size above 1), each stamped by the
    server; so here every reading names its tag by position (`at`, int32) in a tag list and has
    its own µs (`ts_us`, int64). Run i is source[i]'s next count[i] readings, their positions in
    tagsets[tagset[i]] (a source's numeric tags, named once per record and looked up once by the
    forwarder, as blocks' lists are); `values` float64, `quality` int16 (empty: every reading good).
    """

    source: list[str]
    tagsets: list[bytes]
    tagset: list[int]
    count: list[int]
    at: bytes
    ts_us: bytes
    values: bytes
    quality: bytes = b""

    def rows(self) -> int:
        """Readings in all runs."""
        return len(self.values) // 8

    def names(self, k: int) -> list[str]:
        """The tag names of tag list k."""
        return _names.decode(self.tagsets[k])


_names = msgspec.msgpack.Decoder(list[str])


def encode_names(names: Sequence[str]) -> bytes:
    """A tag list as SpooledBlocks holds it."""
    return _encoder.encode(list(names))


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
    sections: list[tuple[str, int]] = []
    """A record of several sources: (source, rows) in row order; empty when every row is `source`'s.
    Last, with a default: records written before sections existed still decode."""
    blocks: SpooledBlocks | None = None
    """Numeric responses as columns, after the rows above (sources that hand over whole blocks)."""
    points: SpooledPoints | None = None
    """Numeric readings with a time each, after the blocks (OPC UA notifications). Last, with a
    default: records written before it existed still decode."""

    def __len__(self) -> int:
        return (len(self.tags) + (self.blocks.rows() if self.blocks is not None else 0)
                + (self.points.rows() if self.points is not None else 0))

    def names(self) -> set[str]:
        """Every tag name the record holds readings of (rows, blocks and points)."""
        names = set(self.tags)
        for lists in (self.blocks, self.points):
            if lists is not None:
                names.update(name for k in range(len(lists.tagsets)) for name in lists.names(k))
        return names


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
    return len(record) + len(record.letters)


def to_batch(record: SpoolRecord, registry: TagRegistry) -> Batch:
    """The historian batch of a spooled record (one batch for all the sections of a merged record)."""
    if not record.sections:
        batch = registry.batch_from_columns(record.tags, record.ts_us, record.values, record.quality, record.source)
    else:
        batch = _merged_batch(record, registry)
    if record.blocks is not None:
        batch = _concat(batch, _blocks_batch(record.blocks, registry), record.source)
    if record.points is not None:
        batch = _concat(batch, _points_batch(record.points, registry), record.source)
    if record.letters:  # rare: no generator per record on the hot path
        batch.rejects.extend(DeadLetter(d.reason, d.payload, d.source or record.source) for d in record.letters)
    return batch


def _merged_batch(record: SpoolRecord, registry: TagRegistry) -> Batch:
    """One batch of every section; Batch.sections says whose rows are whose (for dead letters and rollup marks)."""
    samples = registry.numeric_columns(record.tags, record.ts_us, record.values, record.quality)
    if samples is not None:  # the common case: all numeric, one vectorised pass over every source's rows
        return Batch(samples, sections=[(source, rows, 0) for source, rows in record.sections])
    # something needs the row path (text, a refusal): section by section, so each keeps its source
    parts: list[Batch] = []
    start = 0
    for source, rows in record.sections:
        end = start + rows
        parts.append(registry.batch_from_columns(record.tags[start:end], record.ts_us[start:end],
                                                 record.values[start:end], record.quality[start:end], source))
        start = end
    return Batch(SampleBatch.concat([p.samples for p in parts]), [e for p in parts for e in p.events],
                 [d for p in parts for d in p.rejects],
                 sections=[(p.source, len(p.samples), len(p.events)) for p in parts])


_ids: dict[bytes, np.ndarray] = {}  # a tag list (as spooled) -> its tag ids in _ids_registry
_ids_registry: TagRegistry | None = None


def _blocks_batch(blocks: SpooledBlocks, registry: TagRegistry) -> Batch:
    """The batch of a record's blocks: tag ids per tag list, values and qualities straight from the bytes."""
    ids = _list_ids(blocks, registry)
    if ids is None:  # a tag the registry does not know as numeric: the row path names why
        return _blocks_by_rows(blocks, registry)
    sizes = [len(ids[k]) for k in blocks.tagset]
    values = np.frombuffer(blocks.values, dtype="<f8")
    quality = (np.frombuffer(blocks.quality, dtype="<i2") if blocks.quality
               else np.full(len(values), int(Quality.GOOD), dtype=np.int16))
    tag_ids = np.concatenate([ids[k] for k in blocks.tagset])
    ts_us = np.repeat(np.array(blocks.ts_us, dtype=np.int64), sizes)
    if blocks.kept:
        kept = np.frombuffer(blocks.kept, dtype=bool)
        tag_ids, ts_us = tag_ids[kept], ts_us[kept]
        sizes = _kept_sizes(kept, sizes)
    samples = SampleBatch(tag_ids, ts_us, values.astype(np.float64), quality.astype(np.int16))
    return Batch(samples, sections=_sections(blocks.source, sizes))


def _list_ids(lists: SpooledBlocks | SpooledPoints, registry: TagRegistry) -> list[np.ndarray] | None:
    """The tag ids of each tag list of a record, looked up once per list; None if a tag is not known as numeric."""
    global _ids_registry
    if _ids_registry is not registry or len(_ids) > 10_000:  # a new registry (tags registered), or bounded
        _ids.clear()
        _ids_registry = registry
    ids: list[np.ndarray] = []
    for k, key in enumerate(lists.tagsets):
        found = _ids.get(key)
        if found is None:
            looked_up = list(map(registry.numeric_ids.get, lists.names(k)))
            if None in looked_up:
                return None
            found = _ids[key] = np.array(looked_up, dtype=np.int32)
        ids.append(found)
    return ids


def _points_batch(points: SpooledPoints, registry: TagRegistry) -> Batch:
    """The batch of a record's points: each reading's tag id through its list's ids, the rest straight from the bytes."""
    ids = _list_ids(points, registry)
    if ids is None:
        return _points_by_rows(points, registry)
    at = np.frombuffer(points.at, dtype="<i4")
    if len(ids) == 1:  # one source's list (the common case): a gather, no offsets
        tag_ids = ids[0][at]
    else:  # the lists end to end; each reading's position moved by where its list starts
        starts = np.cumsum([0] + [len(i) for i in ids[:-1]])
        tag_ids = np.concatenate(ids)[at + np.repeat(starts[points.tagset], points.count)]
    values = np.frombuffer(points.values, dtype="<f8")
    quality = (np.frombuffer(points.quality, dtype="<i2").astype(np.int16) if points.quality
               else np.full(len(values), int(Quality.GOOD), dtype=np.int16))
    samples = SampleBatch(tag_ids, np.frombuffer(points.ts_us, dtype="<i8").astype(np.int64),
                          values.astype(np.float64), quality)
    return Batch(samples, sections=_sections(points.source, points.count))


def _points_by_rows(points: SpooledPoints, registry: TagRegistry) -> Batch:
    """The points of a record through the row path (refusals named), each run with its source."""
    at = np.frombuffer(points.at, dtype="<i4").tolist()
    ts_us = np.frombuffer(points.ts_us, dtype="<i8").tolist()
    values = np.frombuffer(points.values, dtype="<f8").tolist()
    quality = (np.frombuffer(points.quality, dtype="<i2").tolist() if points.quality
               else [int(Quality.GOOD)] * len(values))
    parts: list[Batch] = []
    start = 0
    for source, k, n in zip(points.source, points.tagset, points.count):
        names = points.names(k)
        end = start + n
        parts.append(registry.batch_from_columns([names[i] for i in at[start:end]], ts_us[start:end],
                                                 values[start:end], quality[start:end], source))
        start = end
    return Batch(SampleBatch.concat([p.samples for p in parts]), [e for p in parts for e in p.events],
                 [d for p in parts for d in p.rejects],
                 sections=[(p.source, len(p.samples), len(p.events)) for p in parts])


def _kept_sizes(kept: np.ndarray, sizes: list[int]) -> list[int]:
    """Each block's stored readings: its kept tags."""
    ends = np.cumsum(sizes)
    counts = np.concatenate(([0], np.cumsum(kept)))
    return np.diff(counts[np.concatenate(([0], ends))]).tolist()


def _blocks_by_rows(blocks: SpooledBlocks, registry: TagRegistry) -> Batch:
    """The blocks of a record through the row path (refusals named), each block with its source."""
    values = np.frombuffer(blocks.values, dtype="<f8").tolist()
    quality = (np.frombuffer(blocks.quality, dtype="<i2").tolist() if blocks.quality
               else [int(Quality.GOOD)] * len(values))
    kept = np.frombuffer(blocks.kept, dtype=bool).tolist() if blocks.kept else None
    parts: list[Batch] = []
    start = 0
    at = 0  # where the block's tags start in kept
    for source, k, ts in zip(blocks.source, blocks.tagset, blocks.ts_us):
        names = blocks.names(k)
        if kept is not None:
            mask = kept[at:at + len(names)]
            at += len(names)
            names = list(compress(names, mask))
        end = start + len(names)
        parts.append(registry.batch_from_columns(list(names), [ts] * len(names), values[start:end],
                                                 quality[start:end], source))
        start = end
    return Batch(SampleBatch.concat([p.samples for p in parts]), [e for p in parts for e in p.events],
                 [d for p in parts for d in p.rejects],
                 sections=[(p.source, len(p.samples), len(p.events)) for p in parts])


def _sections(sources: list[str], sizes: list[int]) -> list[tuple[str, int, int]]:
    """(source, samples, 0) per run of blocks of one source."""
    sections: list[tuple[str, int, int]] = []
    for source, n in zip(sources, sizes):
        if sections and sections[-1][0] == source:
            sections[-1] = (source, sections[-1][1] + n, 0)
        else:
            sections.append((source, n, 0))
    return sections


def _concat(rows: Batch, blocks: Batch, source: str) -> Batch:
    """The batch of a record's rows followed by its blocks, sections kept (the rows' own, or one for `source`)."""
    if not len(rows.samples) and not rows.events:
        blocks.rejects[:0] = rows.rejects
        return blocks
    head = rows.sections or [(rows.source or source, len(rows.samples), len(rows.events))]
    return Batch(SampleBatch.concat([rows.samples, blocks.samples]), rows.events + blocks.events,
                 rows.rejects + blocks.rejects, sections=head + blocks.sections)
