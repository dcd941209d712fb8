"""Master data over HTTP: routings, recipes and their activations, operators, sessions, shifts, downtime, energy."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import psycopg
import pytest
from litestar.testing import AsyncTestClient

from api.app import create_app
from tests.historian.helpers import scalar
from tests.api_keys import api_config, auth

T0 = datetime(2025, 3, 3, 6, 0, tzinfo=timezone.utc)  # in the past: recipe_active and sessions read now()


def at(minutes: float) -> str:
    """T0 plus some minutes, ISO 8601."""
    return (T0 + timedelta(minutes=minutes)).isoformat()


@pytest.fixture
async def client(conn, dsn):
    await conn.execute("INSERT INTO machines (name, line) VALUES ('m1', 'L1'), ('m2', 'L1')")
    async with AsyncTestClient(app=create_app(dsn, api_config(), pool_size=2)) as c:
        c.headers.update(auth("engineer"))
        assert (await c.post("/api/v1/products", json={"code": "cup"})).status_code == 201
        yield c


async def test_routing_versions_with_machines(client):
    body = {"product": "cup", "operations": [{"seq": 10, "name": "mould", "cycle_s": 12, "machines": ["m2", "m1"]},
                                             {"seq": 20, "name": "pack", "cycle_s": 3}]}
    r = await client.post("/api/v1/routings", json=body)
    assert r.status_code == 201, r.text
    assert (r.json()["version"], r.json()["active"]) == (1, True)
    assert [(o["seq"], o["machines"]) for o in r.json()["operations"]] == [(10, ["m1", "m2"]), (20, [])]
    r = await client.post("/api/v1/routings", json={**body, "operations": body["operations"][:1]})
    assert r.json()["version"] == 2  # one past the newest
    listed = (await client.get("/api/v1/routings", params={"product": "cup"})).json()
    assert [(x["version"], x["active"], len(x["operations"])) for x in listed] == [(1, False, 2), (2, True, 1)]


@pytest.mark.parametrize("operations, status, named", [
    ([{"seq": 10, "name": "mould", "cycle_s": 12, "machines": ["m1", "m9"]}], 422, "operations[0].machines[1]"),
    ([{"seq": 10, "name": "a", "cycle_s": 1}, {"seq": 10, "name": "b", "cycle_s": 1}], 400, "operations"),
    ([], 400, "operations"),
    ([{"seq": 10, "name": "mould", "cycle_s": 0}], 400, "cycle_s"),
    ([{"seq": 10, "name": "mould", "cycle_s": 1, "machine": ["m1"]}], 400, "machine"),
])
async def test_bad_routings_name_the_field(client, conn, operations, status, named):
    r = await client.post("/api/v1/routings", json={"product": "cup", "operations": operations})
    assert r.status_code == status, r.text
    assert named in r.text
    assert await scalar(conn, "SELECT count(*) FROM routing_operations") == 0  # nothing half-written


async def test_recipe_active_at_a_time(client, conn):
    for temp in (180, 185):
        r = await client.post("/api/v1/recipes", json={"name": "PP-cup", "product": "cup",
                                                        "parameters": {"melt_temp": temp}})
        assert r.status_code == 201, r.text
    assert [v["version"] for v in (await client.get("/api/v1/recipes", params={"name": "PP-cup"})).json()] == [1, 2]
    r = await client.post("/api/v1/machines/m1/recipe", json={"recipe": "PP-cup", "version": 1, "at": at(0)})
    assert r.status_code == 201 and r.json()["end_ts"] is None
    r = await client.post("/api/v1/machines/m1/recipe", json={"recipe": "PP-cup", "at": at(60)})  # newest: v2
    assert r.status_code == 201 and r.json()["version"] == 2

    r = await client.get("/api/v1/machines/m1/recipe", params={"at": at(30)})
    # v1 ran [T0, T0 + 60 min): its activation was closed when v2 started
    assert (r.json()["version"], r.json()["parameters"], r.json()["end_ts"]) == (1, {"melt_temp": 180},
                                                                                   "2025-03-03T07:00:00Z")
    assert (await client.get("/api/v1/machines/m1/recipe", params={"at": at(60)})).json()["version"] == 2
    assert (await client.get("/api/v1/machines/m1/recipe")).json()["version"] == 2  # now
    r = await client.get("/api/v1/machines/m1/recipe", params={"at": at(-1)})
    assert r.status_code == 404 and r.json()["entity"] == "recipe activation"
    assert (await client.get("/api/v1/machines/m9/recipe")).status_code == 404

    cur = await conn.execute("SELECT version FROM recipe_at((SELECT id FROM machines WHERE name = 'm1'), %s)",
                             (T0 + timedelta(minutes=59),))
    assert await cur.fetchall() == [(1,)]
    cur = await conn.execute("SELECT machine, recipe, version FROM recipe_active")
    assert await cur.fetchall() == [("m1", "PP-cup", 2)]

    r = await client.post("/api/v1/machines/m1/recipe", json={"recipe": "PP-cup", "at": at(30)})
    assert r.status_code == 409 and "forward" in r.json()["detail"]
    r = await client.post("/api/v1/machines/m1/recipe", json={"recipe": "PP-cup", "version": 7})
    assert r.status_code == 422 and r.json()["field"] == "recipe"
    with pytest.raises(psycopg.errors.IntegrityError) as e:  # an analyst's SQL cannot overlap activations either
        await conn.execute("INSERT INTO recipe_activations (machine_id, recipe_id, start_ts) "
                           "SELECT 1, id, %s FROM recipes WHERE version = 1", (T0 + timedelta(minutes=10),))
    assert e.value.sqlstate == "23S03"


async def test_operators_and_sessions(client, conn):
    body = {"badge": "B-7", "name": "Ann", "skills": [{"skill": "moulding", "level": 4}, {"skill": "packing"}]}
    r = await client.post("/api/v1/operators", json=body)
    assert r.status_code == 201 and r.json()["skills"] == [{"skill": "moulding", "level": 4},
                                                            {"skill": "packing", "level": 1}]
    assert (await client.post("/api/v1/operators", json=body)).status_code == 409
    r = await client.post("/api/v1/operators", json={"badge": "B-8", "skills": [{"skill": "x", "level": 6}]})
    assert r.status_code == 400 and "level" in r.text

    login = {"badge": "B-7", "machine": "m1", "at": at(0)}
    assert (await client.post("/api/v1/sessions/login", json=login)).status_code == 200
    r = await client.post("/api/v1/sessions/login", json=login)
    assert r.status_code == 409 and r.json()["current_status"] == "logged_in"
    r = await client.post("/api/v1/sessions/logout", json={**login, "at": at(0)})
    assert r.status_code == 422 and r.json()["field"] == "at"
    r = await client.post("/api/v1/sessions/logout", json={**login, "at": at(480)})
    assert r.status_code == 200 and r.json()["end_ts"] == "2025-03-03T14:00:00Z"  # 06:00 + 480 min
    r = await client.post("/api/v1/sessions/logout", json=login)
    assert r.status_code == 409 and r.json()["current_status"] == "logged_out"
    r = await client.post("/api/v1/sessions/login", json={**login, "badge": "B-9"})
    assert r.status_code == 422 and r.json()["field"] == "badge"

    assert len((await client.get("/api/v1/sessions", params={"machine": "m1", "at": at(60)})).json()) == 1
    assert (await client.get("/api/v1/sessions", params={"at": at(481)})).json() == []
    cur = await conn.execute("SELECT badge, machine, logged_in FROM operator_on_machine")
    assert await cur.fetchall() == [("B-7", "m1", False)]


async def test_shifts_and_downtime(client):
    for name, start in (("early", 0), ("late", 480)):
        r = await client.post("/api/v1/shifts", json={"name": name, "line": "L1", "start": at(start),
                                                       "end": at(start + 480)})
        assert r.status_code == 201, r.text
    r = await client.get("/api/v1/shifts", params={"start": at(400), "end": at(500), "line": "L1"})
    assert [s["name"] for s in r.json()] == ["early", "late"]  # both overlap 12:40..14:20
    r = await client.post("/api/v1/shifts", json={"name": "x", "start": at(10), "end": at(5)})
    assert r.status_code == 400 and r.json()["parameter"] == "end"

    stop = {"machine": "m1", "kind": "maintenance", "start": at(60), "end": at(90), "reason": "mould change"}
    assert (await client.post("/api/v1/downtime", json=stop)).status_code == 201
    r = await client.get("/api/v1/downtime", params={"machine": "m1"})
    assert [(d["kind"], d["reason"]) for d in r.json()] == [("maintenance", "mould change")]
    assert (await client.get("/api/v1/downtime", params={"machine": "m1", "start": at(90)})).json() == []
    r = await client.post("/api/v1/downtime", json={**stop, "kind": "lunch"})
    assert r.status_code == 400 and "kind" in r.text
    r = await client.post("/api/v1/downtime", json={**stop, "machine": "m9"})
    assert r.status_code == 422 and r.json()["field"] == "machine"


async def test_energy_per_good_unit(client, conn):
    await conn.execute("INSERT INTO tags (name, category, unit) VALUES ('m1.kwh', 'energy', 'kWh')")
    r = await client.post("/api/v1/energy/meters", json={"tag": "m1.kwh", "machine": "m1", "share": 0.5})
    assert r.status_code == 201, r.text
    assert (await client.get("/api/v1/energy/meters")).json() == [{"tag": "m1.kwh", "machine": "m1", "share": 0.5}]
    r = await client.post("/api/v1/energy/meters", json={"tag": "m1.kwh", "machine": "m2", "share": 1.5})
    assert r.status_code == 400 and "share" in r.text

    await conn.execute("SELECT sf_ensure_partitions('samples', %s::date, %s::date)", (T0.date(), T0.date()))
    # the counter reads 100, 110, 125, then restarts: 5, 20
    for minute, kwh in ((0, 100), (10, 110), (20, 125), (30, 5), (40, 20)):
        await conn.execute("INSERT INTO samples (tag_id, ts, value) SELECT id, %s, %s FROM tags WHERE name = 'm1.kwh'",
                           (T0 + timedelta(minutes=minute), kwh))
    await conn.execute("INSERT INTO part_counts (machine_id, ts, good, scrap) VALUES (1, %s, 10, 1), (1, %s, 20, 0)",
                       (T0 + timedelta(minutes=15), T0 + timedelta(minutes=35)))
    r = await client.get("/api/v1/energy/per-unit", params={"machine": "m1", "start": at(0), "end": at(60)})
    assert r.status_code == 200, r.text
    # increase 10 + 15 + 5 (restarted from zero) + 15 = 45 kWh, half of it this machine's: 22.5 kWh
    # over 10 + 20 = 30 good parts: 0.75 kWh each
    assert (r.json()["kwh"], r.json()["good"], r.json()["kwh_per_good"]) == (22.5, 30, 0.75)
    r = await client.get("/api/v1/energy/per-unit", params={"machine": "m2", "start": at(0), "end": at(60)})
    assert (r.json()["kwh"], r.json()["good"], r.json()["kwh_per_good"]) == (0.0, 0, None)
