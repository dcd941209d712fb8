"""The demo's MES master data: products and routings (KPIs' planned cycle times), the shift calendar (their
planned time) and energy meters (their energy per unit)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import psycopg

from plant.line import PRODUCTS

MACHINES = ("press1", "press2", "lathe1", "oven1")
SHIFTS = (("night", 0), ("early", 8), ("late", 16))  # three 8-hour shifts a day, starting at these UTC hours
SETUP_S = 180.0


async def seed(conn: psycopg.AsyncConnection, speed: float = 1.0, days: int = 7) -> None:
    """Machines, items, products and one routing per product, once; cycle and setup times in wall-clock seconds
    at this time scale (the plant runs `speed` times faster), refreshed each start; shifts from yesterday on."""
    async with conn.transaction():
        await conn.execute("INSERT INTO machines (name, line) SELECT unnest(%s::text[]), 'line1' "
                           "ON CONFLICT (name) DO NOTHING", (list(MACHINES),))
        for product, cycle_s in PRODUCTS.items():
            cur = await conn.execute("SELECT 1 FROM products WHERE code = %s", (product,))
            if not await cur.fetchone():
                await _product(conn, product)
            await conn.execute(
                "UPDATE routing_operations ro SET cycle_s = %s, setup_s = %s FROM routings r, products p "
                "WHERE ro.routing_id = r.id AND r.product_id = p.id AND p.code = %s AND r.version = 1",
                (cycle_s / speed, SETUP_S / speed, product))
        start = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=1)
        rows = [(name, start + timedelta(days=d, hours=h), start + timedelta(days=d, hours=h + 8))
                for d in range(days + 1) for name, h in SHIFTS]
        async with conn.cursor() as cur:
            await cur.executemany("INSERT INTO shifts (name, line, start_ts, end_ts) VALUES (%s, '', %s, %s) "
                                  "ON CONFLICT (line, start_ts) DO NOTHING", rows)


async def _product(conn: psycopg.AsyncConnection, product: str) -> None:
    cur = await conn.execute("INSERT INTO items (code, description) VALUES (%s, %s) RETURNING id",
                             (product, f"{product} (finished part)"))
    (item_id,) = await cur.fetchone()  # type: ignore[misc]
    cur = await conn.execute("INSERT INTO products (code, item_id) VALUES (%s, %s) RETURNING id", (product, item_id))
    (product_id,) = await cur.fetchone()  # type: ignore[misc]
    cur = await conn.execute("INSERT INTO routings (product_id, version) VALUES (%s, 1) RETURNING id", (product_id,))
    (routing_id,) = await cur.fetchone()  # type: ignore[misc]
    cur = await conn.execute("INSERT INTO routing_operations (routing_id, seq, name, setup_s, cycle_s) "
                             "VALUES (%s, 10, 'form', %s, %s) RETURNING id", (routing_id, SETUP_S, PRODUCTS[product]))
    (op_id,) = await cur.fetchone()  # type: ignore[misc]
    await conn.execute("INSERT INTO routing_operation_machines (routing_operation_id, machine_id) "
                       "SELECT %s, id FROM machines WHERE name = ANY(%s)", (op_id, list(MACHINES)))


async def seed_energy_meters(dsn: str, meters: dict[str, str], timeout_s: float = 120.0) -> list[str]:
    """Map each machine's cumulative kWh tag to it once the gateway has registered the tag; returns those mapped."""
    from historian.db import connect

    done: list[str] = []
    deadline = asyncio.get_running_loop().time() + timeout_s
    conn = await connect(dsn)
    try:
        while len(done) < len(meters) and asyncio.get_running_loop().time() < deadline:
            for machine, tag in meters.items():
                if machine in done:
                    continue
                await conn.execute(
                    "INSERT INTO energy_meters (tag_id, machine_id) SELECT t.id, m.id FROM tags t, machines m "
                    "WHERE t.name = %s AND m.name = %s ON CONFLICT DO NOTHING", (tag, machine))
                cur = await conn.execute("SELECT 1 FROM energy_meters em JOIN tags t ON t.id = em.tag_id "
                                         "WHERE t.name = %s", (tag,))
                if await cur.fetchone():
                    done.append(machine)
            if len(done) < len(meters):
                await asyncio.sleep(1.0)  # a poll of the tag registry, not a wait for something to have happened
    finally:
        await conn.close()
    return done
