"""A synthetic lot genealogy (raw -> intermediate -> finished) of any size, loaded with COPY, for benchmarks."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Literal

import numpy as np
import psycopg

# shares of the lots in each layer, and how many lots of the layer below each one consumes
RAW_SHARE, INTERMEDIATE_SHARE = 0.5, 0.35
INTERMEDIATE_INPUTS = (2, 4)   # raw lots per intermediate, inclusive
FINISHED_INPUTS = (2, 3)       # intermediates per finished lot, inclusive
PACKAGING_CHANCE = 0.5         # a finished lot also consumes one raw lot directly (packaging): a layer skipped
WINDOW = 12                    # inputs come from lots made around the same time: fan-out stays local

RAW_ITEMS, INTERMEDIATE_ITEMS, FINISHED_ITEMS = 20, 8, 4


@dataclass(frozen=True)
class GeneratedGraph:
    """The lots and edges a build wrote: edge k is lots[consumed[k]] consumed into lots[produced[k]]."""

    lots: list[str]
    raw: int
    intermediate: int
    finished: int
    consumed: np.ndarray
    produced: np.ndarray

    def reached(self, lot: str, direction: Literal["up", "down"]) -> set[str]:
        """The lots lot_trace() must return: up = what lot went into, down = what it contains."""
        index = {name: i for i, name in enumerate(self.lots)}
        src, dst = (self.consumed, self.produced) if direction == "up" else (self.produced, self.consumed)
        order = np.argsort(src, kind="stable")
        starts = np.searchsorted(src[order], np.arange(len(self.lots) + 1))
        seen: set[int] = set()
        todo = deque([index[lot]])
        while todo:
            i = todo.popleft()
            for k in order[starts[i]:starts[i + 1]]:
                j = int(dst[k])
                if j not in seen:
                    seen.add(j)
                    todo.append(j)
        return {self.lots[i] for i in seen}


def _inputs(rng: np.random.Generator, consumers: int, pool: int, low: int, high: int) -> tuple[np.ndarray, np.ndarray]:
    """(consumer, input) pairs: each consumer takes low..high distinct inputs from a window around its time."""
    centre = (np.arange(consumers) * pool / consumers).astype(np.int64)
    width = 2 * WINDOW
    # distinct offsets per row: the first `high` columns of a random permutation of the window
    offsets = np.argsort(rng.random((consumers, width)), axis=1)[:, :high] - WINDOW
    counts = rng.integers(low, high + 1, consumers)
    keep = np.arange(high)[None, :] < counts[:, None]
    inputs = np.clip(centre[:, None] + offsets, 0, pool - 1)
    rows = np.broadcast_to(np.arange(consumers)[:, None], inputs.shape)
    pairs = np.unique(np.stack([rows[keep], inputs[keep]], axis=1), axis=0)  # clipping at the ends may repeat
    return pairs[:, 0], pairs[:, 1]


async def _items(conn: psycopg.AsyncConnection, prefix: str) -> dict[str, list[int]]:
    """Item ids per layer, made when missing."""
    codes = {layer: [f"{prefix}-{layer}-{i:02d}" for i in range(n)]
             for layer, n in (("raw", RAW_ITEMS), ("int", INTERMEDIATE_ITEMS), ("fin", FINISHED_ITEMS))}
    every = [c for cs in codes.values() for c in cs]
    await conn.execute(
        "INSERT INTO items (code, unit) SELECT c, 'kg' FROM unnest(%s::text[]) c ON CONFLICT (code) DO NOTHING",
        (every,),
    )
    cur = await conn.execute("SELECT code, id FROM items WHERE code = ANY(%s)", (every,))
    ids = dict(await cur.fetchall())
    return {layer: [ids[c] for c in cs] for layer, cs in codes.items()}


async def _copy(conn: psycopg.AsyncConnection, statement: str, lines: list[str]) -> None:
    async with conn.cursor() as cur:
        async with cur.copy(statement) as copy:  # type: ignore[arg-type]
            await copy.write("".join(lines).encode())


async def build_graph(conn: psycopg.AsyncConnection, lots: int, seed: int, *, prefix: str = "GEN") -> GeneratedGraph:
    """Write `lots` lots in three layers and their consumption edges (fan-in and fan-out) in one transaction."""
    if lots < 10:
        raise ValueError(f"lots: at least 10 make three layers, got {lots}")
    rng = np.random.default_rng(seed)
    n_raw = int(lots * RAW_SHARE)
    n_int = int(lots * INTERMEDIATE_SHARE)
    n_fin = lots - n_raw - n_int
    names = ([f"{prefix}-R{i:07d}" for i in range(n_raw)] + [f"{prefix}-I{i:07d}" for i in range(n_int)]
             + [f"{prefix}-F{i:07d}" for i in range(n_fin)])
    int0, fin0 = n_raw, n_raw + n_int

    into_int, from_raw = _inputs(rng, n_int, n_raw, *INTERMEDIATE_INPUTS)
    into_fin, from_int = _inputs(rng, n_fin, n_int, *FINISHED_INPUTS)
    packed = np.flatnonzero(rng.random(n_fin) < PACKAGING_CHANCE)
    packaging = rng.integers(0, n_raw, len(packed))
    consumed = np.concatenate([from_raw, from_int + int0, packaging])
    produced = np.concatenate([into_int + int0, into_fin + fin0, packed + fin0])

    async with conn.transaction():
        items = await _items(conn, prefix)
        layer_items = np.concatenate([
            rng.choice(items["raw"], n_raw), rng.choice(items["int"], n_int), rng.choice(items["fin"], n_fin)])
        quantity = rng.integers(50, 1000, lots)
        status = ["consumed"] * (n_raw + n_int) + ["finished"] * n_fin
        await _copy(conn, "COPY lots (id, item_id, quantity, unit, status) FROM STDIN",
                    [f"{n}\t{i}\t{q}\tkg\t{s}\n" for n, i, q, s in zip(names, layer_items, quantity, status)])
        edge_qty = rng.integers(1, 50, len(consumed))
        lines = [f"{names[c]}\t{names[p]}\t{q}\n" for c, p, q in zip(consumed, produced, edge_qty)]
        # edges into intermediates first: each statement's cycle check then walks up from lots that have
        # gone into nothing yet, as when a plant records production
        await _copy(conn, "COPY lot_consumption (consumed, produced, quantity) FROM STDIN", lines[:len(from_raw)])
        await _copy(conn, "COPY lot_consumption (consumed, produced, quantity) FROM STDIN", lines[len(from_raw):])
    await conn.execute("ANALYZE lots")
    await conn.execute("ANALYZE lot_consumption")
    return GeneratedGraph(names, n_raw, n_int, n_fin, consumed, produced)
