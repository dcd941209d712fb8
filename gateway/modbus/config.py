"""Configuration of one Modbus device (TCP, or RTU on a serial port) and its tags, validated once at load
with errors naming the field."""

from __future__ import annotations

import math

import msgspec
import numpy as np

from gateway.modbus import codec
from gateway.outbox import check_settings
from gateway.tags import TagConfig
from gateway.values import default_precision, round_scaled

TABLES = ("coil", "discrete_input", "holding", "input")
BIT_TABLES = ("coil", "discrete_input")
WRITABLE_TABLES = ("coil", "holding")
FRAMINGS = ("tcp", "rtu-over-tcp", "rtu")
SERIAL_FIELDS = ("baudrate", "parity", "stopbits", "bytesize")
PARITIES = ("N", "E", "O")
SERIAL_DEFAULTS: dict[str, int | str] = {"baudrate": 19200, "parity": "E", "stopbits": 1, "bytesize": 8}
"""The Modbus over serial line specification's default line: 19200 baud, 8 data bits, even parity, 1 stop bit."""
MAX_REGISTERS = 125
"""The most registers one read may ask for (Modbus application protocol, FC3/FC4)."""
MAX_BITS = 2000
"""The most coils or discrete inputs one read may ask for (FC1/FC2)."""
MAX_ADDRESS = 65535


class ModbusTag(TagConfig, kw_only=True):
    """One value at a device: where it sits (table, 0-based address) and how to decode it."""

    table: str
    address: int
    type: str = ""
    """bool, int16, uint16, int32, uint32, int64, uint64, float32, float64 or string; bit tables default to bool."""
    byte_order: str = "ABCD"
    """ABCD (big-endian), BADC, CDAB or DCBA: see gateway/modbus/README.md."""
    length: int = 0
    """Registers of a string (two characters each)."""
    scale: float = 1.0
    offset: float = 0.0
    """Numbers are published as raw * scale + offset, and written back as (value - offset) / scale."""
    precision: int | None = None
    """Decimals a scaled value is rounded to; unset: those of scale and offset for an integer type,
    15 significant digits for a float type (see gateway/values.py)."""
    data_type: str = ""
    """As in TagConfig; empty: bool for bool, text for string, int for unscaled integers, else float."""
    poll_interval: float | None = None
    """Seconds between this tag's reads; unset: the source's poll_interval. Tags of one interval
    are read together on their own schedule."""

    def __post_init__(self) -> None:
        who = f"(tag {self.name!r})"
        if self.table not in TABLES:
            raise ValueError(f"table: {self.table!r} is not one of {', '.join(TABLES)} {who}")
        if not self.type and self.table in BIT_TABLES:
            self.type = "bool"
        if not self.type:
            raise ValueError(f"type: a {self.table} tag needs a type, one of {', '.join(codec.TYPES[1:])} {who}")
        if self.type not in codec.TYPES:
            raise ValueError(f"type: {self.type!r} is not one of {', '.join(codec.TYPES)} {who}")
        if (self.type == "bool") != (self.table in BIT_TABLES):
            raise ValueError(
                f"type: {self.type} does not fit the {self.table} table; "
                f"coils and discrete inputs are bool and only they are {who}"
            )
        if not self.data_type:
            self.data_type = self._default_data_type()
        super().__post_init__()
        self._check_layout(who)
        self._check_scaling(who)
        if self.precision is not None and not 0 <= self.precision <= 15:
            raise ValueError(f"precision: must be 0..15 decimals, got {self.precision} {who}")
        if self.writable and self.table not in WRITABLE_TABLES:
            raise ValueError(f"writable: a {self.table} cannot be written, only coils and holding registers {who}")
        if self.poll_interval is not None and not (math.isfinite(self.poll_interval) and self.poll_interval > 0):
            raise ValueError(f"poll_interval: must be > 0 seconds, got {self.poll_interval} {who}")

    def _default_data_type(self) -> str:
        if self.type == "bool":
            return "bool"
        if self.type == "string":
            return "text"
        if self.type in codec.INTEGER_TYPES and self.scale == 1.0 and self.offset == 0.0:
            return "int"
        return "float"

    def _check_layout(self, who: str) -> None:
        if self.type == "string":
            if not 1 <= self.length <= MAX_REGISTERS:
                raise ValueError(
                    f"length: a string needs its length in registers, 1..{MAX_REGISTERS}, got {self.length} {who}"
                )
        elif self.length:
            raise ValueError(f"length: only string tags have a length, this one is {self.type} {who}")
        if self.byte_order not in codec.allowed_orders(self.type):
            raise ValueError(
                f"byte_order: {self.byte_order!r} is not one of {', '.join(codec.allowed_orders(self.type))} "
                f"for {self.type} {who}"
            )
        if not 0 <= self.address <= MAX_ADDRESS:
            raise ValueError(f"address: must be 0..{MAX_ADDRESS} (0-based), got {self.address} {who}")
        if self.address + self.registers - 1 > MAX_ADDRESS:
            raise ValueError(f"address: {self.type} at {self.address} runs past {MAX_ADDRESS} {who}")

    def _check_scaling(self, who: str) -> None:
        if not (math.isfinite(self.scale) and self.scale != 0):
            raise ValueError(f"scale: must be a finite non-zero number, got {self.scale} {who}")
        if not math.isfinite(self.offset):
            raise ValueError(f"offset: must be finite, got {self.offset} {who}")
        if self.type in ("bool", "string") and (self.scale != 1.0 or self.offset != 0.0):
            raise ValueError(f"scale: a {self.type} tag cannot be scaled {who}")
        if self.data_type == "text" and self.type != "string":
            raise ValueError(f"data_type: text needs type string, this one is {self.type} {who}")
        if self.type == "string" and self.data_type != "text":
            raise ValueError(f"data_type: a string tag is text, got {self.data_type} {who}")

    @property
    def registers(self) -> int:
        """Addresses the value occupies: registers, or 1 for a bit."""
        return codec.register_count(self.type, self.length)

    def to_value(self, raw: codec.Value) -> codec.Value:
        """The published value of a decoded raw value (scaled when numeric)."""
        if isinstance(raw, (bool, str)):
            return raw
        if self.scale == 1.0 and self.offset == 0.0:
            return raw
        scaled = np.array([codec.apply_scale(raw, self.scale, self.offset)], dtype=np.float64)
        return float(round_scaled(scaled, np.array([self.decimals]))[0])

    @property
    def decimals(self) -> int:
        """Decimals a scaled value is rounded to; -1: 15 significant digits."""
        if self.precision is not None:
            return self.precision
        found = default_precision(self.scale, self.offset, self.type in codec.INTEGER_TYPES)
        return -1 if found is None else found


class ModbusSourceConfig(msgspec.Struct, tag="modbus", tag_field="type", kw_only=True, forbid_unknown_fields=True):
    """One Modbus device reached over TCP or on a serial line (RTU), polled for its tags."""

    name: str
    host: str = ""
    """The device or serial-to-TCP converter; empty (and unused) for framing rtu."""
    port: int | str | None = None
    """TCP port (default 502), or for framing rtu the serial device, e.g. "/dev/ttyUSB0"."""
    unit_id: int = 1
    """The unit (slave) id; gateways to serial lines route by it, plain TCP devices often ignore it."""
    framing: str = "tcp"
    """tcp (MBAP header), rtu-over-tcp (RTU frames with CRC through a serial-to-TCP converter) or rtu
    (RTU frames on a serial port)."""
    baudrate: int | None = None
    parity: str | None = None
    """N (none), E (even) or O (odd)."""
    stopbits: int | None = None
    bytesize: int | None = None
    """The serial line, framing rtu only; unset: 19200 baud, 8 data bits, even parity, 1 stop bit."""
    poll_interval: float = 1.0
    timeout: float = 3.0
    """Seconds to wait for the connection and for each response."""
    max_registers_per_request: int = MAX_REGISTERS
    merge_gap: int = 8
    """Unused addresses a read may span to merge two neighbouring tags into one request; 0: contiguous only."""
    reconnect_min: float = 0.5
    reconnect_max: float = 10.0
    """Reconnect delays (seconds) double from reconnect_min up to reconnect_max, with jitter."""
    single_write_functions: bool = True
    """Write one coil or register with FC5/FC6; false: always FC15/FC16, for devices without FC5/FC6."""
    batch_interval: float = 0.05
    batch_size: int = 5000
    max_pending: int = 100_000
    """Readings kept while the sink is slow; beyond this the oldest are dropped (and counted)."""
    tags: list[ModbusTag]

    def __post_init__(self) -> None:
        who = f"(source {self.name!r})"
        if not self.name:
            raise ValueError("name: a source needs a non-empty name")
        if self.framing not in FRAMINGS:
            raise ValueError(f"framing: {self.framing!r} is not one of {', '.join(FRAMINGS)} {who}")
        if self.framing == "rtu":
            self._check_serial(who)
        else:
            self._check_tcp(who)
        for key in ("poll_interval", "timeout", "reconnect_min"):
            value = getattr(self, key)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{key}: must be > 0 seconds, got {value} {who}")
        if not (math.isfinite(self.reconnect_max) and self.reconnect_max >= self.reconnect_min):
            raise ValueError(
                f"reconnect_max: must be >= reconnect_min ({self.reconnect_min}), got {self.reconnect_max} {who}"
            )
        if not 1 <= self.max_registers_per_request <= MAX_REGISTERS:
            raise ValueError(
                f"max_registers_per_request: must be 1..{MAX_REGISTERS}, got {self.max_registers_per_request} {who}"
            )
        if self.merge_gap < 0:
            raise ValueError(f"merge_gap: must be >= 0, got {self.merge_gap} {who}")
        try:
            check_settings(self.batch_size, self.batch_interval, self.max_pending)
        except ValueError as e:
            raise ValueError(f"{e} {who}") from None
        self._check_tags(who)

    def _check_tcp(self, who: str) -> None:
        if not self.host:
            raise ValueError(f"host: must not be empty {who}")
        if self.port is None:
            self.port = 502
        if isinstance(self.port, str) or not 1 <= self.port <= 65535:
            raise ValueError(f"port: must be a TCP port 1..65535 for framing {self.framing}, got {self.port!r} {who}")
        if not 0 <= self.unit_id <= 255:
            raise ValueError(f"unit_id: must be 0..255, got {self.unit_id} {who}")
        for key in SERIAL_FIELDS:
            if getattr(self, key) is not None:
                raise ValueError(f'{key}: only framing = "rtu" has a serial line, this source is {self.framing} {who}')

    def _check_serial(self, who: str) -> None:
        if self.host:
            raise ValueError(f'host: framing = "rtu" talks to a serial port (set port), not to host {self.host!r} {who}')
        if not isinstance(self.port, str) or not self.port:
            raise ValueError(f'port: framing = "rtu" needs the serial device, e.g. "/dev/ttyUSB0", got {self.port!r} {who}')
        # 0 is broadcast (no device answers it) and 248..255 are reserved on a serial line
        if not 1 <= self.unit_id <= 247:
            raise ValueError(f"unit_id: must be 1..247 on a serial line, got {self.unit_id} {who}")
        for key, default in SERIAL_DEFAULTS.items():
            if getattr(self, key) is None:
                setattr(self, key, default)
        if not 50 <= self.baudrate <= 4_000_000:  # type: ignore[operator]
            raise ValueError(f"baudrate: must be 50..4000000 bits/s, got {self.baudrate} {who}")
        if self.parity not in PARITIES:
            raise ValueError(f"parity: {self.parity!r} is not one of N (none), E (even), O (odd) {who}")
        if self.stopbits not in (1, 2):
            raise ValueError(f"stopbits: must be 1 or 2, got {self.stopbits} {who}")
        if self.bytesize != 8:
            raise ValueError(f"bytesize: RTU frames are binary and need 8 data bits, got {self.bytesize} {who}")

    @property
    def where(self) -> str:
        """'host:port', or the serial device and its line ('/dev/ttyUSB0 19200 8E1')."""
        if self.framing == "rtu":
            return f"{self.port} {self.baudrate} {self.bytesize}{self.parity}{self.stopbits}"
        return f"{self.host}:{self.port}"

    def interval_of(self, tag: ModbusTag) -> float:
        """Seconds between a tag's reads: its own poll_interval, else the source's."""
        return self.poll_interval if tag.poll_interval is None else tag.poll_interval

    def _check_tags(self, who: str) -> None:
        if not self.tags:
            raise ValueError(f"tags: a modbus source needs at least one tag {who}")
        seen: set[str] = set()
        for tag in self.tags:
            if tag.name in seen:
                raise ValueError(f"tags: tag name {tag.name!r} appears twice {who}")
            seen.add(tag.name)
            if tag.table not in BIT_TABLES and tag.registers > self.max_registers_per_request:
                raise ValueError(
                    f"max_registers_per_request: {self.max_registers_per_request} is less than the "
                    f"{tag.registers} registers of tag {tag.name!r} {who}"
                )
