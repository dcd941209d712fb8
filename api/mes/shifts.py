"""/api/v1/shifts: the shift calendar, where planned operation time comes from."""

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
from api.mes.types import Code, Timestamp
from historian.errors import InvalidParameterError


class ShiftIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """One shift instance [start, end) of a line, or of every line when line is empty."""

    name: Code
    start: Timestamp
    end: Timestamp
    line: str = ""


class ShiftOut(msgspec.Struct):
    """A shift as stored."""

    id: int
    name: str
    line: str
    start: datetime
    end: datetime


def check_window(start: datetime | None, end: datetime | None) -> None:
    """400 naming `start`/`end` when a window lacks a zone or ends before it starts."""
    for name, value in (("start", start), ("end", end)):
        if value is not None and value.tzinfo is None:
            raise InvalidParameterError(name, "needs a zone, e.g. 2026-11-20T08:00:00Z")
    if start is not None and end is not None and end <= start:
        raise InvalidParameterError("end", f"must be after start ({start.isoformat()}), got {end.isoformat()}")


class ShiftController(Controller):
    """The shift calendar."""

    path = "/shifts"
    tags = ["mes: man"]
    guards = [requires("viewer")]

    @post("/", summary="Add a shift", guards=[requires("engineer")])
    async def create_shift(self, conn: NamedDependency[psycopg.AsyncConnection], data: JSONBody[ShiftIn]) -> ShiftOut:
        """One shift instance; 409 when the line already has a shift starting then."""
        check_window(data.start, data.end)
        with refusals(f"shift at {data.start.isoformat()}"):
            cur = await conn.execute(
                "INSERT INTO shifts (name, line, start_ts, end_ts) VALUES (%s, %s, %s, %s) RETURNING id",
                (data.name, data.line, data.start, data.end))
            shift = (await cur.fetchone())[0]  # type: ignore[index]
        return ShiftOut(shift, data.name, data.line, data.start, data.end)

    @get("/", summary="Shifts overlapping a window")
    async def list_shifts(
        self,
        conn: NamedDependency[psycopg.AsyncConnection],
        start: Annotated[datetime | None, QueryParameter(description="shifts ending after, ISO 8601")] = None,
        end: Annotated[datetime | None, QueryParameter(description="shifts starting before, ISO 8601")] = None,
        line: Annotated[str | None, QueryParameter(description="this line's and every line's shifts")] = None,
    ) -> list[ShiftOut]:
        """Shifts in start order."""
        check_window(start, end)
        cur = await conn.execute(
            """SELECT id, name, line, start_ts, end_ts FROM shifts
               WHERE (%(s)s::timestamptz IS NULL OR end_ts > %(s)s) AND (%(e)s::timestamptz IS NULL OR start_ts < %(e)s)
                 AND (%(l)s::text IS NULL OR line IN (%(l)s, ''))
               ORDER BY start_ts, line""",
            {"s": start, "e": end, "l": line})
        return [ShiftOut(*r) for r in await cur.fetchall()]
