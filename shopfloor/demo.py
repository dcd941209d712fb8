"""The demo: the simulated plant, the gateway reading it, the historian and the API, in one process."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets

import uvicorn

from api.app import create_app
from api.config import ApiUser
from gateway.service import Gateway
from historian.db import connect
from historian.embedded import EmbeddedPostgres, default_state_dir
from historian.maintenance import run_maintenance
from historian.migrate import migrate
from plant.run import Plant
from shopfloor.config import Config
from shopfloor.demo_mes import seed as seed_mes
from shopfloor.demo_plant import demo_gateway, demo_twin
from twin.service import TwinService

log = logging.getLogger(__name__)


async def run(config: Config) -> None:
    """Start the database (embedded unless configured), the plant, the gateway and the API."""
    state = default_state_dir()
    dsn = config.historian.dsn
    if not dsn:
        server = EmbeddedPostgres(state, config.historian.embedded_port)
        dsn = await asyncio.to_thread(server.start)
        print(f"embedded PostgreSQL: {dsn} (data in {server.data_dir})")
    conn = await connect(dsn)
    applied = await migrate(conn)
    await seed_mes(conn)
    await conn.close()
    if applied:
        print(f"migrations applied: {', '.join(applied)}")

    p = config.plant
    settings = p.settings()
    gateway_config = config.gateway if config.gateway.sources else demo_gateway(p)
    users = list(config.api.users)
    if not users:
        # a key for this run only, so write-back can be tried without editing a file
        users = [ApiUser(name="demo-operator", key=secrets.token_urlsafe(24), role="operator")]
        print(f"demo operator API key (this run only): {users[0].key}")
    config.api.users = users

    app = create_app(dsn, config.api)
    api = uvicorn.Server(uvicorn.Config(app, host=config.api.host, port=config.api.port, log_level="warning"))
    base = f"http://{config.api.host}:{config.api.port}"
    async with Plant(settings) as plant:
        print(f"plant: OPC UA {plant.opcua.endpoint}, Modbus TCP 127.0.0.1:{p.modbus_port}, "
              f"Sparkplug B group 'plant' on {p.mqtt_host}:{p.mqtt_port}")
        twin = TwinService(config.twin if config.twin.machines else demo_twin(), dsn)
        gateway = Gateway(gateway_config, dsn, config.historian, state / "gateway", tap=twin.observe)
        tasks = [
            asyncio.create_task(plant.run(), name="plant"),
            asyncio.create_task(gateway.run(), name="gateway"),
            asyncio.create_task(twin.run(), name="twin"),
            asyncio.create_task(run_maintenance(dsn, config.historian), name="maintenance"),
        ]
        print(f"API: {base}/api/v1/machines  {base}/api/v1/alarms  {base}/api/v1/tags/latest  {base}/api/v1/sources  "
              f"{base}/metrics  docs: {base}/schema/swagger")
        print(f"SQL: psql {dsn} -c 'SELECT * FROM samples_named ORDER BY ts DESC LIMIT 10'")
        try:
            await api.serve()
        finally:
            for t in tasks:
                t.cancel()
            for t in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await t
