"""/health and /metrics: is the service up, and its counters in Prometheus text."""

from __future__ import annotations

import psycopg
from litestar import Controller, MediaType, Response, get
from litestar.datastructures import State
from litestar.status_codes import HTTP_200_OK, HTTP_503_SERVICE_UNAVAILABLE

from api.auth import metrics_guard
from api.observe import pool_gauges
from historian.db import backend
from historian.metrics import METRICS


class SystemController(Controller):
    """Liveness and metrics."""

    path = "/"
    tags = ["system"]

    @get("/health", summary="Health", security=[{}])
    async def health(self, state: State) -> Response[dict[str, str]]:
        """200 with the database backend when the database answers, else 503 with the error."""
        try:
            async with state.pool.connection(timeout=2.0) as conn:
                kind = await backend(conn)
            return Response({"status": "ok", "database": kind}, status_code=HTTP_200_OK)
        except (psycopg.Error, OSError, TimeoutError) as e:
            return Response(
                {"status": "degraded", "database": "unreachable", "error": str(e).strip()},
                status_code=HTTP_503_SERVICE_UNAVAILABLE,
            )

    @get("/metrics", summary="Prometheus metrics", media_type=MediaType.TEXT, guards=[metrics_guard])
    async def metrics(self, state: State) -> str:
        """Every counter, gauge and histogram of this process in the Prometheus text format."""
        pool_gauges(state.pool)
        return METRICS.render()
