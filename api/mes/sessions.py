"""/api/v1/sessions: operators logging in and out of machines, and who was on which machine when."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import msgspec
import psycopg
from litestar import Controller, get, post
from litestar.di import NamedDependency
from litestar.params import JSONBody, QueryParameter
from litestar.status_codes import HTTP_200_OK

from api.auth import requires
from api.mes.errors import ConflictError, RejectedError, refusals
from api.mes.lookup import id_of
from api.mes.types import Code, Timestamp
from historian.errors import InvalidParameterError


class SessionIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """An operator at a machine at a time (default now)."""

    badge: Code
    machine: Code
    at: Timestamp | None = None


class SessionOut(msgspec.Struct):
    """A session [start_ts, end_ts); end_ts null while the operator is logged in."""

    badge: str
    operator: str
    machine: str
    start_ts: datetime
    end_ts: datetime | None


_SESSIONS = "SELECT badge, operator, machine, start_ts, end_ts FROM operator_on_machine"


async def _open_session(conn: psycopg.AsyncConnection, operator: int, machine: int) -> datetime | None:
    cur = await conn.execute(
        "SELECT start_ts FROM operator_sessions WHERE operator_id = %s AND machine_id = %s AND end_ts IS NULL "
        "FOR UPDATE", (operator, machine))
    row = await cur.fetchone()
    return row[0] if row else None


class SessionController(Controller):
    """Operator sessions on machines."""

    path = "/sessions"
    tags = ["mes: man"]
    guards = [requires("viewer")]

    @post("/login", summary="Log an operator in on a machine", status_code=HTTP_200_OK,
          guards=[requires("operator")])
    async def login(self, conn: NamedDependency[psycopg.AsyncConnection], data: JSONBody[SessionIn]) -> SessionOut:
        """Open a session; 409 when the operator is already logged in on that machine."""
        with refusals(f"session of {data.badge!r} on {data.machine!r}"):
            async with conn.transaction():
                operator = await id_of(conn, "operator", data.badge, "badge")
                machine = await id_of(conn, "machine", data.machine, "machine")
                # one open session per operator and machine, also when two logins race
                await conn.execute("SELECT FROM operators WHERE id = %s FOR UPDATE", (operator,))
                since = await _open_session(conn, operator, machine)
                if since is not None:
                    raise ConflictError(f"{data.badge!r} is logged in on {data.machine!r} since {since.isoformat()}",
                                        status="logged_in")
                await conn.execute("INSERT INTO operator_sessions (operator_id, machine_id, start_ts) "
                                   "VALUES (%s, %s, coalesce(%s, now()))", (operator, machine, data.at))
        return (await self._sessions(conn, data.badge, data.machine))[-1]

    @post("/logout", summary="Log an operator out of a machine", status_code=HTTP_200_OK,
          guards=[requires("operator")])
    async def logout(self, conn: NamedDependency[psycopg.AsyncConnection], data: JSONBody[SessionIn]) -> SessionOut:
        """Close the open session; 409 when there is none, 422 naming `at` when it is not after the login."""
        with refusals(f"session of {data.badge!r} on {data.machine!r}"):
            async with conn.transaction():
                operator = await id_of(conn, "operator", data.badge, "badge")
                machine = await id_of(conn, "machine", data.machine, "machine")
                since = await _open_session(conn, operator, machine)
                if since is None:
                    raise ConflictError(f"{data.badge!r} is not logged in on {data.machine!r}", status="logged_out")
                cur = await conn.execute(
                    "UPDATE operator_sessions SET end_ts = coalesce(%s, now()) WHERE operator_id = %s "
                    "AND machine_id = %s AND start_ts = %s AND coalesce(%s, now()) > start_ts RETURNING end_ts",
                    (data.at, operator, machine, since, data.at))
                if await cur.fetchone() is None:
                    raise RejectedError("at", f"must be after the login at {since.isoformat()}")
        return (await self._sessions(conn, data.badge, data.machine))[-1]

    @get("/", summary="Who was logged in on which machine when")
    async def list_sessions(
        self,
        conn: NamedDependency[psycopg.AsyncConnection],
        machine: Annotated[str | None, QueryParameter(description="only this machine")] = None,
        badge: Annotated[str | None, QueryParameter(description="only this operator")] = None,
        at: Annotated[datetime | None, QueryParameter(description="only sessions covering this time")] = None,
    ) -> list[SessionOut]:
        """Sessions, oldest first."""
        if at is not None and at.tzinfo is None:
            raise InvalidParameterError("at", "needs a zone, e.g. 2026-11-20T08:00:00Z")
        return await self._sessions(conn, badge, machine, at)

    @staticmethod
    async def _sessions(conn: psycopg.AsyncConnection, badge: str | None, machine: str | None,
                        at: datetime | None = None) -> list[SessionOut]:
        cur = await conn.execute(
            _SESSIONS + """ WHERE (%(b)s::text IS NULL OR badge = %(b)s) AND (%(m)s::text IS NULL OR machine = %(m)s)
                            AND (%(t)s::timestamptz IS NULL
                                 OR (start_ts <= %(t)s AND (end_ts IS NULL OR end_ts > %(t)s)))
                            ORDER BY start_ts, badge, machine""",
            {"b": badge, "m": machine, "t": at})
        return [SessionOut(*r) for r in await cur.fetchall()]
