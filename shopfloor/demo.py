"""The demo: the simulated plant, the gateway reading it, the historian, the twin and the API, in one process.

It owns what it starts: on Ctrl-C, SIGTERM or a crash of any part it stops the API, the twin, the gateway,
the plant and the embedded PostgreSQL, and says so. Its state (database, spool) stays for the next start.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import signal
import socket
from collections.abc import Iterator
from pathlib import Path

import msgspec
import uvicorn

from web.app import create_app
from web.users import first_user
from api.config import ApiUser
from gateway.camera.config import CameraFolderSourceConfig
from gateway.config import GatewayConfig
from gateway.service import Gateway
from historian.db import connect
from historian.embedded import EmbeddedPostgres, default_state_dir
from historian.maintenance import run_maintenance
from historian.migrate import migrate
from inspection.config import sync_stations
from plant.run import Plant
from shopfloor.config import Config, PlantConfig
from shopfloor.demo_mes import seed as seed_mes
from shopfloor.demo_mes import seed_energy_meters
from shopfloor.demo_plant import ENERGY_TAGS, demo_gateway, demo_inspection, demo_twin
from twin.config import TwinConfig
from twin.service import TwinService

log = logging.getLogger(__name__)


class DemoFailed(Exception):
    """A part of the demo stopped with an error; everything else was stopped."""


class _Api(uvicorn.Server):
    """uvicorn without its own signal handling: the demo stops the API as one of its parts."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        """The demo handles SIGINT and SIGTERM itself."""
        yield


async def _serve_api(api: _Api) -> None:
    try:
        await api.serve()
    except SystemExit as e:  # uvicorn exits the process when it cannot start; the demo stops its parts instead
        raise RuntimeError(f"the API server could not start (exit status {e.code}; see above)") from None


def _reachable(host: str, port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=1.0):
        return True
    return False


def _twin_config(config: Config, broker: bool) -> TwinConfig:
    twin = config.twin if config.twin.machines else demo_twin()
    if broker:
        return twin
    # the oven's tags come from its Sparkplug birth: without a broker the twin would wait for them forever
    machines = [m for m in twin.machines if m.name != "oven1"]
    print("no MQTT broker at {}:{}: oven1 is left out of the twin (`scripts/services up` starts Mosquitto)".format(
        config.plant.mqtt_host, config.plant.mqtt_port))
    return msgspec.structs.replace(twin, machines=machines)


def _under(state: Path, folder: str) -> str:
    """A relative folder of the demo's camera is under its state folder (beside its database and spool)."""
    return folder if not folder or Path(folder).is_absolute() else str(state / folder)


def _plant(p: PlantConfig, state: Path) -> PlantConfig:
    """The plant's settings with its camera folder resolved."""
    return msgspec.structs.replace(p, camera_folder=_under(state, p.camera_folder))


def _cameras(gateway: GatewayConfig, state: Path, dsn: str) -> GatewayConfig:
    """Camera folders under the state folder, judged into the demo's database (the embedded one has no env DSN)."""
    sources = [msgspec.structs.replace(s, folder=_under(state, s.folder), dsn=s.dsn or dsn)
               if isinstance(s, CameraFolderSourceConfig) else s for s in gateway.sources]
    return msgspec.structs.replace(gateway, sources=sources)


async def run(config: Config) -> None:
    """Start the database (embedded unless configured), the plant, the gateway, the twin and the API; stop them all
    on SIGINT/SIGTERM or when one of them fails (DemoFailed)."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    state = default_state_dir()
    server: EmbeddedPostgres | None = None
    stopped: list[str] = []
    if _reachable(config.api.host, config.api.port):
        raise DemoFailed(f"{config.api.host}:{config.api.port} is taken by another program; set api.port in "
                         "shopfloor.toml")
    try:
        dsn = config.historian.dsn
        if not dsn:
            server = EmbeddedPostgres(state, config.historian.embedded_port)
            dsn = await asyncio.to_thread(server.start)
            print(f"embedded PostgreSQL: {dsn} (data in {server.data_dir}; kept for the next start)")
        if stop.is_set():
            return
        await _prepare(dsn, config)
        await _serve(config, dsn, state, stop, stopped)
    except DemoFailed:
        raise
    except Exception as e:  # a crash while starting: stop what runs, then say what went wrong in one line
        log.debug("demo failed", exc_info=True)
        raise DemoFailed(f"{type(e).__name__}: {e}") from e
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        if server is not None:
            await asyncio.to_thread(server.stop)
            stopped.append("embedded PostgreSQL")
        print(f"shopfloor demo: stopped {', '.join(stopped) or 'nothing (nothing had started)'}", flush=True)


async def _prepare(dsn: str, config: Config) -> None:
    conn = await connect(dsn)
    try:
        applied = await migrate(conn)
        await sync_stations(conn, config.inspection if config.inspection.stations else demo_inspection(config.plant))
        await seed_mes(conn, speed=config.plant.speedup)
        password = await first_user(conn, "demo", "admin")
        if password:
            print(f"command center user 'demo' (admin) created; its password: {password} "
                  "(`shopfloor users` adds others)")
    finally:
        await conn.close()
    if applied:
        print(f"migrations applied: {', '.join(applied)}")


async def _serve(config: Config, dsn: str, state, stop: asyncio.Event, stopped: list[str]) -> None:  # type: ignore[no-untyped-def]
    p = config.plant
    gateway_config = _cameras(config.gateway if config.gateway.sources else demo_gateway(p), state, dsn)
    p = _plant(p, state)
    if not config.api.users:
        # a key for this run only, so write-back can be tried without editing a file
        config.api.users = [ApiUser(name="demo-operator", key=secrets.token_urlsafe(24), role="operator")]
        print(f"demo operator API key (this run only): {config.api.users[0].key}")
    app = create_app(dsn, config.api, scheduling=config.scheduling)
    api = _Api(uvicorn.Config(app, host=config.api.host, port=config.api.port, log_level="warning"))
    base = f"http://{config.api.host}:{config.api.port}"
    async with Plant(p.settings()) as plant:
        print(f"plant at {p.speedup:g}x time: OPC UA {plant.opcua.endpoint}, Modbus TCP 127.0.0.1:{p.modbus_port}, "
              f"Sparkplug B group 'plant' on {p.mqtt_host}:{p.mqtt_port}"
              + (f", camera on {p.camera_machine} into {p.camera_folder}" if p.camera_folder else ""))
        twin = TwinService(_twin_config(config, _reachable(p.mqtt_host, p.mqtt_port)), dsn)
        gateway = Gateway(gateway_config, dsn, config.historian, state / "gateway", tap=twin.observe)
        parts = {
            "plant": asyncio.create_task(plant.run(), name="plant"),
            "gateway": asyncio.create_task(gateway.run(), name="gateway"),
            "twin": asyncio.create_task(twin.run(), name="twin"),
            "maintenance": asyncio.create_task(run_maintenance(dsn, config.historian), name="maintenance"),
            "API": asyncio.create_task(_serve_api(api), name="api"),
        }
        meters = asyncio.create_task(seed_energy_meters(dsn, ENERGY_TAGS))
        stopping = asyncio.create_task(stop.wait())
        print(f"command center: {base}/  (sign in; live over {base}/api/v1/stream)")
        print(f"API: {base}/api/v1/machines  {base}/api/v1/alarms  {base}/api/v1/tags/latest  {base}/api/v1/sources  "
              f"{base}/metrics  docs: {base}/schema/swagger")
        print(f"SQL: psql {dsn} -c 'SELECT * FROM samples_named ORDER BY ts DESC LIMIT 10'")
        print("Ctrl-C stops the demo and everything it started", flush=True)
        failed: list[str] = []
        try:
            done, _ = await asyncio.wait([stopping, *parts.values()], return_when=asyncio.FIRST_COMPLETED)
            failed = [f"{name}: {t.exception()!r}" if t.exception() else f"{name} ended"
                      for name, t in parts.items() if t in done]
        finally:
            api.should_exit = True
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.wait_for(asyncio.shield(parts.pop("API")), 10)
            stopped.append("API")
            for t in [*parts.values(), meters, stopping]:
                t.cancel()
            for name, t in [*parts.items(), ("energy meters", meters), ("signals", stopping)]:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await t
                if name in parts:
                    stopped.append(name)
        if failed:
            raise DemoFailed("; ".join(failed))
    stopped.append("plant devices")
