"""What the pages show, each read set-based in as few statements as the page needs (100 machines: 3 queries)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import psycopg
from psycopg.rows import dict_row


SHIFT_H = 8
"""Without a shift calendar (the `shifts` table), shifts are 8-hour blocks from UTC midnight."""


async def rows(conn: psycopg.AsyncConnection, sql: str, params: Any = None) -> list[dict[str, Any]]:
    """Every row of a query as dicts."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(sql, params)
        return await cur.fetchall()


async def current_shift(conn: psycopg.AsyncConnection, now: datetime) -> tuple[str, datetime]:
    """The name and start of the shift running now: from the calendar, else the 8-hour block."""
    found = await rows(conn, "SELECT name, start_ts FROM shifts WHERE start_ts <= %s AND end_ts > %s "
                             "ORDER BY line LIMIT 1", (now, now))
    if found:
        return found[0]["name"], found[0]["start_ts"]
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    block = (now - midnight) // timedelta(hours=SHIFT_H)
    return f"{block * SHIFT_H:02d}-{(block + 1) * SHIFT_H:02d} UTC", midnight + block * timedelta(hours=SHIFT_H)


_TILES = """
SELECT m.name, m.line, coalesce(s.state, 'unknown') AS state, s.state_since, s.good_total, s.scrap_total,
       coalesce(s.predictions, '{}') AS predictions, s.updated_at,
       (SELECT count(*) FROM alarms a WHERE a.machine_id = m.id AND a.active
          AND NOT coalesce(a.shelved_until > now(), false)) AS active_alarms,
       op.work_order, op.product, op.operation
FROM machines m
LEFT JOIN machine_status s ON s.machine_id = m.id
LEFT JOIN LATERAL (
    SELECT o.work_order_id AS work_order, p.code AS product, o.name AS operation
    FROM operations o JOIN work_orders w ON w.id = o.work_order_id JOIN products p ON p.id = w.product_id
    WHERE o.machine_id = m.id AND o.status = 'running' ORDER BY o.started_at DESC NULLS LAST LIMIT 1) op ON true
WHERE s.machine_id IS NOT NULL OR EXISTS (SELECT FROM tags t WHERE t.machine_id = m.id)
ORDER BY m.line, m.name"""


async def overview(conn: psycopg.AsyncConnection, now: datetime | None = None) -> dict[str, Any]:
    """Tiles (state, order, product, shift OEE, predictions, active alarms) and each line's shift and day KPIs."""
    now = now or datetime.now(timezone.utc)
    shift, shift_start = await current_shift(conn, now)
    day_start = now.replace(hour=0, minute=0, second=0, microsecond=0)
    tiles = await rows(conn, _TILES)
    kpi = await rows(conn, """
        SELECT 'shift' AS span, machine, line, availability, effectiveness, quality_rate, oee, gq, sq
        FROM kpi_rows(ARRAY(SELECT id FROM machines), false, %(s)s, %(now)s)
        UNION ALL
        SELECT 'shift', NULL, line, availability, effectiveness, quality_rate, oee, gq, sq
        FROM kpi_rows(ARRAY(SELECT id FROM machines), true, %(s)s, %(now)s)
        UNION ALL
        SELECT 'day', NULL, line, availability, effectiveness, quality_rate, oee, gq, sq
        FROM kpi_rows(ARRAY(SELECT id FROM machines), true, %(d)s, %(now)s)""",
                     {"s": shift_start, "d": day_start, "now": max(now, shift_start + timedelta(seconds=1))})
    oee = {r["machine"]: r for r in kpi if r["machine"] is not None}
    for t in tiles:
        t["kpi"] = oee.get(t["name"])
    lines = sorted({t["line"] for t in tiles})
    line_kpi = {(r["line"], r["span"]): r for r in kpi if r["machine"] is None}
    return {"tiles": tiles, "shift": shift, "shift_start": shift_start, "day_start": day_start, "now": now,
            "lines": [{"line": ln, "shift": line_kpi.get((ln, "shift")), "day": line_kpi.get((ln, "day"))}
                      for ln in lines]}


async def machine(conn: psycopg.AsyncConnection, name: str, hours: float) -> dict[str, Any] | None:
    """One machine: status, numeric tags, state timeline and open alarms over the last `hours`."""
    found = await rows(conn, "SELECT m.id, m.name, m.line, coalesce(s.state, 'unknown') AS state, s.state_since, "
                             "s.good_total, s.scrap_total, coalesce(s.predictions, '{}') AS predictions, "
                             "coalesce(s.sensors, '{}') AS sensors, s.updated_at "
                             "FROM machines m LEFT JOIN machine_status s ON s.machine_id = m.id WHERE m.name = %s",
                       (name,))
    if not found:
        return None
    m = found[0]
    m["tags"] = await rows(conn, "SELECT t.name, t.unit FROM tags t WHERE t.machine_id = %s "
                                 "AND t.data_type IN ('float', 'int', 'double', 'real', 'integer', 'number') "
                                 "ORDER BY t.name", (m["id"],))
    m["timeline"] = await rows(conn, "SELECT state, greatest(start_ts, now() - make_interval(secs => %(h)s)) "
                                     "AS start_ts, end_ts FROM state_timeline WHERE machine = %(m)s "
                                     "AND end_ts > now() - make_interval(secs => %(h)s) ORDER BY start_ts",
                               {"m": name, "h": hours * 3600})
    m["alarms"] = await rows(conn, "SELECT id, tag, rule, priority, state, ts FROM alarms_named WHERE machine = %s "
                                   "AND state <> 'normal' ORDER BY ts DESC LIMIT 50", (name,))
    m["kpi"] = await rows(conn, "SELECT * FROM kpi_machine(%s, now() - interval '24 hours', now())", (name,))
    return m


async def alarms(conn: psycopg.AsyncConnection, include_normal: bool, limit: int = 200) -> list[dict[str, Any]]:
    """Alarms that need attention (or every recent one), priority and newest first."""
    return await rows(conn, "SELECT id, machine, tag, rule, priority, state, active, acknowledged, ts, last_ts, "
                            "points, rules, acked_by, shelved_until, shelved_by FROM alarms_named "
                            "WHERE %(all)s OR state <> 'normal' ORDER BY active DESC, "
                            "CASE priority WHEN 'high' THEN 0 WHEN 'medium' THEN 1 ELSE 2 END, ts DESC LIMIT %(n)s",
                      {"all": include_normal, "n": limit})


async def journal(conn: psycopg.AsyncConnection, limit: int = 100) -> list[dict[str, Any]]:
    """The newest alarm transitions, every alarm."""
    return await rows(conn, "SELECT id, alarm_id, machine, tag, at, transition, actor, role, outcome, detail "
                            "FROM alarm_journal_named ORDER BY id DESC LIMIT %s", (limit,))


async def inspections(conn: psycopg.AsyncConnection, station: str | None, verdict: str | None, lot: str | None,
                      limit: int) -> dict[str, Any]:
    """The newest inspections matching the filters, and the stations and lots to filter by."""
    found = await rows(conn, "SELECT id, ts, station, machine, lot, verdict, class, score FROM inspections "
                             "WHERE (%(s)s::text IS NULL OR station = %(s)s) AND (%(v)s::text IS NULL OR verdict = %(v)s) "
                             "AND (%(l)s::text IS NULL OR lot = %(l)s) ORDER BY ts DESC, id DESC LIMIT %(n)s",
                       {"s": station, "v": verdict, "l": lot, "n": limit})
    stations = [r["station"] for r in await rows(conn, "SELECT station FROM inspection_stations ORDER BY station")]
    return {"items": found, "stations": stations}


async def schedules(conn: psycopg.AsyncConnection) -> list[dict[str, Any]]:
    """Schedules with their latest version, newest first."""
    return await rows(conn, "SELECT s.id, s.name, s.created_at, r.state, max(v.version) AS latest "
                            "FROM schedules s JOIN schedule_runs r ON r.schedule_id = s.id "
                            "LEFT JOIN schedule_versions v ON v.schedule_id = s.id "
                            "GROUP BY s.id, r.state ORDER BY s.id DESC LIMIT 50")


async def orders(conn: psycopg.AsyncConnection) -> list[dict[str, Any]]:
    """Work orders not closed long ago, with progress of their operations (good of quantity)."""
    return await rows(conn, """
        SELECT w.id, p.code AS product, w.quantity, w.status, w.due_ts, w.priority,
               coalesce(max(op.good) FILTER (WHERE op.seq = last.seq), 0) AS good_last,
               coalesce(sum(op.scrap), 0) AS scrap,
               count(op.id) AS operations, count(op.id) FILTER (WHERE op.status = 'completed') AS done,
               string_agg(op.machine || ':' || op.status, ' ' ORDER BY op.seq) AS steps
        FROM work_orders w JOIN products p ON p.id = w.product_id
        LEFT JOIN operation_progress op ON op.work_order = w.id
        LEFT JOIN LATERAL (SELECT max(seq) AS seq FROM operations o WHERE o.work_order_id = w.id) last ON true
        WHERE w.status NOT IN ('completed', 'cancelled') OR w.completed_at > now() - interval '2 days'
        GROUP BY w.id, p.code ORDER BY w.status = 'completed', w.due_ts NULLS LAST, w.id LIMIT 200""")


async def lot_tree(conn: psycopg.AsyncConnection, lot: str, direction: str) -> dict[str, Any] | None:
    """A lot and every lot it went into (up) or came from (down), as nested nodes; None for an unknown lot."""
    root = await rows(conn, "SELECT l.id AS lot, i.code AS item, l.quantity, l.unit, l.status FROM lots l "
                            "JOIN items i ON i.id = l.item_id WHERE l.id = %s", (lot,))
    if not root:
        return None
    reached = await rows(conn, "SELECT lot, depth, item, quantity, unit, status, path FROM lot_trace(%s, %s, 20) "
                               "ORDER BY depth, lot LIMIT 500", (lot, direction))
    nodes = {lot: {**root[0], "children": []}}
    for r in reached:
        nodes[r["lot"]] = {**r, "children": []}
        parent = r["path"][-2] if len(r["path"]) > 1 else lot
        nodes.get(parent, nodes[lot])["children"].append(nodes[r["lot"]])
    return nodes[lot]


async def recent_lots(conn: psycopg.AsyncConnection) -> list[str]:
    """The newest lots, to pick one."""
    return [r["id"] for r in await rows(conn, "SELECT id FROM lots ORDER BY created_at DESC LIMIT 30")]


async def sources(conn: psycopg.AsyncConnection) -> list[dict[str, Any]]:
    """Every gateway source's health, rate, spool and last error, and how old its report is."""
    return await rows(conn, "SELECT name, kind, connected, last_error, last_error_at, readings_per_s, readings_total, "
                            "dead_letters_total, reconnects_total, spool_records, spool_bytes, spool_dropped, "
                            "tags_total, tags_live, updated_at, extract(epoch FROM now() - updated_at) AS age_s "
                            "FROM sources ORDER BY name")


