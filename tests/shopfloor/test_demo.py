"""The README's first command: embedded PostgreSQL, the plant, the gateway reading it, and the API."""

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import pytest

from historian.embedded import EmbeddedPostgres
from tests.conftest import _services_env

ROOT = Path(__file__).resolve().parents[2]
KEY = "demo-test-operator-key-0123"
AUTH = {"Authorization": f"Bearer {KEY}"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def state_dir():
    # not under pytest's tmp_path: as root the server runs as nobody, who cannot enter /tmp/pytest-of-root
    d = Path(tempfile.mkdtemp(prefix="shopfloor-demo-"))
    d.chmod(0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def test_demo_runs_plant_gateway_historian_and_api(state_dir: Path):
    ports = {name: free_port() for name in ("api", "pg", "opcua", "modbus")}
    mqtt = os.environ.get("SHOPFLOOR_TEST_MQTT") or _services_env().get("SHOPFLOOR_TEST_MQTT", "mqtt://127.0.0.1:1883")
    mqtt_host, mqtt_port = mqtt.removeprefix("mqtt://").split(":")
    config = state_dir / "shopfloor.toml"
    config.write_text(
        f"[historian]\nembedded_port = {ports['pg']}\nflush_interval = 0.2\n"
        f"[api]\nport = {ports['api']}\n[[api.users]]\nname = \"tester\"\nkey = \"{KEY}\"\nrole = \"operator\"\n"
        f"[plant]\nopcua_port = {ports['opcua']}\nmodbus_port = {ports['modbus']}\n"
        f"mqtt_host = \"{mqtt_host}\"\nmqtt_port = {mqtt_port}\nspeedup = 30.0\ntick = 0.5\n"
    )
    env = {**os.environ, "SHOPFLOOR_STATE": str(state_dir)}
    env.pop("SHOPFLOOR_DSN", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "shopfloor.cli", "--config", str(config), "demo"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    base = f"http://127.0.0.1:{ports['api']}"
    wanted = ["lathe1.temperature", "meter.power", "oven1.Temperature", "press1.lot", "press1.temperature",
              "press2.good_count"]
    try:
        deadline = time.monotonic() + 120
        latest: dict = {}
        sources: dict = {}
        while time.monotonic() < deadline:
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
            try:
                rows = httpx.get(headers=AUTH, url=f"{base}/api/v1/tags/latest", params={"tag": wanted}).json()
                latest = {r["tag"]: r for r in rows} if isinstance(rows, list) else {}
                sources = {s["name"]: s for s in httpx.get(headers=AUTH, url=f"{base}/api/v1/sources").json()}
                if len(latest) == len(wanted) and latest["press1.lot"]["value"] and len(sources) == 3:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        assert sorted(latest) == wanted
        # press temperatures replay C-MAPSS T50 (about 1400-1440 degR, i.e. 505-530 degC)
        assert 490 < latest["press1.temperature"]["value"] < 540
        assert latest["press1.lot"]["value"].startswith("LOT-")
        assert all(s["connected"] for s in sources.values()), sources
        assert 490 < latest["oven1.Temperature"]["value"] < 540  # Sparkplug B, learned from the oven's birth
        r = httpx.post(f"{base}/api/v1/tags/press1.speed_setpoint/write", json={"value": 80.0},
                       headers={"Authorization": f"Bearer {KEY}"}, timeout=20)
        assert r.status_code == 200 and r.json()["status"] == "done", r.text
        assert httpx.get(f"{base}/health").json()["database"] == "postgresql"
        # the twin mirrors the machines: ISO 22400 states, part counts, and the presses' RUL from its model
        machines: dict = {}
        while time.monotonic() < deadline + 60:
            machines = {m["name"]: m for m in httpx.get(headers=AUTH, url=f"{base}/api/v1/machines").json()}
            if len(machines) == 3 and all("rul" in machines[p]["predictions"] for p in ("press1", "press2")) \
                    and machines["press1"]["good_total"] > 0 and "failure" in machines["lathe1"]["predictions"]:
                break
            time.sleep(0.5)
        assert sorted(machines) == ["lathe1", "press1", "press2"], machines
        assert {m["state"] for m in machines.values()} <= {"producing", "idle", "setup", "unplanned_down",
                                                            "planned_down"}
        rul = machines["press1"]["predictions"]["rul"]
        assert rul["model"] == "rul_FD001" and len(rul["sha256"]) == 64 and 0 <= rul["value"] <= 200, rul
        assert "press1.temperature" in machines["press1"]["sensors"]
        failure = machines["lathe1"]["predictions"]["failure"]
        assert failure["model"] == "failure" and 0.0 <= failure["probability"] <= 1.0, failure
        # ISO 22400 KPIs over what the twin recorded, with the demo routings' planned cycle times
        (kpi,) = httpx.get(headers=AUTH, url=f"{base}/api/v1/kpi", params={"machine": "press1", "start": "2020-01-01T00:00:00Z",
                                                           "end": "2100-01-01T00:00:00Z"}).json()
        assert kpi["pq"] > 0 and kpi["apt_s"] > 0 and 0 < kpi["availability"] <= 1, kpi
        assert kpi["effectiveness"] is not None and kpi["oee"] is not None, kpi
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
        EmbeddedPostgres(state_dir, ports["pg"]).stop()
