"""/api/v1/kpi: ISO 22400-2 KPIs of a machine or a line, whole or per shift or UTC day (analytics/KPI.md)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import psycopg
from litestar import Controller, Request, Response, get
from litestar.di import NamedDependency, Provide
from litestar.params import QueryParameter
from litestar.status_codes import HTTP_404_NOT_FOUND

from api.auth import requires
from analytics.kpi import GROUPS, KpiRow, UnknownScopeError, kpis
from api.deps import provide_conn
from historian.errors import InvalidParameterError

_PARAMETERS = {"machine", "line", "start", "end", "group"}


def unknown_scope(_: Request, exc: UnknownScopeError) -> Response:
    """404 naming the machine or line."""
    return Response({"status_code": 404, "detail": str(exc), exc.kind: exc.name}, status_code=HTTP_404_NOT_FOUND)


class KpiController(Controller):
    """Availability, effectiveness, quality rate, OEE and the other ISO 22400 KPIs, computed by the database."""

    path = "/api/v1/kpi"
    tags = ["analytics"]
    guards = [requires("viewer")]
    dependencies = {"conn": Provide(provide_conn)}
    exception_handlers = {UnknownScopeError: unknown_scope}  # type: ignore[dict-item]

    @get("/", summary="ISO 22400 KPIs of a machine or a line")
    async def kpi(
        self,
        conn: NamedDependency[psycopg.AsyncConnection],
        request: Request[Any, Any, Any],
        start: Annotated[datetime, QueryParameter(description="inclusive, ISO 8601 with a zone")],
        end: Annotated[datetime, QueryParameter(description="exclusive, ISO 8601 with a zone")],
        machine: Annotated[str | None, QueryParameter(description="this machine (or give line)")] = None,
        line: Annotated[str | None, QueryParameter(description="this line, its machines summed")] = None,
        group: Annotated[str | None, QueryParameter(description=f"one row per {' or '.join(GROUPS)}")] = None,
    ) -> list[KpiRow]:
        """Base times and quantities and every KPI per bucket; a KPI whose denominator is zero is null."""
        # a misspelt parameter would otherwise be ignored and answer a different question
        unknown = sorted(set(request.query_params) - _PARAMETERS)
        if unknown:
            raise InvalidParameterError(unknown[0], f"unknown parameter; expected {', '.join(sorted(_PARAMETERS))}")
        return await kpis(conn, machine=machine, line=line, start=start, end=end, group=group)
