"""Work-order transitions, each one transaction: create, release, start, report, complete.

Rules: created -> released -> in_progress (first operation started) -> completed (last operation completed).
An operation starts on an eligible machine once the order is released and its predecessor has started
(operations overlap as a line passes parts on); it completes once its predecessor has completed, so the
last one completing completes the order. Quantities go only on a running operation.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import psycopg

from api.mes.errors import ConflictError, RejectedError, UnknownEntityError, refusals
from api.mes.lookup import id_of
from historian.errors import InvalidParameterError

STATUSES = ("created", "released", "in_progress", "completed", "cancelled")


@dataclass(frozen=True)
class NewOrder:
    """What an order is created from."""

    id: str
    product: str
    quantity: float
    due: datetime | None
    priority: int


@dataclass(frozen=True)
class Consumption:
    """A lot and the quantity of it consumed."""

    lot: str
    quantity: float


@dataclass(frozen=True)
class Report:
    """Quantities reported on an operation, with the lots consumed into the produced lot."""

    good: float
    scrap: float
    rework: float
    first_pass_good: float | None
    reported_by: str
    at: datetime | None
    consumed: list[Consumption]
    produced: str | None


async def create(conn: psycopg.AsyncConnection, order: NewOrder) -> None:
    """The order on its product's newest active routing, with one pending operation per routing step."""
    with refusals(f"order {order.id!r}"):
        async with conn.transaction():
            product = await id_of(conn, "product", order.product, "product")
            cur = await conn.execute(
                "SELECT id FROM routings WHERE product_id = %s AND active ORDER BY version DESC LIMIT 1", (product,))
            row = await cur.fetchone()
            if row is None:
                raise RejectedError("product", f"{order.product!r} has no active routing")
            routing = row[0]
            await conn.execute(
                "INSERT INTO work_orders (id, product_id, routing_id, quantity, due_ts, priority) "
                "VALUES (%s, %s, %s, %s, %s, %s)",
                (order.id, product, routing, order.quantity, order.due, order.priority))
            await conn.execute(
                """INSERT INTO operations (work_order_id, seq, routing_operation_id, name, planned_cycle_s)
                   SELECT %s, seq, id, name, cycle_s FROM routing_operations WHERE routing_id = %s""",
                (order.id, routing))


async def _lock_order(conn: psycopg.AsyncConnection, order: str) -> str:
    cur = await conn.execute("SELECT status FROM work_orders WHERE id = %s FOR UPDATE", (order,))
    row = await cur.fetchone()
    if row is None:
        raise UnknownEntityError("order", order)
    return row[0]  # type: ignore[no-any-return]


async def _lock_operation(conn: psycopg.AsyncConnection, order: str, seq: int) -> tuple[int, str, int | None]:
    """(id, status, routing operation) of an order's operation, locked; 404 naming it when there is none."""
    cur = await conn.execute(
        "SELECT id, status, routing_operation_id FROM operations WHERE work_order_id = %s AND seq = %s FOR UPDATE",
        (order, seq))
    row = await cur.fetchone()
    if row is None:
        raise UnknownEntityError("operation", f"{order}/{seq}")
    return row  # type: ignore[return-value]


async def _predecessor(conn: psycopg.AsyncConnection, order: str, seq: int) -> tuple[int, str] | None:
    cur = await conn.execute(
        "SELECT seq, status FROM operations WHERE work_order_id = %s AND seq < %s ORDER BY seq DESC LIMIT 1",
        (order, seq))
    return await cur.fetchone()  # type: ignore[return-value]


async def release(conn: psycopg.AsyncConnection, order: str) -> None:
    """created -> released; 409 naming the status otherwise."""
    async with conn.transaction():
        status = await _lock_order(conn, order)
        if status != "created":
            raise ConflictError(f"order {order!r} is {status}; only a created order is released", status=status)
        await conn.execute("UPDATE work_orders SET status = 'released', released_at = now() WHERE id = %s", (order,))


async def start(conn: psycopg.AsyncConnection, order: str, seq: int, machine: str, at: datetime | None) -> None:
    """A pending operation starts running on an eligible machine; the order goes in progress."""
    async with conn.transaction():
        status = await _lock_order(conn, order)
        if status not in ("released", "in_progress"):
            raise ConflictError(f"order {order!r} is {status}; operations start once it is released", status=status)
        op, op_status, routing_op = await _lock_operation(conn, order, seq)
        if op_status != "pending":
            raise ConflictError(f"operation {seq} of {order!r} is {op_status}, not pending", status=op_status)
        before = await _predecessor(conn, order, seq)
        if before is not None and before[1] == "pending":
            raise ConflictError(f"operation {before[0]} of {order!r} is pending; it starts before operation {seq}",
                                status="pending")
        machine_id = await id_of(conn, "machine", machine, "machine")
        cur = await conn.execute(
            """SELECT array_agg(m.name ORDER BY m.name) FROM routing_operation_machines rm
               JOIN machines m ON m.id = rm.machine_id WHERE rm.routing_operation_id = %s""", (routing_op,))
        eligible = (await cur.fetchone())[0]  # type: ignore[index]
        # a routing step that names no machine may run on any
        if eligible and machine not in eligible:
            raise RejectedError("machine", f"{machine!r} is not eligible for operation {seq}; "
                                           f"eligible: {', '.join(eligible)}")
        await conn.execute(
            "UPDATE operations SET status = 'running', machine_id = %s, started_at = coalesce(%s, now()) WHERE id = %s",
            (machine_id, at, op))
        await conn.execute("UPDATE work_orders SET status = 'in_progress' WHERE id = %s AND status = 'released'",
                           (order,))


def _check_report(report: Report) -> None:
    if report.first_pass_good is not None and report.first_pass_good > report.good:
        raise InvalidParameterError("first_pass_good",
                                    f"at most good ({report.good:g}), got {report.first_pass_good:g}")
    lots = [c.lot for c in report.consumed]
    if len(set(lots)) != len(lots):
        raise InvalidParameterError("consumed", "each lot once")
    if lots and report.produced is None:
        raise InvalidParameterError("produced", "consumed lots go into a produced lot; name it")


async def _lock_lots(conn: psycopg.AsyncConnection, report: Report) -> dict[str, float]:
    """The quantity of each lot the report names, locked; 422 naming the first unknown one."""
    named = [(f"consumed[{i}].lot", c.lot) for i, c in enumerate(report.consumed)]
    if report.produced is not None:
        named.append(("produced", report.produced))
    cur = await conn.execute("SELECT id, quantity::float8 FROM lots WHERE id = ANY(%s) ORDER BY id FOR UPDATE",
                             ([lot for _, lot in named],))
    have = dict(await cur.fetchall())  # type: ignore[arg-type]
    for field, lot in named:
        if lot not in have:
            raise UnknownEntityError("lot", lot, field)
    return have


async def report(conn: psycopg.AsyncConnection, order: str, seq: int, rep: Report) -> None:
    """The report, its consumption edges and the lots' quantities, all or nothing.

    Consumed lots lose what was consumed (status `consumed` at zero); the produced lot gains the good
    quantity and leaves `planned` for `in_process`. 409 when the operation is not running, a lot holds
    less than asked, or an edge would close a cycle in the genealogy; 422 naming an unknown lot.
    """
    _check_report(rep)
    if rep.produced is not None and rep.produced in {c.lot for c in rep.consumed}:
        raise ConflictError(f"lot {rep.produced!r} cannot be consumed into itself")
    with refusals(f"report on operation {seq} of {order!r}"):
        async with conn.transaction():
            op, status, _ = await _lock_operation(conn, order, seq)
            if status != "running":
                raise ConflictError(f"operation {seq} of {order!r} is {status}; quantities go on a running operation",
                                    status=status)
            have = await _lock_lots(conn, rep)
            for i, c in enumerate(rep.consumed):
                if c.quantity > have[c.lot]:
                    raise RejectedError(f"consumed[{i}].quantity",
                                        f"lot {c.lot!r} holds {have[c.lot]:g}, {c.quantity:g} asked")
            cur = await conn.execute(
                """INSERT INTO operation_reports (operation_id, ts, good, scrap, rework, first_pass_good, reported_by)
                   VALUES (%s, coalesce(%s, now()), %s, %s, %s, %s, %s) RETURNING ts""",
                (op, rep.at, rep.good, rep.scrap, rep.rework, rep.first_pass_good, rep.reported_by))
            ts = (await cur.fetchone())[0]  # type: ignore[index]
            if rep.consumed:
                lots, quantities = [c.lot for c in rep.consumed], [c.quantity for c in rep.consumed]
                # one statement: the cycle check sees every new edge at once
                await conn.execute(
                    """INSERT INTO lot_consumption (produced, consumed, operation_id, quantity, ts)
                       SELECT %s, l, %s, q, %s FROM unnest(%s::text[], %s::numeric[]) AS t (l, q)""",
                    (rep.produced, op, ts, lots, quantities))
                await conn.execute(
                    """UPDATE lots SET quantity = lots.quantity - t.q,
                                       status = CASE WHEN lots.quantity - t.q = 0 THEN 'consumed' ELSE lots.status END
                       FROM unnest(%s::text[], %s::numeric[]) AS t (l, q) WHERE lots.id = t.l""",
                    (lots, quantities))
            if rep.produced is not None:
                await conn.execute(
                    """UPDATE lots SET quantity = quantity + %s,
                                       status = CASE WHEN status = 'planned' THEN 'in_process' ELSE status END
                       WHERE id = %s""", (rep.good, rep.produced))


async def complete(conn: psycopg.AsyncConnection, order: str, seq: int, at: datetime | None) -> None:
    """A running operation completes after its predecessor; the last one completes the order."""
    async with conn.transaction():
        await _lock_order(conn, order)
        op, status, _ = await _lock_operation(conn, order, seq)
        if status != "running":
            raise ConflictError(f"operation {seq} of {order!r} is {status}; only a running operation completes",
                                status=status)
        before = await _predecessor(conn, order, seq)
        if before is not None and before[1] != "completed":
            raise ConflictError(f"operation {before[0]} of {order!r} is {before[1]}; it completes before "
                                f"operation {seq}", status=before[1])
        cur = await conn.execute(
            """UPDATE operations SET status = 'completed', completed_at = coalesce(%s, now())
               WHERE id = %s AND coalesce(%s, now()) >= started_at RETURNING completed_at""", (at, op, at))
        row = await cur.fetchone()
        if row is None:
            raise RejectedError("at", f"operation {seq} of {order!r} started later")
        done = row[0]
        await conn.execute(
            """UPDATE work_orders SET status = 'completed', completed_at = %s
               WHERE id = %s
                 AND NOT EXISTS (SELECT FROM operations WHERE work_order_id = %s AND status <> 'completed')""",
            (done, order, order))
