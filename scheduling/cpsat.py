"""The flexible job-shop model on OR-Tools CP-SAT: optional intervals per eligible machine sharing one start,
changeovers through a circuit per machine, unavailable windows as fixed intervals, frozen operations fixed.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from ortools.sat.python import cp_model

from scheduling.model import Instance, Placement, Schedule

STATUS = {cp_model.OPTIMAL: "OPTIMAL", cp_model.FEASIBLE: "FEASIBLE", cp_model.INFEASIBLE: "INFEASIBLE",
          cp_model.UNKNOWN: "UNKNOWN", cp_model.MODEL_INVALID: "MODEL_INVALID"}
OBJECTIVES = ("makespan", "tardiness", "weighted")
# lexicographic: the first minimised, then the second with the first held at its value (scheduling.solver.solve_lex)
LEXICOGRAPHIC = ("makespan,tardiness", "tardiness,makespan")


@dataclass
class Objective:
    """What to minimise: makespan, weighted tardiness, `weighted` = a x makespan + b x tardiness, or `none` (only the
    stability terms); plus stability; `caps` holds named objectives (a kind above) at most a value (lexicographic)."""

    kind: str = "makespan"
    makespan_weight: int = 1
    tardiness_weight: int = 1
    previous: Schedule | None = None  # stability against this version...
    move_weight: int = 0              # ...per operation moved to another machine
    shift_weight: int = 0             # ...per time unit its start moved
    caps: dict[str, int] = field(default_factory=dict)


@dataclass
class SolveResult:
    """What a solve found: status, the schedule, objective, best bound, relative gap, and progress over time."""

    status: str
    schedule: Schedule | None
    objective: float | None
    bound: float | None
    seconds: float
    progress: list[tuple[float, float, float]] = field(default_factory=list)  # (seconds, objective, bound)

    @property
    def gap(self) -> float | None:
        """(objective - bound) / objective, 0 when proven optimal."""
        if self.objective is None or self.bound is None:
            return None
        return 0.0 if self.objective <= 0 else max(0.0, (self.objective - self.bound) / self.objective)


class _Progress(cp_model.CpSolverSolutionCallback):
    def __init__(self, t0: float, sink: list, on_progress, cancel: threading.Event | None):  # type: ignore[no-untyped-def]
        super().__init__()
        self.t0, self.sink, self.on_progress, self.cancel = t0, sink, on_progress, cancel

    def on_solution_callback(self) -> None:
        row = (time.monotonic() - self.t0, self.ObjectiveValue(), self.BestObjectiveBound())
        self.sink.append(row)
        if self.on_progress:
            self.on_progress(*row)
        if self.cancel is not None and self.cancel.is_set():
            self.StopSearch()


class FjspModel:
    """The CP-SAT model of one instance; `keep` pins (job, op) -> machine and keeps `order` pairs sequenced (LNS)."""

    def __init__(self, instance: Instance, objective: Objective | None = None, *,
                 keep: dict[tuple[int, int], int] | None = None,
                 order: list[tuple[tuple[int, int], tuple[int, int]]] | None = None,
                 horizon: int | None = None, near: dict[tuple[int, int], int] | None = None,
                 reach: int | None = None, adjacent: set | None = None) -> None:
        self.instance = instance
        # LNS: with `near` (a start per operation, e.g. the hint's) and `reach`, a free operation may directly
        # follow or precede only operations starting within `reach` of it; far arcs are never taken by a small
        # neighbourhood and made most of the model's size
        self.near, self.reach, self.adjacent = near, reach, adjacent or set()  # adjacent: arcs always kept
        self.objective = objective or Objective()
        self.model = m = cp_model.CpModel()
        keep = keep or {}
        h = horizon or instance.horizon()
        self.starts: dict[tuple[int, int], cp_model.IntVar] = {}
        self.ends: dict[tuple[int, int], cp_model.LinearExpr] = {}
        self.lits: dict[tuple[int, int], dict[int, cp_model.IntVar]] = {}
        # per machine, the circuit's arc literals: (a, b) a directly before b; (None, b) b first; (a, None) a last
        self.arcs: dict[int, dict[tuple[tuple[int, int] | None, tuple[int, int] | None], cp_model.IntVar]] = {}
        per_machine: dict[int, list[tuple[tuple[int, int], cp_model.IntervalVar, object, int]]] = {}
        for j, o, op in instance.operations():
            alts = op.alternatives
            if op.fixed is not None:
                alts = [a for a in alts if a.machine == op.fixed[0]]
            elif (j, o) in keep:
                alts = [a for a in alts if a.machine == keep[(j, o)]]
            lo = max(instance.jobs[j].release, 0) if op.fixed is None else 0  # nothing unfrozen starts before the release
            s = m.NewIntVar(op.fixed[1] if op.fixed else lo, op.fixed[1] if op.fixed else h, f"s{j}_{o}")
            lits = {a.machine: (m.NewConstant(1) if len(alts) == 1 else m.NewBoolVar(f"x{j}_{o}_{a.machine}"))
                    for a in alts}
            if len(alts) > 1:
                m.AddExactlyOne(lits.values())
            end = s + sum(a.duration * lits[a.machine] for a in alts) if len(alts) > 1 else s + alts[0].duration
            for a in alts:
                iv = m.NewOptionalFixedSizeIntervalVar(s, a.duration, lits[a.machine], f"i{j}_{o}_{a.machine}")
                per_machine.setdefault(a.machine, []).append(((j, o), iv, lits[a.machine], a.duration))
            self.starts[(j, o)], self.ends[(j, o)], self.lits[(j, o)] = s, end, lits
        for j, job in enumerate(instance.jobs):
            for o in range(1, len(job.operations)):
                m.Add(self.starts[(j, o)] >= self.ends[(j, o - 1)])
        for a, b in order or []:
            fa = instance.jobs[a[0]].operations[a[1]].family
            fb = instance.jobs[b[0]].operations[b[1]].family
            m.Add(self.starts[b] >= self.ends[a] + instance.setup(fa, fb))
        for mach, items in per_machine.items():
            down = [m.NewFixedSizeIntervalVar(s, e - s, f"down{mach}_{s}") for s, e in instance.unavailable.get(mach, [])]
            m.AddNoOverlap([iv for _, iv, _, _ in items] + down)
            if instance.has_setups() and len(items) > 1:
                self._circuit(mach, items, keep, set(order or []))
        self.makespan = m.NewIntVar(0, h, "makespan")
        lasts = [self.ends[(j, len(job.operations) - 1)] for j, job in enumerate(instance.jobs) if job.operations]
        m.AddMaxEquality(self.makespan, lasts)
        self.tardiness = []
        self.tardiness_vars: dict[int, cp_model.IntVar] = {}
        self.shifts: dict[tuple[int, int], tuple[cp_model.IntVar, int]] = {}  # |start - previous start|, previous
        for j, job in enumerate(instance.jobs):
            if job.due is not None and job.operations:
                t = m.NewIntVar(0, h, f"t{j}")
                self.tardiness_vars[j] = t
                m.Add(t >= self.ends[(j, len(job.operations) - 1)] - job.due)
                self.tardiness.append(job.weight * t)
        m.Minimize(self._objective_expr(h))

    def _circuit(self, mach: int, items, keep, consecutive) -> None:  # type: ignore[no-untyped-def]
        """Sequence-dependent changeovers: a Hamiltonian path through the operations present on the machine."""
        m, inst = self.model, self.instance
        arcs = []
        named = self.arcs.setdefault(mach, {})
        for i, (ki, _, li, _) in enumerate(items, 1):
            fi = inst.jobs[ki[0]].operations[ki[1]].family
            named[(None, ki)], named[(ki, None)] = m.NewBoolVar(""), m.NewBoolVar("")
            arcs.append((0, i, named[(None, ki)]))
            arcs.append((i, 0, named[(ki, None)]))
            arcs.append((i, i, ~li if not isinstance(li, int) else m.NewConstant(0)))
            for k, (kk, _, lk, _) in enumerate(items, 1):
                if k == i or kk[0] == ki[0] and kk[1] < ki[1]:
                    continue  # a job's later operation never precedes its earlier one
                if ki in keep and kk in keep and (ki, kk) not in consecutive:
                    continue  # pinned operations keep their order: only neighbours can follow each other directly
                if self.reach is not None and self.near is not None and (ki not in keep or kk not in keep) and \
                        abs(self.near.get(ki, 0) - self.near.get(kk, 0)) > self.reach and (ki, kk) not in self.adjacent:
                    continue
                lit = m.NewBoolVar("")
                fk = inst.jobs[kk[0]].operations[kk[1]].family
                m.AddImplication(lit, li)
                m.AddImplication(lit, lk)
                m.Add(self.starts[kk] >= self.ends[ki] + inst.setup(fi, fk)).OnlyEnforceIf(lit)
                arcs.append((i, k, lit))
                named[(ki, kk)] = lit
        named[(None, None)] = m.NewBoolVar("")
        arcs.append((0, 0, named[(None, None)]))
        m.AddCircuit(arcs)

    def _named(self, kind: str):  # type: ignore[no-untyped-def]
        obj = self.objective
        if kind == "makespan":
            return self.makespan
        if kind == "tardiness":
            return sum(self.tardiness)
        if kind == "weighted":
            return obj.makespan_weight * self.makespan + obj.tardiness_weight * sum(self.tardiness)
        if kind == "none":
            return 0
        raise ValueError(f"objective {kind!r}: expected one of {', '.join(OBJECTIVES)}")

    def _objective_expr(self, h: int):  # type: ignore[no-untyped-def]
        obj, m = self.objective, self.model
        expr = self._named(obj.kind)
        for kind, cap in obj.caps.items():
            m.Add(self._named(kind) <= int(cap))
        if obj.previous is not None and (obj.move_weight or obj.shift_weight):
            terms = []
            for p in obj.previous.placements:
                key = (p.job, p.op)
                if key not in self.starts or self.instance.jobs[p.job].operations[p.op].fixed:
                    continue
                lit = self.lits[key].get(p.machine)
                if obj.move_weight:
                    terms.append(obj.move_weight * (1 - lit) if lit is not None else obj.move_weight)
                if obj.shift_weight:
                    d = m.NewIntVar(0, h, "")
                    m.AddAbsEquality(d, self.starts[key] - p.start)
                    self.shifts[key] = (d, p.start)
                    terms.append(obj.shift_weight * d)
            expr = expr + sum(terms)
        return expr

    def hint(self, schedule: Schedule) -> None:
        """Start the search from a schedule (e.g. the previous version or a heuristic's)."""
        self.model.ClearHints()
        for p in schedule.placements:
            key = (p.job, p.op)
            if key not in self.starts:
                continue
            self.model.AddHint(self.starts[key], p.start)
            if len(self.lits[key]) > 1:
                for mach, lit in self.lits[key].items():
                    self.model.AddHint(lit, int(mach == p.machine))
        self.model.AddHint(self.makespan, schedule.makespan())
        # a complete hint (sequence arcs and tardiness too) is taken as a first solution at once; a partial one
        # has to be completed by the search, which on 100 jobs with changeovers can take longer than an LNS step
        used: set = set()
        for mach, seq in enumerate(schedule.machine_sequences(self.instance.n_machines)):
            named = self.arcs.get(mach)
            if not named:
                continue
            keys = [(p.job, p.op) for p in seq if (p.job, p.op) in self.starts]
            chain = list(zip([None] + keys, keys + [None])) if keys else [(None, None)]
            on = {pair for pair in chain if pair in named}
            for pair, lit in named.items():
                if id(lit) not in used:
                    self.model.AddHint(lit, int(pair in on))
                    used.add(id(lit))
        ends = {}
        for p in schedule.placements:
            ends[p.job] = max(ends.get(p.job, 0), p.end)
        for j, t in self.tardiness_vars.items():
            self.model.AddHint(t, max(0, ends.get(j, 0) - (self.instance.jobs[j].due or 0)))
        starts = {(p.job, p.op): p.start for p in schedule.placements}
        for key, (d, before) in self.shifts.items():
            if key in starts:
                self.model.AddHint(d, abs(starts[key] - before))

    def extract(self, solver: cp_model.CpSolver) -> Schedule:
        """The schedule in the solver's current solution, with each changeover filled in."""
        placements = []
        for key, s in self.starts.items():
            mach = next(k for k, lit in self.lits[key].items() if solver.BooleanValue(lit))
            start = solver.Value(s)
            placements.append(Placement(key[0], key[1], mach, start, solver.Value(self.ends[key])))
        return with_setups(self.instance, Schedule(placements))

    def solve(self, time_limit: float, workers: int = 2, *, seed: int = 0, on_progress=None,  # type: ignore[no-untyped-def]
              cancel: threading.Event | None = None, log: bool = False, presolve: bool = True) -> SolveResult:
        """Solve within time_limit seconds on `workers` threads; cancel stops at the next solution; `presolve`
        off for LNS sub-problems (on a 400-operation model with changeovers it took most of a 1 s step)."""
        solver = cp_model.CpSolver()
        solver.parameters.max_time_in_seconds = max(0.01, time_limit)
        solver.parameters.num_workers = max(1, workers)
        solver.parameters.random_seed = seed
        solver.parameters.log_search_progress = log
        solver.parameters.cp_model_presolve = presolve
        t0 = time.monotonic()
        progress: list[tuple[float, float, float]] = []
        cb = _Progress(t0, progress, on_progress, cancel)
        stopper = None
        if cancel is not None:
            stopper = threading.Thread(target=_stop_when, args=(cancel, solver, t0, time_limit), daemon=True)
            stopper.start()
        code = solver.Solve(self.model, cb)
        seconds = time.monotonic() - t0
        status = STATUS.get(code, "UNKNOWN")
        if cancel is not None and cancel.is_set() and status != "OPTIMAL":
            status = "CANCELLED" if code not in (cp_model.FEASIBLE,) else "FEASIBLE"
        if code in (cp_model.OPTIMAL, cp_model.FEASIBLE):
            return SolveResult(status, self.extract(solver), solver.ObjectiveValue(), solver.BestObjectiveBound(),
                               seconds, progress)
        return SolveResult(status, None, None, None, seconds, progress)


def _stop_when(cancel: threading.Event, solver: cp_model.CpSolver, t0: float, limit: float) -> None:
    """Stop the search when cancel is set (checked until the time limit passes)."""
    if cancel.wait(timeout=limit + 1.0):
        solver.StopSearch()


def with_setups(instance: Instance, schedule: Schedule) -> Schedule:
    """The same placements with each one's changeover from its machine predecessor filled in."""
    out = []
    for seq in schedule.machine_sequences(instance.n_machines):
        prev = None
        for p in seq:
            fam = instance.jobs[p.job].operations[p.op].family
            setup = instance.setup(instance.jobs[prev.job].operations[prev.op].family, fam) if prev else 0
            out.append(Placement(p.job, p.op, p.machine, p.start, p.end, setup))
            prev = p
    return Schedule(sorted(out, key=lambda p: (p.job, p.op)))
