"""Conversions between Modbus registers (16-bit words) and values: types, byte/word orders, scaling.

A value is laid out as its big-endian bytes A B C D (E F G H for 64 bits), cut into 16-bit
words, and the order then says two things independently:

- the byte order inside each word: AB (as is) or BA (swapped), and
- the word order: the most significant word first (big) or last (little).

| order | bytes in each word | words | 32 bits in registers | 64 bits in registers |
|-------|--------------------|-------|----------------------|----------------------|
| ABCD  | AB                 | big   | AB CD                | AB CD EF GH          |
| BADC  | BA                 | big   | BA DC                | BA DC FE HG          |
| CDAB  | AB                 | little| CD AB                | GH EF CD AB          |
| DCBA  | BA                 | little| DC BA                | HG FE DC BA          |

16-bit values and strings have one word (strings: one per two characters, in order) and so only
a byte order: ABCD keeps it, BADC swaps it. Bits (coils, discrete inputs) have no order at all.
"""

from __future__ import annotations

import math
import struct
from typing import Sequence

from gateway.values import float32_value

Value = bool | int | float | str

ORDERS = ("ABCD", "BADC", "CDAB", "DCBA")
BYTE_ORDERS = ("ABCD", "BADC")
"""The orders that mean something for one-word values and strings: only the bytes can swap."""

_STRUCT = {
    "int16": "h",
    "uint16": "H",
    "int32": "i",
    "uint32": "I",
    "int64": "q",
    "uint64": "Q",
    "float32": "f",
    "float64": "d",
}
TYPES = ("bool", *_STRUCT, "string")
INTEGER_TYPES = ("int16", "uint16", "int32", "uint32", "int64", "uint64")
FLOAT_TYPES = ("float32", "float64")
NUMERIC_TYPES = INTEGER_TYPES + FLOAT_TYPES


def register_count(type_: str, length: int = 0) -> int:
    """How many registers a value of this type occupies (bool: one bit; string: `length`)."""
    if type_ == "bool":
        return 1
    if type_ == "string":
        return length
    if type_ not in _STRUCT:
        raise ValueError(f"unknown type {type_!r}")
    return struct.calcsize(_STRUCT[type_]) // 2


def allowed_orders(type_: str) -> tuple[str, ...]:
    """The byte_order values that make sense for a type."""
    if type_ == "bool":
        return ("ABCD",)
    if type_ in ("int16", "uint16", "string"):
        return BYTE_ORDERS
    return ORDERS


def _reorder(data: bytes, order: str) -> bytes:
    # Both swaps are their own inverse, so the same function maps big-endian bytes to the wire
    # layout and back.
    if order not in ORDERS:
        raise ValueError(f"unknown byte order {order!r}, expected one of {', '.join(ORDERS)}")
    words = [data[i : i + 2] for i in range(0, len(data), 2)]
    if order in ("CDAB", "DCBA"):
        words.reverse()
    if order in ("BADC", "DCBA"):
        words = [w[::-1] for w in words]
    return b"".join(words)


def byte_layout(n_bytes: int, order: str) -> list[int]:
    """Where, in the wire bytes of an n-byte value, each of its big-endian bytes A B C D... sits."""
    return list(_reorder(bytes(range(n_bytes)), order))


def _to_bytes(registers: Sequence[int]) -> bytes:
    return b"".join(int(r).to_bytes(2, "big") for r in registers)


def _to_registers(data: bytes) -> list[int]:
    return [int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2)]


def decode(registers: Sequence[int], type_: str, order: str = "ABCD") -> Value:
    """The value held by registers (as read, in wire order); bool takes one bit or register."""
    if type_ == "bool":
        if len(registers) != 1:
            raise ValueError(f"bool needs 1 bit, got {len(registers)}")
        return bool(registers[0])
    if type_ == "string":
        raw = _reorder(_to_bytes(registers), order)
        # devices pad strings with NULs to the field's length; what follows the first NUL is junk
        return raw.split(b"\x00", 1)[0].decode("utf-8")
    want = register_count(type_)
    if len(registers) != want:
        raise ValueError(f"{type_} needs {want} registers, got {len(registers)}")
    (value,) = struct.unpack(">" + _STRUCT[type_], _reorder(_to_bytes(registers), order))
    if type_ == "float32":
        return float32_value(value)  # the value policy: its shortest round-trip decimal
    return value  # type: ignore[no-any-return]


def encode(value: Value, type_: str, order: str = "ABCD", length: int = 0) -> list[int]:
    """The registers (in wire order) holding value; strings are NUL-padded to `length` registers."""
    if type_ == "bool":
        return [1 if value else 0]
    if type_ == "string":
        if not isinstance(value, str):
            raise ValueError(f"a string tag needs a str, got {type(value).__name__}")
        data = value.encode("utf-8")
        size = length * 2 if length else len(data) + len(data) % 2
        if len(data) > size:
            raise ValueError(f"{value!r} is {len(data)} bytes, more than the {size} of {length} registers")
        return _to_registers(_reorder(data.ljust(size, b"\x00"), order))
    if type_ not in _STRUCT:
        raise ValueError(f"unknown type {type_!r}")
    if isinstance(value, str):
        raise ValueError(f"a {type_} tag needs a number, got str")
    if type_ in INTEGER_TYPES and isinstance(value, float) and not value.is_integer():
        raise ValueError(f"{value!r} is not a whole number, as {type_} needs")
    number = int(value) if type_ in INTEGER_TYPES else float(value)
    try:
        data = struct.pack(">" + _STRUCT[type_], number)
    except (struct.error, OverflowError) as e:
        raise ValueError(f"{value!r} does not fit in {type_}") from e
    return _to_registers(_reorder(data, order))


def apply_scale(raw: int | float, scale: float = 1.0, offset: float = 0.0) -> int | float:
    """Engineering value of a raw number: raw * scale + offset (integers stay integers when 1, 0)."""
    if scale == 1.0 and offset == 0.0:
        return raw
    return raw * scale + offset


def remove_scale(value: int | float, type_: str, scale: float = 1.0, offset: float = 0.0) -> int | float:
    """Raw number of an engineering value, the inverse of apply_scale; rounded for integer types."""
    if scale == 1.0 and offset == 0.0:
        raw: int | float = value
    else:
        raw = (value - offset) / scale
    if type_ in INTEGER_TYPES:
        if not math.isfinite(raw):
            raise ValueError(f"{value!r} is not a finite number")
        # 23.4 / 0.1 is 233.99999999999997: the nearest integer is what the user meant
        return round(raw)
    return raw
