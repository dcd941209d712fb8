"""The camera_folder source: scans its folder on an interval and hands each complete image to the inspection room.

Inspections go straight to the historian's inspections table (they are rows with images, not tag samples);
a database outage is reported in the status and retried, and no file is lost meanwhile: it stays in the folder.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from pathlib import Path

from gateway.camera.config import CameraFolderSourceConfig
from gateway.source import NotWritableError, Sink, SourceStatus
from historian.db import connect
from inspection.store import image_root, sweep
from inspection.watcher import FolderWatcher, WatchSettings

log = logging.getLogger(__name__)
SWEEP_S = 600.0


class CameraFolderSource:
    """A gateway source over one camera folder."""

    def __init__(self, config: CameraFolderSourceConfig) -> None:
        self.config = config
        self.name = config.name
        self.status = SourceStatus(config.name, "camera_folder")
        self.watcher = FolderWatcher(WatchSettings(config.name, Path(config.folder), config.station, config.after,
                                                   config.poll_interval, config.lot, config.operation))

    async def run(self, sink: Sink) -> None:
        """Scan until cancelled; reconnect to the database with backoff after a failure."""
        dsn = self.config.dsn or os.environ.get("SHOPFLOOR_DSN", "")
        backoff = 1.0
        while True:
            try:
                conn = await connect(dsn)
                try:
                    self.status.connected = True
                    self.status.recovered()
                    backoff = 1.0
                    swept = 0.0
                    while True:
                        if time.monotonic() - swept > SWEEP_S:  # retention per station, now and then
                            await sweep(conn, image_root())
                            swept = time.monotonic()
                        outcome = await self.watcher.scan(conn)
                        self.status.readings_total += len(outcome.inspected)
                        self.status.dead_letters_total += len(outcome.rejected)
                        await asyncio.sleep(self.config.poll_interval)
                finally:
                    self.status.connected = False
                    await conn.close()
            except asyncio.CancelledError:
                raise
            except Exception as e:  # any failure: report, back off, rescan (files wait in the folder)
                self.status.error(f"{type(e).__name__}: {e}")
                self.status.reconnects_total += 1
                log.warning("camera source failed", extra={"action": "camera_retry", "source": self.name})
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 30.0)

    async def write(self, tag: str, value: float | int | bool | str) -> None:
        """A camera folder has no writable tags."""
        raise NotWritableError(f"{self.name}: a camera folder source has no writable tags")
