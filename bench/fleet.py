"""The fleet scenario of bench.gateway: N Modbus devices at 100 ms polls, `shopfloor gateway run` against the bare floor.

    python -m bench.gateway --fleet [--devices 10,50,100,200] [--seconds 30] [--warmup 5] [--interval 0.1]
                                    [--spool-flush S] [--historian-flush S] [--deadband D]

A multi-port device simulator (plant/modbus_fleet.py) runs in its own process for the whole run.
For each device count, in one scratch TimescaleDB database (migrated, the tags registered once):

1. GATEWAY: `shopfloor gateway run` as its own process, with a generated shopfloor.toml of N
   Modbus sources x 100 uint16 holding registers, poll_interval 0.1 s, no deadband (every value
   stored), the spool fsync'ed in a temp folder. After --warmup seconds of stored rows, --seconds
   of measurement: CPU of the gateway process (/proc/<pid>/stat), CPU of its database backends
   (pg_stat_activity pids of this database, /proc/<pid>/stat), values served (the simulator's own
   counters), rows stored (SQL count). Then the simulator stops answering, the gateway drains, and
   lost = values served since the gateway started - good rows stored.
2. FLOOR: bench/fleet_floor.py as its own process, same devices, same table, measured the same way.

--deadband D (not the default scenario) turns exception reporting on for every tag of the gateway: a
device's registers move by 7 per read, so D <= 7 still stores every value (lost stays comparable)
and the run measures what deciding every value costs.

The samples table is truncated before each phase. latency_p99_s: every 0.2 s the bench asks the
age of the newest committed row of one tag (now() - max(ts)); that age is at least the read ->
commit latency of that row, so the p99 of it is an upper bound of the latency p99 (it includes
up to one poll interval and the time since the last commit). One JSON line per device count.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
from psycopg import conninfo

from bench.gateway import _proc_cpu, say
from bench.ingest import default_dsn
from bench.scratch import scratch_database
from historian.db import connect
from plant.modbus_fleet import fleet_toml as plant_fleet_toml

REGISTERS = 100
INTERVAL = 0.1
DEVICE_COUNTS = (10, 50, 100, 200)
RATIO_TARGET = 1.5
PYTHON = sys.executable
SHOPFLOOR = str(Path(sys.executable).with_name("shopfloor"))


def fleet_toml(dsn: str, ports: list[int], spool_dir: Path, interval: float = INTERVAL,
               args: argparse.Namespace | None = None) -> str:
    """A shopfloor.toml with one Modbus source of REGISTERS uint16 holding registers per port."""
    toml = plant_fleet_toml(dsn, ports, spool_dir, interval, REGISTERS,
                            spool_flush=getattr(args, "spool_flush", None),
                            historian_flush=getattr(args, "historian_flush", None))
    deadband = getattr(args, "deadband", None)
    if deadband:  # every tag line ends with its machine: exception reporting on each
        toml = toml.replace('"},\n', f'", deadband = {deadband}}},\n')
    return toml


class Simulator:
    """The bench's handle on plant/modbus_fleet.py."""

    def __init__(self, devices: int) -> None:
        self.proc = subprocess.Popen([PYTHON, "-m", "plant.modbus_fleet", "--devices", str(devices)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        self.ports: list[int] = json.loads(self.proc.stdout.readline())["ports"]

    def command(self, what: str) -> dict[str, Any]:
        """Send one command; its answer."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(what + "\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())

    def served(self, devices: int) -> int:
        """Reads answered so far by the first `devices` devices."""
        return sum(self.command("stats")["served"][:devices])

    def close(self) -> None:
        """Stop the simulator."""
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.write("quit\n")
            self.proc.stdin.flush()
            self.proc.wait(10)


class Meter:
    """CPU of one process and of this database's backends (except the bench's own), between two snapshots."""

    def __init__(self, conn: psycopg.AsyncConnection, pid: int) -> None:
        self.conn = conn
        self.pid = pid

    async def backends(self) -> dict[int, float]:
        """CPU seconds of every other backend on this database, by pid."""
        cur = await self.conn.execute("SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                                      "AND pid <> pg_backend_pid()")
        return {pid: _proc_cpu(pid) for (pid,) in await cur.fetchall()}

    async def snapshot(self) -> tuple[float, float, dict[int, float]]:
        """(monotonic time, process CPU s, backend CPU s by pid)."""
        return time.monotonic(), _proc_cpu(self.pid), await self.backends()

    @staticmethod
    def db_cpu(before: dict[int, float], after: dict[int, float]) -> float:
        """Backend CPU seconds between two snapshots (a backend that appeared counts from zero)."""
        return sum(v - before.get(pid, 0.0) for pid, v in after.items() if v == v)


def rss_mib(pid: int) -> float:
    """Resident memory of a process in MiB."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


async def good_rows(conn: psycopg.AsyncConnection) -> int:
    """Rows of good quality in samples."""
    cur = await conn.execute("SELECT count(*) FROM samples WHERE quality >= 192")
    return int((await cur.fetchone())[0])


async def checkpoints(conn: psycopg.AsyncConnection) -> int:
    """Checkpoints the server has started (timed and requested): each is followed by a burst of full-page images."""
    for query in ("SELECT num_timed + num_requested FROM pg_stat_checkpointer",  # PostgreSQL 17+
                  "SELECT checkpoints_timed + checkpoints_req FROM pg_stat_bgwriter"):
        try:
            cur = await conn.execute(query)
            return int((await cur.fetchone())[0])
        except (psycopg.errors.UndefinedTable, psycopg.errors.UndefinedColumn):
            continue
    return -1


async def checkpoint_later(dsn: str, delay: float) -> None:
    """A CHECKPOINT after `delay` seconds, on a connection of its own (the window's queries go on meanwhile)."""
    await asyncio.sleep(delay)
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as c:
        await c.execute("CHECKPOINT")


async def measure(conn: psycopg.AsyncConnection, pid: int, sim: Simulator, devices: int, seconds: float,
                  probe_tag: int, checkpoint: tuple[str, float] | None = None) -> dict[str, Any]:
    """One measurement window over a running poller (gateway or floor); `checkpoint`: (dsn, s into the window)."""
    meter = Meter(conn, pid)
    ckpt0 = await checkpoints(conn)
    t0, cpu0, db0 = await meter.snapshot()
    forced = asyncio.create_task(checkpoint_later(*checkpoint)) if checkpoint else None
    served0, rows0, sim0 = sim.served(devices), await good_rows(conn), sim.command("stats")["cpu_s"]
    ages: list[float] = []
    rss = 0.0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        cur = await conn.execute("SELECT extract(epoch FROM now() - max(ts)) FROM samples WHERE tag_id = %s",
                                 (probe_tag,))
        age = (await cur.fetchone())[0]
        if age is not None:
            ages.append(float(age))
        rss = max(rss, rss_mib(pid))
        await asyncio.sleep(0.2)
    if forced is not None:
        await forced
    t1, cpu1, db1 = await meter.snapshot()
    served1, rows1, sim1 = sim.served(devices), await good_rows(conn), sim.command("stats")["cpu_s"]
    ckpt1 = await checkpoints(conn)
    wall = t1 - t0
    stored = rows1 - rows0
    return {"wall_s": wall, "cpu_s": cpu1 - cpu0, "db_cpu_s": Meter.db_cpu(db0, db1),
            "served_values": (served1 - served0) * REGISTERS, "stored": stored, "sim_cpu_s": sim1 - sim0,
            "latency_p99_s": float(np.percentile(ages, 99)) if ages else None, "rss_mib": rss,
            "checkpoints": ckpt1 - ckpt0 if min(ckpt0, ckpt1) >= 0 else None}


async def drain(conn: psycopg.AsyncConnection, expect: int, timeout: float = 120.0) -> int:
    """Wait until the good rows reach `expect` or stop moving for 3 s; the count."""
    last, since = -1, time.monotonic()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        n = await good_rows(conn)
        if n >= expect:
            return n
        if n != last:
            last, since = n, time.monotonic()
        elif time.monotonic() - since > 3.0:
            return n
        await asyncio.sleep(0.3)
    return await good_rows(conn)


async def wait_rows(conn: psycopg.AsyncConnection, proc: subprocess.Popen[Any], what: str,
                    timeout: float = 180.0) -> None:
    """Wait until the first rows are committed (the poller started)."""
    deadline = time.monotonic() + timeout
    while await good_rows(conn) == 0:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode} before storing anything")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} stored nothing within {timeout} s")
        await asyncio.sleep(0.2)


def stop(proc: subprocess.Popen[Any]) -> None:
    """SIGINT, then SIGKILL if it lingers."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def forced_checkpoint(dsn: str, args: argparse.Namespace) -> tuple[str, float] | None:
    """With --checkpoint: a checkpoint a third into each window, so every phase meets the burst that follows one."""
    return (dsn, args.seconds / 3) if args.checkpoint else None


async def gateway_phase(conn: psycopg.AsyncConnection, dsn: str, sim: Simulator, devices: int,
                        args: argparse.Namespace, workdir: Path, probe_tag: int) -> dict[str, Any]:
    """`shopfloor gateway run` over the first `devices` devices."""
    await conn.execute("TRUNCATE samples")
    sim.command("thaw")
    cfg = workdir / f"fleet-{devices}.toml"
    cfg.write_text(fleet_toml(dsn, sim.ports[:devices], workdir / f"spool-{devices}", args.interval, args))
    served_start = sim.served(devices)
    env = {**os.environ, "SHOPFLOOR_STATE": str(workdir / "state")}
    log = open(workdir / f"gateway-{devices}.log", "w")
    proc = subprocess.Popen([SHOPFLOOR, "--config", str(cfg), "gateway", "run"], env=env, stdout=log, stderr=log)
    try:
        await wait_rows(conn, proc, "shopfloor gateway run")
        await asyncio.sleep(args.warmup)
        m = await measure(conn, proc.pid, sim, devices, args.seconds, probe_tag, forced_checkpoint(dsn, args))
        sim.command("freeze")
        served_total = (sim.served(devices) - served_start) * REGISTERS
        m["stored_total"] = await drain(conn, served_total)
        m["lost"] = served_total - m["stored_total"]
        m["served_total"] = served_total
    finally:
        stop(proc)
        log.close()
        sim.command("thaw")
    return m


async def floor_phase(conn: psycopg.AsyncConnection, dsn: str, sim: Simulator, devices: int,
                      args: argparse.Namespace, workdir: Path, probe_tag: int, tag_ids: dict[str, int]
                      ) -> dict[str, Any]:
    """bench/fleet_floor.py over the first `devices` devices."""
    await conn.execute("TRUNCATE samples")
    plan = {"registers": REGISTERS, "interval": args.interval,
            "devices": [{"port": p, "tag_ids": [tag_ids[f"dev{d:03d}.r{i:03d}"] for i in range(REGISTERS)]}
                        for d, p in enumerate(sim.ports[:devices])]}
    path = workdir / f"floor-{devices}.json"
    path.write_text(json.dumps(plan))
    total = args.warmup + args.seconds + 5
    proc = subprocess.Popen([PYTHON, "-m", "bench.fleet_floor", "--dsn", dsn, "--plan", str(path),
                             "--seconds", str(total)], stdout=subprocess.PIPE, text=True)
    try:
        await wait_rows(conn, proc, "bench.fleet_floor")
        await asyncio.sleep(args.warmup)
        m = await measure(conn, proc.pid, sim, devices, args.seconds, probe_tag, forced_checkpoint(dsn, args))
        out, _ = await asyncio.to_thread(proc.communicate, timeout=total + 120)
        counts = json.loads(out.strip().splitlines()[-1])
        m["stored_total"] = await good_rows(conn)
        m["lost"] = counts["values"] - m["stored_total"]
        m["served_total"] = counts["values"]
    finally:
        stop(proc)
    return m


async def run(args: argparse.Namespace) -> None:
    """Every device count: gateway then floor; one JSON line each."""
    from gateway.service import tag_specs
    from historian.registry import register
    from shopfloor.config import parse

    counts = [int(x) for x in args.devices.split(",")]
    sim = Simulator(max(counts))
    workdir = Path(tempfile.mkdtemp(prefix="sf-bench-fleet-"))
    try:
        async with scratch_database(args.dsn or default_dsn(), "sf_bench_fleet") as dsn:
            say(f"fleet: scratch database {conninfo.conninfo_to_dict(dsn)['dbname']}, {len(sim.ports)} devices")
            conn = await connect(dsn)
            await conn.set_autocommit(True)
            try:
                t = time.perf_counter()
                config = parse(fleet_toml(dsn, sim.ports, workdir / "spool"))
                load_s = time.perf_counter() - t
                say(f"fleet: a {len(sim.ports) * REGISTERS}-tag configuration parsed in {load_s:.2f} s")
                await register(conn, [spec for s in config.gateway.sources for spec in tag_specs(s)])
                cur = await conn.execute("SELECT name, id FROM tags")
                tag_ids = dict(await cur.fetchall())
                for n in counts:
                    probe = tag_ids[f"dev{n - 1:03d}.r{REGISTERS - 1:03d}"]
                    gw = await gateway_phase(conn, dsn, sim, n, args, workdir, probe)
                    say(f"fleet {n}: gateway {gw}")
                    fl = await floor_phase(conn, dsn, sim, n, args, workdir, probe, tag_ids)
                    say(f"fleet {n}: floor {fl}")
                    print(json.dumps(line(n, gw, fl, args, load_s)), flush=True)
            finally:
                await conn.close()
    finally:
        sim.close()


def line(n: int, gw: dict[str, Any], fl: dict[str, Any], args: argparse.Namespace, load_s: float) -> dict[str, Any]:
    """The JSON line of one device count."""
    def per_k(cpu: float, rows: int) -> float | None:
        return round(cpu / (rows / 1000), 5) if rows > 0 else None

    ours = per_k(gw["cpu_s"], gw["stored"])
    floor = per_k(fl["cpu_s"], fl["stored"])
    return {
        "bench": "gateway", "scenario": "fleet", "devices": n, "registers_per_device": REGISTERS,
        "poll_interval_s": args.interval,
        "gateway_settings": {"spool_flush_interval_s": args.spool_flush if args.spool_flush is not None else "default",
                             "historian_flush_interval_s": (args.historian_flush if args.historian_flush is not None
                                                            else "default"),
                             "deadband": args.deadband or 0},
        "served_per_s": round(gw["served_values"] / gw["wall_s"]),
        "stored_per_s": round(gw["stored"] / gw["wall_s"]),
        "floor_stored_per_s": round(fl["stored"] / fl["wall_s"]),
        "cpu_s_per_1000_values": ours,
        "floor_cpu_s_per_1000_values": floor,
        "ratio_to_floor": round(ours / floor, 3) if ours and floor else None,
        "db_cpu_s_per_1000_rows": {"gateway": per_k(gw["db_cpu_s"], gw["stored"]),
                                   "floor": per_k(fl["db_cpu_s"], fl["stored"])},
        "lost": gw["lost"], "floor_lost": fl["lost"],
        "latency_p99_s": round(gw["latency_p99_s"], 3) if gw["latency_p99_s"] is not None else None,
        "floor_latency_p99_s": round(fl["latency_p99_s"], 3) if fl["latency_p99_s"] is not None else None,
        "rss_mib": round(gw["rss_mib"], 1), "floor_rss_mib": round(fl["rss_mib"], 1),
        "gateway_cores": round(gw["cpu_s"] / gw["wall_s"], 3), "floor_cores": round(fl["cpu_s"] / fl["wall_s"], 3),
        "db_cores": {"gateway": round(gw["db_cpu_s"] / gw["wall_s"], 3),
                     "floor": round(fl["db_cpu_s"] / fl["wall_s"], 3)},
        # a checkpoint in the window is followed by full-page images of every hot index page: the
        # database's worst seconds, so say whether each window had one
        "db_checkpoints_in_window": {"gateway": gw["checkpoints"], "floor": fl["checkpoints"]},
        "checkpoint_forced": bool(args.checkpoint),
        "simulator_cores": {"gateway": round(gw["sim_cpu_s"] / gw["wall_s"], 3),
                            "floor": round(fl["sim_cpu_s"] / fl["wall_s"], 3)},
        "served_total": gw["served_total"], "stored_total": gw["stored_total"],
        "config_parse_s_all_devices": round(load_s, 3),
        "window_s": args.seconds, "warmup_s": args.warmup,
        "loadavg": [round(x, 2) for x in os.getloadavg()], "machine_cpus": os.cpu_count(),
        "latency_definition": "p99 of now() - max(ts) of one tag sampled every 0.2 s: an upper bound of the "
                              "read -> commit latency (includes up to one poll interval and the time since the "
                              "last commit)",
        "targets": {"ratio_to_floor<=1.5": bool(ours and floor and ours / floor <= RATIO_TARGET) if n >= 50 else None,
                    "lost==0": gw["lost"] == 0,
                    "latency_p99_s<1": gw["latency_p99_s"] is not None and gw["latency_p99_s"] < 1.0},
    }


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The fleet scenario's options (bench.gateway --fleet)."""
    p.add_argument("--devices", default=",".join(map(str, DEVICE_COUNTS)), help="device counts, comma-separated")
    p.add_argument("--warmup", type=float, default=5.0, help="seconds of stored rows before measuring")
    p.add_argument("--checkpoint", action="store_true",
                   help="force a CHECKPOINT a third into every window (the full-page images after one are the "
                        "database's worst seconds; without it, whether a window meets one is chance); an "
                        "immediate checkpoint, harsher than the spread ones the server makes itself")
    p.add_argument("--interval", type=float, default=INTERVAL, help="poll interval of every device (s)")
    p.add_argument("--spool-flush", type=float, help="[gateway.spool] flush_interval of the gateway (default: its own)")
    p.add_argument("--historian-flush", type=float, help="[historian] flush_interval of the gateway (default: its own)")
    p.add_argument("--deadband", type=float,
                   help="exception reporting on every gateway tag with this absolute deadband (default: none; "
                        "<= 7 still stores every value)")
