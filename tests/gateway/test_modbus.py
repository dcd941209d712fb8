"""The Modbus source against the simulated plant's real pymodbus server on 127.0.0.1: no mocks."""

from __future__ import annotations

import asyncio
import math
import re
import time
import tomllib
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, AsyncIterator, Callable

import msgspec
import pytest

from gateway.modbus import ModbusSource, ModbusSourceConfig, ModbusTag
from gateway.modbus.requests import group
from gateway.source import NotWritableError, Reading, WriteError
from gateway.testing import MemorySink
from historian.samples import Quality
from plant.modbus_server import REGISTER_MAP, ModbusPlant, Signal

README = Path(__file__).resolve().parents[2] / "gateway" / "modbus" / "README.md"

# one value to read and another to write back, per type; floats exact in their width
READ = {"int16": -12345, "uint16": 54321, "int32": -123456789, "uint32": 3123456789,
        "int64": -1234567890123456789, "uint64": 12345678901234567890, "float32": 123.5,
        "float64": 123456.789012345, "string": "LATHE-07"}
WRITE = {"int16": 321, "uint16": 65535, "int32": 2**31 - 1, "uint32": 7, "int64": -(2**63),
         "uint64": 2**64 - 1, "float32": -0.15625, "float64": -1e-3, "string": "MILL-3"}
ORDERS_OF = {t: ("ABCD", "BADC") if t in ("int16", "uint16", "string") else ("ABCD", "BADC", "CDAB", "DCBA")
             for t in READ}


def _matrix() -> dict[str, Signal]:
    """A signal per type and byte order, packed from holding 1000 on, and a coil and discrete input."""
    signals: dict[str, Signal] = {}
    address = 1000
    for type_, orders in ORDERS_OF.items():
        for order in orders:
            s = Signal("holding", address, type_, order, length=5 if type_ == "string" else 0)
            signals[f"t.{type_}.{order}"] = s
            address += s.registers
    signals["t.scaled"] = Signal("holding", address, "int32", "CDAB", scale=0.01, offset=-100.0)
    signals["t.coil"] = Signal("coil", 100, "bool")
    signals["t.input"] = Signal("discrete_input", 50, "bool")
    return signals


MATRIX = _matrix()
TYPED = [n for n in MATRIX if n.count(".") == 2]


def tag(name: str, signal: Signal | None = None, **overrides: Any) -> ModbusTag:
    """The adapter's tag for a plant signal, as a user would configure it from REGISTER_MAP."""
    s = signal or MATRIX.get(name) or REGISTER_MAP[name]
    fields: dict[str, Any] = dict(name=name, table=s.table, address=s.address, type=s.type, byte_order=s.byte_order,
                                  length=s.length, scale=s.scale, offset=s.offset)
    fields.update(overrides)
    return ModbusTag(**fields)


def source(plant: ModbusPlant, tags: list[ModbusTag], **overrides: Any) -> ModbusSource:
    """A source polling the plant fast, with short timeouts and reconnect delays for tests."""
    fields: dict[str, Any] = dict(name="plant", host="127.0.0.1", port=plant.port, poll_interval=0.05,
                                  timeout=0.5, reconnect_min=0.05, reconnect_max=0.2, tags=tags)
    fields.update(overrides)
    return ModbusSource(ModbusSourceConfig(**fields))


@pytest.fixture
async def plant() -> AsyncIterator[ModbusPlant]:
    """The plant's devices plus a signal of every type and order, values held still (no model)."""
    async with ModbusPlant(signals={**REGISTER_MAP, **MATRIX}, simulate=False) as p:
        yield p


@asynccontextmanager
async def running(src: ModbusSource) -> AsyncIterator[MemorySink]:
    """Run a source into a MemorySink; on exit cancel it and check it stopped cleanly."""
    sink = MemorySink()
    task = asyncio.create_task(src.run(sink))
    try:
        yield sink
    finally:
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass
        assert not src.status.connected


def latest(sink: MemorySink, name: str) -> Reading | None:
    """The newest reading of a tag."""
    return next((r for r in reversed(sink.readings) if r.tag == name), None)


def good_values(sink: MemorySink, names: list[str]) -> dict[str, Any]:
    """The newest value of each tag, or the quality name when it is not good."""
    out: dict[str, Any] = {}
    for n in names:
        r = latest(sink, n)
        out[n] = None if r is None else r.value if r.quality == Quality.GOOD else Quality(r.quality).name
    return out


async def settle(sink: MemorySink, expected: dict[str, Any], timeout: float = 5.0) -> None:
    """Wait until the newest good values are the expected ones; on timeout show the difference."""
    try:
        await sink.wait_for(lambda s: good_values(s, list(expected)) == expected, timeout)
    except TimeoutError:
        pass
    assert good_values(sink, list(expected)) == expected


async def until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    """Wait for a condition outside the sink (a status field), checking every 10 ms."""
    async def loop() -> None:
        while not predicate():
            await asyncio.sleep(0.01)

    await asyncio.wait_for(loop(), timeout)


# -- values through the real server ----------------------------------------------------------


async def test_reads_every_type_and_order(plant):
    expected = {}
    for name in TYPED:
        type_ = MATRIX[name].type
        plant.set(name, READ[type_])
        expected[name] = READ[type_]
    plant.set("t.coil", True)
    plant.set("t.input", True)
    expected |= {"t.coil": True, "t.input": True}
    src = source(plant, [tag(n) for n in expected])
    started_us = time.time_ns() // 1000
    async with running(src) as sink:
        await settle(sink, expected)
    # Modbus carries no time: each reading is stamped (µs) when its response arrived, polls apart
    stamps = [r.source_ts for r in sink.readings]
    assert all(isinstance(t, int) and started_us <= t <= time.time_ns() // 1000 for t in stamps)
    assert len(set(stamps)) > 1
    assert src.status.readings_total == len(sink.readings)
    assert src.status.last_error == ""


@pytest.mark.parametrize("single", [True, False], ids=["fc5-fc6", "fc15-fc16"])
async def test_writes_every_type_and_order(plant, single):
    names = TYPED + ["t.coil"]
    src = source(plant, [tag(n, writable=True) for n in names], single_write_functions=single)
    expected = {n: WRITE[MATRIX[n].type] for n in TYPED} | {"t.coil": True}
    async with running(src) as sink:
        await sink.wait_for(lambda s: latest(s, "t.coil") is not None)
        for name, value in expected.items():
            await src.write(name, value)
        assert {n: plant.get(n) for n in names} == expected
        await settle(sink, expected)  # and read back through the adapter
    used = set(plant.function_codes)
    if single:
        assert {5, 6, 16} <= used and 15 not in used  # 16 for the multi-register types
    else:
        assert {15, 16} <= used and not {5, 6} & used


async def test_scale_and_offset(plant):
    plant.set("machine.temperature", 23.4)  # int16, 0.1 degC
    plant.set("machine.coolant_temperature", 21.5)  # uint16, 0.1 degC from -50
    plant.set("meter.frequency", 49.98)  # uint16, 0.01 Hz
    plant.set("t.scaled", 12.34)  # int32, 0.01 from -100
    names = ["machine.temperature", "machine.coolant_temperature", "meter.frequency", "t.scaled"]
    src = source(plant, [tag(n, writable=n == "t.scaled") for n in names])
    async with running(src) as sink:
        await sink.wait_for(lambda s: all(latest(s, n) for n in names))
        got = {n: latest(sink, n).value for n in names}  # type: ignore[union-attr]
        assert got == pytest.approx({"machine.temperature": 23.4, "machine.coolant_temperature": 21.5,
                                     "meter.frequency": 49.98, "t.scaled": 12.34})
        await src.write("t.scaled", -57.89)
        assert plant.get("t.scaled") == pytest.approx(-57.89)
        await sink.wait_for(lambda s: latest(s, "t.scaled").value == pytest.approx(-57.89))  # type: ignore[union-attr]
    # the raw registers hold (value - offset) / scale: 4211 as int32 with the words swapped
    assert plant.registers("holding", MATRIX["t.scaled"].address, 2) == [4211, 0]


async def test_sample_config_in_the_readme_reads_the_whole_plant(plant):
    toml = re.search(r"```toml\n(.*?)```", README.read_text(), re.S)
    assert toml, "gateway/modbus/README.md has no toml sample"
    data = tomllib.loads(toml.group(1))["gateway"]["sources"][0]
    config = msgspec.convert(data | {"port": plant.port, "poll_interval": 0.05}, ModbusSourceConfig)
    assert {t.name for t in config.tags} == set(REGISTER_MAP)
    for t in config.tags:  # the sample says what the plant serves
        s = REGISTER_MAP[t.name]
        assert (t.table, t.address, t.type, t.byte_order, t.length, t.scale, t.offset) == (
            s.table, s.address, s.type, s.byte_order, s.length, s.scale, s.offset), t.name
    src = ModbusSource(config)
    expected = {n: plant.get(n) for n in REGISTER_MAP}
    async with running(src) as sink:
        await settle(sink, expected)
    # the merged reads met the holes at input 16..19, holding 107..109 and 118..119 and were split there
    assert [str(r) for r in src.requests] == [
        "coil 0..1", "discrete_input 0..2", "holding 100..106", "holding 110..117", "holding 120..130",
        "input 0..15", "input 20..24",
    ]
    assert src.status.last_error == ""


# -- errors ----------------------------------------------------------------------------------


async def test_exception_response_is_bad_quality_and_polling_goes_on(plant):
    plant.set("t.int16.ABCD", 1)
    tags = [tag("t.int16.ABCD"), tag("meter.voltage"),
            ModbusTag(name="beyond", table="holding", address=5000, type="string", length=10)]
    src = source(plant, tags)
    async with running(src) as sink:
        await settle(sink, {"t.int16.ABCD": 1, "meter.voltage": 400.0, "beyond": "BAD_CONFIG_ERROR"})
        assert src.status.last_error == "illegal data address (exception 2) reading holding 5000..5009"
        assert latest(sink, "beyond").value is None  # type: ignore[union-attr]
        plant.set("t.int16.ABCD", 2)
        await settle(sink, {"t.int16.ABCD": 2, "beyond": "BAD_CONFIG_ERROR"})

        plant.fail("input", 0, 2)  # server device failure (4) for the voltage
        await settle(sink, {"meter.voltage": "BAD_DEVICE_FAILURE", "t.int16.ABCD": 2})
        # last_error is the latest error of any request: the hole at holding 5000 takes turns with it each poll
        await until(lambda: "server device failure (exception 4) reading input 0..1" in src.status.last_error)
        plant.recover()
        await settle(sink, {"meter.voltage": 400.0})
        assert src.status.connected and src.status.reconnects_total == 0


async def test_a_tag_at_a_hole_spoils_only_itself(plant):
    tags = [tag("machine.temperature"), ModbusTag(name="hole", table="holding", address=107, type="uint16"),
            tag("machine.name")]
    src = source(plant, tags)
    assert [str(r) for r in src.requests] == ["holding 100..117"]
    async with running(src) as sink:
        await settle(sink, {"machine.temperature": 22.0, "hole": "BAD_CONFIG_ERROR", "machine.name": "LATHE-07"})
    assert [str(r) for r in src.requests] == ["holding 100..100", "holding 107..107", "holding 110..117"]
    assert src.status.last_error == "illegal data address (exception 2) reading holding 107..107"


async def test_nan_from_the_device_is_bad_sensor_quality(plant):
    plant.set("t.float32.CDAB", math.nan)
    src = source(plant, [tag("t.float32.CDAB")])
    async with running(src) as sink:
        await sink.wait_for(lambda s: latest(s, "t.float32.CDAB") is not None)
    r = latest(sink, "t.float32.CDAB")
    assert r is not None and math.isnan(r.value) and r.quality == Quality.BAD_SENSOR_FAILURE  # type: ignore[arg-type]


async def test_a_string_that_does_not_decode_goes_to_dead_letters(plant):
    raw = tag("raw", MATRIX["t.string.ABCD"], type="uint16", length=0, writable=True)
    src = source(plant, [tag("t.string.ABCD"), raw])
    async with running(src) as sink:
        await sink.wait_for(lambda s: latest(s, "raw") is not None)
        await src.write("raw", 0xFFFF)  # not UTF-8
        await sink.wait_for(lambda s: s.dead_letters)
        polled = len(sink.readings)
        await sink.wait_for(lambda s: len(s.readings) >= polled + 6)  # a few more polls
    assert len(sink.dead_letters) == 1 and src.status.dead_letters_total == 1  # once, not every poll
    reason, payload = sink.dead_letters[0]
    assert "cannot decode tag 't.string.ABCD'" in reason
    assert payload["registers"][0] == 0xFFFF and payload["address"] == MATRIX["t.string.ABCD"].address


async def test_reconnects_by_itself_after_the_server_restarts(plant):
    plant.set("t.uint32.CDAB", 1)
    src = source(plant, [tag("t.uint32.CDAB")])
    async with running(src) as sink:
        await settle(sink, {"t.uint32.CDAB": 1})
        assert src.status.connected

        await plant.stop()
        await settle(sink, {"t.uint32.CDAB": "BAD_COMM_FAILURE"})
        assert not src.status.connected
        await until(lambda: "cannot connect" in src.status.last_error)

        plant.set("t.uint32.CDAB", 2)
        await plant.start()  # same port; nothing done to the source
        await settle(sink, {"t.uint32.CDAB": 2})
        assert src.status.connected and src.status.reconnects_total == 1


async def test_cancel_while_the_device_is_down_stops_cleanly(plant):
    src = source(plant, [tag("t.int16.ABCD")])
    await plant.stop()
    async with running(src):
        await until(lambda: "cannot connect" in src.status.last_error)
    assert src.status.readings_total == 0


async def test_a_device_that_stops_answering_is_a_comm_failure(plant):
    plant.set("t.int16.ABCD", 5)
    src = source(plant, [tag("t.int16.ABCD")], timeout=0.2)
    async with running(src) as sink:
        await settle(sink, {"t.int16.ABCD": 5})
        plant.mute()  # the connection stays up, no answer comes
        await settle(sink, {"t.int16.ABCD": "BAD_COMM_FAILURE"})
        # the reconnect may already have cleared last_error: recovered_from keeps it
        assert "no response reading holding 1000..1000" in src.status.last_error + src.status.recovered_from
        plant.unmute()
        await settle(sink, {"t.int16.ABCD": 5})
        assert src.status.connected and src.status.reconnects_total >= 1


# -- writes ----------------------------------------------------------------------------------


async def test_write_to_a_tag_not_writable_is_refused_and_the_device_unchanged(plant):
    plant.set("t.uint16.ABCD", 42)
    src = source(plant, [tag("t.uint16.ABCD"), tag("machine.temperature", writable=True),
                         tag("machine.run", writable=True), tag("t.int16.BADC", writable=True)])
    async with running(src) as sink:
        await sink.wait_for(lambda s: latest(s, "t.uint16.ABCD") is not None)
        with pytest.raises(NotWritableError, match="'t.uint16.ABCD' is not writable"):
            await src.write("t.uint16.ABCD", 7)
        with pytest.raises(NotWritableError, match="no tag 'nope'"):
            await src.write("nope", 7)
        assert plant.get("t.uint16.ABCD") == 42
        # configured writable, but the device refuses: its exception becomes a WriteError
        with pytest.raises(WriteError, match=re.escape("illegal data address (exception 2) writing holding 100..100")):
            await src.write("machine.temperature", 99.0)
        assert plant.get("machine.temperature") == 22.0
        with pytest.raises(WriteError, match="does not fit in int16"):
            await src.write("t.int16.BADC", 40000)
        with pytest.raises(WriteError, match="needs true or false"):
            await src.write("machine.run", 2)
        with pytest.raises(WriteError, match="needs a number"):
            await src.write("t.int16.BADC", "12")
    with pytest.raises(WriteError, match="not connected"):
        await src.write("machine.run", False)
    assert plant.get("machine.run") is True


async def test_rtu_framing_over_tcp():
    async with ModbusPlant(framing="rtu-over-tcp", simulate=False) as plant:
        src = source(plant, [tag("machine.name"), tag("meter.current"), tag("machine.speed_setpoint", writable=True)],
                     framing="rtu-over-tcp")
        plant.set("meter.current", 12.5)
        async with running(src) as sink:
            await settle(sink, {"machine.name": "LATHE-07", "meter.current": 12.5, "machine.speed_setpoint": 1500})
            await src.write("machine.speed_setpoint", 900)
            assert plant.get("machine.speed_setpoint") == 900


# -- the plant's model -----------------------------------------------------------------------


def test_plant_model_is_deterministic():
    plant = ModbusPlant(simulate=True)  # never started: step() drives the model, no server needed
    plant.step(3600.0)  # an hour running
    assert plant.get("machine.running") is True
    assert plant.get("meter.energy_counter") == 7500  # Wh at 7.5 kW
    assert plant.get("meter.energy_total") == pytest.approx(7.5)
    assert plant.get("machine.part_count") == 288  # 3600 s / 12.5 s
    assert plant.get("machine.runtime") == 3600
    plant.set("machine.alarm", True)
    plant.set("machine.part_count", 0)  # as a client's reset would
    plant.step(60.0)
    assert plant.get("machine.running") is False and plant.get("machine.part_count") == 0
    plant.set("machine.alarm_reset", True)
    plant.step(12.5)
    assert plant.get("machine.alarm") is False and plant.get("machine.alarm_reset") is False
    assert plant.get("machine.part_count") == 1


async def test_plant_model_runs_in_the_background():
    async with ModbusPlant(simulate=True, tick=0.02) as plant:
        src = source(plant, [tag("meter.energy_total"), tag("machine.alarm_reset", writable=True),
                             tag("machine.alarm")])
        plant.set("machine.alarm", True)
        async with running(src) as sink:
            await sink.wait_for(lambda s: len(set(s.values("meter.energy_total"))) >= 3)
            assert sink.values("meter.energy_total") == sorted(sink.values("meter.energy_total"))
            await settle(sink, {"machine.alarm": True})
            await src.write("machine.alarm_reset", True)
            await settle(sink, {"machine.alarm": False, "machine.alarm_reset": False})


# -- grouping --------------------------------------------------------------------------------


def _tags(table: str, addresses: list[int], type_: str = "") -> list[ModbusTag]:
    type_ = type_ or ("bool" if table in ("coil", "discrete_input") else "uint16")
    return [ModbusTag(name=f"{table}{a}.{i}", table=table, address=a, type=type_) for i, a in enumerate(addresses)]


def test_300_contiguous_registers_are_three_requests():
    requests = group(_tags("holding", list(range(300))))
    assert [(r.address, r.count, len(r.tags)) for r in requests] == [(0, 125, 125), (125, 125, 125), (250, 50, 50)]


def test_small_gaps_merge_and_large_gaps_split():
    assert [str(r) for r in group(_tags("input", [0, 9]))] == ["input 0..9"]  # 8 unused addresses
    assert [str(r) for r in group(_tags("input", [0, 10]))] == ["input 0..0", "input 10..10"]
    assert [str(r) for r in group(_tags("input", [0, 3]), merge_gap=0)] == ["input 0..0", "input 3..3"]
    assert [str(r) for r in group(_tags("input", [0, 1]), merge_gap=0)] == ["input 0..1"]


def test_a_value_never_straddles_two_requests():
    requests = group(_tags("holding", list(range(0, 126, 2)), "float32"))  # 63 floats, 126 registers
    assert [(r.address, r.count) for r in requests] == [(0, 124), (124, 2)]
    requests = group(_tags("holding", list(range(0, 40, 4)), "float64"), max_registers=10)
    assert all(r.count <= 10 for r in requests) and sum(len(r.tags) for r in requests) == 10


def test_tables_apart_and_bits_up_to_2000():
    requests = group(_tags("coil", list(range(2500))) + _tags("holding", [0]) + _tags("discrete_input", [5]))
    assert [str(r) for r in requests] == ["coil 0..1999", "coil 2000..2499", "discrete_input 5..5", "holding 0..0"]


def test_overlapping_tags_share_a_request():
    tags = [ModbusTag(name="f", table="holding", address=10, type="float32"),
            ModbusTag(name="hi", table="holding", address=10, type="uint16"),
            ModbusTag(name="lo", table="holding", address=11, type="uint16")]
    (request,) = group(tags)
    assert (request.address, request.count) == (10, 2)
    assert {t.name: request.span(t) for t in request.tags} == {"f": slice(0, 2), "hi": slice(0, 1), "lo": slice(1, 2)}


def test_split_steps_around_holes_then_per_tag():
    (merged,) = group(_tags("holding", [0, 1, 6]))
    assert [str(r) for r in merged.split()] == ["holding 0..1", "holding 6..6"]
    contiguous = merged.split()[0]
    assert [str(r) for r in contiguous.split()] == ["holding 0..0", "holding 1..1"]
    single = contiguous.split()[0]
    assert single.split() == [single]


# -- configuration ---------------------------------------------------------------------------

BASE: dict[str, Any] = {"type": "modbus", "name": "m", "host": "10.0.0.5",
                        "tags": [{"name": "t", "table": "holding", "address": 0, "type": "int16"}]}


@pytest.mark.parametrize(
    ("source_changes", "tag_changes", "field"),
    [
        ({}, {"table": "register"}, "table:"),
        ({}, {"table": "coil", "type": "int16"}, "type:"),
        ({}, {"type": None}, "type:"),
        ({}, {"type": "bool"}, "type:"),
        ({}, {"type": "int128"}, "type:"),
        ({}, {"type": "string"}, "length:"),
        ({}, {"length": 2}, "length:"),
        ({}, {"byte_order": "CDAB"}, "byte_order:"),
        ({}, {"type": "float32", "byte_order": "ABDC"}, "byte_order:"),
        ({}, {"table": "coil", "type": "bool", "byte_order": "BADC"}, "byte_order:"),
        ({}, {"scale": 0.0}, "scale:"),
        ({}, {"type": "string", "length": 2, "scale": 2.0}, "scale:"),
        ({}, {"table": "discrete_input", "type": "bool", "writable": True}, "writable:"),
        ({}, {"table": "input", "writable": True}, "writable:"),
        ({}, {"address": 70000}, "address:"),
        ({}, {"address": -1}, "address:"),
        ({}, {"type": "float64", "address": 65533}, "address:"),
        ({}, {"data_type": "text"}, "data_type:"),
        ({}, {"category": "money"}, "category:"),
        ({}, {"adress": 3}, "adress"),
        ({"max_registers_per_request": 126}, {}, "max_registers_per_request:"),
        ({"max_registers_per_request": 0}, {}, "max_registers_per_request:"),
        ({"max_registers_per_request": 2}, {"type": "float64"}, "max_registers_per_request:"),
        ({"framing": "udp"}, {}, "framing:"),
        ({"port": 0}, {}, "port:"),
        ({"unit_id": 256}, {}, "unit_id:"),
        ({"host": ""}, {}, "host:"),
        ({"poll_interval": 0}, {}, "poll_interval:"),
        ({"timeout": -1.0}, {}, "timeout:"),
        ({"reconnect_max": 0.1}, {}, "reconnect_max:"),
        ({"merge_gap": -1}, {}, "merge_gap:"),
        ({"tags": []}, {}, "tags:"),
        ({"pol_interval": 1.0}, {}, "pol_interval"),
    ],
)
def test_config_errors_name_the_field(source_changes, tag_changes, field):
    tag_data = {k: v for k, v in ({**BASE["tags"][0], **tag_changes}).items() if v is not None}
    data = {**BASE, "tags": [tag_data], **source_changes}
    with pytest.raises(msgspec.ValidationError, match=re.escape(field)):
        msgspec.convert(data, ModbusSourceConfig)


def test_duplicate_tag_names_are_refused():
    data = {**BASE, "tags": BASE["tags"] * 2}
    with pytest.raises(msgspec.ValidationError, match="tags: tag name 't' appears twice"):
        msgspec.convert(data, ModbusSourceConfig)


def test_config_defaults_and_inferred_fields():
    config = msgspec.convert(
        {**BASE, "tags": [{"name": "c", "table": "coil", "address": 3},
                          {"name": "n", "table": "holding", "address": 0, "type": "uint32"},
                          {"name": "s", "table": "holding", "address": 2, "type": "int16", "scale": 0.1},
                          {"name": "x", "table": "input", "address": 9, "type": "string", "length": 4}]},
        ModbusSourceConfig,
    )
    assert (config.port, config.unit_id, config.framing) == (502, 1, "tcp")
    assert (config.poll_interval, config.timeout) == (1.0, 3.0)
    assert config.max_registers_per_request == 125
    assert [(t.type, t.data_type, t.byte_order) for t in config.tags] == [
        ("bool", "bool", "ABCD"), ("uint32", "int", "ABCD"), ("int16", "float", "ABCD"), ("string", "text", "ABCD"),
    ]
    assert config.tags[2].spec("m").data_type == "float"
    assert "at `$.tags[0]`" in _error({**BASE, "tags": [{"name": "c", "table": "coils", "address": 3}]})


def _error(data: dict[str, Any]) -> str:
    try:
        msgspec.convert(data, ModbusSourceConfig)
    except msgspec.ValidationError as e:
        return str(e)
    raise AssertionError("no error")


# -- into the gateway's spool: numeric responses as columns ------------------------------------------


async def test_numeric_responses_reach_the_spool_as_columns_counted_once_on_disk(plant, tmp_path: Path):
    from gateway.exception import ExceptionFilter
    from gateway.records import decode, to_batch
    from gateway.sink import Collector, SpoolSink
    from gateway.spool import Spool
    from historian.registry import TagInfo, TagRegistry

    names = [n for n in TYPED if n.split(".")[1] in ("int16", "uint16", "int32", "float32", "float64")]
    for n in names:
        plant.set(n, READ[MATRIX[n].type])
    plant.set("t.float32.CDAB", math.nan)  # the device's "no value": bad quality, not a refusal
    spool = Spool(tmp_path / "spool")
    src = source(plant, [tag(n) for n in names])
    sink = SpoolSink(spool, src.status, ExceptionFilter([]), Collector(spool, 0.02))
    task = asyncio.create_task(src.run(sink))
    try:
        await until(lambda: src.status.readings_total >= 3 * len(names))
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    # everything counted as read is in the spool, and what was read before the stop got there too
    registry = TagRegistry([TagInfo(i + 1, n, "float", "", "m", True) for i, n in enumerate(names)])
    rows = 0
    async for seq, payload in spool.records():
        record = decode(payload)
        assert record.blocks is not None and not record.tags  # no row per value on the way
        batch = to_batch(record, registry)
        assert not batch.rejects and {s for s, _, _ in batch.sections} == {"plant"}
        got = dict(zip(batch.samples.tag_id.tolist(), zip(batch.samples.value.tolist(),
                                                          batch.samples.quality.tolist())))
        for i, n in enumerate(names):
            value, quality = got[i + 1]
            if n == "t.float32.CDAB":
                assert math.isnan(value) and quality == Quality.BAD_SENSOR_FAILURE
            else:
                assert (value, quality) == (float(READ[MATRIX[n].type]), Quality.GOOD), n
        rows += len(batch.samples)
        if seq == spool.depth:  # the last record (nothing is committed in this test)
            break
    assert rows == src.status.readings_total
    spool.close()


async def test_deadband_tags_on_the_block_path_store_only_their_moves(plant, tmp_path: Path):
    from gateway.exception import ExceptionFilter
    from gateway.records import decode, to_batch
    from gateway.sink import Collector, SpoolSink
    from gateway.spool import Spool
    from historian.registry import TagInfo, TagRegistry

    band, pct, plain = "t.int16.ABCD", "t.uint16.ABCD", "t.int16.BADC"
    tags = [tag(band, deadband=10.0), tag(pct, deadband=5.0, deadband_mode="percent"), tag(plain)]
    steps = [(100, 1000), (105, 1040), (109, 1000), (111, 1050), (115, 1001), (90, 990), (90, 990)]
    spool = Spool(tmp_path / "spool")
    src = source(plant, tags)
    sink = SpoolSink(spool, src.status, ExceptionFilter(tags), Collector(spool, 0.02))
    assert sink.takes_blocks
    task = asyncio.create_task(src.run(sink))
    try:
        for b, p in steps:
            plant.set(band, b)
            plant.set(pct, p)
            plant.set(plain, b)
            before = src.status.readings_total
            await until(lambda: src.status.readings_total >= before + 3 * len(tags))  # three polls at least
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    registry = TagRegistry([TagInfo(i + 1, t.name, "float", "", "m", True) for i, t in enumerate(tags)])
    stored: dict[int, list[float]] = {1: [], 2: [], 3: []}
    async for seq, payload in spool.records():
        record = decode(payload)
        assert record.blocks is not None and not record.tags  # the block path, not a row per value
        batch = to_batch(record, registry)
        for tag_id, value in zip(batch.samples.tag_id.tolist(), batch.samples.value.tolist()):
            stored[tag_id].append(value)
        if seq == spool.depth:
            break
    polls = len(stored[3])
    assert polls >= 3 * len(steps)  # the plain tag: every poll
    assert src.status.readings_total == 3 * polls  # every reading read is counted, stored or not
    assert stored[1] == [100.0, 111.0, 90.0]  # 105 and 109 within 10 of 100, 115 within 10 of 111
    assert stored[2] == [1000.0, 1050.0, 990.0]  # 1040 is 4 % from 1000, 1001 4.7 % from 1050
    spool.close()


async def test_a_spool_that_cannot_write_stops_the_modbus_source(plant, tmp_path: Path):
    import shutil

    from gateway.exception import ExceptionFilter
    from gateway.sink import Collector, SpoolSink
    from gateway.source import SinkError
    from gateway.spool import Spool

    spool = Spool(tmp_path / "spool", segment_bytes=4096, max_bytes=1 << 20)
    src = source(plant, [tag(n) for n in TYPED if n.split(".")[1] == "uint16"])
    task = asyncio.create_task(src.run(SpoolSink(spool, src.status, ExceptionFilter([]), Collector(spool, 0.01))))
    await until(lambda: src.status.readings_total > 0)
    shutil.rmtree(tmp_path / "spool")  # the next segment cannot be made
    with pytest.raises(SinkError):  # the source stops (so does the gateway) rather than poll on unstored
        await asyncio.wait_for(task, 10)
