"""The twin end to end on a real database: samples in, intervals/counts/alarms/status out; restarts count nothing twice."""

from __future__ import annotations

import asyncio
import contextlib

import msgspec
import numpy as np
import pytest

from historian.registry import MachineSpec, TagInfo, TagRegistry, TagSpec, register
from historian.config import HistorianConfig
from historian.samples import Batch, SampleBatch, to_us
from historian.writer import HistorianWriter
from tests.historian.helpers import T0, scalar
from tests.support import wait_for_sql, wait_for_value, wait_until
from twin.config import TwinConfig
from twin.engine import Twin, build_layout
from twin.service import TwinService

T0_US = to_us(T0)
S = 1_000_000  # µs per second

TAGS = [
    TagSpec("m1.state", "machine", data_type="int", machine="m1"),
    TagSpec("m1.good", "material", data_type="int", machine="m1"),
    TagSpec("m1.scrap", "material", data_type="int", machine="m1"),
    TagSpec("m1.temp", "machine", machine="m1"),
]
CONFIG = msgspec.convert(
    {
        "tick_interval": 0.02,
        "record_interval": 0.05,
        "machines": [
            {"name": "m1", "state_tag": "m1.state", "good_counter_tag": "m1.good", "scrap_counter_tag": "m1.scrap",
             "counter_modulus": 1000, "sensors": [{"tag": "m1.temp", "mu": 50.0, "sigma": 1.0}]}
        ],
    },
    TwinConfig,
)


def batch(registry: TagRegistry, rows: list[tuple[str, float, float]]) -> Batch:
    """A committed batch as the gateway's tap hands it on: (tag, seconds after T0, value) rows."""
    return Batch(SampleBatch.from_columns([registry.by_name[t].id for t, _, _ in rows],
                                          [T0_US + int(s * S) for _, s, _ in rows], [v for _, _, v in rows]))


# a shift in miniature: idle, producing (counting parts, one hot reading), down, producing again
TIMELINE = [
    ("m1.state", 0, 2), ("m1.good", 0, 990), ("m1.scrap", 0, 5),
    ("m1.state", 10, 1), ("m1.temp", 11, 50.5), ("m1.good", 12, 995), ("m1.temp", 13, 54.0),  # 4 sigma: WE1/N1
    ("m1.good", 20, 998), ("m1.scrap", 20, 6),
    ("m1.state", 30, 4), ("m1.good", 31, 3),  # counter rolled over at 1000: 998 -> 3 is 5 parts
    ("m1.state", 40, 1), ("m1.good", 45, 1),  # a reset: 3 -> 1 counts the 1 made since
]
# parts: 990->995 (5), ->998 (3), rollover ->3 (5), reset ->1 (1) = 14 good; scrap 5->6 = 1
GOOD, SCRAP = 14, 1


@contextlib.asynccontextmanager
async def running(service: TwinService):  # type: ignore[no-untyped-def]
    """The service running (restored and caught up) for the block, as its task; stopped (last record made) after."""
    task = asyncio.create_task(service.run())
    await asyncio.wait_for(service.ready.wait(), 10)
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def setup(conn) -> TagRegistry:  # type: ignore[no-untyped-def]
    return await register(conn, TAGS, [MachineSpec("m1")])


def registry_of_tags() -> TagRegistry:
    return TagRegistry(TagInfo(i + 1, t.name, t.data_type, "", t.category, False) for i, t in enumerate(TAGS))


def test_engine_turns_a_timeline_into_intervals_counts_and_alarms():
    registry = registry_of_tags()
    twin = Twin(CONFIG, build_layout(CONFIG, registry))
    shuffled = [TIMELINE[i] for i in np.random.default_rng(1).permutation(len(TIMELINE))]
    out = twin.step(batch(registry, shuffled).samples)  # one batch, any order: taken in time order per tag
    assert [(i.state, (i.start_us - T0_US) // S, (i.end_us - T0_US) // S) for i in out.intervals] == [
        ("idle", 0, 10), ("producing", 10, 30), ("unplanned_down", 30, 40)]
    assert sum(c.good for c in out.counts) == GOOD and sum(c.scrap for c in out.counts) == SCRAP
    # one alarm: raised by the 4-sigma point, suppressed while the machine is down, released when it produces
    assert [(a.kind, a.rules[:1], (a.ts_us - T0_US) // S) for a in out.alarms] == [
        ("raised", ["WE1"], 13), ("suppressed", [], 30), ("released", [], 40)]
    assert out.alarms[0].priority == "high" and out.alarms[0].value == 54.0
    view = twin.machine_view(0)
    assert (view["state"], view["good_total"], view["scrap_total"]) == ("producing", GOOD, SCRAP)
    # the same samples again (a replay): nothing new
    assert not twin.step(batch(registry, TIMELINE).samples)


def test_a_sensor_without_limits_learns_them_from_its_first_points_then_judges():
    registry = registry_of_tags()
    config = msgspec.convert({"baseline_points": 20, "machines": [
        {"name": "m1", "sensors": [{"tag": "m1.temp"}]}]}, TwinConfig)
    twin = Twin(config, build_layout(config, registry))
    values = np.random.default_rng(3).normal(50.0, 0.5, 20)
    calm = [("m1.temp", i, float(v)) for i, v in enumerate(values)]
    assert not twin.step(batch(registry, calm).samples).alarms
    assert twin.machine_view(0)["sensors"]["4"]["mu"] == pytest.approx(values.mean())
    out = twin.step(batch(registry, [("m1.temp", 30, values.mean() + 5 * values.std(ddof=1))]).samples)
    assert out.alarms and out.alarms[0].kind == "raised" and "WE1" in out.alarms[0].rules


@pytest.mark.parametrize("levels", [[50.0], [49.5, 50.5], [49.0, 50.0, 51.0]])
def test_a_constant_or_quantised_signal_is_not_judged(levels):
    registry = registry_of_tags()
    config = msgspec.convert({"baseline_points": 20, "machines": [
        {"name": "m1", "sensors": [{"tag": "m1.temp"}]}]}, TwinConfig)
    twin = Twin(config, build_layout(config, registry))
    flat = [("m1.temp", i, levels[i % len(levels)]) for i in range(200)]  # was: Nelson 7 / WE4 on every point
    assert not twin.step(batch(registry, flat).samples).alarms
    view = twin.machine_view(0)["sensors"]["4"]
    # a held value is not a new measurement: a constant never completes a baseline; a few levels are quantised
    assert view["mu"] is None and ("no variation" in view["baseline"] if len(levels) > 1 else
                                   view["baseline"] == "learning (1/20)")


def test_an_unknown_tag_in_the_twin_config_is_named():
    config = msgspec.convert({"machines": [{"name": "m1", "state_tag": "m1.nope"}]}, TwinConfig)
    with pytest.raises(ValueError, match=r"twin.machines\[m1\].state_tag: no tag 'm1.nope'"):
        build_layout(config, registry_of_tags())


async def test_service_records_and_a_restart_counts_nothing_twice(dsn, conn):
    registry = await setup(conn)
    first = TwinService(CONFIG, dsn)
    async with running(first):
        first.observe(batch(registry, TIMELINE[:9]))
        await until(lambda: scalar(conn, "SELECT count(*) FROM alarms"), lambda n: n == 1)

    # intervals so far: idle [0, 10); the producing one from 10 is still open (in machine_status)
    cur = await conn.execute("SELECT state, extract(epoch FROM end_ts - start_ts) FROM state_intervals")
    assert await cur.fetchall() == [("idle", 10)]
    cur = await conn.execute("SELECT rules, value, ts FROM alarms_named")
    rules, value, ts = await cur.fetchone()
    assert {"WE1", "N1"} <= set(rules) and value == 54.0 and to_us(ts) == T0_US + 13 * S
    assert await scalar(conn, "SELECT sum(good) FROM part_counts") == 8
    assert await scalar(conn, "SELECT state FROM machine_status") == "producing"

    # restart: the tap replays the whole timeline (a spool replay after a crash) plus the rest
    second = TwinService(CONFIG, dsn)
    async with running(second):
        second.observe(batch(registry, TIMELINE))
        await until(lambda: scalar(conn, "SELECT sum(good) FROM part_counts"), lambda n: n == GOOD)
        done = second.records
        await wait_until(lambda: second.records >= done + 3, what="three more records")  # still nothing twice
    assert await scalar(conn, "SELECT sum(good) FROM part_counts") == GOOD
    assert await scalar(conn, "SELECT sum(scrap) FROM part_counts") == SCRAP
    assert await scalar(conn, "SELECT count(*) FROM alarms") == 1
    # the replay raised nothing again: one journal entry per transition, in data time
    cur = await conn.execute("SELECT transition, extract(epoch FROM data_ts) - %s, actor FROM alarm_journal_named "
                             "ORDER BY id", (T0.timestamp(),))
    assert [(t, round(float(s)), a) for t, s, a in await cur.fetchall()] == [
        ("raised", 13, "twin"), ("suppressed", 30, "twin"), ("released", 40, "twin")]
    cur = await conn.execute("SELECT state, priority, rule, active FROM alarms_named")
    assert await cur.fetchone() == ("unack_active", "high", "spc", True)
    cur = await conn.execute("SELECT state, extract(epoch FROM start_ts), extract(epoch FROM end_ts) "
                             "FROM state_intervals ORDER BY start_ts")
    t0 = T0.timestamp()
    assert [(s, float(a) - t0, float(b) - t0) for s, a, b in await cur.fetchall()] == [
        ("idle", 0, 10), ("producing", 10, 30), ("unplanned_down", 30, 40)]
    cur = await conn.execute("SELECT good_total, scrap_total, state FROM machine_status")
    assert await cur.fetchone() == (GOOD, SCRAP, "producing")


async def test_a_restarted_twin_catches_up_from_the_historian(dsn, conn):
    registry = await setup(conn)
    first = TwinService(CONFIG, dsn)
    async with running(first):
        first.observe(batch(registry, TIMELINE[:3]))
        await until(lambda: scalar(conn, "SELECT count(*) FROM machine_status"), lambda n: n == 1)
        done = first.records
        await wait_until(lambda: first.records > done, what="one more record")
    # while the twin is away the gateway keeps writing: the tap will not bring these again
    async with HistorianWriter(dsn, HistorianConfig()) as writer:
        await writer.reload_registry()
        await writer.write(batch(registry, TIMELINE[3:]))
    second = TwinService(CONFIG, dsn)
    async with running(second):
        await until(lambda: scalar(conn, "SELECT sum(good) FROM part_counts"), lambda n: n == GOOD)
    assert await scalar(conn, "SELECT count(*) FROM alarms") == 1
    assert await scalar(conn, "SELECT count(*) FROM state_intervals") == 3


async def until(get, ok, timeout: float = 10.0):  # type: ignore[no-untyped-def]
    """Poll an async getter until ok(value) (tests.support.wait_for_value), returning the value."""
    return await wait_for_value(get, ok, timeout=timeout)


async def test_the_failure_model_is_served_on_the_latest_process_readings_and_registered(dsn, conn):
    from twin.failure import FailureModel

    inputs = {"air_temperature_k": 302.5, "process_temperature_k": 310.3, "rotational_speed_rpm": 1282.0,
              "torque_nm": 68.0, "tool_wear_min": 220.0}  # hot, slow, high torque, worn: a risky record
    tags = [TagSpec(f"m1.{k}", "machine", machine="m1") for k in inputs]
    registry = await register(conn, tags, [MachineSpec("m1")])
    config = msgspec.convert({"tick_interval": 0.02, "record_interval": 0.05, "machines": [
        {"name": "m1", "failure_model": "failure", "product_type": "L",
         "failure_tags": {k: f"m1.{k}" for k in inputs}}]}, TwinConfig)
    service = TwinService(config, dsn)
    async with running(service):
        service.observe(batch(registry, [(f"m1.{k}", 1, v) for k, v in inputs.items()]))
        served = await until(lambda: scalar(conn, "SELECT predictions -> 'failure' FROM machine_status"),
                             lambda p: "probability" in p)
    model = FailureModel.load()
    # what the twin served is the model's answer on exactly those readings
    assert served["probability"] == pytest.approx(model.probability({"type": "L"} | inputs), abs=1e-4)
    assert served["flagged"] == (served["probability"] >= model.threshold)
    assert served["sha256"] == model.sha256
    cur = await conn.execute("SELECT name, sha256, kind FROM models")
    assert await cur.fetchall() == [("failure", model.sha256, model.card.kind)]


def test_the_model_history_is_a_row_per_part_and_restarts_when_the_machine_is_renewed():
    names = [f"m1.in{j}" for j in range(24)] + ["m1.good", "m1.cycles"]
    registry = TagRegistry(TagInfo(i + 1, n, "float", "", "machine", False) for i, n in enumerate(names))
    config = msgspec.convert({"machines": [
        {"name": "m1", "good_counter_tag": "m1.good", "rul_model": "FD001", "rul_tags": names[:24],
         "rul_reset_tag": "m1.cycles"}]}, TwinConfig)
    twin = Twin(config, build_layout(config, registry))

    def part(t: int, good: int, cycles: int, level: float) -> list[tuple[str, float, float]]:
        return [(n, t, level) for n in names[:24]] + [("m1.good", t, good), ("m1.cycles", t, cycles)]

    # the counter's first reading is its baseline; then three parts, one row of inputs each
    rows = part(0, 0, 1, 0.0) + part(1, 1, 2, 1.0) + part(2, 2, 3, 2.0) + part(3, 3, 4, 3.0)
    twin.step(batch(registry, rows).samples)
    assert [row[0] for row in twin.rul_history[0]] == [1.0, 2.0, 3.0]
    # renewed (cycles 4 -> 1): the next part starts a new history
    twin.step(batch(registry, part(4, 4, 1, 9.0)).samples)
    assert [row[0] for row in twin.rul_history[0]] == [9.0]


async def test_the_twin_rides_out_a_database_outage(dsn, conn):
    from psycopg import conninfo

    from tests.gateway.dbproxy import CuttableProxy

    registry = await setup(conn)
    params = conninfo.conninfo_to_dict(dsn)
    proxy = CuttableProxy(params.get("host", "127.0.0.1"), int(params.get("port", 5432)))
    await proxy.start()
    params.update(host="127.0.0.1", port=str(proxy.port), connect_timeout="2")
    service = TwinService(CONFIG, conninfo.make_conninfo(**params))  # type: ignore[arg-type]
    async with running(service) as task:
        service.observe(batch(registry, TIMELINE[:6]))
        await until(lambda: scalar(conn, "SELECT sum(good) FROM part_counts"), lambda n: n == 5)
        await proxy.cut()  # the database host goes away while the twin keeps finding things
        service.observe(batch(registry, TIMELINE[6:]))
        failed = service.record_failures
        await wait_until(lambda: service.record_failures > failed, what="a record refused by the cut database")
        assert not task.done()  # it found the database gone and kept going
        await proxy.start()
        # what was found during the outage is recorded once it is back, exactly once
        await until(lambda: scalar(conn, "SELECT sum(good) FROM part_counts"), lambda n: n == GOOD, timeout=20)
    await proxy.cut()
    assert await scalar(conn, "SELECT sum(good) FROM part_counts") == GOOD
    assert await scalar(conn, "SELECT count(*) FROM alarms") == 1
    assert await scalar(conn, "SELECT count(*) FROM state_intervals") == 3


def test_a_stale_or_bad_input_raises_one_bad_input_alarm_until_a_good_reading():
    registry = registry_of_tags()
    twin = Twin(CONFIG, build_layout(CONFIG, registry))
    temp = registry.by_name["m1.temp"].id
    # producing from 0; the sensor reads at 1, then says nothing while the counter goes on for 100 s
    out = twin.step(batch(registry, [("m1.state", 0, 1), ("m1.temp", 1, 50.0)]
                          + [("m1.good", s, s) for s in range(2, 100)]).samples)
    stale = [a for a in out.alarms if a.rule == "bad_input"]
    assert [(a.kind, a.tag_id) for a in stale] == [("raised", temp)] and "stale" in stale[0].rules[0]
    out = twin.step(batch(registry, [("m1.temp", 100, 50.2)]).samples)
    assert [(a.kind, a.rule) for a in out.alarms] == [("cleared", "bad_input")]
    # a bad-quality reading: one alarm, whatever the number of bad readings after it
    bad = SampleBatch.from_columns([temp] * 3, [T0_US + s * S for s in (101, 102, 103)], [0.0] * 3, [0] * 3)
    out = twin.step(bad)
    assert [(a.kind, a.rule, a.rules) for a in out.alarms] == [("raised", "bad_input", ["bad quality"])]
    assert not twin.step(batch(registry, [("m1.good", 104, 104)]).samples).alarms
    # idle: nothing is judged and nothing is stale (the alarm is suppressed with its machine)
    out = twin.step(batch(registry, [("m1.state", 105, 2), ("m1.good", 400, 104)]).samples)
    assert [(a.kind, a.rule) for a in out.alarms] == [("suppressed", "bad_input")]


def test_more_than_ten_alarms_in_ten_minutes_raise_one_flood_alarm():
    registry = registry_of_tags()
    twin = Twin(CONFIG, build_layout(CONFIG, registry))
    rows = [("m1.state", 0, 1)]
    t = 1.0
    calm = [0.5, 1.2, -0.5, -1.2] * 4  # in control: no rule broken (no run, no trend, no hugging)
    for _ in range(12):  # 12 excursions, each cleared by 16 in-control points: 12 alarms in ~6 minutes
        rows.append(("m1.temp", t, 53.5))
        rows += [("m1.temp", t + 1 + i, 50.0 + z) for i, z in enumerate(calm)]
        t += 30
    out = twin.step(batch(registry, rows).samples)
    raised = [a for a in out.alarms if a.kind == "raised"]
    assert len([a for a in raised if a.rule == "spc"]) == 12
    floods = [a for a in raised if a.rule == "flood"]
    assert len(floods) == 1 and floods[0].tag_id is None and floods[0].priority == "high"
    # ten minutes later with no new alarm the flood clears
    out = twin.step(batch(registry, [("m1.temp", t + 700, 50.1)]).samples)
    assert ("cleared", "flood") in [(a.kind, a.rule) for a in out.alarms]


async def test_an_expired_shelve_is_journalled_by_the_twin(dsn, conn):
    await setup(conn)
    cur = await conn.execute(
        "INSERT INTO alarms (machine_id, rule, ts, last_ts, rules, value, priority, shelved_until, shelved_by) "
        "SELECT id, 'spc', now(), now(), ARRAY['WE1'], 54.0, 'high', now() - interval '1 s', 'op' FROM machines "
        "WHERE name = 'm1' RETURNING id")
    (alarm,) = await cur.fetchone()
    await conn.execute(
        "INSERT INTO alarms (machine_id, rule, ts, last_ts, rules, value, priority, shelved_until, shelved_by) "
        "SELECT id, 'bad_input', now(), now(), ARRAY['stale'], 0.0, 'low', now() + interval '1 h', 'op' "
        "FROM machines "
        "WHERE name = 'm1'")
    service = TwinService(CONFIG, dsn)
    async with running(service):
        await wait_for_sql(conn, "SELECT count(*) FROM alarm_journal WHERE transition = 'unshelved'", 1)
        done = service.records
        await wait_until(lambda: service.records >= done + 2, what="two more records")
    cur = await conn.execute("SELECT alarm_id, actor, detail FROM alarm_journal WHERE transition = 'unshelved'")
    rows = await cur.fetchall()
    assert [(a, actor) for a, actor, _ in rows] == [(alarm, "twin")]  # once, and the shelve still running kept
    assert rows[0][2].startswith("shelve expired at ")
    assert await scalar(conn, "SELECT count(*) FROM alarms WHERE shelved_until IS NOT NULL") == 1
