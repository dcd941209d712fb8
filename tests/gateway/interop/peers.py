"""Foreign peers for the interop suites: Node.js programs and a Python one (pysparkplug), pinned by scripts/peers.

A peer is a child process that prints "READY ..." once it listens and then one JSON object per line
for everything it did (a value set, a write it received); the tests assert against those lines.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import socket
import subprocess
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[3]
HERE = Path(__file__).resolve().parent


@functools.cache
def peers_dir() -> Path:
    """Where scripts/peers installed the pinned peers (it installs them, or finds them cached).

    Fails, never skips: the interop suites are part of the test suite; scripts/peers installs Debian's
    nodejs and npm itself when they are missing and it runs as root, and says what is needed otherwise.
    """
    done = subprocess.run([str(ROOT / "scripts" / "peers")], capture_output=True, text=True, timeout=900)
    if done.returncode != 0:
        pytest.fail(f"scripts/peers failed:\n{done.stderr[-3000:]}")
    return Path(done.stdout.strip().splitlines()[-1])


def node_modules() -> Path:
    """The pinned npm packages (node-opcua, modbus-serial)."""
    return peers_dir() / "node" / "node_modules"


def peer_python() -> Path:
    """The Python of the peers' own venv (pysparkplug, which pins paho-mqtt < 2)."""
    return peers_dir() / "python" / "bin" / "python"


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Peer:
    """One foreign peer program; `command` sends a JSON line and returns the peer's logged answer."""

    def __init__(self, argv: list[str], env: dict[str, str] | None = None) -> None:
        self.argv = argv
        self.env = env
        self.script = Path(argv[1]) if len(argv) > 1 else Path(argv[0])
        self.proc: asyncio.subprocess.Process | None = None
        self.ready_line = ""
        self.log: list[dict[str, Any]] = []
        self._lines: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._reader: asyncio.Task[None] | None = None
        self._skipped: list[dict[str, Any]] = []

    def _argv(self) -> tuple[list[str], dict[str, str] | None]:
        return self.argv, self.env

    async def start(self, timeout: float = 60.0) -> Peer:
        """Start the program and wait for its READY line."""
        argv, env = self._argv()
        self.proc = await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.PIPE,
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
        """Send one command and return the peer's account of it (its next line, or the next with the same op)."""
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(cmd).encode() + b"\n")
        await self.proc.stdin.drain()
        async with asyncio.timeout(timeout):
            while True:
                line = await self._lines.get()
                # peers that log events of their own (a command received) answer with the op they did;
                # the events in between stay for next_logged
                if "op" not in cmd or line.get("op") == cmd["op"]:
                    return line
                self._skipped.append(line)

    async def next_logged(self, timeout: float = 10.0) -> dict[str, Any]:
        """The next line the peer logs on its own (e.g. a write it received)."""
        if self._skipped:
            return self._skipped.pop(0)
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


class NodePeer(Peer):
    """A Node.js peer program from this folder, run with the pinned npm packages."""

    def __init__(self, script: str, *args: str) -> None:
        super().__init__(["node", str(HERE / script), *args])

    def _argv(self) -> tuple[list[str], dict[str, str] | None]:
        return self.argv, dict(os.environ, NODE_PATH=str(node_modules()), NODE_NO_WARNINGS="1")


class PythonPeer(Peer):
    """A Python peer program from this folder, run in the peers' own venv."""

    def __init__(self, script: str, *args: str) -> None:
        super().__init__(["python", str(HERE / script), *args])

    def _argv(self) -> tuple[list[str], dict[str, str] | None]:
        return [str(peer_python()), *self.argv[1:]], dict(os.environ, PYTHONUNBUFFERED="1")
