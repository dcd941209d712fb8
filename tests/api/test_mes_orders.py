"""Work orders over HTTP: the lifecycle, refused transitions, and reports that write all or nothing."""

from __future__ import annotations

import pytest
from litestar.testing import AsyncTestClient

from api.app import create_app
from tests.historian.helpers import scalar
from tests.api_keys import api_config, auth

ORDER = {"id": "WO-1", "product": "bracket", "quantity": 50, "due": "2026-12-01T14:00:00Z", "priority": 2}


async def master_data(client: AsyncTestClient) -> None:
    """Steel lots pressed (op 10 on m1 or m2) into brackets, then welded (op 20 on m3)."""
    for item in ({"code": "steel", "unit": "kg"}, {"code": "bracket"}):
        assert (await client.post("/api/v1/items", json=item)).status_code == 201
    assert (await client.post("/api/v1/products", json={"code": "bracket", "item": "bracket"})).status_code == 201
    routing = {"product": "bracket", "operations": [
        {"seq": 10, "name": "press", "cycle_s": 2.0, "setup_s": 300, "machines": ["m1", "m2"]},
        {"seq": 20, "name": "weld", "cycle_s": 5.0, "machines": ["m3"]}]}
    r = await client.post("/api/v1/routings", json=routing)
    assert r.status_code == 201, r.text
    for lot in ({"id": "S-1", "item": "steel", "quantity": 100}, {"id": "S-2", "item": "steel", "quantity": 50},
                {"id": "B-1", "item": "bracket", "quantity": 0, "status": "planned"}):
        assert (await client.post("/api/v1/lots", json=lot)).status_code == 201


@pytest.fixture
async def client(conn, dsn):
    await conn.execute("INSERT INTO machines (name, line) VALUES ('m1', 'L1'), ('m2', 'L1'), ('m3', 'L1')")
    async with AsyncTestClient(app=create_app(dsn, api_config(), pool_size=2)) as c:
        c.headers.update(auth("engineer"))
        await master_data(c)
        yield c


async def released(client: AsyncTestClient) -> None:
    assert (await client.post("/api/v1/orders", json=ORDER)).status_code == 201
    assert (await client.post("/api/v1/orders/WO-1/release")).status_code == 200


async def written(conn) -> tuple[object, ...]:
    """Reports, genealogy edges and the steel lots' quantities: what a refused report must leave alone."""
    return (await scalar(conn, "SELECT count(*) FROM operation_reports"),
            await scalar(conn, "SELECT count(*) FROM lot_consumption"),
            await scalar(conn, "SELECT array_agg(quantity::float8 ORDER BY id) FROM lots"))


async def test_full_lifecycle(client, conn):
    r = await client.post("/api/v1/orders", json=ORDER)
    assert r.status_code == 201, r.text
    order = r.json()
    assert (order["status"], order["routing_version"], order["quantity"]) == ("created", 1, 50.0)
    assert [(o["seq"], o["name"], o["status"], o["planned_cycle_s"]) for o in order["operations"]] == [
        (10, "press", "pending", 2.0), (20, "weld", "pending", 5.0)]

    assert (await client.post("/api/v1/orders/WO-1/release")).json()["status"] == "released"
    r = await client.post("/api/v1/orders/WO-1/operations/10/start", json={"machine": "m1"})
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "in_progress" and r.json()["operations"][0]["machine"] == "m1"

    first = {"good": 40, "scrap": 2, "rework": 1, "first_pass_good": 38, "reported_by": "ann",
             "consumed": [{"lot": "S-1", "quantity": 30}, {"lot": "S-2", "quantity": 10}], "produced": "B-1"}
    assert (await client.post("/api/v1/orders/WO-1/operations/10/report", json=first)).status_code == 200
    r = await client.post("/api/v1/orders/WO-1/operations/10/report", json={"good": 10, "produced": "B-1"})
    assert r.status_code == 200, r.text
    # op 20 may start while op 10 still runs: its predecessor has started
    assert (await client.post("/api/v1/orders/WO-1/operations/20/start", json={"machine": "m3"})).status_code == 200
    r = await client.post("/api/v1/orders/WO-1/operations/20/report", json={"good": 45, "scrap": 3})
    assert r.status_code == 200
    assert (await client.post("/api/v1/orders/WO-1/operations/10/complete")).json()["status"] == "in_progress"
    r = await client.post("/api/v1/orders/WO-1/operations/20/complete", json={})
    assert r.status_code == 200, r.text

    order = r.json()
    assert order["status"] == "completed" and order["completed_at"] == order["operations"][1]["completed_at"]
    press, weld = order["operations"]
    # press: good 40 + 10 = 50, first pass 38 + 10 (absent = all good) = 48, two reports
    assert (press["good"], press["scrap"], press["rework"], press["first_pass_good"], press["reports"]) == (
        50.0, 2.0, 1.0, 48.0, 2)
    # the order's good is its last operation's (45); its scrap every operation's (2 + 3 = 5)
    assert (order["good"], order["scrap"]) == (45.0, 5.0)

    # steel: 100 - 30 = 70 and 50 - 10 = 40 left; the bracket lot holds the 40 + 10 good pressed into it
    lot = (await client.get("/api/v1/lots/B-1")).json()
    assert (lot["quantity"], lot["status"]) == (50.0, "in_process")
    assert [(i["lot"], i["quantity"], i["work_order"], i["operation_seq"]) for i in lot["inputs"]] == [
        ("S-1", 30.0, "WO-1", 10), ("S-2", 10.0, "WO-1", 10)]
    assert (await client.get("/api/v1/lots/S-1")).json()["quantity"] == 70.0
    assert (await client.get("/api/v1/lots/S-2")).json()["quantity"] == 40.0

    assert [o["id"] for o in (await client.get("/api/v1/orders", params={"status": "completed"})).json()] == ["WO-1"]
    assert (await client.get("/api/v1/orders", params={"status": "created"})).json() == []


async def test_consuming_a_whole_lot_marks_it_consumed(client):
    await released(client)
    await client.post("/api/v1/orders/WO-1/operations/10/start", json={"machine": "m2"})
    body = {"good": 5, "consumed": [{"lot": "S-2", "quantity": 50}], "produced": "B-1"}
    assert (await client.post("/api/v1/orders/WO-1/operations/10/report", json=body)).status_code == 200
    lot = (await client.get("/api/v1/lots/S-2")).json()
    assert (lot["quantity"], lot["status"]) == (0.0, "consumed")


async def test_refused_transitions_name_the_status(client):
    assert (await client.post("/api/v1/orders", json=ORDER)).status_code == 201
    r = await client.post("/api/v1/orders/WO-1/operations/10/start", json={"machine": "m1"})
    assert r.status_code == 409 and r.json()["current_status"] == "created"
    assert (await client.post("/api/v1/orders/WO-1/release")).status_code == 200
    r = await client.post("/api/v1/orders/WO-1/release")
    assert r.status_code == 409 and r.json()["current_status"] == "released"
    r = await client.post("/api/v1/orders/WO-1/operations/20/start", json={"machine": "m3"})
    assert r.status_code == 409 and "operation 10" in r.json()["detail"]
    r = await client.post("/api/v1/orders/WO-1/operations/10/start", json={"machine": "m3"})
    assert r.status_code == 422 and r.json()["field"] == "machine" and "m1, m2" in r.json()["detail"]
    r = await client.post("/api/v1/orders/WO-1/operations/10/complete")
    assert r.status_code == 409 and r.json()["current_status"] == "pending"
    assert (await client.post("/api/v1/orders/WO-1/operations/10/start", json={"machine": "m1"})).status_code == 200
    r = await client.post("/api/v1/orders/WO-1/operations/10/start", json={"machine": "m2"})
    assert r.status_code == 409 and r.json()["current_status"] == "running"
    assert (await client.post("/api/v1/orders/WO-1/operations/20/start", json={"machine": "m3"})).status_code == 200
    r = await client.post("/api/v1/orders/WO-1/operations/20/complete")
    assert r.status_code == 409 and r.json()["current_status"] == "running"  # op 10 still runs
    r = await client.post("/api/v1/orders/WO-1/operations/10/complete", json={"at": "2000-01-01T00:00:00Z"})
    assert r.status_code == 422 and r.json()["field"] == "at"
    assert (await client.post("/api/v1/orders/WO-1/operations/30/start", json={"machine": "m1"})).status_code == 404
    r = await client.post("/api/v1/orders/WO-9/release")
    assert r.status_code == 404 and r.json()["key"] == "WO-9"


async def test_report_on_a_pending_operation_writes_nothing(client, conn):
    await released(client)
    before = await written(conn)
    body = {"good": 5, "consumed": [{"lot": "S-1", "quantity": 5}], "produced": "B-1"}
    r = await client.post("/api/v1/orders/WO-1/operations/10/report", json=body)
    assert r.status_code == 409 and r.json()["current_status"] == "pending"
    assert await written(conn) == before == (0, 0, [0.0, 100.0, 50.0])


async def test_report_on_a_completed_operation_is_refused_by_the_database_too(client, conn):
    await released(client)
    await client.post("/api/v1/orders/WO-1/operations/10/start", json={"machine": "m1"})
    await client.post("/api/v1/orders/WO-1/operations/10/complete")
    r = await client.post("/api/v1/orders/WO-1/operations/10/report", json={"good": 1})
    assert r.status_code == 409 and r.json()["current_status"] == "completed"
    with pytest.raises(Exception) as e:
        await conn.execute(
            "INSERT INTO operation_reports (operation_id, good) SELECT id, 1 FROM operations WHERE seq = 10")
    assert e.value.sqlstate == "23S02" and "completed" in str(e.value)
    assert await scalar(conn, "SELECT count(*) FROM operation_reports") == 0


@pytest.mark.parametrize("body, field", [
    ({"consumed": [{"lot": "S-1", "quantity": 5}, {"lot": "NOPE", "quantity": 1}], "produced": "B-1"},
     "consumed[1].lot"),
    ({"good": 3, "consumed": [{"lot": "S-1", "quantity": 5}], "produced": "NOPE"}, "produced"),
])
async def test_report_with_an_unknown_lot_writes_nothing(client, conn, body, field):
    await released(client)
    await client.post("/api/v1/orders/WO-1/operations/10/start", json={"machine": "m1"})
    before = await written(conn)
    r = await client.post("/api/v1/orders/WO-1/operations/10/report", json={"good": 5, **body})
    assert r.status_code == 422, r.text
    assert (r.json()["entity"], r.json()["key"], r.json()["field"]) == ("lot", "NOPE", field)
    assert await written(conn) == before == (0, 0, [0.0, 100.0, 50.0])


async def test_report_closing_a_genealogy_cycle_writes_nothing(client, conn):
    # a bracket lot once went into steel lot S-1 (say, remelted); pressing S-1 into B-1 would close a loop
    await conn.execute("INSERT INTO lot_consumption (consumed, produced, quantity) VALUES ('B-1', 'S-1', 1)")
    await released(client)
    await client.post("/api/v1/orders/WO-1/operations/10/start", json={"machine": "m1"})
    before = await written(conn)
    body = {"good": 5, "consumed": [{"lot": "S-2", "quantity": 5}, {"lot": "S-1", "quantity": 5}], "produced": "B-1"}
    r = await client.post("/api/v1/orders/WO-1/operations/10/report", json=body)
    assert r.status_code == 409 and "cycle" in r.json()["detail"] and "S-1" in r.json()["detail"]
    assert await written(conn) == before == (0, 1, [0.0, 100.0, 50.0])
    r = await client.post("/api/v1/orders/WO-1/operations/10/report",
                          json={"consumed": [{"lot": "B-1", "quantity": 1}], "produced": "B-1"})
    assert r.status_code == 409 and "itself" in r.json()["detail"]


async def test_report_consuming_more_than_a_lot_holds_writes_nothing(client, conn):
    await released(client)
    await client.post("/api/v1/orders/WO-1/operations/10/start", json={"machine": "m1"})
    body = {"good": 5, "consumed": [{"lot": "S-2", "quantity": 60}], "produced": "B-1"}
    r = await client.post("/api/v1/orders/WO-1/operations/10/report", json=body)
    assert r.status_code == 422 and r.json()["field"] == "consumed[0].quantity"
    assert await written(conn) == (0, 0, [0.0, 100.0, 50.0])


@pytest.mark.parametrize("body, status, named", [
    ({**ORDER, "quantiy": 5}, 400, "quantiy"),
    ({**ORDER, "quantity": "fifty"}, 400, "quantity"),
    ({**ORDER, "quantity": 0}, 400, "quantity"),
    ({**ORDER, "due": "2026-12-01T14:00:00"}, 400, "due"),
    ({**ORDER, "product": "widget"}, 422, "product"),
])
async def test_bad_order_bodies_name_the_field(client, conn, body, status, named):
    r = await client.post("/api/v1/orders", json=body)
    assert r.status_code == status, r.text
    assert named in r.text
    assert await scalar(conn, "SELECT count(*) FROM work_orders") == 0


async def test_bad_reports_and_filters_name_the_field(client):
    await released(client)
    await client.post("/api/v1/orders/WO-1/operations/10/start", json={"machine": "m1"})
    r = await client.post("/api/v1/orders/WO-1/operations/10/report", json={"good": 5, "first_pass_good": 6})
    assert r.status_code == 400 and r.json()["parameter"] == "first_pass_good"
    r = await client.post("/api/v1/orders/WO-1/operations/10/report", json={"god": 5})
    assert r.status_code == 400 and "god" in r.text
    r = await client.post("/api/v1/orders/WO-1/operations/10/report",
                          json={"consumed": [{"lot": "S-1", "quantity": 1}]})
    assert r.status_code == 400 and r.json()["parameter"] == "produced"
    r = await client.get("/api/v1/orders", params={"status": "done"})
    assert r.status_code == 400 and r.json()["parameter"] == "status"
    r = await client.post("/api/v1/orders", json=ORDER)
    assert r.status_code == 409 and "WO-1" in r.json()["detail"]


async def test_order_without_an_active_routing_is_refused(client, conn):
    await client.post("/api/v1/products", json={"code": "widget"})
    r = await client.post("/api/v1/orders", json={**ORDER, "product": "widget"})
    assert r.status_code == 422 and r.json()["field"] == "product" and "routing" in r.json()["detail"]
