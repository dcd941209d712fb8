"""The command center in the API's server: pages, vendored files, sessions and CSRF wired around api.app."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any
from urllib.parse import quote

from litestar import Litestar, Request, Response, Router
from litestar.config.csrf import CSRFConfig
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.exceptions import NotAuthorizedException, NotFoundException, PermissionDeniedException
from litestar.middleware import DefineMiddleware
from litestar.response import Redirect, Template
from litestar.static_files import create_static_files_router
from litestar.template.config import TemplateConfig

from api.app import create_app as create_api
from api.config import ApiConfig
from api.inputs import check_text
from api.stream import StreamLimits
from scheduling.config import SchedulingConfig
from web.gate import SessionGate, page_headers
from web.pages import Pages
from web.signin import SignIn, open_page

HERE = Path(__file__).resolve().parent


async def _check_query(request: Request[Any, Any, Any]) -> None:
    # the API's own hook also insists on JSON bodies; the sign-in form posts a form, so only texts are checked here
    for name, value in request.path_params.items():
        if isinstance(value, str):
            check_text(name, value)
    for name, values in request.query_params.dict().items():
        check_text("query", name)
        for value in values:
            check_text(name, value)


def _to_sign_in(request: Request[Any, Any, Any], _: Exception) -> Response[Any]:
    target = "/login?next=" + quote(request.url.path + (f"?{request.url.query}" if request.url.query else ""))
    if request.headers.get("hx-request"):
        return Response(b"", status_code=401, headers={"HX-Redirect": "/login"})
    return Redirect(target, status_code=303)


def _refused(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    status = 404 if isinstance(exc, NotFoundException) else 403
    user = request.scope.get("state", {}).get("shopfloor_user")
    return Template(template_name="error.html", status_code=status,
                    context={"user": user, "status": "Not found" if status == 404 else "Not allowed",
                             "detail": getattr(exc, "detail", str(exc))})


def create_app(dsn: str, config: ApiConfig | None = None, *, pool_size: int | None = None,
               stream: StreamLimits | None = None, scheduling: SchedulingConfig | None = None) -> Litestar:
    """The API at dsn with the command center's pages on / (sign-in at /login)."""
    config = config or ApiConfig()
    # the CSRF secret lives as long as the process: after a restart, a form open in a browser is reloaded once
    csrf = CSRFConfig(secret=secrets.token_urlsafe(32), cookie_name="sf_csrf", cookie_httponly=True,
                      cookie_samesite="strict", cookie_secure=bool(config.certfile), header_name="x-csrftoken")
    pages = Router(path="/", route_handlers=[SignIn, Pages], before_request=_check_query, include_in_schema=False,
                   exception_handlers={NotAuthorizedException: _to_sign_in, PermissionDeniedException: _refused,
                                       NotFoundException: _refused})
    static = create_static_files_router("/static", [HERE / "static"], include_in_schema=False, guards=[open_page()])
    app = create_api(dsn, config, pool_size=pool_size, pages=[pages, static],
                     middleware=[DefineMiddleware(SessionGate, csrf=csrf)],
                     template_config=TemplateConfig(directory=HERE / "templates", engine=JinjaTemplateEngine),
                     stream=stream, scheduling=scheduling)
    app.asgi_handler = page_headers(app.asgi_handler)
    return app
