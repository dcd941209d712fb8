"""The sink sources publish into: exception reporting, then the durable spool."""

from __future__ import annotations

from typing import Any, Sequence

from gateway.exception import ExceptionFilter
from gateway.records import SpooledLetter, SpoolRecord, encode
from gateway.source import Reading, ReadingColumns, SourceStatus
from gateway.spool import Spool


class SpoolSink:
    """A Sink for one source: readings pass the exception filter and land durably in the spool.

    The source keeps its own counters in its status; the sink does not count again.
    """

    def __init__(self, spool: Spool, status: SourceStatus, exceptions: ExceptionFilter) -> None:
        self._spool = spool
        self._status = status
        self._filter = exceptions

    async def publish(self, readings: Sequence[Reading]) -> None:
        """Stamp readings without a device time, filter, and spool them; returns once on disk."""
        await self.publish_columns(ReadingColumns.of(readings))

    async def publish_columns(self, columns: ReadingColumns) -> None:
        """Filter readings already in columns and spool them; returns once on disk."""
        tags, values, ts_us, quality = columns.tags, columns.values, columns.ts_us, columns.quality
        if self._filter.active:
            keep = self._filter.keep
            rows = [row for row in zip(tags, values, ts_us, quality) if keep(*row)]
            tags, values, ts_us, quality = (list(c) for c in zip(*rows)) if rows else ([], [], [], [])
        if tags:
            await self._spool.append(encode(SpoolRecord(self._status.name, tags, ts_us, values, quality)))

    async def dead_letter(self, reason: str, payload: dict[str, Any]) -> None:
        """Spool something unusable with the reason."""
        await self._spool.append(encode(SpoolRecord(self._status.name, letters=[SpooledLetter(reason, payload)])))

