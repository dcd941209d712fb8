"""The README's first command: embedded PostgreSQL, the plant, the gateway, the twin and the API; stopped whole."""

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from historian.embedded import EmbeddedPostgres
from tests.conftest import _services_env

ROOT = Path(__file__).resolve().parents[2]
KEY = "demo-test-operator-key-0123"
MACHINES = ["lathe1", "oven1", "press1", "press2"]


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


def processes_using(path: Path) -> list[str]:
    """Command lines of running processes that mention `path` (the embedded server's data folder)."""
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if str(path) in cmd:
                found.append(cmd)
    return found


def until(condition, timeout: float, what: str):  # type: ignore[no-untyped-def]
    """Poll `condition` until it returns something truthy; fail naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            last = condition()
            if last:
                return last
        except httpx.HTTPError as e:
            last = e
        time.sleep(0.5)
    raise AssertionError(f"{what} not within {timeout} s; last: {last!r}")


def start_demo(config: Path, state_dir: Path) -> subprocess.Popen:
    """The demo as the user starts it; its output lines gather in `proc.lines` as they are printed."""
    env = {**os.environ, "SHOPFLOOR_STATE": str(state_dir), "PYTHONUNBUFFERED": "1"}
    env.pop("SHOPFLOOR_DSN", None)
    proc = subprocess.Popen([sys.executable, "-m", "shopfloor.cli", "--config", str(config), "demo", "--speed", "20"],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    proc.lines = []  # type: ignore[attr-defined]
    proc.reader = threading.Thread(target=lambda: proc.lines.extend(proc.stdout), daemon=True)  # type: ignore[attr-defined]
    proc.reader.start()  # type: ignore[attr-defined]
    return proc


def output(proc: subprocess.Popen) -> str:
    """Everything the demo printed, once it has ended."""
    proc.reader.join(timeout=10)  # type: ignore[attr-defined]
    return "".join(proc.lines)  # type: ignore[attr-defined]


def stop_demo(proc: subprocess.Popen, sig: int) -> str:
    proc.send_signal(sig)
    proc.wait(timeout=60)
    return output(proc)


def command_center_follows_the_demo(base: str, password: str) -> None:
    """Debian's Chromium signs in as the demo's user: every machine's tile is updated live by the stream."""
    from playwright.sync_api import sync_playwright

    from tests.web.test_browser import ARTIFACTS, FLAGS, chromium

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium(), args=FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 800}, base_url=base)
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto("/")
            page.fill("input[name=name]", "demo")
            page.fill("input[name=password]", password)
            page.click("button[type=submit]")
            page.wait_for_selector("#live.on")
            # a tile per machine, none for the Sparkplug edge node (its own metrics belong to no machine)
            assert sorted(page.eval_on_selector_all(".tile", "ts => ts.map(t => t.dataset.machine)")) == MACHINES
            # the twin's changes arrive over the stream: each machine's tile is rewritten by an event, no reload
            live = " && ".join(f"document.querySelector('.tile[data-machine=\"{m}\"][data-event]')" for m in MACHINES)
            page.wait_for_function(f"() => !!({live})", timeout=30_000)
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "demo-overview.png"), full_page=True)
            assert errors == [], errors
        finally:
            browser.close()


def test_demo_makes_parts_and_kpis_within_30s_and_stops_everything_it_started(state_dir: Path):
    ports = {name: free_port() for name in ("api", "pg", "opcua", "modbus")}
    mqtt = os.environ.get("SHOPFLOOR_TEST_MQTT") or _services_env().get("SHOPFLOOR_TEST_MQTT", "mqtt://127.0.0.1:1883")
    mqtt_host, mqtt_port = mqtt.removeprefix("mqtt://").split(":")
    config = state_dir / "shopfloor.toml"
    config.write_text(
        f"[historian]\nembedded_port = {ports['pg']}\nflush_interval = 0.2\n"
        f"[api]\nport = {ports['api']}\n[[api.users]]\nname = \"tester\"\nkey = \"{KEY}\"\nrole = \"operator\"\n"
        f"[plant]\nopcua_port = {ports['opcua']}\nmodbus_port = {ports['modbus']}\n"
        f"mqtt_host = \"{mqtt_host}\"\nmqtt_port = {mqtt_port}\ntick = 0.5\ncamera_folder = \"camera/press1\"\n"
    )
    base = f"http://127.0.0.1:{ports['api']}"
    api = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {KEY}"}, timeout=20)
    pg_data = EmbeddedPostgres(state_dir, ports["pg"]).data_dir
    proc = start_demo(config, state_dir)
    started = datetime.now(UTC)
    try:
        api_up = until(lambda: proc.poll() is None and api.get("/health").status_code == 200 and time.monotonic(),
                       90, "the API")
        assert proc.poll() is None
        # within 30 s of the API answering: every machine of the configuration is in the twin and makes parts
        machines = until(lambda: (ms := {m["name"]: m for m in api.get("/api/v1/machines").json()})
                         and sorted(ms) == MACHINES and all(m["good_total"] > 0 for m in ms.values()) and ms,
                         30, "parts from every machine")
        assert time.monotonic() - api_up < 30
        # the plant's camera photographs press1's parts into its folder; the gateway's camera_folder source judges
        # them with the demo's station, and its p-chart counts them
        # under the lot press1 runs (its CurrentLot tag, the station's lot_tag)
        seen = until(lambda: (r := api.get("/api/v1/inspections", params={"station": "cam-press1"}).json())
                     and any((i["lot"] or "").startswith("LOT-") for i in r) and r,
                     30, "camera inspections of press1's parts with their lot")
        assert {(i["machine"], i["source"], i["model"]["name"]) for i in seen} == {
            ("press1", "camera:press1-camera", "mtile")}
        chart = api.get("/api/v1/inspections/pchart", params={"station": "cam-press1"}).json()
        counted = chart["open_n"] + chart["subgroup_n"] * len(chart["panel"]["points"])
        assert chart["machine"] == "press1" and counted >= len(seen)
        assert {m["state"] for m in machines.values()} <= {"producing", "idle", "setup", "unplanned_down",
                                                            "planned_down"}
        # ISO 22400 KPIs over the last minutes: the seeded shifts give planned time, routings the cycle times
        # (scaled to the demo's time), energy meters the energy
        def kpi():
            end = datetime.now(UTC) + timedelta(seconds=1)
            (k,) = api.get("/api/v1/kpi", params={"machine": "press1", "start": started.isoformat(),
                                                  "end": end.isoformat()}).json()
            return k if k["pq"] > 0 and k["apt_s"] > 0 and k["energy_kwh"] else None

        k = until(kpi, 30, "non-zero KPIs")
        assert k["pot_s"] > 0 and 0 < k["availability"] <= 1 and 0 < k["effectiveness"] <= 1.2, k
        assert k["oee"] is not None and k["oee"] > 0 and k["energy_per_unit_kwh"] > 0, k
        latest = {r["tag"]: r["value"] for r in api.get("/api/v1/tags/latest").json()}
        assert 490 < latest["press1.temperature"] < 540  # C-MAPSS T50, ~1400 degR, converted to the tag's degC
        assert 20 < latest["lathe1.temperature"] < 60  # AI4I process temperature, K -> degC
        assert latest["lathe1.energy"] > 0 and latest["oven1.EnergyKWh"] > 0
        units = {t["name"]: t["unit"] for t in api.get("/api/v1/tags").json()}
        assert (units["press1.temperature"], units["press1.engine.s4"], units["press1.engine.s7"]) == \
            ("degC", "degR", "psia")
        vib = api.get("/api/v1/tags/press1.vibration/samples",
                      params={"start": started.isoformat(), "end": datetime.now(UTC).isoformat()}).json()
        values = [p["value"] for p in vib["points"]]
        assert len(set(values)) > 3, values  # bearing RMS varies from window to window
        r = api.post("/api/v1/tags/press1.speed_setpoint/write", json={"value": 80.0})
        assert r.status_code == 200 and r.json()["status"] == "done", r.text
        password = next(line.split("its password: ", 1)[1].split()[0] for line in proc.lines  # type: ignore[attr-defined]
                        if "command center user 'demo' (admin) created; its password: " in line)
        command_center_follows_the_demo(base, password)
        # ISA-18.2's manageable rate: the demo's first simulated minutes (20x) raise at most one alarm per
        # machine and no flood; the idle-machine and 10-minute rates are measured in tests/twin/test_alarm_rate.py
        alarms = api.get("/api/v1/alarms", params={"limit": 500}).json()
        per_machine = {m: sum(a["machine"] == m for a in alarms) for m in {a["machine"] for a in alarms}}
        assert all(n <= 1 for n in per_machine.values()) and not any("flood" in str(a) for a in alarms), alarms
    finally:
        out = stop_demo(proc, signal.SIGINT) if proc.poll() is None else output(proc)
    assert proc.returncode == 0, out
    assert "stopped API, plant, gateway, twin" in out and "embedded PostgreSQL" in out.splitlines()[-1], out
    assert processes_using(pg_data) == [], "the embedded PostgreSQL outlived the demo"

    # a second start reuses the state (no migrations to apply, the same database); SIGTERM stops it whole too
    proc = start_demo(config, state_dir)
    try:
        until(lambda: proc.poll() is None and api.get("/api/v1/machines").status_code == 200, 90, "the API again")
        totals = {m["name"]: m["good_total"] for m in api.get("/api/v1/machines").json()}
        assert all(totals[m] > 0 for m in MACHINES), totals  # the twin's counts survived the restart
    finally:
        out = stop_demo(proc, signal.SIGTERM) if proc.poll() is None else output(proc)
        EmbeddedPostgres(state_dir, ports["pg"]).stop()  # only does something if the demo failed to
    assert proc.returncode == 0 and "migrations applied" not in out, out
    assert "embedded PostgreSQL" in out.splitlines()[-1], out
    assert processes_using(pg_data) == []


def test_a_demo_that_cannot_start_says_why_in_one_line_and_leaves_nothing_running(state_dir: Path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = state_dir / "shopfloor.toml"
        config.write_text(f"[historian]\nembedded_port = {free_port()}\n[api]\nport = {port}\n")
        proc = start_demo(config, state_dir)
        proc.wait(timeout=60)
        out = output(proc)
    assert proc.returncode == 1, out
    assert out.strip().splitlines()[-1] == (f"shopfloor demo: stopped after a failure: 127.0.0.1:{port} is taken by "
                                            "another program; set api.port in shopfloor.toml"), out
    assert "Traceback" not in out and processes_using(state_dir) == []
