"""POST /api/v1/tags/{name}/write: queue a write-back for the gateway and wait for its outcome."""

from __future__ import annotations

import asyncio
import math
import time
from typing import Any

import msgspec
import psycopg
from litestar import Controller, Request, Response, post
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath, JSONBody
from litestar.status_codes import HTTP_200_OK, HTTP_400_BAD_REQUEST, HTTP_403_FORBIDDEN, HTTP_502_BAD_GATEWAY, HTTP_504_GATEWAY_TIMEOUT
from psycopg.types.json import Jsonb

from api.auth import ROLE_RANK, caller, requires
from api.deps import provide_conn
from historian.errors import InvalidParameterError, UnknownTagError

CHANNEL = "shopfloor_write"


class WriteIn(msgspec.Struct, forbid_unknown_fields=True):
    """The value to write."""

    value: float | int | bool | str


class WriteOut(msgspec.Struct):
    """What came of a write-back."""

    request_id: int
    tag: str
    value: float | int | bool | str
    status: str
    detail: str


class WriteController(Controller):
    """Write-back to devices: each writable tag names the lowest role that may write it (`write_role`,
    default engineer; operator for setpoints an operator may change); every attempt is audited."""

    path = "/api/v1/tags"
    tags = ["write-back"]
    guards = [requires("operator")]
    dependencies = {"conn": Provide(provide_conn)}

    @post("/{name:str}/write", summary="Write a value to a device", status_code=HTTP_200_OK)
    async def write(
        self, conn: NamedDependency[psycopg.AsyncConnection], request: Request[Any, Any, Any],
        name: FromPath[str], data: JSONBody[WriteIn],
    ) -> Response[WriteOut]:
        """Queue the write, wake the gateway, and wait for it to report done, failed or refused."""
        user = await caller(request)
        cur = await conn.execute("SELECT id, writable, data_type, write_role FROM tags WHERE name = %s", (name,))
        row = await cur.fetchone()
        if row is None:
            raise UnknownTagError(name)
        tag_id, writable, data_type, write_role = row
        check_value(data.value, data_type)  # before the device sees it
        allowed = ROLE_RANK.get(user.role, -1) >= ROLE_RANK.get(write_role, ROLE_RANK["engineer"])
        status = "pending" if writable and allowed else "refused"
        detail = ("" if writable and allowed else f"tag {name!r} is not writable" if not writable
                  else f"tag {name!r} is writable by {write_role} and above; user {user.name!r} has role {user.role!r}")
        cur = await conn.execute(
            """INSERT INTO write_requests (tag_id, value, requested_by, role, status, detail, done_at)
               VALUES (%s, %s, %s, %s, %s, %s, CASE WHEN %s = 'refused' THEN now() END) RETURNING id""",
            (tag_id, Jsonb(data.value), user.name, user.role, status, detail, status),
        )
        request_id = (await cur.fetchone())[0]  # type: ignore[index]
        if status == "pending":
            await conn.execute(f"NOTIFY {CHANNEL}")
            status, detail = await _outcome(conn, request_id, request.app.state.api_config.write_timeout)
        code = {"done": HTTP_200_OK, "refused": HTTP_403_FORBIDDEN, "failed": HTTP_502_BAD_GATEWAY,
                # the gateway checked the value against the tag's type and range; the device saw nothing
                "invalid": HTTP_400_BAD_REQUEST}.get(
            status, HTTP_504_GATEWAY_TIMEOUT
        )
        return Response(WriteOut(request_id, name, data.value, status, detail), status_code=code)


_INT8 = 2**63 - 1


def check_value(value: float | int | bool | str, data_type: str) -> None:
    """400 naming `value` when it does not fit the tag's type (a word to a float tag, 1.5 to an int tag, ...)."""
    ok = {
        "float": isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value),
        "int": (isinstance(value, int) and not isinstance(value, bool) and abs(value) <= _INT8)
        or (isinstance(value, float) and value.is_integer() and abs(value) <= _INT8),
        "bool": isinstance(value, bool),
        "text": isinstance(value, str) and len(value) <= 4000,
    }.get(data_type, True)
    if not ok:
        raise InvalidParameterError("value", f"{value!r} does not fit this tag's type {data_type}")


async def _outcome(conn: psycopg.AsyncConnection, request_id: int, timeout: float) -> tuple[str, str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        cur = await conn.execute("SELECT status, detail FROM write_requests WHERE id = %s", (request_id,))
        status, detail = await cur.fetchone()  # type: ignore[misc]
        if status != "pending":
            return status, detail
        await asyncio.sleep(0.05)
    # nobody took it: withdraw it, unless a gateway claimed it at the last moment
    cur = await conn.execute(
        """UPDATE write_requests SET status = 'failed', done_at = now(),
                  detail = 'no gateway carried it out within ' || %s || ' s'
           WHERE id = %s AND status = 'pending' RETURNING status, detail""",
        (str(timeout), request_id),
    )
    row = await cur.fetchone()
    if row is None:
        return await _outcome(conn, request_id, 5.0)
    return "timeout", row[1]
