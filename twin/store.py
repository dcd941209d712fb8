"""The twin's tables: what a step produced, the machines' status and the engine snapshot, in one transaction."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Sequence

import msgspec
import psycopg

from historian.samples import SampleBatch, from_us
from twin.engine import Layout, StepOutput
from twin.model_card import ModelCard


async def machine_ids(conn: psycopg.AsyncConnection, names: Sequence[str]) -> list[int]:
    """Ids of the named machines, creating the ones the registry does not have yet."""
    await conn.execute(
        "INSERT INTO machines (name) SELECT unnest(%s::text[]) ON CONFLICT (name) DO NOTHING", (list(names),)
    )
    cur = await conn.execute("SELECT name, id FROM machines WHERE name = ANY(%s)", (list(names),))
    ids = dict(await cur.fetchall())
    return [ids[n] for n in names]


async def load_snapshot(conn: psycopg.AsyncConnection, name: str) -> tuple[Layout, bytes] | None:
    """The stored snapshot of this twin and the layout it was taken with, if any."""
    cur = await conn.execute("SELECT layout, state FROM twin_snapshots WHERE name = %s", (name,))
    row = await cur.fetchone()
    if row is None:
        return None
    return msgspec.convert(row[0], Layout), bytes(row[1])


async def record(
    conn: psycopg.AsyncConnection,
    name: str,
    layout: Layout,
    ids: Sequence[int],
    out: StepOutput,
    status: Sequence[dict[str, Any]],
    snapshot: bytes,
) -> None:
    """Write intervals, counts, alarms, every machine's status and the snapshot, all or nothing."""
    async with conn.transaction(), conn.cursor() as cur:
        if out.intervals:
            await cur.executemany(
                "INSERT INTO state_intervals (machine_id, state, start_ts, end_ts) VALUES (%s, %s, %s, %s) "
                "ON CONFLICT DO NOTHING",
                [(ids[i.machine], i.state, from_us(i.start_us), from_us(i.end_us)) for i in out.intervals],
            )
        if out.counts:
            await cur.executemany(
                "INSERT INTO part_counts (machine_id, ts, good, scrap) VALUES (%s, %s, %s, %s) "
                "ON CONFLICT (machine_id, ts) DO UPDATE "
                "SET good = part_counts.good + excluded.good, scrap = part_counts.scrap + excluded.scrap",
                [(ids[c.machine], from_us(c.ts_us), c.good, c.scrap) for c in out.counts],
            )
        if out.alarms:
            await cur.executemany(
                "INSERT INTO alarms (machine_id, tag_id, ts, rules, value) VALUES (%s, %s, %s, %s, %s)",
                [(ids[a.machine], a.tag_id, from_us(a.ts_us), a.rules, a.value) for a in out.alarms],
            )
        await cur.executemany(
            "INSERT INTO machine_status AS s (machine_id, state, state_since, good_total, scrap_total, sensors, "
            "predictions, updated_at) VALUES (%s, %s, %s, %s, %s, %s, %s, now()) "
            "ON CONFLICT (machine_id) DO UPDATE SET state = excluded.state, state_since = excluded.state_since, "
            "good_total = excluded.good_total, scrap_total = excluded.scrap_total, sensors = excluded.sensors, "
            "predictions = excluded.predictions, updated_at = now()",
            [
                (ids[m], s["state"], _ts(s["state_since_us"]), s["good_total"], s["scrap_total"],
                 json.dumps(s["sensors"]), json.dumps(s["predictions"]))
                for m, s in enumerate(status)
            ],
        )
        await cur.execute(
            "INSERT INTO twin_snapshots (name, taken_at, layout, state) VALUES (%s, now(), %s, %s) "
            "ON CONFLICT (name) DO UPDATE SET taken_at = now(), layout = excluded.layout, state = excluded.state",
            (name, msgspec.json.encode(layout).decode(), snapshot),
        )


async def samples_since(
    conn: psycopg.AsyncConnection, since: dict[int, int], limit: int = 1_000_000
) -> SampleBatch:
    """Samples of these tags newer than each one's time (µs): what arrived while the twin was away."""
    if not since:
        return SampleBatch.empty()
    cur = await conn.execute(
        "SELECT s.tag_id, (extract(epoch FROM s.ts) * 1000000)::bigint, s.value, s.quality "
        "FROM samples s JOIN unnest(%s::int[], %s::timestamptz[]) AS l(tag_id, since) ON s.tag_id = l.tag_id "
        "WHERE s.ts > l.since ORDER BY s.ts LIMIT %s",
        (list(since), [from_us(v) for v in since.values()], limit),
    )
    rows = await cur.fetchall()
    if not rows:
        return SampleBatch.empty()
    tag_id, ts, value, quality = zip(*rows)
    return SampleBatch.from_columns(tag_id, ts, [float("nan") if v is None else v for v in value], quality)


async def register_models(conn: psycopg.AsyncConnection, cards: Sequence[ModelCard]) -> None:
    """Record each served model (name, sha256, data set, split, protocol, metrics) in the registry table."""
    for c in cards:
        await conn.execute(
            "INSERT INTO models (name, sha256, kind, version, dataset, split, protocol, metrics, card) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (name, sha256) DO NOTHING",
            (c.name, c.sha256, c.kind, c.version, c.dataset, c.split, c.protocol, json.dumps(c.metrics),
             msgspec.json.encode(c).decode()),
        )


def _ts(us: int | None) -> datetime | None:
    return from_us(us) if us else None
