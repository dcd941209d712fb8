"""Fast schedules without a solver: dispatching rules (a first valid schedule in milliseconds) and the
right-shift decode that keeps each machine's assignment and sequence and only pushes operations later.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from scheduling.cpsat import with_setups
from scheduling.model import Instance, Placement, Schedule

RULES = ("ect", "mwkr", "spt", "edd")


def earliest_fit(windows: list[tuple[int, int]], start: int, duration: int) -> int:
    """The first start at or after `start` whose [start, start + duration) misses every unavailable window."""
    for s, e in windows:
        if start < e and s < start + duration:
            start = e
    return start


@dataclass(slots=True)
class ListState:
    """Where list scheduling stands: each job's next operation and ready time, each machine's ready time and last
    family, the work each job has left, and the placements so far."""

    instance: Instance
    nxt: list[int]
    job_ready: list[int]
    mach_ready: list[int]
    mach_family: list[str | None]
    remaining: list[int]
    placements: list[Placement] = field(default_factory=list)
    total: int = 0

    @classmethod
    def start(cls, instance: Instance) -> ListState:
        """The state before the first choice: started (fixed) operations placed where they run, whatever a rule
        would say, their machines and jobs ready after them."""
        state = cls(instance, [0] * len(instance.jobs), [j.release for j in instance.jobs],
                    [0] * instance.n_machines, [None] * instance.n_machines,
                    [sum(min(a.duration for a in op.alternatives) for op in j.operations) for j in instance.jobs],
                    total=sum(len(j.operations) for j in instance.jobs))
        for j, o, op in instance.operations():
            if op.fixed is not None:
                mach, start = op.fixed
                end = start + next(a.duration for a in op.alternatives if a.machine == mach)
                state.placements.append(Placement(j, o, mach, start, end))
                if end >= state.mach_ready[mach]:
                    state.mach_ready[mach], state.mach_family[mach] = end, op.family
                state.nxt[j] = max(state.nxt[j], o + 1)
                state.job_ready[j] = max(state.job_ready[j], end)
                state.remaining[j] -= min(a.duration for a in op.alternatives)
        return state

    @property
    def done(self) -> bool:
        """Every operation is placed."""
        return len(self.placements) >= self.total

    def place(self, j: int, o: int, mach: int, start: int, end: int) -> None:
        """Place job j's operation o on a machine and move the job and the machine on past it."""
        op = self.instance.jobs[j].operations[o]
        self.placements.append(Placement(j, o, mach, start, end))
        self.nxt[j] = o + 1
        self.job_ready[j] = end
        self.mach_ready[mach], self.mach_family[mach] = end, op.family
        self.remaining[j] -= min(a.duration for a in op.alternatives)


def dispatch(instance: Instance, rule: str = "ect") -> Schedule:
    """List scheduling: repeatedly place the ready operation (and machine) the rule prefers, as early as it fits.

    ect = earliest completion; mwkr = most work remaining; spt = shortest time; edd = earliest due date.
    Fixed operations keep their machine and start.
    """
    state = ListState.start(instance)
    nxt, job_ready, mach_ready, mach_family, remaining = (state.nxt, state.job_ready, state.mach_ready,
                                                          state.mach_family, state.remaining)
    fixed_ops = {(p.job, p.op) for p in state.placements}
    while not state.done:
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
        state.place(j, o, mach, start, end)
    return with_setups(instance, Schedule(state.placements))


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
