"""The lean Modbus TCP client: the same answers as pymodbus's own client from a real server, and the frames a device gets wrong."""

from __future__ import annotations

import asyncio
import struct
from typing import AsyncIterator, Awaitable, Callable

import numpy as np
import pytest
from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ModbusIOException

from gateway.modbus.lean import LeanTcpClient
from plant.modbus_server import ModbusPlant, Signal

SIGNALS = {f"h{i}": Signal("holding", i, "uint16") for i in range(120)} | {
    f"i{i}": Signal("input", i, "uint16") for i in range(10)} | {
    f"c{i}": Signal("coil", i, "bool") for i in range(12)} | {
    f"d{i}": Signal("discrete_input", i, "bool") for i in range(5)}


@pytest.fixture
async def plant() -> AsyncIterator[ModbusPlant]:
    p = ModbusPlant(port=0, signals=SIGNALS, simulate=False)
    await p.start()
    for i in range(120):
        p.set(f"h{i}", (i * 541) % 65536)
    for i in range(10):
        p.set(f"i{i}", 60000 + i)
    for i in range(12):
        p.set(f"c{i}", i % 3 == 0)
    for i in range(5):
        p.set(f"d{i}", i % 2 == 1)
    try:
        yield p
    finally:
        await p.close()


async def test_reads_and_writes_agree_with_pymodbus_client(plant: ModbusPlant) -> None:
    lean = LeanTcpClient("127.0.0.1", plant.port, 2.0)
    ref = AsyncModbusTcpClient("127.0.0.1", port=plant.port, timeout=2.0, retries=0, reconnect_delay=0)
    assert await lean.connect() and await ref.connect()
    try:
        a = await lean.read_holding_registers(0, count=120, device_id=1)
        b = await ref.read_holding_registers(0, count=120, device_id=1)
        assert isinstance(a.registers, np.ndarray) and a.registers.dtype == np.uint16
        assert a.registers.tolist() == b.registers == [(i * 541) % 65536 for i in range(120)]
        assert not a.isError() and a.dev_id == 1
        a = await lean.read_input_registers(0, count=10, device_id=1)
        assert a.registers.tolist() == [60000 + i for i in range(10)]
        a = await lean.read_coils(0, count=12, device_id=1)
        b = await ref.read_coils(0, count=12, device_id=1)
        assert a.bits[:12] == b.bits[:12] == [i % 3 == 0 for i in range(12)]
        a = await lean.read_discrete_inputs(0, count=5, device_id=1)
        assert a.bits[:5] == [i % 2 == 1 for i in range(5)]
        # FC6, FC16, FC5, FC15: the device holds what was written
        assert not (await lean.write_register(3, 4242, device_id=1)).isError()
        assert not (await lean.write_registers(10, [1, 2, 65535], device_id=1)).isError()
        assert not (await lean.write_coil(1, True, device_id=1)).isError()
        assert not (await lean.write_coils(4, [False, True], device_id=1)).isError()
        assert [plant.get("h3"), plant.get("h10"), plant.get("h11"), plant.get("h12")] == [4242, 1, 2, 65535]
        assert [plant.get("c1"), plant.get("c4"), plant.get("c5")] == [True, False, True]
        # an address the device does not have: an exception response, decoded by pymodbus
        a = await lean.read_holding_registers(500, count=2, device_id=1)
        b = await ref.read_holding_registers(500, count=2, device_id=1)
        assert a.isError() and a.exception_code == b.exception_code == 2
    finally:
        lean.close()
        ref.close()
    await asyncio.sleep(0)
    assert not lean.connected


Answer = Callable[[bytes, asyncio.StreamWriter], Awaitable[None]]


async def _device(answer: Answer) -> tuple[asyncio.Server, int]:
    """A raw TCP device on 127.0.0.1 that answers every request frame with `answer`."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                request = await reader.readexactly(12)  # a read request: MBAP, function code, address, count
                await answer(request, writer)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


def _registers_frame(tid: int, unit: int, values: list[int]) -> bytes:
    pdu = struct.pack(">BB", 3, 2 * len(values)) + struct.pack(f">{len(values)}H", *values)
    return struct.pack(">HHHB", tid, 0, len(pdu) + 1, unit) + pdu


async def test_frames_split_joined_and_late_answers_are_handled() -> None:
    async def answer(request: bytes, writer: asyncio.StreamWriter) -> None:
        tid = struct.unpack(">H", request[:2])[0]
        late = _registers_frame((tid - 1) & 0xFFFF, 1, [9, 9])  # a stale answer first: to be skipped
        good = _registers_frame(tid, 1, [tid, 7])
        data = late + good
        for k in range(0, len(data), 5):  # in 5-byte pieces: the client must reassemble
            writer.write(data[k:k + 5])
            await writer.drain()
            await asyncio.sleep(0)

    server, port = await _device(answer)
    client = LeanTcpClient("127.0.0.1", port, 2.0)
    try:
        assert await client.connect()
        for _ in range(3):
            r = await client.read_holding_registers(0, count=2, device_id=1)
            assert r.registers.tolist() == [r.transaction_id, 7]
    finally:
        client.close()
        server.close()


async def test_wrong_device_timeout_and_hang_up_raise() -> None:
    mode = {"kind": "wrong-unit"}

    async def answer(request: bytes, writer: asyncio.StreamWriter) -> None:
        tid = struct.unpack(">H", request[:2])[0]
        if mode["kind"] == "wrong-unit":
            writer.write(_registers_frame(tid, 9, [1]))
        elif mode["kind"] == "bad-count":
            frame = bytearray(_registers_frame(tid, 1, [1, 2]))
            frame[8] = 3  # byte count says 3 for 4 bytes of registers
            writer.write(bytes(frame))
        elif mode["kind"] == "hang-up":
            writer.close()
        # "silent": no answer at all

    server, port = await _device(answer)
    try:
        client = LeanTcpClient("127.0.0.1", port, 0.3)
        assert await client.connect()
        with pytest.raises(ModbusIOException, match="device id 1 answered by device id 9"):
            await client.read_holding_registers(0, count=1, device_id=1)
        mode["kind"] = "bad-count"
        with pytest.raises(ModbusIOException, match="byte count 3"):
            await client.read_holding_registers(0, count=2, device_id=1)
        mode["kind"] = "silent"
        with pytest.raises(TimeoutError, match="no response within 0.3 s"):
            await client.read_holding_registers(0, count=1, device_id=1)
        mode["kind"] = "hang-up"
        with pytest.raises(ConnectionError):
            await client.read_holding_registers(0, count=1, device_id=1)
        await asyncio.sleep(0.05)
        assert not client.connected
        with pytest.raises(ConnectionError, match="not connected"):
            await client.read_holding_registers(0, count=1, device_id=1)
    finally:
        server.close()


async def test_connect_fails_cleanly_when_nothing_listens() -> None:
    server, port = await _device(lambda r, w: asyncio.sleep(0))
    server.close()
    await server.wait_closed()
    client = LeanTcpClient("127.0.0.1", port, 1.0)
    assert await client.connect() is False
    assert not client.connected
