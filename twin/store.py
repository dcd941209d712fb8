"""The twin's tables: what a step produced, the machines' status and the engine snapshot, in one transaction."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Sequence

import msgspec
import psycopg

from historian.samples import SampleBatch, from_us
from twin.alarms import AlarmEvent
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
        await write_alarms(cur, ids, out.alarms)
        await cur.execute(_SHELVES_EXPIRED)
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


_KEY = "machine_id = %(m)s AND coalesce(tag_id, 0) = coalesce(%(t)s, 0) AND rule = %(r)s AND active"
_JOURNAL = ("INSERT INTO alarm_journal (alarm_id, data_ts, transition, actor, detail) "
            "SELECT id, %(ts)s, %(kind)s, 'twin', %(detail)s FROM a")
_ALARM_SQL = {
    # a replay of a raise (the twin restarted before its snapshot was recorded) finds the alarm active: no-op
    "raised": "WITH a AS (INSERT INTO alarms (machine_id, tag_id, rule, ts, last_ts, rules, value, priority) "
              "VALUES (%(m)s, %(t)s, %(r)s, %(ts)s, %(ts)s, %(rules)s, %(v)s, %(p)s) "
              "ON CONFLICT (machine_id, coalesce(tag_id, 0), rule) WHERE active DO NOTHING RETURNING id) " + _JOURNAL,
    "updated": "UPDATE alarms SET last_ts = greatest(last_ts, %(ts)s), points = points + %(n)s, value = %(v)s, "
               "rules = ARRAY(SELECT DISTINCT unnest(rules || %(rules)s::text[]) ORDER BY 1) WHERE " + _KEY,
    "escalated": "WITH a AS (UPDATE alarms SET priority = %(p)s, last_ts = greatest(last_ts, %(ts)s), "
                 "points = points + 1, value = %(v)s, "
                 "rules = ARRAY(SELECT DISTINCT unnest(rules || %(rules)s::text[]) ORDER BY 1) "
                 "WHERE " + _KEY + " RETURNING id) " + _JOURNAL,
    "cleared": "WITH a AS (UPDATE alarms SET active = false, cleared_ts = %(ts)s WHERE " + _KEY + " RETURNING id) "
               + _JOURNAL,
    "suppressed": "WITH a AS (UPDATE alarms SET suppressed = true WHERE " + _KEY + " RETURNING id) " + _JOURNAL,
    "released": "WITH a AS (UPDATE alarms SET suppressed = false WHERE " + _KEY + " RETURNING id) " + _JOURNAL,
}


# A shelve ends by itself when its time is up: the twin journals that as the operator's unshelve would be
_SHELVES_EXPIRED = (
    "WITH o AS (SELECT id, shelved_until FROM alarms WHERE shelved_until <= now() FOR UPDATE), "
    "a AS (UPDATE alarms x SET shelved_until = NULL FROM o WHERE x.id = o.id RETURNING x.id, o.shelved_until) "
    "INSERT INTO alarm_journal (alarm_id, transition, actor, detail) "
    "SELECT id, 'unshelved', 'twin', 'shelve expired at ' || shelved_until FROM a")


async def write_alarms(cur: psycopg.AsyncCursor[Any], ids: Sequence[int], events: Sequence[AlarmEvent]) -> None:
    """Apply alarm transitions in order (the twin's and the camera p-charts'); updates of one alarm are folded."""
    pending: dict[tuple[int, int | None, str], dict[str, Any]] = {}

    async def flush(key: tuple[int, int | None, str]) -> None:
        if (row := pending.pop(key, None)) is not None:
            await cur.execute(_ALARM_SQL["updated"], row)

    for e in events:
        key = (e.machine, e.tag_id, e.rule)
        row = {"m": ids[e.machine], "t": e.tag_id, "r": e.rule, "ts": from_us(e.ts_us), "rules": e.rules,
               "v": e.value, "p": e.priority, "kind": e.kind, "n": 1, "detail": _detail(e)}
        if e.kind == "updated":
            if (seen := pending.get(key)) is not None:
                row["n"] = seen["n"] + 1
                row["rules"] = sorted(set(seen["rules"]) | set(e.rules))
                row["ts"] = max(seen["ts"], row["ts"])
            pending[key] = row
            continue
        await flush(key)
        await cur.execute(_ALARM_SQL[e.kind], row)
    for key in list(pending):
        await flush(key)


def _detail(e: AlarmEvent) -> str:
    rules = ", ".join(e.rules)
    if e.kind in ("raised", "escalated"):
        return f"{e.priority}: {rules}" + ("" if e.value != e.value else f" at {e.value:g}")
    return {"suppressed": "machine not producing", "released": "machine producing again"}.get(e.kind, "")


def _ts(us: int | None) -> datetime | None:
    return from_us(us) if us else None
