"""`python -m bench.api`: wrk-style load on the HTTP API over loopback, one JSON line.

A scratch database gets one day of a 1 Hz tag (86,400 samples), rollups refreshed, two machines with
twin status and a shift of KPI inputs; `shopfloor serve` runs in its own process (one uvicorn worker,
as deployed); this process keeps `--connections` keep-alive connections busy on each endpoint for
`--seconds`. Each endpoint's object: req_per_s, p50_ms, p99_ms, errors (non-200 or transport) and
ratio_to_health (its rate over /health's in the same run). The load comes from `wrk` (C, one thread
per core, latency percentiles from its --latency table) when it is installed (`scripts/apt-install wrk`),
else from an httpx client in this process, which on a small machine takes a large share of the cores
and inflates every latency; the JSON says which (`client`). Ratios are the comparable figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import urlencode

import httpx
import numpy as np

from api.keys import hash_key
from bench.ingest import default_dsn
from bench.scratch import scratch_database
from historian.db import connect
from historian.maintenance import refresh_rollups
from historian.registry import MachineSpec, TagSpec, register
from historian.samples import Batch, SampleBatch
from historian.writer import HistorianWriter

ROOT = Path(__file__).resolve().parent.parent
KEY = "sf_bench_api-viewer-key-0123456789abcdef"
DAY = datetime(2026, 11, 20, tzinfo=timezone.utc)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def seed(dsn: str) -> None:
    """One day of press1.temperature at 1 Hz, rollups refreshed, twin rows for two machines."""
    conn = await connect(dsn)
    try:
        reg = await register(conn, [TagSpec("press1.temperature", "machine", unit="degC", machine="press1"),
                                    TagSpec("press2.temperature", "machine", unit="degC", machine="press2")],
                             [MachineSpec("press1", line="L1"), MachineSpec("press2", line="L1")])
        tag_id = reg.by_name["press1.temperature"].id
        start_us = int(DAY.timestamp() * 1_000_000)
        ts = start_us + np.arange(86_400, dtype=np.int64) * 1_000_000
        values = 60 + np.cumsum(np.random.default_rng(3).normal(scale=0.05, size=ts.shape[0]))
        async with HistorianWriter(dsn) as w:
            await w.write(Batch(SampleBatch.from_columns(np.full(ts.shape[0], tag_id, dtype=np.int32), ts, values)))
        await refresh_rollups(conn)
        await conn.execute(
            """INSERT INTO machine_status (machine_id, state, state_since, good_total, scrap_total, sensors, predictions,
                                           updated_at)
               SELECT id, 'producing', now(), 100, 2, '{}', '{}', now() FROM machines ON CONFLICT DO NOTHING""")
    finally:
        await conn.close()


async def hammer(client: httpx.AsyncClient, url: str, params: dict | None, seconds: float,
                 connections: int) -> dict:
    """Keep `connections` requests in flight for `seconds`; rate and latency percentiles."""
    latencies: list[float] = []
    errors = 0
    stop = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal errors
        while time.perf_counter() < stop:
            t = time.perf_counter()
            try:
                r = await client.get(url, params=params)
                ok = r.status_code == 200
            except httpx.HTTPError:
                ok = False
            latencies.append(time.perf_counter() - t)
            errors += 0 if ok else 1

    began = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(connections)))
    elapsed = time.perf_counter() - began
    lat = np.asarray(latencies) * 1000
    return {"req_per_s": round(len(latencies) / elapsed, 1), "p50_ms": round(float(np.percentile(lat, 50)), 2),
            "p99_ms": round(float(np.percentile(lat, 99)), 2), "errors": errors}


_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def _ms(text: str) -> float:
    """wrk's '1.23ms' / '870.00us' / '1.02s' in milliseconds."""
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if not m:
        raise ValueError(f"wrk latency {text!r}")
    return float(m.group(1)) * _UNITS_MS[m.group(2)]


def wrk(base: str, url: str, params: dict | None, seconds: float, connections: int) -> dict:
    """The same measurement by wrk: rate, p50/p99 from its latency table, non-200 answers and socket errors."""
    target = f"{base}{url}" + (f"?{urlencode(params)}" if params else "")
    threads = max(1, min(os.cpu_count() or 1, connections))
    out = subprocess.run(["wrk", f"-t{threads}", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--latency",
                          "-H", f"Authorization: Bearer {KEY}", target],
                         capture_output=True, text=True, check=True).stdout
    pct = dict(re.findall(r"^\s+(\d+)%\s+(\S+)$", out, re.M))
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    errors = sum(int(n) for n in re.findall(r"Non-2xx or 3xx responses: (\d+)", out))
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    errors += sum(map(int, sock.groups())) if sock else 0
    return {"req_per_s": round(rate, 1), "p50_ms": round(_ms(pct["50"]), 2), "p99_ms": round(_ms(pct["99"]), 2),
            "errors": errors}


async def main_async(args: argparse.Namespace) -> dict:
    """Seed, serve, load each endpoint in turn; the JSON object."""
    async with scratch_database(args.dsn, "sf_bench_api") as dsn:
        await seed(dsn)
        port = _free_port()
        with tempfile.TemporaryDirectory() as tmp:
            config = Path(tmp) / "shopfloor.toml"
            config.write_text(f'[api]\nport = {port}\npool_size = 8\n[[api.users]]\nname = "bench"\nrole = "viewer"\n'
                              f'key_id = "bench"\nkey_hash = "{hash_key(KEY)}"\n')
            server = subprocess.Popen([sys.executable, "-m", "shopfloor.cli", "serve", "--config", str(config),
                                       "--dsn", dsn], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
            try:
                limits = httpx.Limits(max_connections=args.connections, max_keepalive_connections=args.connections)
                async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", limits=limits, timeout=30,
                                             headers={"Authorization": f"Bearer {KEY}"}) as client:
                    deadline = time.monotonic() + 30
                    while True:  # ready when /health answers (or give up naming why)
                        try:
                            if (await client.get("/health")).status_code == 200:
                                break
                        except httpx.HTTPError:
                            pass
                        if server.poll() is not None or time.monotonic() > deadline:
                            sys.exit("bench.api: shopfloor serve did not come up")
                        await asyncio.sleep(0.1)
                    day = {"start": DAY.isoformat(), "end": (DAY + timedelta(days=1)).isoformat()}
                    endpoints = {
                        "health": ("/health", None),
                        "latest": ("/api/v1/tags/latest", None),
                        "raw": ("/api/v1/tags/press1.temperature/samples",
                                {"start": DAY.isoformat(), "end": (DAY + timedelta(seconds=288)).isoformat()}),
                        "rollup": ("/api/v1/tags/press1.temperature/samples", {**day, "bucket": "5m"}),
                        "machines": ("/api/v1/machines", None),
                        "kpi": ("/api/v1/kpi", {"machine": "press1", **day}),
                    }
                    out: dict = {}
                    for name, (url, params) in endpoints.items():
                        await hammer(client, url, params, min(1.0, args.seconds), args.connections)  # warm up
                        if args.client == "wrk":
                            out[name] = await asyncio.to_thread(wrk, f"http://127.0.0.1:{port}", url, params,
                                                                args.seconds, args.connections)
                        else:
                            out[name] = await hammer(client, url, params, args.seconds, args.connections)
            finally:
                server.terminate()
                server.wait(timeout=20)
    base = out["health"]["req_per_s"] or 1.0
    for v in out.values():
        v["ratio_to_health"] = round(v["req_per_s"] / base, 3)
    return {"bench": "api", "client": args.client, "connections": args.connections, "seconds_per_endpoint": args.seconds,
            "raw_rows_per_page": 288, "rollup_buckets": 288, **out,
            "rollup_to_raw": round(out["rollup"]["req_per_s"] / (out["raw"]["req_per_s"] or 1.0), 3),
            "load_avg_1min": round(os.getloadavg()[0], 2)}


def main() -> None:
    """Parse options and print one JSON line."""
    p = argparse.ArgumentParser(prog="python -m bench.api", description=__doc__)
    p.add_argument("--dsn", default=default_dsn(), help="admin DSN of the server to make a scratch database on")
    p.add_argument("--connections", type=int, default=50)
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--client", choices=("wrk", "httpx"), default="wrk" if shutil.which("wrk") else "httpx",
                   help="load generator (default: wrk when installed)")
    print(json.dumps(asyncio.run(main_async(p.parse_args()))))


if __name__ == "__main__":
    main()
