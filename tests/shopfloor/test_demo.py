"""The README's first command: the demo starts an embedded PostgreSQL, migrates, feeds and serves."""

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

ROOT = Path(__file__).resolve().parents[2]


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


def test_demo_serves_replayed_data_from_an_embedded_database(state_dir: Path):
    api_port, pg_port = free_port(), free_port()
    config = state_dir / "shopfloor.toml"
    config.write_text(f"[historian]\nembedded_port = {pg_port}\n[api]\nport = {api_port}\n")
    env = {**os.environ, "SHOPFLOOR_STATE": str(state_dir)}
    env.pop("SHOPFLOOR_DSN", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "shopfloor.cli", "--config", str(config), "demo"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    base = f"http://127.0.0.1:{api_port}"
    try:
        deadline = time.monotonic() + 120
        latest = []
        while time.monotonic() < deadline:
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
            try:
                latest = httpx.get(f"{base}/api/v1/tags/latest", params={"tag": ["engine1.s2", "engine1.cycle"]}).json()
                if len(latest) == 2 and httpx.get(f"{base}/health").json()["database"] == "postgresql":
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        assert [r["tag"] for r in latest] == ["engine1.cycle", "engine1.s2"]
        # engine 1's first C-MAPSS cycle: T24 = 641.82 degR (train_FD001.txt, row 1, column 7)
        first = httpx.get(f"{base}/api/v1/tags/engine1.s2/samples",
                          params={"start": "2000-01-01T00:00:00Z", "end": "2100-01-01T00:00:00Z"}).json()
        assert first["points"][0]["value"] == 641.82
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
        EmbeddedPostgres(state_dir, pg_port).stop()
