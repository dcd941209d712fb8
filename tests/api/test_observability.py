"""Request ids, security headers, /metrics by route and status, the audit of every change, bounded work (503s)."""

from __future__ import annotations

import pytest
from litestar.testing import AsyncTestClient

from api.app import create_app
from tests.api_keys import api_config, auth
from tests.historian.helpers import scalar, setup_tags


@pytest.fixture
def backend() -> str:
    """Not about the database's flavour: one backend is enough."""
    return "postgresql"


@pytest.fixture
async def app_client(conn, dsn):
    await setup_tags(conn)
    app = create_app(dsn, api_config(pool_timeout=0.3), pool_size=1)
    async with AsyncTestClient(app=app) as c:
        yield app, c


async def test_request_id_and_security_headers(app_client):
    _, client = app_client
    r = await client.get("/api/v1/tags", headers=auth("viewer"))
    assert len(r.headers["x-request-id"]) == 32
    assert r.headers["x-content-type-options"] == "nosniff"
    assert "frame-ancestors 'none'" in r.headers["content-security-policy"]
    r = await client.get("/health", headers={"X-Request-ID": "mes-42"})
    assert r.headers["x-request-id"] == "mes-42"
    r = await client.get("/health", headers={"X-Request-ID": "bad id\twith junk"})
    assert r.headers["x-request-id"] != "bad id\twith junk"


async def test_metrics_count_every_status_by_route_template(app_client):
    _, client = app_client
    assert (await client.get("/api/v1/tags/no.such/value", params={"at": "2026-01-01T00:00:00Z"},
                             headers=auth("viewer"))).status_code == 404
    assert (await client.get("/api/v1/tags")).status_code == 401
    assert (await client.get("/nowhere")).status_code == 404
    text = (await client.get("/metrics", headers=auth("viewer"))).text
    assert 'shopfloor_http_responses_total{method="GET",route="/api/v1/tags/{name}/value",status="404"}' in text
    assert 'shopfloor_http_responses_total{method="GET",route="/api/v1/tags",status="401"}' in text
    assert 'route="unmatched",status="404"' in text
    assert 'shopfloor_http_request_seconds_bucket{le="+Inf",route="/api/v1/tags"}' in text
    assert "shopfloor_api_pool_in_use" in text and "shopfloor_api_pool_waiting" in text


async def test_every_change_is_audited_accepted_or_refused(app_client, conn):
    _, client = app_client
    await client.post("/api/v1/items", json={"code": "steel"}, headers=auth("engineer"))
    await client.post("/api/v1/items", json={"code": "iron"}, headers=auth("viewer"))
    await client.post("/api/v1/tags/press1.temperature/write", json={"value": 1.0})
    await client.post("/api/v1/tags/press1.temperature/write", json={"value": 1.0},
                      headers={"Authorization": "Bearer wrong-key-0123456789abcdef"})
    cur = await conn.execute("SELECT who, role, method, route, status, outcome FROM api_audit ORDER BY id")
    rows = await cur.fetchall()
    assert rows == [
        ("test-engineer", "engineer", "POST", "/api/v1/items", 201, "accepted"),
        ("test-viewer", "viewer", "POST", "/api/v1/items", 403, "refused"),
        ("anonymous", None, "POST", "/api/v1/tags/{name}/write", 401, "refused"),
        ("unknown key", None, "POST", "/api/v1/tags/{name}/write", 401, "refused"),
    ]
    assert await scalar(conn, "SELECT count(DISTINCT request_id) FROM api_audit") == 4


async def test_pool_exhaustion_is_503_with_retry_after(app_client):
    app, client = app_client
    async with app.state.pool.connection():  # the only connection, held
        r = await client.get("/api/v1/tags", headers=auth("viewer"))
    assert r.status_code == 503 and r.headers["retry-after"] == "1"
    assert "busy" in r.json()["detail"]
    assert (await client.get("/api/v1/tags", headers=auth("viewer"))).status_code == 200


async def test_statement_timeout_is_503_naming_it(conn, dsn):
    await conn.execute("INSERT INTO machines (name, line) VALUES ('m1', 'L1')")
    async with AsyncTestClient(app=create_app(dsn, api_config(statement_timeout=0.001), pool_size=1)) as c:
        r = await c.get("/api/v1/kpi", params={"machine": "m1", "start": "0001-01-01T00:00:00Z",
                                                "end": "9999-01-01T00:00:00Z", "group": "day"}, headers=auth("viewer"))
        assert r.status_code == 400 and r.json()["parameter"] == "end"  # too many buckets: refused before any work
        r = await c.get("/api/v1/kpi", params={"machine": "m1", "start": "2000-01-01T00:00:00Z",
                                                "end": "2030-01-01T00:00:00Z"}, headers=auth("viewer"))
    assert r.status_code == 503, r.text
    assert "statement_timeout" in r.json()["detail"] and r.headers["retry-after"]


async def test_write_back_checks_the_value_against_the_tag_type_before_the_device(app_client, conn):
    _, client = app_client
    await conn.execute("UPDATE tags SET writable = true WHERE name = 'press1.temperature'")
    r = await client.post("/api/v1/tags/press1.temperature/write", json={"value": "fast"}, headers=auth("operator"))
    assert r.status_code == 400 and r.json()["parameter"] == "value"
    assert await scalar(conn, "SELECT count(*) FROM write_requests") == 0
