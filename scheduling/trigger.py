"""Automatic rescheduling from the twin: a machine that goes Down (or comes back) and stays so for the debounce
time becomes a machine_down / machine_back event on a schedule's latest version.

The twin records each machine's state in `machine_status`; `TwinTrigger.poll` reads it (scheduling may import
only the historian, so it reads the table, not the twin), the Debouncer decides, `store` keeps the new version.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import psycopg

from scheduling import store
from scheduling.events import Event, diff, reschedule

log = logging.getLogger(__name__)
DOWN_STATES = frozenset({"unplanned_down"})


@dataclass
class TriggerConfig:
    """Which schedule to keep current, how long a state must hold before it counts, and how hard to re-solve."""

    schedule_id: int
    debounce_s: float = 60.0
    poll_s: float = 5.0
    time_limit_s: float = 5.0
    workers: int = 2
    down_states: frozenset[str] = DOWN_STATES


@dataclass
class Debouncer:
    """Per machine: report down/up only after the new condition has held for `seconds` without flapping back."""

    seconds: float
    reported: dict[str, bool] = field(default_factory=dict)       # machine -> last reported down?
    pending: dict[str, tuple[bool, datetime]] = field(default_factory=dict)

    def feed(self, machine: str, down: bool, since: datetime, now: datetime) -> str | None:
        """'machine_down' / 'machine_back' when a change has held long enough, else None."""
        last = self.reported.get(machine, False)
        if down == last:
            self.pending.pop(machine, None)
            return None
        pend = self.pending.get(machine)
        if pend is None or pend[0] != down:
            self.pending[machine] = pend = (down, since)
        if (now - pend[1]).total_seconds() >= self.seconds:
            self.reported[machine] = down
            self.pending.pop(machine, None)
            return "machine_down" if down else "machine_back"
        return None


class TwinTrigger:
    """Polls the twin's machine states and turns debounced changes into new schedule versions."""

    def __init__(self, config: TriggerConfig) -> None:
        self.config = config
        self.debouncer = Debouncer(config.debounce_s)

    async def poll(self, conn: psycopg.AsyncConnection, now: datetime | None = None) -> list[int]:
        """One look at machine_status; returns the versions it added."""
        now = now or datetime.now(timezone.utc)
        cur = await conn.execute("SELECT m.name, s.state, coalesce(s.state_since, s.updated_at) FROM machine_status s "
                                 "JOIN machines m ON m.id = s.machine_id")
        added = []
        for name, state, since in await cur.fetchall():
            kind = self.debouncer.feed(name, state in self.config.down_states, since, now)
            if kind is not None:
                v = await self._apply(conn, name, kind, since)
                if v is not None:
                    added.append(v)
        return added

    async def _apply(self, conn: psycopg.AsyncConnection, machine: str, kind: str, since: datetime) -> int | None:
        head = await store.get(conn, self.config.schedule_id)
        v = await store.version(conn, self.config.schedule_id)
        if head is None or v is None:
            return None
        inst, previous = v["model"]
        if machine not in inst.machines:
            return None
        at = max(0, int((since - head["origin"]).total_seconds()))
        event = Event(kind, at, machine=inst.machines.index(machine))
        rs = await asyncio.to_thread(reschedule, inst, previous, event, time_limit=self.config.time_limit_s,
                                     workers=self.config.workers)
        new = rs.optimised.schedule or rs.repaired
        d = diff(previous, new)
        number = await store.add_version(
            conn, self.config.schedule_id, head["origin"], rs.instance, new,
            cause={"kind": kind, "machine": machine, "at": since.isoformat(), "source": "twin"},
            status=rs.optimised.status, objective=rs.optimised_objective, bound=None, gap=None,
            solve_s=rs.optimised.seconds, diff={"moved_ops": len(d.moved), "shifted_ops": d.shifted},
            right_shift={"objective": rs.repaired_objective, "moved_ops": len(rs.repair_diff.moved)})
        log.info("rescheduled", extra={"action": "reschedule", "machine": machine, "kind": kind, "version": number})
        return number

    async def run(self, dsn: str, stop: asyncio.Event) -> None:
        """Poll every poll_s until stop is set; a database outage is logged and retried."""
        while not stop.is_set():
            try:
                async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
                    while not stop.is_set():
                        await self.poll(conn)
                        try:
                            await asyncio.wait_for(stop.wait(), self.config.poll_s)
                        except asyncio.TimeoutError:
                            pass
            except psycopg.OperationalError as e:
                log.warning("trigger database error", extra={"action": "retry", "error": str(e)})
                try:
                    await asyncio.wait_for(stop.wait(), self.config.poll_s)
                except asyncio.TimeoutError:
                    pass


__all__: list[Any] = ["TriggerConfig", "Debouncer", "TwinTrigger"]
