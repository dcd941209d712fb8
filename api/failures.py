"""Answers for what goes wrong below a handler: a statement over its timeout (503), no free connection (503 with
Retry-After), a value the database refuses (400), and every other 500, logged with its traceback."""

from __future__ import annotations

import logging

import psycopg
from litestar import Request, Response
from litestar.status_codes import HTTP_400_BAD_REQUEST, HTTP_500_INTERNAL_SERVER_ERROR, HTTP_503_SERVICE_UNAVAILABLE
from psycopg_pool import PoolTimeout

log = logging.getLogger("shopfloor.api")
RETRY_AFTER_S = 1


def _rid(request: Request) -> str:  # type: ignore[type-arg]
    return str(request.scope.get("state", {}).get("request_id", "-"))


def statement_timeout(request: Request, exc: psycopg.errors.QueryCanceled) -> Response:  # type: ignore[type-arg]
    """503: the request asked for more work than the statement timeout allows."""
    limit = request.app.state.api_config.statement_timeout
    return Response({"status_code": 503, "detail": f"the query took longer than {limit} s (statement_timeout); "
                     "ask for a shorter range or fewer points", "request_id": _rid(request)},
                    status_code=HTTP_503_SERVICE_UNAVAILABLE, headers={"Retry-After": str(RETRY_AFTER_S)})


def pool_exhausted(request: Request, exc: PoolTimeout) -> Response:  # type: ignore[type-arg]
    """503 with Retry-After: every database connection is busy."""
    return Response({"status_code": 503, "detail": "the server is busy: no database connection came free in "
                     f"{request.app.state.api_config.pool_timeout} s", "request_id": _rid(request)},
                    status_code=HTTP_503_SERVICE_UNAVAILABLE, headers={"Retry-After": str(RETRY_AFTER_S)})


def database_down(request: Request, exc: psycopg.OperationalError) -> Response:  # type: ignore[type-arg]
    """503: the database does not answer."""
    log.warning("database unavailable: %s", str(exc).strip())
    return Response({"status_code": 503, "detail": "the database is unavailable", "request_id": _rid(request)},
                    status_code=HTTP_503_SERVICE_UNAVAILABLE, headers={"Retry-After": str(RETRY_AFTER_S)})


def refused_value(request: Request, exc: psycopg.errors.DataError) -> Response:  # type: ignore[type-arg]
    """400: a value the database cannot hold (a number out of its column's range, a bad time)."""
    column = exc.diag.column_name
    return Response({"status_code": 400, "detail": (exc.diag.message_primary or str(exc)).strip(),
                     "parameter": column or "body", "request_id": _rid(request)}, status_code=HTTP_400_BAD_REQUEST)


def out_of_range(request: Request, exc: OverflowError) -> Response:  # type: ignore[type-arg]
    """400: a number or time in the request beyond what can be computed with."""
    return Response({"status_code": 400, "detail": f"a value in the request is out of range: {exc}",
                     "request_id": _rid(request)}, status_code=HTTP_400_BAD_REQUEST)


def internal_error(request: Request, exc: Exception) -> Response:  # type: ignore[type-arg]
    """500, logged with its traceback and request id; the body gives only the id."""
    log.error("500 on %s %s (request %s)", request.method, request.url.path, _rid(request), exc_info=exc)
    return Response({"status_code": 500, "detail": "internal error; the server log has it under this request id",
                     "request_id": _rid(request)}, status_code=HTTP_500_INTERNAL_SERVER_ERROR)


HANDLERS = {
    psycopg.errors.QueryCanceled: statement_timeout,
    PoolTimeout: pool_exhausted,
    psycopg.OperationalError: database_down,
    psycopg.errors.DataError: refused_value,
    OverflowError: out_of_range,
    HTTP_500_INTERNAL_SERVER_ERROR: internal_error,
}
