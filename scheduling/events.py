"""Rescheduling: apply a shop-floor event to the current schedule, freeze what is started or done, then
re-optimise the rest with a stability term and compare with right-shift repair on the same event.
"""

from __future__ import annotations

import copy
import threading
import time
from dataclasses import dataclass, field, replace

from scheduling.anneal import anneal
from scheduling.config import STABILITY_TOLERANCE
from scheduling.cpsat import Objective, SolveResult
from scheduling.dispatch import right_shift
from scheduling.lns import best_start, focus_of, focused_lns
from scheduling.model import Alternative, Instance, Job, Schedule, weighted_tardiness
from scheduling.solver import FjspModel_score, score, solve
from scheduling.validate import violations

EVENTS = ("machine_down", "machine_back", "rush_order", "op_finished", "cancel")


class EventError(ValueError):
    """An event that does not fit the schedule; the message names the machine, order or operation."""


@dataclass
class Event:
    """What happened, at time `at`: machine_down (until, or open-ended), machine_back, rush_order (job),
    op_finished (job, op, actual end: early or late), cancel (job)."""

    kind: str
    at: int
    machine: int | None = None
    until: int | None = None
    job: int | None = None
    op: int | None = None
    end: int | None = None
    new_job: Job | None = None


@dataclass
class Diff:
    """How a new version differs from the previous: moved to another machine, start shifts, added, removed."""

    moved: list[tuple[int, int]] = field(default_factory=list)
    shifted: int = 0
    total_shift: int = 0
    added: list[tuple[int, int]] = field(default_factory=list)
    removed: list[tuple[int, int]] = field(default_factory=list)


@dataclass
class Reschedule:
    """The event's outcome: the instance after it, right-shift repair and the re-optimised schedule, both diffs."""

    instance: Instance
    repaired: Schedule
    repaired_objective: float
    optimised: SolveResult
    optimised_objective: float
    repair_diff: Diff
    optimised_diff: Diff
    first_valid_s: float


def diff(previous: Schedule, new: Schedule) -> Diff:
    """Compare two versions operation by operation."""
    a, b = previous.by_op(), new.by_op()
    d = Diff(added=sorted(set(b) - set(a)), removed=sorted(set(a) - set(b)))
    for key in sorted(set(a) & set(b)):
        if a[key].machine != b[key].machine:
            d.moved.append(key)
        if a[key].start != b[key].start:
            d.shifted += 1
            d.total_shift += abs(a[key].start - b[key].start)
    return d


def apply_event(instance: Instance, previous: Schedule, event: Event) -> Instance:
    """The instance after the event: started or done operations fixed where they ran, the rest released at `at`."""
    if event.kind not in EVENTS:
        raise EventError(f"event kind {event.kind!r}: expected one of {', '.join(EVENTS)}")
    inst = copy.deepcopy(instance)
    at = event.at
    if event.machine is not None and not 0 <= event.machine < inst.n_machines:
        raise EventError(f"machine {event.machine}: no such machine")
    if event.job is not None and not 0 <= event.job < len(inst.jobs):
        raise EventError(f"order {event.job}: no such order")
    placed = previous.by_op()
    interrupted = set()
    if event.kind == "machine_down":
        if event.machine is None:
            raise EventError("machine_down needs a machine")
        until = event.until if event.until is not None else at + instance.horizon()
        if until <= at:
            raise EventError(f"machine_down: until {until} is not after {at}")
        inst.unavailable[event.machine] = _merge(inst.unavailable.get(event.machine, []) + [(at, until)])
        interrupted = {k for k, p in placed.items() if p.machine == event.machine and p.start < at < p.end}
    elif event.kind == "machine_back":
        if event.machine is None:
            raise EventError("machine_back needs a machine")
        inst.unavailable[event.machine] = [(s, min(e, at)) for s, e in inst.unavailable.get(event.machine, []) if s < at]
    for key, p in placed.items():
        j, o = key
        if j >= len(inst.jobs) or o >= len(inst.jobs[j].operations):
            continue
        op = inst.jobs[j].operations[o]
        if p.start < at and key not in interrupted:
            op.fixed = (p.machine, p.start)
    if event.kind == "op_finished":
        if event.op is None or event.end is None or event.job is None:
            raise EventError("op_finished needs job, op and end")
        key = (event.job, event.op)
        if key not in placed or event.op >= len(inst.jobs[event.job].operations):
            raise EventError(f"order {inst.jobs[event.job].name} operation {event.op + 1}: not in the schedule")
        p = placed[key]
        if event.end <= p.start:
            raise EventError(f"order {inst.jobs[event.job].name} operation {event.op + 1}: end {event.end} "
                             f"not after its start {p.start}")
        op = inst.jobs[event.job].operations[event.op]
        op.fixed = (p.machine, p.start)
        op.alternatives = [Alternative(p.machine, event.end - p.start)]
    for job in inst.jobs:
        if job.release < at:
            job.release = at  # nothing not yet started may start in the past
    if event.kind == "rush_order":
        if event.new_job is None:
            raise EventError("rush_order needs the order")
        new = copy.deepcopy(event.new_job)
        new.release = max(new.release, at)
        inst.jobs.append(new)
    elif event.kind == "cancel":
        if event.job is None:
            raise EventError("cancel needs the order")
        job = inst.jobs[event.job]
        job.operations = [op for op in job.operations if op.fixed is not None]
    return inst


def _merge(windows: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for s, e in sorted(windows):
        if out and s <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], e))
        else:
            out.append((s, e))
    return out


def reschedule(instance: Instance, previous: Schedule, event: Event, *, time_limit: float = 10.0, workers: int = 2,
               kind: str = "weighted", move_weight: int | None = None, shift_weight: int = 1,
               tolerance: float = STABILITY_TOLERANCE, split: float = 0.85, seed: int = 0, anneal_share: float = 0.9,
               on_progress=None, cancel: threading.Event | None = None) -> Reschedule:  # type: ignore[no-untyped-def]
    """Apply the event, repair by right shift at once, then re-optimise lexicographically from the repair: first the
    objective (ties to fewer moves) for `split` of the time, by simulated annealing (`anneal_share` of the stage) and
    then LNS focused on the disrupted part; then the fewest moves and start shifts against the previous version,
    annealing and LNS again, with the objective held within `tolerance` (relative) of what the first stage reached
    and never above the repair."""
    t0 = time.monotonic()
    inst = apply_event(instance, previous, event)
    down = {event.machine} if event.kind == "machine_down" and event.until is None else set()
    kept = _still_there(inst, previous)
    repaired = right_shift(inst, kept, reassign=down)
    first_valid = time.monotonic() - t0
    durations = [a.duration for _, _, op in inst.operations() for a in op.alternatives]
    base = Objective(kind, 10, 10)
    if move_weight is None:
        move_weight = 10 * max(1, sum(durations) // max(1, len(durations)))
    repaired_value = score(inst, repaired, base)
    repair_valid = not violations(inst, repaired)
    touched = {event.machine} if event.machine is not None else set()
    window_end = event.until if event.kind == "machine_down" and event.until is not None else None
    if repair_valid:
        # most of the previous plan stays good, but right shift keeps each machine's order, so one late operation
        # holds up its machine: list-scheduling repairs that let ready work go first (on the previous machine, or
        # another when that finishes it sooner by more than a penalty) are candidates too; the best start wins,
        # and LNS goes on from it with its sub-problems around the event. A move weight of 1 (a tenth of a time
        # unit) makes the first stage prefer, of equal schedules, the stabler
        first = Objective(kind, 10, 10, previous=kept, move_weight=1)
        start = best_start(inst, kept, repaired, first, 2 * move_weight // 10, reassign=down)
        stage1_end = t0 + time_limit * split
        # simulated annealing on an operation list for most of the first stage: every decode is a valid schedule
        # and it tries a few hundred thousand per second, where a CP-SAT sub-problem takes tenths of a second
        annealed = anneal(inst, start, first, max(0.05, anneal_share * (stage1_end - time.monotonic())), seed=seed,
                          workers=workers, cancel=cancel)
        if FjspModel_score(inst, annealed, first) < FjspModel_score(inst, start, first):
            start = annealed
        if on_progress:
            on_progress(time.monotonic() - t0, FjspModel_score(inst, start, first), 0.0)
        focus = focus_of(inst, kept, start, event.at, touched, window_end)
        stage1 = focused_lns(inst, start, first, max(0.1, stage1_end - time.monotonic()), focus,
                             workers=workers, seed=seed, patience=max(0.5, 0.25 * time_limit),
                             on_progress=on_progress, cancel=cancel)
    else:  # no valid start to pin sub-problems to: the general solver, hinted with what there is
        stage1 = solve(inst, max(0.1, time_limit * split - (time.monotonic() - t0)), workers, objective=base,
                       hint=repaired, seed=seed, on_progress=on_progress, cancel=cancel, first_phase=0.3,
                       final_phase=0.0)
    best = stage1.schedule or repaired
    value = score(inst, best, base)
    if value > repaired_value and repair_valid:  # a short, loaded first stage can end above its own start
        best, value = repaired, repaired_value
    # the tolerance buys stability, never a schedule worse than the repair the user already has
    cap = min(int(value + tolerance * abs(value)), int(repaired_value))
    stable = Objective("none", 10, 10, previous=kept, move_weight=move_weight, shift_weight=shift_weight,
                       caps={kind: cap})
    result = replace(stage1, schedule=best, objective=value)
    remaining = time_limit - (time.monotonic() - t0)
    if remaining > 0.2 and not (cancel and cancel.is_set()) and not violations(inst, best):
        # the second stage starts from the first's best; its neighbourhoods also free what was moved, to go back
        if anneal_share > 0:
            calmer = anneal(inst, best, stable, anneal_share * remaining, seed=seed + 1, workers=workers,
                            cancel=cancel)
            if FjspModel_score(inst, calmer, stable) < FjspModel_score(inst, best, stable):
                best = calmer
        focus = focus_of(inst, kept, best, event.at, touched, window_end)
        stage2 = focused_lns(inst, best, stable, max(0.1, time_limit - (time.monotonic() - t0)), focus,
                             workers=workers, seed=seed + 1, cancel=cancel)
        if stage2.schedule is not None:
            result = replace(stage2, objective=score(inst, stage2.schedule, base), bound=stage1.bound,
                             progress=stage1.progress + stage2.progress)
    optimised = result.schedule or repaired
    return Reschedule(inst, repaired, repaired_value / 10, result, score(inst, optimised, base) / 10,
                      diff(previous, repaired), diff(previous, optimised), first_valid)


def _still_there(inst: Instance, previous: Schedule) -> Schedule:
    """The previous placements of operations that still exist."""
    return Schedule([p for p in previous.placements
                     if p.job < len(inst.jobs) and p.op < len(inst.jobs[p.job].operations)])


__all__ = ["Event", "EventError", "Diff", "Reschedule", "apply_event", "reschedule", "diff", "weighted_tardiness"]
