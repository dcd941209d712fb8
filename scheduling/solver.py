"""Shopfloor's solver: a dispatching-rule start, CP-SAT on the full model with that hint (bound and often the
optimum), then large-neighbourhood search with CP-SAT on sub-problems (most of the schedule pinned: machine and
machine order kept, a few jobs, a time window or a machine's operations set free), then the full model again
from the best schedule to tighten the bound. Every phase starts from the best schedule so far.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from dataclasses import replace

from scheduling.anneal import anneal
from scheduling.cpsat import FjspModel, Objective, SolveResult
from scheduling.dispatch import best_dispatch
from scheduling.model import Instance, Schedule, weighted_tardiness
from scheduling.tabu import applicable, tabu_search

log = logging.getLogger(__name__)


def score(instance: Instance, schedule: Schedule, objective: Objective, kind: str | None = None) -> float:
    """The objective value of a schedule (stability terms excluded); `kind` overrides the objective's kind."""
    kind = kind or objective.kind
    if kind == "makespan":
        return schedule.makespan()
    if kind == "tardiness":
        return weighted_tardiness(instance, schedule)
    if kind == "none":
        return 0
    return objective.makespan_weight * schedule.makespan() + objective.tardiness_weight * weighted_tardiness(instance, schedule)


def _neighbourhood(instance: Instance, best: Schedule, rng: random.Random, size: float) -> set[tuple[int, int]]:
    """Which operations to set free: random jobs, a time window, or the operations of a few machines."""
    ops = best.placements
    kind = rng.random()
    if kind < 0.25:
        k = max(2, int(len(instance.jobs) * size))
        jobs = set(rng.sample(range(len(instance.jobs)), min(k, len(instance.jobs))))
        return {(p.job, p.op) for p in ops if p.job in jobs}
    if kind < 0.75:
        span = best.makespan()
        width = max(1, int(span * size * 1.5))
        t = rng.randrange(0, max(1, span - width + 1))
        return {(p.job, p.op) for p in ops if p.end > t and p.start < t + width}
    # the critical tail: operations near the makespan's machines plus some random machines
    k = max(1, int(instance.n_machines * size))
    machines = set(rng.sample(range(instance.n_machines), min(k, instance.n_machines)))
    last = max(ops, key=lambda p: p.end)
    machines.add(last.machine)
    return {(p.job, p.op) for p in ops if p.machine in machines}


def _pinned(instance: Instance, best: Schedule, free: set[tuple[int, int]]):  # type: ignore[no-untyped-def]
    keep = {(p.job, p.op): p.machine for p in best.placements if (p.job, p.op) not in free}
    order = []
    for seq in best.machine_sequences(instance.n_machines):
        kept = [(p.job, p.op) for p in seq if (p.job, p.op) not in free]
        order.extend(zip(kept, kept[1:]))
    return keep, order


def solve(instance: Instance, time_limit: float = 10.0, workers: int = 2, *, objective: Objective | None = None,
          hint: Schedule | None = None, seed: int = 0, on_progress=None,  # type: ignore[no-untyped-def]
          cancel: threading.Event | None = None, first_phase: float = 0.2, final_phase: float = 0.15,
          tabu_phase: float = 0.25, anneal_phase: float = 0.4) -> SolveResult:
    """The best schedule found within time_limit seconds, with the full model's best bound and the gap."""
    objective = objective or Objective()
    t0 = time.monotonic()
    deadline = t0 + time_limit
    progress: list[tuple[float, float, float]] = []
    bound = 0.0

    def report(obj: float, bnd: float) -> None:
        row = (time.monotonic() - t0, obj, bnd)
        progress.append(row)
        if on_progress:
            on_progress(*row)

    def full_score(s: Schedule) -> float:
        return FjspModel_score(instance, s, objective)

    start = best_dispatch(instance, key=full_score)
    best, best_obj = start, full_score(start)
    if hint is not None and _complete(instance, hint):
        h_obj = full_score(hint)
        if h_obj < best_obj:
            best, best_obj = hint, h_obj
    report(best_obj, bound)
    plain = objective.kind == "makespan" and objective.previous is None and not objective.caps and applicable(instance)
    if plain and tabu_phase > 0:
        # a tabu search on assignment and sequence gets close fast; CP-SAT then starts from its schedule
        found = tabu_search(instance, best, time_limit * tabu_phase, seed=seed, patience=max(1.0, 0.03 * time_limit))
        if found.makespan() < best_obj:
            best, best_obj = found, found.makespan()
            report(best_obj, bound)
    elif not plain and anneal_phase > 0 and _complete(instance, best):
        # with changeovers, calendars, frozen steps or tardiness the tabu search does not apply; simulated
        # annealing on an operation list does (on the bench's 100 x 10 breakdown, from the same start of 8,539,
        # CP-SAT's focused LNS reached 7,244 in 10 s, annealing 1,613 in 8 s)
        found = anneal(instance, best, objective, time_limit * anneal_phase, seed=seed, workers=workers,
                       cancel=cancel)
        if full_score(found) < best_obj:
            best, best_obj = found, full_score(found)
            report(best_obj, bound)

    full = FjspModel(instance, objective)
    full.hint(best)
    r = full.solve(min(time_limit * first_phase, max(0.0, deadline - time.monotonic())), workers, seed=seed,
                   cancel=cancel, on_progress=lambda t, o, b: report(o, b))
    if r.schedule is not None and r.objective is not None and r.objective <= best_obj:
        best, best_obj = r.schedule, r.objective
    if r.bound is not None:
        bound = max(bound, r.bound)
    status = r.status
    if status == "OPTIMAL" or (cancel and cancel.is_set()):
        return SolveResult(status if status != "UNKNOWN" else "FEASIBLE", best, best_obj, bound if status != "OPTIMAL" else best_obj,
                           time.monotonic() - t0, progress)

    rng = random.Random(seed)
    size, iters, improved, stale = 0.2, 0, 0, 0
    lns_end = deadline - time_limit * final_phase
    while time.monotonic() < lns_end - 0.2 and best_obj > bound and not (cancel and cancel.is_set()):
        iters += 1
        if plain and stale >= 6:
            # the LNS is stuck: the tabu search moves single operations the sub-problems keep pinned
            stale = 0
            found = tabu_search(instance, best, min(2.0, lns_end - time.monotonic()), seed=rng.randrange(1 << 30))
            if found.makespan() < best_obj:
                best, best_obj = found, found.makespan()
                report(best_obj, bound)
            continue
        free = _neighbourhood(instance, best, rng, size)
        keep, order = _pinned(instance, best, free)
        sub = FjspModel(instance, objective, keep=keep, order=order, horizon=int(best.makespan() * 1.5) + 1
                        if objective.kind == "makespan" and not instance.unavailable else None)
        if objective.kind == "makespan" and objective.previous is None:
            # ties on makespan are broken by the sum of job completions: compact schedules leave room to improve
            k = len(instance.jobs) * (best.makespan() + 1) + 1
            sub.model.Minimize(k * sub.makespan + sum(sub.ends[(j, len(job.operations) - 1)]
                                                      for j, job in enumerate(instance.jobs) if job.operations))
            sub.model.Add(sub.makespan <= int(best_obj))
        sub.hint(best)
        limit = min(0.3 + size * 2, lns_end - time.monotonic())
        if limit <= 0.05:
            break
        rr = sub.solve(limit, workers, seed=rng.randrange(1 << 30), cancel=cancel)
        if rr.schedule is not None:
            rr.objective = full_score(rr.schedule)
        if rr.schedule is not None and rr.objective is not None and rr.objective <= best_obj:
            if rr.objective < best_obj:
                improved += 1
                stale = -1
                report(rr.objective, bound)
            best, best_obj = rr.schedule, rr.objective
        stale += 1
        # adapt: a sub-problem solved to optimality quickly can be larger; one that times out, smaller
        size = min(0.6, size * 1.1) if rr.status == "OPTIMAL" else max(0.05, size * 0.9)
    log.info("lns", extra={"action": "lns", "iterations": iters, "improved": improved})

    remaining = deadline - time.monotonic()
    if remaining > 0.2 and best_obj > bound and not (cancel and cancel.is_set()):
        full = FjspModel(instance, objective)
        full.hint(best)
        r = full.solve(remaining, workers, seed=seed + 1, cancel=cancel, on_progress=lambda t, o, b: report(o, b))
        if r.schedule is not None and r.objective is not None and r.objective <= best_obj:
            best, best_obj = r.schedule, r.objective
        if r.bound is not None:
            bound = max(bound, r.bound)
    status = "OPTIMAL" if best_obj <= bound else ("CANCELLED" if cancel and cancel.is_set() else "FEASIBLE")
    return SolveResult(status, best, best_obj, bound, time.monotonic() - t0, progress)


def FjspModel_score(instance: Instance, schedule: Schedule, objective: Objective) -> float:  # noqa: N802
    """Objective including stability terms, computed from a schedule directly (infinite past a cap)."""
    if any(score(instance, schedule, objective, kind) > cap for kind, cap in objective.caps.items()):
        return float("inf")
    value = score(instance, schedule, objective)
    if objective.previous is not None:
        prev = objective.previous.by_op()
        for p in schedule.placements:
            q = prev.get((p.job, p.op))
            if q is None or instance.jobs[p.job].operations[p.op].fixed:
                continue
            value += objective.move_weight * (p.machine != q.machine) + objective.shift_weight * abs(p.start - q.start)
    return value


def _complete(instance: Instance, schedule: Schedule) -> bool:
    return len(schedule.by_op()) == sum(len(j.operations) for j in instance.jobs)


def solve_lex(instance: Instance, order: tuple[str, str], time_limit: float = 10.0, workers: int = 2, *,
              objective: Objective | None = None, tolerance: float = 0.0, split: float = 0.5,
              **kw) -> tuple[SolveResult, float]:  # type: ignore[no-untyped-def]
    """Lexicographic: minimise order[0] for `split` of the time, then order[1] with order[0] held within
    `tolerance` (relative) of what the first stage reached. Returns the second stage's result and the first value."""
    base = objective or Objective()
    t0 = time.monotonic()
    first = solve(instance, time_limit * split, workers, objective=replace(base, kind=order[0]), **kw)
    if first.schedule is None:
        return first, float("nan")
    value = score(instance, first.schedule, base, order[0])
    cap = int(value + tolerance * abs(value))
    kw["hint"] = first.schedule
    second = solve(instance, max(0.1, time_limit - (time.monotonic() - t0)), workers,
                   objective=replace(base, kind=order[1], caps={**base.caps, order[0]: cap}), **kw)
    if second.schedule is None:
        return first, value
    second.progress = first.progress + [(t + time_limit * split, o, b) for t, o, b in second.progress]
    return second, value
