"""The command center's pages: server-rendered from web/templates, each guarded by the API's role guard."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Annotated, Any

import psycopg
from litestar import Controller, Request, get
from litestar.di import NamedDependency, Provide
from litestar.exceptions import NotFoundException
from litestar.params import FromPath, QueryParameter
from litestar.response import Template

from api.auth import ROLE_RANK, caller, requires
from api.deps import provide_conn
from historian.errors import InvalidParameterError
from scheduling import store
from web import queries

Conn = NamedDependency[psycopg.AsyncConnection]
_Text = Annotated[str | None, QueryParameter(max_length=200)]


async def page(request: Request, name: str, **context: Any) -> Template:  # type: ignore[type-arg]
    """A template with the signed-in user, whether they may act (operator and up) and the nav entry."""
    user = await caller(request)
    return Template(template_name=name, context={"user": user, "can_act": ROLE_RANK.get(user.role, -1) >= 1,
                                                 **context})


class Pages(Controller):
    """Overview, machine, alarms, inspections, schedule, orders and lots, sources; and their live fragments."""

    guards = [requires("viewer")]
    dependencies = {"conn": Provide(provide_conn)}
    include_in_schema = False

    @get("/")
    async def overview(self, request: Request, conn: Conn) -> Template:  # type: ignore[type-arg]
        """A tile per machine and each line's KPIs for the shift and the day."""
        return await page(request, "overview.html", page="/", **await queries.overview(conn))

    @get("/fragments/overview")
    async def overview_fragment(self, request: Request, conn: Conn) -> Template:  # type: ignore[type-arg]
        """The overview's body, for live refresh."""
        return await page(request, "overview_body.html", **await queries.overview(conn))

    @get("/machines/{name:str}")
    async def machine(self, request: Request, conn: Conn, name: FromPath[str],  # type: ignore[type-arg]
                      hours: Annotated[int, QueryParameter(ge=1, le=24 * 31)] = 8) -> Template:
        """Trends, state timeline, SPC and predictions of one machine."""
        m = await queries.machine(conn, name, hours)
        if m is None:
            raise NotFoundException(f"no machine {name!r}")
        end = datetime.now(timezone.utc)
        return await page(request, "machine.html", page="", m=m, hours=hours, start=end - timedelta(hours=hours),
                          end=end)

    @get("/alarms")
    async def alarms(self, request: Request, conn: Conn, all: Annotated[bool, QueryParameter(description="include normal alarms")] = False) -> Template:  # type: ignore[type-arg]  # noqa: A002
        """The live alarm list with its actions, and the journal."""
        return await page(request, "alarms.html", page="/alarms", **await self._alarms(conn, all))

    @get("/fragments/alarms")
    async def alarms_fragment(self, request: Request, conn: Conn, all: Annotated[bool, QueryParameter(description="include normal alarms")] = False) -> Template:  # type: ignore[type-arg]  # noqa: A002
        """The alarm list and journal, for live refresh."""
        return await page(request, "alarms_body.html", **await self._alarms(conn, all))

    @staticmethod
    async def _alarms(conn: psycopg.AsyncConnection, show_all: bool) -> dict[str, Any]:
        return {"alarms": await queries.alarms(conn, show_all), "journal": await queries.journal(conn),
                "show_all": show_all}

    @get("/inspections")
    async def inspections(self, request: Request, conn: Conn, station: _Text = None,  # type: ignore[type-arg]
                          verdict: _Text = None, lot: _Text = None) -> Template:
        """The gallery, filtered by station, verdict and lot."""
        return await page(request, "inspections.html", page="/inspections", station=station, verdict=verdict,
                          lot=lot, **await self._gallery(conn, station, verdict, lot))

    @get("/fragments/inspections")
    async def inspections_fragment(self, request: Request, conn: Conn, station: _Text = None,  # type: ignore[type-arg]
                                   verdict: _Text = None, lot: _Text = None) -> Template:
        """The gallery for a filter change or a new inspection."""
        return await page(request, "inspections_body.html", **await self._gallery(conn, station, verdict, lot))

    @staticmethod
    async def _gallery(conn: psycopg.AsyncConnection, station: str | None, verdict: str | None,
                       lot: str | None) -> dict[str, Any]:
        if verdict not in (None, "", "ok", "ng"):
            raise InvalidParameterError("verdict", f"must be ok or ng, not {verdict!r}")
        return await queries.inspections(conn, station or None, verdict or None, lot or None, 60)

    @get("/schedule")
    async def schedule(self, request: Request, conn: Conn,  # type: ignore[type-arg]
                       sid: Annotated[int | None, QueryParameter(ge=1, le=2**62)] = None) -> Template:
        """The current version's Gantt with setups, its diff, and the machine-down action."""
        listed = await queries.schedules(conn)
        sid = sid or next((s["id"] for s in listed if s["latest"]), listed[0]["id"] if listed else None)
        body = await self._plan(conn, sid) if sid else {}
        return await page(request, "schedule.html", page="/schedule", schedules=listed, sid=sid, **body)

    @get("/fragments/schedule")
    async def schedule_fragment(self, request: Request, conn: Conn,  # type: ignore[type-arg]
                                sid: Annotated[int, QueryParameter(ge=1, le=2**62)]) -> Template:
        """The plan of a schedule's newest version, for live refresh."""
        return await page(request, "schedule_body.html", sid=sid, **await self._plan(conn, sid))

    @staticmethod
    async def _plan(conn: psycopg.AsyncConnection, sid: int) -> dict[str, Any]:
        head = await store.get(conn, sid)
        if head is None:
            raise NotFoundException(f"no schedule {sid}")
        v = await store.version(conn, sid)
        machines = sorted({o["machine"] for o in v["operations"]}) if v else []
        return {"v": v, "state": head["state"], "machines": machines}

    @get("/orders")
    async def orders(self, request: Request, conn: Conn, lot: _Text = None,  # type: ignore[type-arg]
                     direction: _Text = "down") -> Template:
        """Open orders with progress, and a lot's genealogy as a tree."""
        direction = direction if direction in ("up", "down") else "down"
        tree = await queries.lot_tree(conn, lot, direction) if lot else None
        return await page(request, "orders.html", page="/orders", orders=await queries.orders(conn), lot=lot,
                          direction=direction, tree=tree, lots=await queries.recent_lots(conn))

    @get("/sources")
    async def sources(self, request: Request, conn: Conn) -> Template:  # type: ignore[type-arg]
        """Each gateway source's health, rate, spool and last error."""
        return await page(request, "sources.html", page="/sources", sources=await queries.sources(conn))

    @get("/fragments/sources")
    async def sources_fragment(self, request: Request, conn: Conn) -> Template:  # type: ignore[type-arg]
        """The sources table, for refresh."""
        return await page(request, "sources.html", sources=await queries.sources(conn))
