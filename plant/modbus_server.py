"""A simulated energy meter and legacy machine behind a real Modbus TCP (or serial RTU) server (pymodbus).

This is the outside world the gateway's Modbus adapter talks to: it imports nothing of Shopfloor's
and encodes its values with its own code, so a test that reads through the adapter checks two
independent implementations of the same byte and word orders against each other.

    async with ModbusPlant(port=0) as plant:      # port 0: any free port, then see plant.port
        plant.set("meter.voltage", 398.5)
        plant.get("machine.run")

    async with ModbusPlant(framing="rtu", serial_port="/dev/ttyS1", baudrate=19200, parity="E") as plant:
        ...                                       # a Modbus RTU device on a serial line

Every signal is described in REGISTER_MAP (table, 0-based address, type, byte order, scale), which
the adapter's sample configuration (gateway/modbus/README.md) follows. Addresses between signals
of a register table are holes: reading them answers "illegal data address" (exception 2), as many
real devices do. `fail()` makes a range answer any exception code, `mute()` makes the device hang
(connected, silent), and `stop()` and `start()` take it off the network and back (on the same
port) while its values stay. With `simulate=True` a small deterministic model (`step(dt)`, run
every `tick` seconds by a task) turns the run coil into power, energy, parts and temperature.
"""

from __future__ import annotations

import asyncio
import logging
import math
import struct
from collections import Counter
from dataclasses import dataclass
from typing import Mapping, Sequence

from pymodbus.constants import ExcCodes
from pymodbus.framer import FramerType
from pymodbus.server import ModbusSerialServer, ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

log = logging.getLogger(__name__)

Value = bool | int | float | str

TABLES = ("coil", "discrete_input", "holding", "input")
_BIT_TABLES = ("coil", "discrete_input")
_STRUCT = {"int16": "h", "uint16": "H", "int32": "i", "uint32": "I", "int64": "q", "uint64": "Q",
           "float32": "f", "float64": "d"}
TYPES = ("bool", *_STRUCT, "string")
ORDERS = ("ABCD", "BADC", "CDAB", "DCBA")
# the table each function code reads or writes
_FC_TABLE = {1: "coil", 5: "coil", 15: "coil", 2: "discrete_input", 4: "input",
             3: "holding", 6: "holding", 16: "holding", 22: "holding", 23: "holding"}
_FRAMERS = {"tcp": FramerType.SOCKET, "rtu-over-tcp": FramerType.RTU, "rtu": FramerType.RTU}


@dataclass(frozen=True, slots=True)
class Signal:
    """Where one plant value sits in the Modbus address space and how it is encoded there."""

    table: str
    address: int
    type: str
    byte_order: str = "ABCD"
    scale: float = 1.0
    offset: float = 0.0
    """Registers hold (value - offset) / scale; a reader shows raw * scale + offset."""
    length: int = 0
    """Registers of a string."""
    readonly: bool = False
    """Refuse Modbus writes with exception 2 (set() still changes it: the plant itself may)."""
    unit: str = ""
    description: str = ""

    def __post_init__(self) -> None:
        if self.table not in TABLES:
            raise ValueError(f"table: {self.table!r} is not one of {', '.join(TABLES)}")
        if self.type not in TYPES:
            raise ValueError(f"type: {self.type!r} is not one of {', '.join(TYPES)}")
        if (self.type == "bool") != (self.table in _BIT_TABLES):
            raise ValueError(f"type: {self.type} does not fit the {self.table} table")
        if self.byte_order not in ORDERS:
            raise ValueError(f"byte_order: {self.byte_order!r} is not one of {', '.join(ORDERS)}")
        if (self.type == "string") != (self.length > 0):
            raise ValueError("length: strings, and only strings, need a length in registers")

    @property
    def registers(self) -> int:
        """Addresses the signal occupies (1 for a bit)."""
        if self.type == "bool":
            return 1
        if self.type == "string":
            return self.length
        return struct.calcsize(_STRUCT[self.type]) // 2


REGISTER_MAP: dict[str, Signal] = {
    # the energy meter: input registers, float32 in every word order as meters from different makers use
    "meter.voltage": Signal("input", 0, "float32", "ABCD", unit="V", description="line voltage L1-L2"),
    "meter.current": Signal("input", 2, "float32", "CDAB", unit="A", description="phase current L1"),
    "meter.power": Signal("input", 4, "float32", "BADC", unit="kW", description="active power"),
    "meter.power_factor": Signal("input", 6, "float32", "DCBA", description="power factor"),
    "meter.frequency": Signal("input", 8, "uint16", scale=0.01, unit="Hz", description="line frequency"),
    "meter.status": Signal("input", 9, "uint16", description="meter diagnostics, 0: ok"),
    "meter.energy_counter": Signal("input", 10, "uint32", "CDAB", unit="Wh",
                                   description="active energy, wraps at 2^32"),
    "meter.energy_total": Signal("input", 12, "float64", "DCBA", unit="kWh", description="active energy"),
    # input 16..19 is a hole
    "machine.speed": Signal("input", 20, "uint16", "BADC", unit="rpm", description="spindle speed (bytes swapped)"),
    "machine.runtime": Signal("input", 21, "int64", unit="s", description="hours run, in seconds"),
    # the legacy machine: holding registers, a scaled temperature, setpoints and a name
    "machine.temperature": Signal("holding", 100, "int16", scale=0.1, readonly=True, unit="degC",
                                  description="spindle temperature in 0.1 degC"),
    "machine.speed_setpoint": Signal("holding", 101, "uint16", unit="rpm", description="spindle speed setpoint"),
    "machine.part_count": Signal("holding", 102, "uint32", unit="parts", description="good parts; write 0 to reset"),
    "machine.cycle_time": Signal("holding", 104, "float32", unit="s", description="cycle time setpoint"),
    "machine.coolant_temperature": Signal("holding", 106, "uint16", scale=0.1, offset=-50.0, readonly=True,
                                          unit="degC", description="coolant temperature, raw 0.1 degC from -50"),
    # holding 107..109 is a hole
    "machine.name": Signal("holding", 110, "string", length=8, readonly=True, description="machine name"),
    # holding 118..119 is a hole; the process of the part being cut (AI4I 2020 records, one per part)
    "machine.air_temperature": Signal("holding", 120, "float32", readonly=True, unit="K", description="air temperature"),
    "machine.process_temperature": Signal("holding", 122, "float32", readonly=True, unit="K",
                                          description="process temperature"),
    "machine.process_speed": Signal("holding", 124, "float32", readonly=True, unit="rpm",
                                    description="rotational speed under load"),
    "machine.torque": Signal("holding", 126, "float32", readonly=True, unit="Nm", description="torque"),
    "machine.tool_wear": Signal("holding", 128, "uint16", readonly=True, unit="min", description="tool wear"),
    "machine.energy": Signal("holding", 129, "float32", readonly=True, unit="kWh", description="the lathe's energy"),
    "machine.run": Signal("coil", 0, "bool", description="run (true) / stop (false)"),
    "machine.alarm_reset": Signal("coil", 1, "bool", description="write true to reset the alarm; clears itself"),
    "machine.running": Signal("discrete_input", 0, "bool", description="spindle turning"),
    "machine.alarm": Signal("discrete_input", 1, "bool", description="alarm active"),
    "machine.door_open": Signal("discrete_input", 2, "bool", description="guard door open"),
}

INITIAL: dict[str, Value] = {
    "meter.voltage": 400.0,
    "meter.frequency": 50.0,
    "meter.power_factor": 0.5,
    "machine.temperature": 22.0,
    "machine.speed_setpoint": 1500,
    "machine.cycle_time": 12.5,
    "machine.coolant_temperature": 18.5,
    "machine.name": "LATHE-07",
    "machine.run": True,
}


def _reorder(data: bytes, order: str) -> bytes:
    # word order reversed for CDAB/DCBA, bytes inside each word swapped for BADC/DCBA
    words = [data[i : i + 2] for i in range(0, len(data), 2)]
    if order in ("CDAB", "DCBA"):
        words.reverse()
    if order in ("BADC", "DCBA"):
        words = [w[::-1] for w in words]
    return b"".join(words)


def encode(signal: Signal, value: Value) -> list[int]:
    """The registers (or the one bit, as 0/1) holding a signal's engineering value."""
    if signal.type == "bool":
        return [int(bool(value))]
    if signal.type == "string":
        data = str(value).encode("utf-8")
        if len(data) > 2 * signal.length:
            raise ValueError(f"{value!r} does not fit in {signal.length} registers")
        data = _reorder(data.ljust(2 * signal.length, b"\x00"), signal.byte_order)
    else:
        integer = signal.type[0] in "iu"
        if signal.scale == 1.0 and signal.offset == 0.0:
            number: int | float = int(value) if integer else float(value)  # int64 would lose digits as float
        else:
            raw = (float(value) - signal.offset) / signal.scale
            number = round(raw) if integer else raw
        data = _reorder(struct.pack(">" + _STRUCT[signal.type], number), signal.byte_order)
    return [int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2)]


def decode(signal: Signal, registers: Sequence[int]) -> Value:
    """A signal's engineering value from its registers (or bit)."""
    if signal.type == "bool":
        return bool(registers[0])
    data = _reorder(b"".join(r.to_bytes(2, "big") for r in registers), signal.byte_order)
    if signal.type == "string":
        return data.split(b"\x00", 1)[0].decode("utf-8")
    (raw,) = struct.unpack(">" + _STRUCT[signal.type], data)
    if signal.scale == 1.0 and signal.offset == 0.0:
        return raw  # type: ignore[no-any-return]
    return raw * signal.scale + signal.offset  # type: ignore[no-any-return]


@dataclass(frozen=True, slots=True)
class _Failure:
    table: str
    start: int
    end: int
    code: ExcCodes


class ModbusPlant:
    """The simulated devices and their Modbus server (TCP, or RTU on `serial_port`); an async context manager."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        unit_id: int = 1,
        framing: str = "tcp",
        signals: Mapping[str, Signal] = REGISTER_MAP,
        simulate: bool = True,
        tick: float = 1.0,
        serial_port: str = "",
        baudrate: int = 19200,
        parity: str = "E",
        stopbits: int = 1,
        bytesize: int = 8,
    ) -> None:
        if framing not in _FRAMERS:
            raise ValueError(f"framing: {framing!r} is not one of {', '.join(_FRAMERS)}")
        if (framing == "rtu") != bool(serial_port):
            raise ValueError('serial_port: framing "rtu", and only it, serves on a serial port')
        self.serial_port = serial_port
        """The serial device served with framing "rtu" (host and port are then unused)."""
        self.line = {"baudrate": baudrate, "parity": parity, "stopbits": stopbits, "bytesize": bytesize}
        self.host = host
        self.port = port
        """The port served; a free one is picked on the first start when given 0."""
        self.unit_id = unit_id
        self.framing = framing
        self.signals = dict(signals)
        self.tick = tick
        self._bits, self._words = _memory(self.signals)
        self._device = _device(self.signals, unit_id, self._action)
        self._failures: list[_Failure] = []
        self._answering = asyncio.Event()
        self._answering.set()
        self.function_codes: Counter[int] = Counter()
        """Requests served per function code (a write also counts its read-back), for tests."""
        self._server: ModbusTcpServer | ModbusSerialServer | None = None
        self._model = _LineModel(self) if simulate else None
        self._model_task: asyncio.Task[None] | None = None
        for name, value in INITIAL.items():
            if name in self.signals:
                self.set(name, value)

    async def __aenter__(self) -> ModbusPlant:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def serving(self) -> bool:
        """True while the server accepts connections."""
        return self._server is not None

    @property
    def connections(self) -> int:
        """Clients connected right now."""
        if self._server is None:
            return 0
        return len(self._server.active_connections)

    async def start(self) -> None:
        """Listen for Modbus clients (again, on the same port after stop()); start the model."""
        if self._model is not None and self._model_task is None:
            self._model_task = asyncio.create_task(self._run_model(), name="modbus plant model")
        if self._server is not None:
            return
        if self.framing == "rtu":
            serial = ModbusSerialServer(self._device, framer=FramerType.RTU, port=self.serial_port,
                                        **self.line)  # type: ignore[arg-type]
            await serial.serve_forever(background=True)
            self._server = serial
            log.info("modbus plant serving RTU on %s", self.serial_port)
            return
        server = ModbusTcpServer(self._device, framer=_FRAMERS[self.framing], address=(self.host, self.port))
        await server.serve_forever(background=True)
        self._server = server
        # pymodbus keeps the asyncio.Server it listens with as its transport
        self.port = server.transport.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        log.info("modbus plant serving on %s:%d", self.host, self.port)

    async def stop(self) -> None:
        """Stop listening and drop every client connection; values are kept, the model runs on."""
        if self._server is None:
            return
        server, self._server = self._server, None
        await server.shutdown()

    async def close(self) -> None:
        """Stop the server and the model."""
        self.unmute()  # let held requests finish rather than leave their tasks pending
        if self._model_task is not None:
            self._model_task.cancel()
            try:
                await self._model_task
            except asyncio.CancelledError:
                pass
            self._model_task = None
        await self.stop()

    def set(self, name: str, value: Value) -> None:
        """Give a signal a new engineering value, as the device itself would."""
        signal = self._signal(name)
        registers = encode(signal, value)
        if signal.table in _BIT_TABLES:
            self._bits[signal.table][signal.address] = bool(registers[0])
        else:
            self._words[signal.table][signal.address : signal.address + len(registers)] = registers

    def get(self, name: str) -> Value:
        """A signal's current engineering value, including what clients wrote."""
        signal = self._signal(name)
        if signal.table in _BIT_TABLES:
            return self._bits[signal.table][signal.address]
        return decode(signal, self._words[signal.table][signal.address : signal.address + signal.registers])

    def registers(self, table: str, address: int, count: int = 1) -> list[int]:
        """Raw registers (or bits as 0/1) as a client reads them, whatever signal they belong to."""
        if table in _BIT_TABLES:
            return [int(b) for b in self._bits[table][address : address + count]]
        return list(self._words[table][address : address + count])

    def fail(self, table: str, address: int, count: int = 1, code: int = ExcCodes.DEVICE_FAILURE) -> None:
        """Answer requests touching table[address, address+count) with exception `code` until recover()."""
        if table not in TABLES:
            raise ValueError(f"table: {table!r} is not one of {', '.join(TABLES)}")
        self._failures.append(_Failure(table, address, address + count, ExcCodes(code)))

    def recover(self) -> None:
        """Answer every request normally again."""
        self._failures.clear()

    def mute(self) -> None:
        """Keep connections open but answer nothing, as a hung device does, until unmute()."""
        self._answering.clear()

    def unmute(self) -> None:
        """Answer requests again (the ones held meanwhile are answered now, to whoever still listens)."""
        self._answering.set()

    def step(self, dt: float) -> None:
        """Advance the plant model by dt seconds (what the background task does every `tick`)."""
        if self._model is None:
            raise RuntimeError("this plant was made with simulate=False")
        self._model.step(dt)

    def _signal(self, name: str) -> Signal:
        try:
            return self.signals[name]
        except KeyError:
            raise KeyError(f"no signal {name!r} in this plant") from None

    async def _run_model(self) -> None:
        loop = asyncio.get_running_loop()
        last = loop.time()
        while True:
            await asyncio.sleep(self.tick)
            now = loop.time()
            self.step(now - last)
            last = now

    async def _action(
        self,
        function_code: int,
        start_address: int,
        address: int,
        count: int,
        registers: list[int],
        values: list[int] | list[bool] | None,
    ) -> ExcCodes | None:
        """pymodbus calls this before it answers a request: our memory is the truth, copy it in."""
        await self._answering.wait()
        self.function_codes[function_code] += 1
        table = _FC_TABLE[function_code]
        bits = table in _BIT_TABLES
        # for bit tables pymodbus passes the bit address but the count of 16-bit words it touches
        first, last = (address, (address // 16 + count) * 16) if bits else (address, address + count)
        for f in self._failures:
            if f.table == table and f.start < last and first < f.end:
                return f.code
        if bits:
            store = self._bits[table]
            if values:
                store[address : address + len(values)] = [bool(v) for v in values]
            word = address // 16
            for i in range(count):
                chunk = store[(word + i) * 16 : (word + i + 1) * 16]
                registers[word - start_address + i] = sum(1 << k for k, on in enumerate(chunk) if on)
        else:
            words = self._words[table]
            if values:
                words[address : address + len(values)] = [int(v) for v in values]
            registers[address - start_address : address - start_address + count] = words[address : address + count]
        return None


def _memory(signals: Mapping[str, Signal]) -> tuple[dict[str, list[bool]], dict[str, list[int]]]:
    """Zeroed storage for every table, as long as its highest signal needs (bits: whole words)."""
    ends = {t: max((s.address + s.registers for s in signals.values() if s.table == t), default=0) for t in TABLES}
    bits = {t: [False] * max(16, -(-ends[t] // 16) * 16) for t in _BIT_TABLES}
    words = {t: [0] * ends[t] for t in ("holding", "input")}
    return bits, words


def _device(signals: Mapping[str, Signal], unit_id: int, action) -> SimDevice:  # type: ignore[no-untyped-def]
    """The pymodbus device: every signal's registers valid, the holes between them not."""
    blocks: dict[str, list[SimData]] = {t: [] for t in TABLES}
    bits, _ = _memory(signals)
    for table in _BIT_TABLES:
        blocks[table].append(SimData(0, count=len(bits[table]), values=False, datatype=DataType.BITS))
    taken: dict[tuple[str, int], str] = {}
    for name, s in sorted(signals.items(), key=lambda kv: (kv[1].table, kv[1].address)):
        for a in range(s.address, s.address + s.registers):
            if (s.table, a) in taken:
                raise ValueError(f"signals: {name!r} overlaps {taken[(s.table, a)]!r} at {s.table} {a}")
            taken[(s.table, a)] = name
        if s.table not in _BIT_TABLES:
            blocks[s.table].append(
                SimData(s.address, count=s.registers, values=0, datatype=DataType.REGISTERS, readonly=s.readonly)
            )
    for table in ("holding", "input"):
        if not blocks[table]:
            blocks[table].append(SimData(0, datatype=DataType.INVALID))
    return SimDevice(
        unit_id,
        simdata=(blocks["coil"], blocks["discrete_input"], blocks["holding"], blocks["input"]),
        action=action,
    )


class _LineModel:
    """A lathe on an energy meter: power follows run/stop, counters integrate it, temperatures lag."""

    RUN_KW = 7.5
    IDLE_KW = 0.4

    def __init__(self, plant: ModbusPlant) -> None:
        missing = [n for n in REGISTER_MAP if n not in plant.signals]
        if missing:
            raise ValueError(f"simulate: the model needs the signals {', '.join(missing)}")
        self.plant = plant
        self.t = 0.0
        self._wh = 0.0  # fractions of a Wh and of a part not yet counted
        self._parts = 0.0
        self._runtime = 0.0

    def mute(self) -> None:
        """Keep connections open but answer nothing, as a hung device does, until unmute()."""
        self._answering.clear()

    def unmute(self) -> None:
        """Answer requests again (the ones held meanwhile are answered now, to whoever still listens)."""
        self._answering.set()

    def step(self, dt: float) -> None:
        """Advance dt seconds; counters add to what the registers hold, so a client's reset sticks."""
        p = self.plant
        self.t += dt
        if p.get("machine.alarm_reset"):
            p.set("machine.alarm", False)
            p.set("machine.alarm_reset", False)
        running = bool(p.get("machine.run")) and not p.get("machine.alarm") and not p.get("machine.door_open")
        p.set("machine.running", running)
        kw = self.RUN_KW if running else self.IDLE_KW
        pf = 0.92 if running else 0.5
        volts = 400.0 + 2.0 * math.sin(2 * math.pi * self.t / 60.0)
        p.set("meter.voltage", volts)
        p.set("meter.power", kw)
        p.set("meter.power_factor", pf)
        p.set("meter.current", kw * 1000.0 / (math.sqrt(3) * volts * pf))
        p.set("meter.frequency", 50.0)
        self._wh += kw * 1000.0 * dt / 3600.0
        whole = int(self._wh)
        self._wh -= whole
        p.set("meter.energy_counter", (int(p.get("meter.energy_counter")) + whole) % 2**32)
        p.set("meter.energy_total", float(p.get("meter.energy_total")) + kw * dt / 3600.0)
        target_speed = float(p.get("machine.speed_setpoint")) if running else 0.0
        speed = float(p.get("machine.speed"))
        p.set("machine.speed", round(speed + (target_speed - speed) * min(1.0, dt / 2.0)))
        temp = float(p.get("machine.temperature"))
        p.set("machine.temperature", temp + ((65.0 if running else 22.0) - temp) * min(1.0, dt / 120.0))
        if running:
            self._runtime += dt
            self._parts += dt / max(float(p.get("machine.cycle_time")), 0.1)
        whole_s, whole_parts = int(self._runtime), int(self._parts)
        self._runtime -= whole_s
        self._parts -= whole_parts
        p.set("machine.runtime", int(p.get("machine.runtime")) + whole_s)
        p.set("machine.part_count", (int(p.get("machine.part_count")) + whole_parts) % 2**32)
