"""An independent check of a schedule against its instance; shares no code with the solvers that build schedules.

Checks: every operation placed exactly once, on an eligible machine, for its time there; job precedence and
release; fixed (started or done) operations where they were; per machine no overlap, with the changeover between
consecutive families; no processing inside a machine's unavailable windows.
"""

from __future__ import annotations

from scheduling.model import Instance, Schedule


def violations(instance: Instance, schedule: Schedule, *, limit: int = 50) -> list[str]:
    """Everything wrong with the schedule (empty when it is valid), each a sentence naming job and operation."""
    found: list[str] = []

    def name(j: int, o: int) -> str:
        job = instance.jobs[j] if 0 <= j < len(instance.jobs) else None
        op = job.operations[o].name if job and 0 <= o < len(job.operations) and job.operations[o].name else f"op{o + 1}"
        return f"{job.name if job else f'job#{j}'}/{op}"

    seen: dict[tuple[int, int], object] = {}
    for p in schedule.placements:
        key = (p.job, p.op)
        if key in seen:
            found.append(f"{name(*key)} placed twice")
        seen[key] = p
    for j, job in enumerate(instance.jobs):
        for o, op in enumerate(job.operations):
            if (j, o) not in seen:
                found.append(f"{name(j, o)} not placed")
    for p in schedule.placements:
        if not (0 <= p.job < len(instance.jobs) and 0 <= p.op < len(instance.jobs[p.job].operations)):
            found.append(f"placement of unknown operation job={p.job} op={p.op}")
            continue
        op = instance.jobs[p.job].operations[p.op]
        times = {a.machine: a.duration for a in op.alternatives}
        if p.machine not in times:
            found.append(f"{name(p.job, p.op)} on machine {p.machine}, which is not eligible")
        elif p.end - p.start != times[p.machine]:
            found.append(f"{name(p.job, p.op)} lasts {p.end - p.start}, needs {times[p.machine]} on machine {p.machine}")
        if op.fixed is not None and (p.machine, p.start) != op.fixed:
            found.append(f"{name(p.job, p.op)} is fixed at machine {op.fixed[0]} start {op.fixed[1]}, "
                         f"placed at machine {p.machine} start {p.start}")
        if p.start < 0:
            found.append(f"{name(p.job, p.op)} starts before 0")
    placed = {k: v for k, v in seen.items() if 0 <= k[0] < len(instance.jobs) and 0 <= k[1] < len(instance.jobs[k[0]].operations)}
    for j, job in enumerate(instance.jobs):
        for o, op in enumerate(job.operations):
            p = placed.get((j, o))
            if p is not None and op.fixed is None and p.start < job.release:  # type: ignore[attr-defined]
                found.append(f"{name(j, o)} starts at {p.start} before the release {job.release}")  # type: ignore[attr-defined]
        for o in range(1, len(job.operations)):
            a, b = placed.get((j, o - 1)), placed.get((j, o))
            if a is not None and b is not None and b.start < a.end:  # type: ignore[attr-defined]
                found.append(f"{name(j, o)} starts at {b.start} before {name(j, o - 1)} ends at {a.end}")  # type: ignore[attr-defined]
    by_machine: dict[int, list] = {}
    for p in placed.values():
        by_machine.setdefault(p.machine, []).append(p)  # type: ignore[attr-defined]
    for m, ps in by_machine.items():
        ps.sort(key=lambda p: (p.start, p.end))
        for a, b in zip(ps, ps[1:]):
            need = instance.setup(instance.jobs[a.job].operations[a.op].family, instance.jobs[b.job].operations[b.op].family)
            if b.start < a.end + need:
                what = f"overlaps {name(a.job, a.op)}" if b.start < a.end else f"leaves {b.start - a.end} for a changeover of {need} after {name(a.job, a.op)}"
                found.append(f"{name(b.job, b.op)} on machine {m} at {b.start} {what}")
            if b.setup != need and not (instance.jobs[b.job].operations[b.op].fixed):
                found.append(f"{name(b.job, b.op)} reports setup {b.setup}, the changeover is {need}")
        for p in ps:
            for s, e in instance.unavailable.get(m, []):
                if p.start < e and s < p.end and p.end > p.start:
                    found.append(f"{name(p.job, p.op)} runs {p.start}-{p.end} on machine {m} while it is unavailable {s}-{e}")
    return found[:limit]


def is_valid(instance: Instance, schedule: Schedule) -> bool:
    """Whether the schedule has no violation."""
    return not violations(instance, schedule, limit=1)
