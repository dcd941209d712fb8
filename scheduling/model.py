"""The scheduling problem and its answer as plain data: jobs of operations with alternative machines, a schedule."""

from __future__ import annotations

from dataclasses import dataclass, field

NEVER = 1 << 40  # the end of an open-ended unavailable window (after a calendar's last shift)


@dataclass(frozen=True)
class Alternative:
    """One machine an operation may run on, with its processing time there (integer time units)."""

    machine: int
    duration: int


@dataclass
class Operation:
    """One step of a job; `family` selects changeovers; `fixed` = (machine, start) of a started or done step."""

    alternatives: list[Alternative]
    name: str = ""
    family: str = ""
    fixed: tuple[int, int] | None = None
    seq: int | None = None  # the order's own operation number (MES seq), when it has one


@dataclass
class Job:
    """An order: operations in routing order, its release and due date (time units) and a tardiness weight."""

    name: str
    operations: list[Operation]
    release: int = 0
    due: int | None = None
    weight: int = 1


@dataclass
class Instance:
    """A flexible job shop: machines, jobs, changeovers between families, and when machines are unavailable."""

    name: str
    machines: list[str]
    jobs: list[Job]
    # (from family, to family) -> changeover time on any machine; a missing pair means no changeover
    changeover: dict[tuple[str, str], int] = field(default_factory=dict)
    # machine index -> sorted, disjoint [start, end) windows the machine cannot work
    unavailable: dict[int, list[tuple[int, int]]] = field(default_factory=dict)

    @property
    def n_machines(self) -> int:
        """How many machines."""
        return len(self.machines)

    def setup(self, a: str, b: str) -> int:
        """The changeover time from family a to family b (0 for the same family)."""
        return 0 if a == b else self.changeover.get((a, b), 0)

    def has_setups(self) -> bool:
        """Whether any changeover time is positive."""
        return any(v > 0 for (a, b), v in self.changeover.items() if a != b)

    def operations(self) -> list[tuple[int, int, Operation]]:
        """Every operation as (job index, operation index, operation)."""
        return [(j, o, op) for j, job in enumerate(self.jobs) for o, op in enumerate(job.operations)]

    def horizon(self) -> int:
        """An upper bound on any finish time: every operation at its longest, every setup and downtime, after the last release."""
        work = sum(max(a.duration for a in op.alternatives) for _, _, op in self.operations())
        setups = max(self.changeover.values(), default=0) * sum(len(j.operations) for j in self.jobs)
        down = max((w[-1][1] if w[-1][1] < NEVER else w[-1][0] for w in self.unavailable.values() if w), default=0)
        starts = max((op.fixed[1] for _, _, op in self.operations() if op.fixed), default=0)
        return max(down, starts, max((j.release for j in self.jobs), default=0)) + work + setups + 1


@dataclass(frozen=True)
class Placement:
    """Where and when one operation runs; `setup` is the changeover done just before `start` on that machine."""

    job: int
    op: int
    machine: int
    start: int
    end: int
    setup: int = 0


@dataclass
class Schedule:
    """Placements of every operation of an instance."""

    placements: list[Placement]

    def makespan(self) -> int:
        """The latest end."""
        return max((p.end for p in self.placements), default=0)

    def by_op(self) -> dict[tuple[int, int], Placement]:
        """Placements keyed by (job, op)."""
        return {(p.job, p.op): p for p in self.placements}

    def machine_sequences(self, n_machines: int) -> list[list[Placement]]:
        """Per machine, its placements in start order."""
        seqs: list[list[Placement]] = [[] for _ in range(n_machines)]
        for p in self.placements:
            seqs[p.machine].append(p)
        for s in seqs:
            s.sort(key=lambda p: (p.start, p.end))
        return seqs


def completion_times(instance: Instance, schedule: Schedule) -> list[int]:
    """Each job's completion (end of its last operation)."""
    ends = [0] * len(instance.jobs)
    for p in schedule.placements:
        ends[p.job] = max(ends[p.job], p.end)
    return ends


def weighted_tardiness(instance: Instance, schedule: Schedule) -> int:
    """Sum over jobs of weight x lateness past the due date."""
    ends = completion_times(instance, schedule)
    return sum(j.weight * max(0, ends[i] - j.due) for i, j in enumerate(instance.jobs) if j.due is not None)
