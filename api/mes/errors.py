"""MES refusals as HTTP answers: 404/422 naming the unknown entity, 422 naming the field, 409 naming the status."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import psycopg
from litestar import Request, Response
from litestar.status_codes import HTTP_404_NOT_FOUND, HTTP_409_CONFLICT, HTTP_422_UNPROCESSABLE_ENTITY


class MesError(Exception):
    """Base of every refusal the MES API makes on purpose."""


class UnknownEntityError(MesError, LookupError):
    """An entity that does not exist: 404 when it is the resource asked for, 422 when the body refers to it."""

    def __init__(self, entity: str, key: object, field: str | None = None) -> None:
        super().__init__(f"unknown {entity} {key!r}" + (f" (in {field})" if field else ""))
        self.entity, self.key, self.field = entity, key, field


class RejectedError(MesError, ValueError):
    """A well-formed field the records refuse (an ineligible machine, more than a lot holds): 422 naming it."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field, self.problem = field, problem


class ConflictError(MesError):
    """A transition the current state does not allow, or a record that already exists: 409."""

    def __init__(self, detail: str, *, status: str | None = None) -> None:
        super().__init__(detail)
        self.status = status


def _unknown(_: Request, exc: UnknownEntityError) -> Response:
    code = HTTP_404_NOT_FOUND if exc.field is None else HTTP_422_UNPROCESSABLE_ENTITY
    return Response({"status_code": code, "detail": str(exc), "entity": exc.entity, "key": exc.key,
                     "field": exc.field}, status_code=code)


def _rejected(_: Request, exc: RejectedError) -> Response:
    return Response({"status_code": 422, "detail": str(exc), "field": exc.field, "problem": exc.problem},
                    status_code=HTTP_422_UNPROCESSABLE_ENTITY)


def _conflict(_: Request, exc: ConflictError) -> Response:
    return Response({"status_code": 409, "detail": str(exc), "current_status": exc.status},
                    status_code=HTTP_409_CONFLICT)


HANDLERS = {UnknownEntityError: _unknown, RejectedError: _rejected, ConflictError: _conflict}

# SQLSTATEs of sql/0006_mes_rules.sql
CYCLE, NOT_RUNNING, RECIPE_OVERLAP = "23S01", "23S02", "23S03"


@contextmanager
def refusals(what: str) -> Iterator[None]:
    """Turn what the database refused while writing `what` into a 409; wrap it around the transaction."""
    try:
        yield
    except psycopg.errors.UniqueViolation as e:
        raise ConflictError(f"{what} already exists: {e.diag.message_detail or e.diag.message_primary}") from None
    except psycopg.errors.IntegrityError as e:
        state = e.diag.sqlstate
        status = e.diag.message_detail if state == NOT_RUNNING else None
        raise ConflictError(f"{what}: {e.diag.message_primary}", status=status) from None
