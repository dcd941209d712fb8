"""kill -9 of `shopfloor gateway run` polling 100 Modbus devices: after a restart, every poll spooled before the crash is
stored exactly once, and what is missing is one contiguous window per device at the moment of the kill.

The devices are plant/modbus_fleet.py: read k of a device returns register i = (7 k + i) mod 65536, and the device
counts the reads it served, so the stored values of register 0 say exactly which reads reached the historian.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from plant.modbus_fleet import fleet_toml
from tests.support import scalar_of, wait_until

DEVICES = 100
INVERSE_7 = pow(7, -1, 65536)


def gateway(config: Path, state: Path, log: Path) -> subprocess.Popen[bytes]:
    """`shopfloor gateway run` in its own process."""
    out = open(log, "ab")
    return subprocess.Popen([str(Path(sys.executable).with_name("shopfloor")), "--config", str(config), "gateway",
                             "run"], env={**os.environ, "SHOPFLOOR_STATE": str(state)}, stdout=out, stderr=out)


def command(sim: subprocess.Popen[str], what: str) -> dict:
    """One simulator command and its answer."""
    assert sim.stdin is not None and sim.stdout is not None
    sim.stdin.write(what + "\n")
    sim.stdin.flush()
    return json.loads(sim.stdout.readline())


@pytest.mark.parametrize("backend", ["timescaledb"])
@pytest.mark.timeout(300)
async def test_kill_9_mid_flush_loses_only_the_window_after_the_last_fsync(conn, dsn, tmp_path: Path):
    sim = subprocess.Popen([sys.executable, "-m", "plant.modbus_fleet", "--devices", str(DEVICES)],
                           stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        assert sim.stdout is not None
        ports = json.loads(sim.stdout.readline())["ports"]
        config = tmp_path / "fleet.toml"
        config.write_text(fleet_toml(dsn, ports, tmp_path / "spool"))
        good = "SELECT count(*) FROM samples WHERE quality >= 192"
        procs.append(gateway(config, tmp_path / "state", tmp_path / "gateway.log"))
        await wait_until(lambda: scalar_of(conn, good), timeout=120, what="first rows", interval=0.2)
        before = await scalar_of(conn, good)
        await wait_until(lambda: scalar_of(conn, f"{good} HAVING count(*) > {before + 20 * DEVICES * 100}"),
                         timeout=120, what="two more seconds of polls", interval=0.1)
        procs[0].send_signal(signal.SIGKILL)  # mid-flush: at 100 devices a record is being spooled every few ms
        procs[0].wait()
        at_kill = await scalar_of(conn, good)
        procs.append(gateway(config, tmp_path / "state", tmp_path / "gateway.log"))
        await wait_until(lambda: scalar_of(conn, f"{good} HAVING count(*) > {at_kill + 20 * DEVICES * 100}"),
                         timeout=120, what="rows after the restart", interval=0.1)
        served = command(sim, "freeze")["served"][:DEVICES]
        served = command(sim, "stats")["served"][:DEVICES]  # answers sent before the freeze are all counted

        seen: list[tuple[int, float]] = []

        async def drained() -> bool:
            # the devices answer nothing now: the gateway is done once its row count stops moving for 2 s
            now = asyncio.get_running_loop().time()
            seen.append((await scalar_of(conn, good), now))
            same = [t for n, t in seen if n == seen[-1][0]]
            return now - same[0] >= 2.0

        await wait_until(drained, timeout=60, what="the spool drained", interval=0.5)
        cur = await conn.execute(
            "SELECT t.name, count(*), count(DISTINCT s.ts), array_agg(s.value::int ORDER BY s.ts) FILTER "
            "(WHERE t.name LIKE '%.r000') FROM samples s JOIN tags t ON t.id = s.tag_id WHERE s.quality >= 192 "
            "GROUP BY t.name")
        rows = {name: (n, distinct, values) for name, n, distinct, values in await cur.fetchall()}
        windows = []
        for d in range(DEVICES):
            counts = {rows[f"dev{d:03d}.r{i:03d}"][0] for i in range(100)}
            assert len(counts) == 1, f"dev{d:03d}: tags stored unequal numbers of polls {counts}"
            n, distinct, values = rows[f"dev{d:03d}.r000"]
            assert n == distinct
            reads = [v * INVERSE_7 % 65536 for v in values]
            assert len(set(reads)) == len(reads), f"dev{d:03d}: a poll stored twice"
            missing = sorted(set(range(served[d])) - set(reads))
            assert not set(reads) - set(range(served[d])), f"dev{d:03d}: a value the device never served"
            # what the crash lost: reads after the last fsync, one contiguous run at the kill
            assert missing == list(range(missing[0], missing[0] + len(missing))) if missing else True, \
                f"dev{d:03d}: missing reads are not one window: {missing[:20]}"
            windows.append(len(missing))
        print(f"loss window after the last fsync: max {max(windows)} reads ({max(windows) * 0.1:.1f} s of polls) per "
              f"device, {sum(windows) * 100} values over {DEVICES} devices; served {sum(served) * 100}")
        assert max(windows) * 0.1 < 5.0  # bounded by the outbox and spool flush intervals, not by luck
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        if sim.poll() is None:
            assert sim.stdin is not None
            sim.stdin.write("quit\n")
            sim.stdin.flush()
            sim.wait(10)
