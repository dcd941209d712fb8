"""/api/v1/downtime: planned downtime and maintenance windows of machines (ISO 22400 PDOT)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import msgspec
import psycopg
from litestar import Controller, get, post
from litestar.di import NamedDependency
from litestar.params import JSONBody, QueryParameter

from api.auth import requires
from api.mes.lookup import id_of
from api.mes.shifts import check_window
from api.mes.types import Code, Text, Timestamp


class DowntimeIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """A planned stop of a machine over [start, end)."""

    machine: Code
    kind: Literal["maintenance", "planned_stop", "break", "no_orders"]
    start: Timestamp
    end: Timestamp
    reason: Text = ""


class DowntimeOut(msgspec.Struct):
    """A planned stop as stored."""

    id: int
    machine: str
    kind: str
    start: datetime
    end: datetime
    reason: str


class DowntimeController(Controller):
    """Planned downtime."""

    path = "/downtime"
    tags = ["mes: machine"]
    guards = [requires("viewer")]

    @post("/", summary="Plan a stop", guards=[requires("operator")])
    async def create_downtime(self, conn: NamedDependency[psycopg.AsyncConnection],
                              data: JSONBody[DowntimeIn]) -> DowntimeOut:
        """A maintenance window, planned stop, break or no-orders time of a known machine."""
        check_window(data.start, data.end)
        machine = await id_of(conn, "machine", data.machine, "machine")
        cur = await conn.execute(
            "INSERT INTO planned_downtime (machine_id, kind, start_ts, end_ts, reason) VALUES (%s, %s, %s, %s, %s) "
            "RETURNING id", (machine, data.kind, data.start, data.end, data.reason))
        downtime = (await cur.fetchone())[0]  # type: ignore[index]
        return DowntimeOut(downtime, data.machine, data.kind, data.start, data.end, data.reason)

    @get("/", summary="Planned stops overlapping a window")
    async def list_downtime(
        self,
        conn: NamedDependency[psycopg.AsyncConnection],
        machine: Annotated[str | None, QueryParameter(description="only this machine")] = None,
        start: Annotated[datetime | None, QueryParameter(description="stops ending after, ISO 8601")] = None,
        end: Annotated[datetime | None, QueryParameter(description="stops starting before, ISO 8601")] = None,
    ) -> list[DowntimeOut]:
        """Planned stops in start order."""
        check_window(start, end)
        cur = await conn.execute(
            """SELECT d.id, m.name, d.kind, d.start_ts, d.end_ts, d.reason
               FROM planned_downtime d JOIN machines m ON m.id = d.machine_id
               WHERE (%(m)s::text IS NULL OR m.name = %(m)s) AND (%(s)s::timestamptz IS NULL OR d.end_ts > %(s)s)
                 AND (%(e)s::timestamptz IS NULL OR d.start_ts < %(e)s)
               ORDER BY d.start_ts, m.name""",
            {"m": machine, "s": start, "e": end})
        return [DowntimeOut(*r) for r in await cur.fetchall()]
