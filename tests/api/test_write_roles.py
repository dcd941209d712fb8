"""Write-back by role: a tag's write_role (default engineer) decides who may write it; refusals are recorded."""

from __future__ import annotations

from litestar.testing import AsyncTestClient

from api.app import create_app
from historian.registry import TagSpec, register
from tests.api_keys import api_config, auth


async def test_operator_writes_operator_tags_only_engineer_writes_both(conn, dsn):
    await register(conn, [TagSpec("press9.speed_setpoint", "method", writable=True, write_role="operator"),
                          TagSpec("press9.pid_gain", "method", writable=True)])  # default: engineer
    # no gateway runs: a write let through is queued and answered 504 after write_timeout
    async with AsyncTestClient(app=create_app(dsn, api_config(write_timeout=0.3), pool_size=2)) as client:
        r = await client.post("/api/v1/tags/press9.pid_gain/write", json={"value": 1.5}, headers=auth("operator"))
        assert r.status_code == 403, r.text
        assert r.json()["status"] == "refused" and "engineer" in r.json()["detail"]
        r = await client.post("/api/v1/tags/press9.speed_setpoint/write", json={"value": 80.0}, headers=auth("operator"))
        assert r.status_code == 504 and r.json()["status"] == "timeout", r.text
        for tag in ("press9.pid_gain", "press9.speed_setpoint"):
            r = await client.post(f"/api/v1/tags/{tag}/write", json={"value": 2.0}, headers=auth("engineer"))
            assert r.status_code == 504 and r.json()["status"] == "timeout", r.text
    cur = await conn.execute("SELECT tag, role, status FROM write_audit ORDER BY id")
    assert await cur.fetchall() == [
        ("press9.pid_gain", "operator", "refused"),
        ("press9.speed_setpoint", "operator", "failed"),  # withdrawn after the timeout: it had been queued
        ("press9.pid_gain", "engineer", "failed"),
        ("press9.speed_setpoint", "engineer", "failed"),
    ]
    cur = await conn.execute("SELECT name, write_role FROM tags WHERE name LIKE 'press9.%' ORDER BY name")
    assert await cur.fetchall() == [("press9.pid_gain", "engineer"), ("press9.speed_setpoint", "operator")]
