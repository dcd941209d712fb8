"""The gateway process: sources -> exception filter -> spool -> historian writer, plus health and writes."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Awaitable, Callable

import psycopg

from gateway.config import GatewayConfig, SourceConfig
from gateway.exception import ExceptionFilter
from gateway.forwarder import forward
from gateway.records import count_samples
from gateway.sink import Collector, SpoolSink
from gateway.source import Source
from gateway.spool import Spool
from gateway.status import export_spool_metrics, publish_status
from gateway.tags import TagConfig
from gateway.writeback import serve_writes
from historian.config import HistorianConfig
from historian.db import connect
from historian.registry import TagSpec, register
from historian.samples import Batch
from historian.writer import HistorianWriter

log = logging.getLogger(__name__)


def build_source(config: SourceConfig) -> Source:
    """The adapter for one configured source."""
    from gateway.camera.config import CameraFolderSourceConfig
    from gateway.modbus.adapter import ModbusSource
    from gateway.modbus.config import ModbusSourceConfig
    from gateway.mqtt.adapter import MqttSource
    from gateway.mqtt.config import MqttSourceConfig
    from gateway.opcua.adapter import OpcUaSource

    if isinstance(config, ModbusSourceConfig):
        return ModbusSource(config)
    if isinstance(config, MqttSourceConfig):
        return MqttSource(config)
    if isinstance(config, CameraFolderSourceConfig):
        from gateway.camera.adapter import CameraFolderSource

        return CameraFolderSource(config)
    return OpcUaSource(config)


def source_tags(config: SourceConfig) -> list[TagConfig]:
    """The tags a source declares in its config (Sparkplug sources learn more from births)."""
    tags = list(getattr(config, "tags", []))
    for group in getattr(config, "sparkplug", []):
        tags.extend(group.metrics)
    return tags


def tag_specs(config: SourceConfig) -> list[TagSpec]:
    """Registry entries of a source's configured tags; Modbus gives no device time."""
    stamp = "gateway" if config.__class__.__name__.startswith("Modbus") else "device"
    return [t.spec(config.name, stamp) for t in source_tags(config)]


class Gateway:
    """Runs every configured source into one spool and forwards it to the historian."""

    def __init__(
        self,
        config: GatewayConfig,
        dsn: str,
        historian: HistorianConfig,
        state_dir: Path,
        tap: Callable[[Batch], None] | None = None,
    ) -> None:
        self.config = config
        self.tap = tap
        """Called with every batch the historian committed (the twin's feed)."""
        self.dsn = dsn
        self.historian = historian
        spool_dir = Path(config.spool.directory) if config.spool.directory else state_dir / "spool"
        self.spool = Spool(spool_dir, max_bytes=config.spool.max_bytes, segment_bytes=config.spool.segment_bytes,
                           fsync=config.spool.fsync, count_samples=count_samples)
        # group commit happens in the collector (one record per flush interval for every source),
        # so the spool itself fsyncs each record as soon as it is written
        self.collector = Collector(self.spool, config.spool.flush_interval, config.spool.flush_rows)
        self.sources: list[Source] = [build_source(s) for s in config.sources]
        for src, cfg in zip(self.sources, config.sources):
            src.status.tags_total = len(source_tags(cfg))
        self.collecting = asyncio.Event()
        """Set once the sources run (and spool), whether or not the database answers."""
        self.ready = asyncio.Event()
        """Set once the tags are registered and the spool is being forwarded to the historian."""

    async def register_tags(self) -> None:
        """Create or update every configured tag in the historian's registry."""
        specs = [spec for s in self.config.sources for spec in tag_specs(s)]
        if not specs:
            return
        conn = await connect(self.dsn)
        try:
            await register(conn, specs)
        finally:
            await conn.close()

    async def run(self) -> None:
        """Run sources, status and write-back at once, and the historian side as soon as the database answers.

        The sources spool from the first second even with the database away (after a reboot in
        an outage): tag registration and the writer's first connection are retried in the
        background, and what was spooled meanwhile is forwarded once they succeed.
        """
        export_spool_metrics(self.spool)
        owners = {t.name: src for src, cfg in zip(self.sources, self.config.sources)
                  for t in source_tags(cfg) if t.writable}
        try:
            async with asyncio.TaskGroup() as group:
                for src, cfg in zip(self.sources, self.config.sources):
                    sink = SpoolSink(self.spool, src.status, ExceptionFilter(source_tags(cfg)), self.collector)
                    group.create_task(src.run(sink), name=f"source:{src.name}")
                group.create_task(publish_status(self.dsn, [s.status for s in self.sources], self.spool,
                                                 every=self.config.status_interval), name="status")
                if owners:
                    group.create_task(serve_writes(self.dsn, owners), name="write-back")
                self.collecting.set()
                group.create_task(self._historian(), name="historian")
        finally:
            self.spool.close()

    async def _historian(self) -> None:
        """Register the tags and forward the spool, waiting for the database as long as it takes."""
        await _until_reachable(self.register_tags, "registering tags")
        writer = HistorianWriter(self.dsn, self.historian)
        await _until_reachable(writer.start, "connecting the historian writer")
        try:
            await _until_reachable(writer.reload_registry, "reading the tag registry")

            async def register_unknown(names: set[str]) -> None:
                # tags a source learned at run time (Sparkplug births) join the registry before their data
                specs = [tag.spec(src.name) for src in self.sources
                         for name, tag in getattr(src, "known_tags", dict)().items() if name in names]
                if specs:
                    conn = await connect(self.dsn)
                    try:
                        await register(conn, specs)
                    finally:
                        await conn.close()
                    await writer.reload_registry()

            self.ready.set()
            await forward(self.spool, writer, register_unknown, self.tap)
        finally:
            await writer.close()


async def _until_reachable(step: Callable[[], Awaitable[object]], what: str) -> None:
    """Run a database step, retrying with backoff (0.2 s doubling to 5 s) while the database is away."""
    delay = 0.2
    while True:
        try:
            await step()
            return
        except (psycopg.OperationalError, OSError) as e:
            log.warning("database unreachable; retrying", extra={"action": "db_retry", "step": what,
                                                                 "error": str(e), "retry_in": delay})
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)
