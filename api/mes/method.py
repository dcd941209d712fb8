"""/api/v1/products and /api/v1/routings: what is made, and the operations and machines that make it."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import msgspec
import psycopg
from litestar import Controller, get, post
from litestar.di import NamedDependency
from litestar.params import JSONBody, QueryParameter

from api.auth import requires
from api.mes.errors import refusals
from api.mes.lookup import id_of, optional_id
from api.mes.types import Code, Positive, Quantity, Text, Version
from historian.errors import InvalidParameterError


class ProductIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """A product, optionally the item its finished lots are."""

    code: Code
    item: Code | None = None
    description: Text = ""


class ProductOut(msgspec.Struct):
    """A product as registered."""

    code: str
    item: str | None
    description: str


class RoutingOperationIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """One step of a routing: its planned times and the machines that may run it."""

    seq: Version
    name: str
    cycle_s: Positive
    """ISO 22400 PRI: planned runtime per item"""
    setup_s: Quantity = 0.0
    machines: list[str] = []


class RoutingIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """A routing version of a product; an active one deactivates the product's other versions."""

    product: Code
    operations: list[RoutingOperationIn]
    version: Version | None = None
    """default: one past the product's newest"""
    active: bool = True


class RoutingOperationOut(msgspec.Struct):
    """A routing step with its eligible machines by name."""

    seq: int
    name: str
    setup_s: float
    cycle_s: float
    machines: list[str]


class RoutingOut(msgspec.Struct):
    """A routing version and its steps in order."""

    id: int
    product: str
    version: int
    active: bool
    created_at: datetime
    operations: list[RoutingOperationOut]


class ProductController(Controller):
    """Products."""

    path = "/products"
    tags = ["mes: method"]
    guards = [requires("viewer")]

    @post("/", summary="Register a product", guards=[requires("engineer")])
    async def create_product(self, conn: NamedDependency[psycopg.AsyncConnection],
                             data: JSONBody[ProductIn]) -> ProductOut:
        """A new product; 422 naming `item` when it is unknown, 409 when the code is taken."""
        with refusals(f"product {data.code!r}"):
            item = await optional_id(conn, "item", data.item, "item")
            await conn.execute("INSERT INTO products (code, item_id, description) VALUES (%s, %s, %s)",
                               (data.code, item, data.description))
        return ProductOut(data.code, data.item, data.description)

    @get("/", summary="List products")
    async def list_products(self, conn: NamedDependency[psycopg.AsyncConnection]) -> list[ProductOut]:
        """Every product, by code."""
        cur = await conn.execute(
            "SELECT p.code, i.code, p.description FROM products p LEFT JOIN items i ON i.id = p.item_id ORDER BY p.code"
        )
        return [ProductOut(*r) for r in await cur.fetchall()]


_ROUTINGS = """
    SELECT r.id, p.code, r.version, r.active, r.created_at,
           coalesce(jsonb_agg(jsonb_build_object(
               'seq', o.seq, 'name', o.name, 'setup_s', o.setup_s, 'cycle_s', o.cycle_s,
               'machines', coalesce((SELECT jsonb_agg(m.name ORDER BY m.name)
                                     FROM routing_operation_machines rm JOIN machines m ON m.id = rm.machine_id
                                     WHERE rm.routing_operation_id = o.id), '[]'))
               ORDER BY o.seq) FILTER (WHERE o.id IS NOT NULL), '[]')
    FROM routings r JOIN products p ON p.id = r.product_id LEFT JOIN routing_operations o ON o.routing_id = r.id
    WHERE (%(product)s::text IS NULL OR p.code = %(product)s) AND (%(id)s::int IS NULL OR r.id = %(id)s)
    GROUP BY r.id, p.code ORDER BY p.code, r.version"""


async def read_routings(conn: psycopg.AsyncConnection, product: str | None = None,
                        routing_id: int | None = None) -> list[RoutingOut]:
    """Routings with their steps and machines, of one product or all."""
    cur = await conn.execute(_ROUTINGS, {"product": product, "id": routing_id})
    return [RoutingOut(*r[:5], msgspec.convert(r[5], list[RoutingOperationOut])) for r in await cur.fetchall()]


def _check_operations(operations: list[RoutingOperationIn]) -> None:
    if not operations:
        raise InvalidParameterError("operations", "a routing needs at least one operation")
    seqs = [o.seq for o in operations]
    if len(set(seqs)) != len(seqs):
        raise InvalidParameterError("operations", f"each seq once, got {sorted(seqs)}")


class RoutingController(Controller):
    """Routings: a product's operations, their times and eligible machines, in versions."""

    path = "/routings"
    tags = ["mes: method"]
    guards = [requires("viewer")]

    @post("/", summary="Create a routing version", guards=[requires("engineer")])
    async def create_routing(self, conn: NamedDependency[psycopg.AsyncConnection],
                             data: JSONBody[RoutingIn]) -> RoutingOut:
        """The routing, its operations and eligible machines in one transaction; unknown machines are 422."""
        _check_operations(data.operations)
        with refusals(f"routing of {data.product!r}"):
            async with conn.transaction():
                product = await id_of(conn, "product", data.product, "product")
                machines: dict[str, int] = {}
                for i, op in enumerate(data.operations):
                    for j, name in enumerate(op.machines):
                        machines[name] = await id_of(conn, "machine", name, f"operations[{i}].machines[{j}]")
                if data.active:
                    await conn.execute("UPDATE routings SET active = false WHERE product_id = %s AND active",
                                       (product,))
                cur = await conn.execute(
                    """INSERT INTO routings (product_id, version, active)
                       VALUES (%s, coalesce(%s, (SELECT coalesce(max(version), 0) + 1 FROM routings
                                                 WHERE product_id = %s)), %s) RETURNING id""",
                    (product, data.version, product, data.active),
                )
                routing = (await cur.fetchone())[0]  # type: ignore[index]
                for op in data.operations:
                    cur = await conn.execute(
                        """INSERT INTO routing_operations (routing_id, seq, name, setup_s, cycle_s)
                           VALUES (%s, %s, %s, %s, %s) RETURNING id""",
                        (routing, op.seq, op.name, op.setup_s, op.cycle_s),
                    )
                    op_id = (await cur.fetchone())[0]  # type: ignore[index]
                    await conn.execute(
                        """INSERT INTO routing_operation_machines (routing_operation_id, machine_id)
                           SELECT %s, unnest(%s::int[]) ON CONFLICT DO NOTHING""",
                        (op_id, sorted({machines[n] for n in op.machines})),
                    )
        (out,) = await read_routings(conn, routing_id=routing)
        return out

    @get("/", summary="List routings")
    async def list_routings(
        self,
        conn: NamedDependency[psycopg.AsyncConnection],
        product: Annotated[str | None, QueryParameter(description="only this product's")] = None,
    ) -> list[RoutingOut]:
        """Every routing version with its operations and eligible machines."""
        return await read_routings(conn, product)
