"""Lots and genealogy: traces up and down a hand-built graph, the acyclic rule in SQL, and a 100k-lot graph."""

from __future__ import annotations

import logging
import time

import psycopg
import pytest
from litestar.testing import AsyncTestClient

from analytics.genealogy_gen import build_graph
from api.app import create_app
from tests.historian.helpers import scalar
from tests.api_keys import api_config, auth

log = logging.getLogger(__name__)

# consumed -> produced. Raw R1..R3, intermediates I1, I2, finished F1, F2.
# R2 reaches F1 twice (through I1 and I2: a diamond); R3 goes into I2 and, as packaging, straight into F2.
EDGES = [("R1", "I1"), ("R2", "I1"), ("R2", "I2"), ("R3", "I2"), ("I1", "F1"), ("I2", "F1"), ("I2", "F2"),
         ("R3", "F2")]


@pytest.fixture
async def client(conn, dsn):
    async with AsyncTestClient(app=create_app(dsn, api_config(), pool_size=2)) as c:
        c.headers.update(auth("engineer"))
        for item in ({"code": "resin", "unit": "kg"}, {"code": "granulate", "unit": "kg"}, {"code": "cup"}):
            assert (await c.post("/api/v1/items", json=item)).status_code == 201
        for lot, item in (("R1", "resin"), ("R2", "resin"), ("R3", "resin"), ("I1", "granulate"),
                          ("I2", "granulate"), ("F1", "cup"), ("F2", "cup")):
            r = await c.post("/api/v1/lots", json={"id": lot, "item": item, "quantity": 10})
            assert r.status_code == 201, r.text
        # one statement: the cycle check looks at all eight edges at once
        await conn.execute("INSERT INTO lot_consumption (consumed, produced, quantity) "
                           "SELECT c, p, 1 FROM unnest(%s::text[], %s::text[]) AS e (c, p)",
                           ([c for c, _ in EDGES], [p for _, p in EDGES]))
        yield c


async def trace(client: AsyncTestClient, lot: str, direction: str) -> dict[str, int]:
    r = await client.get(f"/api/v1/lots/{lot}/trace", params={"direction": direction})
    assert r.status_code == 200, r.text
    lots = r.json()["lots"]
    assert len(lots) == len({t["lot"] for t in lots}), "each lot once"
    return {t["lot"]: t["depth"] for t in lots}


@pytest.mark.parametrize("lot, direction, expected", [
    # R2 -> I1, I2 (1 hop); I1 -> F1 and I2 -> F1, F2 (2 hops): F1 once though reached twice
    ("R2", "up", {"I1": 1, "I2": 1, "F1": 2, "F2": 2}),
    # R3 -> I2 and F2 directly (1 hop); I2 -> F1 (2 hops); F2 also at 2 hops via I2, its nearest is 1
    ("R3", "up", {"I2": 1, "F2": 1, "F1": 2}),
    ("R1", "up", {"I1": 1, "F1": 2}),
    # F1 <- I1, I2 (1 hop) <- R1, R2 (via I1 and I2, once), R3 (via I2) (2 hops)
    ("F1", "down", {"I1": 1, "I2": 1, "R1": 2, "R2": 2, "R3": 2}),
    # F2 <- I2, R3 (1 hop); I2 <- R2, R3: R3 already at 1, so only R2 at 2 hops
    ("F2", "down", {"I2": 1, "R3": 1, "R2": 2}),
    ("F1", "up", {}),
    ("R1", "down", {}),
])
async def test_trace_hand_built_graph(client, lot, direction, expected):
    assert await trace(client, lot, direction) == expected


async def test_trace_carries_item_and_a_shortest_path(client):
    r = await client.get("/api/v1/lots/R3/trace", params={"direction": "up"})
    by_lot = {t["lot"]: t for t in r.json()["lots"]}
    assert by_lot["F2"]["path"] == ["R3", "F2"]  # the packaging edge, not R3 -> I2 -> F2
    assert by_lot["F1"]["path"] == ["R3", "I2", "F1"]
    assert (by_lot["I2"]["item"], by_lot["I2"]["unit"], by_lot["I2"]["quantity"]) == ("granulate", "kg", 10.0)
    assert [t["lot"] for t in r.json()["lots"]] == ["F2", "I2", "F1"]  # nearest first, then by id


async def test_trace_in_sql_and_the_genealogy_view(client, conn):
    cur = await conn.execute("SELECT lot, depth, item FROM lot_trace('F2', 'down')")
    assert await cur.fetchall() == [("I2", 1, "granulate"), ("R3", 1, "resin"), ("R2", 2, "resin")]
    cur = await conn.execute("SELECT lot FROM lot_trace('R2', 'up', 1)")
    assert await cur.fetchall() == [("I1",), ("I2",)]  # depth guard: one hop
    cur = await conn.execute(
        "SELECT consumed_item, produced_item FROM lot_genealogy WHERE consumed = 'R3' ORDER BY produced")
    assert await cur.fetchall() == [("resin", "cup"), ("resin", "granulate")]
    with pytest.raises(psycopg.errors.InvalidParameterValue):
        await conn.execute("SELECT * FROM lot_trace('F2', 'sideways')")
    with pytest.raises(psycopg.errors.NoDataFound):
        await conn.execute("SELECT * FROM lot_trace('X9', 'up')")


@pytest.mark.parametrize("sql", [
    # F1 is made from R1: R1 cannot be made from F1
    "INSERT INTO lot_consumption (consumed, produced, quantity) VALUES ('F1', 'R1', 1)",
    # two new edges closing a loop between themselves, in one statement
    "INSERT INTO lot_consumption (consumed, produced, quantity) VALUES ('F1', 'F2', 1), ('F2', 'F1', 1)",
    # re-pointing an edge: I2 -> F2 becomes F2 -> R3, and R3 -> F2 exists
    "UPDATE lot_consumption SET consumed = 'F2', produced = 'R3' WHERE consumed = 'I2' AND produced = 'F2'",
])
async def test_the_database_refuses_a_cycle(client, conn, sql):
    with pytest.raises(psycopg.errors.IntegrityError) as e:
        await conn.execute(sql)
    assert e.value.sqlstate == "23S01" and "cycle" in str(e.value)
    assert await scalar(conn, "SELECT count(*) FROM lot_consumption") == len(EDGES)
    assert await trace(client, "F2", "down") == {"I2": 1, "R3": 1, "R2": 2}


async def test_lot_reads_and_errors(client):
    lot = (await client.get("/api/v1/lots/I2")).json()
    assert (lot["item"], lot["unit"], lot["status"]) == ("granulate", "kg", "available")  # unit from the item
    assert [i["lot"] for i in lot["inputs"]] == ["R2", "R3"] and [u["lot"] for u in lot["used_in"]] == ["F1", "F2"]
    r = await client.get("/api/v1/lots/R1/trace", params={"direction": "sideways"})
    assert r.status_code == 400 and r.json()["parameter"] == "direction"
    r = await client.get("/api/v1/lots/R1/trace")
    assert r.status_code == 400 and "direction" in r.json()["detail"]
    r = await client.get("/api/v1/lots/X9/trace", params={"direction": "up"})
    assert r.status_code == 404 and (r.json()["entity"], r.json()["key"]) == ("lot", "X9")
    assert (await client.get("/api/v1/lots/X9")).status_code == 404
    r = await client.post("/api/v1/lots", json={"id": "R1", "item": "resin", "quantity": 1})
    assert r.status_code == 409 and "R1" in r.json()["detail"]
    r = await client.post("/api/v1/lots", json={"id": "R9", "item": "sand", "quantity": 1})
    assert r.status_code == 422 and r.json()["field"] == "item"
    r = await client.post("/api/v1/lots", json={"id": "R9", "item": "resin", "quantity": 1, "satus": "planned"})
    assert r.status_code == 400 and "satus" in r.text
    r = await client.post("/api/v1/lots", json={"id": "R9", "item": "resin", "quantity": 1, "status": "lost"})
    assert r.status_code == 400 and "status" in r.text


async def test_generated_graph_traces_as_the_generator_says(conn):
    graph = await build_graph(conn, 2_000, seed=3)
    assert (graph.raw, graph.intermediate, graph.finished) == (1000, 700, 300)  # 50 %, 35 %, the rest
    assert await scalar(conn, "SELECT count(*) FROM lots") == 2_000
    assert await scalar(conn, "SELECT count(*) FROM lot_consumption") == len(graph.consumed)
    for lot, direction in ((graph.lots[-1], "down"), (graph.lots[0], "up"), (graph.lots[graph.raw], "up"),
                           (graph.lots[graph.raw], "down"), (graph.lots[graph.raw // 2], "up")):
        cur = await conn.execute("SELECT lot FROM lot_trace(%s, %s)", (lot, direction))
        assert {r[0] for r in await cur.fetchall()} == graph.reached(lot, direction), (lot, direction)


@pytest.mark.parametrize("backend", ["postgresql"])  # lots are plain tables on both: one build of 100k is enough
async def test_trace_on_a_100k_lot_graph(conn, backend):
    graph = await build_graph(conn, 100_000, seed=1)
    # lots that took part: the first edge's raw input, the last edge's finished output
    raw, finished = graph.lots[int(graph.consumed[0])], graph.lots[int(graph.produced[-1])]
    assert raw.startswith("GEN-R") and finished.startswith("GEN-F")
    for lot, direction in ((finished, "down"), (raw, "up")):
        expected = graph.reached(lot, direction)
        assert expected
        start = time.perf_counter()
        cur = await conn.execute("SELECT lot FROM lot_trace(%s, %s)", (lot, direction))
        found = {r[0] for r in await cur.fetchall()}
        log.info("trace %s of %s on 100k lots: %d lots in %.1f ms", direction, lot, len(found),
                 1000 * (time.perf_counter() - start))
        assert found == expected
