"""Wiring: one Litestar app with every controller, the error handlers and the connection pool."""

from __future__ import annotations

import asyncio
import contextlib
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, AsyncIterator, Sequence

from litestar import Litestar
from litestar.config.allowed_hosts import AllowedHostsConfig
from litestar.config.cors import CORSConfig
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import RedocRenderPlugin, SwaggerRenderPlugin
from litestar.openapi.spec import Components, SecurityScheme
from litestar.static_files import create_static_files_router
from psycopg_pool import AsyncConnectionPool

from api.auth import SCHEME
from api.config import ApiConfig
from api.errors import HANDLERS
from api.failures import HANDLERS as FAILURES
from api.disconnect import cancel_on_disconnect
from api.inputs import check_request
from api.inspections import InspectionController
from api.key_check import KeyCheck
from api.keys import KeyStore
from api.kpi import KpiController
from api.machines import AlarmController, MachineController
from api.mes import mes_router
from api.observe import observe
from api.sources import SourceController
from api.spc import SpcController
from api.stream import StreamController, StreamHub, StreamLimits
from api.system import SystemController
from api.tags import TagController
from api.schedules import DispatchController, ScheduleController
from api.whatif import WhatIfController
from api.writeback import WriteController
from scheduling.config import SchedulingConfig
from scheduling.trigger import TwinTrigger, trigger_config

_TRIGGER_STOP_S = 10.0  # how long shutdown waits for a re-solve the trigger has under way (it stops at its best)

def _configure(statement_timeout: float):  # type: ignore[no-untyped-def]
    async def configure(conn) -> None:  # type: ignore[no-untyped-def]
        await conn.execute("SET TIME ZONE 'UTC'")
        # bounded work: no statement of a request runs longer than this
        await conn.execute(f"SET statement_timeout = {int(statement_timeout * 1000)}")

    return configure


_ASSETS = Path(__file__).resolve().parent / "docs_assets"  # from npm's swagger-ui-dist and redoc: no CDN
_DOCS = [
    SwaggerRenderPlugin(js_url="/schema/assets/swagger-ui-bundle.js", css_url="/schema/assets/swagger-ui.css",
                        standalone_preset_js_url="/schema/assets/swagger-ui-standalone-preset.js"),
    RedocRenderPlugin(js_url="/schema/assets/redoc.standalone.js", google_fonts=False),
]
_SECURITY = Components(security_schemes={
    SCHEME: SecurityScheme(type="http", scheme="bearer", description="an API key: `Authorization: Bearer <key>` "
                           "(or `X-API-Key: <key>`); 401 without a known key, 403 when its role is too low"),
})


def create_app(dsn: str, config: ApiConfig | None = None, *, pool_size: int | None = None,
               pages: Sequence[Any] = (), middleware: Sequence[Any] = (), template_config: Any = None,
               stream: StreamLimits | None = None, scheduling: SchedulingConfig | None = None) -> Litestar:
    """The API over the historian at dsn; pages, middleware and templates are the command center's (web/);
    `scheduling` (the [scheduling] table) gives the schedule routes their defaults and may start the twin trigger."""
    api_config = config or ApiConfig()
    scheduling_config = scheduling or SchedulingConfig()
    pool_size = pool_size or api_config.pool_size

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        pool = AsyncConnectionPool(dsn, min_size=1, max_size=pool_size, open=False,
                                   configure=_configure(api_config.statement_timeout), timeout=api_config.pool_timeout,
                                   kwargs={"application_name": "shopfloor-api", "autocommit": True})
        await pool.open(wait=False)
        app.state.pool = pool
        app.state.api_config = api_config
        app.state.key_check = KeyCheck(api_config.users, KeyStore())
        app.state.stream = StreamHub(dsn, stream)
        app.state.scheduling = scheduling_config
        follower = asyncio.create_task(app.state.stream.run(), name="stream hub")
        stop_trigger = asyncio.Event()
        wanted = trigger_config(scheduling_config)  # None unless [scheduling] trigger asks for it
        app.state.trigger = TwinTrigger(wanted) if wanted is not None else None
        trigger = None
        if app.state.trigger is not None:
            trigger = asyncio.create_task(app.state.trigger.run(dsn, stop_trigger), name="twin trigger")
        app.state.trigger_task = trigger
        try:
            yield
        finally:
            follower.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await follower
            if trigger is not None:
                stop_trigger.set()
                _, late = await asyncio.wait([trigger], timeout=_TRIGGER_STOP_S)
                for t in late:
                    t.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await t
            await pool.close()

    app = Litestar(
        route_handlers=[create_static_files_router("/schema/assets", [_ASSETS], include_in_schema=False),
                        SystemController, TagController, WriteController, SourceController, MachineController,
                        AlarmController, WhatIfController, SpcController, mes_router, KpiController,
                        ScheduleController, DispatchController, InspectionController, StreamController, *pages],
        middleware=list(middleware),
        template_config=template_config,
        exception_handlers={**FAILURES, **HANDLERS},  # type: ignore[arg-type]
        lifespan=[lifespan],
        before_request=check_request,
        request_max_body_size=api_config.max_body,
        cors_config=CORSConfig(allow_origins=api_config.cors_origins, allow_credentials=False,
                               allow_headers=["Authorization", "X-API-Key", "Content-Type", "X-Request-ID"],
                               expose_headers=["X-Request-ID", "Retry-After"]) if api_config.cors_origins else None,
        allowed_hosts=AllowedHostsConfig(allowed_hosts=api_config.trusted_hosts) if api_config.trusted_hosts else None,
        logging_config=None,  # logging is the process's to set up, quiet by default
        openapi_config=OpenAPIConfig(title="Shopfloor", version="0.1.0", path="/schema", components=_SECURITY,
                                     security=[{SCHEME: []}], render_plugins=_DOCS),
    )
    app.asgi_handler = observe(cancel_on_disconnect(app.asgi_handler))
    return app
