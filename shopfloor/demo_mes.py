"""The demo's MES master data: the plant's products and their routings, so KPIs have planned cycle times."""

from __future__ import annotations

import psycopg

from plant.line import PRODUCTS

MACHINES = ("press1", "press2", "lathe1")


async def seed(conn: psycopg.AsyncConnection) -> None:
    """Items, products and one routing per product (cycle time = the plant's nominal), once."""
    async with conn.transaction():
        await conn.execute("INSERT INTO machines (name) SELECT unnest(%s::text[]) ON CONFLICT (name) DO NOTHING",
                           (list(MACHINES),))
        for product, cycle_s in PRODUCTS.items():
            cur = await conn.execute("SELECT 1 FROM products WHERE code = %s", (product,))
            if await cur.fetchone():
                continue
            cur = await conn.execute("INSERT INTO items (code, description) VALUES (%s, %s) RETURNING id",
                                     (product, f"{product} (finished part)"))
            (item_id,) = await cur.fetchone()  # type: ignore[misc]
            cur = await conn.execute("INSERT INTO products (code, item_id) VALUES (%s, %s) RETURNING id",
                                     (product, item_id))
            (product_id,) = await cur.fetchone()  # type: ignore[misc]
            cur = await conn.execute("INSERT INTO routings (product_id, version) VALUES (%s, 1) RETURNING id",
                                     (product_id,))
            (routing_id,) = await cur.fetchone()  # type: ignore[misc]
            cur = await conn.execute(
                "INSERT INTO routing_operations (routing_id, seq, name, setup_s, cycle_s) "
                "VALUES (%s, 10, 'form', 180, %s) RETURNING id", (routing_id, cycle_s))
            (op_id,) = await cur.fetchone()  # type: ignore[misc]
            await conn.execute(
                "INSERT INTO routing_operation_machines (routing_operation_id, machine_id) "
                "SELECT %s, id FROM machines WHERE name = ANY(%s)", (op_id, list(MACHINES)))
