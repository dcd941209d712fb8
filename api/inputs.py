"""What every request is checked for before a handler sees it: no NUL bytes, times PostgreSQL and Python both
read back, bounded JSON (depth, string length, finite numbers), and JSON bodies sent as JSON (else 415).

A bad value is refused with 400 naming the parameter or the body field (e.g. `parameters.a.b`), before any
database work, so a refused request never leaves a row behind.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import Any

import msgspec
import numpy as np
from litestar import Request
from litestar.exceptions import HTTPException
from litestar.status_codes import HTTP_415_UNSUPPORTED_MEDIA_TYPE

from historian.errors import InvalidParameterError

MAX_DEPTH = 32
MAX_STRING = 10_000
MAX_INT = 2**63 - 1
_WRITES = {"POST", "PUT", "PATCH", "DELETE"}
_STRINGS = re.compile(rb'"(?:[^"\\]|\\.)*"', re.S)
_TIMESTAMP = re.compile(r"^[+-]?\d{4,}-\d{2}-\d{2}[T ]\d{2}:\d{2}")


class UnsupportedMediaType(HTTPException):
    """415: a body that is not JSON sent to a JSON route."""

    status_code = HTTP_415_UNSUPPORTED_MEDIA_TYPE


def check_text(field: str, text: str) -> None:
    """Refuse NUL bytes, overlong strings and timestamps outside years 1..9999 (in UTC)."""
    if "\x00" in text:
        raise InvalidParameterError(field, "contains a NUL byte")
    if len(text) > MAX_STRING:
        raise InvalidParameterError(field, f"longer than {MAX_STRING} characters ({len(text)})")
    if _TIMESTAMP.match(text):
        check_timestamp(field, text)


def check_timestamp(field: str, text: str) -> None:
    """A timestamp must be readable and stay within years 1..9999 once converted to UTC."""
    try:
        ts = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return  # not a timestamp after all; the field's own type decides
    if ts.tzinfo is None:
        return
    try:
        ts.astimezone(timezone.utc)
    except OverflowError:
        raise InvalidParameterError(field, f"{text!r} is outside years 1..9999 in UTC") from None


def _depth(body: bytes) -> int:
    skeleton = np.frombuffer(_STRINGS.sub(b"", body), dtype=np.uint8)
    steps = np.isin(skeleton, (ord("["), ord("{"))).astype(np.int32) - np.isin(skeleton, (ord("]"), ord("}")))
    return int(np.cumsum(steps).max(initial=0))


def check_json(body: bytes) -> None:
    """Walk a JSON body (without recursion): depth, strings and keys, integer size, finite numbers."""
    depth = _depth(body)
    if depth > MAX_DEPTH:
        raise InvalidParameterError("body", f"JSON nested {depth} deep; at most {MAX_DEPTH}")
    try:
        doc = msgspec.json.decode(body)
    except msgspec.ValidationError as e:  # e.g. a number beyond float8 (1e400)
        raise InvalidParameterError("body", str(e)) from None
    except msgspec.DecodeError:
        return  # malformed: the handler's decoder names the spot
    stack: list[tuple[str, Any]] = [("", doc)]
    while stack:
        path, v = stack.pop()
        field = path or "body"
        if isinstance(v, dict):
            for k, item in v.items():
                check_text(f"{path}.{k}" if path else k, k)
                stack.append((f"{path}.{k}" if path else str(k), item))
        elif isinstance(v, list):
            stack.extend((f"{path}[{i}]", item) for i, item in enumerate(v))
        elif isinstance(v, str):
            check_text(field, v)
        elif isinstance(v, bool):
            pass
        elif isinstance(v, int):
            if abs(v) > MAX_INT:
                raise InvalidParameterError(field, f"integer {v} is out of range")
        elif isinstance(v, float) and not np.isfinite(v):
            raise InvalidParameterError(field, "must be a finite number")


def _is_json(content_type: str) -> bool:
    media = content_type.split(";")[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


async def check_request(request: Request[Any, Any, Any]) -> None:
    """before_request hook: the path, the query and a JSON body, as the module docstring says."""
    for name, value in request.path_params.items():
        if isinstance(value, str):
            check_text(name, value)
    for name, values in request.query_params.dict().items():
        check_text("query", name)
        for value in values:
            check_text(name, value)
    if request.method not in _WRITES:
        return
    content_type = request.headers.get("content-type", "")
    body = await request.body()
    if (body or content_type) and not _is_json(content_type):
        raise UnsupportedMediaType(f"send JSON with Content-Type: application/json, not {content_type or 'none'!r}")
    if body:
        check_json(body)
