"""The whole gateway started while the database is unreachable: it collects, spools, and forwards once it is back."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path

import aiomqtt
import msgspec
from psycopg import conninfo

from gateway.config import GatewayConfig
from gateway.service import Gateway
from historian.config import HistorianConfig
from tests.gateway.dbproxy import CuttableProxy
from tests.support import mqtt_broker, running, scalar_of, wait_for_sql, wait_until

T0_MS = 1_795_000_000_000  # 2026-11-18


def via_proxy(dsn: str, proxy: CuttableProxy) -> str:
    """The DSN through the proxy."""
    params = conninfo.conninfo_to_dict(dsn)
    params.update(host="127.0.0.1", port=str(proxy.port), connect_timeout="2")
    return conninfo.make_conninfo(**params)  # type: ignore[arg-type]


def mqtt_gateway(topic_root: str, spool: Path, **spool_options: int) -> GatewayConfig:
    """One MQTT JSON source on the test broker, with a persistent session so nothing is lost in between."""
    host, port = mqtt_broker()
    return msgspec.convert({
        "spool": {"directory": str(spool), **spool_options},
        "status_interval": 0.2,
        "sources": [{
            "type": "mqtt", "name": "broker", "host": host, "port": port, "qos": 1,
            "client_id": f"gw-{topic_root}", "clean_start": False,
            "json": [{"topic": f"{topic_root}/{{machine}}/telemetry", "timestamp": "ts",
                      "fields": {"v": "{machine}.v"}}],
            "tags": [{"name": "m1.v", "machine": "m1"}],
        }],
    }, GatewayConfig)


async def publish(topic_root: str, n: int, start: int = 0) -> None:
    """n telemetry messages at QoS 1, value i at T0 + i ms."""
    host, port = mqtt_broker()
    async with aiomqtt.Client(host, port) as client:
        for i in range(start, start + n):
            await client.publish(f"{topic_root}/m1/telemetry", json.dumps({"ts": T0_MS + i, "v": float(i)}), qos=1)


async def test_gateway_starts_and_spools_while_the_database_is_away(conn, dsn, tmp_path: Path) -> None:
    params = conninfo.conninfo_to_dict(dsn)
    proxy = CuttableProxy(params.get("host", "127.0.0.1"), int(params.get("port", 5432)))
    await proxy.start()
    await proxy.cut()  # the port is known, nothing listens: a database host that is down
    root = f"away{uuid.uuid4().hex[:8]}"
    gw = Gateway(mqtt_gateway(root, tmp_path / "spool"), via_proxy(dsn, proxy),
                 HistorianConfig(flush_interval=0.05), tmp_path)
    src = gw.sources[0]
    n = 500
    try:
        async with running(gw.run(), ready=lambda: gw.collecting.is_set() and src.status.connected):
            await publish(root, n)
            await wait_until(lambda: src.status.readings_total == n, what="every message spooled")
            assert not gw.ready.is_set() and gw.spool.depth > 0
            assert await scalar_of(conn, "SELECT count(*) FROM tags WHERE name = 'm1.v'") == 0
            await proxy.start()  # the database is back
            await wait_until(gw.ready.is_set, timeout=20, what="tags registered after the outage")
            await wait_for_sql(conn, "SELECT count(*) FROM samples_named WHERE tag = 'm1.v'", n, timeout=30)
            cur = await conn.execute("SELECT (extract(epoch FROM ts) * 1000)::bigint, value FROM samples_named "
                                     "WHERE tag = 'm1.v' ORDER BY ts")
            assert await cur.fetchall() == [(T0_MS + i, float(i)) for i in range(n)]
    finally:
        await proxy.cut()
