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
    mtbf_s: float = 8 * 3600.0
    """Random failures of a machine whose RUL is unknown, when its last week had no unplanned stop to
    measure an MTBF from (producing time / unplanned stops)."""


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
    rows = await cur.fetchall()
    routing = await routing_cycles(conn)
    mtbf = await measured_mtbf(conn)
    now = datetime.now(timezone.utc)
    machines = []
    for name, state, since, rul, producing_s, parts in rows:
        state = state if state in _STATES else "idle"
        elapsed = (now - since).total_seconds() if since else 0.0
        remaining = 0.0
        if state == "unplanned_down":
            remaining = max(defaults.repair_s - elapsed, 0.0)
        elif state in ("setup", "planned_down"):
            remaining = max(defaults.maintenance_s - elapsed, 0.0) if state == "planned_down" else 0.0
        cycle = float(producing_s) / float(parts) if producing_s and parts else defaults.nominal_cycle_s
        rul_parts = None if rul is None else max(0, min(int(round(float(rul))), defaults.life_parts))
        cycles = routing.get(name, {})
        machines.append(Machine(
            name=name, state=state, remaining_s=remaining,
            # a machine with routings makes exactly their products at their cycle times; one without any
            # makes anything at the cycle time observed (or the default)
            cycle_s=cycles, nominal_cycle_s=None if cycles else cycle,
            rul_parts=rul_parts, life_parts=defaults.life_parts, repair_s=defaults.repair_s,
            maintenance_s=defaults.maintenance_s, scrap_base=defaults.scrap_base, scrap_slope=defaults.scrap_slope,
            # wear-out is modelled from the RUL; with none known, breakdowns come from the MTBF
            mtbf_s=None if rul_parts is not None else mtbf.get(name, defaults.mtbf_s),
        ))
    return machines


async def routing_cycles(conn: psycopg.AsyncConnection) -> dict[str, dict[str, float]]:
    """Machine -> product -> cycle time (s) of the product's newest active routing on that machine."""
    cur = await conn.execute(
        """SELECT m.name, p.code, sum(o.cycle_s)
           FROM routings r JOIN products p ON p.id = r.product_id
           JOIN routing_operations o ON o.routing_id = r.id
           JOIN routing_operation_machines om ON om.routing_operation_id = o.id
           JOIN machines m ON m.id = om.machine_id
           WHERE r.active AND r.version = (SELECT max(version) FROM routings r2
                                           WHERE r2.product_id = r.product_id AND r2.active)
           GROUP BY m.name, p.code"""
    )
    out: dict[str, dict[str, float]] = {}
    for machine, product, cycle in await cur.fetchall():
        out.setdefault(machine, {})[product] = float(cycle)
    return out


async def measured_mtbf(conn: psycopg.AsyncConnection) -> dict[str, float]:
    """Machine -> producing seconds per unplanned stop over the last week, where it stopped at least once."""
    cur = await conn.execute(
        """SELECT m.name, sum(extract(epoch FROM i.end_ts - i.start_ts)) FILTER (WHERE i.state = 'producing')
                  / count(*) FILTER (WHERE i.state = 'unplanned_down')
           FROM state_intervals i JOIN machines m ON m.id = i.machine_id
           WHERE i.end_ts > now() - interval '7 days'
           GROUP BY m.name HAVING count(*) FILTER (WHERE i.state = 'unplanned_down') > 0"""
    )
    return {name: float(v) for name, v in await cur.fetchall() if v}


async def known_products(conn: psycopg.AsyncConnection, codes: list[str]) -> set[str]:
    """Which of these product codes the MES knows."""
    cur = await conn.execute("SELECT code FROM products WHERE code = ANY(%s)", (codes,))
    return {r[0] for r in await cur.fetchall()}
