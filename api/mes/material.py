"""/api/v1/items and /api/v1/lots: material master data, lots and their genealogy traced both ways."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import msgspec
import psycopg
from litestar import Controller, get, post
from litestar.params import FromPath, JSONBody, QueryParameter
from litestar.di import NamedDependency

from api.auth import requires
from api.mes.errors import UnknownEntityError, refusals
from api.mes.lookup import id_of
from api.mes.types import Code, Quantity, Text
from historian.errors import InvalidParameterError

LotStatus = Literal["planned", "available", "in_process", "consumed", "finished", "quarantined", "scrapped"]


class ItemIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """A material: raw, intermediate or finished."""

    code: Code
    description: Text = ""
    unit: Code = "pcs"


class ItemOut(msgspec.Struct):
    """A material as registered."""

    code: str
    description: str
    unit: str


class LotIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """A lot or batch of an item; its unit defaults to the item's."""

    id: Code
    item: Code
    quantity: Quantity
    unit: Code | None = None
    status: LotStatus = "available"


class LotLink(msgspec.Struct):
    """One genealogy edge seen from a lot: the other lot, how much, on which order operation."""

    lot: str
    quantity: float
    work_order: str | None
    operation_seq: int | None


class LotOut(msgspec.Struct):
    """A lot with its direct inputs (what it consumed) and uses (what it went into)."""

    id: str
    item: str
    quantity: float
    unit: str
    status: str
    created_at: datetime
    inputs: list[LotLink]
    used_in: list[LotLink]


class TracedLot(msgspec.Struct):
    """A lot reached by a trace, at its shortest distance, with one shortest path from the traced lot."""

    lot: str
    depth: int
    item: str
    quantity: float
    unit: str
    status: str
    path: list[str]


class TraceOut(msgspec.Struct):
    """Every lot a lot went into (up) or contains (down)."""

    lot: str
    direction: str
    lots: list[TracedLot]


class ItemController(Controller):
    """Materials."""

    path = "/items"
    tags = ["mes: material"]
    guards = [requires("viewer")]

    @post("/", summary="Register an item", guards=[requires("engineer")])
    async def create_item(self, conn: NamedDependency[psycopg.AsyncConnection], data: JSONBody[ItemIn]) -> ItemOut:
        """A new material; 409 when its code is taken."""
        with refusals(f"item {data.code!r}"):
            await conn.execute("INSERT INTO items (code, description, unit) VALUES (%s, %s, %s)",
                               (data.code, data.description, data.unit))
        return ItemOut(data.code, data.description, data.unit)

    @get("/", summary="List items")
    async def list_items(self, conn: NamedDependency[psycopg.AsyncConnection]) -> list[ItemOut]:
        """Every material, by code."""
        cur = await conn.execute("SELECT code, description, unit FROM items ORDER BY code")
        return [ItemOut(*r) for r in await cur.fetchall()]


_LOT = """SELECT l.id, i.code, l.quantity::float8, l.unit, l.status, l.created_at
          FROM lots l JOIN items i ON i.id = l.item_id WHERE l.id = %s"""
_LINKS = """SELECT g.{other}, sum(g.quantity)::float8, g.work_order, g.operation_seq
            FROM lot_genealogy g WHERE g.{this} = %s
            GROUP BY g.{other}, g.work_order, g.operation_seq ORDER BY g.{other}, g.work_order, g.operation_seq"""


async def read_lot(conn: psycopg.AsyncConnection, lot: str) -> LotOut:
    """A lot with its direct genealogy; 404 when unknown."""
    cur = await conn.execute(_LOT, (lot,))
    row = await cur.fetchone()
    if row is None:
        raise UnknownEntityError("lot", lot)
    cur = await conn.execute(_LINKS.format(this="produced", other="consumed"), (lot,))  # type: ignore[arg-type]
    inputs = [LotLink(*r) for r in await cur.fetchall()]
    cur = await conn.execute(_LINKS.format(this="consumed", other="produced"), (lot,))  # type: ignore[arg-type]
    used_in = [LotLink(*r) for r in await cur.fetchall()]
    return LotOut(*row, inputs=inputs, used_in=used_in)


class LotController(Controller):
    """Lots and batches, and the genealogy between them."""

    path = "/lots"
    tags = ["mes: material"]
    guards = [requires("viewer")]

    @post("/", summary="Create a lot", guards=[requires("operator")])
    async def create_lot(self, conn: NamedDependency[psycopg.AsyncConnection], data: JSONBody[LotIn]) -> LotOut:
        """A new lot of a known item (422 naming `item` otherwise); 409 when its id is taken."""
        with refusals(f"lot {data.id!r}"):
            async with conn.transaction():
                item = await id_of(conn, "item", data.item, "item")
                await conn.execute(
                    """INSERT INTO lots (id, item_id, quantity, unit, status)
                       VALUES (%s, %s, %s, coalesce(%s, (SELECT unit FROM items WHERE id = %s)), %s)""",
                    (data.id, item, data.quantity, data.unit, item, data.status),
                )
        return await read_lot(conn, data.id)

    @get("/{lot_id:str}", summary="One lot")
    async def get_lot(self, conn: NamedDependency[psycopg.AsyncConnection], lot_id: FromPath[str]) -> LotOut:
        """A lot, what it consumed and what it went into."""
        return await read_lot(conn, lot_id)

    @get("/{lot_id:str}/trace", summary="Trace a lot up or down its genealogy")
    async def trace(
        self,
        conn: NamedDependency[psycopg.AsyncConnection],
        lot_id: FromPath[str],
        direction: Annotated[str, QueryParameter(description="up: the lots it went into, toward finished goods; "
                                                             "down: the lots it contains, toward raw material")],
    ) -> TraceOut:
        """Every lot reached, each once at its shortest distance, nearest first (lot_trace() in SQL)."""
        if direction not in ("up", "down"):
            raise InvalidParameterError("direction", f"must be up or down, got {direction!r}")
        cur = await conn.execute("SELECT EXISTS (SELECT FROM lots WHERE id = %s)", (lot_id,))
        if not (await cur.fetchone())[0]:  # type: ignore[index]
            raise UnknownEntityError("lot", lot_id)
        cur = await conn.execute(
            "SELECT lot, depth, item, quantity::float8, unit, status, path FROM lot_trace(%s, %s)", (lot_id, direction)
        )
        return TraceOut(lot_id, direction, [TracedLot(*r) for r in await cur.fetchall()])
