"""A fleet of Modbus TCP devices in one process: N listening ports, 100 holding registers each, new values per read.

    python -m plant.modbus_fleet --devices 200 [--registers 100]

Prints one JSON line {"ports": [...]} once every port listens, then obeys one command per line
on stdin and answers each with one JSON line on stdout:

    stats   -> {"served": [reads answered per device], "cpu_s": ...}
    freeze  -> stop answering (requests are read and ignored, connections stay open)
    thaw    -> answer again
    quit    -> close every port and exit

Every FC3/FC4 read of a device returns registers derived from that device's read counter (read k
returns (k * 7 + address) mod 65536 per register), so every read carries new values and the
device's own counter says how many values it served. Anything but FC3/FC4 is answered with
exception 1. Written on asyncio.Protocol so that the simulator, not being the subject, stays cheap:
its CPU is reported separately by the bench.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import struct
import sys
import time
from pathlib import Path

import numpy as np

_MBAP = struct.Struct(">HHHB")  # transaction id, protocol id, length, unit id
_READ = struct.Struct(">BHH")  # function code, start address, count


class Fleet:
    """Shared state of every simulated device: read counters and whether answering is frozen."""

    def __init__(self, devices: int, registers: int) -> None:
        self.served = [0] * devices
        self.registers = registers
        self.frozen = False
        self.base = np.arange(65536, dtype=np.uint32)


class Device(asyncio.Protocol):
    """One TCP connection to device `index`: parses MBAP frames and answers reads."""

    def __init__(self, fleet: Fleet, index: int) -> None:
        self.fleet = fleet
        self.index = index
        self.buf = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:  # noqa: D102
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:  # noqa: D102
        self.buf += data
        while len(self.buf) >= 7:
            tid, pid, length, unit = _MBAP.unpack_from(self.buf)
            end = 6 + length
            if len(self.buf) < end:
                return
            pdu = self.buf[7:end]
            self.buf = self.buf[end:]
            if not self.fleet.frozen:
                self.answer(tid, unit, pdu)

    def answer(self, tid: int, unit: int, pdu: bytes) -> None:
        """Reply to one request PDU."""
        assert self.transport is not None
        if len(pdu) == 5 and pdu[0] in (3, 4):
            fc, address, count = _READ.unpack(pdu)
            if 1 <= count <= 125 and address + count <= 65536:
                k = self.fleet.served[self.index]
                self.fleet.served[self.index] = k + 1
                regs = ((self.fleet.base[address:address + count] + k * 7) & 0xFFFF).astype(">u2").tobytes()
                body = bytes((fc, 2 * count)) + regs
            else:
                body = bytes((fc | 0x80, 3))
        else:
            body = bytes(((pdu[0] if pdu else 0) | 0x80, 1))
        self.transport.write(_MBAP.pack(tid, 0, len(body) + 1, unit) + body)


async def main_async(devices: int, registers: int) -> None:
    """Listen on `devices` ports, print them, then obey stdin until quit."""
    loop = asyncio.get_running_loop()
    fleet = Fleet(devices, registers)
    servers = []
    for i in range(devices):
        servers.append(await loop.create_server(lambda i=i: Device(fleet, i), "127.0.0.1", 0, backlog=16))
    ports = [s.sockets[0].getsockname()[1] for s in servers]
    print(json.dumps({"ports": ports, "pid": os.getpid()}), flush=True)
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while True:
        line = (await reader.readline()).decode().strip()
        if line in ("quit", ""):
            break
        if line == "freeze":
            fleet.frozen = True
        elif line == "thaw":
            fleet.frozen = False
        print(json.dumps({"served": fleet.served, "cpu_s": time.process_time(), "frozen": fleet.frozen}),
              flush=True)
    for s in servers:
        s.close()


def main() -> None:
    """Parse arguments and run the fleet."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--devices", type=int, default=200)
    p.add_argument("--registers", type=int, default=100)
    args = p.parse_args()
    asyncio.run(main_async(args.devices, args.registers))



def fleet_toml(dsn: str, ports: list[int], spool_dir: Path, interval: float = 0.1, registers: int = 100, *,
               spool_flush: float | None = None, historian_flush: float | None = None) -> str:
    """A shopfloor.toml whose gateway reads this fleet: one Modbus source of `registers` uint16 holding registers
    per port (text only: the plant imports nothing of the project); the flush intervals are written only if given."""
    lines = ["[historian]", f"dsn = {json.dumps(dsn)}"]
    lines += [f"flush_interval = {historian_flush}"] if historian_flush is not None else []
    lines += ["", "[twin]", "enabled = false", "", "[gateway.spool]", f"directory = {json.dumps(str(spool_dir))}"]
    lines += [f"flush_interval = {spool_flush}"] if spool_flush is not None else []
    lines += [""]
    for d, port in enumerate(ports):
        lines += ["[[gateway.sources]]", 'type = "modbus"', f'name = "dev{d:03d}"', 'host = "127.0.0.1"',
                  f"port = {port}", f"poll_interval = {interval}", "tags = ["]
        lines += [f'    {{name = "dev{d:03d}.r{i:03d}", table = "holding", address = {i}, type = "uint16", '
                  f'machine = "dev{d:03d}"}},' for i in range(registers)]
        lines += ["]", ""]
    return "\n".join(lines)

if __name__ == "__main__":
    main()
