"""The plain CP-SAT model the benchmark compares against: the textbook flexible job shop as in OR-Tools'
own example (one interval per operation, an optional interval per alternative with its own start, linked by
presence, AddNoOverlap per machine), makespan, no hints, no heuristics.
"""

from __future__ import annotations

import time

from ortools.sat.python import cp_model

from scheduling.cpsat import STATUS, SolveResult, with_setups
from scheduling.model import Instance, Placement, Schedule


def solve_reference(instance: Instance, time_limit: float, workers: int = 2, seed: int = 0) -> SolveResult:
    """Minimise makespan with the plain model for time_limit seconds."""
    m = cp_model.CpModel()
    h = instance.horizon()
    per_machine: dict[int, list] = {}
    starts, ends, lits = {}, {}, {}
    for j, o, op in instance.operations():
        s, e = m.NewIntVar(0, h, ""), m.NewIntVar(0, h, "")
        lo, hi = min(a.duration for a in op.alternatives), max(a.duration for a in op.alternatives)
        d = m.NewIntVar(lo, hi, "")
        m.NewIntervalVar(s, d, e, "")
        ls = {}
        for a in op.alternatives:
            lit = m.NewBoolVar("") if len(op.alternatives) > 1 else m.NewConstant(1)
            sa, ea = m.NewIntVar(0, h, ""), m.NewIntVar(0, h, "")
            iv = m.NewOptionalIntervalVar(sa, a.duration, ea, lit, "")
            m.Add(s == sa).OnlyEnforceIf(lit)
            m.Add(e == ea).OnlyEnforceIf(lit)
            m.Add(d == a.duration).OnlyEnforceIf(lit)
            per_machine.setdefault(a.machine, []).append(iv)
            ls[a.machine] = lit
        if len(op.alternatives) > 1:
            m.AddExactlyOne(ls.values())
        starts[(j, o)], ends[(j, o)], lits[(j, o)] = s, e, ls
    for j, job in enumerate(instance.jobs):
        for o in range(1, len(job.operations)):
            m.Add(starts[(j, o)] >= ends[(j, o - 1)])
    for ivs in per_machine.values():
        m.AddNoOverlap(ivs)
    mk = m.NewIntVar(0, h, "")
    m.AddMaxEquality(mk, [ends[(j, len(job.operations) - 1)] for j, job in enumerate(instance.jobs)])
    m.Minimize(mk)
    solver = cp_model.CpSolver()
    solver.parameters.max_time_in_seconds = time_limit
    solver.parameters.num_workers = workers
    solver.parameters.random_seed = seed
    t0 = time.monotonic()
    code = solver.Solve(m)
    seconds = time.monotonic() - t0
    if code not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        return SolveResult(STATUS.get(code, "UNKNOWN"), None, None, None, seconds)
    placements = [Placement(k[0], k[1], next(mm for mm, lit in lits[k].items() if solver.BooleanValue(lit)),
                            solver.Value(starts[k]), solver.Value(ends[k])) for k in starts]
    return SolveResult(STATUS[code], with_setups(instance, Schedule(placements)), solver.ObjectiveValue(),
                       solver.BestObjectiveBound(), seconds)
