"""Wiring: one Litestar app with every controller, the error handlers and the connection pool."""

from __future__ import annotations

from contextlib import asynccontextmanager
from typing import AsyncIterator

from litestar import Litestar, Response
from litestar.openapi import OpenAPIConfig
from litestar.openapi.spec import Components, SecurityScheme
from psycopg_pool import AsyncConnectionPool

from api.auth import SCHEME
from api.config import ApiConfig
from api.errors import HANDLERS
from api.keys import KeyStore
from api.kpi import KpiController
from api.machines import AlarmController, MachineController
from api.mes import mes_router
from api.sources import SourceController
from api.spc import SpcController
from api.system import SystemController
from api.tags import TagController
from api.schedules import DispatchController, ScheduleController
from api.whatif import WhatIfController
from api.writeback import WriteController
from historian.metrics import METRICS

_requests = METRICS.counter("shopfloor_http_requests_total", "HTTP requests answered, by status")


async def _configure(conn) -> None:  # type: ignore[no-untyped-def]
    await conn.execute("SET TIME ZONE 'UTC'")


_SECURITY = Components(security_schemes={
    SCHEME: SecurityScheme(type="http", scheme="bearer", description="an API key: `Authorization: Bearer <key>` "
                           "(or `X-API-Key: <key>`); 401 without a known key, 403 when its role is too low"),
})


def create_app(dsn: str, config: ApiConfig | None = None, *, pool_size: int | None = None) -> Litestar:
    """The API over the historian at dsn."""
    api_config = config or ApiConfig()
    pool_size = pool_size or api_config.pool_size

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        pool = AsyncConnectionPool(dsn, min_size=1, max_size=pool_size, open=False, configure=_configure,
                                   kwargs={"application_name": "shopfloor-api", "autocommit": True})
        await pool.open(wait=False)
        app.state.pool = pool
        app.state.api_config = api_config
        app.state.key_store = KeyStore()
        try:
            yield
        finally:
            await pool.close()

    async def count(response: Response) -> Response:
        _requests.inc(status=str(response.status_code))
        return response

    return Litestar(
        route_handlers=[SystemController, TagController, WriteController, SourceController, MachineController,
                        AlarmController, WhatIfController, SpcController, mes_router, KpiController,
                        ScheduleController, DispatchController],
        exception_handlers=HANDLERS,  # type: ignore[arg-type]
        lifespan=[lifespan],
        after_request=count,
        logging_config=None,  # logging is the process's to set up, quiet by default
        openapi_config=OpenAPIConfig(title="Shopfloor", version="0.1.0", path="/schema", components=_SECURITY,
                                     security=[{SCHEME: []}]),
    )
