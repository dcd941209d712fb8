"""Historian ingest: samples/s through the writer vs raw binary COPY of the same rows, same run.

    python -m bench.ingest --samples 2000000 [--dsn URI] [--tags 1000] [--batch 50000] [--rounds 2]

Both paths write into a table of the same shape with the same unique (tag_id, ts) index (a
hypertable on TimescaleDB, day partitions on plain PostgreSQL), in batches of the same size,
each committed. The baseline gets its COPY bytes ready-made; the writer validates, encodes,
tracks rollup ranges and acknowledges. Rounds alternate the two to spread the machine's noise;
the best round of each is reported. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import psycopg

from bench.scratch import scratch_database
from historian.config import HistorianConfig
from historian.db import backend, connect
from historian.maintenance import ensure_partitions
from historian.registry import TagSpec, register
from historian.samples import Batch, SampleBatch, from_us
from historian.writer import HistorianWriter

ROOT = Path(__file__).resolve().parent.parent


def default_dsn() -> str:
    """$SHOPFLOOR_BENCH_DSN, else the TimescaleDB that scripts/services started."""
    if os.environ.get("SHOPFLOOR_BENCH_DSN"):
        return os.environ["SHOPFLOOR_BENCH_DSN"]
    env = ROOT / ".shopfloor" / "services.env"
    if env.exists():
        for line in env.read_text().splitlines():
            if line.startswith("SHOPFLOOR_TEST_TSDB_DSN="):
                return line.split("=", 1)[1]
    sys.exit("no database: set SHOPFLOOR_BENCH_DSN or run scripts/services up")


def make_batches(n: int, tags: list[int], batch: int, start_us: int) -> list[SampleBatch]:
    """n samples of random walks, one per tag per second, cut in batches as adapters send them."""
    rng = np.random.default_rng(7)
    per_tag = -(-n // len(tags))
    tag_id = np.tile(np.asarray(tags, dtype=np.int32), per_tag)[:n]
    ts = start_us + np.repeat(np.arange(per_tag, dtype=np.int64) * 1_000_000, len(tags))[:n]
    value = np.cumsum(rng.normal(size=n)).astype(np.float64)
    full = SampleBatch.from_columns(tag_id, ts, value)
    return [full.take(slice(i, i + batch)) for i in range(0, n, batch)]


async def make_copy_table(conn: psycopg.AsyncConnection) -> None:
    """bench_copy: a table shaped like samples (hypertable or partitioned, same unique index), for raw COPY."""
    await conn.execute(
        "DO $$ BEGIN EXECUTE 'CREATE TABLE bench_copy (LIKE samples INCLUDING DEFAULTS)' "
        "|| sf_partition_clause(); PERFORM sf_make_timeseries('bench_copy'); END $$"
    )
    await conn.execute("CREATE UNIQUE INDEX ON bench_copy (tag_id, ts)")


async def copy_table_days(conn: psycopg.AsyncConnection, batches: list[SampleBatch]) -> None:
    """Make the day partitions the batches need, in samples and bench_copy (a no-op on TimescaleDB)."""
    first = from_us(min(int(b.ts_us.min()) for b in batches)).date()
    last = from_us(max(int(b.ts_us.max()) for b in batches)).date()
    await ensure_partitions(conn, first, last)
    await conn.execute("SELECT sf_ensure_partitions('bench_copy', %s, %s)", (first, last))


async def run_writer(dsn: str, batches: list[SampleBatch], batch: int) -> float:
    """Seconds from the first submit to the last acknowledgement."""
    config = HistorianConfig(dsn=dsn, flush_rows=batch, max_pending_rows=batch * 4)
    async with HistorianWriter(dsn, config) as w:
        t0 = time.perf_counter()
        futures = [await w.submit(Batch(b)) for b in batches]
        results = await asyncio.gather(*futures)
        elapsed = time.perf_counter() - t0
    written = sum(r.written for r in results)
    if written != sum(len(b) for b in batches):
        raise SystemExit(f"writer wrote {written} rows, expected {sum(len(b) for b in batches)}")
    return elapsed


async def run_copy(dsn: str, payloads: list[bytes]) -> float:
    """Seconds to COPY the ready-made binary payloads into bench_copy, one transaction each."""
    conn = await connect(dsn)
    t0 = time.perf_counter()
    for data in payloads:
        async with conn.transaction():
            async with conn.cursor() as cur:
                async with cur.copy("COPY bench_copy (tag_id, ts, value, quality) FROM STDIN (FORMAT BINARY)") as cp:
                    await cp.write(data)
    elapsed = time.perf_counter() - t0
    await conn.close()
    return elapsed


async def main_async(args: argparse.Namespace) -> dict:
    """Set up a scratch database, run the rounds, drop it."""
    async with scratch_database(args.dsn or default_dsn()) as dsn:
        conn = await connect(dsn)
        kind = await backend(conn)
        reg = await register(conn, [TagSpec(f"bench.t{i:05d}", "machine") for i in range(args.tags)])
        await make_copy_table(conn)
        start_us = (time.time_ns() // 1000 // 86_400_000_000 - 2) * 86_400_000_000
        batches = make_batches(args.samples, [t.id for t in reg.by_name.values()], args.batch, start_us)
        await copy_table_days(conn, batches)
        payloads = [b.to_copy_binary() for b in batches]
        writer_s: list[float] = []
        copy_s: list[float] = []
        for r in range(args.rounds):
            for which in (("copy", "writer") if r % 2 == 0 else ("writer", "copy")):
                await conn.execute("TRUNCATE samples, rollup_dirty, bench_copy")
                await conn.execute("CHECKPOINT")
                if which == "copy":
                    copy_s.append(await run_copy(dsn, payloads))
                else:
                    writer_s.append(await run_writer(dsn, batches, args.batch))
                print(f"round {r + 1} {which}: {args.samples / (copy_s if which == 'copy' else writer_s)[-1]:,.0f} rows/s",
                      file=sys.stderr)
        await conn.close()
    writer_rate = args.samples / min(writer_s)
    copy_rate = args.samples / min(copy_s)
    return {
        "bench": "ingest",
        "backend": kind,
        "samples": args.samples,
        "tags": args.tags,
        "batch": args.batch,
        "rounds": args.rounds,
        "writer_rows_per_s": round(writer_rate),
        "copy_rows_per_s": round(copy_rate),
        "ratio_to_copy": round(writer_rate / copy_rate, 3),
        "writer_s": [round(s, 3) for s in writer_s],
        "copy_s": [round(s, 3) for s in copy_s],
    }


def main() -> None:
    """Parse arguments, run, print one JSON line."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--samples", type=int, default=2_000_000)
    p.add_argument("--tags", type=int, default=1000)
    p.add_argument("--batch", type=int, default=50_000)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--dsn", help="server to make a scratch database on (default: the services' TimescaleDB)")
    print(json.dumps(asyncio.run(main_async(p.parse_args()))))


if __name__ == "__main__":
    main()
