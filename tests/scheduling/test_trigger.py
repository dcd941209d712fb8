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
