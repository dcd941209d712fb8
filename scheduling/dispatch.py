"""Fast schedules without a solver: dispatching rules (a first valid schedule in milliseconds) and the
right-shift decode that keeps each machine's assignment and sequence and only pushes operations later.
"""

from __future__ import annotations

from scheduling.cpsat import with_setups
from scheduling.model import Instance, Placement, Schedule

RULES = ("ect", "mwkr", "spt", "edd")


def earliest_fit(windows: list[tuple[int, int]], start: int, duration: int) -> int:
    """The first start at or after `start` whose [start, start + duration) misses every unavailable window."""
    for s, e in windows:
        if start < e and s < start + duration:
            start = e
    return start


def dispatch(instance: Instance, rule: str = "ect") -> Schedule:
    """List scheduling: repeatedly place the ready operation (and machine) the rule prefers, as early as it fits.

    ect = earliest completion; mwkr = most work remaining; spt = shortest time; edd = earliest due date.
    Fixed operations keep their machine and start.
    """
    n = len(instance.jobs)
    nxt = [0] * n
    job_ready = [j.release for j in instance.jobs]
    mach_ready = [0] * instance.n_machines
    mach_family: list[str | None] = [None] * instance.n_machines
    remaining = [sum(min(a.duration for a in op.alternatives) for op in j.operations) for j in instance.jobs]
    placements: list[Placement] = []
    # fixed operations first: they occupy their machines whatever the rule says
    for j, o, op in instance.operations():
        if op.fixed is not None:
            mach, start = op.fixed
            dur = next(a.duration for a in op.alternatives if a.machine == mach)
            placements.append(Placement(j, o, mach, start, start + dur))
            if start + dur >= mach_ready[mach]:
                mach_ready[mach], mach_family[mach] = start + dur, op.family
    fixed_ops = {(p.job, p.op) for p in placements}
    for p in placements:
        if p.op + 1 > nxt[p.job]:
            nxt[p.job] = p.op + 1
        job_ready[p.job] = max(job_ready[p.job], p.end)
        remaining[p.job] -= min(a.duration for a in instance.jobs[p.job].operations[p.op].alternatives)
    total = sum(len(j.operations) for j in instance.jobs)
    while len(placements) < total:
        best = None
        for j, job in enumerate(instance.jobs):
            o = nxt[j]
            if o >= len(job.operations) or (j, o) in fixed_ops:
                continue
            op = job.operations[o]
            for a in op.alternatives:
                fam = mach_family[a.machine]
                ready = mach_ready[a.machine] + (instance.setup(fam, op.family) if fam is not None else 0)
                start = earliest_fit(instance.unavailable.get(a.machine, []), max(ready, job_ready[j]), a.duration)
                end = start + a.duration
                if rule == "ect":
                    key = (end, -remaining[j], a.duration)
                elif rule == "mwkr":
                    key = (start, -remaining[j], end)
                elif rule == "spt":
                    key = (start, a.duration, end)
                elif rule == "edd":
                    key = (start, job.due if job.due is not None else 1 << 60, end)
                else:
                    raise ValueError(f"rule {rule!r}: expected one of {', '.join(RULES)}")
                if best is None or key < best[0]:
                    best = (key, j, o, a.machine, start, end)
        assert best is not None, "no ready operation: a job's operations are not in order"
        _, j, o, mach, start, end = best
        placements.append(Placement(j, o, mach, start, end))
        nxt[j] = o + 1
        job_ready[j] = end
        mach_ready[mach], mach_family[mach] = end, instance.jobs[j].operations[o].family
        remaining[j] -= min(a.duration for a in instance.jobs[j].operations[o].alternatives)
    return with_setups(instance, Schedule(placements))


def best_dispatch(instance: Instance, key=None) -> Schedule:  # type: ignore[no-untyped-def]
    """The best schedule over every rule (by makespan unless key says otherwise)."""
    key = key or (lambda s: s.makespan())
    return min((dispatch(instance, r) for r in RULES), key=key)


def right_shift(instance: Instance, previous: Schedule, reassign: set[int] | None = None) -> Schedule:
    """Repair by keeping each operation's machine and each machine's order, pushing starts later only as needed.

    Operations whose machine is in `reassign` (e.g. down with no return) go to the eligible machine where they
    finish first, after that machine's queue. Operations missing from `previous` (a rush order) are appended.
    """
    reassign = reassign or set()
    prev = previous.by_op()
    seqs: dict[int, list[tuple[int, int]]] = {m: [] for m in range(instance.n_machines)}
    order = sorted(prev.values(), key=lambda p: (p.start, p.end))
    for p in order:
        if p.job < len(instance.jobs) and p.op < len(instance.jobs[p.job].operations):
            seqs[p.machine].append((p.job, p.op))
    job_ready = [j.release for j in instance.jobs]
    mach_ready = [0] * instance.n_machines
    mach_family: list[str | None] = [None] * instance.n_machines
    # operations already running stay where they are; whatever comes to their machine, from its own queue
    # or reassigned from a broken one, goes after them (everything not started begins at or after the event)
    for job in instance.jobs:
        for op in job.operations:
            if op.fixed is not None:
                m, start = op.fixed
                end = start + next(a.duration for a in op.alternatives if a.machine == m)
                if end >= mach_ready[m]:
                    mach_ready[m], mach_family[m] = end, op.family
    pos = {m: 0 for m in seqs}
    done: dict[tuple[int, int], Placement] = {}
    total = sum(len(j.operations) for j in instance.jobs)
    nxt = [0] * len(instance.jobs)

    def place(j: int, o: int, mach: int) -> None:
        op = instance.jobs[j].operations[o]
        dur = next(a.duration for a in op.alternatives if a.machine == mach)
        if op.fixed is not None:
            start = op.fixed[1]
        else:
            fam = mach_family[mach]
            ready = mach_ready[mach] + (instance.setup(fam, op.family) if fam is not None else 0)
            start = earliest_fit(instance.unavailable.get(mach, []), max(ready, job_ready[j]), dur)
        done[(j, o)] = Placement(j, o, mach, start, start + dur)
        job_ready[j] = max(job_ready[j], start + dur)
        if start + dur >= mach_ready[mach]:
            mach_ready[mach], mach_family[mach] = start + dur, op.family
        nxt[j] = o + 1

    while len(done) < total:
        progressed = False
        for mach, seq in seqs.items():
            while pos[mach] < len(seq):
                j, o = seq[pos[mach]]
                if (j, o) in done:
                    pos[mach] += 1
                    continue
                if nxt[j] != o:
                    break
                op = instance.jobs[j].operations[o]
                if mach in reassign and op.fixed is None or mach not in {a.machine for a in op.alternatives}:
                    _place_best(instance, j, o, mach_ready, mach_family, job_ready, place)
                else:
                    place(j, o, mach)
                pos[mach] += 1
                progressed = True
        if not progressed:
            # the next operation of some job is not queued anywhere (new, or queue order deadlocked): place it
            j = min((j for j in range(len(instance.jobs)) if nxt[j] < len(instance.jobs[j].operations)),
                    key=lambda j: job_ready[j])
            _place_best(instance, j, nxt[j], mach_ready, mach_family, job_ready, place, avoid=reassign)
    return with_setups(instance, Schedule(list(done.values())))


def _place_best(instance, j, o, mach_ready, mach_family, job_ready, place, avoid=frozenset()):  # type: ignore[no-untyped-def]
    op = instance.jobs[j].operations[o]
    options = [a for a in op.alternatives if a.machine not in avoid] or op.alternatives
    def finish(a):  # type: ignore[no-untyped-def]
        fam = mach_family[a.machine]
        ready = mach_ready[a.machine] + (instance.setup(fam, op.family) if fam is not None else 0)
        return earliest_fit(instance.unavailable.get(a.machine, []), max(ready, job_ready[j]), a.duration) + a.duration
    place(j, o, min(options, key=finish).machine)
