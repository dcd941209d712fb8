"""The historian writer: batches in, binary COPY out, acknowledged only after commit.

Callers submit batches and get a future that resolves once the batch is committed, so a gateway
can delete the batch from its spool then and not before. The queue is bounded in samples: when
it is full, submit() waits (backpressure). A flush starts when enough samples are queued or the
oldest has waited long enough. Writes are idempotent: samples are unique on (tag_id, ts), the
common case goes straight in with COPY, and a batch that meets rows already there (a replay)
goes through a staging table with ON CONFLICT DO NOTHING. Refused samples go to dead_letters,
which are idempotent too: unique on (source, payload), so a replay adds no second letter.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np
import psycopg
from psycopg import errors as pg_errors
from psycopg.types.json import Jsonb

from historian.config import HistorianConfig
from historian.db import backend, connect
from historian.errors import WriterClosedError
from historian.metrics import METRICS, MetricsRegistry
from historian.registry import TagRegistry, load_registry
from historian.samples import Batch, DeadLetter, Event, Sample, SampleBatch, from_us

log = logging.getLogger(__name__)

DAY_US = 86_400_000_000
MINUTE_US = 60_000_000
_COPY_SAMPLES = "COPY {table} (tag_id, ts, value, quality) FROM STDIN (FORMAT BINARY)"


@dataclass(frozen=True, slots=True)
class WriteResult:
    """What one acknowledged batch did: rows added, rows already there, rows refused."""

    written: int
    duplicates: int
    dead_letters: int


@dataclass(slots=True)
class _Pending:
    batch: Batch
    future: asyncio.Future[WriteResult]
    enqueued: float


def validate(
    samples: SampleBatch, registry: TagRegistry, now_us: int, max_future_us: int, source: str = "",
    sections: Sequence[tuple[str, int, int]] = (),
) -> tuple[SampleBatch, list[DeadLetter]]:
    """Split numeric samples into those fit to store and dead letters naming why the rest are not.

    sections (a batch of several sources): (source, samples, events) in order, to name each letter's source.
    """
    n = len(samples)
    if n == 0:
        return samples, []
    tid = samples.tag_id
    in_table = (tid >= 0) & (tid < len(registry.numeric))
    safe = np.where(in_table, tid, 0)
    known = in_table & registry.numeric[safe]
    finite = np.isfinite(samples.value)
    # a bad-quality sample often has no value at all; NaN there is how "no value" is stored
    nan_ok = registry.allow_nan[safe] | (samples.quality < 64)
    whole = ~registry.integral[safe] | ~finite | (samples.value == np.round(samples.value))
    in_bool = ~registry.boolean[safe] | ~finite | (samples.value == 0) | (samples.value == 1)
    not_future = samples.ts_us <= now_us + max_future_us
    ok = known & (finite | nan_ok) & whole & in_bool & not_future
    if ok.all():
        return samples, []
    letters: list[DeadLetter] = []
    for i in np.flatnonzero(~ok):
        t = int(tid[i])
        info = registry.by_id.get(t)
        name = info.name if info else None
        if not in_table[i] or info is None:
            reason = f"unknown tag id {t}"
        elif not known[i]:
            reason = f"wrong type: tag {name!r} is text, got a number"
        elif not not_future[i]:
            ahead = (int(samples.ts_us[i]) - now_us) / 1e6
            reason = f"timestamp {from_us(int(samples.ts_us[i])).isoformat()} is {ahead:.0f} s in the future"
        elif not (finite[i] or nan_ok[i]):
            reason = f"value {samples.value[i]} not allowed for tag {name!r} (allow_nan is off)"
        elif not in_bool[i]:
            reason = f"wrong type: tag {name!r} is bool, got {samples.value[i]}"
        else:
            reason = f"wrong type: tag {name!r} is int, got {samples.value[i]}"
        payload = samples.payload(int(i))
        if name:
            payload["tag"] = name
        letters.append(DeadLetter(reason, payload, _source_at(sections, int(i), 1) if sections else source))
    return samples.take(ok), letters


def _source_at(sections: Sequence[tuple[str, int, int]], index: int, column: int) -> str:
    """The source of row `index` of a batch of several sources (column 1: samples, 2: events)."""
    for section in sections:
        if index < section[column]:
            return section[0]
        index -= section[column]
    return ""


def dirty_span(samples: SampleBatch) -> tuple[list[int], int, int] | None:
    """The tags a batch touched and its first and last timestamp (µs), for the rollup refresher."""
    if len(samples) == 0:
        return None
    return np.unique(samples.tag_id).tolist(), int(samples.ts_us.min()), int(samples.ts_us.max())


_UNIQUE: dict[bytes, list[int]] = {}  # a section's tag ids (as bytes) -> the sorted distinct ids


def section_spans(samples: SampleBatch, sections: Sequence[tuple[str, int, int]]) -> list[tuple[list[int], int, int]]:
    """dirty_span of each source's rows of a batch of several sources (a backfill of one stays apart from the others).

    Every section's first and last timestamp in one numpy pass; a source polls the same tags
    every time, so the distinct tag ids of a section are looked up by its bytes, not sorted again.
    """
    bounds = []
    start = 0
    for _, rows, _ in sections:
        if rows:
            bounds.append((start, start + rows))
        start += rows
    if not bounds:
        return []
    starts = np.array([a for a, _ in bounds], dtype=np.intp)
    lo = np.minimum.reduceat(samples.ts_us, starts).tolist()
    hi = np.maximum.reduceat(samples.ts_us, starts).tolist()
    if len(_UNIQUE) > 10_000:  # bounded: tag sets that change all the time must not grow it forever
        _UNIQUE.clear()
    spans = []
    for (a, b), first, last in zip(bounds, lo, hi):
        ids = samples.tag_id[a:b]
        key = ids.tobytes()
        if (tags := _UNIQUE.get(key)) is None:
            tags = _UNIQUE[key] = np.unique(ids).tolist()
        spans.append((tags, first, last))
    return spans


def merge_spans(
    spans: list[tuple[list[int], int, int]], gap_us: int = MINUTE_US
) -> list[tuple[list[int], int, int]]:
    """Dirty spans with one mark per run of batches that touched the same tags within gap_us of each other.

    A poll's batches follow each other a few ms apart: one mark for the lot instead of one each,
    also when other sources' batches come in between (a record of the group commit holds every
    source's poll). A backfill and live data flushed together stay apart, so the refresher does
    not recompute every minute between them.
    """
    merged: list[tuple[list[int], int, int]] = []
    latest: dict[tuple[int, ...], int] = {}  # tags -> index in merged of their latest span
    for tags, lo, hi in spans:
        key = tuple(tags)
        at = latest.get(key)
        if at is not None:
            m_tags, m_lo, m_hi = merged[at]
            if lo <= m_hi + gap_us and hi >= m_lo - gap_us:
                merged[at] = (m_tags, min(m_lo, lo), max(m_hi, hi))
                continue
        latest[key] = len(merged)
        merged.append((tags, lo, hi))
    return merged


class HistorianWriter:
    """Async, batching, idempotent writer into samples/events with dead letters and backpressure."""

    def __init__(
        self,
        dsn: str,
        config: HistorianConfig | None = None,
        *,
        metrics: MetricsRegistry = METRICS,
    ) -> None:
        self._dsn = dsn
        self._config = config or HistorianConfig(dsn=dsn)
        self._queue: deque[_Pending] = deque()
        self._queued_rows = 0
        self._wake = asyncio.Event()
        self._space = asyncio.Condition()
        self._closing = False
        self._flush_now = False
        self._task: asyncio.Task[None] | None = None
        self._conn: psycopg.AsyncConnection | None = None
        self._registry = TagRegistry(())
        self._partitioned = False
        self._days_ready: set[int] = set()
        self._stage_ready = False
        self._literals: dict[tuple[int, ...], str] = {}  # tag ids -> their array literal, for rollup marks
        self._written = metrics.counter("shopfloor_historian_rows_written_total", "Samples and events committed")
        self._dupes = metrics.counter(
            "shopfloor_historian_duplicates_total", "Rows skipped because they were already stored (replays)"
        )
        self._dead = metrics.counter("shopfloor_historian_dead_letters_total", "Rows refused into dead_letters")
        self._flushes = metrics.counter("shopfloor_historian_flushes_total", "Committed flushes")
        self._errors = metrics.counter("shopfloor_historian_db_errors_total", "Failed flush attempts")
        self._flush_seconds = metrics.counter(
            "shopfloor_historian_flush_seconds_total", "Seconds spent committing flushes"
        )
        metrics.gauge("shopfloor_historian_queued_rows", "Rows waiting to be committed", lambda: self._queued_rows)

    @property
    def registry(self) -> TagRegistry:
        """The tag registry this writer validates against."""
        return self._registry

    @property
    def queued_rows(self) -> int:
        """Rows submitted and not yet acknowledged."""
        return self._queued_rows

    async def __aenter__(self) -> HistorianWriter:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self) -> None:
        """Connect, read the tag registry and start the flush loop."""
        await self._ensure_connection()
        self._task = asyncio.create_task(self._run(), name="historian-writer")

    async def close(self) -> None:
        """Commit everything queued, then stop."""
        self._closing = True
        self._wake.set()
        if self._task is not None:
            await self._task
            self._task = None
        if self._conn is not None:
            await self._conn.close()
            self._conn = None

    async def reload_registry(self) -> TagRegistry:
        """Re-read the tags (after tags were registered elsewhere)."""
        conn = await self._ensure_connection()
        self._registry = await load_registry(conn)
        return self._registry

    async def submit(self, batch: Batch) -> asyncio.Future[WriteResult]:
        """Queue a batch, waiting while the queue is full; the future resolves after its commit."""
        if self._closing:
            raise WriterClosedError("the writer is closing; no new batches")
        rows = len(batch)
        async with self._space:
            # a batch larger than the whole queue still goes in, alone
            await self._space.wait_for(
                lambda: self._queued_rows == 0 or self._queued_rows + rows <= self._config.max_pending_rows
            )
            future: asyncio.Future[WriteResult] = asyncio.get_running_loop().create_future()
            self._queue.append(_Pending(batch, future, time.monotonic()))
            self._queued_rows += rows
        if self._queued_rows >= self._config.flush_rows or len(self._queue) == 1:
            self._wake.set()
        return future

    async def write(self, batch: Batch) -> WriteResult:
        """Submit a batch and wait for its commit."""
        return await (await self.submit(batch))

    async def write_records(self, records: Iterable[Sample], source: str = "") -> WriteResult:
        """Write Sample records (by tag name), refusing unknown tags and wrong types into dead letters."""
        records = list(records)
        if any(r.tag not in self._registry.by_name for r in records):
            await self.reload_registry()
        return await self.write(self._registry.to_batch(records, source))

    async def flush(self) -> None:
        """Commit everything queued now and wait until it is committed."""
        futures = [p.future for p in self._queue]
        self._flush_now = True
        self._wake.set()
        if futures:
            await asyncio.gather(*futures, return_exceptions=True)

    # -- the flush loop ---------------------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            if not self._queue:
                if self._closing:
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            age = time.monotonic() - self._queue[0].enqueued
            due = (
                self._closing
                or self._flush_now
                or self._queued_rows >= self._config.flush_rows
                or age >= self._config.flush_interval
            )
            if not due:
                self._wake.clear()
                try:
                    await asyncio.wait_for(self._wake.wait(), self._config.flush_interval - age)
                except TimeoutError:
                    pass
                continue
            taken: list[_Pending] = []
            rows = 0
            while self._queue and (not taken or rows + len(self._queue[0].batch) <= self._config.flush_rows):
                p = self._queue.popleft()
                taken.append(p)
                rows += len(p.batch)
            if not self._queue:
                self._flush_now = False
            await self._flush(taken)
            async with self._space:
                self._queued_rows -= rows
                self._space.notify_all()

    async def _flush(self, taken: list[_Pending]) -> None:
        delay = 0.2
        while True:
            try:
                results = await self._commit_all(taken)
                break
            except (psycopg.OperationalError, pg_errors.AdminShutdown, OSError) as e:
                # the database is away: keep the batches (the callers' spools wait) and try again
                self._errors.inc()
                log.warning("historian unreachable, retrying", extra={"action": "flush_retry", "error": str(e)})
                await self._drop_connection()
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
            except psycopg.Error as e:
                # not the connection: find the batch that fails and dead-letter it, commit the others
                self._errors.inc()
                log.error("flush failed, committing batch by batch", extra={"action": "flush_split", "error": str(e)})
                results = [await self._commit_alone(p) for p in taken]
                break
        for p, r in zip(taken, results):
            if not p.future.done():
                p.future.set_result(r)

    async def _commit_alone(self, p: _Pending) -> WriteResult:
        try:
            return (await self._commit_all([p]))[0]
        except (psycopg.OperationalError, OSError):
            raise
        except psycopg.Error as e:
            await self._rollback()
            letters = _batch_as_letters(p.batch, f"database refused the batch: {e}".strip())
            conn = await self._ensure_connection()
            async with conn.transaction():
                await self._insert_dead_letters(conn, letters)
            self._dead.inc(len(letters))
            return WriteResult(0, 0, len(letters))

    async def _commit_all(self, taken: list[_Pending]) -> list[WriteResult]:
        conn = await self._ensure_connection()
        t0 = time.perf_counter()
        now_us = time.time_ns() // 1000
        max_future_us = int(self._config.max_future * 1e6)
        checked: list[tuple[SampleBatch, list[Event], list[DeadLetter]]] = []
        spans: list[tuple[list[int], int, int]] = []
        for p in taken:
            b = p.batch
            good, letters = validate(b.samples, self._registry, now_us, max_future_us, b.source, b.sections)
            if letters and any("unknown tag id" in d.reason for d in letters):
                # a tag registered after we last looked: read the registry once more before refusing
                self._registry = await load_registry(conn)
                good, letters = validate(b.samples, self._registry, now_us, max_future_us, b.source, b.sections)
            events, event_letters = self._check_events(b.events, now_us, max_future_us, b.source, b.sections)
            checked.append((good, events, b.rejects + letters + event_letters))
            if b.sections:
                # per source, from the rows as submitted: a refused row may mark its minute too
                # (refreshing a minute with nothing new in it is harmless)
                spans.extend(section_spans(b.samples, b.sections))
            elif (span := dirty_span(good)) is not None:
                spans.append(span)

        samples = SampleBatch.concat([c[0] for c in checked])
        events = [e for c in checked for e in c[1]]
        letters = [d for c in checked for d in c[2]]
        if self._partitioned:
            await self._ensure_days(conn, samples, events)

        parts = [c[0] for c in checked]
        try:
            per_batch, per_batch_events = await self._commit_rows(conn, samples, parts, checked, letters, spans,
                                                                  False)
        except pg_errors.UniqueViolation:
            # some rows are stored already (a replay): go again through staging, skipping them
            per_batch, per_batch_events = await self._commit_rows(conn, samples, parts, checked, letters, spans,
                                                                  True)

        results = [
            WriteResult(n + ne, len(s) + len(e) - n - ne, len(d))
            for n, ne, (s, e, d) in zip(per_batch, per_batch_events, checked)
        ]
        self._written.inc(sum(r.written for r in results))
        self._dupes.inc(sum(r.duplicates for r in results))
        self._dead.inc(len(letters))
        self._flushes.inc()
        self._flush_seconds.inc(time.perf_counter() - t0)
        return results

    def _check_events(
        self, events: list[Event], now_us: int, max_future_us: int, source: str,
        sections: Sequence[tuple[str, int, int]] = (),
    ) -> tuple[list[Event], list[DeadLetter]]:
        good: list[Event] = []
        letters: list[DeadLetter] = []
        for i, e in enumerate(events):
            info = self._registry.by_id.get(e.tag_id)
            payload = {"tag_id": e.tag_id, "ts": from_us(e.ts_us).isoformat(), "value": e.value, "quality": e.quality}
            whose = _source_at(sections, i, 2) if sections else source
            if info is None or info.data_type != "text":
                letters.append(DeadLetter(f"unknown text tag id {e.tag_id}", payload, whose))
            elif e.ts_us > now_us + max_future_us:
                letters.append(DeadLetter(f"timestamp {payload['ts']} is in the future", payload, whose))
            else:
                good.append(e)
        return good, letters

    async def _commit_rows(
        self,
        conn: psycopg.AsyncConnection,
        samples: SampleBatch,
        parts: list[SampleBatch],
        checked: list[tuple[SampleBatch, list[Event], list[DeadLetter]]],
        letters: list[DeadLetter],
        spans: list[tuple[list[int], int, int]],
        staged: bool,
    ) -> tuple[list[int], list[int]]:
        """One transaction: samples, events, rollup marks and dead letters; rows added per batch."""
        async with conn.transaction():
            if staged:
                per_batch = await self._copy_staged(conn, parts)
            else:
                # first statement of the transaction, without a savepoint (a subtransaction
                # slows COPY): if it meets a stored row, the whole transaction is retried staged
                await self._copy(conn, "samples", samples)
                per_batch = [len(p) for p in parts]
            per_batch_events = [await self._insert_events(conn, c[1]) for c in checked]
            await self._mark_dirty(conn, spans)
            await self._insert_dead_letters(conn, letters)
        return per_batch, per_batch_events

    async def _copy(self, conn: psycopg.AsyncConnection, table: str, samples: SampleBatch) -> None:
        if len(samples) == 0:
            return
        async with conn.cursor() as cur:
            async with cur.copy(_COPY_SAMPLES.format(table=table)) as copy:
                await copy.write(samples.to_copy_binary())

    async def _copy_staged(self, conn: psycopg.AsyncConnection, parts: list[SampleBatch]) -> list[int]:
        """Insert each part through a staging table with ON CONFLICT DO NOTHING; rows added per part."""
        await self._ensure_stage(conn)
        counts = []
        async with conn.cursor() as cur:
            for part in parts:
                if len(part) == 0:
                    counts.append(0)
                    continue
                await cur.execute("TRUNCATE sf_stage_samples")
                await self._copy(conn, "sf_stage_samples", part)
                await cur.execute(
                    """INSERT INTO samples (tag_id, ts, value, quality)
                       SELECT DISTINCT ON (tag_id, ts) tag_id, ts, value, quality FROM sf_stage_samples
                       ORDER BY tag_id, ts
                       ON CONFLICT (tag_id, ts) DO NOTHING"""
                )
                counts.append(max(cur.rowcount, 0))
        return counts

    async def _insert_events(self, conn: psycopg.AsyncConnection, events: list[Event]) -> int:
        if not events:
            return 0
        await self._ensure_stage(conn)
        async with conn.cursor() as cur:
            await cur.execute("TRUNCATE sf_stage_events")
            async with cur.copy("COPY sf_stage_events (tag_id, ts, value, quality) FROM STDIN") as copy:
                for e in events:
                    await copy.write_row((e.tag_id, from_us(e.ts_us), e.value, e.quality))
            await cur.execute(
                """INSERT INTO events (tag_id, ts, value, quality)
                   SELECT DISTINCT ON (tag_id, ts) tag_id, ts, value, quality FROM sf_stage_events
                   ORDER BY tag_id, ts
                   ON CONFLICT (tag_id, ts) DO NOTHING"""
            )
            return max(cur.rowcount, 0)

    async def _mark_dirty(self, conn: psycopg.AsyncConnection, spans: list[tuple[list[int], int, int]]) -> None:
        # marks per run of neighbouring batches, not per flush: a backfill and live data flushed
        # together must not mark every minute between them
        spans = merge_spans(spans)
        if not spans:
            return
        # one statement, the tag lists as array literals: psycopg's list dumper, one Python call per
        # tag id, was a seventh of the gateway's CPU with 50 sources (a span each) per flush; a
        # source polls the same tags every time, so each list's literal is made once
        literals = self._literals
        if len(literals) > 10_000:  # bounded: tag sets that change all the time must not grow it forever
            literals.clear()
        texts = []
        for tags, _, _ in spans:
            key = tuple(tags)
            if (text := literals.get(key)) is None:
                text = literals[key] = f"{{{','.join(map(str, tags))}}}"
            texts.append(text)
        # every column as one array literal too (µs since the epoch, turned into timestamps exactly by
        # integer interval arithmetic): psycopg's list dumper per element cost more than the rest of the mark
        await conn.execute(
            "INSERT INTO rollup_dirty (tag_ids, lo, hi)"
            " SELECT t::int[], timestamptz 'epoch' + l * interval '1 microsecond',"
            " timestamptz 'epoch' + h * interval '1 microsecond'"
            " FROM unnest(%s::text[], %s::int8[], %s::int8[]) AS u(t, l, h)",
            ("{" + ",".join([f'"{t}"' for t in texts]) + "}",
             "{" + ",".join([str(lo) for _, lo, _ in spans]) + "}",
             "{" + ",".join([str(hi) for _, _, hi in spans]) + "}"),
        )

    async def _insert_dead_letters(self, conn: psycopg.AsyncConnection, letters: list[DeadLetter]) -> None:
        if not letters:
            return
        async with conn.cursor() as cur:
            await cur.executemany(
                # the same refused row again (a replay, a lost acknowledgement) is stored once
                "INSERT INTO dead_letters (source, reason, payload) VALUES (%s, %s, %s)"
                " ON CONFLICT (letter_key) DO NOTHING",
                [(d.source, d.reason, Jsonb(d.payload)) for d in letters],
            )
        log.info("dead-lettered rows", extra={"action": "dead_letter", "count": len(letters)})

    async def _ensure_stage(self, conn: psycopg.AsyncConnection) -> None:
        if self._stage_ready:
            return
        await conn.execute(
            """CREATE TEMP TABLE IF NOT EXISTS sf_stage_samples
                 (tag_id integer, ts timestamptz, value double precision, quality smallint)"""
        )
        await conn.execute(
            """CREATE TEMP TABLE IF NOT EXISTS sf_stage_events
                 (tag_id integer, ts timestamptz, value text, quality smallint)"""
        )
        self._stage_ready = True

    async def _ensure_days(self, conn: psycopg.AsyncConnection, samples: SampleBatch, events: list[Event]) -> None:
        days = set(np.unique(samples.ts_us // DAY_US).tolist()) | {e.ts_us // DAY_US for e in events}
        missing = sorted(days - self._days_ready)
        for day in missing:
            # outside the data transaction: creating a partition locks the parent table
            d = from_us(day * DAY_US).date()
            for table in ("samples", "events"):
                await conn.execute("SELECT sf_ensure_partitions(%s, %s, %s)", (table, d, d))
            self._days_ready.add(day)

    async def _ensure_connection(self) -> psycopg.AsyncConnection:
        if self._conn is None or self._conn.closed:
            self._conn = await connect(self._dsn)
            self._stage_ready = False
            self._partitioned = await backend(self._conn) == "postgresql"
            self._registry = await load_registry(self._conn)
        return self._conn

    async def _drop_connection(self) -> None:
        if self._conn is not None:
            try:
                await self._conn.close()
            except Exception:  # noqa: BLE001 - it is already broken; we only want it gone
                pass
            self._conn = None

    async def _rollback(self) -> None:
        if self._conn is not None and not self._conn.closed:
            await self._conn.rollback()


def _batch_as_letters(batch: Batch, reason: str) -> list[DeadLetter]:
    letters = [DeadLetter(reason, batch.samples.payload(i), batch.source) for i in range(len(batch.samples))]
    letters += [
        DeadLetter(
            reason,
            {"tag_id": e.tag_id, "ts": from_us(e.ts_us).isoformat(), "value": e.value, "quality": e.quality},
            batch.source,
        )
        for e in batch.events
    ]
    return letters + batch.rejects
