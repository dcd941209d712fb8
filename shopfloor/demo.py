"""The demo: historian and API on an embedded PostgreSQL, fed by replayed C-MAPSS engines."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import datetime, timezone

import uvicorn

from api.app import create_app
from historian.db import connect
from historian.embedded import EmbeddedPostgres, default_state_dir
from historian.maintenance import run_maintenance
from historian.migrate import migrate
from historian.registry import MachineSpec, TagSpec, register
from historian.samples import Sample
from historian.writer import HistorianWriter
from plant import cmapss
from shopfloor.config import Config

log = logging.getLogger(__name__)
ENGINES = 3


def demo_tags() -> tuple[list[TagSpec], list[MachineSpec]]:
    """One machine per replayed engine, one tag per degradation sensor."""
    machines = [MachineSpec(f"engine{u}", line="test-cell", description=f"C-MAPSS FD001 unit {u}")
                for u in range(1, ENGINES + 1)]
    tags = [
        TagSpec(f"engine{u}.{s}", "machine", unit=unit, description=desc, machine=f"engine{u}", source="cmapss")
        for u in range(1, ENGINES + 1)
        for s, (desc, unit) in cmapss.SENSORS.items()
    ]
    tags += [TagSpec(f"engine{u}.cycle", "method", data_type="int", machine=f"engine{u}", source="cmapss")
             for u in range(1, ENGINES + 1)]
    return tags, machines


async def feed(writer: HistorianWriter, period: float = 1.0) -> None:
    """Replay one C-MAPSS cycle per engine every period seconds, looping at the end of life."""
    units = cmapss.read("FD001")[:ENGINES]
    step = 0
    while True:
        now = datetime.now(timezone.utc)
        records = []
        for u in units:
            row = step % len(u.data)
            records += [Sample(f"engine{u.unit}.{s}", now, float(u.column(s)[row])) for s in cmapss.SENSORS]
            records.append(Sample(f"engine{u.unit}.cycle", now, int(u.column("cycle")[row])))
        await writer.write_records(records, source="demo-feed")
        step += 1
        await asyncio.sleep(period)


async def run(config: Config) -> None:
    """Start the database (embedded unless configured), migrate, then serve until interrupted."""
    dsn = config.historian.dsn
    if not dsn:
        server = EmbeddedPostgres(default_state_dir(), config.historian.embedded_port)
        dsn = await asyncio.to_thread(server.start)
        print(f"embedded PostgreSQL: {dsn} (data in {server.data_dir})")
    conn = await connect(dsn)
    applied = await migrate(conn)
    if applied:
        print(f"migrations applied: {', '.join(applied)}")
    tags, machines = demo_tags()
    await register(conn, tags, machines)
    await conn.close()

    app = create_app(dsn)
    server_config = uvicorn.Config(app, host=config.api.host, port=config.api.port, log_level="warning")
    api = uvicorn.Server(server_config)
    base = f"http://{config.api.host}:{config.api.port}"
    print(f"API: {base}/api/v1/tags  {base}/health  {base}/metrics  docs: {base}/schema/swagger")
    print("SQL: psql " + dsn + " -c 'SELECT * FROM samples_named ORDER BY ts DESC LIMIT 10'")
    async with HistorianWriter(dsn, config.historian) as writer:
        tasks = [
            asyncio.create_task(feed(writer), name="demo-feed"),
            asyncio.create_task(run_maintenance(dsn, config.historian), name="maintenance"),
        ]
        try:
            await api.serve()
        finally:
            for t in tasks:
                t.cancel()
            for t in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await t
