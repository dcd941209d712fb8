"""The whole gateway on real parts: Modbus plant -> gateway -> spool -> historian, health, write-back over HTTP."""

import asyncio
from pathlib import Path

import msgspec
import pytest
import httpx
import uvicorn
from litestar.testing import AsyncTestClient

from api.app import create_app
from api.config import ApiConfig, ApiUser
from gateway.config import GatewayConfig
from gateway.service import Gateway
from historian.config import HistorianConfig
from historian.registry import TagSpec, register
from plant.modbus_server import ModbusPlant
from tests.api_keys import api_config, auth
from tests.historian.helpers import scalar
from tests.support import wait_for_sql, wait_until

OPERATOR = ApiUser(name="olga", key="operator-key-0123456789", role="operator")
VIEWER = ApiUser(name="vic", key="viewer-key-0123456789ab", role="viewer")


def gateway_config(port: int, spool: Path) -> GatewayConfig:
    return msgspec.convert(
        {
            "spool": {"directory": str(spool), "segment_bytes": 65536, "max_bytes": 1 << 20},
            "status_interval": 0.2,
            "sources": [
                {
                    "type": "modbus", "name": "lathe", "host": "127.0.0.1", "port": port, "poll_interval": 0.1,
                    "tags": [
                        {"name": "lathe.temperature", "table": "holding", "address": 100, "type": "int16",
                         "scale": 0.1, "unit": "degC", "machine": "lathe7"},
                        {"name": "lathe.speed_setpoint", "table": "holding", "address": 101, "type": "uint16",
                         "writable": True, "write_role": "operator", "machine": "lathe7", "category": "method"},
                        {"name": "lathe.run", "table": "coil", "address": 0, "writable": True, "write_role": "operator",
                         "machine": "lathe7"},
                        {"name": "meter.voltage", "table": "input", "address": 0, "type": "float32",
                         "category": "energy", "deadband": 5.0},
                    ],
                }
            ],
        },
        GatewayConfig,
    )


@pytest.fixture
async def running(conn, dsn, tmp_path: Path):
    async with ModbusPlant(port=0, simulate=False) as plant:
        gw = Gateway(gateway_config(plant.port, tmp_path / "spool"), dsn,
                     HistorianConfig(flush_interval=0.05), tmp_path)
        task = asyncio.create_task(gw.run())
        await asyncio.wait_for(gw.ready.wait(), 15)
        # a real HTTP server in this event loop: the gateway must keep running while a request waits
        api = create_app(dsn, ApiConfig(users=[OPERATOR, VIEWER], write_timeout=5.0), pool_size=2)
        server = uvicorn.Server(uvicorn.Config(api, host="127.0.0.1", port=0, log_level="warning"))
        serving = asyncio.create_task(server.serve())
        await wait_until(lambda: server.started, timeout=15, what="the API server to start")
        port = server.servers[0].sockets[0].getsockname()[1]
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=20) as client:
            yield plant, gw, client
        server.should_exit = True
        await serving
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, 10)  # the gateway stops when asked, promptly


async def test_device_values_reach_the_historian_with_gateway_timestamps(running, conn):
    plant, _, _ = running
    plant.set("machine.temperature", 81.5)
    await wait_for_sql(conn, "SELECT count(*) > 0 FROM samples_named WHERE tag = 'lathe.temperature' AND value = 81.5",
                       True)
    assert await scalar(conn, "SELECT timestamp_source FROM tags WHERE name = 'lathe.temperature'") == "gateway"
    assert await scalar(conn, "SELECT machine FROM tag_list WHERE name = 'lathe.temperature'") == "lathe7"
    assert await scalar(conn, "SELECT value FROM samples_named WHERE tag = 'lathe.run' ORDER BY ts DESC LIMIT 1") == 1.0


async def test_deadband_keeps_small_moves_out(running, conn):
    plant, _, _ = running
    plant.set("meter.voltage", 400.0)
    await wait_for_sql(conn, "SELECT count(*) > 0 FROM samples_named WHERE tag = 'meter.voltage'", True)
    for v in (401.0, 402.0, 403.0):  # inside the 5 V deadband
        polls = plant.function_codes[4]
        plant.set("meter.voltage", v)
        # read by the gateway (two polls of the input registers since), and kept out
        await wait_until(lambda: plant.function_codes[4] >= polls + 2, timeout=10, what=f"the gateway to poll {v} V")
    plant.set("meter.voltage", 410.0)
    await wait_for_sql(conn, "SELECT count(*) > 0 FROM samples_named WHERE tag = 'meter.voltage' AND value = 410", True)
    cur = await conn.execute("SELECT value FROM samples_named WHERE tag = 'meter.voltage' ORDER BY ts")
    assert [v for (v,) in await cur.fetchall()] == [400.0, 410.0]


async def test_sources_health_is_served(running, conn):
    _, _, client = running
    # connected comes with the connection, readings_total once the first poll is spooled: wait for both
    await wait_for_sql(conn, "SELECT connected AND readings_total > 0 FROM sources WHERE name = 'lathe'", True)
    r = await client.get("/api/v1/sources", headers={"X-API-Key": VIEWER.key})
    (lathe,) = r.json()
    assert lathe["kind"] == "modbus" and lathe["connected"] and lathe["readings_total"] > 0
    metrics = (await client.get("/metrics", headers={"X-API-Key": VIEWER.key})).text
    assert 'shopfloor_source_connected{kind="modbus",source="lathe"} 1' in metrics
    assert "shopfloor_spool_records" in metrics


async def test_write_back_over_http_with_roles_and_audit(running, conn):
    plant, _, client = running
    url = "/api/v1/tags/lathe.speed_setpoint/write"
    r = await client.post(url, json={"value": 1750}, headers={"Authorization": f"Bearer {OPERATOR.key}"})
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "done"
    assert plant.get("machine.speed_setpoint") == 1750
    r = await client.post("/api/v1/tags/lathe.run/write", json={"value": False}, headers={"X-API-Key": OPERATOR.key})
    assert r.status_code == 200 and plant.get("machine.run") is False

    # read-only tag: 403, nothing written, and the attempt is in the audit trail
    before = plant.get("machine.temperature")
    r = await client.post("/api/v1/tags/lathe.temperature/write", json={"value": 99},
                          headers={"Authorization": f"Bearer {OPERATOR.key}"})
    assert r.status_code == 403 and "not writable" in r.json()["detail"]
    assert plant.get("machine.temperature") == before
    # a viewer may not write, an unknown key is not let in
    r = await client.post(url, json={"value": 1}, headers={"Authorization": f"Bearer {VIEWER.key}"})
    assert r.status_code == 403 and "viewer" in r.json()["detail"]
    r = await client.post(url, json={"value": 1}, headers={"Authorization": "Bearer nope"})
    assert r.status_code == 401
    assert plant.get("machine.speed_setpoint") == 1750
    r = await client.post("/api/v1/tags/no.such/write", json={"value": 1}, headers={"X-API-Key": OPERATOR.key})
    assert r.status_code == 404
    cur = await conn.execute("SELECT tag, value, requested_by, role, status FROM write_audit ORDER BY id")
    assert await cur.fetchall() == [
        ("lathe.speed_setpoint", 1750, "olga", "operator", "done"),
        ("lathe.run", False, "olga", "operator", "done"),
        ("lathe.temperature", 99, "olga", "operator", "refused"),
    ]


async def test_write_back_failed_at_the_device_answers_502(running, conn):
    plant, _, client = running
    before = plant.get("machine.speed_setpoint")
    plant.fail("holding", 101)  # the device answers the write with exception 4 (server device failure)
    try:
        r = await client.post("/api/v1/tags/lathe.speed_setpoint/write", json={"value": 1234},
                              headers={"X-API-Key": OPERATOR.key})
    finally:
        plant.recover()
    assert r.status_code == 502, r.text
    body = r.json()
    assert body["status"] == "failed" and body["detail"]
    assert plant.get("machine.speed_setpoint") == before
    cur = await conn.execute("SELECT status, detail FROM write_audit WHERE tag = 'lathe.speed_setpoint'")
    assert await cur.fetchall() == [("failed", body["detail"])]


async def test_write_back_with_no_gateway_answers_504_and_withdraws_the_request(conn, dsn):
    await register(conn, [TagSpec("press.setpoint", "method", writable=True, write_role="operator")])
    app = create_app(dsn, api_config(write_timeout=0.5), pool_size=2)
    async with AsyncTestClient(app=app) as client:
        r = await client.post("/api/v1/tags/press.setpoint/write", json={"value": 5}, headers=auth("operator"))
    assert r.status_code == 504, r.text
    assert r.json()["status"] == "timeout" and "no gateway carried it out within 0.5 s" in r.json()["detail"]
    # withdrawn: a gateway starting later must not carry out a write the caller was told timed out
    cur = await conn.execute("SELECT status FROM write_requests")
    assert await cur.fetchall() == [("failed",)]
