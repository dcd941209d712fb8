"""A p-chart per camera station: NG fraction per subgroup of `pchart_n` inspections, alarms through the twin's path.

Subgroups are counts of consecutive inspections, not time buckets: every point has the same n, so the limits are
constant and every point has the same power; a point closes with the n-th judged part, so an alarm comes with the
part that shows the shift; and a stopped line makes no empty or tiny subgroups (a one-part hour would get limits
0..1). p̄ is learned from the first `pchart_baseline` subgroups (phase I) and then frozen, as the twin freezes a
sensor's mu/sigma after its baseline points; a baseline without any NG (or only NG) keeps learning, since its
limits would collapse onto the centre. Each later point is judged with the station's rules (`pchart_rules`: Western
Electric 1-4 by default, Nelson 1-8, or all) of `twin.kernels.rule_flags` (the one implementation the twin and
analytics.spc use) at mu = p̄, sigma = sqrt(p̄(1-p̄)/n), on the station's judged points (the rules look 15 back).
The bits go into `twin.alarms.AlarmTracker` and out through `twin.store.write_alarms`, as the twin's SPC alarms do: one alarm per
episode of (station's machine, tag `<station>.ng_fraction`, rule spc) — beyond 3 sigma raised at once, patterns
after 3 breaking points in a row, cleared after 15 in-control points — with its journal rows.

The state (open subgroup, p̄, tracker) is one row per station, locked by every inspection counted into it, in the
transaction of that inspection: the API and the camera folders may judge images of one station at once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from inspection.store import in_range
from twin.alarms import SPC, AlarmTracker
from twin.kernels import ALARM_NAMES, NELSON, RULES, WESTERN_ELECTRIC, WINDOW, rule_flags
from twin.store import write_alarms

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
RULE_SETS = {"we": WESTERN_ELECTRIC, "nelson": NELSON, "all": RULES}


def tag_name(station: str) -> str:
    """The tag a station's p-chart alarms are filed under (it holds no samples)."""
    return f"{station}.ng_fraction"


def limits(p_bar: float, n: int) -> tuple[float, float, float, float]:
    """(cl, ucl, lcl, sigma of p) of a subgroup of n at p̄; the lower limit cut at 0 as on any attribute chart."""
    sigma = math.sqrt(p_bar * (1.0 - p_bar) / n)
    return p_bar, p_bar + 3.0 * sigma, max(0.0, p_bar - 3.0 * sigma), sigma


def rule_names(bits: int) -> list[str]:
    """Names of the rule bits set (WE1..WE4, N1..N8)."""
    return [name for bit, name in ALARM_NAMES.items() if bits & bit]


@dataclass(frozen=True, slots=True)
class Closed:
    """A subgroup that closed with the inspection just counted."""

    seq: int
    n: int
    ng: int
    p: float
    judged: bool
    rules: list[str]
    alarms: list[str]  # alarm transitions it caused (raised, updated, escalated, cleared)


async def _state(cur: psycopg.AsyncCursor[Any], station: str) -> dict[str, Any]:
    """The station's chart row joined with its configuration, locked; created on the station's first inspection."""
    sql = ("SELECT p.*, s.machine, s.pchart_n, s.pchart_baseline, s.pchart_rules FROM inspection_pchart p "
           "JOIN inspection_stations s USING (station) WHERE p.station = %s FOR UPDATE OF p")
    await cur.execute(sql, (station,))
    row = await cur.fetchone()
    if row is None:
        await cur.execute("INSERT INTO inspection_pchart (station, n, baseline) SELECT station, pchart_n, "
                          "pchart_baseline FROM inspection_stations WHERE station = %s ON CONFLICT DO NOTHING",
                          (station,))
        await cur.execute(sql, (station,))
        row = await cur.fetchone()
    assert row is not None, f"station {station!r} is not configured"
    if (row["n"], row["baseline"]) != (row["pchart_n"], row["pchart_baseline"]):
        # the station's subgroup or baseline was changed: a new chart from the next subgroup on (the old points
        # stay, with their own n and limits); an active alarm clears as the new chart's points come in control
        await cur.execute("UPDATE inspection_pchart SET n = %s, baseline = %s, p_bar = NULL, frozen_at = NULL, "
                          "open_n = 0, open_ng = 0, open_first = NULL, open_last = NULL, start_seq = coalesce("
                          "(SELECT max(seq) FROM inspection_pchart_points WHERE station = %s), 0) WHERE station = %s",
                          (row["pchart_n"], row["pchart_baseline"], station, station))
        await cur.execute(sql, (station,))
        row = await cur.fetchone()
        assert row is not None
    return row


async def _ids(cur: psycopg.AsyncCursor[Any], machine: str, station: str) -> tuple[int, int]:
    """(machine id, tag id) the station's alarms are filed under, registering either if new."""
    await cur.execute("INSERT INTO machines (name) VALUES (%s) ON CONFLICT (name) DO NOTHING", (machine,))
    await cur.execute("SELECT id FROM machines WHERE name = %s", (machine,))
    mrow = await cur.fetchone()
    assert mrow is not None
    await cur.execute(
        "INSERT INTO tags (name, unit, description, category, machine_id, data_type, source) "
        "VALUES (%s, 'fraction', %s, 'material', %s, 'float', 'inspection') ON CONFLICT (name) DO NOTHING",
        (tag_name(station), f"p-chart of camera station {station}: NG fraction per subgroup (alarms only; the "
                            "points are in inspection_pchart_points)", mrow["id"]))
    await cur.execute("SELECT id FROM tags WHERE name = %s", (tag_name(station),))
    trow = await cur.fetchone()
    assert trow is not None
    return mrow["id"], trow["id"]


def _us(ts: datetime) -> int:
    return (ts - _EPOCH) // timedelta(microseconds=1)


async def count(conn: psycopg.AsyncConnection, station: str, ts: datetime, verdict: str) -> Closed | None:
    """Count one judged inspection into its station's chart; the subgroup it closed (judged, alarms written), if any."""
    async with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
        st = await _state(cur, station)
        open_n, open_ng = st["open_n"] + 1, st["open_ng"] + (verdict == "ng")
        first = st["open_first"] or ts
        last = max(st["open_last"] or ts, ts)
        if open_n < st["n"]:
            await cur.execute("UPDATE inspection_pchart SET open_n = %s, open_ng = %s, open_first = %s, "
                              "open_last = %s WHERE station = %s", (open_n, open_ng, first, last, station))
            return None
        await cur.execute("SELECT coalesce(max(seq), 0) + 1 AS seq FROM inspection_pchart_points WHERE station = %s",
                          (station,))
        seq = (await cur.fetchone())["seq"]  # type: ignore[index]
        p = open_ng / open_n
        p_bar = st["p_bar"]
        cl = ucl = lcl = None
        names: list[str] = []
        transitions: list[str] = []
        tracker = AlarmTracker()
        tracker.load(st["tracker"])
        if p_bar is not None:
            cl, ucl, lcl, sigma = limits(p_bar, open_n)
            await cur.execute("SELECT p FROM inspection_pchart_points WHERE station = %s AND seq > %s AND cl IS NOT "
                              "NULL ORDER BY seq DESC LIMIT %s", (station, st["start_seq"], WINDOW))
            history = [r["p"] for r in reversed(await cur.fetchall())]
            bits = int(rule_flags(np.array(history + [p]), p_bar, sigma)[-1]) & RULE_SETS[st["pchart_rules"]]
            names = rule_names(bits)
            machine_id, tag_id = await _ids(cur, st["machine"], station)
            events = tracker.point(0, tag_id, _us(last), bits, names, p)
            await write_alarms(cur, [machine_id], events)  # type: ignore[arg-type]
            transitions = [e.kind for e in events]
        await cur.execute(
            "INSERT INTO inspection_pchart_points (station, seq, first_ts, ts, n, ng, p, cl, ucl, lcl, rules) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            (station, seq, first, last, open_n, open_ng, p, cl, ucl, lcl, names))
        if p_bar is None:
            p_bar = await _learned(cur, station, st["start_seq"], st["baseline"])
        await cur.execute(
            "UPDATE inspection_pchart SET open_n = 0, open_ng = 0, open_first = NULL, open_last = NULL, p_bar = %s, "
            "frozen_at = CASE WHEN p_bar IS NULL AND %s::float8 IS NOT NULL THEN now() ELSE frozen_at END, "
            "tracker = %s WHERE station = %s", (p_bar, p_bar, Jsonb(tracker.dump()), station))
        return Closed(seq, open_n, open_ng, p, cl is not None, names, transitions)


async def _learned(cur: psycopg.AsyncCursor[Any], station: str, start_seq: int, baseline: int) -> float | None:
    """p̄ of the chart's learning subgroups once there are `baseline` of them and it lies inside (0, 1), else None."""
    await cur.execute("SELECT count(*) AS k, sum(ng) AS ng, sum(n) AS n FROM inspection_pchart_points "
                      "WHERE station = %s AND seq > %s AND cl IS NULL", (station, start_seq))
    r = await cur.fetchone()
    assert r is not None
    if r["k"] < baseline:
        return None
    p_bar = float(r["ng"]) / float(r["n"])
    return p_bar if 0.0 < p_bar < 1.0 else None


async def read(conn: psycopg.AsyncConnection, station: str, start: datetime | None, end: datetime | None,
               limit: int) -> tuple[dict[str, Any] | None, list[dict[str, Any]], dict[str, Any] | None]:
    """(chart state or None, the newest `limit` closed subgroups in [start, end) oldest first, active alarm or None)."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute("SELECT n, baseline, start_seq, p_bar, frozen_at, open_n, open_ng FROM inspection_pchart "
                          "WHERE station = %s", (station,))
        state = await cur.fetchone()
        where: list[str] = ["station = %s"]
        args: list[Any] = [station]
        in_range(where, args, start, end)
        await cur.execute(f"SELECT * FROM (SELECT seq, first_ts, ts, n, ng, p, cl, ucl, lcl, rules FROM "
                          f"inspection_pchart_points WHERE {' AND '.join(where)} ORDER BY seq DESC LIMIT %s) r "
                          f"ORDER BY seq", [*args, limit])
        points = await cur.fetchall()
        await cur.execute("SELECT id, priority, state, ts, last_ts, points, rules FROM alarms_named "
                          "WHERE tag = %s AND rule = %s AND active", (tag_name(station), SPC))
        alarm = await cur.fetchone()
    return state, points, alarm
