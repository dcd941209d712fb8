"""/api/v1/energy: meters mapped to machines, and energy per good part."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import msgspec
import psycopg
from litestar import Controller, get, post
from litestar.di import NamedDependency
from litestar.params import JSONBody, QueryParameter

from api.auth import requires
from api.mes.errors import refusals
from api.mes.lookup import id_of
from api.mes.shifts import check_window
from api.mes.types import Code


class MeterIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """A cumulative kWh tag measuring a share (0, 1] of a machine's energy."""

    tag: Code
    machine: Code
    share: Annotated[float, msgspec.Meta(gt=0, le=1)] = 1.0


class MeterOut(msgspec.Struct):
    """A meter mapping as stored."""

    tag: str
    machine: str
    share: float


class EnergyOut(msgspec.Struct):
    """Metered energy of a machine over a window, its good parts, and kWh per good part (null without parts)."""

    machine: str
    start: datetime
    end: datetime
    kwh: float
    good: int
    kwh_per_good: float | None


class EnergyController(Controller):
    """Energy meters and energy per unit."""

    path = "/energy"
    tags = ["mes: energy"]
    guards = [requires("viewer")]

    @post("/meters", summary="Map a meter to a machine", guards=[requires("engineer")])
    async def create_meter(self, conn: NamedDependency[psycopg.AsyncConnection], data: JSONBody[MeterIn]) -> MeterOut:
        """A known tag measuring part of a known machine (422 naming the one that is not); 409 when mapped already."""
        tag = await id_of(conn, "tag", data.tag, "tag")
        machine = await id_of(conn, "machine", data.machine, "machine")
        with refusals(f"meter {data.tag!r} on {data.machine!r}"):
            await conn.execute("INSERT INTO energy_meters (tag_id, machine_id, share) VALUES (%s, %s, %s)",
                               (tag, machine, data.share))
        return MeterOut(data.tag, data.machine, data.share)

    @get("/meters", summary="List meters")
    async def list_meters(self, conn: NamedDependency[psycopg.AsyncConnection]) -> list[MeterOut]:
        """Every meter mapping, by machine and tag."""
        cur = await conn.execute(
            """SELECT t.name, m.name, e.share FROM energy_meters e JOIN tags t ON t.id = e.tag_id
               JOIN machines m ON m.id = e.machine_id ORDER BY m.name, t.name""")
        return [MeterOut(*r) for r in await cur.fetchall()]

    @get("/per-unit", summary="Energy per good part of a machine")
    async def per_unit(
        self,
        conn: NamedDependency[psycopg.AsyncConnection],
        machine: Annotated[str, QueryParameter(description="machine name")],
        start: Annotated[datetime, QueryParameter(description="inclusive, ISO 8601 with a zone")],
        end: Annotated[datetime, QueryParameter(description="exclusive, ISO 8601 with a zone")],
    ) -> EnergyOut:
        """kWh the machine's meters counted over [start, end) per good part (SQL: energy_per_good_unit)."""
        check_window(start, end)
        await id_of(conn, "machine", machine)
        cur = await conn.execute("SELECT kwh, good, kwh_per_good FROM energy_per_good_unit(%s, %s, %s)",
                                 (machine, start, end))
        kwh, good, per_good = await cur.fetchone()  # type: ignore[misc]
        return EnergyOut(machine, start, end, kwh, good, per_good)
