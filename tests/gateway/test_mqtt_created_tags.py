"""MQTT JSON tags created from topic captures on first sight: the whole gateway, real Mosquitto, real database."""

from __future__ import annotations

import asyncio
import json
import re
import tomllib
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, AsyncIterator

import aiomqtt
import msgspec
import pytest

from gateway.config import GatewayConfig
from gateway.mqtt import MqttSource, MqttSourceConfig
from gateway.service import Gateway
from historian.config import HistorianConfig
from tests.gateway.test_mqtt import broker, broker_is_up, unique  # noqa: F401
from tests.support import ROOT, scalar_of, wait_for_sql

T0_MS = 1_700_000_000_000


def mapping(prefix: str, **extra: Any) -> dict[str, Any]:
    """'<prefix>/{machine}/telemetry': temp (degC, energy via field_meta), count, state; created on first sight."""
    return {
        "topic": prefix + "/{machine}/telemetry",
        "fields": {"data.temp": "{machine}.temp", "data.count": "{machine}.count", "state": "{machine}.state"},
        "timestamp": "ts",
        "create_tags": True,
        "unit": "pcs",
        "field_meta": {"data.temp": {"unit": "degC", "category": "energy"}, "data.count": {"data_type": "int"}},
        **extra,
    }


def gateway_config(
    spool: Path, *, max_created_tags: int = 1000, create: bool = True
) -> tuple[GatewayConfig, str]:
    """A gateway with one MQTT source mapping a fresh topic prefix (with create_tags unless told); and that prefix."""
    host, port = broker()
    prefix = unique("ct")
    json_mapping = mapping(prefix)
    if not create:
        json_mapping = {k: v for k, v in json_mapping.items() if k not in ("create_tags", "unit", "field_meta")}
    config = msgspec.convert(
        {
            "spool": {"directory": str(spool), "segment_bytes": 65536, "max_bytes": 1 << 20},
            "status_interval": 0.2,
            "sources": [{
                "type": "mqtt", "name": "plantbus", "host": host, "port": port, "client_id": unique("gw"),
                "max_created_tags": max_created_tags,
                "json": [json_mapping],
            }],
        },
        GatewayConfig,
    )
    return config, prefix


@asynccontextmanager
async def gateway(config: GatewayConfig, dsn: str, state: Path) -> AsyncIterator[Gateway]:
    """Run the whole gateway until the block ends; entered once it forwards to the historian and is subscribed."""
    gw = Gateway(config, dsn, HistorianConfig(flush_interval=0.05), state)
    task = asyncio.create_task(gw.run())
    try:
        await asyncio.wait_for(gw.ready.wait(), 15)
        for _ in range(300):
            if all(s.status.connected for s in gw.sources):
                break
            await asyncio.sleep(0.05)
        assert all(s.status.connected for s in gw.sources), [s.status.last_error for s in gw.sources]
        yield gw
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, 10)


async def publish(topic: str, body: dict[str, Any]) -> None:
    """Publish one JSON message at QoS 1 (returns after the broker's PUBACK)."""
    host, port = broker()
    async with aiomqtt.Client(host, port, identifier=unique("pub")) as client:
        await client.publish(topic, json.dumps(body).encode(), qos=1)


async def tag_rows(conn: Any) -> dict[str, tuple[Any, ...]]:
    """name -> (machine, category, unit, data_type, source) of every registered tag."""
    cur = await conn.execute(
        "SELECT t.name, m.name, t.category, t.unit, t.data_type, t.source FROM tags t"
        " LEFT JOIN machines m ON m.id = t.machine_id"
    )
    return {name: tuple(rest) for name, *rest in await cur.fetchall()}


# -- configuration ------------------------------------------------------------------------------

BASE = {"topic": "p/{machine}/t", "fields": {"v": "{machine}.v"}}
BAD_CONFIGS = [
    ({"json": [{**BASE, "unit": "degC"}]}, "unit: set, but create_tags is false"),
    ({"json": [{**BASE, "category": "energy"}]}, "category: set, but create_tags is false"),
    ({"json": [{**BASE, "field_meta": {"v": {"unit": "A"}}}]}, "field_meta: set, but create_tags is false"),
    ({"json": [{**BASE, "create_tags": True, "category": "tooling"}]}, "category: 'tooling' is not one of"),
    ({"json": [{**BASE, "create_tags": True, "data_type": "double"}]}, "data_type: 'double' is not one of"),
    ({"json": [{**BASE, "create_tags": True, "machine": "{line}"}]}, "machine: '{line}' uses ['line']"),
    ({"json": [{**BASE, "create_tags": True, "machine": "{machine:>3}"}]}, "machine: "),
    ({"json": [{**BASE, "create_tags": True, "field_meta": {"w": {}}}]}, "field_meta: 'w' is not one of"),
    ({"json": [{**BASE, "create_tags": True, "field_meta": {"v": {"data_type": "dint"}}}]},
     "field_meta.v.data_type: 'dint'"),
    ({"json": [{**BASE, "create_tags": True, "field_meta": {"v": {"category": "x"}}}]}, "field_meta.v.category: 'x'"),
    ({"json": [{**BASE, "create_tags": True, "field_meta": {"v": {"scale": 2}}}]}, "scale"),
    ({"json": [{**BASE, "create_tags": True}], "max_created_tags": 0}, "max_created_tags: must be >= 1, got 0"),
]


@pytest.mark.parametrize(("fields", "message"), BAD_CONFIGS, ids=[m.split(":")[0] for _, m in BAD_CONFIGS])
def test_bad_created_tag_options_are_refused_naming_the_field(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(msgspec.ValidationError, match=re.escape(message)):
        msgspec.convert({"type": "mqtt", "name": "t", **fields}, MqttSourceConfig)


def test_readme_sample_of_created_tags_is_valid() -> None:
    text = (ROOT / "gateway" / "mqtt" / "README.md").read_text()
    samples = [s for s in re.findall(r"```toml\n(.*?)```", text, re.S) if "create_tags" in s]
    assert samples, "gateway/mqtt/README.md has no ```toml sample with create_tags"
    source = msgspec.convert(tomllib.loads(samples[0])["gateway"]["sources"][0], MqttSourceConfig)
    created = [m for m in source.json if m.create_tags]
    assert created and created[0].field_meta
    # what the sample promises for one machine's temperature
    tag = created[0].created_tag("data.temp", "press3.temperature", {"machine": "press3"}, 21.5)
    assert (tag.machine, tag.unit, tag.data_type) == ("press3", "degC", "float")


# -- against the broker and the database --------------------------------------------------------

async def test_without_create_tags_an_unlisted_tag_is_refused_by_the_writer(conn, dsn, tmp_path: Path) -> None:
    """Today's behaviour kept for mappings without the option: the writer dead-letters the unknown tag."""
    config, prefix = gateway_config(tmp_path / "spool", create=False)
    async with gateway(config, dsn, tmp_path):
        await publish(f"{prefix}/press1/telemetry", {"ts": T0_MS, "data": {"temp": 21.5}})
        await wait_for_sql(conn, "SELECT count(*) FROM dead_letters", 1)
    assert await scalar_of(conn, "SELECT reason FROM dead_letters") == "unknown tag 'press1.temp'"
    assert await tag_rows(conn) == {}


async def test_two_machines_create_their_tags_with_metadata_and_samples_are_stored(conn, dsn, tmp_path: Path) -> None:
    config, prefix = gateway_config(tmp_path / "spool")
    async with gateway(config, dsn, tmp_path) as gw:
        await publish(f"{prefix}/press1/telemetry",
                      {"ts": T0_MS, "data": {"temp": 21.5, "count": 7}, "state": "run"})
        await publish(f"{prefix}/press2/telemetry", {"ts": T0_MS, "data": {"temp": 30, "count": 1}})
        await publish(f"{prefix}/press1/telemetry", {"ts": T0_MS + 1000, "data": {"temp": 22.25, "count": 8}})
        await wait_for_sql(conn, "SELECT count(*) FROM samples_named", 6)
        await wait_for_sql(conn, "SELECT string_agg(e.value, ',') FROM events e JOIN tags t ON t.id = e.tag_id"
                                 " WHERE t.name = 'press1.state'", "run")
        source = gw.sources[0]
        assert isinstance(source, MqttSource)
        assert sorted(source.created_tags) == [
            "press1.count", "press1.state", "press1.temp", "press2.count", "press2.temp"
        ]
        assert source.status.tags_total == 5
    tags = await tag_rows(conn)
    assert tags == {
        "press1.temp": ("press1", "energy", "degC", "float", "plantbus"),
        "press1.count": ("press1", "machine", "pcs", "int", "plantbus"),
        "press1.state": ("press1", "machine", "pcs", "text", "plantbus"),
        "press2.temp": ("press2", "energy", "degC", "float", "plantbus"),
        "press2.count": ("press2", "machine", "pcs", "int", "plantbus"),
    }
    cur = await conn.execute("SELECT tag, value, extract(epoch FROM ts) * 1000 FROM samples_named ORDER BY tag, ts")
    assert [(t, v, int(ms)) for t, v, ms in await cur.fetchall()] == [
        ("press1.count", 7, T0_MS), ("press1.count", 8, T0_MS + 1000),
        ("press1.temp", 21.5, T0_MS), ("press1.temp", 22.25, T0_MS + 1000),
        ("press2.count", 1, T0_MS), ("press2.temp", 30, T0_MS),
    ]
    assert await scalar_of(conn, "SELECT count(*) FROM dead_letters") == 0


async def test_past_the_cap_new_tags_are_dead_lettered_and_created_ones_keep_flowing(conn, dsn, tmp_path: Path) -> None:
    config, prefix = gateway_config(tmp_path / "spool", max_created_tags=2)
    async with gateway(config, dsn, tmp_path) as gw:
        await publish(f"{prefix}/press1/telemetry", {"ts": T0_MS, "data": {"temp": 21.5, "count": 7}})
        await wait_for_sql(conn, "SELECT count(*) FROM samples_named", 2)
        # a third tag of a known machine, then a new machine: nothing more may be created
        await publish(f"{prefix}/press1/telemetry", {"ts": T0_MS + 1000, "data": {"temp": 22.0}, "state": "run"})
        await publish(f"{prefix}/press2/telemetry", {"ts": T0_MS + 1000, "data": {"temp": 40.0, "count": 3}})
        await publish(f"{prefix}/press1/telemetry", {"ts": T0_MS + 2000, "data": {"temp": 23.0, "count": 9}})
        await wait_for_sql(conn, "SELECT count(*) FROM dead_letters", 2)
        await wait_for_sql(conn, "SELECT count(*) FROM samples_named", 5)
        status = gw.sources[0].status
        assert status.dead_letters_total == 2
        assert "max_created_tags (2) reached: 3 readings of new tags dead-lettered" in status.last_error
        await wait_for_sql(conn, "SELECT dead_letters_total FROM sources WHERE name = 'plantbus'", 2)
    assert sorted(await tag_rows(conn)) == ["press1.count", "press1.temp"]
    cur = await conn.execute(
        "SELECT source, reason, payload->>'topic', payload->>'payload' FROM dead_letters ORDER BY id"
    )
    letters = await cur.fetchall()
    assert [r[1] for r in letters] == [
        f"{prefix}/press1/telemetry: tag 'press1.state' not created: max_created_tags (2) of source plantbus reached",
        f"{prefix}/press2/telemetry: tags 'press2.temp', 'press2.count' not created:"
        " max_created_tags (2) of source plantbus reached",
    ]
    assert {r[0] for r in letters} == {"plantbus"}
    # the whole message is kept, so nothing is lost: the refused values can be replayed once the cap is raised
    assert json.loads(letters[1][3]) == {"ts": T0_MS + 1000, "data": {"temp": 40.0, "count": 3}}
    assert letters[1][2] == f"{prefix}/press2/telemetry"
    cur = await conn.execute("SELECT tag, value FROM samples_named ORDER BY tag, ts")
    assert await cur.fetchall() == [
        ("press1.count", 7), ("press1.count", 9), ("press1.temp", 21.5), ("press1.temp", 22.0), ("press1.temp", 23.0)
    ]


async def test_a_restarted_gateway_keeps_the_created_tags(conn, dsn, tmp_path: Path) -> None:
    config, prefix = gateway_config(tmp_path / "spool", max_created_tags=2)
    async with gateway(config, dsn, tmp_path):
        await publish(f"{prefix}/oven1/telemetry", {"ts": T0_MS, "data": {"temp": 180.5, "count": 1}})
        await wait_for_sql(conn, "SELECT count(*) FROM samples_named", 2)
    before = await tag_rows(conn)
    ids = await scalar_of(conn, "SELECT array_agg(id ORDER BY name) FROM tags")
    assert sorted(before) == ["oven1.count", "oven1.temp"]
    async with gateway(config, dsn, tmp_path) as gw:
        await publish(f"{prefix}/oven1/telemetry", {"ts": T0_MS + 1000, "data": {"temp": 181.0, "count": 2}})
        await wait_for_sql(conn, "SELECT count(*) FROM samples_named", 4)
        # the cap still holds after the restart
        await publish(f"{prefix}/oven2/telemetry", {"ts": T0_MS + 1000, "data": {"temp": 20.0}})
        await wait_for_sql(conn, "SELECT count(*) FROM dead_letters", 1)
        assert sorted(gw.sources[0].created_tags) == ["oven1.count", "oven1.temp"]  # type: ignore[attr-defined]
    assert await tag_rows(conn) == before
    assert await scalar_of(conn, "SELECT array_agg(id ORDER BY name) FROM tags") == ids
    cur = await conn.execute("SELECT tag, value FROM samples_named ORDER BY tag, ts")
    assert await cur.fetchall() == [
        ("oven1.count", 1), ("oven1.count", 2), ("oven1.temp", 180.5), ("oven1.temp", 181.0)
    ]
