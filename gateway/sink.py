"""The sink sources publish into: exception reporting, then the durable spool."""

from __future__ import annotations

import time
from typing import Any, Sequence

from gateway.exception import ExceptionFilter
from gateway.records import SpooledLetter, SpoolRecord, encode
from gateway.source import Reading, SourceStatus
from gateway.spool import Spool
from historian.samples import to_us


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
        now_us = time.time_ns() // 1000
        ts_us = [
            now_us if (ts := r.source_ts) is None else ts if type(ts) is int else to_us(ts) for r in readings
        ]
        tags = [r.tag for r in readings]
        values = [r.value for r in readings]
        quality = [int(r.quality) for r in readings]
        if self._filter.active:
            keep = self._filter.keep
            rows = [row for row in zip(tags, values, ts_us, quality) if keep(*row)]
            tags, values, ts_us, quality = (list(c) for c in zip(*rows)) if rows else ([], [], [], [])
        if tags:
            await self._spool.append(encode(SpoolRecord(self._status.name, tags, ts_us, values, quality)))

    async def dead_letter(self, reason: str, payload: dict[str, Any]) -> None:
        """Spool something unusable with the reason."""
        await self._spool.append(encode(SpoolRecord(self._status.name, letters=[SpooledLetter(reason, payload)])))

