"""LNS around a disruption: its neighbourhoods sit on the event, it never returns worse than its start, every result valid."""

import random

import pytest

from scheduling.cpsat import Objective
from scheduling.dispatch import right_shift
from scheduling.events import Event, _still_there, apply_event, reschedule
from scheduling.generate import generate
from scheduling import lns
from scheduling.lns import focus_of, focused_lns, neighbourhood
from scheduling.model import Placement, Schedule
from scheduling.solver import FjspModel_score, score, solve
from scheduling.validate import violations

BASE = Objective("weighted", 10, 10)


@pytest.fixture(scope="module")
def broken():
    inst = generate(30, 5, seed=4, ops=(2, 4))
    current = solve(inst, 3.0, 2, objective=BASE).schedule
    span = current.makespan()
    busy = max(range(inst.n_machines), key=lambda m: sum(p.end - p.start for p in current.placements if p.machine == m))
    event = Event("machine_down", span // 3, machine=busy, until=span // 3 + span // 8)
    after = apply_event(inst, current, event)
    kept = _still_there(after, current)
    repaired = right_shift(after, kept)
    assert violations(after, repaired) == []
    return inst, current, event, after, kept, repaired


def test_focus_covers_the_broken_machine_and_the_jobs_the_repair_delayed(broken):
    _, current, event, after, kept, repaired = broken
    focus = focus_of(after, kept, repaired, event.at, {event.machine}, event.until)
    assert event.machine in focus.machines and focus.until == event.until and focus.at == event.at
    assert focus_of(after, kept, repaired, event.at, {event.machine}).until > event.at  # the ripple without an end
    ends_before = {}
    for p in current.placements:
        ends_before[p.job] = max(ends_before.get(p.job, 0), p.end)
    later = {p.job for p in repaired.placements if p.end > ends_before[p.job]}
    assert later and set(focus.delay) == later


def test_neighbourhoods_sit_on_the_disruption_and_never_free_frozen_work(broken, monkeypatch):
    _, _, event, after, kept, repaired = broken
    focus = focus_of(after, kept, repaired, event.at, {event.machine}, event.until)
    starts = repaired.by_op()
    span = repaired.makespan()
    ends = {}
    for p in repaired.placements:
        ends[p.job] = max(ends.get(p.job, 0), p.end)
    hot = set(focus.delay) | {j for j, e in ends.items() if e > after.jobs[j].due}  # delayed by the event, or late
    movable = [p for p in repaired.placements if after.jobs[p.job].operations[p.op].fixed is None]

    def early(key):  # within the first third of what is left of the plan after the event
        return focus.at <= starts[key].start <= focus.at + (span - focus.at) // 3

    def share(test):
        rng, hit, total = random.Random(1), 0, 0
        for _ in range(200):
            free = neighbourhood(after, repaired, focus, rng, 12)
            assert free and len(free) <= 40
            assert all(after.jobs[j].operations[o].fixed is None for j, o in free)
            hit += sum(test(k) for k in free)
            total += len(free)
        return hit / total

    # the default mix draws mostly the delayed and late jobs (they carry the weighted tardiness): the other jobs'
    # operations are freed at most 0.7 times as often as their share of the plan (at a hot share of one half: > 0.65).
    # Relative, because the plan (3 s on 2 workers) varies from run to run and so does the hot share: a fixed margin
    # of 0.15 over it cannot hold above a share of about 0.79 (70 % of the draws are hot jobs only, the rest about at
    # their share), and a clean-clone run saw 0.87
    hot_share = sum(p.job in hot for p in movable) / len(movable)
    assert 1 - share(lambda k: k[0] in hot) < 0.7 * (1 - hot_share), hot_share
    # the time-window kind alone: the first third after the event holds well over a third of the freed operations
    monkeypatch.setattr(lns, "MIX", (1.0, 1.0, 1.0))
    early_share = sum(early((p.job, p.op)) for p in movable) / len(movable)
    assert share(early) > early_share + 0.1, early_share


def test_neighbourhood_frees_an_operation_moved_off_its_previous_machine(broken):
    _, _, event, after, kept, repaired = broken
    focus = focus_of(after, kept, repaired, event.at, {event.machine}, event.until)
    flexible = next(p for p in repaired.placements if after.jobs[p.job].operations[p.op].fixed is None
                    and len(after.jobs[p.job].operations[p.op].alternatives) > 1)
    other = next(a.machine for a in after.jobs[flexible.job].operations[flexible.op].alternatives
                 if a.machine != flexible.machine)
    # a version in which that operation ran elsewhere: the stability stage must be able to send it back
    previous = Schedule([p if p is not flexible else Placement(p.job, p.op, other, p.start, p.end)
                         for p in repaired.placements])
    rng = random.Random(2)
    hits = sum((flexible.job, flexible.op) in neighbourhood(after, repaired, focus, rng, 10, previous)
               for _ in range(60))
    assert hits >= 15


def test_focused_lns_is_valid_and_never_worse_than_its_start(broken):
    _, _, event, after, kept, repaired = broken
    focus = focus_of(after, kept, repaired, event.at, {event.machine}, event.until)
    r = focused_lns(after, repaired, BASE, 3.0, focus, workers=2, seed=3)
    assert violations(after, r.schedule) == []
    assert r.objective == FjspModel_score(after, r.schedule, BASE) <= score(after, repaired, BASE)
    # with a cap at the start's objective and only stability to minimise, the cap holds and moves only go down
    cap = int(score(after, r.schedule, BASE))
    stable = Objective("none", previous=kept, move_weight=100, shift_weight=1, caps={"weighted": cap})
    s = focused_lns(after, r.schedule, Objective(**{**stable.__dict__, "makespan_weight": 10, "tardiness_weight": 10}),
                    2.0, focus, workers=2, seed=4)
    assert violations(after, s.schedule) == []
    assert score(after, s.schedule, BASE) <= cap
    assert s.objective <= FjspModel_score(after, r.schedule, Objective(**{**stable.__dict__, "makespan_weight": 10,
                                                                          "tardiness_weight": 10}))


def test_reschedule_beats_its_repair(broken):
    inst, current, event, after, _, _ = broken
    # how its moves compare with a free re-solve is measured by bench.scheduling on the 100 x 10 instance:
    # on this 30 x 5 one at 4-8 s a free re-solve had as good an objective with fewer moves in some runs, so that
    # comparison is no invariant to assert here
    rs = reschedule(inst, current, event, time_limit=4.0, workers=2)
    assert violations(rs.instance, rs.optimised.schedule) == [] and violations(rs.instance, rs.repaired) == []
    assert rs.optimised_objective <= rs.repaired_objective
    assert rs.optimised.objective == score(rs.instance, rs.optimised.schedule, BASE)
