"""ISO 22400-2 KPIs of a machine or a line, computed by the database (sql/0007_kpi.sql, analytics/KPI.md)."""

from __future__ import annotations

from datetime import datetime

import msgspec
import psycopg
from psycopg.rows import kwargs_row

from historian.errors import InvalidParameterError
from historian.query import check_range

GROUPS = ("shift", "day")
MAX_DAYS = 3660
"""Buckets (UTC days) one grouped query may ask for: ten years."""
_QUERIES = {
    "machine": "SELECT * FROM kpi_machine(%s, %s, %s, %s)",
    "line": "SELECT * FROM kpi_line(%s, %s, %s, %s)",
}


class KpiRow(msgspec.Struct):
    """One machine or line over one bucket: base times (s) and quantities, then each KPI (None when undefined)."""

    machine: str | None
    """None on a line's rows"""
    line: str
    bucket_start: datetime
    bucket_end: datetime
    shift: str | None
    """the shift's name when grouped by shift"""
    pot_s: float
    pdot_s: float
    pbt_s: float
    apt_s: float
    asut_s: float
    adet_s: float
    idle_s: float
    planned_down_s: float
    aoet_s: float
    aubt_s: float
    failures: int
    pq: int
    gq: int
    sq: int
    rq: float | None
    fpg: float | None
    pri_pq_s: float
    unrated_parts: int
    energy_kwh: float | None
    availability: float | None
    effectiveness: float | None
    quality_rate: float | None
    oee: float | None
    setup_ratio: float | None
    technical_efficiency: float | None
    allocation_ratio: float | None
    scrap_ratio: float | None
    rework_ratio: float | None
    first_pass_yield: float | None
    energy_per_unit_kwh: float | None
    mtbf_s: float | None
    mttr_s: float | None


class UnknownScopeError(LookupError):
    """A machine or line the database does not know."""

    def __init__(self, kind: str, name: str) -> None:
        super().__init__(f"unknown {kind} {name!r}")
        self.kind = kind
        self.name = name


async def kpis(
    conn: psycopg.AsyncConnection,
    *,
    machine: str | None = None,
    line: str | None = None,
    start: datetime,
    end: datetime,
    group: str | None = None,
) -> list[KpiRow]:
    """KPIs of exactly one of machine or line over [start, end), whole or per 'shift' or UTC 'day'."""
    if (machine is None) == (line is None):
        raise InvalidParameterError("machine", "give exactly one of machine and line")
    check_range(start, end)
    if group is not None and group not in GROUPS:
        raise InvalidParameterError("group", f"must be shift or day, not {group!r}")
    if group is not None and (end - start).days > MAX_DAYS:
        raise InvalidParameterError("end", f"grouped by {group}, a range may span at most {MAX_DAYS} days")
    kind, name = ("machine", machine) if machine is not None else ("line", line or "")
    async with conn.cursor(row_factory=kwargs_row(KpiRow)) as cur:
        try:
            await cur.execute(_QUERIES[kind], (name, start, end, group))
        except psycopg.errors.NoDataFound:
            raise UnknownScopeError(kind, name) from None
        return await cur.fetchall()
