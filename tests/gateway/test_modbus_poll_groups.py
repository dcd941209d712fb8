"""Per-tag poll intervals: groups of tags polled on their own schedules over one connection, against
the simulated plant's real pymodbus server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import math
import re
import tomllib

import msgspec
import pytest

from gateway.modbus import ModbusSource, ModbusSourceConfig
from plant.modbus_server import ModbusPlant
from tests.gateway.test_modbus import BASE, README, latest, plant, running, source, tag  # noqa: F401

# holding 100..106 and input 0..15 are contiguous in the plant's map: one read each per poll, so
# the device's count of FC3 and FC4 requests is the count of each group's polls
FAST = ["machine.temperature", "machine.speed_setpoint", "machine.part_count", "machine.cycle_time",
        "machine.coolant_temperature"]
SLOW = ["meter.voltage", "meter.current", "meter.power", "meter.power_factor", "meter.frequency", "meter.status",
        "meter.energy_counter", "meter.energy_total"]
FAST_S, SLOW_S, WINDOW_S = 0.05, 0.4, 2.0


async def test_fast_and_slow_groups_poll_at_their_own_rates_over_one_connection(plant: ModbusPlant):
    tags = [tag(n) for n in FAST] + [tag(n, poll_interval=SLOW_S) for n in SLOW]
    src = source(plant, tags, poll_interval=FAST_S)
    assert [(g.interval, [str(r) for r in g.requests]) for g in src.groups] == [
        (FAST_S, ["holding 100..106"]), (SLOW_S, ["input 0..15"])]
    async with running(src) as sink:
        await sink.wait_for(lambda s: all(latest(s, n) for n in FAST + SLOW))
        plant.function_codes.clear()
        start = len(sink.readings)
        connections = []
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        while (elapsed := loop.time() - t0) < WINDOW_S:
            connections.append(plant.connections)
            await asyncio.sleep(0.1)
        fast, slow = plant.function_codes[3], plant.function_codes[4]
        window = sink.readings[start:]
    # the slow group: one read per 0.4 s, one more or less at the window's edges, never a burst
    expected_slow = elapsed / SLOW_S
    assert math.floor(expected_slow) - 1 <= slow <= math.ceil(expected_slow) + 1, (fast, slow, elapsed)
    # the fast group: at most one read per slot; a busy shared machine may make it skip slots,
    # but it must still poll several times as often as the slow group
    assert elapsed / FAST_S / 3 <= fast <= elapsed / FAST_S + 2, (fast, slow, elapsed)
    assert fast >= 4 * slow, (fast, slow)
    # the readings follow the polls: every poll publishes each of its group's tags once
    per_tag = {n: sum(r.tag == n for r in window) for n in FAST + SLOW}
    assert all(abs(per_tag[n] - fast) <= 1 for n in FAST), (per_tag, fast)
    assert all(abs(per_tag[n] - slow) <= 1 for n in SLOW), (per_tag, slow)
    # one TCP connection carried both groups all along
    assert set(connections) == {1}, connections
    assert src.status.reconnects_total == 0 and src.status.last_error == ""


async def test_groups_write_and_recover_together(plant: ModbusPlant):
    """A write shares the wire with both groups; a lost link reconnects once and restarts both."""
    tags = [tag(n, writable=n == "machine.speed_setpoint") for n in FAST] + [tag("meter.voltage", poll_interval=0.3)]
    src = source(plant, tags, poll_interval=0.05)
    async with running(src) as sink:
        await sink.wait_for(lambda s: all(latest(s, n) for n in FAST + ["meter.voltage"]))
        await src.write("machine.speed_setpoint", 1234)
        assert plant.get("machine.speed_setpoint") == 1234
        await sink.wait_for(lambda s: latest(s, "machine.speed_setpoint").value == 1234)  # type: ignore[union-attr]
        await plant.stop()
        await sink.wait_for(lambda s: latest(s, "meter.voltage").value is None)  # type: ignore[union-attr]
        await plant.start()
        plant.set("meter.voltage", 401.5)
        await sink.wait_for(lambda s: latest(s, "meter.voltage").value == 401.5, timeout=5.0)  # type: ignore[union-attr]
        await sink.wait_for(lambda s: latest(s, "machine.speed_setpoint").value == 1234)  # type: ignore[union-attr]
        assert plant.connections == 1
    assert src.status.reconnects_total == 1


async def test_tags_of_one_interval_share_reads_and_other_intervals_do_not(plant: ModbusPlant):
    # holding 101 and 104..105 merge across 102..103 (merge_gap), but part_count, polled every
    # 2 s, is read by its own group only
    tags = [tag("machine.speed_setpoint"), tag("machine.part_count", poll_interval=2.0),
            tag("machine.cycle_time", poll_interval=0.05)]
    src = source(plant, tags, poll_interval=0.05)
    fast, slow = src.groups
    assert (fast.interval, [str(r) for r in fast.requests], fast.requests[0].names) == (
        0.05, ["holding 101..105"], ("machine.speed_setpoint", "machine.cycle_time"))
    assert (slow.interval, [str(r) for r in slow.requests], slow.requests[0].names) == (
        2.0, ["holding 102..103"], ("machine.part_count",))
    assert [str(r) for r in src.requests] == ["holding 101..105", "holding 102..103"]


@pytest.mark.parametrize("bad", [0, -1.0, math.nan, math.inf])
def test_tag_poll_interval_must_be_positive(bad):
    data = {**BASE, "tags": [{**BASE["tags"][0], "poll_interval": bad}]}
    with pytest.raises(msgspec.ValidationError, match=re.escape(f"poll_interval: must be > 0 seconds, got {bad}") +
                       r".*\(tag 't'\)"):
        msgspec.convert(data, ModbusSourceConfig)


def test_tag_poll_interval_inherits_the_sources():
    config = msgspec.convert({**BASE, "poll_interval": 2.5, "tags": [BASE["tags"][0], {**BASE["tags"][0], "name": "u",
                                                                                     "poll_interval": 0.5}]},
                             ModbusSourceConfig)
    assert [config.interval_of(t) for t in config.tags] == [2.5, 0.5]


async def test_readme_sample_groups_as_it_says(plant: ModbusPlant):
    samples = re.findall(r"### Sample: per-tag poll intervals.*?```toml\n(.*?)```", README.read_text(), re.S)
    assert samples, "gateway/modbus/README.md has no per-tag poll interval sample"
    data = tomllib.loads(samples[0])["gateway"]["sources"][0]
    src = ModbusSource(msgspec.convert(data | {"port": plant.port}, ModbusSourceConfig))
    assert [(g.interval, [str(r) for r in g.requests]) for g in src.groups] == [
        (0.1, ["holding 100..101"]), (5.0, ["input 10..15"])]
    async with running(src) as sink:  # the first poll of each group reads what the plant holds
        expected = {t.name: plant.get(t.name) for t in src.config.tags}
        await sink.wait_for(lambda s: {n: getattr(latest(s, n), "value", None) for n in expected} == expected)
