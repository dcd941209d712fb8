"""The alarm rate ISA-18.2 asks for, measured on the plant's line model streamed through the twin service.

The plant's simpy line (plant/line.py) runs in simulated time; each simulated second every machine's
signals are handed to a real TwinService (on a real database) the way the gateway's tap does, and the
alarms it records are counted: an idle machine whose readings hold still raises none in 10 minutes, and
the producing machines raise at most one new alarm each per 10 minutes of normal running.
"""

from __future__ import annotations

import msgspec

from historian.registry import MachineSpec, TagSpec, register
from historian.samples import Batch, SampleBatch, to_us
from plant.line import STATE_CODES, Line
from tests.historian.helpers import T0
from tests.twin.test_twin_service import running, until
from twin.config import TwinConfig
from twin.service import TwinService

LINE = ["press1", "press2", "oven1"]
IDLE = "lathe1"  # powered, never given work: its readings hold still, as lathe1's did in the demo
SIGNALS = {"state": "StateCode", "good": "GoodCount", "scrap": "ScrapCount",
           "temp": "Temperature", "pressure": "Pressure", "vibration": "Vibration"}
IDLE_VALUES = {"state": STATE_CODES["idle"], "good": 0, "scrap": 0, "temp": 1400.0, "pressure": 550.0,
               "vibration": 0.074956}
CONFIG = msgspec.convert({
    "tick_interval": 0.02, "record_interval": 0.05,
    "machines": [
        {"name": m, "state_tag": f"{m}.state", "good_counter_tag": f"{m}.good", "scrap_counter_tag": f"{m}.scrap",
         "sensors": [{"tag": f"{m}.{s}"} for s in ("temp", "pressure", "vibration")]}
        for m in [*LINE, IDLE]
    ],
}, TwinConfig)
MINUTES = 60


async def stream(service: TwinService, registry, minutes: int) -> int:  # type: ignore[no-untyped-def]
    """Run the line for `minutes` simulated minutes, one reading of every signal per second; the last time."""
    line = Line(LINE, seed=11)
    ids = {name: info.id for name, info in registry.by_name.items()}
    t_us = to_us(T0)
    for minute in range(minutes):
        tags, times, values = [], [], []
        for second in range(60):
            line.advance(1.0)
            t_us = to_us(T0) + (minute * 60 + second) * 1_000_000
            for m in [*LINE, IDLE]:
                readings = line.machines[m].values() if m in line.machines else None
                for key, plant_name in SIGNALS.items():
                    value = readings[plant_name] if readings else IDLE_VALUES[key]
                    tags.append(ids[f"{m}.{key}"])
                    times.append(t_us)
                    values.append(float(value))
        service.observe(Batch(SampleBatch.from_columns(tags, times, values)))
    return t_us


async def test_alarm_rate_on_the_line_model(dsn, conn):
    registry = await register(
        conn, [TagSpec(f"{m}.{k}", "machine", machine=m) for m in [*LINE, IDLE] for k in SIGNALS],
        [MachineSpec(m) for m in [*LINE, IDLE]])
    service = TwinService(CONFIG, dsn)
    async with running(service):
        last = await stream(service, registry, MINUTES)
        await until(lambda: _taken(service), lambda t: t == last, timeout=120)
    cur = await conn.execute("SELECT machine, rule, count(*) FROM alarms_named GROUP BY 1, 2 ORDER BY 1, 2")
    raised = {(m, r): n for m, r, n in await cur.fetchall()}
    per_machine = {m: sum(n for (mm, _), n in raised.items() if mm == m) for m in [*LINE, IDLE]}
    print("alarms raised per machine over", MINUTES, "simulated minutes:", per_machine, raised)
    assert per_machine[IDLE] == 0
    for m in LINE:
        assert per_machine[m] <= MINUTES / 10, (m, raised)
    # the line did produce, so the rules ran: every sensor of a producing machine learned its baseline
    cur = await conn.execute("SELECT m.name, s.state, s.good_total FROM machine_status s "
                             "JOIN machines m ON m.id = s.machine_id")
    totals = {name: good for name, _, good in await cur.fetchall()}
    assert all(totals[m] > 100 for m in LINE) and totals[IDLE] == 0


async def _taken(service: TwinService) -> int:
    return service.twin.last_ts_max() if service.twin else 0
