"""The twin trigger: debounced Down/back from machine_status become new schedule versions (real database)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from scheduling import store
from scheduling.dispatch import dispatch
from scheduling.model import Alternative, Instance, Job, Operation
from scheduling.trigger import Debouncer, TriggerConfig, TwinTrigger
from tests.support import scalar_of

T0 = datetime(2026, 12, 7, 6, 0, tzinfo=timezone.utc)


def at(s: float) -> datetime:
    return T0 + timedelta(seconds=s)


def test_debouncer_ignores_flapping_and_reports_each_change_once():
    d = Debouncer(60)
    assert d.feed("m1", True, at(0), at(10)) is None          # down, not long enough yet
    assert d.feed("m1", False, at(20), at(30)) is None        # flapped back: nothing pending any more
    assert d.feed("m1", True, at(40), at(90)) is None
    assert d.feed("m1", True, at(40), at(100)) == "machine_down"
    assert d.feed("m1", True, at(40), at(500)) is None        # reported once
    assert d.feed("m1", False, at(600), at(610)) is None
    assert d.feed("m1", False, at(600), at(660)) == "machine_back"


async def test_trigger_adds_a_version_after_the_debounce(conn):
    await conn.execute("INSERT INTO machines (name, line) VALUES ('m1', 'L1'), ('m2', 'L1')")
    jobs = [Job(f"WO-{i}", [Operation([Alternative(0, 600), Alternative(1, 900)], "1"),
                            Operation([Alternative(0, 300)], "2")]) for i in range(4)]
    inst = Instance("t", ["m1", "m2"], jobs)
    s = dispatch(inst)
    sid = await store.create(conn, "t", T0, "makespan", {}, "test")
    await store.add_version(conn, sid, T0, inst, s, cause={"kind": "initial"}, status="FEASIBLE", objective=None,
                            bound=None, gap=None, solve_s=0)
    trigger = TwinTrigger(TriggerConfig(sid, debounce_s=30, time_limit_s=1, workers=1))
    await conn.execute("INSERT INTO machine_status (machine_id, state, state_since) "
                       "SELECT id, 'unplanned_down', %s FROM machines WHERE name = 'm1'", (at(100),))
    assert await trigger.poll(conn, now=at(110)) == []
    assert await trigger.poll(conn, now=at(131)) == [2]
    v = await store.version(conn, sid)
    assert v["cause"]["kind"] == "machine_down" and v["cause"]["source"] == "twin"
    new_inst, new = v["model"]
    assert all(not (p.machine == 0 and p.end > 100 and new_inst.jobs[p.job].operations[p.op].fixed is None)
               or p.start >= new_inst.unavailable[0][-1][1] for p in new.placements)
    assert await trigger.poll(conn, now=at(200)) == []       # still down: nothing new
    await conn.execute("UPDATE machine_status SET state = 'producing', state_since = %s", (at(300),))
    assert await trigger.poll(conn, now=at(331)) == [3]
    assert (await store.version(conn, sid))["cause"]["kind"] == "machine_back"


def test_trigger_key_is_validated_naming_its_line():
    import pytest

    from shopfloor.config import ConfigError, parse
    from scheduling.trigger import trigger_config

    assert trigger_config(parse("").scheduling) is None  # off unless asked for
    c = trigger_config(parse('[scheduling]\ntrigger = "latest"\ntime_limit_s = 3\nworkers = 1\n'
                             'stability_tolerance = 0.05\nmove_weight = 7\nshift_weight = 2\n').scheduling)
    assert c is not None and c.schedule_id is None
    assert (c.time_limit_s, c.workers, c.tolerance, c.move_weight, c.shift_weight) == (3, 1, 0.05, 7, 2)
    with pytest.raises(ConfigError, match=r'shopfloor.toml:3: scheduling: trigger: must be "off" or "latest", '
                                          r"got 'on'"):
        parse('[scheduling]\nworkers = 1\ntrigger = "on"\n')


async def test_serve_runs_the_trigger_on_the_newest_schedule_and_stops_it_with_the_app(conn, dsn):
    import asyncio

    from litestar.testing import AsyncTestClient

    from api.app import create_app
    from scheduling.config import SchedulingConfig
    from tests.api_keys import api_config, auth
    from tests.scheduling.test_api import PROBLEM, solved
    from tests.support import wait_until

    await conn.execute("INSERT INTO machines (name, line) VALUES ('m1', 'L1'), ('m2', 'L1')")
    table = SchedulingConfig(trigger="latest", trigger_debounce_s=0.3, trigger_poll_s=0.05, time_limit_s=1, workers=1)

    def latest(sid):
        return scalar_of(conn, f"SELECT max(version) FROM schedule_versions WHERE schedule_id = {sid}")

    app = create_app(dsn, api_config(), pool_size=3, scheduling=table)
    async with AsyncTestClient(app=app) as c:
        c.headers.update(auth("engineer"))
        sid = await solved(c, {"problem": PROBLEM, "time_limit_s": 1})
        assert await latest(sid) == 1 and not app.state.trigger_task.done()
        await conn.execute("INSERT INTO machine_status (machine_id, state, state_since) "
                           "SELECT id, 'unplanned_down', now() FROM machines WHERE name = 'm1'")
        await wait_until(lambda: _is(latest(sid), 2), timeout=30, what="the trigger's version 2")
        cause = (await c.get(f"/api/v1/schedules/{sid}")).json()["version"]["cause"]
        assert cause["kind"] == "machine_down" and cause["machine"] == "m1" and cause["source"] == "twin"
    assert app.state.trigger_task.done() and not app.state.trigger_task.cancelled()  # it ended when told, not cut off
    # its connection is gone with it: the lock that makes it the one trigger of this database is free again
    assert await scalar_of(conn, "SELECT pg_try_advisory_lock(1396918340)") is True
    await conn.execute("SELECT pg_advisory_unlock(1396918340)")

    # restarted: the breakdown version 2 already holds is not applied again; the machine coming back is
    app = create_app(dsn, api_config(), pool_size=3, scheduling=table)
    async with AsyncTestClient(app=app):
        await asyncio.sleep(1.0)  # a few debounce times
        assert await latest(sid) == 2
        await conn.execute("UPDATE machine_status SET state = 'producing', state_since = now()")
        await wait_until(lambda: _is(latest(sid), 3), timeout=30, what="the trigger's version 3")
        assert (await store.version(conn, sid))["cause"]["kind"] == "machine_back"
    assert app.state.trigger_task.done() and not app.state.trigger_task.cancelled()


async def _is(value, expected):
    return await value == expected


async def test_shutdown_ends_a_resolve_under_way_with_its_best_so_far(conn, dsn):
    import asyncio
    import time

    from litestar.testing import AsyncTestClient

    from api.app import create_app
    from scheduling.config import SchedulingConfig
    from tests.api_keys import api_config
    from tests.support import wait_until

    await conn.execute("INSERT INTO machines (name, line) VALUES ('m1', 'L1'), ('m2', 'L1')")
    jobs = [Job(f"WO-{i}", [Operation([Alternative(0, 600), Alternative(1, 900)], "1"),
                            Operation([Alternative(0, 300)], "2")]) for i in range(8)]
    inst = Instance("t", ["m1", "m2"], jobs)
    sid = await store.create(conn, "t", T0, "weighted", {}, "test")
    await store.add_version(conn, sid, T0, inst, dispatch(inst), cause={"kind": "initial"}, status="FEASIBLE",
                            objective=None, bound=None, gap=None, solve_s=0)
    # a re-solve of a minute: shutting down must not wait for it
    table = SchedulingConfig(trigger="latest", trigger_debounce_s=0, trigger_poll_s=0.05, time_limit_s=60, workers=1)
    app = create_app(dsn, api_config(), pool_size=2, scheduling=table)
    async with AsyncTestClient(app=app):
        await conn.execute("INSERT INTO machine_status (machine_id, state, state_since) "
                           "SELECT id, 'unplanned_down', now() FROM machines WHERE name = 'm1'")
        await wait_until(lambda: app.state.trigger.debouncer.reported.get("m1"), timeout=30, what="the breakdown taken")
        await asyncio.sleep(0.5)  # into the re-solve
        t0 = time.monotonic()
    # about a second on a quiet machine (the annealing looks at the flag between chunks), more under load; the
    # app would cut it off after 10 s, and a cut-off trigger stores nothing
    assert time.monotonic() - t0 < 15 and app.state.trigger_task.done() and not app.state.trigger_task.cancelled()
    v = await store.version(conn, sid)
    assert v["version"] == 2 and v["cause"]["kind"] == "machine_down" and v["solve_s"] < 15
