"""The command center in Debian's Chromium (Playwright drives the system browser; nothing is downloaded).

The app runs in this process on a fresh database; the twin's writes are made with the SQL the twin uses
(machine_status, alarms), so the page must follow them over the real stream. Screenshots of every page and
both layouts go to .shopfloor/artifacts/web.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone
import shutil
import subprocess
from pathlib import Path
from typing import AsyncIterator

import psycopg
import pytest

from tests.api_keys import api_config
from tests.support import ROOT, wait_until
from tests.web.conftest import PASSWORD, served
from web.app import create_app

ARTIFACTS = ROOT / ".shopfloor" / "artifacts" / "web"
MACHINES = ["press1", "press2", "lathe1", "oven1"]
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def chromium() -> str:
    """Debian's Chromium, installed by scripts/browser when missing."""
    found = shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(found).exists():
        found = subprocess.run([str(ROOT / "scripts" / "browser")], check=True, capture_output=True,
                               text=True).stdout.strip()
    return found


@pytest.fixture
def backend() -> str:
    return "timescaledb"


@pytest.fixture
async def plant(dsn: str, people) -> AsyncIterator[psycopg.AsyncConnection]:
    """Four machines producing, and one high alarm on press1."""
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        for name in MACHINES:
            mid = (await (await conn.execute("INSERT INTO machines (name, line) VALUES (%s, 'L1') RETURNING id",
                                             (name,))).fetchone())[0]
            await conn.execute("INSERT INTO tags (name, category, machine_id) VALUES (%s, 'machine', %s)",
                               (f"{name}.temperature", mid))
            await conn.execute("INSERT INTO machine_status (machine_id, state, state_since, predictions) VALUES "
                               "(%s, 'producing', now(), %s)",
                               (mid, '{"rul": {"valid": false, "reason": "machine idle", "value": null}}'))
        await conn.execute("INSERT INTO alarms (machine_id, tag_id, ts, rules, value, last_ts, priority) "
                           "SELECT m.id, t.id, now(), '{WE1}', 99, now(), 'high' FROM machines m "
                           "JOIN tags t ON t.machine_id = m.id WHERE m.name = 'press1'")
        yield conn


@pytest.fixture
async def browser():  # type: ignore[no-untyped-def]
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        b = await p.chromium.launch(executable_path=chromium(), args=FLAGS)
        yield b
        await b.close()


async def open_page(browser, base: str, width: int = 1280, height: int = 800):  # type: ignore[no-untyped-def]
    """A fresh context (its own cookies) and page that records console errors."""
    context = await browser.new_context(viewport={"width": width, "height": height}, base_url=base)
    page = await context.new_page()
    page.errors = []  # type: ignore[attr-defined]
    page.on("console", lambda m: m.type == "error" and page.errors.append(m.text))  # type: ignore[attr-defined]
    page.on("pageerror", lambda e: page.errors.append(str(e)))  # type: ignore[attr-defined]
    page.on("response", lambda r: r.status >= 400 and page.errors.append(f"{r.status} {r.url}"))  # type: ignore[attr-defined]
    return page


async def sign_in(page, role: str) -> None:  # type: ignore[no-untyped-def]
    await page.goto("/")
    await page.fill("input[name=name]", f"web-{role}")
    await page.fill("input[name=password]", PASSWORD)
    await page.click("button[type=submit]")
    await page.wait_for_selector("#tiles")
    await page.wait_for_selector("#live.on")  # the stream is open


async def layout_is_sound(page) -> None:  # type: ignore[no-untyped-def]
    """No horizontal overflow and no two tiles overlapping."""
    overflow = await page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, f"the page is {overflow} px wider than the window"
    boxes = await page.evaluate("[...document.querySelectorAll('.tile')].map(t => {const r = "
                                "t.getBoundingClientRect(); return [r.left, r.top, r.right, r.bottom]})")
    for i, a in enumerate(boxes):
        for b in boxes[i + 1:]:
            assert a[2] <= b[0] or b[2] <= a[0] or a[3] <= b[1] or b[3] <= a[1], f"tiles overlap: {a} {b}"


async def test_operator_sees_live_tiles_acknowledges_and_signs_out(browser, plant, dsn: str):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    async with served(create_app(dsn, api_config(), pool_size=4)) as base:
        page = await open_page(browser, base)
        await sign_in(page, "operator")
        await page.screenshot(path=str(ARTIFACTS / "overview-1280.png"), full_page=True)
        await layout_is_sound(page)
        # every machine's tile follows the twin's state change without a reload
        for i, name in enumerate(MACHINES):
            state = ("idle", "setup", "unplanned_down", "planned_down")[i]
            await plant.execute("UPDATE machine_status SET state = %s, state_since = now() WHERE machine_id = "
                                "(SELECT id FROM machines WHERE name = %s)", (state, name))
            await page.wait_for_selector(f'.tile[data-machine="{name}"].state-{state}', timeout=10_000)
        await page.screenshot(path=str(ARTIFACTS / "overview-live.png"), full_page=True)
        # acknowledge the alarm from the alarm page
        await page.click("nav >> text=Alarms")
        await page.wait_for_selector("button.ack")
        await page.click("button.ack")
        await page.wait_for_selector("#flash .ok", timeout=10_000)
        await wait_until(lambda: _acked(plant), timeout=10, what="the alarm acknowledged in the database")
        await page.wait_for_selector("#alarms-table >> text=ack active", timeout=10_000)
        await page.screenshot(path=str(ARTIFACTS / "alarms.png"), full_page=True)
        for path in ("/inspections", "/schedule", "/orders", "/sources", "/machines/press1"):
            await page.goto(path)
            await page.wait_for_load_state("networkidle")
            await page.screenshot(path=str(ARTIFACTS / f"{path.strip('/').replace('/', '-')}.png"), full_page=True)
            overflow = await page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
            assert overflow <= 0, (path, overflow)
        # each failed load is also logged with its URL; the only one allowed: the SPC chart's 422 on a tag
        # without samples (this database has none), which the page shows as "No chart: <why>"
        page.errors = [e for e in page.errors if "Failed to load resource" not in e
                       and not (e.startswith("422 ") and "/api/v1/spc/" in e)]
        await page.click("#sign-out")
        await page.wait_for_selector("input[name=password]")
        await page.goto("/alarms")
        assert "/login" in page.url
        assert page.errors == [], page.errors  # type: ignore[attr-defined]


async def _acked(conn: psycopg.AsyncConnection) -> bool:
    row = await (await conn.execute("SELECT acked_by = 'web-operator' FROM alarms")).fetchone()
    return bool(row and row[0])


async def test_a_viewer_on_a_phone_sees_no_actions_and_a_sound_layout(browser, plant, dsn: str):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    async with served(create_app(dsn, api_config(), pool_size=4)) as base:
        page = await open_page(browser, base, 390, 844)
        await sign_in(page, "viewer")
        await layout_is_sound(page)
        await page.screenshot(path=str(ARTIFACTS / "overview-390.png"), full_page=True)
        await page.goto("/alarms")
        await page.wait_for_selector("#alarms-table")
        assert await page.locator("button.ack").count() == 0
        assert await page.locator("form.shelve").count() == 0
        assert page.errors == [], page.errors  # type: ignore[attr-defined]
        # and the server refuses the action anyway, page token or not
        status = await page.evaluate("""async () => (await fetch('/api/v1/alarms/1/ack', {method: 'POST',
            headers: {'Content-Type': 'application/json', 'X-CSRFToken':
            document.querySelector('meta[name=csrf-token]').content}, body: '{}'})).status""")
        assert status == 403
        overflow = await page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0
        await page.screenshot(path=str(ARTIFACTS / "alarms-390.png"), full_page=True)
        assert (await (await plant.execute("SELECT acked_at FROM alarms")).fetchone())[0] is None


async def test_operator_reschedules_a_broken_machine_and_opens_an_inspection_overlay(browser, plant, dsn: str,
                                                                                      tmp_path, monkeypatch):
    import httpx

    from inspection import store
    from tests.api_keys import auth
    from tests.inspection.helpers import neu_image

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    monkeypatch.setenv("SHOPFLOOR_STATE", str(tmp_path))
    await store.upsert_station(plant, store.Station("cam-press1", "press1", "neu"))
    origin = datetime.now(timezone.utc).replace(microsecond=0).isoformat()
    orders = [{"id": f"WO-{i}", "family": "A" if i % 2 else "B", "priority": 1,
               "operations": [{"seq": 1, "machines": {"press1": 1800, "press2": 2400}},
                              {"seq": 2, "machines": {"press2": 900, "press1": 1200}}]} for i in range(1, 5)]
    async with served(create_app(dsn, api_config(), pool_size=4)) as base:
        async with httpx.AsyncClient(base_url=base, timeout=30) as api:
            r = await api.post("/api/v1/inspections", headers=auth("operator"), data={"station": "cam-press1"},
                               files={"image": ("s.jpg", neu_image("scratches_1.jpg"), "image/jpeg")})
            assert r.status_code == 201, r.text
            inspection = r.json()["id"]
            r = await api.post("/api/v1/schedules", headers=auth("engineer"), json={
                "problem": {"origin": origin, "machines": ["press1", "press2"], "orders": orders},
                "time_limit_s": 2, "name": "browser"})
            assert r.status_code == 202, r.text
            sid = r.json()["id"]

            async def solved() -> bool:
                return (await api.get(f"/api/v1/schedules/{sid}", headers=auth("viewer"))).json()["state"] == "done"

            await wait_until(solved, timeout=60, what="the first schedule")
        page = await open_page(browser, base)
        await sign_in(page, "operator")
        # the inspection gallery opens the overlay (the model's verdict drawn on the image)
        await page.goto("/inspections")
        await page.click(f'figure[data-inspection="{inspection}"] .open-overlay')
        await page.wait_for_selector("#overlay[open]")
        await page.wait_for_function("document.getElementById('overlay-img').naturalWidth > 0")
        assert "NG" in await page.inner_text("#overlay-caption")
        await page.screenshot(path=str(ARTIFACTS / "inspection-overlay.png"), full_page=True)
        # machine down from the schedule page: a new version arrives over the stream, with its diff
        await page.goto("/schedule")
        await page.wait_for_selector('#version[data-version="1"]')
        await page.select_option("#machine-down select[name=machine]", "press1")
        await page.click("#machine-down button[type=submit]")
        await page.wait_for_selector("#flash .flash", timeout=30_000)
        assert await page.locator("#flash .ok").count() == 1, await page.inner_text("#flash")
        await page.wait_for_selector('#version[data-version="2"]', timeout=30_000)
        assert "press1" in await page.inner_text("#version")
        assert "operations moved" in await page.inner_text("#diff")
        await page.wait_for_function("document.getElementById('gantt').naturalWidth > 0")
        await page.screenshot(path=str(ARTIFACTS / "schedule-rescheduled.png"), full_page=True)
        page.errors = [e for e in page.errors if "Failed to load resource" not in e]
        assert page.errors == [], page.errors  # type: ignore[attr-defined]
