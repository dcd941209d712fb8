"""/api/v1/machines and /api/v1/alarms: what the twin knows of each machine, and the SPC alarms it raised."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import msgspec
import psycopg
from litestar import Controller, get
from litestar.di import NamedDependency, Provide
from litestar.exceptions import NotFoundException
from litestar.params import FromPath, QueryParameter

from api.auth import requires
from api.deps import provide_conn
from historian.errors import InvalidParameterError


class MachineOut(msgspec.Struct):
    """A machine: its ISO 22400 state since when, part totals, sensor health and model predictions."""

    name: str
    line: str
    state: str
    state_since: datetime | None
    good_total: int
    scrap_total: int
    sensors: dict[str, Any]
    predictions: dict[str, Any]
    updated_at: datetime


class AlarmOut(msgspec.Struct):
    """One sensor point that broke SPC rules."""

    id: int
    machine: str
    tag: str
    ts: datetime
    rules: list[str]
    value: float
    raised_at: datetime


_MACHINES = """SELECT m.name, m.line, s.state, s.state_since, s.good_total, s.scrap_total, s.sensors, s.predictions,
                      s.updated_at
               FROM machine_status s JOIN machines m ON m.id = s.machine_id"""


class MachineController(Controller):
    """Machines as the twin mirrors them."""

    path = "/api/v1/machines"
    tags = ["twin"]
    guards = [requires("viewer")]
    dependencies = {"conn": Provide(provide_conn)}

    @get("/", summary="Every machine the twin mirrors")
    async def list_machines(self, conn: NamedDependency[psycopg.AsyncConnection]) -> list[MachineOut]:
        """State, counts, health and predictions of every machine, by name."""
        cur = await conn.execute(_MACHINES + " ORDER BY m.name")
        return [MachineOut(*r) for r in await cur.fetchall()]

    @get("/{name:str}", summary="One machine")
    async def get_machine(
        self, conn: NamedDependency[psycopg.AsyncConnection], name: FromPath[str]
    ) -> MachineOut:
        """State, counts, per-sensor health (EWMA, CUSUM, last rules) and latest RUL with its model version."""
        cur = await conn.execute(_MACHINES + " WHERE m.name = %s", (name,))
        row = await cur.fetchone()
        if row is None:
            raise NotFoundException(f"no machine {name!r} in the twin")
        return MachineOut(*row)


class AlarmController(Controller):
    """SPC alarms raised by the twin."""

    path = "/api/v1/alarms"
    tags = ["twin"]
    guards = [requires("viewer")]
    dependencies = {"conn": Provide(provide_conn)}

    @get("/", summary="SPC alarms, newest first")
    async def list_alarms(
        self,
        conn: NamedDependency[psycopg.AsyncConnection],
        machine: Annotated[str | None, QueryParameter(description="only this machine")] = None,
        since: Annotated[datetime | None, QueryParameter(description="only points at or after, ISO 8601")] = None,
        limit: Annotated[int, QueryParameter(description="at most this many (1..10000)")] = 100,
    ) -> list[AlarmOut]:
        """Alarms of every machine, or one; each names the rules its point broke."""
        if not 1 <= limit <= 10_000:
            raise InvalidParameterError("limit", f"must be 1..10000, got {limit}")
        cur = await conn.execute(
            "SELECT id, machine, tag, ts, rules, value, raised_at FROM alarms_named "
            "WHERE (%(m)s::text IS NULL OR machine = %(m)s) AND (%(s)s::timestamptz IS NULL OR ts >= %(s)s) "
            "ORDER BY ts DESC, id DESC LIMIT %(n)s",
            {"m": machine, "s": since, "n": limit},
        )
        return [AlarmOut(*r) for r in await cur.fetchall()]
