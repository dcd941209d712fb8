"""The sink sources publish into: exception reporting, then the durable spool, one record per flush interval."""

from __future__ import annotations

import asyncio
from itertools import compress
from typing import Any, Sequence

import numpy as np

from gateway.exception import ExceptionFilter
from gateway.records import SpooledBlocks, SpooledLetter, SpooledPoints, SpoolRecord, encode, encode_names
from gateway.source import Reading, ReadingColumns, SinkError, SourceStatus
from gateway.spool import Spool
from historian.samples import Quality


class Collector:
    """Group commit across sources: what every source publishes within one interval goes into one spool record.

    One append (one fsync, one record for the forwarder, one batch for the writer) per interval
    instead of one per source and poll. Every publish still returns only once the record holding
    it is on disk. The flush is a task of its own, shielded from the publishers: a publisher
    cancelled while it waits (a gateway stopping) does not cancel the others' flush, and a later
    publish (the outbox's final flush) starts a new one.

    A flush does not sit out its interval once `flush_rows` readings of publishes (sources that
    wait for the disk: MQTT acknowledges its broker after it, OPC UA's outbox sends its next batch
    after it) are in: they would only wait, and a push source's throughput is what it may have in
    flight divided by that wait. Points put with `waits` (MQTT's Sparkplug numbers, acknowledged after
    the record) count as such readings; blocks (put_block: polls that do not wait) and OPC UA's points
    never cut it short.
    """

    def __init__(self, spool: Spool, interval: float = 0.0, flush_rows: int = 1000) -> None:
        self.spool = spool
        self.interval = interval
        """Seconds a flush waits for more publishes to share its record (0: the same loop turn only)."""
        self.flush_rows = flush_rows
        """Readings of waiting publishes that start the flush before the interval is up."""
        self._waiting_rows = 0
        self._early: asyncio.Event | None = None  # set to start the pending flush at once
        self._sources: list[str] = []
        self._parts: list[ReadingColumns] = []
        self._letters: list[SpooledLetter] = []
        self._blocks = _Blocks()
        self._points = _Points()
        self._flush: asyncio.Task[None] | None = None
        self._last: asyncio.Task[None] | None = None  # the newest flush: once it is done, so is every older one
        self.unsynced_rows = 0
        """Rows handed over with put_block or put_points and not yet on disk (what backpressure looks at)."""
        self._failed: Exception | None = None  # why the spool could not take a record: raised to every source

    async def publish(self, source: str, columns: ReadingColumns) -> None:
        """Add one source's readings to the next record; returns once that record is on disk."""
        self._sources.append(source)
        self._parts.append(columns)
        flush = self._next_flush()
        self._waiting_rows += len(columns)
        if self._waiting_rows >= self.flush_rows and self._early is not None:
            self._early.set()
        await asyncio.shield(flush)

    async def dead_letter(self, source: str, reason: str, payload: dict[str, Any]) -> None:
        """Add a dead letter of one source to the next record; returns once it is on disk."""
        self._letters.append(SpooledLetter(reason, payload, source))
        await self._durable()

    def put_block(self, status: SourceStatus, tags: tuple[str, ...], ts_us: int, values: np.ndarray,
                  quality: np.ndarray | None, kept: np.ndarray | None = None) -> None:
        """Add one numeric response (float64 values, int16 qualities or None for all good) without waiting.

        `kept` (exception reporting): which of the tags' readings values and quality hold, a bool
        per tag; None: all of them. The source's readings_total counts every reading of the
        response (read, stored or not) once the record holding it is on disk, or at once when
        none is kept (nothing to wait for); a source that keeps putting awaits room() so that
        what is not yet on disk stays bounded.
        """
        if kept is not None and not len(values):
            status.readings_total += len(kept)
            return
        self._blocks.add(status, tags, ts_us, values, quality, kept)
        self.unsynced_rows += len(values)
        self._next_flush()

    def put_points(self, status: SourceStatus, tags: tuple[str, ...], at: np.ndarray, ts_us: np.ndarray,
                   values: np.ndarray, quality: np.ndarray | None, read: int | None = None,
                   waits: bool = False) -> None:
        """Add numeric readings with a time each (int32 positions in `tags`, int64 µs, float64, int16 or None) without waiting.

        `tags` is the source's tag tuple, kept for life (encoded once per tuple). `read`: readings
        the source read, when exception reporting kept only these (default: all of them); they
        count in readings_total once the record holding them is on disk, or at once when none
        is kept. `waits`: the source awaits durable() right after (MQTT acknowledges its broker
        then), so these readings count towards flush_rows as a publish's do.
        """
        read = len(values) if read is None else read
        if not len(values):
            status.readings_total += read
            return
        self._points.add(status, tags, at, ts_us, values, quality, read)
        self.unsynced_rows += len(values)
        self._next_flush()
        if waits:
            self._waiting_rows += len(values)
            if self._waiting_rows >= self.flush_rows and self._early is not None:
                self._early.set()

    async def room(self, limit: int) -> None:
        """Wait while more than `limit` block rows are not yet on disk (a poll slows down rather than piling up).

        Raises what stopped the spool (a disk that cannot be written), as a publish would: a source
        that only puts blocks must not poll on as if they were stored.
        """
        self._raise_failure()
        while self.unsynced_rows > limit and self._last is not None:
            try:
                await asyncio.shield(self._last)
            except Exception:
                self._raise_failure()
                raise

    async def durable(self) -> None:
        """Return once everything put so far is on disk (a source stopping waits for what it read)."""
        self._raise_failure()
        if self._last is not None:
            try:
                await asyncio.shield(self._last)
            except Exception:
                self._raise_failure()
                raise

    def _raise_failure(self) -> None:
        if self._failed is not None:
            raise SinkError(f"the spool cannot store readings: {self._failed!r}") from self._failed

    def _next_flush(self) -> asyncio.Task[None]:
        flush = self._flush
        if flush is None or flush.done():
            self._early = asyncio.Event() if self.interval > 0 else None
            flush = self._flush = self._last = asyncio.create_task(self._write(self._early), name="spool-collector")
        return flush

    async def _durable(self) -> None:
        await asyncio.shield(self._next_flush())

    async def _write(self, early: asyncio.Event | None) -> None:
        if early is not None:
            timer = asyncio.get_running_loop().call_later(self.interval, early.set)
            await early.wait()
            timer.cancel()
        else:
            await asyncio.sleep(0)  # the publishes of this loop turn still share the record
        # from here on, publishes start the next record (this task is no longer the one to wait for)
        self._flush = None
        self._early = None
        self._waiting_rows = 0
        sources, parts, letters, blocks, points = self._sources, self._parts, self._letters, self._blocks, self._points
        self._sources, self._parts, self._letters, self._blocks, self._points = [], [], [], _Blocks(), _Points()
        record = merge(sources, parts, letters)
        if blocks.source:
            record.blocks = blocks.spooled()
        if points.source:
            record.points = points.spooled()
        try:
            await self.spool.append(encode(record))
        except Exception as e:
            self._failed = e
            raise
        # read, now: a value counts once it is on disk
        for status, n in (*blocks.counts.values(), *points.counts.values()):
            status.readings_total += n
        self.unsynced_rows -= blocks.rows + points.rows


class _Parts:
    """What one record's numeric hand-overs share: their sources, tag tuples (each named once), values, qualities
    and the readings each source read (counted once the record is on disk)."""

    def __init__(self) -> None:
        self.source: list[str] = []
        self.tagsets: list[tuple[str, ...]] = []
        self.index: dict[int, int] = {}  # id(tag tuple) -> its place in tagsets (the tuples are kept alive there)
        self.tagset: list[int] = []
        self.values: list[np.ndarray] = []
        self.quality: list[np.ndarray | None] = []
        self.counts: dict[int, tuple[SourceStatus, int]] = {}  # id(status) -> (status, readings read)
        self.rows = 0  # readings to store (what unsynced_rows counts)

    def _add(self, status: SourceStatus, tags: tuple[str, ...], values: np.ndarray, quality: np.ndarray | None,
             read: int) -> None:
        k = self.index.get(id(tags))
        if k is None:
            k = self.index[id(tags)] = len(self.tagsets)
            self.tagsets.append(tags)
        self.source.append(status.name)
        self.tagset.append(k)
        self.values.append(values)
        self.quality.append(quality)
        had = self.counts.get(id(status))
        self.counts[id(status)] = (status, read + (had[1] if had else 0))
        self.rows += len(values)

    def _quality_bytes(self) -> bytes:
        """Every reading's quality as little-endian int16s; empty when all are good."""
        if not any(q is not None for q in self.quality):
            return b""
        return np.concatenate([np.full(len(v), int(Quality.GOOD), dtype="<i2") if q is None else q
                               for v, q in zip(self.values, self.quality)]).astype("<i2").tobytes()


class _Blocks(_Parts):
    """The numeric responses of one record as they come in (a list of arrays; joined once per record)."""

    def __init__(self) -> None:
        super().__init__()
        self.ts_us: list[int] = []
        self.kept: list[np.ndarray | None] = []

    def add(self, status: SourceStatus, tags: tuple[str, ...], ts_us: int, values: np.ndarray,
            quality: np.ndarray | None, kept: np.ndarray | None = None) -> None:
        """Append one response (values and quality: only the kept readings' when kept is given)."""
        self._add(status, tags, values, quality, len(values) if kept is None else len(kept))
        self.ts_us.append(ts_us)
        self.kept.append(kept)

    def spooled(self) -> SpooledBlocks:
        """The blocks as they go into a spool record."""
        if any(k is not None for k in self.kept):
            sizes = [len(self.tagsets[k]) for k in self.tagset]
            kept = np.concatenate([np.ones(n, dtype=bool) if k is None else k
                                   for n, k in zip(sizes, self.kept)]).tobytes()
        else:
            kept = b""
        return SpooledBlocks(self.source, [_encoded(t) for t in self.tagsets], self.tagset, self.ts_us,
                             np.concatenate(self.values).astype("<f8").tobytes(), self._quality_bytes(), kept)


class _Points(_Parts):
    """The numeric readings with a time each of one record as they come in (arrays joined once per record)."""

    def __init__(self) -> None:
        super().__init__()
        self.count: list[int] = []
        self.at: list[np.ndarray] = []
        self.ts_us: list[np.ndarray] = []

    def add(self, status: SourceStatus, tags: tuple[str, ...], at: np.ndarray, ts_us: np.ndarray,
            values: np.ndarray, quality: np.ndarray | None, read: int) -> None:
        """Append one hand-over of a source: a run of readings, `read` of them counted as read."""
        self._add(status, tags, values, quality, read)
        self.count.append(len(values))
        self.at.append(at)
        self.ts_us.append(ts_us)

    def spooled(self) -> SpooledPoints:
        """The readings as they go into a spool record."""
        return SpooledPoints(self.source, [_encoded(t) for t in self.tagsets], self.tagset, self.count,
                             np.concatenate(self.at).astype("<i4").tobytes(),
                             np.concatenate(self.ts_us).astype("<i8").tobytes(),
                             np.concatenate(self.values).astype("<f8").tobytes(), self._quality_bytes())


def merge(sources: list[str], parts: list[ReadingColumns], letters: list[SpooledLetter]) -> SpoolRecord:
    """One spool record of several sources' readings (in sections, in order) and dead letters."""
    if len(parts) == 1 and all(d.source == sources[0] for d in letters):
        p = parts[0]  # one source alone: the plain record, as a source's own publish makes it
        return SpoolRecord(sources[0], p.tags, p.ts_us, p.values, p.quality,
                           [SpooledLetter(d.reason, d.payload) for d in letters])
    if not parts and not letters:
        return SpoolRecord("")
    if not parts and len({d.source for d in letters}) == 1:
        return SpoolRecord(letters[0].source, letters=[SpooledLetter(d.reason, d.payload) for d in letters])
    tags: list[str] = []
    ts_us: list[int] = []
    values: list[Any] = []
    quality: list[int] = []
    sections: list[tuple[str, int]] = []
    for source, p in zip(sources, parts):
        tags.extend(p.tags)
        ts_us.extend(p.ts_us)
        values.extend(p.values)
        quality.extend(p.quality)
        if sections and sections[-1][0] == source:  # one source twice in a row: one section
            sections[-1] = (source, sections[-1][1] + len(p))
        else:
            sections.append((source, len(p)))
    return SpoolRecord("", tags, ts_us, values, quality, letters, sections)


class SpoolSink:
    """A Sink for one source: readings pass the exception filter and land durably in the spool.

    Sinks that share a Collector share its records (the gateway's group commit); without one,
    the sink has its own (a record per publish, as a lone source needs). The source keeps its
    own counters in its status; the sink does not count again.
    """

    def __init__(self, spool: Spool, status: SourceStatus, exceptions: ExceptionFilter,
                 collector: Collector | None = None) -> None:
        self._collector = collector or Collector(spool)
        self._status = status
        self._filter = exceptions

    async def publish(self, readings: Sequence[Reading]) -> None:
        """Stamp readings without a device time, filter, and spool them; returns once on disk."""
        await self.publish_columns(ReadingColumns.of(readings))

    async def publish_columns(self, columns: ReadingColumns) -> None:
        """Filter readings already in columns and spool them; returns once on disk."""
        if self._filter.active:
            # a decision per row by map (no row tuple), the columns cut by compress only if one was dropped
            kept = list(map(self._filter.keep, columns.tags, columns.values, columns.ts_us, columns.quality))
            if not all(kept):
                columns = ReadingColumns(*(list(compress(c, kept)) for c in
                                           (columns.tags, columns.values, columns.ts_us, columns.quality)))
        if columns.tags:
            await self._collector.publish(self._status.name, columns)

    async def dead_letter(self, reason: str, payload: dict[str, Any]) -> None:
        """Spool something unusable with the reason."""
        await self._collector.dead_letter(self._status.name, reason, payload)

    @property
    def takes_blocks(self) -> bool:
        """True: put_block may be used (exception reporting applies to a block as to rows)."""
        return True

    def put_block(self, tags: tuple[str, ...], ts_us: int, values: np.ndarray, quality: np.ndarray | None) -> None:
        """Filter one numeric response and hand over what is kept without waiting; counted once on disk."""
        if self._filter.active:
            kept = self._filter.keep_block(tags, ts_us, values, quality)
            if not kept.all():
                self._collector.put_block(self._status, tags, ts_us, values[kept],
                                          None if quality is None else quality[kept], kept)
                return
        self._collector.put_block(self._status, tags, ts_us, values, quality)

    @property
    def takes_points(self) -> bool:
        """True: put_points may be used (exception reporting applies to points as to rows)."""
        return True

    def put_points(self, tags: tuple[str, ...], at: np.ndarray, ts_us: np.ndarray, values: np.ndarray,
                   quality: np.ndarray | None, waits: bool = False) -> None:
        """Filter numeric readings with a time each and hand over what is kept without waiting; counted once on disk.

        Reading i is of tag tags[at[i]] (int32) at ts_us[i] (int64 µs), values float64, quality
        int16 or None for all good; `tags` is the source's tuple, kept for life. `waits`: the
        source awaits durable() next (see Collector.put_points).
        """
        if self._filter.active:
            kept = self._filter.keep_points(tags, at, ts_us, values, quality)
            if not kept.all():
                self._collector.put_points(self._status, tags, at[kept], ts_us[kept], values[kept],
                                           None if quality is None else quality[kept], read=len(values), waits=waits)
                return
        self._collector.put_points(self._status, tags, at, ts_us, values, quality, waits=waits)

    def full(self) -> bool:
        """True while the spool is full: a polling source skips its polls (and counts them) until it is not."""
        return self._collector.spool.full

    async def room(self, limit: int) -> None:
        """Wait while more than `limit` rows handed over with put_block are not yet on disk."""
        await self._collector.room(limit)

    async def durable(self) -> None:
        """Return once every block and point handed over so far is on disk (raises SinkError if the spool failed)."""
        await self._collector.durable()


_encoded_names: dict[int, tuple[tuple[str, ...], bytes]] = {}  # id(tag tuple) -> (the tuple, kept alive; its bytes)


def _encoded(tags: tuple[str, ...]) -> bytes:
    """A poll's tag tuple as the spool holds it, encoded once per tuple (a request keeps its tuple for life)."""
    hit = _encoded_names.get(id(tags))
    if hit is None or hit[0] is not tags:
        if len(_encoded_names) > 100_000:  # bounded, should requests ever be remade without end
            _encoded_names.clear()
        hit = _encoded_names[id(tags)] = (tags, encode_names(tags))
    return hit[1]
