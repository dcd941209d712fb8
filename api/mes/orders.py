"""/api/v1/orders: work orders and their operations, from creation to completion (rules in order_flow)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import msgspec
import psycopg
from litestar import Controller, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody, QueryParameter
from litestar.status_codes import HTTP_200_OK

from api.auth import requires
from api.mes import order_flow
from api.mes.errors import UnknownEntityError
from api.mes.types import Code, Int4, Positive, Quantity, Text, Timestamp
from historian.errors import InvalidParameterError


class OrderIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """A work order for a quantity of a product, on its active routing."""

    id: Code
    product: Code
    quantity: Positive
    due: Timestamp | None = None
    priority: Int4 = 0


class StartIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """The machine an operation runs on, from a time (default now)."""

    machine: Code
    at: Timestamp | None = None


class CompleteIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """When an operation completed (default now)."""

    at: Timestamp | None = None


class ConsumedIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """A lot and how much of it went into the produced lot."""

    lot: Code
    quantity: Positive


class ReportIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Quantities made on a running operation (ISO 22400 GQ, SQ, RQ) and the lots that went into the produced one."""

    good: Quantity = 0.0
    scrap: Quantity = 0.0
    rework: Quantity = 0.0
    first_pass_good: Quantity | None = None
    """good the first time through; absent: all good were"""
    reported_by: Text = ""
    at: Timestamp | None = None
    consumed: list[ConsumedIn] = []
    produced: Code | None = None
    """the lot the good parts went into"""


class OperationOut(msgspec.Struct):
    """An operation of an order with what was reported on it."""

    seq: int
    name: str
    status: str
    machine: str | None
    planned_cycle_s: float | None
    started_at: datetime | None
    completed_at: datetime | None
    good: float
    scrap: float
    rework: float
    first_pass_good: float
    reports: int


class OrderOut(msgspec.Struct):
    """A work order; good is what its last operation made good, scrap what every operation scrapped."""

    id: str
    product: str
    routing_version: int | None
    quantity: float
    due: datetime | None
    priority: int
    status: str
    created_at: datetime
    released_at: datetime | None
    completed_at: datetime | None
    good: float
    scrap: float
    operations: list[OperationOut] | None = None


_ORDERS = """
    SELECT w.id, p.code, r.version, w.quantity::float8, w.due_ts, w.priority, w.status, w.created_at, w.released_at,
           w.completed_at,
           coalesce((SELECT g.good FROM operation_progress g WHERE g.work_order = w.id ORDER BY g.seq DESC LIMIT 1),
                    0)::float8,
           coalesce((SELECT sum(g.scrap) FROM operation_progress g WHERE g.work_order = w.id), 0)::float8
    FROM work_orders w JOIN products p ON p.id = w.product_id LEFT JOIN routings r ON r.id = w.routing_id"""

_OPERATIONS = """
    SELECT seq, name, status, machine, planned_cycle_s, started_at, completed_at, good::float8, scrap::float8,
           rework::float8, first_pass_good::float8, reports
    FROM operation_progress WHERE work_order = %s ORDER BY seq"""


async def read_order(conn: psycopg.AsyncConnection, order: str) -> OrderOut:
    """An order with its operations and reported totals; 404 when unknown."""
    cur = await conn.execute(_ORDERS + " WHERE w.id = %s", (order,))
    row = await cur.fetchone()
    if row is None:
        raise UnknownEntityError("order", order)
    cur = await conn.execute(_OPERATIONS, (order,))
    return OrderOut(*row, operations=[OperationOut(*r) for r in await cur.fetchall()])


class OrderController(Controller):
    """Work orders and their operations."""

    path = "/orders"
    tags = ["mes: orders"]
    guards = [requires("viewer")]

    @post("/", summary="Create a work order", guards=[requires("operator")])
    async def create_order(self, conn: NamedDependency[psycopg.AsyncConnection], data: JSONBody[OrderIn]) -> OrderOut:
        """The order and one pending operation per step of the product's active routing; 409 when the id is taken."""
        await order_flow.create(conn, order_flow.NewOrder(data.id, data.product, data.quantity, data.due,
                                                          data.priority))
        return await read_order(conn, data.id)

    @get("/", summary="List work orders")
    async def list_orders(
        self,
        conn: NamedDependency[psycopg.AsyncConnection],
        status: Annotated[str | None, QueryParameter(description=", ".join(order_flow.STATUSES))] = None,
    ) -> list[OrderOut]:
        """Orders by priority (highest first), then due time, without their operations."""
        if status is not None and status not in order_flow.STATUSES:
            raise InvalidParameterError("status", f"must be one of {', '.join(order_flow.STATUSES)}, got {status!r}")
        cur = await conn.execute(
            _ORDERS + " WHERE %(s)s::text IS NULL OR w.status = %(s)s ORDER BY w.priority DESC, w.due_ts, w.id",
            {"s": status})
        return [OrderOut(*r) for r in await cur.fetchall()]

    @get("/{order_id:str}", summary="One work order")
    async def get_order(self, conn: NamedDependency[psycopg.AsyncConnection], order_id: FromPath[str]) -> OrderOut:
        """The order with its operations and what was reported on each."""
        return await read_order(conn, order_id)

    @post("/{order_id:str}/release", summary="Release a work order", status_code=HTTP_200_OK,
          guards=[requires("operator")])
    async def release(self, conn: NamedDependency[psycopg.AsyncConnection], order_id: FromPath[str]) -> OrderOut:
        """created -> released; 409 naming the status otherwise."""
        await order_flow.release(conn, order_id)
        return await read_order(conn, order_id)

    @post("/{order_id:str}/operations/{seq:int}/start", summary="Start an operation", status_code=HTTP_200_OK,
          guards=[requires("operator")])
    async def start(self, conn: NamedDependency[psycopg.AsyncConnection], order_id: FromPath[str],
                    seq: FromPath[int], data: JSONBody[StartIn]) -> OrderOut:
        """Run a pending operation on an eligible machine (else 422 naming `machine`) once its predecessor started."""
        await order_flow.start(conn, order_id, seq, data.machine, data.at)
        return await read_order(conn, order_id)

    @post("/{order_id:str}/operations/{seq:int}/report", summary="Report quantities and lots", status_code=HTTP_200_OK,
          guards=[requires("operator")])
    async def report(self, conn: NamedDependency[psycopg.AsyncConnection], order_id: FromPath[str],
                     seq: FromPath[int], data: JSONBody[ReportIn]) -> OrderOut:
        """Good/scrap/rework and the lots consumed into the produced lot, in one transaction; 409 and nothing
        written when the operation is not running or the genealogy would close a cycle."""
        rep = order_flow.Report(data.good, data.scrap, data.rework, data.first_pass_good, data.reported_by, data.at,
                                [order_flow.Consumption(c.lot, c.quantity) for c in data.consumed], data.produced)
        await order_flow.report(conn, order_id, seq, rep)
        return await read_order(conn, order_id)

    @post("/{order_id:str}/operations/{seq:int}/complete", summary="Complete an operation", status_code=HTTP_200_OK,
          guards=[requires("operator")])
    async def complete(self, conn: NamedDependency[psycopg.AsyncConnection], order_id: FromPath[str],
                       seq: FromPath[int], data: JSONBody[CompleteIn | None] = None) -> OrderOut:
        """A running operation completes after its predecessor; the last one completes the order."""
        await order_flow.complete(conn, order_id, seq, data.at if data else None)
        return await read_order(conn, order_id)
