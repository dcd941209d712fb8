"""Modbus RTU on a serial line: the source against pymodbus's RTU server over a pty pair made by socat."""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any, Iterator

import msgspec
import pytest

from gateway.modbus import ModbusSourceConfig
from historian.samples import Quality
from plant.modbus_server import ModbusPlant
from tests.gateway.interop.peers import peers_dir
from tests.gateway.test_modbus import running, settle, source, tag

BASE: dict[str, Any] = {"name": "line", "framing": "rtu", "port": "/dev/ttyUSB0",
                        "tags": [{"name": "t", "table": "holding", "address": 0, "type": "int16"}]}


@pytest.fixture
def pty_pair(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """Two linked pseudo-terminals (a null-modem cable): the device's end and the gateway's."""
    peers_dir()  # scripts/peers installs socat where it is missing
    socat = shutil.which("socat")
    assert socat, "socat is needed for the serial-line tests: scripts/peers installs it"
    ends = (str(tmp_path / "device"), str(tmp_path / "gateway"))
    proc = subprocess.Popen([socat, f"pty,raw,echo=0,link={ends[0]}", f"pty,raw,echo=0,link={ends[1]}"],
                            stderr=subprocess.PIPE)
    try:
        for _ in range(200):
            if all(Path(e).exists() for e in ends):
                break
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else "socat exited"
            time.sleep(0.02)
        assert all(Path(e).exists() for e in ends), "socat made no pty pair in 4 s"
        yield ends
    finally:
        proc.terminate()
        proc.wait(5)


async def test_rtu_on_a_serial_line_reads_and_writes(pty_pair):
    device, gateway = pty_pair
    async with ModbusPlant(framing="rtu", serial_port=device, simulate=False, baudrate=38400, parity="N",
                           stopbits=2) as plant:
        plant.set("meter.current", 12.5)
        src = source(plant, [tag("machine.name"), tag("meter.current"), tag("machine.run"),
                             tag("machine.speed_setpoint", writable=True)],
                     host="", port=gateway, framing="rtu", baudrate=38400, parity="N", stopbits=2, timeout=1.0)
        assert src.config.where == f"{gateway} 38400 8N2"
        async with running(src) as sink:
            await settle(sink, {"machine.name": "LATHE-07", "meter.current": 12.5, "machine.run": True,
                                "machine.speed_setpoint": 1500})
            assert src.status.connected
            await src.write("machine.speed_setpoint", 900)
            assert plant.get("machine.speed_setpoint") == 900
            plant.set("meter.current", 3.25)
            await settle(sink, {"meter.current": 3.25, "machine.speed_setpoint": 900})


async def test_rtu_device_that_does_not_answer_marks_tags_bad(pty_pair):
    device, gateway = pty_pair
    # parity N: Linux ptys refuse a parity setting (EINVAL), a real UART takes the default E
    async with ModbusPlant(framing="rtu", serial_port=device, simulate=False, unit_id=1, parity="N") as plant:
        # the wrong unit id: on a serial line the other device stays silent, so every read times out
        src = source(plant, [tag("meter.current")], host="", port=gateway, framing="rtu", unit_id=7, parity="N",
                     timeout=0.3)
        async with running(src) as sink:
            for _ in range(100):
                if src.status.last_error:
                    break
                await asyncio.sleep(0.05)
            assert src.status.last_error and not any(r.quality == Quality.GOOD for r in sink.readings)


def test_serial_defaults_are_the_specification_line():
    config = msgspec.convert(BASE, ModbusSourceConfig)
    assert (config.baudrate, config.bytesize, config.parity, config.stopbits) == (19200, 8, "E", 1)
    assert config.where == "/dev/ttyUSB0 19200 8E1"
    tcp = msgspec.convert({**BASE, "framing": "tcp", "port": None, "host": "10.0.0.5"}, ModbusSourceConfig)
    assert (tcp.port, tcp.where) == (502, "10.0.0.5:502")


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"port": 502}, "port:"),
        ({"port": ""}, "port:"),
        ({"host": "10.0.0.5"}, "host:"),
        ({"unit_id": 0}, "unit_id:"),
        ({"unit_id": 248}, "unit_id:"),
        ({"baudrate": 10}, "baudrate:"),
        ({"parity": "X"}, "parity:"),
        ({"stopbits": 3}, "stopbits:"),
        ({"bytesize": 7}, "bytesize:"),
        ({"framing": "tcp", "host": "h", "port": "/dev/ttyUSB0"}, "port:"),
        ({"framing": "tcp", "host": "h", "port": 502, "baudrate": 9600}, "baudrate:"),
    ],
)
def test_serial_config_errors_name_the_field(changes, field):
    with pytest.raises(msgspec.ValidationError, match=re.escape(field)):
        msgspec.convert({**BASE, **changes}, ModbusSourceConfig)
