"""Identity and roles: every route declares a role, 401 and 403 stay apart, keys in the database work and stop."""

from __future__ import annotations

import pytest
from litestar.testing import AsyncTestClient

from api import keys
from api.app import create_app
from api.auth import role_of
from tests.api_keys import api_config, auth

OPEN = {"/health", "/schema"}  # and everything under /schema: the OpenAPI document and its viewers


@pytest.fixture
def backend() -> str:
    """Who may call what does not depend on the database: one backend is enough."""
    return "postgresql"


@pytest.fixture
async def client(dsn):
    async with AsyncTestClient(app=create_app(dsn, api_config(), pool_size=2)) as c:
        yield c


def test_every_route_declares_a_role():
    app = create_app("postgresql://127.0.0.1:1/none", api_config())
    undeclared = []
    for route in app.routes:
        if route.path in OPEN or route.path.startswith("/schema/"):
            continue
        for handler in getattr(route, "route_handlers", []):
            if handler.http_methods == {"OPTIONS"}:
                continue
            if role_of(handler) is None:
                undeclared.append(f"{sorted(handler.http_methods)} {route.path}")
    assert undeclared == []


def test_writes_need_more_than_viewer():
    app = create_app("postgresql://127.0.0.1:1/none", api_config())
    for route in app.routes:
        for handler in getattr(route, "route_handlers", []):
            if handler.http_methods & {"POST", "PUT", "PATCH", "DELETE"} and route.path != "/api/v1/whatif":
                assert role_of(handler) in ("operator", "engineer", "admin"), route.path


async def test_401_without_or_with_an_unknown_key_403_for_a_low_role(client):
    r = await client.get("/api/v1/tags")
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    r = await client.get("/api/v1/tags", headers={"Authorization": "Bearer not-a-key-of-ours-at-all"})
    assert r.status_code == 401
    r = await client.get("/api/v1/tags", headers={"X-API-Key": "schlüssel-ünbekannt-0123456789".encode()})
    assert r.status_code == 401
    r = await client.get("/api/v1/tags", headers=auth("viewer"))
    assert r.status_code == 200
    r = await client.put("/api/v1/spc/x/spec", json={"usl": 1.0}, headers=auth("operator"))
    assert r.status_code == 403 and "engineer" in r.json()["detail"]
    r = await client.post("/api/v1/products", json={"code": "P"}, headers=auth("viewer"))
    assert r.status_code == 403
    r = await client.post("/api/v1/products", json={"code": "P"}, headers=auth("engineer"))
    assert r.status_code == 201


async def test_health_and_docs_are_open_metrics_needs_a_key_unless_public(client, dsn):
    assert (await client.get("/health")).status_code == 200
    assert (await client.get("/schema/openapi.json")).status_code == 200
    assert (await client.get("/metrics")).status_code == 401
    assert (await client.get("/metrics", headers=auth("viewer"))).status_code == 200
    async with AsyncTestClient(app=create_app(dsn, api_config(metrics_public=True), pool_size=1)) as c:
        assert (await c.get("/metrics")).status_code == 200


async def test_openapi_declares_the_key_scheme(client):
    doc = (await client.get("/schema/openapi.json")).json()
    assert doc["components"]["securitySchemes"]["ApiKey"] == {
        "type": "http", "scheme": "bearer", "description": doc["components"]["securitySchemes"]["ApiKey"]["description"]}
    assert doc["security"] == [{"ApiKey": []}]
    assert doc["paths"]["/health"]["get"]["security"] == [{}]  # no key needed


async def test_database_keys_work_expire_and_revoke_without_restart(client, conn, monkeypatch):
    monkeypatch.setattr(keys, "RECHECK_S", 0.0)  # look the key up again on every request
    key = await keys.create(conn, "mes-line-1", "operator", None)
    assert key.startswith("sf_")
    r = await client.get("/api/v1/tags", headers={"Authorization": f"Bearer {key}"})
    assert r.status_code == 200
    (row,) = await keys.listing(conn)
    assert row.name == "mes-line-1" and row.role == "operator" and row.last_used_at is not None
    cur = await conn.execute("SELECT key_hash FROM api_keys")
    assert (await cur.fetchone())[0].startswith("$argon2id$")
    # a key of the same id with another secret is refused
    forged = key[: key.rindex("_") + 1] + "x" * 32
    assert (await client.get("/api/v1/tags", headers={"Authorization": f"Bearer {forged}"})).status_code == 401
    await keys.revoke(conn, "mes-line-1")
    assert (await client.get("/api/v1/tags", headers={"Authorization": f"Bearer {key}"})).status_code == 401
    with pytest.raises(keys.KeyError_, match="name"):
        await keys.revoke(conn, "mes-line-1")
    expired = await keys.create(conn, "old", "viewer", __import__("datetime").datetime(2000, 1, 1, tzinfo=__import__("datetime").timezone.utc))
    assert (await client.get("/api/v1/tags", headers={"X-API-Key": expired})).status_code == 401


async def test_docs_pages_load_nothing_from_elsewhere(client):
    import re

    for page in ("/schema/swagger", "/schema/redoc"):
        r = await client.get(page)
        assert r.status_code == 200
        urls = re.findall(r'(?:src|href)="([^"]+)"', r.text)
        assert urls and all(u.startswith("/schema/assets/") for u in urls), urls
        for u in urls:
            assert (await client.get(u)).status_code == 200, u
