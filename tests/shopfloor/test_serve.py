"""`shopfloor serve` honours [api]: keys as hashes from shopfloor.toml, metrics_public; SIGTERM ends it in seconds."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from api.keys import hash_key
ROOT = Path(__file__).resolve().parents[2]
from tests.support import wait_until

KEY = "serve-test-engineer-key-0123456789"


@pytest.fixture
def backend() -> str:
    """The server's wiring, not the database flavour: one backend."""
    return "postgresql"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_serve_uses_the_api_table_and_stops_on_sigterm(dsn, tmp_path):
    port = _free_port()
    config = tmp_path / "shopfloor.toml"
    config.write_text(f'[api]\nport = {port}\nmetrics_public = true\ndrain_timeout = 2.0\n'
                      f'[[api.users]]\nname = "eng"\nrole = "engineer"\nkey_hash = "{hash_key(KEY)}"\n')
    proc = subprocess.Popen([sys.executable, "-m", "shopfloor.cli", "serve", "--config", str(config), "--dsn", dsn],
                            cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        async def up() -> bool:
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
            try:
                async with httpx.AsyncClient() as c:
                    return (await c.get(f"{base}/health")).status_code == 200
            except httpx.HTTPError:
                return False

        await wait_until(up, timeout=30, what="shopfloor serve to answer /health")
        async with httpx.AsyncClient(base_url=base) as c:
            assert (await c.get("/api/v1/tags")).status_code == 401
            assert (await c.get("/api/v1/tags", headers={"Authorization": f"Bearer {KEY}"})).status_code == 200
            r = await c.post("/api/v1/items", json={"code": "steel"}, headers={"X-API-Key": KEY})
            assert r.status_code == 201, r.text
            assert (await c.get("/metrics")).status_code == 200  # metrics_public
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) in (0, -signal.SIGTERM)  # uvicorn re-raises the signal once drained
        assert time.monotonic() - started < 10
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
