"""Register codec: known layouts of every type in every byte/word order, round trips, scaling."""

import math
import random
import struct

import numpy as np
import pytest

from gateway.modbus import codec
from gateway.modbus.block import BlockDecoder
from gateway.modbus.config import ModbusTag
from historian.samples import Quality

# 123.456 as float32 is 0x42F6E979, the usual example in device manuals
FLOAT32_123_456 = {
    "ABCD": [0x42F6, 0xE979],
    "BADC": [0xF642, 0x79E9],
    "CDAB": [0xE979, 0x42F6],
    "DCBA": [0x79E9, 0xF642],
}
INT32_0x01020304 = {
    "ABCD": [0x0102, 0x0304],
    "BADC": [0x0201, 0x0403],
    "CDAB": [0x0304, 0x0102],
    "DCBA": [0x0403, 0x0201],
}
INT64_0x0102030405060708 = {
    "ABCD": [0x0102, 0x0304, 0x0506, 0x0708],
    "BADC": [0x0201, 0x0403, 0x0605, 0x0807],
    "CDAB": [0x0708, 0x0506, 0x0304, 0x0102],
    "DCBA": [0x0807, 0x0605, 0x0403, 0x0201],
}
FLOAT64_1 = {  # 1.0 is 0x3FF0000000000000
    "ABCD": [0x3FF0, 0, 0, 0],
    "BADC": [0xF03F, 0, 0, 0],
    "CDAB": [0, 0, 0, 0x3FF0],
    "DCBA": [0, 0, 0, 0xF03F],
}

VECTORS = (
    # decoded as its shortest round-trip decimal (the value policy of gateway/values.py)
    [("float32", o, 123.456, r) for o, r in FLOAT32_123_456.items()]
    + [("int32", o, 0x01020304, r) for o, r in INT32_0x01020304.items()]
    + [("uint32", o, 0x01020304, r) for o, r in INT32_0x01020304.items()]
    + [("int64", o, 0x0102030405060708, r) for o, r in INT64_0x0102030405060708.items()]
    + [("uint64", o, 0x0102030405060708, r) for o, r in INT64_0x0102030405060708.items()]
    + [("float64", o, 1.0, r) for o, r in FLOAT64_1.items()]
    + [
        ("int16", "ABCD", -2, [0xFFFE]),
        ("int16", "BADC", -2, [0xFEFF]),
        ("uint16", "ABCD", 0x1234, [0x1234]),
        ("uint16", "BADC", 0x1234, [0x3412]),
        ("int32", "ABCD", -1, [0xFFFF, 0xFFFF]),
        ("int32", "CDAB", -65536, [0x0000, 0xFFFF]),
        ("uint32", "ABCD", 4294967295, [0xFFFF, 0xFFFF]),
        ("int64", "CDAB", -2, [0xFFFE, 0xFFFF, 0xFFFF, 0xFFFF]),
        ("uint64", "ABCD", 2**64 - 1, [0xFFFF] * 4),
        ("string", "ABCD", "ABC", [0x4142, 0x4300]),
        ("string", "BADC", "ABC", [0x4241, 0x0043]),
        ("bool", "ABCD", True, [1]),
        ("bool", "ABCD", False, [0]),
    ]
)


@pytest.mark.parametrize(("type_", "order", "value", "registers"), VECTORS)
def test_known_layouts(type_, order, value, registers):
    length = len(registers) if type_ == "string" else 0
    assert codec.encode(value, type_, order, length) == registers
    assert codec.decode(registers, type_, order) == value


SAMPLES = {
    "int16": -12345,
    "uint16": 54321,
    "int32": -123456789,
    "uint32": 3123456789,
    "int64": -1234567890123456789,
    "uint64": 12345678901234567890,
    "float32": 0.15625,  # exact in float32
    "float64": 123456.789012345,
    "string": "LATHE-07",
}


@pytest.mark.parametrize(
    ("type_", "order"), [(t, o) for t in SAMPLES for o in codec.allowed_orders(t)]
)
def test_round_trip_every_type_and_order(type_, order):
    value = SAMPLES[type_]
    registers = codec.encode(value, type_, order, length=5 if type_ == "string" else 0)
    assert all(0 <= r <= 0xFFFF for r in registers)
    assert len(registers) == (5 if type_ == "string" else codec.register_count(type_))
    assert codec.decode(registers, type_, order) == value


def test_orders_differ_for_multi_register_types():
    layouts = {o: tuple(codec.encode(SAMPLES["int64"], "int64", o)) for o in codec.ORDERS}
    assert len(set(layouts.values())) == 4


def test_string_pads_with_nul_and_stops_at_it():
    assert codec.encode("AB", "string", length=3) == [0x4142, 0, 0]
    assert codec.decode([0x4142, 0x0043, 0x4444], "string") == "AB"
    assert codec.decode([0, 0], "string") == ""


def test_float32_is_its_shortest_round_trip_decimal():
    assert codec.decode([0x42F6, 0xE979], "float32") == 123.456
    assert struct.pack(">f", 123.456) == bytes.fromhex("42F6E979")
    assert codec.decode(codec.encode(0.1, "float32"), "float32") == 0.1


@pytest.mark.parametrize(
    ("value", "type_", "problem"),
    [
        (70000, "int16", "does not fit"),
        (-1, "uint16", "does not fit"),
        (2**32, "uint32", "does not fit"),
        (2**63, "int64", "does not fit"),
        (1e39, "float32", "does not fit"),
        (1.5, "int32", "whole number"),
        ("7", "int16", "needs a number"),
        (7, "string", "needs a str"),
    ],
)
def test_encode_refuses_what_does_not_fit(value, type_, problem):
    with pytest.raises(ValueError, match=problem):
        codec.encode(value, type_, "ABCD", length=2)


def test_encode_refuses_a_too_long_string():
    with pytest.raises(ValueError, match="more than the 4"):
        codec.encode("ABCDE", "string", length=2)


def test_decode_checks_the_register_count():
    with pytest.raises(ValueError, match="float32 needs 2 registers, got 1"):
        codec.decode([1], "float32")


def test_decode_refuses_a_string_that_is_not_utf8():
    with pytest.raises(ValueError):
        codec.decode([0xFFFE], "string")


def test_unknown_order_and_type():
    with pytest.raises(ValueError, match="unknown byte order"):
        codec.decode([0, 0], "float32", "BACD")
    with pytest.raises(ValueError, match="unknown type"):
        codec.register_count("int128")


def test_register_counts_and_allowed_orders():
    assert [codec.register_count(t) for t in ("bool", "int16", "uint32", "float32", "int64", "float64")] == [
        1, 1, 2, 2, 4, 4,
    ]
    assert codec.register_count("string", 6) == 6
    assert codec.allowed_orders("bool") == ("ABCD",)
    assert codec.allowed_orders("int16") == ("ABCD", "BADC")
    assert codec.allowed_orders("float64") == codec.ORDERS


def test_scale_and_offset():
    assert codec.apply_scale(234, 0.1) == pytest.approx(23.4)
    assert codec.apply_scale(123, 0.5, -40.0) == 21.5
    assert codec.apply_scale(7) == 7 and isinstance(codec.apply_scale(7), int)
    assert codec.remove_scale(23.4, "int16", 0.1) == 234  # 233.99999999999997 rounds back
    assert codec.remove_scale(21.5, "uint16", 0.5, -40.0) == 123
    assert codec.remove_scale(1.5, "float32", 2.0, 1.0) == 0.25
    assert codec.remove_scale(9, "int32") == 9
    with pytest.raises(ValueError, match="finite"):
        codec.remove_scale(math.inf, "int16", 0.1)


def test_block_decoding_equals_decoding_each_tag():
    rng = random.Random(5)
    tags, address = [], 0
    for type_ in ("int16", "uint16", "int32", "uint32", "int64", "uint64", "float32", "float64"):
        for order in codec.allowed_orders(type_):
            for scale, offset in ((1.0, 0.0), (0.1, -50.0)):
                tags.append(ModbusTag(name=f"{type_}.{order}.{scale}", table="holding", address=address, type=type_,
                                      byte_order=order, scale=scale, offset=offset, category="machine"))
                address += codec.register_count(type_)
    for _ in range(20):
        registers = [rng.randrange(65536) for _ in range(address)]
        got: list[object] = [None] * len(tags)
        BlockDecoder(0, tags).decode(registers, got)
        for tag, value in zip(tags, got):
            want = tag.to_value(codec.decode(registers[tag.address : tag.address + tag.registers], tag.type,
                                             tag.byte_order))
            assert type(value) is type(want), tag.name  # integers stay integers when unscaled
            assert value == want or (math.isnan(value) and math.isnan(want)), tag.name


def test_block_columns_equal_the_published_values_as_float64():
    rng = random.Random(7)
    tags, address = [], 0
    for type_ in ("uint16", "int32", "float32", "float64", "int16"):
        for scale, offset in ((1.0, 0.0), (0.1, -50.0)):
            tags.append(ModbusTag(name=f"{type_}.{scale}", table="holding", address=address, type=type_,
                                  scale=scale, offset=offset, category="machine"))
            address += codec.register_count(type_)
    block = BlockDecoder(0, tags)
    for _ in range(20):
        registers = [rng.randrange(65536) for _ in range(address)]
        want: list[object] = [None] * len(tags)
        not_finite = block.decode(registers, want)
        values, quality = block.columns(registers)
        assert values.dtype == np.float64 and len(values) == len(tags)
        for i, w in enumerate(want):
            assert values[i] == float(w) or (math.isnan(values[i]) and math.isnan(w)), tags[i].name
        # a float device's "no value" is bad quality, the rest good (None: all good)
        bad = [] if quality is None else np.flatnonzero(quality != int(Quality.GOOD)).tolist()
        assert bad == sorted(not_finite)
        if quality is not None:
            assert set(quality[bad].tolist()) == {int(Quality.BAD_SENSOR_FAILURE)}


@pytest.mark.parametrize("type_", ["uint16", "int16"])
def test_plain_16_bit_blocks_take_the_registers_as_they_are(type_):
    tags = [ModbusTag(name=f"r{i}", table="holding", address=10 + i, type=type_, category="machine")
            for i in range(5)]
    block = BlockDecoder(10, tags)
    assert block.plain  # the shortcut is taken
    registers = [0, 1, 32767, 32768, 65535]
    want: list[object] = [None] * 5
    block.decode(registers, want)
    values, quality = block.columns(registers)
    assert values.tolist() == [float(w) for w in want] and quality is None
