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
        rows = []
        # readings of one message usually share one timestamp object: convert it once
        last_ts: object = None
        last_us = now_us
        for r in readings:
            ts = r.source_ts
            if ts is None:
                ts_us = now_us
            elif ts is last_ts:
                ts_us = last_us
            else:
                ts_us = last_us = to_us(ts)
                last_ts = ts
            rows.append((r.tag, ts_us, r.value, int(r.quality)))
        if self._filter.active:
            keep = self._filter.keep
            rows = [row for row in rows if keep(row[0], row[2], row[1], row[3])]
        if rows:
            await self._spool.append(encode(SpoolRecord(self._status.name, rows)))

    async def dead_letter(self, reason: str, payload: dict[str, Any]) -> None:
        """Spool something unusable with the reason."""
        await self._spool.append(encode(SpoolRecord(self._status.name, [], [SpooledLetter(reason, payload)])))
