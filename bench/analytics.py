"""Analytics where the data is: OEE, genealogy traces and an X̄-R chart, each against its Python baseline.

    python -m bench.analytics [--machines 100] [--days 30] [--lots 100000] [--samples 10000000]
                              [--db-samples N] [--traces 150] [--rounds 3] [--seed 7] [--quick] [--dsn URI]

On a scratch database (created, migrated with historian.migrate, dropped at the end):

1. KPI. A plant of --machines machines on lines of ten, over --days UTC days from a Sunday: per
   machine a state timeline at 1 s resolution (producing runs minutes long, short stops, long idles,
   setups, occasional unplanned downs, gaps where the twin had no state, planned_down outside the
   plan, machines running a minute or two into their breaks), stored as `state_intervals` (the
   twin's run-length form of 1 Hz state samples), the parts made per minute as `part_counts`, a shift
   calendar (the plant's 3 x 8 h shifts Mon-Sat on line ''; the last line its own 2 shifts Mon-Fri),
   `planned_downtime` (two breaks per shift, maintenance windows overlapping them, whole shifts
   without orders) and a PRI per machine from `routing_operation_machines` (the fastest eligible
   routing operation; the last machine has none, so its effectiveness is NULL). No MES operations:
   PRI is the routing fallback of analytics/KPI.md. All loaded with COPY, then VACUUM ANALYZE.
   Timed: `kpi_rows(every machine, false, window, 'day')` (SQL) against two Python paths: best =
   intervals and part counts by binary COPY straight into numpy, naive = every row with plain
   cursor.fetchall() and a Python conversion per timestamp; both then compute availability, effectiveness, quality rate and OEE per machine and
   day in Python/numpy by the definitions of analytics/KPI.md. The two must agree (max_abs_diff).
2. Genealogy. `analytics.genealogy_gen.build_graph` of --lots lots; --traces start lots per direction
   drawn from lots with an edge that way. Each trace by `lot_trace()` is checked against
   GeneratedGraph.reached(). Baselines, with python/sql ratios of the p50s (ratio_best = (b), the
   strongest; ratio_naive = (a)): (a) fetch the whole edge
   table, build adjacency dicts and BFS (what a trace costs that does not trust a cache: fetch + build
   + BFS p50); (b) BFS alone on the cached graph (no database round trip at all: informative, it
   reads a copy of the graph that goes stale); (c) BFS in Python issuing one
   `... WHERE consumed = ANY(frontier)` query per hop.
3. SPC. One tag, --samples samples at 20 Hz. In memory (3 x --rounds rounds, each under a second):
   `charts.subgroup_by_count(.., 5)` + `charts.chart("xbar_r", ..)` (which also runs the WE/Nelson
   rules on every point) against plain numpy (best: column-wise over the 5 strided columns; naive:
   reshape and reduce along rows of 5; mean, max - min, X̄̄, R̄, A2/D3/D4 limits, points beyond).
   End to end: --db-samples samples written to `samples` with binary COPY
   (SampleBatch.to_copy_binary), then
   `analytics.spc.build.run` (the package's loader + chart) against binary COPY into numpy + the
   column-wise chart (best) and fetchall + the row-wise chart (naive). Results are checked equal.

Every section prints `ratio_best` (the headline: against the best baseline a competent engineer
writes with the baseline's tools) and `ratio_naive`; ratio = baseline time / measured path time.

Rounds alternate the two sides of each comparison (order swapped every round) to spread the shared
machine's noise; `*_s` and `*_ms` figures are the BEST round (ratios from them), `*_median` the
median round, the lists every round. Progress on stderr; one JSON line on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from collections import defaultdict, deque
from datetime import datetime, timedelta, timezone
from typing import Any

import numpy as np
import psycopg

from analytics.genealogy_gen import build_graph
from analytics.spc import build as spc_build
from analytics.spc import charts
from bench.ingest import default_dsn
from bench.scratch import scratch_database
from historian.db import backend, connect
from historian.maintenance import ensure_partitions
from historian.registry import TagSpec, register
from historian.samples import SampleBatch
from twin.kernels import WE1

UTC = timezone.utc
PG_EPOCH_S = 946_684_800  # 2000-01-01 UTC: binary COPY counts timestamps from there
WINDOW_START = datetime(2026, 1, 4, tzinfo=UTC)  # a Sunday: the plant's calendar is off that day
SPC_START = datetime(2026, 3, 2, tzinfo=UTC)
STATES = ("producing", "idle", "setup", "unplanned_down", "planned_down")
STATE_CODE = {s: i for i, s in enumerate(STATES)}
PRODUCING, IDLE, SETUP, DOWN, PLANNED = range(5)
NO_STATE = 255
MARGIN_S = 6 * 3600  # state data starts before and ends after the window: edges get clipped
SPC_HZ = 20
SUBGROUP = 5
A2_5, D3_5, D4_5 = 0.577, 0.0, 2.114  # the X̄-R constants for subgroups of 5 (any SPC textbook)
QUICK = dict(machines=5, days=2, lots=5_000, samples=200_000, traces=40)
FULL = dict(machines=100, days=30, lots=100_000, samples=10_000_000, traces=150)


def say(msg: str) -> None:
    """Progress on stderr."""
    print(f"[bench.analytics {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def best_median(xs: list[float], digits: int = 4) -> tuple[float, float]:
    return round(min(xs), digits), round(statistics.median(xs), digits)


def pctl(xs: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(xs), q))


_SYNC: dict[str, psycopg.Connection] = {}


def _copy_rows_sync(dsn: str, sql: str, params: tuple) -> bytearray:
    conn = _SYNC.get(dsn)
    if conn is None:
        conn = _SYNC[dsn] = psycopg.connect(dsn, autocommit=True)
    buf = bytearray()
    with conn.cursor() as cur:
        with cur.copy(f"COPY ({sql}) TO STDOUT (FORMAT BINARY)", params) as cp:
            for chunk in cp:
                buf += chunk
    return buf


async def copy_numpy(conn: psycopg.AsyncConnection, sql: str, params: tuple,
                     fields: list[tuple[str, str]]) -> np.ndarray:
    """Rows of a query as a numpy record array, through binary COPY (fixed-width, non-NULL columns only).

    The fastest way a Python client gets many rows: no Python object per value. COPY TO hands
    over one row per call, which costs an await per row on an async connection; a plain
    connection in a worker thread (opened once, like the async one) is twice as fast here.
    Timestamps come as the server's int8 microseconds since 2000-01-01 ('>i8').
    """
    buf = await asyncio.to_thread(_copy_rows_sync, conn.info.dsn, sql, params)
    dtype = [("_n", ">i2")]
    for name, fmt in fields:
        dtype += [(f"_len_{name}", ">i4"), (name, fmt)]
    # 11-byte signature, flags, header extension length (0), the rows, the -1 trailer
    return np.frombuffer(memoryview(buf)[19:-2], dtype=np.dtype(dtype))


def close_sync() -> None:
    """Close the worker-thread connections copy_numpy opened."""
    for c in _SYNC.values():
        c.close()
    _SYNC.clear()


def pg_us_to_unix_s(col: np.ndarray) -> np.ndarray:
    """Binary COPY timestamps (µs since 2000-01-01) as float Unix seconds."""
    return col.astype(np.float64) / 1e6 + PG_EPOCH_S


# == 1. KPI ======================================================================================


class Plant:
    """The generated plant: rows for every table the KPIs read, as numpy columns (times in Unix s)."""

    def __init__(self, machines: int, days: int, seed: int) -> None:
        self.rng = rng = np.random.default_rng(seed)
        self.w0 = int(WINDOW_START.timestamp())
        self.w1 = self.w0 + days * 86_400
        self.g0, self.g1 = self.w0 - MARGIN_S, self.w1 + MARGIN_S
        n_lines = max(2, -(-machines // 10))
        self.names = [f"m{i:03d}" for i in range(machines)]
        self.lines = [f"L{i % n_lines + 1:02d}" for i in range(machines)]
        self.own_line = f"L{n_lines:02d}"  # the line with its own calendar
        # the fastest routing cycle each machine is eligible for; it actually runs a bit slower
        self.cycle = np.round(rng.uniform(6.0, 40.0, machines), 1)
        self.speed = rng.uniform(0.85, 0.99, machines)
        self.scrap_p = rng.uniform(0.005, 0.04, machines)
        self.shifts = self._shifts()  # line -> [(name, lo, hi)]
        self.interval_cols: list[np.ndarray] = []
        self.count_cols: list[np.ndarray] = []
        self.pd_rows: list[tuple[int, str, int, int]] = []  # (machine index, kind, lo, hi)

    def _shifts(self) -> dict[str, list[tuple[str, int, int]]]:
        out: dict[str, list[tuple[str, int, int]]] = {"": [], self.own_line: []}
        first = self.g0 // 86_400 * 86_400 - 86_400
        for day in range(first, self.g1 + 86_400, 86_400):
            weekday = datetime.fromtimestamp(day, UTC).weekday()  # Monday 0 .. Sunday 6
            if weekday != 6:
                for name, h in (("early", 6), ("late", 14), ("night", 22)):
                    out[""].append((name, day + h * 3600, day + (h + 8) * 3600))
            if weekday < 5:
                for name, h in (("early", 6), ("late", 14)):
                    out[self.own_line].append((name, day + h * 3600, day + (h + 8) * 3600))
        return out

    def generate(self) -> None:
        """Every machine's timeline, intervals, counts and planned downtime."""
        for m in range(len(self.names)):
            self._machine(m)

    def _base(self, span: int) -> np.ndarray:
        """Producing runs separated by stops, one code per second."""
        rng = self.rng
        n = span // 500 + 64
        codes, durs = [], []
        total = 0
        while total < span:
            run = (rng.exponential(540.0, n) + 30).astype(np.int64)
            kind = rng.choice(4, n, p=[0.80, 0.04, 0.03, 0.13])
            stop = np.select(
                [kind == 0, kind == 1, kind == 2],
                [rng.integers(10, 181, n),
                 np.clip(rng.lognormal(np.log(600.0), 1.0, n), 60, 14_400).astype(np.int64),
                 rng.integers(600, 2701, n)],
                rng.integers(180, 1201, n),
            )
            stop_code = np.array([IDLE, DOWN, SETUP, IDLE])[kind]
            c = np.empty(2 * n, dtype=np.uint8)
            d = np.empty(2 * n, dtype=np.int64)
            c[0::2], c[1::2] = PRODUCING, stop_code
            d[0::2], d[1::2] = run, stop
            codes.append(c)
            durs.append(d)
            total += int(d.sum())
        # start somewhere inside the first episode
        return np.repeat(np.concatenate(codes), np.concatenate(durs))[int(rng.integers(0, 600)):][:span]

    def _machine(self, m: int) -> None:
        rng, g0, span = self.rng, self.g0, self.g1 - self.g0
        state = self._base(span)
        cal = self.shifts[self.lines[m] if self.lines[m] in self.shifts else ""]
        planned = np.zeros(span, dtype=bool)
        stagger = (m % 3) * 600
        pd: list[tuple[int, str, int, int]] = []
        for _name, lo, hi in cal:
            planned[max(lo - g0, 0):max(hi - g0, 0)] = True
            if rng.random() < 0.02:
                pd.append((m, "no_orders", lo, hi))
            for at, length in ((2 * 3600, 900), (5 * 3600, 1800)):
                pd.append((m, "break", lo + at + stagger, lo + at + stagger + length))
        for _ in range(rng.poisson(span / (7 * 86_400))):
            lo = g0 + int(rng.integers(0, span // 60)) * 60
            pd.append((m, "maintenance", lo, lo + int(rng.integers(120, 481)) * 60))
        for _m, _kind, lo, hi in pd:
            planned[max(lo - g0, 0):max(hi - g0, 0)] = False
        self.pd_rows += pd
        # out of plan the machine is planned_down, but it may run into a break and start before the end
        edges = np.flatnonzero(np.diff(planned.astype(np.int8))) + 1
        starts = np.concatenate([[0], edges])
        ends = np.concatenate([edges, [span]])
        for a, b in zip(starts, ends):
            if planned[a]:
                continue
            lag, lead = (int(rng.integers(0, 121)), int(rng.integers(0, 121))) if b - a > 600 else (0, 0)
            state[a + lag:b - lead] = PLANNED
        # the twin saw nothing for a while now and then (gateway outage)
        for _ in range(rng.poisson(span / (10 * 86_400))):
            lo = int(rng.integers(0, span - 3000))
            state[lo:lo + int(rng.integers(300, 2401))] = NO_STATE
        # 1 Hz states -> intervals [start, end) of constant state
        change = np.flatnonzero(state[1:] != state[:-1]) + 1
        i_lo = np.concatenate([[0], change])
        i_hi = np.concatenate([change, [span]])
        code = state[i_lo]
        keep = code != NO_STATE
        n = int(keep.sum())
        self.interval_cols.append(np.stack([np.full(n, m), code[keep].astype(np.int64),
                                            i_lo[keep] + g0, i_hi[keep] + g0]))
        # parts: the machine makes one every cycle / speed seconds of production; a row per minute with parts
        made = (state == PRODUCING).reshape(-1, 60).sum(axis=1).cumsum() * self.speed[m] / self.cycle[m]
        parts = np.diff(np.floor(made).astype(np.int64), prepend=0)
        scrap = rng.binomial(parts, self.scrap_p[m])
        rows = np.flatnonzero(parts > 0)
        ts = g0 + (rows + 1) * 60  # counted at the end of the minute
        self.count_cols.append(np.stack([np.full(len(rows), m), ts, parts[rows] - scrap[rows], scrap[rows]]))


def _copy_binary(fields: list[tuple[str, np.ndarray]]) -> bytes:
    """Binary COPY of fixed-width columns ('i4' / 'i8' big-endian in the file) of equal length."""
    dtype = [("nfields", ">i2")]
    for name, col in fields:
        dtype += [(f"{name}_len", ">i4"), (name, ">i4" if col.dtype == np.int32 else ">i8")]
    rows = np.empty(len(fields[0][1]), dtype=dtype)
    rows["nfields"] = len(fields)
    for name, col in fields:
        rows[f"{name}_len"] = 4 if col.dtype == np.int32 else 8
        rows[name] = col
    return b"PGCOPY\n\xff\r\n\x00" + b"\x00" * 8 + rows.tobytes() + b"\xff\xff"


def _stamp(secs: np.ndarray) -> np.ndarray:
    return np.char.add(np.datetime_as_string(secs.astype("datetime64[s]")), "+00")


async def load_plant(conn: psycopg.AsyncConnection, plant: Plant) -> tuple[list[int], dict[str, int]]:
    """Write the plant with COPY, interleaved across machines as the twin writes; VACUUM ANALYZE."""
    cur = await conn.execute(
        "INSERT INTO machines (name, line) SELECT * FROM unnest(%s::text[], %s::text[]) "
        "ORDER BY 1 RETURNING id", (plant.names, plant.lines))
    ids = [r[0] for r in await cur.fetchall()]
    id_of = np.asarray(ids, dtype=np.int64)
    async with conn.cursor() as c:
        async with c.copy("COPY shifts (name, line, start_ts, end_ts) FROM STDIN") as cp:
            for line, rows in plant.shifts.items():
                lo = _stamp(np.array([r[1] for r in rows]))
                hi = _stamp(np.array([r[2] for r in rows]))
                await cp.write("".join(f"{r[0]}\t{line}\t{a}\t{b}\n" for r, a, b in zip(rows, lo, hi)).encode())
        pd = plant.pd_rows
        lo, hi = _stamp(np.array([r[2] for r in pd])), _stamp(np.array([r[3] for r in pd]))
        async with c.copy("COPY planned_downtime (machine_id, kind, start_ts, end_ts) FROM STDIN") as cp:
            await cp.write("".join(f"{ids[r[0]]}\t{r[1]}\t{a}\t{b}\n" for r, a, b in zip(pd, lo, hi)).encode())
    # PRI: each machine eligible for its own routing operation and its neighbour's; the last for none
    cur = await conn.execute("INSERT INTO products (code) VALUES ('BENCH-P') RETURNING id")
    (product,) = await cur.fetchone()  # type: ignore[misc]
    cur = await conn.execute("INSERT INTO routings (product_id, version) VALUES (%s, 1) RETURNING id", (product,))
    (routing,) = await cur.fetchone()  # type: ignore[misc]
    cur = await conn.execute(
        "INSERT INTO routing_operations (routing_id, seq, name, cycle_s) "
        "SELECT %s, s, 'op' || s, c FROM unnest(%s::int[], %s::float8[]) AS u (s, c) ORDER BY s RETURNING id",
        (routing, list(range(1, len(ids) + 1)), [float(c) for c in plant.cycle]))
    ro = [r[0] for r in await cur.fetchall()]
    pairs = {(ro[i], ids[i]) for i in range(len(ids) - 1)} | {(ro[(i + 1) % len(ids)], ids[i])
                                                              for i in range(len(ids) - 1)}
    await conn.execute("INSERT INTO routing_operation_machines SELECT * FROM unnest(%s::int[], %s::int[])",
                       ([p[0] for p in pairs], [p[1] for p in pairs]))

    iv = np.concatenate(plant.interval_cols, axis=1)
    iv = iv[:, np.lexsort((iv[0], iv[3]))]  # the twin writes an interval when it closes
    states = np.asarray(STATES)[iv[1]]
    lo, hi = _stamp(iv[2]), _stamp(iv[3])
    mid = id_of[iv[0]]
    step = 500_000
    async with conn.cursor() as c:
        for k in range(0, iv.shape[1], step):
            sl = slice(k, k + step)
            text = "".join(f"{m}\t{s}\t{a}\t{b}\n" for m, s, a, b in zip(mid[sl], states[sl], lo[sl], hi[sl]))
            async with c.copy("COPY state_intervals (machine_id, state, start_ts, end_ts) FROM STDIN") as cp:
                await cp.write(text.encode())
        pc = np.concatenate(plant.count_cols, axis=1)
        pc = pc[:, np.lexsort((pc[0], pc[1]))]
        for k in range(0, pc.shape[1], 1_000_000):
            sl = slice(k, k + 1_000_000)
            data = _copy_binary([("m", id_of[pc[0, sl]].astype(np.int32)),
                                 ("ts", (pc[1, sl] - PG_EPOCH_S) * 1_000_000),
                                 ("good", pc[2, sl]), ("scrap", pc[3, sl])])
            async with c.copy("COPY part_counts (machine_id, ts, good, scrap) FROM STDIN (FORMAT BINARY)") as cp:
                await cp.write(data)
    for table in ("machines", "shifts", "planned_downtime", "routing_operations", "routing_operation_machines",
                  "state_intervals", "part_counts"):
        await conn.execute(f"VACUUM ANALYZE {table}")
    return ids, {"state_intervals": int(iv.shape[1]), "part_counts": int(pc.shape[1]),
                 "shifts": sum(len(v) for v in plant.shifts.values()), "planned_downtime": len(plant.pd_rows)}


KPI_COLS = ("availability", "effectiveness", "quality_rate", "oee")


async def kpi_sql(conn: psycopg.AsyncConnection, ids: list[int], w0: datetime, w1: datetime) -> tuple[float, dict]:
    """The database's KPIs per machine and day, and the seconds the call took."""
    t0 = time.perf_counter()
    cur = await conn.execute("SELECT * FROM kpi_rows(%s, false, %s, %s, 'day')", (ids, w0, w1))
    rows = await cur.fetchall()
    elapsed = time.perf_counter() - t0
    names = [d.name for d in cur.description]  # type: ignore[union-attr]
    out = {}
    for r in rows:
        d = dict(zip(names, r))
        out[(d["machine"], int(d["bucket_start"].timestamp()))] = d
    return elapsed, out


async def kpi_fetch(conn: psycopg.AsyncConnection, w0: datetime, w1: datetime,
                    small_only: bool = False) -> dict[str, list]:
    """The rows the KPIs of the window read, plain cursor.fetchall() (small_only: all but intervals and counts)."""
    queries = {
        "machines": ("SELECT id, name, line FROM machines", ()),
        "intervals": ("SELECT machine_id, state, start_ts, end_ts FROM state_intervals "
                      "WHERE start_ts < %s AND end_ts > %s", (w1, w0)),
        "counts": ("SELECT machine_id, ts, good, scrap FROM part_counts WHERE ts >= %s AND ts < %s", (w0, w1)),
        "shifts": ("SELECT line, start_ts, end_ts FROM shifts WHERE start_ts < %s AND end_ts > %s", (w1, w0)),
        "shift_lines": ("SELECT DISTINCT line FROM shifts", ()),  # a calendar is a line's if it has any shift
        "downtime": ("SELECT machine_id, start_ts, end_ts FROM planned_downtime "
                     "WHERE start_ts < %s AND end_ts > %s", (w1, w0)),
        "cycles": ("SELECT rm.machine_id, r.cycle_s FROM routing_operation_machines rm "
                   "JOIN routing_operations r ON r.id = rm.routing_operation_id", ()),
    }
    out = {}
    for key, (sql, params) in queries.items():
        if small_only and key in ("intervals", "counts"):
            continue
        cur = await conn.execute(sql, params)
        out[key] = await cur.fetchall()
    return out


def _merge(spans: list[tuple[float, float]]) -> list[tuple[float, float]]:
    merged: list[list[float]] = []
    for lo, hi in sorted(spans):
        if merged and lo <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], hi)
        else:
            merged.append([lo, hi])
    return [(a, b) for a, b in merged]


KPI_COPY_INTERVALS = (
    "SELECT machine_id, (array_position(ARRAY['producing','idle','setup','unplanned_down','planned_down'], "
    "state) - 1)::int4, start_ts, end_ts FROM state_intervals WHERE start_ts < %s AND end_ts > %s "
    "ORDER BY machine_id, start_ts")
KPI_COPY_COUNTS = ("SELECT machine_id, ts, good, scrap FROM part_counts WHERE ts >= %s AND ts < %s "
                   "ORDER BY machine_id, ts")


async def kpi_fetch_best(conn: psycopg.AsyncConnection, w0: datetime, w1: datetime) -> dict[str, Any]:
    """The big tables through binary COPY straight into numpy (sorted by the server), the small ones fetchall."""
    iv = await copy_numpy(conn, KPI_COPY_INTERVALS, (w1, w0), [("m", ">i4"), ("s", ">i4"), ("lo", ">i8"),
                                                                ("hi", ">i8")])
    pc = await copy_numpy(conn, KPI_COPY_COUNTS, (w0, w1), [("m", ">i4"), ("ts", ">i8"), ("g", ">i8"),
                                                             ("s", ">i8")])
    out: dict[str, Any] = {
        "columns": {"i_m": iv["m"].astype(np.int64), "i_s": iv["s"].astype(np.int64),
                    "i_lo": pg_us_to_unix_s(iv["lo"]), "i_hi": pg_us_to_unix_s(iv["hi"]),
                    "c_m": pc["m"].astype(np.int64), "c_ts": pg_us_to_unix_s(pc["ts"]),
                    "c_g": pc["g"].astype(np.int64), "c_s": pc["s"].astype(np.int64)},
        "rows_fetched": len(iv) + len(pc),
    }
    small = await kpi_fetch(conn, w0, w1, small_only=True)
    out.update(small)
    out["rows_fetched"] += sum(len(v) for v in small.values())
    return out


def kpi_columns(rows: dict[str, list]) -> dict[str, np.ndarray]:
    """The intervals and counts fetched as tuples, as sorted numpy columns (a Python conversion per value)."""
    iv = rows["intervals"]
    n = len(iv)
    i_m = np.fromiter((r[0] for r in iv), np.int64, n)
    i_s = np.fromiter((STATE_CODE[r[1]] for r in iv), np.int64, n)
    i_lo = np.fromiter((r[2].timestamp() for r in iv), np.float64, n)
    i_hi = np.fromiter((r[3].timestamp() for r in iv), np.float64, n)
    o = np.lexsort((i_lo, i_m))
    pc = rows["counts"]
    n = len(pc)
    c_m = np.fromiter((r[0] for r in pc), np.int64, n)
    c_ts = np.fromiter((r[1].timestamp() for r in pc), np.float64, n)
    c_g = np.fromiter((r[2] for r in pc), np.int64, n)
    c_s = np.fromiter((r[3] for r in pc), np.int64, n)
    q = np.lexsort((c_ts, c_m))
    return {"i_m": i_m[o], "i_s": i_s[o], "i_lo": i_lo[o], "i_hi": i_hi[o],
            "c_m": c_m[q], "c_ts": c_ts[q], "c_g": c_g[q], "c_s": c_s[q]}


def kpi_python(rows: dict[str, Any], w0: datetime, w1: datetime) -> dict:
    """Availability, effectiveness, quality rate and OEE per machine and UTC day, as analytics/KPI.md defines them."""
    lo_w, hi_w = w0.timestamp(), w1.timestamp()
    cols = rows["columns"] if "columns" in rows else kpi_columns(rows)
    i_m, i_s, i_lo, i_hi = cols["i_m"], cols["i_s"], cols["i_lo"], cols["i_hi"]
    c_m, c_ts, c_g, c_s = cols["c_m"], cols["c_ts"], cols["c_g"], cols["c_s"]

    shift_lines = {r[0] for r in rows["shift_lines"]}
    shifts: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for line, a, b in rows["shifts"]:
        shifts[line].append((max(a.timestamp(), lo_w), min(b.timestamp(), hi_w)))
    downtime: dict[int, list[tuple[float, float]]] = defaultdict(list)
    for m, a, b in rows["downtime"]:
        downtime[m].append((a.timestamp(), b.timestamp()))
    pri: dict[int, float] = {}
    for m, c in rows["cycles"]:
        pri[m] = min(c, pri.get(m, c))
    days = []
    d = lo_w // 86_400 * 86_400
    while d < hi_w:
        days.append((max(d, lo_w), min(d + 86_400, hi_w)))
        d += 86_400

    out = {}
    for mid, name, line in rows["machines"]:
        cal = line if line in shift_lines else ""
        has_cal = cal in shift_lines
        pd = _merge(downtime.get(mid, []))
        a, b = np.searchsorted(i_m, [mid, mid + 1])
        s_lo, s_hi, s_st = i_lo[a:b], i_hi[a:b], i_s[a:b]
        a, b = np.searchsorted(c_m, [mid, mid + 1])
        ts = c_ts[a:b]
        cum_g = np.concatenate([[0], np.cumsum(c_g[a:b])])
        cum_s = np.concatenate([[0], np.cumsum(c_s[a:b])])
        cycle = pri.get(mid)
        for b_lo, b_hi in days:
            pot_pieces = ([(max(x, b_lo), min(y, b_hi)) for x, y in shifts.get(cal, []) if x < b_hi and y > b_lo]
                          if has_cal else [(b_lo, b_hi)])
            pot = pdot = 0.0
            pbt_pieces = []
            for p_lo, p_hi in pot_pieces:
                pot += p_hi - p_lo
                at = p_lo
                for x, y in pd:
                    if x < p_hi and y > p_lo:
                        x, y = max(x, p_lo), min(y, p_hi)
                        pdot += y - x
                        if x > at:
                            pbt_pieces.append((at, x))
                        at = max(at, y)
                if p_hi > at:
                    pbt_pieces.append((at, p_hi))
            per_state = np.zeros(5)
            gq = sq = 0
            for lo, hi in pbt_pieces:
                # intervals of a machine do not overlap: ends are sorted as starts are
                j0, j1 = np.searchsorted(s_hi, lo, "right"), np.searchsorted(s_lo, hi, "left")
                if j1 > j0:
                    overlap = np.minimum(s_hi[j0:j1], hi) - np.maximum(s_lo[j0:j1], lo)
                    per_state += np.bincount(s_st[j0:j1], weights=overlap, minlength=5)
                k0, k1 = np.searchsorted(ts, [lo, hi], "left")
                gq += int(cum_g[k1] - cum_g[k0])
                sq += int(cum_s[k1] - cum_s[k0])
            pbt = pot - pdot
            apt = float(per_state[PRODUCING])
            pq = gq + sq
            availability = apt / pbt if pbt else None
            if cycle is None and pq > 0:
                effectiveness = None  # parts without a PRI
            else:
                effectiveness = (pq * cycle if cycle is not None else 0.0) / apt if apt else None
            quality = gq / pq if pq else None
            oee = (availability * effectiveness * quality
                   if None not in (availability, effectiveness, quality) else None)
            out[(name, int(b_lo))] = {"availability": availability, "effectiveness": effectiveness,
                                      "quality_rate": quality, "oee": oee, "apt_s": apt, "pbt_s": pbt,
                                      "pot_s": pot, "gq": gq, "sq": sq}
    return out


def compare_kpis(sql: dict, py: dict) -> dict:
    """Largest |sql - python| over the four KPIs; NULL against a number and base-figure mismatches counted."""
    worst, null_mismatch, base_mismatch, nulls = 0.0, 0, 0, 0
    if set(sql) != set(py):
        return {"max_abs_diff": float("inf"), "rows_missing": len(set(sql) ^ set(py))}
    for key, s in sql.items():
        p = py[key]
        for col in KPI_COLS:
            a, b = s[col], p[col]
            if a is None or b is None:
                null_mismatch += (a is None) != (b is None)
                nulls += a is None
            else:
                worst = max(worst, abs(a - b))
        for col in ("apt_s", "pbt_s", "pot_s", "gq", "sq"):
            base_mismatch += s[col] != p[col]
    return {"max_abs_diff": worst, "null_mismatches": null_mismatch, "base_mismatches": base_mismatch,
            "null_kpis": nulls}


async def bench_kpi(conn: psycopg.AsyncConnection, args: argparse.Namespace) -> dict:
    say(f"kpi: generating {args.machines} machines x {args.days} days of 1 Hz states")
    t0 = time.perf_counter()
    plant = Plant(args.machines, args.days, args.seed)
    plant.generate()
    gen_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    ids, counts = await load_plant(conn, plant)
    load_s = time.perf_counter() - t0
    say(f"kpi: {counts} generated in {gen_s:.1f} s, loaded (COPY + VACUUM ANALYZE) in {load_s:.1f} s")
    w0, w1 = WINDOW_START, WINDOW_START + timedelta(days=args.days)
    sql_s: list[float] = []
    times: dict[str, dict[str, list[float]]] = {k: {"total": [], "fetch": [], "compute": []} for k in ("best", "naive")}
    sql_rows: dict = {}
    last_py: dict[str, dict] = {}
    rows_fetched = 0
    sides = ["sql", "best", "naive"]
    for r in range(args.rounds):
        for side in sides[r % 3:] + sides[: r % 3]:
            if side == "sql":
                elapsed, sql_rows = await kpi_sql(conn, ids, w0, w1)
                sql_s.append(elapsed)
                say(f"kpi round {r + 1} sql: {elapsed:.2f} s")
                continue
            t0 = time.perf_counter()
            fetched: dict[str, Any] = (await kpi_fetch_best(conn, w0, w1) if side == "best"
                                       else await kpi_fetch(conn, w0, w1))
            t1 = time.perf_counter()
            if side == "naive":
                rows_fetched = sum(len(v) for v in fetched.values())
            py_rows = kpi_python(fetched, w0, w1)
            t2 = time.perf_counter()
            del fetched
            times[side]["fetch"].append(t1 - t0)
            times[side]["compute"].append(t2 - t1)
            times[side]["total"].append(t2 - t0)
            say(f"kpi round {r + 1} python {side}: {t2 - t0:.2f} s (fetch {t1 - t0:.2f} s)")
            last_py[side] = py_rows
    diff = compare_kpis(sql_rows, last_py["naive"])
    diff_best = compare_kpis(sql_rows, last_py["best"])
    say(f"kpi check: naive {diff}, best {diff_best}")
    best_sql, med_sql = best_median(sql_s)
    best_py, med_py = best_median(times["best"]["total"])
    naive_py, naive_med = best_median(times["naive"]["total"])
    ib, inv = int(np.argmin(times["best"]["total"])), int(np.argmin(times["naive"]["total"]))
    return {
        "machines": args.machines, "days": args.days, **counts,
        "rows_fetched_by_python": rows_fetched,
        "kpi_rows_out": len(sql_rows), "generate_s": round(gen_s, 2), "load_s": round(load_s, 2),
        "kpi_sql_s": best_sql, "kpi_sql_s_median": med_sql,
        "kpi_python_best_s": best_py, "kpi_python_best_s_median": med_py,
        "kpi_python_best_fetch_s": round(times["best"]["fetch"][ib], 4),
        "kpi_python_best_compute_s": round(times["best"]["compute"][ib], 4),
        "kpi_python_naive_s": naive_py, "kpi_python_naive_s_median": naive_med,
        "kpi_python_naive_fetch_s": round(times["naive"]["fetch"][inv], 4),
        "kpi_python_naive_compute_s": round(times["naive"]["compute"][inv], 4),
        "ratio_best": round(best_py / best_sql, 2), "ratio_best_median": round(med_py / med_sql, 2),
        "ratio_naive": round(naive_py / best_sql, 2),
        "target_ratio_best_ge_2": best_py / best_sql >= 2.0,
        **diff, "best_check": diff_best,
        "sql_s_rounds": [round(x, 3) for x in sql_s],
        "python_best_s_rounds": [round(x, 3) for x in times["best"]["total"]],
        "python_naive_s_rounds": [round(x, 3) for x in times["naive"]["total"]],
        "note": "ratio = python / sql. best = intervals and part counts by binary COPY straight into numpy "
                "(server-sorted, timestamps as int8), small tables fetchall, then the numpy/searchsorted KPI "
                "code; naive = fetchall of every row and a Python conversion per timestamp, same KPI code",
    }


# == 2. Genealogy =================================================================================


def bfs(adj: dict[str, list[str]], lot: str) -> set[str]:
    seen: set[str] = set()
    todo = deque([lot])
    while todo:
        for nxt in adj.get(todo.popleft(), ()):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    seen.discard(lot)
    return seen


async def bfs_per_hop(conn: psycopg.AsyncConnection, lot: str, direction: str) -> set[str]:
    near, far = ("consumed", "produced") if direction == "up" else ("produced", "consumed")
    sql = f"SELECT {far} FROM lot_consumption WHERE {near} = ANY(%s)"
    seen: set[str] = set()
    frontier = {lot}
    while frontier:
        cur = await conn.execute(sql, (list(frontier),))
        frontier = {r[0] for r in await cur.fetchall()} - seen
        seen |= frontier
    seen.discard(lot)
    return seen


async def bench_genealogy(conn: psycopg.AsyncConnection, args: argparse.Namespace) -> dict:
    say(f"genealogy: building {args.lots} lots")
    t0 = time.perf_counter()
    graph = await build_graph(conn, args.lots, args.seed)
    build_s = time.perf_counter() - t0
    say(f"genealogy: {len(graph.consumed)} edges in {build_s:.1f} s")
    rng = np.random.default_rng(args.seed)
    ups = rng.choice(np.unique(graph.consumed), args.traces, replace=False)
    downs = rng.choice(np.unique(graph.produced), args.traces, replace=False)
    starts = [(graph.lots[int(i)], "up") for i in ups] + [(graph.lots[int(i)], "down") for i in downs]
    order = rng.permutation(len(starts))
    starts = [starts[i] for i in order]
    t0 = time.perf_counter()
    expected = {(lot, d): graph.reached(lot, d) for lot, d in starts}
    say(f"genealogy: {len(starts)} expected sets from GeneratedGraph.reached() in {time.perf_counter() - t0:.1f} s")

    sql_ms: list[float] = []
    hop_ms: list[float] = []
    bfs_ms: list[float] = []
    fetch_s: list[float] = []
    build_adj_s: list[float] = []
    wrong = {"sql": 0, "bfs": 0, "per_hop": 0}
    for r in range(args.rounds):
        for side in (("sql", "python") if r % 2 == 0 else ("python", "sql")):
            if side == "sql":
                for lot, d in starts:
                    t = time.perf_counter()
                    cur = await conn.execute("SELECT lot FROM lot_trace(%s, %s)", (lot, d))
                    found = {row[0] for row in await cur.fetchall()}
                    sql_ms.append(1e3 * (time.perf_counter() - t))
                    wrong["sql"] += found != expected[(lot, d)]
                    t = time.perf_counter()
                    found = await bfs_per_hop(conn, lot, d)
                    hop_ms.append(1e3 * (time.perf_counter() - t))
                    wrong["per_hop"] += found != expected[(lot, d)]
            else:
                t = time.perf_counter()
                cur = await conn.execute("SELECT consumed, produced FROM lot_consumption")
                edges = await cur.fetchall()
                t1 = time.perf_counter()
                up: dict[str, list[str]] = defaultdict(list)
                down: dict[str, list[str]] = defaultdict(list)
                for c, p in edges:
                    up[c].append(p)
                    down[p].append(c)
                t2 = time.perf_counter()
                fetch_s.append(t1 - t)
                build_adj_s.append(t2 - t1)
                for lot, d in starts:
                    t = time.perf_counter()
                    found = bfs(up if d == "up" else down, lot)
                    bfs_ms.append(1e3 * (time.perf_counter() - t))
                    wrong["bfs"] += found != expected[(lot, d)]
        say(f"genealogy round {r + 1}: sql p50 {np.median(sql_ms):.2f} ms, per-hop p50 {np.median(hop_ms):.2f} ms, "
            f"fetch {fetch_s[-1]:.3f} s + build {build_adj_s[-1]:.3f} s, bfs p50 {np.median(bfs_ms):.4f} ms")
    sql_p50 = pctl(sql_ms, 50)
    fetch_build_ms = 1e3 * (min(fetch_s) + min(build_adj_s))
    sizes = [len(v) for v in expected.values()]
    return {
        "lots": args.lots, "edges": int(len(graph.consumed)), "build_s": round(build_s, 2),
        "traces_per_round": len(starts), "traces_timed": len(sql_ms), "lots_reached_p50": float(np.median(sizes)),
        "lots_reached_max": int(max(sizes)),
        "sql_p50_ms": round(sql_p50, 3), "sql_p99_ms": round(pctl(sql_ms, 99), 3),
        "python_fetch_edges_s": round(min(fetch_s), 4), "python_build_adjacency_s": round(min(build_adj_s), 4),
        "python_bfs_p50_ms": round(pctl(bfs_ms, 50), 4), "python_bfs_p99_ms": round(pctl(bfs_ms, 99), 4),
        "ratio_best": round(pctl(bfs_ms, 50) / sql_p50, 4),
        "ratio_naive": round((fetch_build_ms + pctl(bfs_ms, 50)) / sql_p50, 1),
        "ratio_fetch_bfs": round((fetch_build_ms + pctl(bfs_ms, 50)) / sql_p50, 1),
        "ratio_cached_bfs": round(pctl(bfs_ms, 50) / sql_p50, 4),
        "per_hop_p50_ms": round(pctl(hop_ms, 50), 3), "per_hop_p99_ms": round(pctl(hop_ms, 99), 3),
        "ratio_per_hop": round(pctl(hop_ms, 50) / sql_p50, 2),
        "wrong_sets": wrong,
        "note": "ratio = python / sql. ratio_best = ratio_cached_bfs: a BFS on adjacency dicts cached in the "
                "client beats the database by orders of magnitude per trace (it skips the round trip, and the "
                "cache goes stale); ratio_naive = ratio_fetch_bfs. "
                "p50/p99 over every trace of every round; fetch/build best round. ratio_fetch_bfs = (fetch "
                "edges + build adjacency + BFS p50) / sql p50; ratio_cached_bfs = BFS p50 on an in-memory "
                "copy / sql p50; ratio_per_hop = Python BFS with one ANY() query per hop / sql p50. "
                "lot_trace also returns depth, item, quantity and a path per lot; the baselines sets only",
    }


# == 3. SPC =======================================================================================


def spc_values(n: int, seed: int) -> np.ndarray:
    """A bore diameter: in control mostly, with a few shifts and drifts for the rules to catch."""
    rng = np.random.default_rng(seed)
    x = 25.0 + 0.005 * rng.normal(size=n)
    for at in rng.integers(0, max(n - 5000, 1), max(n // 200_000, 2)):
        x[at:at + int(rng.integers(500, 5000))] += rng.choice([-1.0, 1.0]) * rng.uniform(0.005, 0.01)
    return x


def xbar_r_numpy(values: np.ndarray, size: int = SUBGROUP) -> dict:
    """The X̄-R chart, plain numpy: subgroup means and ranges, X̄̄ and R̄, limits, points beyond."""
    m = values.shape[0] // size
    x = values[: m * size].reshape(m, size)
    mean = x.mean(axis=1)
    rng = x.max(axis=1) - x.min(axis=1)
    xbarbar, rbar = mean.mean(), rng.mean()
    ucl, lcl = xbarbar + A2_5 * rbar, xbarbar - A2_5 * rbar
    return {"mean": mean, "range": rng, "cl": xbarbar, "ucl": ucl, "lcl": lcl, "r_cl": rbar,
            "r_ucl": D4_5 * rbar, "r_lcl": D3_5 * rbar,
            "beyond": int(np.count_nonzero((mean > ucl) | (mean < lcl))),
            "r_beyond": int(np.count_nonzero((rng > D4_5 * rbar) | (rng < D3_5 * rbar)))}


def xbar_r_columns(values: np.ndarray, size: int = SUBGROUP) -> dict:
    """The X̄-R chart as a competent numpy engineer writes it: column-wise over strided views, no [m, 5] reductions.

    Reducing along rows of 5 (xbar_r_numpy) runs numpy's inner loop 5 elements at a time; adding
    and comparing the 5 strided columns runs it over m elements at a time.
    """
    m = values.shape[0] // size
    cols = [values[i: m * size: size] for i in range(size)]
    total, hi, lo = cols[0].copy(), cols[0].copy(), cols[0].copy()
    for c in cols[1:]:
        total += c
        np.maximum(hi, c, out=hi)
        np.minimum(lo, c, out=lo)
    mean = total / size
    rng = hi - lo
    xbarbar, rbar = mean.mean(), rng.mean()
    ucl, lcl = xbarbar + A2_5 * rbar, xbarbar - A2_5 * rbar
    return {"mean": mean, "range": rng, "cl": xbarbar, "ucl": ucl, "lcl": lcl, "r_cl": rbar,
            "r_ucl": D4_5 * rbar, "r_lcl": D3_5 * rbar,
            "beyond": int(np.count_nonzero((mean > ucl) | (mean < lcl))),
            "r_beyond": int(np.count_nonzero((rng > D4_5 * rbar) | (rng < D3_5 * rbar)))}


def xbar_r_package(ts: np.ndarray, values: np.ndarray) -> tuple[charts.Chart, float]:
    t = time.perf_counter()
    sg = charts.subgroup_by_count(ts, values, SUBGROUP)
    sub_s = time.perf_counter() - t
    return charts.chart("xbar_r", sg), sub_s


def compare_chart(c: charts.Chart, b: dict) -> dict:
    r = c.secondary
    assert r is not None
    return {
        "max_abs_diff_means": float(np.max(np.abs(c.x - b["mean"]))),
        "max_abs_diff_ranges": float(np.max(np.abs(r.x - b["range"]))),
        "max_abs_diff_limits": float(max(abs(float(x) - b[k]) for x, k in (  # type: ignore[arg-type]
            (c.cl, "cl"), (c.ucl, "ucl"), (c.lcl, "lcl"), (r.cl, "r_cl"), (r.ucl, "r_ucl"), (r.lcl, "r_lcl")))),
        "beyond_package": int(np.count_nonzero(c.flags & WE1)), "beyond_numpy": b["beyond"],
        "r_beyond_package": int(np.count_nonzero(r.flags & WE1)), "r_beyond_numpy": b["r_beyond"],
    }


async def naive_fetch(conn: psycopg.AsyncConnection, tag_id: int, start: datetime,
                      end: datetime) -> tuple[np.ndarray, np.ndarray]:
    cur = await conn.execute("SELECT ts, value FROM samples WHERE tag_id = %s AND ts >= %s AND ts < %s "
                             "AND quality >= 64 AND value <> 'NaN' ORDER BY ts", (tag_id, start, end))
    rows = await cur.fetchall()
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    ts = np.fromiter(((r[0] - epoch) // timedelta(microseconds=1) for r in rows), np.int64, len(rows))
    values = np.fromiter((r[1] for r in rows), np.float64, len(rows))
    return ts, values


async def best_fetch(conn: psycopg.AsyncConnection, tag_id: int, start: datetime,
                     end: datetime) -> tuple[np.ndarray, np.ndarray]:
    """(ts µs, value) of a tag by binary COPY into numpy: the fastest fetch a Python client has."""
    rows = await copy_numpy(conn, "SELECT ts, value FROM samples WHERE tag_id = %s AND ts >= %s AND ts < %s "
                                  "AND quality >= 64 AND value <> 'NaN' ORDER BY ts", (tag_id, start, end),
                            [("ts", ">i8"), ("value", ">f8")])
    return rows["ts"].astype(np.int64) + PG_EPOCH_S * 1_000_000, rows["value"].astype(np.float64)


async def bench_spc(conn: psycopg.AsyncConnection, args: argparse.Namespace) -> dict:
    n = args.samples
    start_us = int(SPC_START.timestamp()) * 1_000_000
    ts = start_us + np.arange(n, dtype=np.int64) * (1_000_000 // SPC_HZ)
    values = spc_values(n, args.seed)
    # compile numba (cached on disk) and warm numpy before timing
    xbar_r_package(ts[:5000], values[:5000])
    xbar_r_numpy(values[:5000])
    xbar_r_columns(values[:5000])
    pkg_s, sub_s, np_s, col_s = [], [], [], []
    check: dict = {}
    check_cols: dict = {}
    mem_rounds = 3 * args.rounds  # under a second each: more rounds steady the figures
    sides = ["package", "columns", "numpy"]
    for r in range(mem_rounds):
        for side in sides[r % 3:] + sides[: r % 3]:
            t = time.perf_counter()
            if side == "package":
                chart, s = xbar_r_package(ts, values)
                pkg_s.append(time.perf_counter() - t)
                sub_s.append(s)
            elif side == "columns":
                base_cols = xbar_r_columns(values)
                col_s.append(time.perf_counter() - t)
            else:
                base = xbar_r_numpy(values)
                np_s.append(time.perf_counter() - t)
        say(f"spc in memory round {r + 1}: package {pkg_s[-1]:.3f} s (subgrouping {sub_s[-1]:.3f}), "
            f"numpy column-wise {col_s[-1]:.3f} s, row-wise {np_s[-1]:.3f} s")
        if r == 0:
            check = compare_chart(chart, base)
            check_cols = compare_chart(chart, base_cols)
            say(f"spc check: {check_cols}")
    mem_chart = chart
    out: dict[str, Any] = {"samples": n, "subgroup": SUBGROUP, "subgroups": len(mem_chart.x),
                           "in_memory_rounds": mem_rounds}
    best_pkg, med_pkg = best_median(pkg_s)
    best_np, med_np = best_median(np_s)
    best_col, med_col = best_median(col_s)
    out.update({"chart_package_s": best_pkg, "chart_package_s_median": med_pkg,
                "chart_package_subgroup_s": round(min(sub_s), 4),
                "chart_numpy_columns_s": best_col, "chart_numpy_columns_s_median": med_col,
                "chart_numpy_rows_s": best_np, "chart_numpy_rows_s_median": med_np,
                "ratio_best": round(best_col / best_pkg, 2), "ratio_naive": round(best_np / best_pkg, 2),
                "target_ratio_best_ge_1": best_col / best_pkg >= 1.0,
                **check_cols, "rowwise_check": check,
                "chart_note": "ratio = numpy / package. package = subgroup_by_count + chart('xbar_r'), which also "
                              "runs the 12 WE/Nelson rules on both charts and the subgroup sd; numpy = means, "
                              "ranges, limits and points beyond only; best = column-wise over strided views, "
                              "naive = reductions along rows of 5"})

    # end to end from the historian
    m = min(args.db_samples or n, n)
    reg = await register(conn, [TagSpec("bench.spc.bore", "machine", unit="mm")])
    tag_id = reg.by_name["bench.spc.bore"].id
    first = SPC_START.date()
    end = SPC_START + timedelta(microseconds=m * (1_000_000 // SPC_HZ))
    await ensure_partitions(conn, first, end.date())
    say(f"spc: writing {m:,} samples with binary COPY")
    t0 = time.perf_counter()
    step = 1_000_000
    for k in range(0, m, step):
        hi = min(k + step, m)
        batch = SampleBatch.from_columns(np.full(hi - k, tag_id, dtype=np.int32), ts[k:hi], values[k:hi])
        async with conn.transaction():
            async with conn.cursor() as cur:
                async with cur.copy("COPY samples (tag_id, ts, value, quality) FROM STDIN (FORMAT BINARY)") as cp:
                    await cp.write(batch.to_copy_binary())
    write_s = time.perf_counter() - t0
    await conn.execute("VACUUM ANALYZE samples")
    say(f"spc: written in {write_s:.1f} s ({m / write_s:,.0f} rows/s), vacuumed")
    q = spc_build.ChartQuery("bench.spc.bore", "xbar_r", SPC_START, end, subgroup=str(SUBGROUP))
    ref, _ = xbar_r_package(ts[:m], values[:m])
    e2e_s: list[float] = []
    base_s: dict[str, list[float]] = {"best": [], "naive": []}
    fetch_s: dict[str, list[float]] = {"best": [], "naive": []}
    wrong = {"package": 0, "best": 0, "naive": 0}
    sides = ["package", "best", "naive"]
    for r in range(args.rounds):
        for side in sides[r % 3:] + sides[: r % 3]:
            t = time.perf_counter()
            if side == "package":
                res = await spc_build.run(conn, q)
                e2e_s.append(time.perf_counter() - t)
                wrong["package"] += not (np.array_equal(res.chart.x, ref.x) and res.chart.ucl == ref.ucl
                                         and res.chart.lcl == ref.lcl and np.array_equal(res.chart.ts, ref.ts))
                continue
            fetch = best_fetch if side == "best" else naive_fetch
            got_ts, got_v = await fetch(conn, tag_id, SPC_START, end)
            fetch_s[side].append(time.perf_counter() - t)
            base = (xbar_r_columns if side == "best" else xbar_r_numpy)(got_v)
            base_s[side].append(time.perf_counter() - t)
            wrong[side] += not (np.array_equal(got_ts, ts[:m]) and np.max(np.abs(base["mean"] - ref.x)) < 1e-9)
            del got_ts, got_v
        say(f"spc end to end round {r + 1}: package {e2e_s[-1]:.2f} s, COPY + column numpy "
            f"{base_s['best'][-1]:.2f} s, fetchall + numpy {base_s['naive'][-1]:.2f} s")
    best_e2e, med_e2e = best_median(e2e_s)
    best_b, med_b = best_median(base_s["best"])
    best_naive, med_naive = best_median(base_s["naive"])
    out.update({
        "db_samples": m, "db_write_s": round(write_s, 2), "db_write_rows_per_s": round(m / write_s),
        "e2e_package_s": best_e2e, "e2e_package_s_median": med_e2e,
        "e2e_copy_numpy_s": best_b, "e2e_copy_numpy_s_median": med_b,
        "e2e_copy_fetch_s": round(fetch_s["best"][int(np.argmin(base_s["best"]))], 3),
        "e2e_fetchall_numpy_s": best_naive, "e2e_fetchall_numpy_s_median": med_naive,
        "e2e_fetchall_s": round(fetch_s["naive"][int(np.argmin(base_s["naive"]))], 3),
        "e2e_ratio_best": round(best_b / best_e2e, 2), "e2e_ratio_naive": round(best_naive / best_e2e, 2),
        "e2e_mismatches": wrong,
        "e2e_note": "package = analytics.spc.build.run (resolve, frozen-limit lookup, packed bytea loader a day "
                    "at a time, chart with rules); best = binary COPY of (ts, value) into numpy + column-wise "
                    "numpy chart; naive = cursor.fetchall of (ts, value) + row-wise numpy chart",
    })
    return out


# == main =========================================================================================


async def main_async(args: argparse.Namespace) -> dict:
    """Set up a scratch database, run the three benchmarks, drop it."""
    t_all = time.perf_counter()
    result: dict[str, Any] = {"bench": "analytics"}
    async with scratch_database(args.dsn or default_dsn()) as dsn:
        conn = await connect(dsn)
        result["backend"] = await backend(conn)
        result["rounds"] = args.rounds
        result["stat"] = "best round (and median); rounds alternate the two sides"
        result["kpi"] = await bench_kpi(conn, args)
        result["genealogy"] = await bench_genealogy(conn, args)
        result["spc"] = await bench_spc(conn, args)
        await conn.close()
        close_sync()
    result["load_avg_1min"] = round(os.getloadavg()[0], 2)
    result["total_s"] = round(time.perf_counter() - t_all, 1)
    return result


def main() -> None:
    """Parse arguments, run, print one JSON line."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--machines", type=int)
    p.add_argument("--days", type=int)
    p.add_argument("--lots", type=int)
    p.add_argument("--samples", type=int)
    p.add_argument("--db-samples", type=int, help="samples written to the historian for the end-to-end chart "
                                                  "(default: --samples)")
    p.add_argument("--traces", type=int, help="start lots per direction")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--quick", action="store_true", help="small sizes for a smoke run: " + json.dumps(QUICK))
    p.add_argument("--dsn", help="server to make a scratch database on (default: the services' TimescaleDB)")
    args = p.parse_args()
    for key, value in (QUICK if args.quick else FULL).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    print(json.dumps(asyncio.run(main_async(args))))


if __name__ == "__main__":
    main()
