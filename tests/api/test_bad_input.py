"""No 500 on bad input: each request an attacker or a careless MES client sent, answered 4xx naming the field,
with nothing stored and every list route still readable afterwards."""

from __future__ import annotations

import pytest
from litestar.testing import AsyncTestClient

from api.app import create_app
from tests.api.test_mes_orders import ORDER, master_data
from tests.api_keys import api_config, auth
from tests.historian.helpers import at, scalar, setup_tags

RANGE = {"start": at(0).isoformat(), "end": at(3600).isoformat()}


@pytest.fixture
def backend() -> str:
    """Input checks happen before the database: one backend is enough."""
    return "timescaledb"


@pytest.fixture
async def client(conn, dsn):
    await setup_tags(conn)
    await conn.execute("INSERT INTO machines (name, line) VALUES ('m1', 'L1'), ('m2', 'L1'), ('m3', 'L1')")
    async with AsyncTestClient(app=create_app(dsn, api_config(), pool_size=2)) as c:
        c.headers.update(auth("engineer"))
        await master_data(c)
        yield c


async def lists_still_read(client: AsyncTestClient) -> None:
    for path in ("/api/v1/orders", "/api/v1/shifts", "/api/v1/recipes", "/api/v1/routings", "/api/v1/items"):
        r = await client.get(path, params={"start": RANGE["start"], "end": RANGE["end"]} if path.endswith("shifts") else None)
        assert r.status_code == 200, (path, r.text)


def named(r, field: str) -> None:  # type: ignore[no-untyped-def]
    assert r.status_code in (400, 422), r.text
    assert field in r.text, r.text


async def test_huge_quantity_and_int4_overflow_are_refused_and_not_stored(client, conn):
    named(await client.post("/api/v1/orders", json={**ORDER, "quantity": 1.7976931348623157e308}), "quantity")
    named(await client.post("/api/v1/orders", json={**ORDER, "priority": 2**31}), "priority")
    named(await client.post("/api/v1/recipes", json={"name": "r", "version": 2**40}), "version")
    routing = {"product": "bracket", "operations": [{"seq": 2**31, "name": "x", "cycle_s": 1.0, "machines": ["m1"]}]}
    named(await client.post("/api/v1/routings", json=routing), "seq")
    assert await scalar(conn, "SELECT count(*) FROM work_orders") == 0
    await lists_still_read(client)


async def test_times_outside_years_1_to_9999_in_utc(client, conn):
    named(await client.post("/api/v1/orders", json={**ORDER, "due": "0001-01-01T00:00:00+14:00"}), "due")
    named(await client.post("/api/v1/orders", json={**ORDER, "due": "9999-12-31T23:00:00-05:00"}), "due")
    shift = {"name": "night", "start": "0001-01-01T00:00:00+14:00", "end": "0001-01-02T00:00:00+00:00"}
    named(await client.post("/api/v1/shifts", json=shift), "start")
    named(await client.get("/api/v1/tags/press1.temperature/samples",
                           params={"start": "0001-01-01T00:00:00+01:00", "end": RANGE["end"]}), "start")
    assert await scalar(conn, "SELECT count(*) FROM work_orders") == 0
    await lists_still_read(client)


async def test_nul_bytes_in_query_path_and_json(client, conn):
    named(await client.get("/api/v1/tags/latest", params={"tag": "a\x00b"}), "tag")
    named(await client.get("/api/v1/orders/W%00O"), "order_id")
    named(await client.post("/api/v1/orders", json={**ORDER, "id": "WO\x00-1"}), "id")
    named(await client.post("/api/v1/recipes", json={"name": "r", "parameters": {"a": {"b\x00": 1}}}), "parameters.a")
    assert await scalar(conn, "SELECT count(*) FROM work_orders") == 0


async def test_huge_bucket_subgroup_and_deep_json(client, conn):
    named(await client.get("/api/v1/tags/press1.temperature/samples", params={**RANGE, "bucket": "99999999999d"}),
          "bucket")
    named(await client.get("/api/v1/spc/press1.temperature",
                           params={**RANGE, "chart": "xbar_s", "subgroup": "99999999999999999999"}), "subgroup")
    deep: dict = {}
    node = deep
    for _ in range(5000):
        node["a"] = {}
        node = node["a"]
    r = await client.post("/api/v1/recipes", content=b'{"name": "r", "parameters": ' + b'{"a":' * 5000 + b"1"
                          + b"}" * 5000 + b"}", headers={"content-type": "application/json"})
    named(r, "nested")
    assert await scalar(conn, "SELECT count(*) FROM recipes") == 0


async def test_non_finite_and_overlong_values(client, conn):
    r = await client.post("/api/v1/orders", content=b'{"id": "W", "product": "bracket", "quantity": 1e400}',
                          headers={"content-type": "application/json"})
    named(r, "body")
    named(await client.post("/api/v1/items", json={"code": "x", "description": "d" * 20_000}), "description")
    named(await client.put("/api/v1/spc/press1.temperature/spec", content=b'{"usl": 1e999}',
                           headers={"content-type": "application/json"}), "body")
    assert await scalar(conn, "SELECT count(*) FROM items WHERE code = 'x'") == 0


async def test_cross_site_text_plain_post_is_415(client, conn):
    r = await client.post("/api/v1/orders", content=b'{"id": "WO-9", "product": "bracket", "quantity": 1}',
                          headers={"content-type": "text/plain", "origin": "https://evil.example"})
    assert r.status_code == 415
    r = await client.post("/api/v1/orders", content=b"id=WO-9", headers={"content-type": "application/x-www-form-urlencoded"})
    assert r.status_code == 415
    assert await scalar(conn, "SELECT count(*) FROM work_orders") == 0
