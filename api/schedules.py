"""Production schedules: solve in the background (cancellable, with progress), versions, Gantt chart, events
that make a new version with its diff, release into the MES operations, and each machine's dispatch list.
"""

from __future__ import annotations

import asyncio
import os
import threading
from datetime import datetime, timezone
from html import escape
from typing import Annotated, Any, Literal

import msgspec
import psycopg
from litestar import Controller, Request, Response, get, post
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide
from litestar.exceptions import ClientException, NotFoundException
from litestar.params import JSONBody

from api.auth import caller, requires
from api.deps import provide_conn
from scheduling import store
from scheduling.config import ObjectiveName, SchedulingConfig
from scheduling.cpsat import Objective
from scheduling.events import EVENTS, Event, EventError, diff, reschedule
from scheduling.problem import Changeover, OrderIn, Problem, ProblemError, placements_json, to_instance
from scheduling.solver import score, solve, solve_lex
from scheduling.validate import violations

MAX_SECONDS = 600.0


class ScheduleBody(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """What to schedule and how long to search."""

    problem: Problem | None = None
    """Explicit orders; or from_released_orders: the MES's released and running orders, from `origin` (default now)."""
    from_released_orders: bool = False
    origin: datetime | None = None
    changeovers: list[Changeover] = msgspec.field(default_factory=list)
    name: Annotated[str, msgspec.Meta(max_length=200)] = ""
    objective: ObjectiveName | None = None
    """Default: [scheduling] objective; with a comma, lexicographic: the first, then the second with the first held."""
    time_limit_s: Annotated[float, msgspec.Meta(gt=0, le=MAX_SECONDS)] | None = None
    """Default: [scheduling] time_limit_s; so is `workers` its workers."""
    workers: Annotated[int, msgspec.Meta(ge=1, le=64)] | None = None


class EventBody(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """A shop-floor event: machine_down/back (machine, until), rush_order (order), op_finished (order, seq, end), cancel (order)."""

    kind: Literal["machine_down", "machine_back", "rush_order", "op_finished", "cancel"]
    at: datetime
    machine: str | None = None
    until: datetime | None = None
    order: str | None = None
    seq: int | None = None
    end: datetime | None = None
    new_order: OrderIn | None = None
    time_limit_s: Annotated[float, msgspec.Meta(gt=0, le=MAX_SECONDS)] | None = None
    """Default: [scheduling] time_limit_s (at most 600 s: the answer waits for it); so is `workers` its workers."""
    workers: Annotated[int, msgspec.Meta(ge=1, le=64)] | None = None


class _Run:
    """A background solve: its task, the flag that cancels it and its progress."""

    def __init__(self) -> None:
        self.cancel = threading.Event()
        self.progress: list[list[float]] = []
        self.task: asyncio.Task[None] | None = None


_RUNS: dict[int, _Run] = {}


def _unprocessable(where: str, problem: str) -> ClientException:
    return ClientException(status_code=422, detail=f"{where}: {problem}", extra={"where": where, "problem": problem})


def _seconds(origin: datetime, ts: datetime) -> int:
    return int(round((ts - origin).total_seconds()))


def _settings(state: State) -> SchedulingConfig:
    """The [scheduling] table the app was made with: the defaults of what a request leaves out."""
    return getattr(state, "scheduling", None) or SchedulingConfig()


async def _run(state: State, sid: int, origin: datetime, inst, body: ScheduleBody, run: _Run) -> None:  # type: ignore[no-untyped-def]
    """Solve off the event loop and store version 1; a failure is recorded on the run."""
    assert body.objective is not None and body.time_limit_s is not None and body.workers is not None  # filled in
    kinds = body.objective.split(",")
    workers = min(body.workers, os.cpu_count() or 1)
    progress = lambda t, o, b: run.progress.append([round(t, 3), o, b])  # noqa: E731
    async with state.pool.connection() as conn:
        try:
            await store.set_run(conn, sid, "running")
            if len(kinds) == 2:
                result, _ = await asyncio.to_thread(
                    solve_lex, inst, (kinds[0], kinds[1]), body.time_limit_s, workers,
                    tolerance=_settings(state).lexicographic_tolerance, on_progress=progress, cancel=run.cancel)
            else:
                result = await asyncio.to_thread(solve, inst, body.time_limit_s, workers,
                                                 objective=Objective(body.objective), on_progress=progress,
                                                 cancel=run.cancel)
            if result.schedule is None or violations(inst, result.schedule):
                await store.set_run(conn, sid, "failed", run.progress, "the solver returned no valid schedule")
                return
            # the version's objective is the first one's value; lexicographic: both in the cause, and no bound
            # or gap (the second stage's are about the second objective)
            values = {k: score(inst, result.schedule, Objective(k)) for k in kinds}
            lex = len(kinds) == 2
            await store.add_version(conn, sid, origin, inst, result.schedule,
                                    cause={"kind": "initial", "objective": body.objective, "values": values},
                                    status=result.status, objective=values[kinds[0]] if lex else result.objective,
                                    bound=None if lex else result.bound, gap=None if lex else result.gap,
                                    solve_s=result.seconds)
            await store.set_run(conn, sid, "cancelled" if run.cancel.is_set() else "done", run.progress)
        except Exception as e:  # noqa: BLE001  (recorded on the run, which is what the caller polls)
            await store.set_run(conn, sid, "failed", run.progress, f"{type(e).__name__}: {e}")
        finally:
            _RUNS.pop(sid, None)


class ScheduleController(Controller):
    """Schedules and their versions."""

    path = "/api/v1/schedules"
    tags = ["scheduling"]
    dependencies = {"conn": Provide(provide_conn)}

    @post("/", guards=[requires("engineer")], status_code=202, summary="Start a schedule solve in the background")
    async def create(self, request: Request, state: State, conn: NamedDependency[psycopg.AsyncConnection],
                     data: JSONBody[ScheduleBody]) -> dict[str, Any]:
        """Validate the problem (422 naming the order/operation, nothing stored), then solve in the background."""
        if (data.problem is None) == (not data.from_released_orders):
            raise _unprocessable("problem", "give either problem or from_released_orders: true")
        problem = data.problem
        if problem is None:
            raw = await store.problem_from_mes(conn, data.origin or datetime.now(timezone.utc))
            if not raw["orders"]:
                raise _unprocessable("from_released_orders", "no released or running order has an unfinished operation")
            # the MES matrix, with pairs given in the request taking precedence
            given = msgspec.to_builtins(data.changeovers)
            pairs = {(c["from_family"], c["to_family"]) for c in given}
            raw["changeovers"] = [c for c in raw["changeovers"] if (c["from_family"], c["to_family"]) not in pairs] + given
            problem = msgspec.convert(raw, Problem)
        try:
            inst = to_instance(problem, data.name or "request")
        except ProblemError as e:
            raise _unprocessable(e.where, e.problem) from None
        who = (await caller(request)).name
        table = _settings(state)
        data = msgspec.structs.replace(
            data, objective=data.objective if data.objective is not None else table.objective,
            time_limit_s=data.time_limit_s if data.time_limit_s is not None else table.time_limit_s,
            workers=data.workers if data.workers is not None else table.workers)
        # stored as solved: what the request gave and the table filled in (the column takes the first objective)
        body = {**msgspec.to_builtins(data), "problem": msgspec.to_builtins(problem)}
        sid = await store.create(conn, data.name, problem.origin, data.objective.split(",")[0], body, who)  # type: ignore[union-attr]
        run = _RUNS[sid] = _Run()
        run.task = asyncio.create_task(_run(state, sid, problem.origin, inst, data, run))
        return {"id": sid, "state": "queued"}

    @get("/{sid:int}", guards=[requires("viewer")], summary="A schedule: run state, progress, a version's operations")
    async def read(self, conn: NamedDependency[psycopg.AsyncConnection], sid: int, version: int | None = None) -> dict[str, Any]:
        """The run's state and progress (best objective, bound, over time) and the operations of a version."""
        row = await store.get(conn, sid)
        if row is None:
            raise NotFoundException(f"schedule {sid} not found")
        if sid in _RUNS:
            row["progress"] = _RUNS[sid].progress
        v = await store.version(conn, sid, version) if row["latest"] else None
        if version is not None and v is None:
            raise NotFoundException(f"schedule {sid} has no version {version}")
        if v is not None:
            row["version"] = {k: v[k] for k in ("version", "cause", "status", "objective", "bound", "gap", "makespan_s",
                                                 "solve_s", "diff", "right_shift", "created_at")}
            row["operations"] = v["operations"]
        return row

    @post("/{sid:int}/cancel", guards=[requires("engineer")], status_code=200, summary="Stop a running solve")
    async def cancel(self, sid: int) -> dict[str, Any]:
        """Stop the search; the best schedule so far becomes version 1."""
        run = _RUNS.get(sid)
        if run is None:
            raise ClientException(status_code=409, detail=f"schedule {sid} has no running solve")
        run.cancel.set()
        if run.task is not None:
            await asyncio.shield(run.task)
        return {"id": sid, "cancelled": True}

    @get("/{sid:int}/gantt.svg", guards=[requires("viewer")], summary="Gantt chart of a version")
    async def gantt(self, conn: NamedDependency[psycopg.AsyncConnection], sid: int, version: int | None = None) -> Response[str]:
        """One row per machine, one bar per operation (changeovers hatched), as SVG."""
        v = await store.version(conn, sid, version)
        if v is None:
            raise NotFoundException(f"schedule {sid} has no version yet")
        return Response(gantt_svg(v["operations"]), media_type="image/svg+xml")

    @post("/{sid:int}/events", guards=[requires("operator")], status_code=201, summary="An event: a new version and its diff")
    async def event(self, state: State, conn: NamedDependency[psycopg.AsyncConnection], sid: int,
                    data: JSONBody[EventBody]) -> dict[str, Any]:
        """Freeze what has started, re-optimise with stability, compare with right-shift repair, store version n+1."""
        head = await store.get(conn, sid)
        v = await store.version(conn, sid)
        if head is None or v is None:
            raise NotFoundException(f"schedule {sid} has no version yet")
        origin = head["origin"]
        inst, previous = v["model"]
        table = _settings(state)
        data = msgspec.structs.replace(
            data, time_limit_s=data.time_limit_s if data.time_limit_s is not None else min(table.time_limit_s, MAX_SECONDS),
            workers=data.workers if data.workers is not None else table.workers)
        try:
            event = _event(inst, origin, data)
            # re-optimised for the schedule's own objective (the first one when lexicographic)
            rs = await asyncio.to_thread(reschedule, inst, previous, event, time_limit=data.time_limit_s,
                                         workers=min(data.workers, os.cpu_count() or 1),  # type: ignore[type-var]
                                         kind=head["objective"].split(",")[0], move_weight=table.move_weight,
                                         shift_weight=table.shift_weight, tolerance=table.stability_tolerance)
        except (EventError, ProblemError) as e:
            where, problem = (e.where, e.problem) if isinstance(e, ProblemError) else ("event", str(e))
            raise _unprocessable(where, problem) from None
        new = rs.optimised.schedule or rs.repaired
        problems = violations(rs.instance, new)
        if problems:
            raise ClientException(status_code=409, detail=f"no valid schedule after the event: {problems[0]}")
        d = _diff_json(rs.instance, rs.optimised_diff)
        rsj = {"objective": rs.repaired_objective, **_diff_json(rs.instance, rs.repair_diff)}
        number = await store.add_version(conn, sid, origin, rs.instance, new, cause=msgspec.to_builtins(data),
                                         status=rs.optimised.status, objective=rs.optimised_objective,
                                         bound=None, gap=None, solve_s=rs.optimised.seconds, diff=d, right_shift=rsj)
        return {"id": sid, "version": number, "objective": rs.optimised_objective, "diff": d, "right_shift": rsj,
                "first_valid_s": rs.first_valid_s,
                "operations": placements_json(rs.instance, new, origin)}

    @post("/{sid:int}/release", guards=[requires("engineer")], status_code=200, summary="Write the plan into the MES operations")
    async def release(self, conn: NamedDependency[psycopg.AsyncConnection], sid: int, version: int | None = None) -> dict[str, Any]:
        """Planned machine, start and end of each operation of the version into the MES operations of its orders."""
        v = await store.version(conn, sid, version)
        if v is None:
            raise NotFoundException(f"schedule {sid} has no version {version or ''}".rstrip())
        return await store.release(conn, sid, v["version"])


class DispatchController(Controller):
    """What an operator runs next."""

    path = "/api/v1/machines"
    tags = ["scheduling"]
    dependencies = {"conn": Provide(provide_conn)}

    @get("/{name:str}/dispatch", guards=[requires("viewer")], summary="The machine's next operations")
    async def dispatch(self, conn: NamedDependency[psycopg.AsyncConnection], name: str,
                       limit: Annotated[int, msgspec.Meta(ge=1, le=500)] = 20,
                       at: datetime | None = None) -> list[dict[str, Any]]:
        """Operations planned on the machine that end after `at` (default now), in start order."""
        return await store.dispatch_list(conn, name, limit, at or datetime.now(timezone.utc))


def _event(inst, origin: datetime, data: EventBody) -> Event:  # type: ignore[no-untyped-def]
    """The model event of a request, naming the unknown machine or order."""
    machine = job = op = None
    if data.machine is not None:
        if data.machine not in inst.machines:
            raise ProblemError(f"machine {data.machine}", "not in this schedule")
        machine = inst.machines.index(data.machine)
    if data.order is not None:
        names = [j.name for j in inst.jobs]
        if data.order not in names:
            raise ProblemError(f"order {data.order}", "not in this schedule")
        job = names.index(data.order)
        if data.seq is not None:
            seqs = [o.seq if o.seq is not None else i + 1 for i, o in enumerate(inst.jobs[job].operations)]
            if data.seq not in seqs:
                raise ProblemError(f"order {data.order} operation {data.seq}", "not in this schedule")
            op = seqs.index(data.seq)
    new_job = None
    if data.kind == "rush_order":
        if data.new_order is None:
            raise ProblemError("new_order", "a rush order needs the order")
        if data.new_order.id in [j.name for j in inst.jobs]:
            raise ProblemError(f"order {data.new_order.id}", "already in this schedule")
        sub = Problem(origin=origin, orders=[data.new_order], machines=inst.machines)
        new_job = to_instance(sub).jobs[0]
    at = _seconds(origin, data.at)
    return Event(data.kind, at, machine=machine, until=_seconds(origin, data.until) if data.until else None,
                 job=job, op=op, end=_seconds(origin, data.end) if data.end else None, new_job=new_job)


def _diff_json(inst, d) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    name = lambda k: {"order": inst.jobs[k[0]].name, "op": inst.jobs[k[0]].operations[k[1]].name} \
        if k[0] < len(inst.jobs) and k[1] < len(inst.jobs[k[0]].operations) else {"order": str(k[0]), "index": k[1]}  # noqa: E731
    return {"moved": [name(k) for k in d.moved], "moved_ops": len(d.moved), "shifted_ops": d.shifted,
            "total_shift_s": d.total_shift, "added": [name(k) for k in d.added], "removed_ops": len(d.removed)}


def gantt_svg(operations: list[dict[str, Any]]) -> str:
    """A plain SVG Gantt chart: machines as rows, operations as bars labelled by order, changeovers hatched."""
    if not operations:
        return '<svg xmlns="http://www.w3.org/2000/svg" width="200" height="40"><text x="10" y="25">empty</text></svg>'
    machines = sorted({o["machine"] for o in operations})
    t0 = min(o["start_ts"] for o in operations)
    t1 = max(o["end_ts"] for o in operations)
    span = max(1.0, (t1 - t0).total_seconds())
    width, left, row = 1000, 120, 28
    scale = (width - left - 10) / span
    orders = sorted({o["order_id"] for o in operations})
    colour = {o: f"hsl({(i * 137) % 360},55%,65%)" for i, o in enumerate(orders)}
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{row * len(machines) + 40}" '
           'font-family="sans-serif" font-size="10">',
           '<defs><pattern id="setup" width="4" height="4" patternUnits="userSpaceOnUse">'
           '<path d="M0,4 L4,0" stroke="#555"/></pattern></defs>']
    for i, m in enumerate(machines):
        y = 10 + i * row
        out.append(f'<text x="4" y="{y + 17}">{escape(m)}</text>')
        for o in (o for o in operations if o["machine"] == m):
            x = left + (o["start_ts"] - t0).total_seconds() * scale
            w = max(1.0, (o["end_ts"] - o["start_ts"]).total_seconds() * scale)
            if o["setup_s"]:
                sw = o["setup_s"] * scale
                out.append(f'<rect x="{x - sw:.1f}" y="{y}" width="{sw:.1f}" height="{row - 6}" fill="url(#setup)"/>')
            out.append(f'<rect x="{x:.1f}" y="{y}" width="{w:.1f}" height="{row - 6}" fill="{colour[o["order_id"]]}" '
                       f'stroke="{"#000" if o["frozen"] else "#fff"}"><title>{escape(o["order_id"])} op {o["seq"]} '
                       f'{o["start_ts"].isoformat()} - {o["end_ts"].isoformat()}</title></rect>')
            if w > 30:
                out.append(f'<text x="{x + 2:.1f}" y="{y + 15}">{escape(o["order_id"])}</text>')
    out.append(f'<text x="{left}" y="{row * len(machines) + 32}">{escape(t0.isoformat())} .. {escape(t1.isoformat())}</text>')
    out.append("</svg>")
    return "".join(out)


__all__ = ["ScheduleController", "DispatchController", "EVENTS", "diff", "gantt_svg"]
