"""Simulated annealing on an operation list: every result valid, never worse than its start, frozen work and
calendars kept, caps held, and the optimum of toys small enough to enumerate."""

import itertools
import threading
import time

import numpy as np
import pytest

from scheduling.anneal import _Arrays, _evaluate, anneal
from scheduling.cpsat import Objective, with_setups
from scheduling.dispatch import dispatch, right_shift
from scheduling.events import Event, _still_there, apply_event
from scheduling.generate import generate
from scheduling.model import Alternative, Instance, Job, Operation
from scheduling.solver import FjspModel_score, score
from scheduling.validate import violations

BASE = Objective("weighted", 10, 10)


@pytest.fixture(scope="module")
def broken():
    """A generated shop with changeovers and due dates, a breakdown at a third of its span, the right-shift repair."""
    inst = generate(25, 5, seed=5, ops=(2, 4))
    current = dispatch(inst, "edd")
    span = current.makespan()
    event = Event("machine_down", span // 3, machine=1, until=span // 3 + span // 6)
    after = apply_event(inst, current, event)
    kept = _still_there(after, current)
    repaired = right_shift(after, kept)
    assert violations(after, repaired) == []
    return after, kept, repaired, event


def test_decoding_the_start_is_valid_and_no_worse(broken):
    after, _, repaired, _ = broken
    arrays = _Arrays(after, BASE)
    decoded = with_setups(after, arrays.decode(*arrays.encode(repaired)))
    assert violations(after, decoded) == []
    assert score(after, decoded, BASE) <= score(after, repaired, BASE)


def test_anneal_improves_a_repair_and_keeps_frozen_work_and_the_breakdown(broken):
    after, kept, repaired, event = broken
    found = anneal(after, repaired, BASE, 1.0, seed=1)
    assert violations(after, found) == []  # includes frozen positions, changeovers and the unavailable window
    assert score(after, found, BASE) < score(after, repaired, BASE)
    frozen = {(j, o): op.fixed for j, o, op in after.operations() if op.fixed is not None}
    assert frozen, "the event froze nothing: the test would not test it"
    placed = found.by_op()
    assert all((placed[k].machine, placed[k].start) == v for k, v in frozen.items())
    assert not any(p.machine == event.machine and p.start < event.until and p.end > event.at
                   for p in found.placements)


def test_stability_terms_count_moves_as_the_model_does(broken):
    after, kept, repaired, _ = broken
    stable = Objective("weighted", 10, 10, previous=kept, move_weight=500, shift_weight=1)
    found = anneal(after, repaired, stable, 1.0, seed=2)
    assert violations(after, found) == []
    assert FjspModel_score(after, found, stable) <= FjspModel_score(after, repaired, stable)
    arrays = _Arrays(after, stable)
    value, excess = _evaluate(*arrays.encode(found), *arrays.args(), np.zeros(len(arrays.alt_m), np.int64))
    assert excess == 0 and value == FjspModel_score(after, found, stable)


def test_a_cap_is_held_and_an_unreachable_cap_returns_the_start(broken):
    after, kept, repaired, _ = broken
    best = anneal(after, repaired, BASE, 1.0, seed=3)
    cap = int(score(after, best, BASE) * 1.01)
    stable = Objective("none", 10, 10, previous=kept, move_weight=300, shift_weight=1, caps={"weighted": cap})
    calmer = anneal(after, best, stable, 1.0, seed=4)
    assert violations(after, calmer) == []
    assert score(after, calmer, BASE) <= cap
    assert FjspModel_score(after, calmer, stable) <= FjspModel_score(after, best, stable)
    impossible = Objective("none", 10, 10, previous=kept, move_weight=300, caps={"makespan": 1})
    assert anneal(after, repaired, impossible, 0.3, seed=5) is repaired


def single_machine(durations, dues, weights, setups=None):
    """n jobs of one operation on one machine: the weighted-tardiness optimum is found by trying every order."""
    jobs = [Job(f"J{i}", [Operation([Alternative(0, d)], family=f"F{i % 2}")], due=due, weight=w)
            for i, (d, due, w) in enumerate(zip(durations, dues, weights))]
    return Instance("toy", ["M1"], jobs, setups or {})


def brute_force(inst, objective):
    best = None
    for order in itertools.permutations(range(len(inst.jobs))):
        t, prev, tard = 0, None, 0
        for j in order:
            fam = inst.jobs[j].operations[0].family
            t += (inst.setup(prev, fam) if prev is not None else 0) + inst.jobs[j].operations[0].alternatives[0].duration
            tard += inst.jobs[j].weight * max(0, t - inst.jobs[j].due)
            prev = fam
        value = objective.makespan_weight * t + objective.tardiness_weight * tard
        best = value if best is None else min(best, value)
    return best


@pytest.mark.parametrize("setups", [None, {("F0", "F1"): 7, ("F1", "F0"): 3}])
def test_single_machine_weighted_tardiness_reaches_the_enumerated_optimum(setups):
    inst = single_machine([9, 4, 7, 3, 8, 5, 6], [10, 6, 30, 8, 22, 14, 40], [1, 3, 2, 1, 2, 3, 1], setups)
    start = dispatch(inst, "ect")
    found = anneal(inst, start, BASE, 1.0, seed=0)
    assert violations(inst, found) == []
    assert score(inst, found, BASE) == brute_force(inst, BASE)


def test_cancel_stops_it_early(broken):
    after, _, repaired, _ = broken
    cancel = threading.Event()
    cancel.set()
    t0 = time.monotonic()
    found = anneal(after, repaired, BASE, 30.0, cancel=cancel)
    assert time.monotonic() - t0 < 5.0
    assert violations(after, found) == []

