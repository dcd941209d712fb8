"""Rescheduling: every event type on a generated shop, frozen work kept, right-shift repair beside the re-optimised version."""

import pytest

from scheduling.cpsat import Objective
from scheduling.events import Event, EventError, apply_event, diff, reschedule
from scheduling.generate import generate
from scheduling.model import Alternative, Job, Operation
from scheduling.solver import solve
from scheduling.validate import violations


@pytest.fixture(scope="module")
def shop():
    inst = generate(12, 4, seed=3, ops=(2, 4))
    current = solve(inst, 2.0, 1, objective=Objective("weighted", 10, 10)).schedule
    assert violations(inst, current) == []
    return inst, current


def started_before(schedule, at):
    return {(p.job, p.op): p for p in schedule.placements if p.start < at}


def check(inst, current, event, **kw):
    rs = reschedule(inst, current, event, time_limit=1.5, workers=1, **kw)
    assert violations(rs.instance, rs.repaired) == [], "right-shift repair is invalid"
    assert violations(rs.instance, rs.optimised.schedule) == [], "re-optimised schedule is invalid"
    assert rs.first_valid_s < 1.0
    assert rs.optimised_objective <= rs.repaired_objective  # never worse than the repair it starts from
    return rs


def test_machine_down_freezes_started_work_and_clears_the_window(shop):
    inst, current = shop
    at = current.makespan() // 3
    m = current.placements[0].machine
    rs = check(inst, current, Event("machine_down", at, machine=m, until=at + 200))
    new = rs.optimised.schedule.by_op()
    for key, p in started_before(current, at).items():
        if not (p.machine == m and p.end > at):  # the operation the breakdown interrupted restarts
            assert (new[key].machine, new[key].start) == (p.machine, p.start)
    assert all(not (p.machine == m and p.start < at + 200 and p.end > at) for p in rs.optimised.schedule.placements)
    assert len(rs.repair_diff.moved) == 0  # right shift keeps every machine
    # the stability term keeps most operations where they were
    assert len(rs.optimised_diff.moved) < len(current.placements) // 2


def test_open_ended_breakdown_moves_work_off_the_machine(shop):
    inst, current = shop
    at = current.makespan() // 4
    m = max(range(inst.n_machines), key=lambda k: sum(p.machine == k for p in current.placements))
    rs = check(inst, current, Event("machine_down", at, machine=m))
    reopen = rs.instance.unavailable[m][-1][1]
    waiting = [p for p in rs.optimised.schedule.placements if p.machine == m and p.end > at]
    # nothing runs on the broken machine before it reopens (the interrupted operation restarts after it)
    assert all(p.start >= reopen for p in waiting), [p for p in waiting if p.start < reopen]
    # work moves off: what waits for the machine is at most what stood on it after the breakdown
    assert len(waiting) <= sum(p.machine == m and p.end > at for p in current.placements)
    flexible = [(p.job, p.op) for p in current.placements if p.machine == m and p.end > at
                and any(a.machine != m for a in rs.instance.jobs[p.job].operations[p.op].alternatives)]
    placed = {(p.job, p.op): p.machine for p in rs.optimised.schedule.placements}
    assert not flexible or any(placed[k] != m for k in flexible), "no operation left the broken machine"


def test_machine_back_reopens_the_machine(shop):
    inst, current = shop
    at = current.makespan() // 3
    m = current.placements[0].machine
    down = apply_event(inst, current, Event("machine_down", at, machine=m, until=at + 10_000))
    back = apply_event(down, current, Event("machine_back", at + 50, machine=m))
    assert back.unavailable[m][-1] == (at, at + 50)


def test_rush_order_is_added_after_now(shop):
    inst, current = shop
    at = current.makespan() // 2
    rush = Job("RUSH-1", [Operation([Alternative(0, 20), Alternative(1, 25)], "op1", "F1")], due=at + 60, weight=10)
    rs = check(inst, current, Event("rush_order", at, new_job=rush))
    placed = [p for p in rs.optimised.schedule.placements if p.job == len(inst.jobs)]
    assert len(placed) == 1 and placed[0].start >= at
    assert diff(current, rs.optimised.schedule).added == [(len(inst.jobs), 0)]


@pytest.mark.parametrize("delta", [-5, 40])
def test_operation_finished_early_or_late(shop, delta):
    inst, current = shop
    p = min(current.placements, key=lambda q: q.start + q.job)  # an operation running at `at`
    at = p.start + 1
    end = max(p.start + 1, p.end + delta)
    rs = check(inst, current, Event("op_finished", at, job=p.job, op=p.op, end=end))
    q = rs.optimised.schedule.by_op()[(p.job, p.op)]
    assert (q.machine, q.start, q.end) == (p.machine, p.start, end)


def test_cancel_drops_the_unstarted_rest(shop):
    inst, current = shop
    at = current.makespan() // 3
    job = max(range(len(inst.jobs)), key=lambda j: max(p.start for p in current.placements if p.job == j))
    rs = check(inst, current, Event("cancel", at, job=job))
    left = [p for p in rs.optimised.schedule.placements if p.job == job]
    assert all(p.start < at for p in left)
    assert len(diff(current, rs.optimised.schedule).removed) == sum(p.job == job and p.start >= at for p in current.placements)


def test_bad_events_name_what_is_wrong(shop):
    inst, current = shop
    with pytest.raises(EventError, match="machine 99"):
        apply_event(inst, current, Event("machine_down", 5, machine=99))
    with pytest.raises(EventError, match="order 999"):
        apply_event(inst, current, Event("cancel", 5, job=999))
    with pytest.raises(EventError, match="until 5 is not after 10"):
        apply_event(inst, current, Event("machine_down", 10, machine=0, until=5))
    with pytest.raises(EventError, match="event kind 'flood'"):
        apply_event(inst, current, Event("flood", 10))


def test_work_moved_off_a_broken_machine_waits_for_what_already_runs_on_the_other():
    # found by the command center's browser test: the interrupted operation was restarted on the other
    # machine at the breakdown, on top of the operation already running there
    from scheduling.model import Instance, Placement, Schedule

    inst = Instance("two", ["m0", "m1"], [Job("J0", [Operation([Alternative(0, 10), Alternative(1, 10)])]),
                                          Job("J1", [Operation([Alternative(1, 10)])])])
    running = Schedule([Placement(0, 0, 0, 0, 10), Placement(1, 0, 1, 0, 10)])
    rs = reschedule(inst, running, Event("machine_down", 2, machine=0), time_limit=1.0, workers=1)
    assert violations(rs.instance, rs.repaired) == [] and violations(rs.instance, rs.optimised.schedule) == []
    moved = rs.repaired.by_op()[(0, 0)]
    assert (moved.machine, moved.start) == (1, 10)  # after J1, which keeps running where it started
    assert rs.optimised.schedule.by_op()[(1, 0)].start == 0
