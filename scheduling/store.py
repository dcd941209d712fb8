"""The schedule store: schedules, their solve runs, immutable versions and planned operations (sql/0014)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from scheduling.model import Instance, Schedule
from scheduling.serial import instance_from_dict, instance_to_dict, schedule_from_list, schedule_to_list


async def create(conn: psycopg.AsyncConnection, name: str, origin: datetime, objective: str, request: Any,
                 created_by: str) -> int:
    """A new schedule with its run queued; returns its id."""
    async with conn.transaction():
        cur = await conn.execute("INSERT INTO schedules (name, origin, objective, request, created_by) "
                                 "VALUES (%s, %s, %s, %s, %s) RETURNING id",
                                 (name, origin, objective, Jsonb(request), created_by))
        sid = (await cur.fetchone())[0]  # type: ignore[index]
        await conn.execute("INSERT INTO schedule_runs (schedule_id, state) VALUES (%s, 'queued')", (sid,))
    return int(sid)


async def set_run(conn: psycopg.AsyncConnection, sid: int, state: str, progress: list | None = None,  # type: ignore[type-arg]
                  error: str | None = None) -> None:
    """Record the run's state (and progress so far)."""
    await conn.execute("UPDATE schedule_runs SET state = %s, progress = coalesce(%s, progress), error = %s, "
                       "updated_at = now() WHERE schedule_id = %s",
                       (state, Jsonb(progress) if progress is not None else None, error, sid))


async def add_version(conn: psycopg.AsyncConnection, sid: int, origin: datetime, inst: Instance, schedule: Schedule, *,
                      cause: dict, status: str, objective: float | None, bound: float | None,  # type: ignore[type-arg]
                      gap: float | None, solve_s: float, diff: dict | None = None,  # type: ignore[type-arg]
                      right_shift: dict | None = None) -> int:  # type: ignore[type-arg]
    """Store the next version and its operations in one transaction; returns its number."""
    async with conn.transaction():
        cur = await conn.execute("SELECT coalesce(max(version), 0) + 1 FROM schedule_versions WHERE schedule_id = %s "
                                 "", (sid,))
        version = (await cur.fetchone())[0]  # type: ignore[index]
        await conn.execute(
            "INSERT INTO schedule_versions (schedule_id, version, cause, status, objective, bound, gap, makespan_s, "
            "solve_s, instance, diff, right_shift) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            (sid, version, Jsonb(cause), status, objective, bound, gap, schedule.makespan(), solve_s,
             Jsonb({"instance": instance_to_dict(inst), "schedule": schedule_to_list(schedule)}),
             Jsonb(diff) if diff is not None else None, Jsonb(right_shift) if right_shift is not None else None))
        rows = []
        for p in schedule.placements:
            op = inst.jobs[p.job].operations[p.op]
            rows.append((sid, version, inst.jobs[p.job].name, op.seq if op.seq is not None else p.op + 1, op.name, inst.machines[p.machine],
                         origin + timedelta(seconds=p.start), origin + timedelta(seconds=p.end), p.setup,
                         op.fixed is not None))
        async with conn.cursor() as c:
            await c.executemany("INSERT INTO schedule_operations (schedule_id, version, order_id, seq, name, machine, "
                                "start_ts, end_ts, setup_s, frozen) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)", rows)
    return int(version)


async def get(conn: psycopg.AsyncConnection, sid: int) -> dict[str, Any] | None:
    """The schedule with its run, or None."""
    async with conn.cursor(row_factory=dict_row) as c:
        # the column holds one of the three kinds; a lexicographic objective is kept whole in the request
        await c.execute("SELECT s.id, s.name, s.origin, coalesce(s.request->>'objective', s.objective) AS objective, "
                        "s.created_by, s.created_at, r.state, r.progress, "
                        "r.error, (SELECT max(version) FROM schedule_versions v WHERE v.schedule_id = s.id) AS latest "
                        "FROM schedules s JOIN schedule_runs r ON r.schedule_id = s.id WHERE s.id = %s", (sid,))
        return await c.fetchone()


async def newest(conn: psycopg.AsyncConnection) -> int | None:
    """The newest schedule that has a version (the one the dispatch lists follow), or None."""
    cur = await conn.execute("SELECT max(schedule_id) FROM schedule_versions")
    row = await cur.fetchone()
    return None if row is None or row[0] is None else int(row[0])


async def machines_down(conn: psycopg.AsyncConnection, sid: int) -> dict[str, bool]:
    """Per machine named by a machine_down/machine_back version of the schedule: whether the last one was down."""
    cur = await conn.execute(
        "SELECT DISTINCT ON (cause->>'machine') cause->>'machine', cause->>'kind' = 'machine_down' "
        "FROM schedule_versions WHERE schedule_id = %s AND cause->>'kind' IN ('machine_down', 'machine_back') "
        "ORDER BY cause->>'machine', version DESC", (sid,))
    return {m: bool(down) for m, down in await cur.fetchall()}


async def version(conn: psycopg.AsyncConnection, sid: int, number: int | None = None) -> dict[str, Any] | None:
    """One version (the latest by default) with its operations, instance and schedule."""
    async with conn.cursor(row_factory=dict_row) as c:
        await c.execute("SELECT * FROM schedule_versions WHERE schedule_id = %s AND (%s::int IS NULL OR version = %s) "
                        "ORDER BY version DESC LIMIT 1", (sid, number, number))
        row = await c.fetchone()
        if row is None:
            return None
        await c.execute("SELECT order_id, seq, name, machine, start_ts, end_ts, setup_s, frozen FROM schedule_operations "
                        "WHERE schedule_id = %s AND version = %s ORDER BY start_ts, machine", (sid, row["version"]))
        row["operations"] = await c.fetchall()
    row["model"] = (instance_from_dict(row["instance"]["instance"]), schedule_from_list(row["instance"]["schedule"]))
    return row


async def release(conn: psycopg.AsyncConnection, sid: int, number: int) -> dict[str, Any]:
    """Write the version's planned machine, start and end into the MES operations of its orders."""
    async with conn.transaction():
        cur = await conn.execute(
            "UPDATE operations o SET planned_machine_id = m.id, planned_start = so.start_ts, planned_end = so.end_ts, "
            "planned_by = %s FROM schedule_operations so JOIN machines m ON m.name = so.machine "
            "WHERE so.schedule_id = %s AND so.version = %s AND o.work_order_id = so.order_id AND o.seq = so.seq "
            "RETURNING o.work_order_id, o.seq", (f"schedule {sid} v{number}", sid, number))
        updated = await cur.fetchall()
        cur = await conn.execute("SELECT count(*) FROM schedule_operations WHERE schedule_id = %s AND version = %s",
                                 (sid, number))
        total = (await cur.fetchone())[0]  # type: ignore[index]
    return {"schedule": sid, "version": number, "operations_updated": len(updated),
            "operations_not_in_mes": int(total) - len(updated)}


async def dispatch_list(conn: psycopg.AsyncConnection, machine: str, limit: int, now: datetime) -> list[dict[str, Any]]:
    """The machine's next operations in the latest version of the newest schedule that plans it."""
    async with conn.cursor(row_factory=dict_row) as c:
        await c.execute(
            "WITH s AS (SELECT schedule_id, max(version) AS version FROM schedule_operations WHERE machine = %s "
            "GROUP BY schedule_id ORDER BY schedule_id DESC LIMIT 1) "
            "SELECT so.schedule_id, so.version, so.order_id, so.seq, so.name, so.start_ts, so.end_ts, so.setup_s, so.frozen "
            "FROM schedule_operations so JOIN s USING (schedule_id, version) "
            "WHERE so.machine = %s AND so.end_ts > %s ORDER BY so.start_ts LIMIT %s", (machine, machine, now, limit))
        return await c.fetchall()


def dumps(value: Any) -> str:
    """JSON with datetimes as ISO strings."""
    return json.dumps(value, default=lambda o: o.isoformat() if isinstance(o, datetime) else str(o))


async def problem_from_mes(conn: psycopg.AsyncConnection, origin: datetime) -> dict[str, Any]:
    """A scheduling problem (Problem's JSON form) from the MES: released or running orders, their unfinished
    operations with eligible machines and setup + cycle x quantity seconds, the product as the family, and
    planned downtime ahead as unavailable windows, the `changeovers` matrix between products. A running operation stays on its machine for what is left.
    """
    async with conn.cursor(row_factory=dict_row) as c:
        await c.execute(
            "SELECT w.id, p.code AS family, w.due_ts, w.priority, w.quantity::float8 AS quantity, o.seq, o.name, o.status, "
            "o.started_at, om.name AS running_on, coalesce(o.planned_cycle_s, ro.cycle_s) AS cycle_s, "
            "coalesce(ro.setup_s, 0) AS setup_s, "
            "array_remove(array_agg(m.name ORDER BY m.name), NULL) AS machines "
            "FROM work_orders w JOIN products p ON p.id = w.product_id JOIN operations o ON o.work_order_id = w.id "
            "LEFT JOIN routing_operations ro ON ro.id = o.routing_operation_id "
            "LEFT JOIN routing_operation_machines rm ON rm.routing_operation_id = ro.id "
            "LEFT JOIN machines m ON m.id = rm.machine_id LEFT JOIN machines om ON om.id = o.machine_id "
            "WHERE w.status IN ('released', 'in_progress') AND o.status <> 'completed' "
            "GROUP BY w.id, p.code, o.id, om.name, ro.cycle_s, ro.setup_s ORDER BY w.id, o.seq")
        rows = await c.fetchall()
        await c.execute("SELECT m.name AS machine, greatest(d.start_ts, %s) AS start, d.end_ts AS end "
                        "FROM planned_downtime d JOIN machines m ON m.id = d.machine_id WHERE d.end_ts > %s",
                        (origin, origin))
        down = await c.fetchall()
        await c.execute("SELECT a.code AS from_family, b.code AS to_family, x.seconds FROM changeovers x "
                        "JOIN products a ON a.id = x.from_product_id JOIN products b ON b.id = x.to_product_id "
                        "ORDER BY a.code, b.code")
        changeovers = await c.fetchall()
    orders: dict[str, dict[str, Any]] = {}
    for r in rows:
        o = orders.setdefault(r["id"], {"id": r["id"], "family": r["family"], "priority": max(1, r["priority"] + 1),
                                        "operations": [], **({"due": r["due_ts"]} if r["due_ts"] else {})})
        seconds = (r["setup_s"] or 0) + (r["cycle_s"] or 0) * r["quantity"]
        if r["status"] == "running" and r["running_on"]:
            done = (origin - r["started_at"]).total_seconds() if r["started_at"] else 0
            machines = {r["running_on"]: max(1.0, seconds - done)}
        else:
            machines = {m: seconds for m in r["machines"]}
        o["operations"].append({"seq": r["seq"], "name": r["name"] or str(r["seq"]), "machines": machines})
    return {"origin": origin, "orders": list(orders.values()), "unavailable": down, "changeovers": changeovers}
