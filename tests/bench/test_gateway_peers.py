"""bench.gateway --device peer: a tiny run against each foreign peer prints one valid JSON line.

The peers are the pinned node-opcua and modbus-serial that scripts/peers installs (the interop
suites' helper runs it); the database is the services' TimescaleDB. The bench itself is the real
one, only shortened; a missing peer must fail in one line naming scripts/peers.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import server_dsn
from tests.gateway.interop.peers import peers_dir

ROOT = Path(__file__).resolve().parents[2]
PINS = json.loads((ROOT / "tests" / "gateway" / "interop" / "peers.json").read_text())["dependencies"]
PACKAGE = {"opcua": "node-opcua", "modbus": "modbus-serial"}


def bench(*argv: str, peers: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """python -m bench.gateway with these arguments, the peers taken from `peers`."""
    env = dict(os.environ, SHOPFLOOR_PEERS=str(peers))
    return subprocess.run([sys.executable, "-m", "bench.gateway", *argv], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout)


@pytest.mark.parametrize("protocol", ["modbus", "opcua"])
def test_peer_row_is_one_json_line(protocol: str) -> None:
    """A 0.5 s run of every phase against the peer: one line, device peer, the pinned package, sane figures."""
    done = bench("--protocol", protocol, "--device", "peer", "--seconds", "0.5", "--rounds", "1",
                 "--latency-seconds", "0.5", "--ceiling-rows", "5000", "--dsn", server_dsn("timescaledb"),
                 peers=peers_dir())
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    assert len(lines) == 1, done.stdout
    row = json.loads(lines[0])
    assert (row["bench"], row["protocol"], row["device"]) == ("gateway", protocol, "peer")
    assert row["peer"]["package"] == PACKAGE[protocol] and row["peer"]["version"] == PINS[PACKAGE[protocol]]
    assert row["samples_per_s"] > 0 and row["bare_samples_per_s"] > 0
    assert row["ratio_to_bare"] == round(row["samples_per_s"] / row["bare_samples_per_s"], 3)
    best = row["throughput_phase"]
    # what the gateway took from the peer it committed, in the throughput and the latency phase
    assert best["committed_rows"] == best["adapter_readings"] > 0
    assert row["latency_phase"]["committed_rows"] == row["latency_phase"]["adapter_readings"] > 0
    assert 0 < row["latency_p50_s"] <= row["latency_p99_s"] < 60
    assert row["cores"]["machine_cpus"] == os.cpu_count() and row["cores"]["consumer_process_cores"] > 0
    assert len(row["loadavg"]["start"]) == 3 and len(row["loadavg"]["end"]) == 3


def test_missing_peer_fails_naming_scripts_peers(tmp_path: Path) -> None:
    """No peers installed: exit 2 at once with one line that names scripts/peers (no fallback to our devices)."""
    done = bench("--protocol", "opcua", "--device", "peer", "--dsn", "postgresql://nobody@127.0.0.1:1/none",
                 peers=tmp_path, timeout=60)
    assert done.returncode == 2
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "node-opcua" in lines[0] and "scripts/peers" in lines[0], done.stderr


def test_sparkplug_has_no_peer_row(tmp_path: Path) -> None:
    """--device peer on Sparkplug is refused in one line (there is no foreign Sparkplug bench device)."""
    done = bench("--protocol", "sparkplug", "--device", "peer", peers=tmp_path, timeout=60)
    assert done.returncode == 2 and done.stdout == ""
    assert "sparkplug" in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr
