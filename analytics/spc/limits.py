"""Specification limits and frozen control limits of a tag, kept in spec_limits and control_limits.

Freezing estimates a chart's centre and sigma from a baseline period and stores them; every later
chart of that tag and kind uses them (at whatever subgroup size it has) until they are recomputed
from another baseline. The limits at the baseline's subgroup size are stored too, for people
reading the table (NULL where they varied, as with time buckets of different sizes).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime

import psycopg
from psycopg.types.json import Jsonb

from analytics.spc import source
from analytics.spc.capability import Spec
from analytics.spc.charts import Limits, Options, chart, estimate


@dataclass(frozen=True, slots=True)
class Frozen:
    """Control limits frozen from a baseline: what they follow from and the options they were made with."""

    chart: str
    subgroup: str
    baseline_start: datetime
    baseline_end: datetime
    limits: Limits
    options: Options
    cl: float
    ucl: float | None
    lcl: float | None
    computed_at: datetime
    machine: str | None = None  # where the baseline's attribute counts came from
    n: float | None = None


async def get_spec(conn: psycopg.AsyncConnection, tag_id: int) -> tuple[Spec, datetime] | None:
    """The tag's specification limits and when they were set, or None."""
    cur = await conn.execute("SELECT lsl, usl, target, updated_at FROM spec_limits WHERE tag_id = %s", (tag_id,))
    row = await cur.fetchone()
    return None if row is None else (Spec(row[0], row[1], row[2]), row[3])


async def put_spec(conn: psycopg.AsyncConnection, tag_id: int, spec: Spec) -> datetime:
    """Set the tag's specification limits, replacing any; returns when."""
    cur = await conn.execute(
        """INSERT INTO spec_limits (tag_id, lsl, usl, target) VALUES (%s, %s, %s, %s)
           ON CONFLICT (tag_id) DO UPDATE SET lsl = excluded.lsl, usl = excluded.usl, target = excluded.target,
                                              updated_at = now()
           RETURNING updated_at""",
        (tag_id, spec.lsl, spec.usl, spec.target),
    )
    row = await cur.fetchone()
    assert row is not None
    return row[0]


async def get_frozen(conn: psycopg.AsyncConnection, tag_id: int, kind: str) -> Frozen | None:
    """The limits frozen for this tag and chart kind, or None."""
    cur = await conn.execute(
        "SELECT subgroup, baseline_start, baseline_end, cl, ucl, lcl, sigma, params, computed_at "
        "FROM control_limits WHERE tag_id = %s AND chart = %s",
        (tag_id, kind),
    )
    row = await cur.fetchone()
    if row is None:
        return None
    subgroup, b_start, b_end, cl, ucl, lcl, sigma, params, computed_at = row
    options = Options(**{k: params[k] for k in ("lam", "L", "k", "h") if k in params})
    return Frozen(kind, subgroup, b_start, b_end, Limits(params["centre"], sigma), options, cl, ucl, lcl,
                  computed_at, params.get("machine"), params.get("n"))


async def freeze(conn: psycopg.AsyncConnection, spec: source.DataSpec, start: datetime, end: datetime,
                 options: Options = Options()) -> Frozen:
    """Estimate the chart's limits from the baseline [start, end) and store them for the tag."""
    data = await source.load(conn, spec, start, end)
    limits = estimate(spec.chart, data)
    shown = chart(spec.chart, data, limits, options)
    fixed = [v if isinstance(v, float) else None for v in (shown.cl, shown.ucl, shown.lcl)]
    cl = fixed[0] if fixed[0] is not None else limits.centre
    params = {"centre": limits.centre, **{k: v for k, v in asdict(options).items() if k != "rules"}}
    if spec.machine is not None:
        params["machine"] = spec.machine
    if spec.n is not None:
        params["n"] = spec.n
    cur = await conn.execute(
        """INSERT INTO control_limits (tag_id, chart, subgroup, baseline_start, baseline_end, cl, ucl, lcl, sigma,
                                       params)
           VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
           ON CONFLICT (tag_id, chart) DO UPDATE SET
               subgroup = excluded.subgroup, baseline_start = excluded.baseline_start,
               baseline_end = excluded.baseline_end, cl = excluded.cl, ucl = excluded.ucl, lcl = excluded.lcl,
               sigma = excluded.sigma, params = excluded.params, computed_at = now()
           RETURNING computed_at""",
        (spec.tag.id, spec.chart, spec.subgroup.text, start, end, cl, fixed[1], fixed[2], limits.sigma,
         Jsonb(params)),
    )
    row = await cur.fetchone()
    assert row is not None
    return Frozen(spec.chart, spec.subgroup.text, start, end, limits, options, cl, fixed[1], fixed[2], row[0],
                  spec.machine, spec.n)
