"""`shopfloor`: the command line of every part."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

from inspection import cli as vision_cli
from shopfloor import data_fetch, models_cli
from scheduling import cli as scheduling_cli
from shopfloor import api_cli, web_cli
from shopfloor.config import Config, ConfigError, load

_STOP_TIMEOUT_S = 10.0  # how long `gateway run` waits for its parts after Ctrl-C

PROJECT = Path(__file__).resolve().parent.parent


def _config(args: argparse.Namespace) -> Config:
    path = args.config
    if path is None and Path("shopfloor.toml").exists():
        path = Path("shopfloor.toml")
    return load(path)


def _dsn(args: argparse.Namespace, config: Config) -> str:
    dsn = args.dsn or os.environ.get("SHOPFLOOR_DSN") or config.historian.dsn
    if not dsn:
        from historian.embedded import EmbeddedPostgres, default_state_dir

        dsn = EmbeddedPostgres(default_state_dir(), config.historian.embedded_port).start()
    return dsn


def cmd_migrate(args: argparse.Namespace, config: Config) -> int:
    """Apply pending migrations."""
    from historian.db import connect
    from historian.migrate import migrate
    from inspection.config import sync_stations

    async def go() -> list[str]:
        conn = await connect(_dsn(args, config))
        try:
            applied = await migrate(conn)
            await sync_stations(conn, config.inspection)
            return applied
        finally:
            await conn.close()

    applied = asyncio.run(go())
    print("applied: " + ", ".join(applied) if applied else "up to date")
    return 0


def cmd_serve(args: argparse.Namespace, config: Config) -> int:
    """Serve the API and the command center over an existing historian, as [api] says (keys, TLS, limits), with
    [scheduling]'s defaults and, when it says so, the twin trigger."""
    from web.app import create_app

    dsn = _dsn(args, config)
    vision_cli.sync(dsn, config.inspection)  # the API judges images with the configured stations
    api_cli.serve(create_app(dsn, config.api, scheduling=config.scheduling), config.api)
    return 0


def cmd_demo(args: argparse.Namespace, config: Config) -> int:
    """Run the demo until Ctrl-C; it stops everything it started."""
    from shopfloor import demo

    if args.config is None and not Path("shopfloor.toml").exists() and (PROJECT / "shopfloor.toml").exists():
        config = load(PROJECT / "shopfloor.toml")  # the demo's own configuration
    if args.dsn:
        config.historian.dsn = args.dsn
    if args.speed is not None:
        if not 0 < args.speed <= 10_000:
            print(f"shopfloor demo: --speed must be > 0 and <= 10000, got {args.speed:g}", file=sys.stderr)
            return 2
        config.plant.speedup = args.speed
    try:
        asyncio.run(demo.run(config))
    except demo.DemoFailed as e:
        print(f"shopfloor demo: stopped after a failure: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    return 0


def cmd_maintain(args: argparse.Namespace, config: Config) -> int:
    """Refresh rollups and apply retention once, printing what was done as JSON."""
    from historian.db import connect
    from historian.maintenance import apply_retention, refresh_rollups

    async def go() -> dict:
        conn = await connect(_dsn(args, config))
        try:
            return {"rollup_rows": await refresh_rollups(conn), "retention": await apply_retention(conn)}
        finally:
            await conn.close()

    print(json.dumps(asyncio.run(go())))
    return 0


def cmd_gateway_run(args: argparse.Namespace, config: Config) -> int:
    """Run the configured gateway sources into the historian until Ctrl-C."""
    from gateway.service import Gateway
    from historian.embedded import default_state_dir

    if not config.gateway.sources:
        print("shopfloor: no [[gateway.sources]] in the config; nothing to read", file=sys.stderr)
        return 2
    dsn = _dsn(args, config)
    twin = None
    if config.twin.enabled and config.twin.machines:
        from twin.service import TwinService

        twin = TwinService(config.twin, dsn)
    gateway = Gateway(config.gateway, dsn, config.historian, default_state_dir() / "gateway",
                      tap=twin.observe if twin else None)

    async def go() -> int:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        parts = [asyncio.create_task(gateway.run(), name="gateway")]
        if config.gateway.http.enabled:  # /health and /metrics of this process, loopback by default
            from gateway.http import serve as serve_http

            parts.append(asyncio.create_task(serve_http(config.gateway.http, gateway), name="gateway http"))
        if twin is not None:  # the twin reads what the gateway commits, in this process
            parts.append(asyncio.create_task(twin.run(), name="twin"))
        stopping = asyncio.create_task(stop.wait())
        running = set(parts)
        failed: list[asyncio.Task[None]] = []
        # runs until Ctrl-C/SIGTERM, or a part fails; a part may end by itself (HTTP on a taken port)
        while not stopping.done() and not failed and running:
            done, _ = await asyncio.wait([*running, stopping], return_when=asyncio.FIRST_COMPLETED)
            running -= done
            failed = [t for t in parts if t.done() and not t.cancelled() and t.exception() is not None]
        for t in parts:
            t.cancel()
        stopping.cancel()
        # a source stuck reconnecting to a device that is gone must not keep Ctrl-C waiting
        _, stuck = await asyncio.wait(parts, timeout=_STOP_TIMEOUT_S)
        if stuck:
            names = ", ".join(t.get_name() for t in stuck)
            print(f"gateway: {names} still stopping after {_STOP_TIMEOUT_S:.0f} s; exiting (the spool keeps "
                  "every acknowledged reading)", file=sys.stderr, flush=True)
            os._exit(1)
        for t in failed:
            print(f"gateway: {t.get_name()} failed: {t.exception()!r}", file=sys.stderr)
        return 1 if failed else 0

    return asyncio.run(go())


def cmd_gateway_browse(args: argparse.Namespace, config: Config) -> int:
    """Print [[gateway.sources.tags]] for the OPC UA variables matching a pattern."""
    from gateway.opcua.browse import browse_to_toml

    print(asyncio.run(browse_to_toml(args.endpoint, args.pattern)))
    return 0


def cmd_plant(args: argparse.Namespace, config: Config) -> int:
    """Run the simulated plant's OPC UA, Modbus and MQTT devices until Ctrl-C."""
    from plant.run import run_plant

    p = config.plant
    settings = p.settings()
    print(f"plant: OPC UA opc.tcp://127.0.0.1:{p.opcua_port}/shopfloor/plant, Modbus TCP 127.0.0.1:{p.modbus_port}, "
          f"MQTT {p.mqtt_host}:{p.mqtt_port}")
    try:
        asyncio.run(run_plant(settings))
    except KeyboardInterrupt:
        pass
    return 0


def cmd_services(args: argparse.Namespace, config: Config) -> int:
    """Start, stop or report the services the tests use (scripts/services)."""
    return subprocess.call([str(PROJECT / "scripts" / "services"), args.action])


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `shopfloor` console script."""
    parser = argparse.ArgumentParser(prog="shopfloor", description=__doc__)
    parser.add_argument("--config", type=Path, help="shopfloor.toml (default: ./shopfloor.toml if present)")
    parser.add_argument("--dsn", help="historian database URI (overrides the config and SHOPFLOOR_DSN)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO instead of WARNING")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help=cmd_demo.__doc__)
    demo.add_argument("--speed", type=float, help="simulated seconds per second (default: plant.speedup, 20 in the "
                      "project's shopfloor.toml)")
    demo.set_defaults(func=cmd_demo)
    sub.add_parser("migrate", help=cmd_migrate.__doc__).set_defaults(func=cmd_migrate)
    sub.add_parser("serve", help=cmd_serve.__doc__).set_defaults(func=cmd_serve)
    sub.add_parser("maintain", help=cmd_maintain.__doc__).set_defaults(func=cmd_maintain)
    gateway = sub.add_parser("gateway", help="the gateway").add_subparsers(dest="gateway_command", required=True)
    gateway.add_parser("run", help=cmd_gateway_run.__doc__).set_defaults(func=cmd_gateway_run)
    browse = gateway.add_parser("browse", help=cmd_gateway_browse.__doc__)
    browse.add_argument("endpoint", help="opc.tcp://host:port/path")
    browse.add_argument("--pattern", default="*", help="glob over the browse path below Objects, or re:REGEX")
    browse.set_defaults(func=cmd_gateway_browse)
    sub.add_parser("plant", help=cmd_plant.__doc__).set_defaults(func=cmd_plant)
    models_cli.add_commands(sub)  # train, evaluate
    vision_cli.add_commands(sub)  # train vision, evaluate vision
    data_fetch.add_commands(sub)  # data fetch
    scheduling_cli.add_commands(sub)  # schedule solve
    services = sub.add_parser("services", help=cmd_services.__doc__)
    services.add_argument("action", choices=["up", "down", "status"])
    services.set_defaults(func=cmd_services)
    api_cli.add_commands(sub, _dsn)  # keys create|list|revoke|hash
    web_cli.add_commands(sub, _dsn)  # users create|list|disable|unlock
    api_cli.frame(parser)  # options after the subcommand, --version
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    if not args.verbose:
        # protocol libraries log every failed reconnect; our sources report those in their status
        for noisy in ("pymodbus", "asyncua"):
            logging.getLogger(noisy).setLevel(logging.ERROR)
    try:
        config = _config(args)
        return api_cli.run_guarded(lambda: int(args.func(args, config)))
    except ConfigError as e:
        print(f"shopfloor: config error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
