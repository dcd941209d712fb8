"""Sign-in and sign-out: the only pages open without a session (besides the vendored files)."""

from __future__ import annotations

from typing import Annotated, Any

import psycopg
from litestar import Controller, Request, Response, get, post
from litestar.di import NamedDependency, Provide
from litestar.enums import RequestEncodingType
from litestar.params import Body, Parameter
from litestar.response import Redirect, Template

from api.deps import provide_conn
from web import sessions, users


def open_page(role: str = "anonymous"):  # type: ignore[no-untyped-def]
    """Guard of the open pages: nothing to check, but declared, so the route table shows every route's access."""

    async def guard(*_: Any) -> None:
        return None

    guard.role = role  # type: ignore[attr-defined]
    return guard


def local(target: str | None) -> str:
    """Where to go after sign-in: a path on this server only (never //host or a scheme)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target or len(target) > 500:
        return "/"
    return target


def _cookie(request: Request, value: str, max_age: int) -> dict[str, Any]:  # type: ignore[type-arg]
    secure = bool(request.app.state.api_config.certfile) or request.url.scheme == "https"
    return {"key": sessions.COOKIE, "value": value, "max_age": max_age, "httponly": True, "samesite": "strict",
            "secure": secure, "path": "/"}


class SignIn(Controller):
    """GET/POST /login and POST /logout."""

    guards = [open_page()]
    dependencies = {"conn": Provide(provide_conn)}
    include_in_schema = False

    @get("/login")
    async def form(self, next: Annotated[str | None, Parameter(max_length=500)] = None) -> Template:  # noqa: A002
        """The sign-in form."""
        return Template(template_name="login.html", context={"user": None, "next": local(next), "name": "",
                                                             "error": ""})

    @post("/login", status_code=303)
    async def sign_in(self, request: Request, conn: NamedDependency[psycopg.AsyncConnection],  # type: ignore[type-arg]
                      data: Annotated[dict[str, str], Body(media_type=RequestEncodingType.URL_ENCODED)]) -> Response:  # type: ignore[type-arg]
        """Check name and password; a new session cookie on success, the same vague refusal on any failure."""
        name, password = str(data.get("name", ""))[:64], str(data.get("password", ""))
        user = await users.authenticate(conn, name, password)
        if user is None:
            return Template(template_name="login.html", status_code=401,
                            context={"user": None, "next": local(data.get("next")), "name": name,
                                     "error": f"Name or password wrong, or the account is disabled or locked "
                                              f"({users.MAX_FAILURES} wrong passwords lock it for "
                                              f"{users.LOCK_S // 60} minutes)."})
        token = await sessions.start(conn, user)
        response = Redirect(local(data.get("next")), status_code=303)
        response.set_cookie(**_cookie(request, token, sessions.LIFETIME_S))
        return response

    @post("/logout", status_code=303)
    async def sign_out(self, request: Request, conn: NamedDependency[psycopg.AsyncConnection]) -> Response:  # type: ignore[type-arg]
        """End the session and drop its cookie."""
        await sessions.end(conn, request.cookies.get(sessions.COOKIE, ""))
        response = Redirect("/login", status_code=303)
        response.set_cookie(**_cookie(request, "", 0))
        return response
