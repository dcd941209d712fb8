"""Who a browser is: the session cookie becomes the caller the API's role guards check, behind a CSRF check.

Pages and their forms always pass Litestar's CSRF middleware. On /api/ routes the cookie counts only
without an API key: then reads are allowed as the session's user, and writes (acknowledge, shelve,
machine down) need the page's CSRF token in X-CSRFToken, so another site cannot act for a signed-in user.
The API's own guards (`api.auth.requires`) then decide by role, as for a key; its audit names the user.
"""

from __future__ import annotations

from typing import Any

from litestar.config.csrf import CSRFConfig
from litestar.connection import ASGIConnection
from litestar.middleware.csrf import CSRFMiddleware
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from web import sessions

_API = ("/api/", "/schema", "/health", "/metrics")
# pages load only this server's scripts, styles, images and stream: nothing inline, nothing from elsewhere
PAGE_CSP = (b"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
            b"connect-src 'self'; font-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'")


class SessionGate:
    """ASGI middleware: resolve the session cookie to the caller, and check CSRF where a cookie could act."""

    def __init__(self, app: ASGIApp, csrf: CSRFConfig) -> None:
        self.app = app
        self.csrf = CSRFMiddleware(app, csrf)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Set `shopfloor_user` from a live session; send pages and cookie-made API calls through CSRF."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        keyed = b"authorization" in headers or b"x-api-key" in headers
        token = ASGIConnection(scope).cookies.get(sessions.COOKIE, "") if not keyed else ""
        api = scope["path"].startswith(_API)
        if api and not token:
            await self.app(scope, receive, send)  # an API client with a key (or none): the API decides
            return
        if token:
            async with scope["litestar_app"].state.pool.connection() as conn:
                user = await sessions.find(conn, token)
            if user is not None:
                scope.setdefault("state", {})["shopfloor_user"] = user  # type: ignore[typeddict-item]
        await self.csrf(scope, receive, send)


def page_headers(app: ASGIApp) -> ASGIApp:
    """Outermost wrapper: pages get PAGE_CSP instead of the API's `default-src 'none'`; vendored files may be cached."""

    async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(_API):
            await app(scope, receive, send)
            return
        static = scope["path"].startswith("/static/")

        async def send_page(message: Message) -> None:
            if message["type"] == "http.response.start":
                kept: list[Any] = [(k, v) for k, v in message.get("headers", [])
                                   if k.lower() != b"content-security-policy"
                                   and not (static and k.lower() == b"cache-control")]
                kept.append((b"content-security-policy", PAGE_CSP))
                if static:
                    kept.append((b"cache-control", b"private, max-age=3600"))
                message["headers"] = kept  # type: ignore[typeddict-unknown-key]
            await send(message)

        await app(scope, receive, send_page)

    return wrapped
