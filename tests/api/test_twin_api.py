"""Machines, alarms and what-if over HTTP, on a real database the twin has written."""

from __future__ import annotations

import pytest
from litestar.testing import AsyncTestClient

from api.app import create_app
from tests.api_keys import api_config, auth
from tests.twin.test_twin_service import CONFIG, GOOD, SCRAP, TIMELINE, batch, running, setup, until
from tests.historian.helpers import scalar
from twin.service import TwinService


@pytest.fixture
async def client(conn, dsn):
    registry = await setup(conn)
    service = TwinService(CONFIG, dsn)
    async with running(service):
        service.observe(batch(registry, TIMELINE))
        await until(lambda: scalar(conn, "SELECT sum(good) FROM part_counts"), lambda n: n == GOOD)
    async with AsyncTestClient(app=create_app(dsn, api_config(), pool_size=2)) as c:
        c.headers.update(auth("viewer"))
        yield c


async def test_machines_list_and_one(client):
    r = await client.get("/api/v1/machines")
    assert r.status_code == 200
    (m1,) = r.json()
    assert (m1["name"], m1["state"], m1["good_total"], m1["scrap_total"]) == ("m1", "producing", GOOD, SCRAP)
    temp = m1["sensors"]["m1.temp"]
    assert temp["mu"] == 50.0 and temp["value"] == 54.0
    r = await client.get("/api/v1/machines/m1")
    assert r.status_code == 200 and r.json()["name"] == "m1"
    r = await client.get("/api/v1/machines/nope")
    assert r.status_code == 404 and "nope" in r.json()["detail"]


async def test_alarms_filtered_and_checked(client):
    r = await client.get("/api/v1/alarms", params={"machine": "m1"})
    assert r.status_code == 200
    (alarm,) = r.json()  # one alarm for the excursion, not a row per point
    assert alarm["tag"] == "m1.temp" and alarm["value"] == 54.0 and "WE1" in alarm["rules"]
    assert (alarm["rule"], alarm["priority"], alarm["state"], alarm["points"]) == ("spc", "high", "unack_active", 1)
    assert (await client.get("/api/v1/alarms", params={"machine": "other"})).json() == []
    assert len((await client.get("/api/v1/alarms", params={"state": "unack_active", "priority": "high"})).json()) == 1
    assert (await client.get("/api/v1/alarms", params={"priority": "low"})).json() == []
    for bad in ({"limit": 0}, {"state": "sleepy"}, {"priority": "urgent"}):
        r = await client.get("/api/v1/alarms", params=bad)
        assert r.status_code == 400 and next(iter(bad)) in r.text


async def test_operators_acknowledge_and_shelve_and_the_journal_says_who(client):
    (alarm,) = (await client.get("/api/v1/alarms")).json()
    url = f"/api/v1/alarms/{alarm['id']}"
    r = await client.post(f"{url}/ack", json={})
    assert r.status_code == 403  # a viewer reads, an operator acknowledges
    r = await client.post(f"{url}/ack", json={"comment": "seen, checking the heater"}, headers=auth("operator"))
    assert r.status_code == 200, r.text
    assert (r.json()["state"], r.json()["acked_by"]) == ("ack_active", "test-operator")
    r = await client.post(f"{url}/ack", headers=auth("operator"))
    assert r.status_code == 409 and "already acknowledged" in r.json()["detail"]
    r = await client.post(f"{url}/shelve", json={"duration_s": 5, "reason": "x"}, headers=auth("operator"))
    assert r.status_code == 400 and "duration_s" in r.text
    r = await client.post(f"{url}/shelve", json={"duration_s": 600, "reason": "sensor swap"},
                          headers=auth("operator"))
    assert r.status_code == 200 and r.json()["state"] == "shelved"
    assert (await client.post(f"{url}/unshelve", headers=auth("operator"))).json()["state"] == "ack_active"
    r = await client.get(f"{url}/journal")
    assert [(j["transition"], j["actor"], j["outcome"]) for j in r.json()] == [
        ("raised", "twin", "accepted"), ("suppressed", "twin", "accepted"), ("released", "twin", "accepted"),
        ("acknowledged", "test-operator", "accepted"), ("acknowledged", "test-operator", "refused"),
        ("shelved", "test-operator", "accepted"), ("unshelved", "test-operator", "accepted")]
    assert r.json()[3]["detail"] == "seen, checking the heater" and r.json()[3]["role"] == "operator"
    assert (await client.post("/api/v1/alarms/999999/ack", headers=auth("operator"))).status_code == 404
    assert (await client.get("/api/v1/alarms/999999")).status_code == 404


async def test_whatif_with_given_machines_is_the_hand_computed_case(client):
    # one machine, 10 s cycle, 20 s setup, 30 parts due at 250 s: done at 20 + 300 = 320 s, 70 s late
    body = {"horizon_s": 400, "setup_s": 20,
            "machines": [{"name": "m", "nominal_cycle_s": 10}],
            "orders": [{"id": "o1", "product": "A", "quantity": 30, "due_s": 250}]}
    r = await client.post("/api/v1/whatif", json=body)
    assert r.status_code == 200, r.text
    answer = r.json()
    assert answer["seeded_from"] == "request"
    (result,) = answer["results"]
    assert result["throughput"]["good"] == 30
    assert result["tardiness"]["total_s"] == 70 and result["orders"][0]["finished_s"] == 320


async def test_whatif_seeded_from_the_twin_compares_scenarios(client, conn):
    await conn.execute("INSERT INTO products (code) VALUES ('A')")
    body = {"horizon_s": 3600, "scenarios": [{"kind": "baseline"}, {"kind": "machine_down", "machine": "m1",
                                                                      "duration_s": 3600}],
            "orders": [{"id": "o1", "product": "A", "quantity": 50, "due_s": 3000}]}
    r = await client.post("/api/v1/whatif", json=body)
    assert r.status_code == 200, r.text
    answer = r.json()
    assert answer["seeded_from"] == "twin" and [m["name"] for m in answer["machines"]] == ["m1"]
    baseline, down = answer["results"]
    assert baseline["throughput"]["good"] > 0 and down["throughput"]["good"] == 0


async def test_whatif_errors_name_the_field(client):
    r = await client.post("/api/v1/whatif", json={"horizon_s": 60, "scenarios": [
        {"kind": "maintain_now", "machine": "press9"}]})
    assert r.status_code == 400 and r.json()["parameter"] == "scenario.machine"
    r = await client.post("/api/v1/whatif", json={"horizon_s": "soon"})
    assert r.status_code == 400 and "horizon_s" in r.text


async def routing(conn, product: str, cycle_s: float, machine: str = "m1") -> None:
    """A product with an active one-operation routing on the machine."""
    cur = await conn.execute("INSERT INTO products (code) VALUES (%s) RETURNING id", (product,))
    (pid,) = await cur.fetchone()
    cur = await conn.execute("INSERT INTO routings (product_id, version) VALUES (%s, 1) RETURNING id", (pid,))
    (rid,) = await cur.fetchone()
    cur = await conn.execute("INSERT INTO routing_operations (routing_id, seq, name, cycle_s) "
                             "VALUES (%s, 10, 'press', %s) RETURNING id", (rid, cycle_s))
    (oid,) = await cur.fetchone()
    await conn.execute("INSERT INTO routing_operation_machines SELECT %s, id FROM machines WHERE name = %s",
                       (oid, machine))


async def test_whatif_runs_each_product_at_its_routing_cycle_time(client, conn):
    await routing(conn, "bracket-B", 7.5)
    await routing(conn, "housing-C", 11.0)
    body = {"horizon_s": 3600, "defaults": {"mtbf_s": 1e12, "scrap_base": 0, "scrap_slope": 0},
            "orders": [{"id": "b", "product": "bracket-B", "quantity": 10, "due_s": 100},
                       {"id": "h", "product": "housing-C", "quantity": 10, "due_s": 400}]}
    r = await client.post("/api/v1/whatif", json=body)
    assert r.status_code == 200, r.text
    (m1,) = r.json()["machines"]
    assert m1["cycle_s"] == {"bracket-B": 7.5, "housing-C": 11.0} and m1["nominal_cycle_s"] is None
    finished = {o["id"]: o["finished_s"] for o in r.json()["results"][0]["orders"]}
    assert finished == {"b": 75.0, "h": 75.0 + 110.0}


async def test_whatif_refuses_an_unknown_product_naming_it(client, conn):
    await routing(conn, "bracket-B", 7.5)
    r = await client.post("/api/v1/whatif", json={"horizon_s": 600, "orders": [
        {"id": "ok", "product": "bracket-B", "quantity": 1, "due_s": 60},
        {"id": "x", "product": "nope", "quantity": 1, "due_s": 60}]})
    assert r.status_code == 422 and "'nope'" in r.json()["detail"] and "orders[1].product" in r.json()["detail"]
    # given machines: a product no machine has a cycle time for is refused the same way
    r = await client.post("/api/v1/whatif", json={"horizon_s": 600, "machines": [
        {"name": "m", "cycle_s": {"bracket-B": 7.5}}], "orders": [{"id": "x", "product": "nope", "quantity": 1,
                                                                   "due_s": 60}]})
    assert r.status_code == 422 and "'nope'" in r.json()["detail"]


async def test_whatif_breaks_machines_down_from_the_mtbf_when_the_rul_is_unknown(client, conn):
    await conn.execute("INSERT INTO products (code) VALUES ('A')")
    body = {"horizon_s": 3600, "defaults": {"mtbf_s": 120, "repair_s": 60},
            "orders": [{"id": "o", "product": "A", "quantity": 500, "due_s": 3600}]}
    r = await client.post("/api/v1/whatif", json=body)
    assert r.status_code == 200, r.text
    (m1,) = r.json()["machines"]
    assert m1["rul_parts"] is None and m1["mtbf_s"] == 120
    assert r.json()["results"][0]["machines"][0]["failures"] > 5  # ~ an hour / (120 s + 60 s repair)


async def test_whatif_refuses_the_dos_request_and_documents_its_limits(client):
    # issue 10: horizon 1e9 s with a quantity of 1e12 grew ~85 MB/s in a thread that could not be stopped
    dos = {"horizon_s": 1e9, "machines": [{"name": "m", "nominal_cycle_s": 1}],
           "orders": [{"id": "o", "product": "A", "quantity": 10**12, "due_s": 0}]}
    r = await client.post("/api/v1/whatif", json=dos)
    assert r.status_code == 400 and "horizon_s" in r.text
    dos["horizon_s"] = 3600
    r = await client.post("/api/v1/whatif", json=dos)
    assert r.status_code == 400 and "quantity" in r.text
    r = await client.post("/api/v1/whatif", json={"horizon_s": 60, "scenarios": [{"kind": "baseline"}] * 11})
    assert r.status_code == 400 and "scenarios" in r.text
    schema = (await client.get("/schema/openapi.json")).json()["components"]["schemas"]
    body = next(v for k, v in schema.items() if k.endswith("WhatIfBody"))
    assert body["properties"]["horizon_s"]["maximum"] == 30 * 86400
    order = next(v for k, v in schema.items() if k.endswith("Order") and "quantity" in v.get("properties", {}))
    assert order["properties"]["quantity"]["maximum"] == 100_000
    scenario = next(v for k, v in schema.items() if k.endswith("Scenario"))
    assert scenario["properties"]["machine"].get("default") in (None,)  # omitted means none, not ""
    assert (await client.post("/api/v1/whatif", json={"horizon_s": 60, "scenarios": [
        {"kind": "maintain_now"}]})).json()["parameter"] == "scenario.machine"
