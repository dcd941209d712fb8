"""Readings on their way from a source to its sink, so reading the device never waits for the disk."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any, Coroutine, Iterable

from gateway.cancel import honour_cancellation
from gateway.source import Reading, ReadingColumns, Sink, SourceStatus

log = logging.getLogger(__name__)

_PAUSE_AT_BATCHES = 4


def check_settings(batch_size: int, batch_interval: float, max_pending: int) -> None:
    """ValueError naming the setting when an outbox cannot work with these."""
    if not batch_interval > 0:
        raise ValueError(f"batch_interval: must be > 0, got {batch_interval}")
    if batch_size < 1:
        raise ValueError(f"batch_size: must be >= 1, got {batch_size}")
    if max_pending < batch_size:
        raise ValueError(f"max_pending: must be >= batch_size ({batch_size}), got {max_pending}")


class Outbox:
    """put() never waits; run() publishes as soon as batch_size readings wait, or batch_interval after the first came.

    For sources with nothing to acknowledge to the device (polls, OPC UA notifications): the next
    read overlaps the previous batch's fsync instead of waiting for it. Sources that can pause
    await wait_for_room() after putting; the others rely on max_pending, dropping (and counting)
    the oldest readings beyond it. Readings wait as columns, so a poll's whole response goes in
    with put_columns() without an object per value. A source that hands numeric readings to the
    sink itself (OPC UA's put_points, which does not wait) says so with handed_over(): the next
    flush waits until they are on disk, so a spool that cannot write stops the source as a
    failed publish does, and a run cancelled mid-way still leaves what was read on disk.
    """

    def __init__(
        self, sink: Sink, status: SourceStatus, *, batch_size: int, batch_interval: float, max_pending: int
    ) -> None:
        self.sink = sink
        self.status = status
        self.batch_size = batch_size
        self.batch_interval = batch_interval
        self.max_pending = max_pending
        self.dropped = 0
        self._waiting = ReadingColumns()
        self._inflight: ReadingColumns | None = None
        self._dead: list[tuple[str, dict[str, Any]]] = []
        self._handed = 0
        self._ready = asyncio.Event()
        self._full = asyncio.Event()
        self._room = asyncio.Event()

    def put(self, reading: Reading) -> None:
        """Queue a reading, stamped now if the device gave no time; past max_pending the oldest is dropped."""
        self._waiting.add(reading, time.time_ns() // 1000)  # received now, spooled later: stamp it now
        self._queued()

    def put_many(self, readings: Iterable[Reading]) -> None:
        """Queue readings in order, as put() does one."""
        self._waiting.add_readings(readings)
        self._queued()

    def put_columns(self, columns: ReadingColumns) -> None:
        """Queue readings already in columns (stamped), in order."""
        self._waiting.extend(columns)
        self._queued()

    def handed_over(self, n: int) -> None:
        """Note n readings the source handed to the sink itself, not yet known to be on disk."""
        self._handed += n
        self._ready.set()

    @property
    def handed(self) -> int:
        """Readings handed to the sink by the source itself that the last flush did not yet see on disk."""
        return self._handed

    def _queued(self) -> None:
        if (excess := len(self._waiting) - self.max_pending) > 0:
            self._drop(excess)
        if self._waiting:
            self._ready.set()
            if len(self._waiting) >= self.batch_size:
                self._full.set()

    async def wait_for_room(self) -> None:
        """Wait while several batches are queued: a source that can pause (a poll) slows down instead of dropping."""
        while len(self._waiting) >= _PAUSE_AT_BATCHES * self.batch_size:
            self._room.clear()
            await self._room.wait()

    def put_dead(self, reason: str, payload: dict[str, Any]) -> None:
        """Queue something that is not a reading, for the dead letters."""
        self._dead.append((reason, payload))
        self._ready.set()

    async def run(self) -> None:
        """Publish forever: as soon as batch_size readings wait, or batch_interval after the first one came."""
        while True:
            await self._ready.wait()
            if not self._full.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._full.wait(), self.batch_interval)
                honour_cancellation()
            await self.flush(everything=False)

    async def flush(self, everything: bool = True) -> None:
        """Publish what is queued now; after run() is cancelled, call it once more so nothing stays behind.

        With everything=False (the run loop), what came in during the publish goes too only while
        it makes a whole batch: the rest waits for the next batch_interval, so a fast source makes
        one record (one fsync) per batch_size readings, not one per fsync's worth.
        """
        self._ready.clear()
        self._full.clear()
        dead, self._dead = self._dead, []
        for reason, payload in dead:
            await self.sink.dead_letter(reason, payload)
            self.status.dead_letters_total += 1
        first = True
        while self._inflight is not None or (
            self._waiting and (first or everything or len(self._waiting) >= self.batch_size)
        ):
            first = False
            if self._inflight is None:
                # everything queued goes in one record: one fsync, however much came in while the last one ran
                self._inflight, self._waiting = self._waiting, ReadingColumns()
                self._room.set()
            # kept until published: if run() is cancelled mid-publish, the final flush() sends it again
            # (the historian drops what arrives twice; nothing is lost)
            await self.sink.publish_columns(self._inflight)
            self.status.readings_total += len(self._inflight)
            self._inflight = None
        if self._handed:
            # what was handed over before this wait is on disk once it returns (the sink counts it)
            n = self._handed
            await self.sink.durable()  # type: ignore[attr-defined]
            self._handed -= n

    def _drop(self, n: int) -> None:
        self._waiting.drop_first(n)
        before, self.dropped = self.dropped, self.dropped + n
        if before == 0 or before // 10_000 != self.dropped // 10_000:
            self.status.error(f"the sink is too slow: {self.dropped} readings dropped so far")
            log.warning("%s: %s", self.status.name, self.status.last_error)


async def run_beside(outbox: Outbox, work: Coroutine[Any, Any, None], name: str) -> None:
    """Run the outbox's publisher beside a source's work until cancelled; on the way out publish what is left.

    Only the sink can end the publisher (a spool that cannot write): its error is raised as itself.
    """
    try:
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(outbox.run(), name=f"{name}:publish")
            tasks.create_task(work, name=name)
    except asyncio.CancelledError:
        await outbox.flush()  # what was read before the stop still reaches the spool
        raise
    except BaseExceptionGroup as group:
        if len(group.exceptions) == 1:
            raise group.exceptions[0] from None
        raise
