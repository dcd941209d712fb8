"""The bare floor of the fleet benchmark: what a competent engineer writes to poll Modbus into the historian.

    python -m bench.fleet_floor --dsn URI --plan plan.json --seconds 40

plan.json: {"devices": [{"port": 5020, "tag_ids": [100 ints]}, ...], "registers": 100, "interval": 0.1}

One pymodbus AsyncModbusTcpClient per device, one FC3 read of `registers` holding registers per
poll on a fixed schedule, the values appended to numpy arrays, and one binary COPY per second of
everything read into the samples hypertable (no spool, no durability, no status, no exception
reporting). Stops after --seconds, COPYs what is left and prints one JSON line: reads, values,
rows copied.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import time
from pathlib import Path

import numpy as np
import psycopg
from pymodbus.client import AsyncModbusTcpClient

PG_EPOCH_US = 946_684_800_000_000
_HEADER = b"PGCOPY\n\xff\r\n\x00" + b"\x00\x00\x00\x00" + b"\x00\x00\x00\x00"
_TRAILER = b"\xff\xff"
_ROW = np.dtype([("n", ">i2"), ("l1", ">i4"), ("tag", ">i4"), ("l2", ">i4"), ("ts", ">i8"),
                 ("l3", ">i4"), ("value", ">f8"), ("l4", ">i4"), ("quality", ">i2")])


class Columns:
    """Growing numpy columns of one second of readings."""

    def __init__(self) -> None:
        self.parts: list[tuple[np.ndarray, int, np.ndarray]] = []

    def add(self, tag_ids: np.ndarray, ts_us: int, registers: list[int]) -> None:
        """Append one poll's registers."""
        self.parts.append((tag_ids, ts_us, np.asarray(registers, dtype=np.float64)))

    def take_copy(self) -> tuple[bytes, int]:
        """The binary COPY payload of everything added, and its row count; empties the columns."""
        parts, self.parts = self.parts, []
        if not parts:
            return b"", 0
        n = sum(len(p[0]) for p in parts)
        rows = np.empty(n, dtype=_ROW)
        rows["n"], rows["l1"], rows["l2"], rows["l3"], rows["l4"] = 4, 4, 8, 8, 2
        rows["tag"] = np.concatenate([p[0] for p in parts])
        rows["ts"] = np.repeat(np.array([p[1] for p in parts], dtype=np.int64) - PG_EPOCH_US,
                               [len(p[0]) for p in parts])
        rows["value"] = np.concatenate([p[2] for p in parts])
        rows["quality"] = 192
        return _HEADER + rows.tobytes() + _TRAILER, n


async def poll(port: int, tag_ids: np.ndarray, registers: int, interval: float, end: float, cols: Columns,
               counts: dict[str, int]) -> None:
    """Read one device on a fixed schedule until `end` (loop time)."""
    client = AsyncModbusTcpClient("127.0.0.1", port=port, retries=0, reconnect_delay=0)
    await client.connect()
    loop = asyncio.get_running_loop()
    due = loop.time()
    try:
        while due < end:
            rr = await client.read_holding_registers(0, count=registers, device_id=1)
            if not rr.isError():
                cols.add(tag_ids, time.time_ns() // 1000, rr.registers)
                counts["reads"] += 1
            due += interval
            now = loop.time()
            if due > now:
                await asyncio.sleep(due - now)
            else:
                due = now
    finally:
        client.close()


async def copier(dsn: str, cols: Columns, counts: dict[str, int], stop: asyncio.Event) -> None:
    """Once a second, one binary COPY of what was read, in its own transaction."""
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True, application_name="fleet-floor") as conn:
        while True:
            with_stop = stop.is_set()
            payload, n = cols.take_copy()
            if n:
                async with conn.cursor() as cur:
                    async with cur.copy("COPY samples (tag_id, ts, value, quality) FROM STDIN (FORMAT BINARY)") as cp:
                        await cp.write(payload)
                counts["copied"] += n
            if with_stop:
                return
            try:
                await asyncio.wait_for(stop.wait(), 1.0)
            except TimeoutError:
                pass


async def main_async(dsn: str, plan: dict, seconds: float) -> dict[str, int]:
    """Poll every device of the plan for `seconds`, COPY once a second; the counts."""
    loop = asyncio.get_running_loop()
    cols = Columns()
    counts = {"reads": 0, "copied": 0}
    stop = asyncio.Event()
    end = loop.time() + seconds
    writer = asyncio.create_task(copier(dsn, cols, counts, stop))
    await asyncio.gather(*(poll(d["port"], np.array(d["tag_ids"], dtype=np.int32), plan["registers"],
                                plan["interval"], end, cols, counts) for d in plan["devices"]))
    stop.set()
    await writer
    counts["values"] = counts["reads"] * plan["registers"]
    return counts


def main() -> None:
    """Parse arguments, run, print one JSON line."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dsn", required=True)
    p.add_argument("--plan", type=Path, required=True)
    p.add_argument("--seconds", type=float, default=40.0)
    args = p.parse_args()
    logging.basicConfig(level=logging.ERROR)
    print(json.dumps(asyncio.run(main_async(args.dsn, json.loads(args.plan.read_text()), args.seconds))), flush=True)


if __name__ == "__main__":
    main()
