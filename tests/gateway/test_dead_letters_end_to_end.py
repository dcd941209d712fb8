"""Bad input from a device ends as dead-letter rows in the historian, and the source keeps running."""

import asyncio
from pathlib import Path

import msgspec
import pytest

from gateway.config import GatewayConfig
from gateway.service import Gateway
from historian.config import HistorianConfig
from tests.gateway.test_mqtt import broker, plant, unique
from tests.historian.helpers import scalar
from tests.support import wait_for_sql


async def test_malformed_json_bad_sparkplug_and_unknown_alias_become_dead_letter_rows(conn, dsn, tmp_path: Path):
    host, port = broker()
    group, prefix = unique("g"), unique("j")
    config = msgspec.convert(
        {
            "spool": {"directory": str(tmp_path / "spool"), "segment_bytes": 65536, "max_bytes": 1 << 20},
            "sources": [{
                "type": "mqtt", "name": "broker", "host": host, "port": port, "client_id": unique("gw"),
                "json": [{"topic": f"{prefix}/{{machine}}/telemetry", "fields": {"data.temp": "{machine}.temp"}}],
                "tags": [{"name": "oven7.temp", "unit": "degC", "machine": "oven7"}],
                "sparkplug": [{"group_id": group, "device_tag": "{device}.{metric}"}],
            }],
        },
        GatewayConfig,
    )
    gw = Gateway(config, dsn, HistorianConfig(flush_interval=0.05), tmp_path)
    task = asyncio.create_task(gw.run())
    await asyncio.wait_for(gw.ready.wait(), 15)

    async def until(sql: str, expected) -> None:
        await wait_for_sql(conn, sql, expected)

    async with plant(group_id=group, devices=["press9"], json_prefix=prefix) as p:
        await until("SELECT count(*) > 0 FROM samples_named WHERE tag = 'press9.Temperature'", True)
        await p.publish_raw(f"{prefix}/oven7/telemetry", b'{"data": {"temp": 21.5')  # cut short
        await p.publish_raw(f"spBv1.0/{group}/DDATA/line1/press9", b"\xff\xfe not protobuf")
        p.add_metric("press9", "Torque", "Double")  # an alias its births never announced
        await p.ddata("press9", {"Torque": 7.5})
        await p.publish_json("oven7", {"temp": 22.0})  # and good data still flows
        await until("SELECT count(*) FROM dead_letters", 3)
        await until("SELECT count(*) FROM samples_named WHERE tag = 'oven7.temp' AND value = 22", 1)
    cur = await conn.execute("SELECT source, reason FROM dead_letters ORDER BY id")
    rows = await cur.fetchall()
    assert {s for s, _ in rows} == {"broker"}
    reasons = " | ".join(r for _, r in rows)
    assert "JSON" in reasons or "json" in reasons
    assert "decode" in reasons
    assert "unknown alias" in reasons
    payload_topics = await scalar(conn, "SELECT array_agg(payload->>'topic' ORDER BY id) FROM dead_letters")
    assert payload_topics[0] == f"{prefix}/oven7/telemetry"
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 10)
