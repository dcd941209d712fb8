"""The tabu search on plain instances, lexicographic objectives and caps, and the stable re-optimisation's moves."""

from scheduling.cpsat import FjspModel, Objective
from scheduling.dispatch import best_dispatch
from scheduling.events import Event, _still_there, diff, reschedule
from scheduling.generate import generate
from scheduling.lns import focus_of, focused_lns
from scheduling.parsers import load_instance
from scheduling.solver import score, solve, solve_lex
from scheduling.tabu import applicable, tabu_search
from scheduling.validate import violations


def test_tabu_search_reaches_the_known_optima(data_dir):
    for name, optimum in [("ft06", 55), ("Mk01.fjs", 40)]:
        inst = load_instance(data_dir / name)
        start = best_dispatch(inst)
        found = tabu_search(inst, start, 3.0, seed=1)
        assert violations(inst, found) == []
        assert found.makespan() <= start.makespan()
        assert found.makespan() <= optimum + 1, (name, found.makespan())  # 1-2 s of search lands at or next to it


def test_tabu_search_only_takes_the_plain_problem(data_dir):
    assert applicable(load_instance(data_dir / "Mk01.fjs"))
    assert not applicable(generate(6, 3, seed=1))  # changeovers: left to CP-SAT


def test_cap_holds_an_objective_while_another_is_minimised():
    inst = generate(8, 3, seed=2, ops=(2, 3))
    first = FjspModel(inst, Objective("makespan")).solve(5, 2)
    cap = int(first.objective)
    capped = FjspModel(inst, Objective("tardiness", caps={"makespan": cap}))
    capped.hint(first.schedule)  # feasible under the cap by construction: a loaded machine still finds a solution
    second = capped.solve(5, 2)
    assert second.schedule is not None, second.status
    assert violations(inst, second.schedule) == []
    assert second.schedule.makespan() <= cap
    assert second.objective == score(inst, second.schedule, Objective("tardiness"))


def test_lexicographic_makespan_then_tardiness():
    inst = generate(8, 3, seed=2, ops=(2, 3))
    result, first = solve_lex(inst, ("makespan", "tardiness"), 6.0, 2)
    assert violations(inst, result.schedule) == []
    assert result.schedule.makespan() <= first
    assert result.objective == score(inst, result.schedule, Objective("tardiness"))
    alone = solve(inst, 3.0, 2, objective=Objective("makespan")).schedule
    assert score(inst, result.schedule, Objective("tardiness")) <= score(inst, alone, Objective("tardiness")) or \
        result.schedule.makespan() < alone.makespan()


def test_stable_reschedule_and_its_stability_stage_never_move_more_than_they_start_from():
    inst = generate(20, 4, seed=5, ops=(2, 4))
    base = Objective("weighted", 10, 10)
    current = solve(inst, 3.0, 2, objective=base).schedule
    span = current.makespan()
    event = Event("machine_down", span // 3, machine=current.placements[0].machine, until=span // 3 + span // 8)
    rs = reschedule(inst, current, event, time_limit=4.0, workers=2, tolerance=0.01)
    assert violations(rs.instance, rs.optimised.schedule) == []
    assert rs.optimised_objective <= rs.repaired_objective
    # a free re-solve from the same repair; whether it happens to move fewer operations than the reschedule
    # depends on the run (it did in about one run in four under load), so bench.scheduling compares the two
    # on the instance. What holds in every run: the stability stage, started from the free re-solve's
    # schedule with the objective capped at its value, ends with no more moved operations and no higher
    # stability cost than it started with, and within the cap
    free = solve(rs.instance, 4.0, 2, objective=base, hint=rs.repaired).schedule
    free_value = score(rs.instance, free, base)
    kept = _still_there(rs.instance, current)
    move_weight = 10**6  # above any total start shift here (< 80 operations x horizon): fewer moves come first
    stable = Objective("none", 10, 10, previous=kept, move_weight=move_weight, shift_weight=1,
                       caps={"weighted": free_value})
    focus = focus_of(rs.instance, kept, free, event.at, {event.machine}, event.until)
    steadied = focused_lns(rs.instance, free, stable, 3.0, focus, workers=2, seed=1).schedule
    assert violations(rs.instance, steadied) == []
    assert score(rs.instance, steadied, base) <= free_value
    assert len(diff(kept, steadied).moved) <= len(diff(kept, free).moved)
    assert score(rs.instance, steadied, stable) <= score(rs.instance, free, stable)


def test_scheduling_section_is_validated_with_its_line():
    import pytest

    from shopfloor.config import ConfigError, parse

    cfg = parse("[scheduling]\ntime_limit_s = 30\nworkers = 2\nobjective = \"makespan,tardiness\"\n")
    assert cfg.scheduling.time_limit_s == 30 and cfg.scheduling.lexicographic() == ("makespan", "tardiness")
    assert parse("").scheduling.trigger_debounce_s == 60.0
    with pytest.raises(ConfigError, match=r"shopfloor.toml:3: scheduling: workers: must be 1..64, got 0"):
        parse("[scheduling]\ntime_limit_s = 30\nworkers = 0\n")
    with pytest.raises(ConfigError, match=r"shopfloor.toml:2: scheduling.objective"):
        parse("[scheduling]\nobjective = \"fastest\"\n")
    with pytest.raises(ConfigError, match=r"shopfloor.toml:2: scheduling.stability_weight"):
        parse("[scheduling]\nstability_weight = 3\n")
