"""Who is calling: API keys (configured or in the database), and the guard every route declares its role with."""

from __future__ import annotations

from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException, TooManyRequestsException
from litestar.handlers.base import BaseRouteHandler

from api.config import ApiUser
from api.key_check import TooManyFailures

ROLE_RANK = {"viewer": 0, "operator": 1, "engineer": 2, "admin": 3}
SCHEME = "ApiKey"
"""The OpenAPI security scheme every guarded route declares."""
_MAX_KEY = 200  # longer is no key of ours; refuse before hashing it


def presented_key(connection: ASGIConnection) -> str:  # type: ignore[type-arg]
    """The key the request carries (Authorization: Bearer, else X-API-Key), '' when none."""
    header = connection.headers.get("authorization", "")
    return header[7:].strip() if header.lower().startswith("bearer ") else connection.headers.get("x-api-key", "")


async def caller(connection: ASGIConnection) -> ApiUser:  # type: ignore[type-arg]
    """The user whose key came with the request, or 401; looked up once per request."""
    found = connection.scope.get("state", {}).get("shopfloor_user")  # type: ignore[union-attr]
    if found is not None:
        return found  # type: ignore[no-any-return]
    user = await _lookup(connection)
    connection.scope.setdefault("state", {})["shopfloor_user"] = user  # type: ignore[typeddict-item]
    return user


async def _lookup(connection: ASGIConnection) -> ApiUser:  # type: ignore[type-arg]
    key = presented_key(connection)
    if not key:
        raise NotAuthorizedException("missing API key: send Authorization: Bearer <key> or X-API-Key",
                                     headers={"WWW-Authenticate": "Bearer"})
    if len(key) > _MAX_KEY or not key.isascii() or not key.isprintable():
        raise NotAuthorizedException("unknown API key", headers={"WWW-Authenticate": "Bearer"})
    client = connection.client.host if connection.client else "unknown"
    try:
        user = await connection.app.state.key_check.identify(getattr(connection.app.state, "pool", None), key, client)
    except TooManyFailures as e:
        raise TooManyRequestsException(str(e), headers={"Retry-After": str(max(1, round(e.retry_after)))}) from None
    if user is None:
        raise NotAuthorizedException("unknown, expired or revoked API key", headers={"WWW-Authenticate": "Bearer"})
    return user


def requires(role: str):  # type: ignore[no-untyped-def]
    """Guard factory: the caller's role must be `role` or above (viewer < operator < engineer < admin).

    Every route declares its role with `guards=[requires("viewer")]` (on the handler or its controller);
    the guard carries `.role` so the route table can be checked for routes that declare none.
    """
    if role not in ROLE_RANK:
        raise ValueError(f"unknown role {role!r}")

    async def guard(connection: ASGIConnection, _: BaseRouteHandler) -> None:  # type: ignore[type-arg]
        user = await caller(connection)
        if ROLE_RANK.get(user.role, -1) < ROLE_RANK[role]:
            raise PermissionDeniedException(f"user {user.name!r} has role {user.role!r}; this needs {role}")

    guard.role = role  # type: ignore[attr-defined]
    guard.__name__ = f"requires_{role}"
    return guard


async def metrics_guard(connection: ASGIConnection, handler: BaseRouteHandler) -> None:  # type: ignore[type-arg]
    """/metrics: open when `[api] metrics_public = true`, else a viewer's."""
    if not connection.app.state.api_config.metrics_public:
        await _viewer(connection, handler)


_viewer = requires("viewer")
metrics_guard.role = "viewer"  # type: ignore[attr-defined]


def role_of(handler: BaseRouteHandler) -> str | None:
    """The highest role the guards of a handler (on any layer) require; None when it declares none."""
    roles = [getattr(g, "role", None) for g in handler.resolve_guards()]
    ranked = [r for r in roles if r in ROLE_RANK]
    return max(ranked, key=ROLE_RANK.__getitem__) if ranked else None

