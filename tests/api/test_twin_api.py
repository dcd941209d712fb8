"""Machines, alarms and what-if over HTTP, on a real database the twin has written."""

from __future__ import annotations

import pytest
from litestar.testing import AsyncTestClient

from api.app import create_app
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
    async with AsyncTestClient(app=create_app(dsn, pool_size=2)) as c:
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
    (alarm,) = r.json()
    assert alarm["tag"] == "m1.temp" and alarm["value"] == 54.0 and "WE1" in alarm["rules"]
    assert (await client.get("/api/v1/alarms", params={"machine": "other"})).json() == []
    r = await client.get("/api/v1/alarms", params={"limit": 0})
    assert r.status_code == 400 and r.json()["parameter"] == "limit"


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


async def test_whatif_seeded_from_the_twin_compares_scenarios(client):
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
