"""The what-if model's machines as the twin sees them now: state, predicted life left, observed cycle time."""

from __future__ import annotations

from datetime import datetime, timezone

import msgspec
import psycopg

from twin.whatif import Machine


class SeedDefaults(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """What the twin cannot observe and the what-if model needs; a request may override each."""

    nominal_cycle_s: float = 6.0
    """Used when a machine made no parts in the last hour to measure its cycle time from."""
    life_parts: int = 200
    """Parts a maintained machine lasts (C-MAPSS FD001 engines run ~200 cycles; one cycle per part here)."""
    repair_s: float = 600.0
    maintenance_s: float = 1800.0
    scrap_base: float = 0.01
    scrap_slope: float = 0.08


_STATES = {"producing", "idle", "setup", "unplanned_down", "planned_down"}


async def machines_from_twin(conn: psycopg.AsyncConnection, defaults: SeedDefaults) -> list[Machine]:
    """One what-if machine per machine the twin reports, in name order."""
    cur = await conn.execute(
        """SELECT m.name, s.state, s.state_since, s.predictions -> 'rul' ->> 'value',
                  (SELECT sum(extract(epoch FROM least(i.end_ts, now()) - greatest(i.start_ts, now() - interval '1 hour')))
                   FROM state_intervals i WHERE i.machine_id = m.id AND i.state = 'producing'
                     AND i.end_ts > now() - interval '1 hour'),
                  (SELECT sum(c.good + c.scrap) FROM part_counts c
                   WHERE c.machine_id = m.id AND c.ts > now() - interval '1 hour')
           FROM machine_status s JOIN machines m ON m.id = s.machine_id ORDER BY m.name"""
    )
    now = datetime.now(timezone.utc)
    machines = []
    for name, state, since, rul, producing_s, parts in await cur.fetchall():
        state = state if state in _STATES else "idle"
        elapsed = (now - since).total_seconds() if since else 0.0
        remaining = 0.0
        if state == "unplanned_down":
            remaining = max(defaults.repair_s - elapsed, 0.0)
        elif state in ("setup", "planned_down"):
            remaining = max(defaults.maintenance_s - elapsed, 0.0) if state == "planned_down" else 0.0
        cycle = float(producing_s) / float(parts) if producing_s and parts else defaults.nominal_cycle_s
        rul_parts = None if rul is None else max(0, min(int(round(float(rul))), defaults.life_parts))
        machines.append(Machine(
            name=name, state=state, remaining_s=remaining, nominal_cycle_s=cycle,
            rul_parts=rul_parts, life_parts=defaults.life_parts, repair_s=defaults.repair_s,
            maintenance_s=defaults.maintenance_s, scrap_base=defaults.scrap_base, scrap_slope=defaults.scrap_slope,
        ))
    return machines
