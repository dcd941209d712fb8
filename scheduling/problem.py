"""A scheduling request in shop terms (orders, operations with eligible machines and seconds, changeovers,
availability calendars, times as datetimes) turned into an Instance, refusing what cannot be scheduled with an
error that names the order and operation.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated

import msgspec

from scheduling.model import NEVER, Alternative, Instance, Job, Operation, Schedule

Name = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
Seconds = Annotated[float, msgspec.Meta(ge=0, le=10 * 365 * 86400)]


class OperationIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """One routing step: eligible machines with their seconds; `after` lists seqs it waits for (default: the previous)."""

    seq: Annotated[int, msgspec.Meta(ge=1, le=100_000)]
    name: str = ""
    machines: Annotated[dict[Name, Seconds], msgspec.Meta(max_length=500)]
    after: list[int] | None = None


class OrderIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """A work order to schedule."""

    id: Name
    operations: Annotated[list[OperationIn], msgspec.Meta(min_length=1, max_length=1000)]
    family: str = ""
    release: datetime | None = None
    due: datetime | None = None
    priority: Annotated[int, msgspec.Meta(ge=0, le=1000)] = 1


class Changeover(msgspec.Struct, forbid_unknown_fields=True):
    """Seconds to change a machine over from one product family to another."""

    from_family: str
    to_family: str
    seconds: Seconds


class Window(msgspec.Struct, forbid_unknown_fields=True):
    """A span of time on one machine."""

    machine: Name
    start: datetime
    end: datetime


class Problem(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Orders, machines and their calendar; `available` windows (shifts) if given, else always available except `unavailable`."""

    origin: datetime
    orders: Annotated[list[OrderIn], msgspec.Meta(max_length=5000)]
    machines: list[Name] | None = None
    changeovers: list[Changeover] = msgspec.field(default_factory=list)
    unavailable: list[Window] = msgspec.field(default_factory=list)
    available: list[Window] | None = None


class ProblemError(ValueError):
    """A request that cannot be scheduled; `where` names the order/operation or field."""

    def __init__(self, where: str, problem: str) -> None:
        super().__init__(f"{where}: {problem}")
        self.where, self.problem = where, problem


def _t(origin: datetime, ts: datetime, where: str) -> int:
    if ts.tzinfo is None:
        raise ProblemError(where, "time needs a zone")
    return int(round((ts - origin).total_seconds()))


def to_instance(problem: Problem, name: str = "request") -> Instance:
    """The Instance of a request (times in seconds from its origin), or ProblemError naming what is wrong."""
    if problem.origin.tzinfo is None:
        raise ProblemError("origin", "time needs a zone")
    machines = list(problem.machines) if problem.machines else sorted(
        {m for o in problem.orders for op in o.operations for m in op.machines})
    index = {m: i for i, m in enumerate(machines)}
    ids = [o.id for o in problem.orders]
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise ProblemError(f"order {dup}", "listed twice")
    jobs = []
    for order in problem.orders:
        release = max(0, _t(problem.origin, order.release, f"order {order.id} release")) if order.release else 0
        due = _t(problem.origin, order.due, f"order {order.id} due") if order.due else None
        if due is not None and order.release is not None and order.due < order.release:  # type: ignore[operator]
            raise ProblemError(f"order {order.id}", f"due {order.due.isoformat()} is before release {order.release.isoformat()}")
        chain = _chain(order)
        ops = []
        for op in chain:
            where = f"order {order.id} operation {op.seq}"
            if not op.machines:
                raise ProblemError(where, "no eligible machine")
            unknown = [m for m in op.machines if m not in index]
            if unknown:
                raise ProblemError(where, f"machine {unknown[0]!r} is not among the machines")
            ops.append(Operation([Alternative(index[m], max(1, int(round(s)))) for m, s in op.machines.items()],
                                 name=op.name or str(op.seq), family=order.family, seq=op.seq))
        jobs.append(Job(order.id, ops, release=release, due=due, weight=max(1, order.priority)))
    changeover = {(c.from_family, c.to_family): int(round(c.seconds)) for c in problem.changeovers}
    unavailable: dict[int, list[tuple[int, int]]] = {}
    for w in problem.unavailable:
        _window(problem, w, index, unavailable, "unavailable")
    if problem.available is not None:
        unavailable = _complement(problem, index, unavailable)
    inst = Instance(name, machines, jobs, changeover, {m: _merge(ws) for m, ws in unavailable.items()})
    _check_calendar(inst)
    return inst


def _chain(order: OrderIn) -> list[OperationIn]:
    """The operations in an order that respects every `after`; a cycle is refused naming an operation on it."""
    by_seq = {op.seq: op for op in order.operations}
    if len(by_seq) != len(order.operations):
        dup = next(op.seq for op in order.operations if sum(o.seq == op.seq for o in order.operations) > 1)
        raise ProblemError(f"order {order.id} operation {dup}", "seq listed twice")
    ordered = sorted(by_seq)
    preds = {s: (by_seq[s].after if by_seq[s].after is not None else ordered[:i][-1:]) for i, s in enumerate(ordered)}
    for s, ps in preds.items():
        for p in ps:
            if p not in by_seq:
                raise ProblemError(f"order {order.id} operation {s}", f"waits for operation {p}, which the order lacks")
    out, state = [], {}

    def visit(s: int) -> None:
        if state.get(s) == 1:
            raise ProblemError(f"order {order.id} operation {s}", "precedence cycle")
        if state.get(s) == 2:
            return
        state[s] = 1
        for p in preds[s]:
            visit(p)
        state[s] = 2
        out.append(by_seq[s])

    for s in ordered:
        visit(s)
    return out


def _window(problem: Problem, w: Window, index: dict[str, int], into: dict, what: str) -> None:  # type: ignore[type-arg]
    if w.machine not in index:
        raise ProblemError(f"{what} {w.machine}", "unknown machine")
    s, e = _t(problem.origin, w.start, f"{what} {w.machine}"), _t(problem.origin, w.end, f"{what} {w.machine}")
    if e <= s:
        raise ProblemError(f"{what} {w.machine} {w.start.isoformat()}", "end is not after start")
    into.setdefault(index[w.machine], []).append((max(0, s), max(0, e)))


def _complement(problem: Problem, index: dict[str, int], unavailable: dict) -> dict:  # type: ignore[type-arg]
    """Shift windows -> the times between them are unavailable; after the last one, too."""
    avail: dict[int, list[tuple[int, int]]] = {}
    for w in problem.available or []:
        _window(problem, w, index, avail, "available")
    never = NEVER
    out = {m: list(ws) for m, ws in unavailable.items()}
    for m in range(len(index)):
        t = 0
        for s, e in _merge(avail.get(m, [])):
            if s > t:
                out.setdefault(m, []).append((t, s))
            t = max(t, e)
        out.setdefault(m, []).append((t, never))
    return out


def _merge(windows: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for s, e in sorted(w for w in windows if w[1] > w[0]):
        if out and s <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], e))
        else:
            out.append((s, e))
    return out


def _check_calendar(inst: Instance) -> None:
    """Every operation needs an eligible machine with a free span as long as its time there."""
    for j, o, op in inst.operations():
        if not any(_fits(inst.unavailable.get(a.machine, []), a.duration) for a in op.alternatives):
            raise ProblemError(f"order {inst.jobs[j].name} operation {op.name}",
                               "no eligible machine is available long enough for it (calendar infeasible)")


def _fits(windows: list[tuple[int, int]], duration: int) -> bool:
    t = 0
    for s, e in windows:
        if s - t >= duration:
            return True
        t = max(t, e)
    return t < NEVER


def placements_json(inst: Instance, schedule: Schedule, origin: datetime) -> list[dict]:  # type: ignore[type-arg]
    """Placements as rows with machine names and datetimes."""
    rows = []
    for p in sorted(schedule.placements, key=lambda p: (p.start, p.machine)):
        op = inst.jobs[p.job].operations[p.op]
        rows.append({"order": inst.jobs[p.job].name, "op": op.name, "seq": op.seq if op.seq is not None else p.op + 1, "machine": inst.machines[p.machine],
                     "start": origin + timedelta(seconds=p.start), "end": origin + timedelta(seconds=p.end),
                     "setup_s": p.setup, "frozen": op.fixed is not None})
    return rows
