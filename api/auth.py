"""Who is calling: API keys from shopfloor.toml, and a guard for the roles that may write."""

from __future__ import annotations

import hmac

from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException
from litestar.handlers.base import BaseRouteHandler

from api.config import WRITE_ROLES, ApiUser


def caller(connection: ASGIConnection) -> ApiUser:  # type: ignore[type-arg]
    """The user whose key came with the request, or 401."""
    users: list[ApiUser] = connection.app.state.api_config.users
    if not users:
        raise NotAuthorizedException("no API users are configured: add [[api.users]] to shopfloor.toml")
    header = connection.headers.get("authorization", "")
    key = header[7:] if header.lower().startswith("bearer ") else connection.headers.get("x-api-key", "")
    for user in users:
        if key and hmac.compare_digest(user.key, key):
            return user
    raise NotAuthorizedException("missing or unknown API key (Authorization: Bearer <key> or X-API-Key)")


ROLE_RANK = {"viewer": 0, "operator": 1, "engineer": 2, "admin": 3}


def requires(role: str):  # type: ignore[no-untyped-def]
    """Guard factory: the caller's role must be `role` or above (viewer < operator < engineer < admin).

    Every route declares its role with `guards=[requires("viewer")]` (on the handler or its controller);
    the guard carries `.role` so the route table can be checked for routes that declare none.
    """
    if role not in ROLE_RANK:
        raise ValueError(f"unknown role {role!r}")

    def guard(connection: ASGIConnection, _: BaseRouteHandler) -> None:  # type: ignore[type-arg]
        user = caller(connection)
        if ROLE_RANK.get(user.role, -1) < ROLE_RANK[role]:
            raise PermissionDeniedException(f"user {user.name!r} has role {user.role!r}; this needs {role}")

    guard.role = role  # type: ignore[attr-defined]
    guard.__name__ = f"requires_{role}"
    return guard


def may_write(connection: ASGIConnection, _: BaseRouteHandler) -> None:  # type: ignore[type-arg]
    """Guard: only operators and engineers write to devices."""
    user = caller(connection)
    if user.role not in WRITE_ROLES:
        raise PermissionDeniedException(f"user {user.name!r} has role {user.role!r}; writing needs operator or engineer")
