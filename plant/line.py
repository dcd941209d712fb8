"""A small production line as a simpy model: the plant behind the simulated devices.

Machines take lots from a queue of orders, change over when the product changes, produce parts
at their cycle time, fail and get repaired, and need an operator on shift to run. Each machine
wears like one C-MAPSS engine: its temperature, pressure and speed signals replay that engine's
run-to-failure trajectory one cycle per part, and the machine breaks down when the trajectory
ends (then it is repaired and starts again on the next engine). Vibration is the RMS of a CWRU
drive-end bearing recording, switching from the healthy to a faulty bearing as wear grows.
Energy follows the state. The model runs in simulated seconds; `Line.advance(dt)` moves it on.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path

import simpy

from plant import ai4i, cmapss
from plant.bearing import vibration_rms

# ISO 22400 machine states
PRODUCING, IDLE, SETUP, UNPLANNED_DOWN, PLANNED_DOWN = "producing", "idle", "setup", "unplanned_down", "planned_down"
STATE_CODES = {PRODUCING: 1, IDLE: 2, SETUP: 3, UNPLANNED_DOWN: 4, PLANNED_DOWN: 5}
PRODUCTS = {"bracket-A": 6.0, "bracket-B": 7.5, "housing-C": 11.0}  # product -> cycle time (s)
POWER_KW = {PRODUCING: 22.0, SETUP: 6.0, IDLE: 3.5, UNPLANNED_DOWN: 0.8, PLANNED_DOWN: 0.5}


@dataclass
class MachineState:
    """Everything a device of this machine reports, 4M1E: who, what, how, with what, how much energy."""

    name: str
    state: str = IDLE
    speed: float = 0.0  # parts per minute
    temperature: float = 0.0  # C-MAPSS T50 (LPT outlet), degR
    pressure: float = 0.0  # C-MAPSS P30 (HPC outlet), psia
    vibration: float = 0.0  # bearing RMS, g
    good_count: int = 0
    scrap_count: int = 0
    current_lot: str = ""
    operator_badge: str = ""
    recipe: str = ""
    energy_kwh: float = 0.0
    power_kw: float = POWER_KW[IDLE]
    wear: float = 0.0  # 0 new .. 1 at end of life
    speed_setpoint: float = 100.0  # percent of nominal rate, writable by the MES
    engine: list[float] = field(default_factory=lambda: [0.0] * 24)  # C-MAPSS setting1..3, s1..s21 of this cycle
    process: list[float] = field(default_factory=lambda: [0.0] * 5)  # AI4I air K, process K, rpm, Nm, tool wear
    cycles: int = 0  # operating cycles since the machine was last renewed (its engine's cycle number)

    def values(self) -> dict[str, float | int | str]:
        """The signals as devices publish them."""
        return {
            "State": self.state,
            "StateCode": STATE_CODES[self.state],
            "Speed": round(self.speed, 3),
            "Temperature": self.temperature,
            "Pressure": self.pressure,
            "Vibration": round(self.vibration, 6),
            "GoodCount": self.good_count,
            "ScrapCount": self.scrap_count,
            "CurrentLot": self.current_lot,
            "OperatorBadge": self.operator_badge,
            "Recipe": self.recipe,
            "EnergyKWh": round(self.energy_kwh, 6),
            "PowerKW": self.power_kw,
            "SpeedSetpoint": self.speed_setpoint,
        }


@dataclass
class Lot:
    """A work order's lot: product, quantity, and the raw lot it consumes."""

    lot_id: str
    product: str
    quantity: int
    raw_lot: str


@dataclass
class Line:
    """The simpy model of the line; read machine states, move time on with advance()."""

    machine_names: list[str]
    seed: int = 7
    data_root: Path | None = None
    mtbf_s: float = 4 * 3600.0  # random failures besides wear-out
    mttr_s: float = 600.0
    shift_s: float = 8 * 3600.0
    env: simpy.Environment = field(init=False)
    machines: dict[str, MachineState] = field(init=False)
    lots_done: list[Lot] = field(init=False, default_factory=list)

    def __post_init__(self) -> None:
        self.env = simpy.Environment()
        self.rng = random.Random(self.seed)
        self.machines = {n: MachineState(n) for n in self.machine_names}
        self.engines = cmapss.read("FD001", root=self.data_root)
        self.process_rows = ai4i.process_rows(self.data_root)
        self._process_at = {n: 997 * i for i, n in enumerate(self.machine_names)}  # each its own stretch
        self.orders: simpy.Store = simpy.Store(self.env)
        # one operator per machine on shift: every machine of the plant produces from the start
        self.operators = simpy.Resource(self.env, capacity=len(self.machine_names))
        self._lot_no = 0
        self.env.process(self._order_release())
        for i, name in enumerate(self.machine_names):
            # sensors read something from the start, as a powered machine's do
            self._sense(self.machines[name], self.engines[i % len(self.engines)], 0)
            self.env.process(self._machine(name, engine=i))

    def advance(self, seconds: float) -> None:
        """Run the model for this many simulated seconds."""
        self.env.run(until=self.env.now + seconds)

    def set_speed(self, machine: str, percent: float) -> None:
        """Write-back from the MES: the machine runs at this percent of its nominal rate."""
        if not 10.0 <= percent <= 120.0:
            raise ValueError(f"speed setpoint {percent} is outside 10..120 %")
        self.machines[machine].speed_setpoint = percent

    # -- processes ----------------------------------------------------------------------------

    def _order_release(self):  # type: ignore[no-untyped-def]
        while True:
            if len(self.orders.items) < 2 * len(self.machine_names):
                self._lot_no += 1
                product = self.rng.choice(list(PRODUCTS))
                lot = Lot(f"LOT-{self._lot_no:05d}", product, self.rng.randint(20, 60), f"RAW-{self._lot_no:05d}")
                yield self.orders.put(lot)
            yield self.env.timeout(30)

    def _machine(self, name: str, engine: int):  # type: ignore[no-untyped-def]
        m = self.machines[name]
        unit = engine % len(self.engines)
        cycle = 0
        last_product = ""
        while True:
            m.state, m.speed = IDLE, 0.0
            self._set_power(m)
            lot: Lot = yield self.orders.get()
            with self.operators.request() as shift:
                yield shift
                m.operator_badge = f"B-{100 + self.rng.randint(0, 20):03d}"
                m.current_lot, m.recipe = lot.lot_id, f"{lot.product}/v{1 + self._lot_no % 3}"
                if lot.product != last_product:
                    m.state, m.speed = SETUP, 0.0
                    self._set_power(m)
                    yield from self._timed(m, self.rng.uniform(120, 300))
                    last_product = lot.product
                made = 0
                while made < lot.quantity:
                    trajectory = self.engines[unit]
                    if cycle >= len(trajectory.data) or self.rng.random() < PRODUCTS[lot.product] / self.mtbf_s:
                        # end of life (wear-out) or a random failure: down until repaired
                        m.state, m.speed = UNPLANNED_DOWN, 0.0
                        self._set_power(m)
                        yield from self._timed(m, self.rng.expovariate(1 / self.mttr_s))
                        if cycle >= len(trajectory.data):
                            unit, cycle = (unit + len(self.machine_names)) % len(self.engines), 0
                        continue
                    m.state = PRODUCING
                    self._set_power(m)
                    self._sense(m, trajectory, cycle)
                    self._process(m)
                    cycle_time = PRODUCTS[lot.product] * 100.0 / m.speed_setpoint
                    m.speed = 60.0 / cycle_time
                    yield from self._timed(m, cycle_time)
                    cycle += 1
                    # worn machines make more scrap
                    if self.rng.random() < 0.01 + 0.08 * m.wear**3:
                        m.scrap_count += 1
                    else:
                        m.good_count += 1
                        made += 1
                self.lots_done.append(lot)
                m.operator_badge = ""

    def _timed(self, m: MachineState, seconds: float):  # type: ignore[no-untyped-def]
        start = self.env.now
        yield self.env.timeout(seconds)
        m.energy_kwh += m.power_kw * (self.env.now - start) / 3600.0

    def _set_power(self, m: MachineState) -> None:
        m.power_kw = POWER_KW[m.state] * (0.7 + 0.3 * m.speed_setpoint / 100.0 if m.state == PRODUCING else 1.0)

    def _process(self, m: MachineState) -> None:
        i = self._process_at[m.name] % len(self.process_rows)
        m.process = [float(v) for v in self.process_rows[i]]
        self._process_at[m.name] = i + 1

    def _sense(self, m: MachineState, trajectory: cmapss.Trajectory, cycle: int) -> None:
        m.wear = cycle / max(len(trajectory.data) - 1, 1)
        m.engine = [float(v) for v in trajectory.data[cycle, 2:26]]
        m.cycles = int(trajectory.data[cycle, 1])
        m.temperature = float(trajectory.column("s4")[cycle])
        m.pressure = float(trajectory.column("s7")[cycle])
        m.vibration = vibration_rms(m.wear, cycle, root=self.data_root)
