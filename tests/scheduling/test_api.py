"""Schedules over HTTP with the real database: background solve, versions, events, release, dispatch, bad input."""

from __future__ import annotations

import pytest
from litestar.testing import AsyncTestClient

from api.app import create_app
from tests.api_keys import api_config, auth
from tests.support import scalar_of, wait_until

ORIGIN = "2026-12-07T06:00:00Z"


def order(oid, ops, family="A", due=None, release=None):
    o = {"id": oid, "family": family,
         "operations": [{"seq": i + 1, "name": str(i + 1), "machines": m} for i, m in enumerate(ops)]}
    if due:
        o["due"] = due
    if release:
        o["release"] = release
    return o


PROBLEM = {"origin": ORIGIN, "machines": ["m1", "m2"],
           "orders": [order("WO-1", [{"m1": 600, "m2": 900}, {"m2": 300}]),
                      order("WO-2", [{"m1": 300}, {"m1": 600, "m2": 600}], family="B", due="2026-12-07T07:00:00Z"),
                      order("WO-3", [{"m2": 1200}], family="B")],
           "changeovers": [{"from_family": "A", "to_family": "B", "seconds": 120},
                           {"from_family": "B", "to_family": "A", "seconds": 120}],
           "unavailable": [{"machine": "m2", "start": "2026-12-07T06:30:00Z", "end": "2026-12-07T06:40:00Z"}]}




@pytest.fixture
async def client(conn, dsn):
    await conn.execute("INSERT INTO machines (name, line) VALUES ('m1', 'L1'), ('m2', 'L1')")
    async with AsyncTestClient(app=create_app(dsn, api_config(), pool_size=3)) as c:
        c.headers.update(auth("engineer"))
        yield c


async def solved(client, body=None) -> int:
    r = await client.post("/api/v1/schedules", json=body or {"problem": PROBLEM, "time_limit_s": 3, "name": "week 50"})
    assert r.status_code == 202, r.text
    sid = r.json()["id"]

    async def done():
        r = await client.get(f"/api/v1/schedules/{sid}")
        return r.json() if r.json()["state"] in ("done", "failed", "cancelled") else None
    row = await wait_until(done, timeout=60, what="the solve to finish")
    assert row["state"] == "done", row
    return sid


async def test_solve_read_gantt_events_release_dispatch(client, conn):
    sid = await solved(client)
    r = await client.get(f"/api/v1/schedules/{sid}", headers=auth("viewer"))
    body = r.json()
    assert body["version"]["version"] == 1 and body["version"]["status"] == "OPTIMAL"
    assert body["progress"] and len(body["operations"]) == 5
    assert {(o["order_id"], o["seq"]) for o in body["operations"]} == {("WO-1", 1), ("WO-1", 2), ("WO-2", 1), ("WO-2", 2), ("WO-3", 1)}
    svg = await client.get(f"/api/v1/schedules/{sid}/gantt.svg", headers=auth("viewer"))
    assert svg.status_code == 200 and svg.headers["content-type"].startswith("image/svg+xml") and "WO-1" in svg.text

    # a breakdown of m1 from 06:05 for an hour: a new version, the old one unchanged
    before = await scalar_of(conn, f"SELECT array_agg(machine || start_ts::text ORDER BY order_id, seq) FROM schedule_operations WHERE schedule_id = {sid} AND version = 1")
    r = await client.post(f"/api/v1/schedules/{sid}/events", headers=auth("operator"),
                          json={"kind": "machine_down", "at": "2026-12-07T06:05:00Z", "machine": "m1",
                                "until": "2026-12-07T07:05:00Z", "time_limit_s": 2})
    assert r.status_code == 201, r.text
    ev = r.json()
    assert ev["version"] == 2 and "moved_ops" in ev["diff"] and "objective" in ev["right_shift"]
    for o in ev["operations"]:
        if o["machine"] == "m1" and not o["frozen"]:
            assert o["end"] <= "2026-12-07T06:05:00Z" or o["start"] >= "2026-12-07T07:05:00Z"
    after = await scalar_of(conn, f"SELECT array_agg(machine || start_ts::text ORDER BY order_id, seq) FROM schedule_operations WHERE schedule_id = {sid} AND version = 1")
    assert before == after
    with pytest.raises(Exception, match="never changed in place"):
        await conn.execute(f"UPDATE schedule_operations SET machine = 'm2' WHERE schedule_id = {sid}")
    assert await scalar_of(conn, f"SELECT count(*) FROM schedule_plan WHERE schedule_id = {sid} AND latest") == 5

    # a rush order, then a cancellation
    r = await client.post(f"/api/v1/schedules/{sid}/events", headers=auth("operator"),
                          json={"kind": "rush_order", "at": "2026-12-07T06:10:00Z", "time_limit_s": 1,
                                "new_order": order("WO-9", [{"m2": 300}], priority=None) if False else order("WO-9", [{"m2": 300}])})
    assert r.status_code == 201, r.text and r.json()["version"] == 3
    assert any(o["order"] == "WO-9" for o in r.json()["operations"])
    r = await client.post(f"/api/v1/schedules/{sid}/events", headers=auth("operator"),
                          json={"kind": "cancel", "at": "2026-12-07T06:10:00Z", "order": "WO-3", "time_limit_s": 1})
    assert r.status_code == 201, r.text
    assert not any(o["order"] == "WO-3" and not o["frozen"] for o in r.json()["operations"])

    # release: no MES orders with these ids yet -> nothing updated, said so
    r = await client.post(f"/api/v1/schedules/{sid}/release")
    assert r.status_code == 200 and r.json()["operations_updated"] == 0
    r = await client.get("/api/v1/machines/m2/dispatch?at=2026-12-07T06:00:00Z", headers=auth("viewer"))
    assert r.status_code == 200 and r.json() and all(x["start_ts"] <= y["start_ts"] for x, y in zip(r.json(), r.json()[1:]))


@pytest.mark.parametrize("change, where", [
    (lambda p: p["orders"][0]["operations"][0].update(machines={}), "order WO-1 operation 1"),
    (lambda p: p["orders"][0]["operations"][0].update(after=[2]), "order WO-1 operation"),
    (lambda p: p["orders"][1].update(release="2026-12-07T08:00:00Z"), "order WO-2"),
    (lambda p: p.update(available=[{"machine": "m1", "start": ORIGIN, "end": "2026-12-07T06:01:00Z"},
                                   {"machine": "m2", "start": ORIGIN, "end": "2026-12-07T06:01:00Z"}]),
     "order WO-1 operation 1"),
])
async def test_bad_input_is_422_naming_it_and_stores_nothing(client, conn, change, where):
    import copy
    problem = copy.deepcopy(PROBLEM)
    change(problem)
    r = await client.post("/api/v1/schedules", json={"problem": problem, "time_limit_s": 1})
    assert r.status_code == 422, r.text
    assert r.json()["extra"]["where"].startswith(where), r.json()
    assert await scalar_of(conn, "SELECT count(*) FROM schedules") == 0


async def test_roles(client):
    r = await client.post("/api/v1/schedules", json={"problem": PROBLEM}, headers=auth("operator"))
    assert r.status_code == 403
    r = await client.get("/api/v1/schedules/1", headers={"Authorization": "Bearer nope"})
    assert r.status_code == 401


async def test_from_released_orders_and_release_into_mes(client, conn):
    from tests.api.test_mes_orders import ORDER, master_data
    await conn.execute("INSERT INTO machines (name, line) VALUES ('m3', 'L1')")
    await master_data(client)
    assert (await client.post("/api/v1/orders", json=ORDER)).status_code == 201
    r = await client.post("/api/v1/schedules", json={"from_released_orders": True, "origin": ORIGIN})
    assert r.status_code == 422 and r.json()["extra"]["where"] == "from_released_orders"  # nothing released yet
    assert (await client.post("/api/v1/orders/WO-1/release")).status_code == 200
    sid = await solved(client, {"from_released_orders": True, "origin": ORIGIN, "time_limit_s": 2})
    ops = (await client.get(f"/api/v1/schedules/{sid}")).json()["operations"]
    # press: 300 s setup + 2 s x 50 on m1 or m2; weld: 5 s x 50 on m3, after the press
    assert [(o["seq"], o["machine"] in ("m1", "m2") if o["seq"] == 10 else o["machine"]) for o in ops] == [(10, True), (20, "m3")]
    r = await client.post(f"/api/v1/schedules/{sid}/release")
    assert r.json()["operations_updated"] == 2
    planned = await scalar_of(conn, "SELECT array_agg(planned_end - planned_start ORDER BY seq)::text FROM operations WHERE work_order_id = 'WO-1'")
    assert planned == '{00:06:40,00:04:10}'
    r = await client.get("/api/v1/machines/m3/dispatch?at=2026-12-07T06:00:00Z", headers=auth("viewer"))
    assert [(x["order_id"], x["seq"]) for x in r.json()] == [("WO-1", 20)]


async def test_changeover_matrix_from_the_mes(conn):
    from datetime import datetime, timezone

    import psycopg

    from scheduling import store
    await conn.execute("INSERT INTO products (code) VALUES ('P1'), ('P2')")
    await conn.execute("INSERT INTO changeovers (from_product_id, to_product_id, seconds) "
                       "SELECT a.id, b.id, 90 FROM products a, products b WHERE a.code = 'P1' AND b.code = 'P2'")
    raw = await store.problem_from_mes(conn, datetime(2026, 12, 7, 6, tzinfo=timezone.utc))
    assert raw["changeovers"] == [{"from_family": "P1", "to_family": "P2", "seconds": 90.0}]
    with pytest.raises(psycopg.errors.CheckViolation):  # a product never changes over to itself
        await conn.execute("INSERT INTO changeovers (from_product_id, to_product_id, seconds) "
                           "SELECT id, id, 5 FROM products WHERE code = 'P1'")


async def test_scheduling_table_gives_the_defaults_a_request_leaves_out(conn, dsn):
    from scheduling.config import SchedulingConfig

    await conn.execute("INSERT INTO machines (name, line) VALUES ('m1', 'L1'), ('m2', 'L1')")
    table = SchedulingConfig(time_limit_s=1.5, workers=1, objective="tardiness,makespan", lexicographic_tolerance=0.1)
    async with AsyncTestClient(app=create_app(dsn, api_config(), pool_size=3, scheduling=table)) as c:
        c.headers.update(auth("engineer"))
        sid = await solved(c, {"problem": PROBLEM})  # no objective, time limit or workers: the table's
        body = (await c.get(f"/api/v1/schedules/{sid}")).json()
        assert body["objective"] == "tardiness,makespan"
        cause = body["version"]["cause"]
        assert cause["kind"] == "initial" and cause["objective"] == "tardiness,makespan"
        assert set(cause["values"]) == {"tardiness", "makespan"}
        assert body["version"]["objective"] == cause["values"]["tardiness"] and body["version"]["bound"] is None
        assert body["version"]["solve_s"] <= 1.5 + 0.5
        stored = await scalar_of(conn, f"SELECT request - 'problem' FROM schedules WHERE id = {sid}")
        assert {k: stored[k] for k in ("objective", "time_limit_s", "workers")} == {
            "objective": "tardiness,makespan", "time_limit_s": 1.5, "workers": 1}
        # the column holds the first objective: it only knows the three kinds
        assert await scalar_of(conn, f"SELECT objective FROM schedules WHERE id = {sid}") == "tardiness"

        # an event without a time limit: the table's, kept in the version's cause
        r = await c.post(f"/api/v1/schedules/{sid}/events", headers=auth("operator"),
                         json={"kind": "machine_down", "at": "2026-12-07T06:05:00Z", "machine": "m1",
                               "until": "2026-12-07T07:05:00Z"})
        assert r.status_code == 201, r.text
        cause = (await c.get(f"/api/v1/schedules/{sid}?version=2")).json()["version"]["cause"]
        assert cause["time_limit_s"] == 1.5 and cause["workers"] == 1

        # a request's own values win, and stay bounded
        sid = await solved(c, {"problem": PROBLEM, "objective": "makespan", "time_limit_s": 1, "workers": 2})
        stored = await scalar_of(conn, f"SELECT request - 'problem' FROM schedules WHERE id = {sid}")
        assert (stored["objective"], stored["time_limit_s"], stored["workers"]) == ("makespan", 1, 2)
        assert (await c.get(f"/api/v1/schedules/{sid}")).json()["version"]["cause"]["objective"] == "makespan"
        r = await c.post("/api/v1/schedules", json={"problem": PROBLEM, "time_limit_s": 601})
        assert r.status_code == 400
        r = await c.post("/api/v1/schedules", json={"problem": PROBLEM, "objective": "fastest"})
        assert r.status_code == 400
