"""What-if runs of the line: a simpy model seeded from the twin's state, run for a horizon under a scenario.

The model is the plant's line (plant/line.py) fed from outside and made reproducible: parallel
machines take orders from one queue, earliest due first (higher priority breaks ties, then the
order given); a machine changes over when the product changes, makes one part per cycle, breaks
down when its remaining life reaches zero (repair, then full life again) and, if it has an MTBF,
fails at random with probability cycle/MTBF before each cycle. Operators work only inside the
shift windows: setup and production pause outside them and resume in the next window, while
repairs and maintenance take clock time (the maintenance crew is not the line's operators).
Scrap is taken at its expected rate rather than drawn (see `Machine`), so the only chance in a
run is the random failures, drawn from one RNG per machine seeded from the request's seed:
the same request gives the same result, and scenarios compared on one seed see the same dice.
"""

from __future__ import annotations

import bisect
import math
import random
import threading
import time
from collections import Counter
from collections.abc import Generator
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

import msgspec
import simpy

# ISO 22400 machine states, as the plant reports them, plus time with no operator shift
PRODUCING, IDLE, SETUP, UNPLANNED_DOWN, PLANNED_DOWN = "producing", "idle", "setup", "unplanned_down", "planned_down"
OFF_SHIFT = "off_shift"
STATES = (PRODUCING, IDLE, SETUP, UNPLANNED_DOWN, PLANNED_DOWN, OFF_SHIFT)
_WORK = "work"  # calendar segment where operators may run the machine
_EPS = 1e-9  # slack for sums of float times and rates, so 10 × 0.1 counts as a whole part

StateName = Literal["producing", "idle", "setup", "unplanned_down", "planned_down"]
ScenarioKind = Literal["baseline", "maintain_now", "maintain_at_failure", "add_shift", "machine_down"]
SCENARIO_KINDS = ("baseline", "maintain_now", "maintain_at_failure", "add_shift", "machine_down")


# Hard limits of one request, so that no request can take the server down (issue 10); the
# OpenAPI document carries them as msgspec constraints, and a run stops at MAX_EVENTS or its
# wall-clock budget, whichever comes first.
MAX_HORIZON_S = 30 * 86400.0  # 30 days
MAX_ORDERS = 1000
MAX_QUANTITY = 100_000  # parts of one order
MAX_MACHINES = 100
MAX_SCENARIOS = 10
MAX_WINDOWS = 1000
MAX_EVENTS = 2_000_000  # simulated events over all scenarios of a request
BUDGET_S = 10.0  # wall-clock seconds over all scenarios of a request

Seconds = Annotated[float, msgspec.Meta(ge=-MAX_HORIZON_S, le=MAX_HORIZON_S)]
Name = Annotated[str, msgspec.Meta(max_length=200)]


class UnknownProduct(ValueError):
    """An order's product that no machine of the run can make (no routing, no cycle time); names it."""

    def __init__(self, where: str, product: str) -> None:
        super().__init__(f"{where}: no machine makes {product!r} (unknown product, or no routing for it)")
        self.where = where
        self.product = product


class LimitExceeded(ValueError):
    """A run went past one of its limits (events, wall-clock budget) or was cancelled; names the limit."""

    def __init__(self, limit: str, problem: str) -> None:
        super().__init__(f"{limit}: {problem}")
        self.limit = limit
        self.problem = problem


@dataclass
class Budget:
    """What a request's runs may spend: simulated events and wall-clock seconds; cancel() stops them."""

    max_events: int = MAX_EVENTS
    wall_s: float = BUDGET_S
    used_events: int = 0
    started: float = field(default_factory=time.monotonic)
    cancelled: threading.Event = field(default_factory=threading.Event)

    def cancel(self) -> None:
        """Stop the run at its next event (from any thread)."""
        self.cancelled.set()

    def check(self, events: int) -> None:
        """Account events; raise LimitExceeded when a limit is passed or the run was cancelled."""
        self.used_events += events
        if self.cancelled.is_set():
            raise LimitExceeded("cancelled", "the client went away or the server is stopping")
        if self.used_events > self.max_events:
            raise LimitExceeded("max_events", f"more than {self.max_events} simulated events; "
                                              "ask for a shorter horizon or fewer parts")
        if time.monotonic() - self.started > self.wall_s:
            raise LimitExceeded("budget_s", f"the run took more than {self.wall_s:g} s of wall-clock time; "
                                            "ask for a shorter horizon or fewer parts")


# -- inputs ------------------------------------------------------------------------------------


class Window(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """A span of time in seconds from now: [start_s, end_s)."""

    start_s: Seconds
    end_s: Seconds


class Machine(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """One machine as the twin sees it now, and how it behaves.

    remaining_s is how much longer the current state lasts, for setup, unplanned_down and
    planned_down only (a setup in progress is the changeover to its WIP's product, or to
    setup_for). A machine that finishes an unplanned_down with rul_parts 0 comes back with full
    life; a planned_down in progress does not change the life (seed rul_parts = life_parts if the
    twin knows it is a maintenance). rul_parts None means healthy or unknown: no wear-out is
    modelled and wear stays 0. The scrap rate of a part is scrap_base + scrap_slope × wear, with
    wear = 1 - rul/life when the part starts; scrap is taken at that expected rate (each part adds
    its rate to a running sum, and a part is scrapped whenever the sum passes a whole part), and a
    scrapped part still used a cycle and a part of life and is made again.
    """

    name: str
    state: StateName = "idle"
    remaining_s: float = 0.0
    setup_for: str = ""  # product the machine is set up for now; "" = none, so its first order needs a setup
    cycle_s: dict[str, float] = msgspec.field(default_factory=dict)  # product -> cycle time
    nominal_cycle_s: float | None = None  # cycle time of any product not in cycle_s
    rul_parts: int | None = None  # predicted parts until failure
    life_parts: int | None = None  # parts a repaired or maintained machine lasts; needed with rul_parts
    repair_s: float = 0.0  # down time after a breakdown or random failure
    maintenance_s: float = 0.0  # planned maintenance, which restores full life
    scrap_base: float = 0.0
    scrap_slope: float = 0.0
    mtbf_s: float | None = None  # random failures besides wear-out; None = none


class Order(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """An open order: quantity is the good parts still to make, due_s may be negative when overdue."""

    id: Name
    product: Name
    quantity: Annotated[int, msgspec.Meta(ge=1, le=MAX_QUANTITY, description=f"parts, 1..{MAX_QUANTITY}")]
    due_s: Seconds
    priority: int = 0  # higher goes first among orders due at the same time


class Wip(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """An order already started on a machine, set up for its product; order.quantity is the parts left."""

    machine: str
    order: Order


class Scenario(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """What to try.

    baseline: the line as it is. maintain_now: planned maintenance of machine at t=0 (after any
    down time it is in), then run. maintain_at_failure: run machine to failure, as the baseline
    does (named so the two read side by side). machine_down: machine planned down from start_s
    for duration_s; work pauses and resumes after. add_shift: window is one more shift window
    (nothing changes when the calendar is already always working).
    """

    kind: ScenarioKind = "baseline"
    machine: Name | None = None  # for maintain_now, maintain_at_failure, machine_down (required there)
    start_s: Seconds = 0.0  # for machine_down
    duration_s: Seconds = 0.0  # for machine_down
    window: Window | None = None  # for add_shift


class WhatIfRequest(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """The line's state now, the horizon and the scenario; shifts None means always working."""

    machines: list[Machine]
    horizon_s: Annotated[float, msgspec.Meta(gt=0, le=MAX_HORIZON_S)]
    orders: list[Order] = msgspec.field(default_factory=list)
    wip: list[Wip] = msgspec.field(default_factory=list)
    setup_s: float = 0.0  # changeover time when a machine's product changes
    shifts: list[Window] | None = None
    scenario: Scenario = msgspec.field(default_factory=Scenario)
    seed: int = 0
    log_first: int = 50  # events listed in the result's event summary


# -- outputs -----------------------------------------------------------------------------------


class Oee(msgspec.Struct, kw_only=True):
    """ISO 22400 OEE of a machine or the line over the horizon.

    POT (planned operation time) is shift time within the horizon; PBT (planned busy time) is
    POT minus the planned downtime inside shifts (maintenance, machine_down), so setup, idle and
    unplanned downtime in a shift count against availability. APT (actual production time) is
    time producing. availability = APT/PBT, effectiveness = planned_run_s/APT where planned_run_s
    is the cycle time of each part produced (good or scrap), quality = good/produced, oee = the
    product. Machines run at nominal rate, so effectiveness is below 1 only by a cycle cut off at
    the horizon. A ratio with a zero denominator is 0.
    """

    pot_s: float
    pbt_s: float
    apt_s: float
    planned_run_s: float
    produced: int
    good: int
    availability: float
    effectiveness: float
    quality: float
    oee: float


class MachineResult(msgspec.Struct, kw_only=True):
    """One machine over the horizon: seconds in each state (summing to the horizon), OEE, incidents."""

    name: str
    time_s: dict[str, float]
    oee: Oee
    good: int
    scrap: int
    breakdowns: int  # wear-out breakdowns
    failures: int  # random failures
    maintenances: int
    rul_parts_end: int | None


class Throughput(msgspec.Struct, kw_only=True):
    """What the line made within the horizon."""

    good: int
    scrap: int
    completed_orders: int


class OrderResult(msgspec.Struct, kw_only=True):
    """One order (WIP or open): who made it, when it finished (None = not within the horizon), how late."""

    id: Name
    product: Name
    quantity: Annotated[int, msgspec.Meta(ge=1, le=MAX_QUANTITY, description=f"parts, 1..{MAX_QUANTITY}")]
    due_s: Seconds
    made: int
    machine: str  # "" when no machine started it
    finished_s: float | None
    late_s: float


class Tardiness(msgspec.Struct, kw_only=True):
    """Lateness of orders: an order unfinished at the horizon is late by horizon - due if past due."""

    total_s: float
    max_s: float
    late_orders: int
    unfinished: list[str]


class Event(msgspec.Struct, kw_only=True):
    """One thing that happened in the run."""

    t_s: float
    kind: str  # order_start setup_start good_part scrap_part order_done breakdown failure repair_done
    # maintenance_start maintenance_done down_start down_end
    machine: str
    order: str = ""


class EventSummary(msgspec.Struct, kw_only=True):
    """How many events of each kind, and the first ones."""

    total: int
    counts: dict[str, int]
    first: list[Event]


class WhatIfResult(msgspec.Struct, kw_only=True):
    """Outcome of one run of the model."""

    scenario: Scenario
    horizon_s: float
    seed: int
    throughput: Throughput
    oee: Oee  # the line: sums of the machines' times and counts
    machines: list[MachineResult]
    tardiness: Tardiness
    orders: list[OrderResult]
    events: EventSummary


# -- public functions --------------------------------------------------------------------------


def run(request: WhatIfRequest, budget: Budget | None = None) -> WhatIfResult:
    """Run the model once; ValueError names the field of a bad request, LimitExceeded the limit passed."""
    return simulate(request, budget)[0]


def compare(request: WhatIfRequest, scenarios: list[Scenario], budget: Budget | None = None) -> list[WhatIfResult]:
    """Run the same request and seed under each scenario, in the order given, within one budget."""
    budget = budget or Budget()
    return [run(msgspec.structs.replace(request, scenario=s), budget) for s in scenarios]


def simulate(request: WhatIfRequest, budget: Budget | None = None) -> tuple[WhatIfResult, list[Event]]:
    """Run the model once and return the result with the full event log."""
    validate(request)
    sim = _Sim(request)
    sim.run(budget or Budget())
    return sim.result(), sim.events


def validate(request: WhatIfRequest) -> None:
    """Raise ValueError naming the first bad field of the request."""
    r = request
    _positive(r.horizon_s, "horizon_s")
    _not_negative(r.setup_s, "setup_s")
    if r.log_first < 0:
        raise ValueError(f"log_first: {r.log_first} is negative")
    if not r.machines:
        raise ValueError("machines: at least one machine is needed")
    for key, most in (("machines", MAX_MACHINES), ("orders", MAX_ORDERS), ("wip", MAX_MACHINES),
                      ("shifts", MAX_WINDOWS)):
        if len(getattr(r, key) or []) > most:
            raise LimitExceeded(key, f"{len(getattr(r, key))} given, at most {most}")
    if r.horizon_s > MAX_HORIZON_S:
        raise LimitExceeded("horizon_s", f"{r.horizon_s:g} s is beyond the limit of {MAX_HORIZON_S:g} s (30 days)")
    names: set[str] = set()
    for i, m in enumerate(r.machines):
        _validate_machine(m, f"machines[{i}]", names)
        names.add(m.name)
    by_name = {m.name: m for m in r.machines}
    ids: set[str] = set()
    busy: set[str] = set()
    for i, w in enumerate(r.wip):
        where = f"wip[{i}]"
        if w.machine not in by_name:
            raise ValueError(f"{where}.machine: no machine {w.machine!r}")
        if w.machine in busy:
            raise ValueError(f"{where}.machine: machine {w.machine!r} already has WIP")
        busy.add(w.machine)
        _validate_order(w.order, f"{where}.order", ids)
        if _cycle(by_name[w.machine], w.order.product) is None:
            raise ValueError(f"{where}.order.product: machine {w.machine!r} has no cycle time for {w.order.product!r}")
    for i, o in enumerate(r.orders):
        _validate_order(o, f"orders[{i}]", ids)
        if all(_cycle(m, o.product) is None for m in r.machines):
            raise UnknownProduct(f"orders[{i}].product", o.product)
    for i, w in enumerate(r.shifts or []):
        _validate_window(w, f"shifts[{i}]")
    _validate_scenario(r.scenario, by_name)


# -- validation helpers ------------------------------------------------------------------------


def _validate_machine(m: Machine, where: str, seen: set[str]) -> None:
    if not m.name:
        raise ValueError(f"{where}.name: empty")
    if m.name in seen:
        raise ValueError(f"{where}.name: duplicate machine {m.name!r}")
    if m.state not in (PRODUCING, IDLE, SETUP, UNPLANNED_DOWN, PLANNED_DOWN):
        raise ValueError(f"{where}.state: unknown state {m.state!r}")
    _not_negative(m.remaining_s, f"{where}.remaining_s")
    if m.remaining_s > 0 and m.state in (PRODUCING, IDLE):
        raise ValueError(f"{where}.remaining_s: only a setup or down machine has time remaining, not {m.state!r}")
    if not m.cycle_s and m.nominal_cycle_s is None:
        raise ValueError(f"{where}.cycle_s: no cycle time (give cycle_s or nominal_cycle_s)")
    for product, seconds in m.cycle_s.items():
        _positive(seconds, f"{where}.cycle_s[{product!r}]")
    if m.nominal_cycle_s is not None:
        _positive(m.nominal_cycle_s, f"{where}.nominal_cycle_s")
    if m.life_parts is not None and m.life_parts < 1:
        raise ValueError(f"{where}.life_parts: {m.life_parts} is below 1")
    if m.rul_parts is not None:
        if m.rul_parts < 0:
            raise ValueError(f"{where}.rul_parts: {m.rul_parts} is negative")
        if m.life_parts is None:
            raise ValueError(f"{where}.life_parts: needed with rul_parts")
        if m.rul_parts > m.life_parts:
            raise ValueError(f"{where}.rul_parts: {m.rul_parts} is above life_parts {m.life_parts}")
    _not_negative(m.repair_s, f"{where}.repair_s")
    _not_negative(m.maintenance_s, f"{where}.maintenance_s")
    if not (math.isfinite(m.scrap_base) and 0.0 <= m.scrap_base <= 1.0):
        raise ValueError(f"{where}.scrap_base: {m.scrap_base} is outside 0..1")
    if not (math.isfinite(m.scrap_slope) and 0.0 <= m.scrap_base + m.scrap_slope <= 1.0):
        top = m.scrap_base + m.scrap_slope
        raise ValueError(f"{where}.scrap_slope: scrap_base + scrap_slope = {top} is outside 0..1")
    if m.mtbf_s is not None:
        _positive(m.mtbf_s, f"{where}.mtbf_s")


def _validate_order(o: Order, where: str, seen: set[str]) -> None:
    if not o.id:
        raise ValueError(f"{where}.id: empty")
    if o.id in seen:
        raise ValueError(f"{where}.id: duplicate order {o.id!r}")
    seen.add(o.id)
    if o.quantity < 1:
        raise ValueError(f"{where}.quantity: {o.quantity} is below 1")
    if o.quantity > MAX_QUANTITY:
        raise LimitExceeded(f"{where}.quantity", f"{o.quantity} is beyond the limit of {MAX_QUANTITY} parts")
    if not math.isfinite(o.due_s):
        raise ValueError(f"{where}.due_s: {o.due_s} is not a number of seconds")


def _validate_window(w: Window, where: str) -> None:
    _not_negative(w.start_s, f"{where}.start_s")
    if not (math.isfinite(w.end_s) and w.end_s > w.start_s):
        raise ValueError(f"{where}.end_s: {w.end_s} is not after start_s {w.start_s}")


def _validate_scenario(s: Scenario, machines: dict[str, Machine]) -> None:
    if s.kind not in SCENARIO_KINDS:
        raise ValueError(f"scenario.kind: unknown kind {s.kind!r}")
    if s.kind in ("maintain_now", "maintain_at_failure", "machine_down"):
        if not s.machine:
            raise ValueError(f"scenario.machine: {s.kind} needs a machine")
        if s.machine not in machines:
            raise ValueError(f"scenario.machine: no machine {s.machine!r}")
    if s.kind == "machine_down":
        _not_negative(s.start_s, "scenario.start_s")
        _positive(s.duration_s, "scenario.duration_s")
    if s.kind == "add_shift":
        if s.window is None:
            raise ValueError("scenario.window: add_shift needs a window")
        _validate_window(s.window, "scenario.window")


def _positive(value: float, where: str) -> None:
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{where}: {value} is not a positive number of seconds")


def _not_negative(value: float, where: str) -> None:
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(f"{where}: {value} is negative or not a number")


def _cycle(m: Machine, product: str) -> float | None:
    return m.cycle_s.get(product, m.nominal_cycle_s)


# -- the model ---------------------------------------------------------------------------------

Segment = tuple[float, float, str]  # start, end, kind: _WORK, OFF_SHIFT or PLANNED_DOWN
Proc = Generator[simpy.Event, Any, None]


def _merge(windows: list[tuple[float, float]]) -> list[tuple[float, float]]:
    merged: list[tuple[float, float]] = []
    for a, b in sorted(windows):
        if merged and a <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], b))
        elif b > a:
            merged.append((a, b))
    return merged


def _calendar(shifts: list[tuple[float, float]], outage: tuple[float, float] | None, horizon: float) -> list[Segment]:
    """When a machine may work: shifts less its outage, up to the horizon, then always (nothing after counts)."""
    cuts = {0.0, horizon}
    for a, b in shifts + ([outage] if outage else []):
        cuts |= {min(a, horizon), min(b, horizon)}
    points = sorted(cuts)
    segments: list[Segment] = []
    for a, b in zip(points, points[1:]):
        mid = (a + b) / 2
        if outage and outage[0] <= mid < outage[1]:
            kind = PLANNED_DOWN
        elif any(s <= mid < e for s, e in shifts):
            kind = _WORK
        else:
            kind = OFF_SHIFT
        if segments and segments[-1][2] == kind:
            segments[-1] = (segments[-1][0], b, kind)
        else:
            segments.append((a, b, kind))
    segments.append((horizon, math.inf, _WORK))
    return segments


def _overlap(a: float, b: float, windows: list[tuple[float, float]]) -> float:
    return sum(max(0.0, min(b, e) - max(a, s)) for s, e in windows)


def _ratio(num: float, den: float) -> float:
    return num / den if den > 0 else 0.0


@dataclass
class _Job:
    order: Order
    made: int = 0
    machine: str = ""
    finished_s: float | None = None


@dataclass
class _Unit:
    """A machine's state while the model runs."""

    spec: Machine
    calendar: list[Segment]
    rng: random.Random
    rul: int | None
    product: str
    scrap_debt: float = 0.0
    produced: int = 0
    good: int = 0
    planned_run_s: float = 0.0
    breakdowns: int = 0
    failures: int = 0
    maintenances: int = 0
    intervals: list[tuple[str, float, float]] = field(default_factory=list)
    starts: list[float] = field(init=False)

    def __post_init__(self) -> None:
        self.starts = [s[0] for s in self.calendar]

    def segment(self, t: float) -> Segment:
        return self.calendar[bisect.bisect_right(self.starts, t) - 1]


class _Sim:
    def __init__(self, request: WhatIfRequest) -> None:
        r = request
        self.request = r
        self.horizon = float(r.horizon_s)
        self.env = simpy.Environment()
        self.events: list[Event] = []
        s = r.scenario
        shifts = [(w.start_s, w.end_s) for w in r.shifts] if r.shifts is not None else [(0.0, r.horizon_s)]
        if s.kind == "add_shift" and s.window is not None:
            shifts.append((s.window.start_s, s.window.end_s))
        self.shifts = _merge([(min(a, self.horizon), min(b, self.horizon)) for a, b in shifts])
        self.outage = (s.start_s, s.start_s + s.duration_s) if s.kind == "machine_down" else None
        self.maintain_now = (s.machine or "") if s.kind == "maintain_now" else ""
        self.units: list[_Unit] = []
        for m in r.machines:
            outage = self.outage if s.kind == "machine_down" and s.machine == m.name else None
            self.units.append(
                _Unit(
                    spec=m,
                    calendar=_calendar(self.shifts, outage, self.horizon),
                    # per machine, so one machine's failures do not shift another's draws
                    rng=random.Random(f"{r.seed}:{m.name}"),
                    rul=m.rul_parts,
                    product=m.setup_for,
                )
            )
        self.wip = {w.machine: _Job(w.order, machine=w.machine) for w in r.wip}
        open_jobs = [_Job(o) for o in r.orders]
        self.jobs = list(self.wip.values()) + open_jobs  # results list WIP first, then orders as given
        # sorted() is stable, so orders due together at one priority keep the order given
        self.queue = sorted(open_jobs, key=lambda j: (j.order.due_s, -j.order.priority))

    def run(self, budget: Budget) -> None:
        if self.outage is not None:
            self.env.process(self._outage_log(self.request.scenario.machine or "", *self.outage))
        for unit in self.units:
            self.env.process(self._machine(unit))
        # step rather than run(until=...) so that what happens at exactly the horizon still counts
        steps = 0
        while self.env.peek() <= self.horizon:
            self.env.step()
            steps += 1
            if steps == 1000:  # the budget is checked every 1000 events: cheap, and stops within ms
                budget.check(steps)
                steps = 0
        budget.check(steps)

    # -- processes -----------------------------------------------------------------------------

    def _outage_log(self, machine: str, start: float, end: float) -> Proc:
        yield self.env.timeout(start)
        self._log("down_start", machine)
        yield self.env.timeout(end - start)
        self._log("down_end", machine)

    def _machine(self, u: _Unit) -> Proc:
        m = u.spec
        if m.state in (UNPLANNED_DOWN, PLANNED_DOWN) and m.remaining_s > 0:
            yield from self._hold(u, m.state, m.remaining_s)
            if m.state == UNPLANNED_DOWN:
                if u.rul == 0:
                    u.rul = m.life_parts
                self._log("repair_done", m.name)
            else:
                self._log("down_end", m.name)
        if self.maintain_now == m.name:
            self._log("maintenance_start", m.name)
            yield from self._hold(u, PLANNED_DOWN, m.maintenance_s)
            u.maintenances += 1
            if u.rul is not None:
                u.rul = m.life_parts
            self._log("maintenance_done", m.name)
        wip = self.wip.get(m.name)
        if wip is not None:
            u.product = wip.order.product
        if m.state == SETUP and m.remaining_s > 0:
            yield from self._work(u, SETUP, m.remaining_s)
        if u.rul == 0:
            yield from self._breakdown(u)
        if wip is not None:
            yield from self._produce(u, wip)
        while True:
            yield from self._wait_for_work(u)
            if self.env.now >= self.horizon:
                return
            job = self._next_job(m)
            if job is None:
                self._rest(u)
                return
            job.machine = m.name
            self._log("order_start", m.name, job.order.id)
            if job.order.product != u.product:
                if self.request.setup_s > 0:
                    self._log("setup_start", m.name, job.order.id)
                    yield from self._work(u, SETUP, self.request.setup_s)
                u.product = job.order.product
            yield from self._produce(u, job)

    def _produce(self, u: _Unit, job: _Job) -> Proc:
        m, order = u.spec, job.order
        cycle = _cycle(m, order.product)
        assert cycle is not None  # validate() checked every machine given an order can make it
        while job.made < order.quantity:
            yield from self._wait_for_work(u)
            if self.env.now >= self.horizon:
                return
            # at most one random failure per cycle, so a short MTBF cannot loop without time passing
            if m.mtbf_s is not None and u.rng.random() < cycle / m.mtbf_s:
                u.failures += 1
                self._log("failure", m.name, order.id)
                yield from self._hold(u, UNPLANNED_DOWN, m.repair_s)
                self._log("repair_done", m.name)
            wear = 1.0 - u.rul / m.life_parts if u.rul is not None and m.life_parts else 0.0
            yield from self._work(u, PRODUCING, cycle)
            u.produced += 1
            u.planned_run_s += cycle
            if u.rul is not None:
                u.rul -= 1
            u.scrap_debt += min(1.0, max(0.0, m.scrap_base + m.scrap_slope * wear))
            if u.scrap_debt >= 1.0 - _EPS:
                u.scrap_debt -= 1.0
                self._log("scrap_part", m.name, order.id)
            else:
                u.good += 1
                job.made += 1
                self._log("good_part", m.name, order.id)
                if job.made == order.quantity:
                    job.finished_s = float(self.env.now)
                    self._log("order_done", m.name, order.id)
            if u.rul == 0:
                yield from self._breakdown(u)

    def _breakdown(self, u: _Unit) -> Proc:
        u.breakdowns += 1
        self._log("breakdown", u.spec.name)
        yield from self._hold(u, UNPLANNED_DOWN, u.spec.repair_s)
        u.rul = u.spec.life_parts
        self._log("repair_done", u.spec.name)

    # -- time ----------------------------------------------------------------------------------

    def _hold(self, u: _Unit, state: str, seconds: float) -> Proc:
        """Clock time in one state, shift or not."""
        u.intervals.append((state, self.env.now, self.env.now + seconds))
        yield self.env.timeout(seconds)

    def _work(self, u: _Unit, state: str, seconds: float) -> Proc:
        """Operator work: it advances only in the machine's working segments."""
        remaining = seconds
        while True:
            now = self.env.now
            _, end, kind = u.segment(now)
            if kind != _WORK:
                u.intervals.append((kind, now, end))
                yield self.env.timeout(end - now)
                continue
            if remaining <= end - now + _EPS:
                u.intervals.append((state, now, now + remaining))
                yield self.env.timeout(remaining)
                return
            u.intervals.append((state, now, end))
            remaining -= end - now
            yield self.env.timeout(end - now)

    def _wait_for_work(self, u: _Unit) -> Proc:
        while True:
            now = self.env.now
            _, end, kind = u.segment(now)
            if kind == _WORK:
                return
            u.intervals.append((kind, now, end))
            yield self.env.timeout(end - now)

    def _rest(self, u: _Unit) -> None:
        """Nothing left for this machine: idle in its working time up to the horizon."""
        for start, end, kind in u.calendar:
            a, b = max(start, self.env.now), min(end, self.horizon)
            if b > a:
                u.intervals.append((IDLE if kind == _WORK else kind, a, b))

    def _next_job(self, m: Machine) -> _Job | None:
        for i, job in enumerate(self.queue):
            if _cycle(m, job.order.product) is not None:
                return self.queue.pop(i)
        return None

    def _log(self, kind: str, machine: str, order: str = "") -> None:
        self.events.append(Event(t_s=float(self.env.now), kind=kind, machine=machine, order=order))

    # -- results -------------------------------------------------------------------------------

    def result(self) -> WhatIfResult:
        machines = [self._machine_result(u) for u in self.units]
        orders = [self._order_result(j) for j in self.jobs]
        late = [o.late_s for o in orders if o.late_s > 0]
        counts = Counter(e.kind for e in self.events)
        return WhatIfResult(
            scenario=self.request.scenario,
            horizon_s=self.horizon,
            seed=self.request.seed,
            throughput=Throughput(
                good=sum(u.good for u in self.units),
                scrap=sum(u.produced - u.good for u in self.units),
                completed_orders=sum(1 for o in orders if o.finished_s is not None),
            ),
            oee=_oee(
                pot=sum(r.oee.pot_s for r in machines),
                pbt=sum(r.oee.pbt_s for r in machines),
                apt=sum(r.oee.apt_s for r in machines),
                planned_run=sum(r.oee.planned_run_s for r in machines),
                produced=sum(r.oee.produced for r in machines),
                good=sum(r.oee.good for r in machines),
            ),
            machines=machines,
            tardiness=Tardiness(
                total_s=sum(late),
                max_s=max(late, default=0.0),
                late_orders=len(late),
                unfinished=[o.id for o in orders if o.finished_s is None],
            ),
            orders=orders,
            events=EventSummary(
                total=len(self.events),
                counts=dict(sorted(counts.items())),
                first=self.events[: self.request.log_first],
            ),
        )

    def _machine_result(self, u: _Unit) -> MachineResult:
        time_s = dict.fromkeys(STATES, 0.0)
        planned_in_shift = 0.0
        for state, start, end in u.intervals:
            a, b = max(start, 0.0), min(end, self.horizon)
            if b > a:
                time_s[state] += b - a
                if state == PLANNED_DOWN:
                    planned_in_shift += _overlap(a, b, self.shifts)
        pot = float(sum(b - a for a, b in self.shifts))
        return MachineResult(
            name=u.spec.name,
            time_s=time_s,
            oee=_oee(pot, pot - planned_in_shift, time_s[PRODUCING], u.planned_run_s, u.produced, u.good),
            good=u.good,
            scrap=u.produced - u.good,
            breakdowns=u.breakdowns,
            failures=u.failures,
            maintenances=u.maintenances,
            rul_parts_end=u.rul,
        )

    def _order_result(self, job: _Job) -> OrderResult:
        o = job.order
        end = job.finished_s if job.finished_s is not None else self.horizon
        return OrderResult(
            id=o.id,
            product=o.product,
            quantity=o.quantity,
            due_s=float(o.due_s),
            made=job.made,
            machine=job.machine,
            finished_s=job.finished_s,
            late_s=max(0.0, float(end - o.due_s)),
        )


def _oee(pot: float, pbt: float, apt: float, planned_run: float, produced: int, good: int) -> Oee:
    availability, effectiveness, quality = _ratio(apt, pbt), _ratio(planned_run, apt), _ratio(good, produced)
    return Oee(
        pot_s=pot,
        pbt_s=pbt,
        apt_s=apt,
        planned_run_s=planned_run,
        produced=produced,
        good=good,
        availability=availability,
        effectiveness=effectiveness,
        quality=quality,
        oee=availability * effectiveness * quality,
    )
