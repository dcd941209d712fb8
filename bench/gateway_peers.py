"""Foreign peer devices for bench.gateway --device peer: node-opcua and modbus-serial servers we did not write.

The npm packages are the ones scripts/peers installs, pinned by tests/gateway/interop/peers.json,
into $SHOPFLOOR_PEERS/node (default .shopfloor/peers/node). The bench-mode programs are in
bench/peers/ (values that change at a high rate; the interop suite's servers stay as they are).
PeerDevice offers what bench.gateway uses of its own PlantProcess: start(), drive(), stop(),
`consumed` (the consumer's count, which a window-paced device reads) and `proc.pid` (for CpuMeter).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import mmap
import os
import shutil
import struct
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent / "peers"
PINS = ROOT / "tests" / "gateway" / "interop" / "peers.json"


@dataclass(frozen=True)
class PeerKind:
    """One protocol's foreign peer: the npm package and the bench-mode program that runs it."""

    package: str
    script: str


PEERS = {
    "opcua": PeerKind("node-opcua", "opcua_bench_server.js"),
    "modbus": PeerKind("modbus-serial", "modbus_bench_server.js"),
}


class PeerMissing(RuntimeError):
    """A peer (or node itself) is not installed: the message names scripts/peers."""


def peers_dir() -> Path:
    """Where scripts/peers installs the peers ($SHOPFLOOR_PEERS, else .shopfloor/peers)."""
    return Path(os.environ.get("SHOPFLOOR_PEERS") or ROOT / ".shopfloor" / "peers")


def require_peer(proto: str) -> dict[str, str]:
    """The installed peer of `proto` (package, version, pin, node_modules); PeerMissing naming scripts/peers if absent."""
    if proto not in PEERS:
        raise PeerMissing(f"--device peer: no foreign peer bench for protocol {proto!r} (have: {', '.join(PEERS)})")
    kind = PEERS[proto]
    modules = peers_dir() / "node" / "node_modules"
    node = shutil.which("node")
    if node is None:
        raise PeerMissing(f"--device peer: node is not installed; run scripts/peers (it installs nodejs and "
                          f"{kind.package} pinned into {modules})")
    manifest = modules / kind.package / "package.json"
    if not manifest.exists():
        raise PeerMissing(f"--device peer: {kind.package} is missing from {modules}; run scripts/peers to install "
                          "the pinned peers")
    version = str(json.loads(manifest.read_text())["version"])
    pinned = json.loads(PINS.read_text())["dependencies"].get(kind.package, "")
    if version != pinned:
        raise PeerMissing(f"--device peer: {kind.package} {version} in {modules} is not the pinned {pinned} "
                          f"({PINS.relative_to(ROOT)}); run scripts/peers")
    return {"package": kind.package, "version": version, "pinned_by": "scripts/peers, "
            f"{PINS.relative_to(ROOT)}", "node": node, "node_modules": str(modules),
            "program": f"bench/peers/{kind.script}"}


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class SharedCounter:
    """An int64 in a small mmap'ed file: the bench writes `.value`, the Node.js device reads the file.

    It stands in for PlantProcess.consumed (a multiprocessing Value) across the language boundary;
    writing it costs no system call, so the bench's 1 ms mirror loop costs what it costs for our plant.
    """

    def __init__(self) -> None:
        fd, name = tempfile.mkstemp(prefix="sf-bench-peer-counter-", dir="/dev/shm" if Path("/dev/shm").is_dir()
                                    else None)
        os.write(fd, b"\0" * 8)
        self.path = Path(name)
        self._map = mmap.mmap(fd, 8)
        os.close(fd)

    @property
    def value(self) -> int:
        """The count last written."""
        return int(struct.unpack_from("<q", self._map, 0)[0])

    @value.setter
    def value(self, v: int) -> None:
        struct.pack_into("<q", self._map, 0, v)

    def close(self) -> None:
        """Unmap and remove the file."""
        with contextlib.suppress(Exception):
            self._map.close()
        self.path.unlink(missing_ok=True)


class PeerDevice:
    """A bench-mode foreign peer in its own Node.js process, driven over stdin/stdout (JSON lines)."""

    def __init__(self, proto: str, params: dict[str, Any]) -> None:
        self.proto = proto
        self.peer = require_peer(proto)
        self.params = params
        self.consumed = SharedCounter()
        self.proc: asyncio.subprocess.Process | None = None
        self._answers: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        self._reader: asyncio.Task[None] | None = None
        self.stderr_path = Path(tempfile.mkstemp(prefix=f"sf-bench-peer-{proto}-", suffix=".log")[1])

    async def start(self) -> dict[str, Any]:
        """Start the program on a free port; its READY line (port, endpoint, ...) plus the peer's identity."""
        argv = ["node", str(HERE / PEERS[self.proto].script), f"--port={free_port()}",
                f"--counter={self.consumed.path}", *(f"--{k}={v}" for k, v in self.params.items())]
        env = dict(os.environ, NODE_PATH=self.peer["node_modules"], NODE_NO_WARNINGS="1")
        with self.stderr_path.open("wb") as err:
            self.proc = await asyncio.create_subprocess_exec(
                *argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=err, env=env)
        assert self.proc.stdout is not None
        async with asyncio.timeout(120):
            while True:
                line = await self.proc.stdout.readline()
                if not line:
                    raise RuntimeError(f"{argv[1]} exited before it was ready ({await self.proc.wait()}): "
                                       f"{self._stderr_tail()}")
                if line.startswith(b"READY "):
                    break
        # drained all the time: a program that logs to stdout between commands must never block on the pipe
        self._reader = asyncio.create_task(self._read(), name=f"peer-{self.proto}-stdout")
        return {**json.loads(line[6:]), "peer": self.peer}

    async def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        while line := await self.proc.stdout.readline():
            if line.startswith(b"{"):
                await self._answers.put(json.loads(line))
        await self._answers.put(None)  # the program ended

    def _stderr_tail(self) -> str:
        with contextlib.suppress(OSError):
            return self.stderr_path.read_text()[-2000:]
        return ""

    async def command(self, cmd: str, timeout: float, **kwargs: Any) -> dict[str, Any]:
        """Send one command and return the program's answer to it."""
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"cmd": cmd, **kwargs}).encode() + b"\n")
        await self.proc.stdin.drain()
        async with asyncio.timeout(timeout):
            while True:
                answer = await self._answers.get()
                if answer is None:
                    raise RuntimeError(f"peer {self.peer['program']} exited during {cmd!r} "
                                       f"({await self.proc.wait()}): {self._stderr_tail()}")
                if cmd in answer:
                    return dict(answer[cmd])

    async def drive(self, rate: float | None, seconds: float, window: int = 0) -> dict[str, Any]:
        """Have the device change its values for `seconds` (paced at `rate`, or within `window` of the consumer)."""
        return await self.command("drive", seconds + 120, rate=rate, seconds=seconds, window=window)

    async def stats(self) -> dict[str, Any]:
        """The device's own counters."""
        return await self.command("stats", 30)

    async def stop(self) -> None:
        """Stop the program (stop command, then SIGTERM, then SIGKILL) and remove its files."""
        proc = self.proc
        if proc is not None and proc.returncode is None:
            with contextlib.suppress(Exception):
                assert proc.stdin is not None
                proc.stdin.write(b'{"cmd": "stop"}\n')
                await proc.stdin.drain()
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except TimeoutError:
                proc.terminate()
                try:
                    await asyncio.wait_for(proc.wait(), 5)
                except TimeoutError:
                    proc.kill()
                    await proc.wait()
        if self._reader is not None:
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)
        self.consumed.close()
        self.stderr_path.unlink(missing_ok=True)
