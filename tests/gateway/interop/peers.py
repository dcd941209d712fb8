"""Foreign peers for the interop suites: Node.js programs run from the pinned install of scripts/peers.

A peer is a child process that prints "READY ..." once it listens and then one JSON object per line
for everything it did (a value set, a write it received); the tests assert against those lines.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import shutil
import socket
import subprocess
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[3]
HERE = Path(__file__).resolve().parent


@functools.cache
def node_modules() -> Path:
    """The pinned npm packages, installed (or found in the cache) by scripts/peers; skips without Node.js."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("Node.js and npm are needed for the foreign-peer interop suites")
    done = subprocess.run([str(ROOT / "scripts" / "peers")], capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        pytest.fail(f"scripts/peers failed:\n{done.stderr[-3000:]}")
    return Path(done.stdout.strip().splitlines()[-1]) / "node_modules"


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class NodePeer:
    """One Node.js peer program; `command` sends a JSON line and returns the peer's logged answer."""

    def __init__(self, script: str, *args: str) -> None:
        self.script = HERE / script
        self.args = list(args)
        self.proc: asyncio.subprocess.Process | None = None
        self.ready_line = ""
        self.log: list[dict[str, Any]] = []
        self._lines: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._reader: asyncio.Task[None] | None = None

    async def start(self, timeout: float = 60.0) -> NodePeer:
        """Start the program and wait for its READY line."""
        env = dict(os.environ, NODE_PATH=str(node_modules()), NODE_NO_WARNINGS="1")
        self.proc = await asyncio.create_subprocess_exec(
            "node", str(self.script), *self.args, stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL, env=env,
        )  # fmt: skip
        assert self.proc.stdout is not None
        while True:
            line = await asyncio.wait_for(self.proc.stdout.readline(), timeout)
            if not line:
                raise RuntimeError(f"{self.script.name} exited before it was ready ({await self.proc.wait()})")
            if line.startswith(b"READY"):
                self.ready_line = line.decode().strip()
                break
        self._reader = asyncio.create_task(self._read())
        return self

    async def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        while line := await self.proc.stdout.readline():
            if line.startswith(b"{"):
                entry = json.loads(line)
                self.log.append(entry)
                await self._lines.put(entry)

    async def command(self, cmd: dict[str, Any], timeout: float = 10.0) -> dict[str, Any]:
        """Send one command and return the next line the peer logs (its account of what it did)."""
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(cmd).encode() + b"\n")
        await self.proc.stdin.drain()
        return await asyncio.wait_for(self._lines.get(), timeout)

    async def next_logged(self, timeout: float = 10.0) -> dict[str, Any]:
        """The next line the peer logs on its own (e.g. a write it received)."""
        return await asyncio.wait_for(self._lines.get(), timeout)

    async def stop(self) -> None:
        """Terminate the program and wait for it."""
        if self.proc is not None and self.proc.returncode is None:
            self.proc.terminate()
            try:
                await asyncio.wait_for(self.proc.wait(), 10)
            except asyncio.TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        if self._reader is not None:
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)
        self.proc = None
