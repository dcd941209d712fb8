"""The solver on small instances with known optima, and each modelling feature on a toy with a hand-checked answer."""

import itertools

import pytest

from scheduling.cpsat import FjspModel, Objective
from scheduling.dispatch import RULES, dispatch, right_shift
from scheduling.model import Alternative, Instance, Job, Operation, weighted_tardiness
from scheduling.parsers import load_instance
from scheduling.reference import solve_reference
from scheduling.solver import solve
from scheduling.validate import violations


@pytest.mark.parametrize("name, optimum", [("ft06", 55), ("kacem4x5.fjs", 11), ("Mk01.fjs", 40)])
def test_known_optima(data_dir, name, optimum):
    inst = load_instance(data_dir / name)
    result = solve(inst, time_limit=20, workers=2)
    assert result.status == "OPTIMAL" and result.objective == optimum and result.bound == optimum
    assert result.schedule.makespan() == optimum and violations(inst, result.schedule) == []
    assert result.gap == 0.0


def test_reference_model_agrees_on_ft06(data_dir):
    inst = load_instance(data_dir / "ft06")
    r = solve_reference(inst, 10, 2)
    assert (r.status, r.objective) == ("OPTIMAL", 55) and violations(inst, r.schedule) == []


@pytest.mark.parametrize("rule", RULES)
def test_dispatching_rules_are_valid(data_dir, rule):
    inst = load_instance(data_dir / "Mk01.fjs")
    s = dispatch(inst, rule)
    assert violations(inst, s) == [] and s.makespan() >= 40
    assert violations(inst, right_shift(inst, s)) == [] and right_shift(inst, s).makespan() == s.makespan()


def one_machine(families, durations, changeover):
    jobs = [Job(f"WO-{i}", [Operation([Alternative(0, d)], "op", f)]) for i, (f, d) in enumerate(zip(families, durations))]
    return Instance("one", ["M0"], jobs, changeover=changeover)


def test_sequence_dependent_changeovers_are_minimised():
    # A A B B with A->B 10, B->A 10: the optimum groups families: 4 x 5 + one changeover = 30
    inst = one_machine(["A", "B", "A", "B"], [5, 5, 5, 5], {("A", "B"): 10, ("B", "A"): 10})
    r = FjspModel(inst).solve(10, 2)
    assert (r.status, r.objective) == ("OPTIMAL", 30) and violations(inst, r.schedule) == []
    assert sorted(p.setup for p in r.schedule.placements) == [0, 0, 0, 10]


def test_asymmetric_changeovers_match_brute_force():
    fams, durs = ["A", "B", "C", "A", "C"], [3, 4, 2, 5, 1]
    change = {("A", "B"): 2, ("B", "A"): 9, ("A", "C"): 7, ("C", "A"): 1, ("B", "C"): 3, ("C", "B"): 8}
    inst = one_machine(fams, durs, change)
    best = min(sum(durs) + sum(inst.setup(fams[a], fams[b]) for a, b in zip(p, p[1:]))
               for p in itertools.permutations(range(5)))
    r = FjspModel(inst).solve(10, 2)
    assert r.status == "OPTIMAL" and r.objective == best and violations(inst, r.schedule) == []


def test_availability_release_and_frozen():
    jobs = [Job("WO-1", [Operation([Alternative(0, 4), Alternative(1, 9)], "a")]),
            Job("WO-2", [Operation([Alternative(0, 3)], "b")], release=2),
            Job("WO-3", [Operation([Alternative(1, 2)], "c", fixed=(1, 5))])]
    inst = Instance("cal", ["M0", "M1"], jobs, unavailable={0: [(1, 6)]})
    r = FjspModel(inst).solve(10, 2)
    # M0 is down 1-6: WO-1 on M0 at 6-10 then WO-2 at 10-13, or WO-1 on M1 clashing with frozen WO-3 at 5-7
    assert r.status == "OPTIMAL" and violations(inst, r.schedule) == []
    by = r.schedule.by_op()
    assert by[(2, 0)].start == 5 and by[(2, 0)].machine == 1
    assert r.objective == 13


def test_weighted_tardiness_objective():
    # two jobs on one machine: the heavy job goes first whatever its length
    jobs = [Job("light", [Operation([Alternative(0, 2)])], due=2, weight=1),
            Job("heavy", [Operation([Alternative(0, 5)])], due=5, weight=10)]
    inst = Instance("tard", ["M0"], jobs)
    r = solve(inst, 5, 2, objective=Objective("tardiness"))
    assert r.objective == 5 and weighted_tardiness(inst, r.schedule) == 5
    assert r.schedule.by_op()[(1, 0)].start == 0


def test_hint_and_time_limit_on_bigger_instance(data_dir):
    inst = load_instance(data_dir / "Mk01.fjs")
    start = dispatch(inst, "ect")
    r = solve(inst, time_limit=1.0, workers=1, hint=start)
    assert r.schedule is not None and violations(inst, r.schedule) == []
    assert r.objective <= start.makespan() and r.seconds < 3.0
    assert r.progress and r.progress[0][1] >= r.objective
