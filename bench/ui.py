"""Command center: overview server time and first render in Chromium with 100 machines; SSE fan-out to 200 clients.

One JSON line. Baseline for the overview: the same machines as the JSON API answers them (GET /api/v1/machines,
what a competent front end would fetch and render client-side); ratio = overview page time / JSON time.
The stream: state changes written as the twin writes them (UPDATE machine_status) at a steady rate while 200
clients listen; delay = client receipt - the event's log time (same host clock), p50/p99 over every delivery.
Targets (issue 15): first render < 1 s, p99 event delay < 1 s at 200 clients.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import threading
import time
from datetime import datetime

import httpx
import numpy as np
import uvicorn

from api.config import ApiConfig, ApiUser
from api.stream import StreamLimits
from bench.ingest import default_dsn
from bench.scratch import scratch_database
from historian.db import connect
from web import users
from web.app import create_app

KEY = "bench-ui-viewer-key-0123456789"
PASSWORD = "bench password 0123"


async def seed(dsn: str, machines: int) -> None:
    """Machines with status, a tag each, a few alarms; one operator who signs in."""
    conn = await connect(dsn)
    try:
        for i in range(machines):
            mid = (await (await conn.execute("INSERT INTO machines (name, line) VALUES (%s, %s) RETURNING id",
                                             (f"m{i:03d}", f"L{i // 20}"))).fetchone())[0]
            await conn.execute("INSERT INTO tags (name, category, machine_id) VALUES (%s, 'machine', %s)",
                               (f"m{i:03d}.temp", mid))
            await conn.execute("INSERT INTO machine_status (machine_id, state, state_since, good_total) "
                               "VALUES (%s, 'producing', now(), %s)", (mid, i * 10))
        await users.create(conn, "bench", "operator", PASSWORD)
    finally:
        await conn.close()


def serve(app) -> tuple[uvicorn.Server, threading.Thread, str]:  # type: ignore[no-untyped-def]
    """The app in its own thread and event loop (as in its own server process, minus the fork)."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="error", lifespan="on",
                                           timeout_graceful_shutdown=2))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    return server, thread, f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"


async def timed(client: httpx.AsyncClient, url: str, n: int, **kw) -> list[float]:  # type: ignore[no-untyped-def]
    """Seconds of n sequential GETs of url (each checked 200)."""
    out = []
    for _ in range(n):
        t = time.perf_counter()
        r = await client.get(url, **kw)
        out.append(time.perf_counter() - t)
        assert r.status_code == 200, (url, r.status_code)
    return out


async def sign_in(client: httpx.AsyncClient) -> None:
    """The session cookie of the bench user on the client."""
    form = (await client.get("/login")).text
    token = form.split('name="_csrf_token" value="', 1)[1].split('"', 1)[0]
    r = await client.post("/login", data={"name": "bench", "password": PASSWORD, "_csrf_token": token, "next": "/"})
    assert r.status_code in (200, 303), r.status_code


async def first_render(base: str, runs: int) -> list[float]:
    """First contentful paint of the overview in Chromium (signed in, cold page each run), seconds."""
    from playwright.async_api import async_playwright

    out = []
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path="/usr/bin/chromium", args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync"])
        context = await browser.new_context(viewport={"width": 1280, "height": 800}, base_url=base)
        page = await context.new_page()
        await page.goto("/login")
        await page.fill("input[name=name]", "bench")
        await page.fill("input[name=password]", PASSWORD)
        await page.click("button[type=submit]")
        await page.wait_for_selector("#tiles")
        for _ in range(runs):
            await page.goto("/", wait_until="load")
            fcp = await page.evaluate("""() => new Promise((done) => {
                new PerformanceObserver((l) => { for (const e of l.getEntries())
                    if (e.name === 'first-contentful-paint') done(e.startTime); }).observe({type: 'paint', buffered: true});
                setTimeout(() => done(null), 5000); })""")
            if fcp is None:  # no paint entry reported: the page's load event, which is later, stands in
                fcp = await page.evaluate("performance.getEntriesByType('navigation')[0].loadEventEnd")
            assert await page.locator(".tile").count() >= 100
            out.append(fcp / 1000)
        await browser.close()
    return out


async def fan_out(base: str, dsn: str, clients: int, events: int, rate: float) -> dict:
    """Deliveries/s and delay percentiles of `events` state changes at `rate`/s to `clients` listeners."""
    delays: list[float] = []
    got = [0] * clients
    ready = asyncio.Event()
    opened = 0

    async def listen(i: int, client: httpx.AsyncClient) -> None:
        nonlocal opened
        async with client.stream("GET", "/api/v1/stream", headers={"X-API-Key": KEY}) as r:
            assert r.status_code == 200
            opened += 1
            if opened == clients:
                ready.set()
            async for line in r.aiter_lines():
                if line.startswith("data: "):
                    at = datetime.fromisoformat(json.loads(line[6:])["at"]).timestamp()
                    delays.append(time.time() - at)
                    got[i] += 1
                    if got[i] == events:
                        return

    limits = httpx.Limits(max_connections=clients + 10)
    async with httpx.AsyncClient(base_url=base, timeout=120, limits=limits) as client:
        tasks = [asyncio.create_task(listen(i, client)) for i in range(clients)]
        await asyncio.wait_for(ready.wait(), 60)
        conn = await connect(dsn)
        start = time.perf_counter()
        for k in range(events):  # every update flips the machine's state, so every one is an event
            await conn.execute("UPDATE machine_status SET state = CASE WHEN state = 'idle' THEN 'producing' "
                               "ELSE 'idle' END, state_since = now() WHERE machine_id = "
                               "(SELECT id FROM machines WHERE name = %s)", (f"m{k % 100:03d}",))
            await asyncio.sleep(max(0.0, start + (k + 1) / rate - time.perf_counter()))
        await asyncio.wait_for(asyncio.gather(*tasks), 120)
        took = time.perf_counter() - start
        await conn.close()
    d = np.array(delays)
    return {"clients": clients, "events": events, "deliveries": int(d.size),
            "deliveries_per_s": round(d.size / took, 1), "event_p50_s": round(float(np.percentile(d, 50)), 4),
            "event_p99_s": round(float(np.percentile(d, 99)), 4), "event_max_s": round(float(d.max()), 4)}


async def main_async(args: argparse.Namespace) -> dict:
    async with scratch_database(args.dsn, "sf_bench_ui") as dsn:
        await seed(dsn, args.machines)
        config = ApiConfig(users=[ApiUser(name="bench-viewer", key=KEY, role="viewer")])
        app = create_app(dsn, config, pool_size=8, stream=StreamLimits(max_clients=args.clients + 10))
        server, thread, base = serve(app)
        try:
            async with httpx.AsyncClient(base_url=base, timeout=30) as client:
                await sign_in(client)
                page = await timed(client, "/", args.runs)
                api = await timed(client, "/api/v1/machines", args.runs, headers={"X-API-Key": KEY})
            render = await first_render(base, 5)
            fan = await fan_out(base, dsn, args.clients, args.events, args.rate)
        finally:
            server.should_exit = True
            thread.join(10)
    page_s, api_s = statistics.median(page), statistics.median(api)
    return {"bench": "ui", "machines": args.machines, "overview_server_s": round(page_s, 4),
            "baseline": "GET /api/v1/machines (JSON of the same machines)", "baseline_s": round(api_s, 4),
            "ratio_overview_to_json": round(page_s / api_s, 2), "first_render_s": round(statistics.median(render), 3),
            "first_render_max_s": round(max(render), 3), **fan, "event_rate_per_s": args.rate,
            "targets": {"first_render_s": 1.0, "event_p99_s": 1.0}, "loadavg": os.getloadavg()}


def main() -> None:
    """Run the benchmark and print one JSON line."""
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--dsn", default=default_dsn(), help="admin DSN of the server to make a scratch database on")
    p.add_argument("--machines", type=int, default=100)
    p.add_argument("--clients", type=int, default=200)
    p.add_argument("--events", type=int, default=50)
    p.add_argument("--rate", type=float, default=10.0, help="state changes per second")
    p.add_argument("--runs", type=int, default=20)
    print(json.dumps(asyncio.run(main_async(p.parse_args()))))


if __name__ == "__main__":
    main()
