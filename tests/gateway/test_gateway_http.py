"""`shopfloor gateway run` serves /health and /metrics: the real command, scraped over loopback."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import aiomqtt
import httpx
import msgspec
import pytest

from gateway.config import GatewayConfig
from gateway.http import HttpConfig
from tests.gateway.interop.peers import free_port
from tests.support import ROOT, mqtt_broker, scalar_of, wait_for_sql, wait_until

T0_MS = 1_795_000_000_000


@pytest.fixture
def backend() -> str:
    """The process's wiring, not the database flavour: one backend."""
    return "timescaledb"


def write_config(path: Path, root: str, http_port: int, extra_source: str = "") -> Path:
    """A shopfloor.toml with one MQTT JSON source on the test broker and [gateway.http] on http_port."""
    host, port = mqtt_broker()
    path.write_text(f"""
[gateway]
status_interval = 0.2
[gateway.http]
port = {http_port}
[gateway.spool]
directory = "{path.parent / 'spool'}"
[[gateway.sources]]
type = "mqtt"
name = "broker"
host = "{host}"
port = {port}
[[gateway.sources.json]]
topic = "{root}/{{machine}}/telemetry"
timestamp = "ts"
fields = {{ v = "{{machine}}.v" }}
[[gateway.sources.tags]]
name = "m1.v"
machine = "m1"
{extra_source}""")
    return path


@contextmanager
def gateway_run(config: Path, dsn: str, state: Path) -> Iterator[subprocess.Popen[str]]:
    """`shopfloor gateway run` as its own process; stopped with SIGINT (Ctrl-C) at the end."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "SHOPFLOOR_STATE": str(state)}
    proc = subprocess.Popen([sys.executable, "-m", "shopfloor.cli", "--config", str(config), "--dsn", dsn,
                             "gateway", "run"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)  # fmt: skip
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


async def publish(root: str, n: int) -> None:
    """n telemetry messages of m1 at QoS 1."""
    host, port = mqtt_broker()
    async with aiomqtt.Client(host, port) as client:
        for i in range(n):
            await client.publish(f"{root}/m1/telemetry", json.dumps({"ts": T0_MS + i, "v": float(i)}), qos=1)


def metric(text: str, name: str, **labels: str) -> float:
    """One sample of the Prometheus text: the line of that name whose labels include these."""
    for line in text.splitlines():
        if line.startswith(name) and all(f'{k}="{v}"' in line for k, v in labels.items()):
            head, _, value = line.rpartition(" ")
            if head.split("{")[0] == name:
                return float(value)
    raise AssertionError(f"{name} {labels} not in /metrics")


def test_http_is_on_loopback_by_default_and_the_port_is_checked() -> None:
    assert msgspec.convert({}, GatewayConfig).http == HttpConfig(enabled=True, host="127.0.0.1", port=9108)
    with pytest.raises(msgspec.ValidationError, match=r"port must be 0..65535.*\$\.http"):
        msgspec.convert({"http": {"port": 70000}}, GatewayConfig)
    with pytest.raises(msgspec.ValidationError, match="bind"):
        msgspec.convert({"http": {"bind": "0.0.0.0"}}, GatewayConfig)


async def test_gateway_run_serves_health_and_metrics(conn, dsn, tmp_path: Path) -> None:
    root = f"gwhttp{uuid.uuid4().hex[:8]}"
    port = free_port()
    # a second source whose device is not there: the gateway is up, but degraded, and says which
    dead = free_port()
    modbus = f"""
[[gateway.sources]]
type = "modbus"
name = "absent-plc"
host = "127.0.0.1"
port = {dead}
poll_interval = 0.2
tags = [{{name = "plc.x", table = "holding", address = 0, type = "uint16"}}]
"""
    config = write_config(tmp_path / "shopfloor.toml", root, port, modbus)
    base = f"http://127.0.0.1:{port}"
    with gateway_run(config, dsn, tmp_path / "state") as proc:
        async with httpx.AsyncClient(base_url=base, timeout=5) as http:

            async def forwarding() -> bool:
                assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
                try:
                    r = await http.get("/health")
                except httpx.HTTPError:
                    return False
                return r.json()["historian"] == "forwarding" and r.json()["sources"][0]["connected"]

            await wait_until(forwarding, timeout=30, what="the gateway's /health to show it forwarding")
            await publish(root, 25)
            await wait_for_sql(conn, "SELECT count(*) FROM samples", 25, timeout=20)

            async def counted() -> bool:
                text = (await http.get("/metrics")).text
                return metric(text, "shopfloor_source_readings_total", source="broker") == 25

            await wait_until(counted, timeout=10, what="/metrics to count the 25 readings")
            r = await http.get("/metrics")
            assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
            text = r.text
            assert metric(text, "shopfloor_spool_dropped_samples") == 0
            assert metric(text, "shopfloor_source_connected", source="broker", kind="mqtt") == 1
            assert metric(text, "shopfloor_source_connected", source="absent-plc") == 0
            assert metric(text, "shopfloor_source_readings_per_second", source="broker") >= 0
            assert metric(text, "shopfloor_source_tags_live", source="broker") == 1

            r = await http.get("/health")
            assert r.status_code == 503 and r.headers["cache-control"] == "no-store"
            health = r.json()
            assert health["status"] == "degraded" and health["historian"] == "forwarding"
            assert health["spool"]["dropped_samples"] == 0
            broker, plc = health["sources"]
            assert broker["name"] == "broker" and broker["connected"] and broker["readings_total"] == 25
            assert broker["tags_total"] == 1 and broker["tags_live"] == 1 and broker["tags_failed"] == 0
            assert plc["name"] == "absent-plc" and not plc["connected"] and plc["last_error"]

            assert (await http.get("/api/v1/sources")).status_code == 404
            assert (await http.post("/health")).status_code == 405
            assert (await http.head("/metrics")).content == b""
            # Ctrl-C stops it promptly although one of its devices is gone (its source keeps reconnecting)
            proc.send_signal(signal.SIGINT)
            assert proc.wait(timeout=15) == 0, proc.stdout.read() if proc.stdout else ""
        assert await scalar_of(conn, "SELECT count(*) FROM samples") == 25


async def test_a_taken_port_is_logged_and_the_gateway_still_collects(conn, dsn, tmp_path: Path) -> None:
    root = f"gwhttp{uuid.uuid4().hex[:8]}"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        config = write_config(tmp_path / "shopfloor.toml", root, port)
        with gateway_run(config, dsn, tmp_path / "state") as proc:

            async def subscribed() -> bool:
                assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
                return await scalar_of(conn, "SELECT connected FROM sources WHERE name = 'broker'") is True

            await wait_until(subscribed, timeout=30, what="the gateway's MQTT source to connect")
            await publish(root, 5)
            await wait_for_sql(conn, "SELECT count(*) FROM samples", 5, timeout=20)
            proc.send_signal(signal.SIGINT)
            out, _ = proc.communicate(timeout=15)
    assert f"gateway HTTP not served: [gateway.http] 127.0.0.1:{port}:" in out
    assert "Address already in use" in out
