"""Every response: a request id, security headers, its count and latency in /metrics, and, for a change asked
of the API, an audit row saying who asked what, when, and how it ended (accepted, refused or failed)."""

from __future__ import annotations

import contextvars
import logging
import re
import time
import uuid
from typing import Any

from litestar.types import ASGIApp, Message, Receive, Scope, Send

from api.auth import presented_key
from historian.metrics import METRICS

log = logging.getLogger("shopfloor.api")
request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")
"""The id of the request being served, for log records (see RequestIdFilter)."""

_responses = METRICS.counter("shopfloor_http_responses_total", "HTTP responses, by method, route template and status")
_latency = METRICS.histogram("shopfloor_http_request_seconds", "Time to answer a request, by route template")
_pool_in_use = METRICS.gauge("shopfloor_api_pool_in_use", "API database connections lent to requests")
_pool_waiting = METRICS.gauge("shopfloor_api_pool_waiting", "Requests waiting for an API database connection")
_WRITES = {"POST", "PUT", "PATCH", "DELETE"}
_SAFE_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
]
_API_CSP = b"default-src 'none'; frame-ancestors 'none'"
# the docs pages run their own (local) scripts and styles, nothing from elsewhere
_DOCS_CSP = (b"default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
             b"worker-src blob:; img-src 'self' data:; frame-ancestors 'none'")


class RequestIdFilter(logging.Filter):
    """Adds `request_id` to every log record (install on the handler that formats with %(request_id)s)."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Always keep the record; stamp it."""
        record.request_id = request_id.get()
        return True


def pool_gauges(pool: Any) -> None:
    """Set the pool gauges from the pool's own statistics."""
    stats = pool.get_stats()
    _pool_in_use.set(stats.get("pool_size", 0) - stats.get("pool_available", 0))
    _pool_waiting.set(stats.get("requests_waiting", 0))


def _route(scope: Scope) -> str:
    # the template the router matched, e.g. /api/v1/tags/{name:str}/samples; set once routing is done
    return str(scope.get("path_template") or "unmatched")


def observe(app: ASGIApp) -> ASGIApp:
    """ASGI middleware factory (see the module docstring)."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        given = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        rid = given if _SAFE_ID.match(given) else uuid.uuid4().hex
        token = request_id.set(rid)
        scope.setdefault("state", {})["request_id"] = rid  # type: ignore[typeddict-item]
        status = 500
        started = time.perf_counter()
        docs = scope["path"].startswith("/schema")

        async def send_with_headers(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", rid.encode()))
                headers.extend(_HEADERS)
                headers.append((b"content-security-policy", _DOCS_CSP if docs else _API_CSP))
                if not docs:
                    headers.append((b"cache-control", b"no-store"))
                message["headers"] = headers  # type: ignore[typeddict-unknown-key]
            await send(message)

        try:
            await app(scope, receive, send_with_headers)
        finally:
            if status == 500 and scope.get("state", {}).get("client_gone"):  # type: ignore[union-attr]
                status = 499  # nginx's "client closed request": nothing was answered, nothing failed
            route = _route(scope)
            _responses.inc(method=scope["method"], route=route, status=str(status))
            _latency.observe(time.perf_counter() - started, route=route)
            if scope["method"] in _WRITES and scope["path"].startswith("/api/"):
                await _audit(scope, route, status, rid)
            request_id.reset(token)

    return middleware


async def _audit(scope: Scope, route: str, status: int, rid: str) -> None:
    state: dict[str, Any] = scope.get("state", {})  # type: ignore[assignment]
    user = state.get("shopfloor_user")
    if user is not None:
        who, role = user.name, user.role
    else:
        from litestar.connection import ASGIConnection

        who, role = ("unknown key" if presented_key(ASGIConnection(scope)) else "anonymous"), None
    outcome = "accepted" if status < 400 else "refused" if status < 500 else "failed"
    detail = str(state.get("audit_detail", ""))[:1000]
    pool = getattr(scope["app"].state, "pool", None)
    try:
        async with pool.connection(timeout=2.0) as conn:  # type: ignore[union-attr]
            await conn.execute(
                "INSERT INTO api_audit (who, role, method, path, route, status, outcome, request_id, detail) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
                (who, role, scope["method"], scope["path"][:2000].replace("\x00", "\\0"),
                 route if route != "unmatched" else None, status, outcome, rid, detail))
    except Exception:  # the answer has gone out; the audit's failure must be seen, not raised
        log.exception("audit: could not record %s %s by %s (%s)", scope["method"], scope["path"], who, status)
