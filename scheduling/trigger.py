"""Automatic rescheduling from the twin: a machine that goes Down (or comes back) and stays so for the debounce
time becomes a machine_down / machine_back event on a schedule's latest version.

The twin records each machine's state in `machine_status`; `TwinTrigger.poll` reads it (scheduling may import
only the historian, so it reads the table, not the twin), the Debouncer decides, `store` keeps the new version.
`shopfloor serve` runs it when `[scheduling] trigger = "latest"` (api.app's lifespan, `trigger_config`).
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import psycopg

from scheduling import store
from scheduling.config import STABILITY_TOLERANCE, SchedulingConfig
from scheduling.events import Event, diff, reschedule
from scheduling.validate import violations

log = logging.getLogger(__name__)
DOWN_STATES = frozenset({"unplanned_down"})
_LOCK = 0x53434844  # advisory lock key ("SCHD"): one trigger per database acts, another serve's waits


@dataclass
class TriggerConfig:
    """Which schedule to keep current, how long a state must hold before it counts, and how hard to re-solve."""

    schedule_id: int | None = None  # None: the newest schedule that has a version, looked up at every poll
    debounce_s: float = 60.0
    poll_s: float = 5.0
    time_limit_s: float = 5.0
    workers: int = 2
    tolerance: float = STABILITY_TOLERANCE
    move_weight: int | None = None
    shift_weight: int = 1
    down_states: frozenset[str] = DOWN_STATES


def trigger_config(table: SchedulingConfig) -> TriggerConfig | None:
    """The trigger the [scheduling] table asks `shopfloor serve` for, or None when `trigger = "off"`."""
    if table.trigger == "off":
        return None
    return TriggerConfig(None, debounce_s=table.trigger_debounce_s, poll_s=table.trigger_poll_s,
                         time_limit_s=table.time_limit_s, workers=min(table.workers, os.cpu_count() or 1),
                         tolerance=table.stability_tolerance, move_weight=table.move_weight,
                         shift_weight=table.shift_weight)


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
        self.target: int | None = None          # the schedule the debouncer's state is about
        self.cancel = threading.Event()         # set when run() is told to stop: a re-solve ends with its best so far

    async def poll(self, conn: psycopg.AsyncConnection, now: datetime | None = None) -> list[int]:
        """One look at machine_status; returns the versions it added."""
        now = now or datetime.now(timezone.utc)
        sid = self.config.schedule_id if self.config.schedule_id is not None else await store.newest(conn)
        if sid is None:
            return []
        if sid != self.target:
            # a schedule not followed yet (a new one, or after a restart): what its versions already say about each
            # machine is the baseline, so a machine down before it was made becomes an event, and one whose
            # breakdown a version already holds does not become a second
            self.target = sid
            self.debouncer = Debouncer(self.config.debounce_s, reported=await store.machines_down(conn, sid))
        cur = await conn.execute("SELECT m.name, s.state, coalesce(s.state_since, s.updated_at) FROM machine_status s "
                                 "JOIN machines m ON m.id = s.machine_id")
        added = []
        for name, state, since in await cur.fetchall():
            kind = self.debouncer.feed(name, state in self.config.down_states, since, now)
            if kind is not None:
                v = await self._apply(conn, sid, name, kind, since)
                if v is not None:
                    added.append(v)
        return added

    async def _apply(self, conn: psycopg.AsyncConnection, sid: int, machine: str, kind: str,
                     since: datetime) -> int | None:
        head = await store.get(conn, sid)
        v = await store.version(conn, sid)
        if head is None or v is None:
            return None
        inst, previous = v["model"]
        if machine not in inst.machines:
            return None
        at = max(0, int((since - head["origin"]).total_seconds()))
        event = Event(kind, at, machine=inst.machines.index(machine))
        c = self.config
        # re-optimised for the schedule's own objective (the first one when lexicographic)
        rs = await asyncio.to_thread(reschedule, inst, previous, event, time_limit=c.time_limit_s, workers=c.workers,
                                     kind=head["objective"].split(",")[0], move_weight=c.move_weight,
                                     shift_weight=c.shift_weight, tolerance=c.tolerance, cancel=self.cancel)
        new = rs.optimised.schedule or rs.repaired
        problems = violations(rs.instance, new)
        if problems:
            log.warning("no valid schedule after the event", extra={"action": "skip", "machine": machine,
                                                                     "kind": kind, "problem": problems[0]})
            return None
        d = diff(previous, new)
        number = await store.add_version(
            conn, sid, head["origin"], rs.instance, new,
            cause={"kind": kind, "machine": machine, "at": since.isoformat(), "source": "twin"},
            status=rs.optimised.status, objective=rs.optimised_objective, bound=None, gap=None,
            solve_s=rs.optimised.seconds, diff={"moved_ops": len(d.moved), "shifted_ops": d.shifted},
            right_shift={"objective": rs.repaired_objective, "moved_ops": len(rs.repair_diff.moved)})
        log.info("rescheduled", extra={"action": "reschedule", "schedule": sid, "machine": machine, "kind": kind,
                                       "version": number})
        return number

    async def run(self, dsn: str, stop: asyncio.Event) -> None:
        """Poll every poll_s until stop is set; a database outage or a failed poll is logged and retried."""
        watcher = asyncio.create_task(stop.wait())
        watcher.add_done_callback(lambda t: t.cancelled() or self.cancel.set())  # not when run() ends by itself
        try:
            while not stop.is_set():
                try:
                    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
                        await self._follow(conn, stop)
                except psycopg.OperationalError as e:
                    log.warning("trigger database error", extra={"action": "retry", "error": str(e)})
                    await _pause(stop, self.config.poll_s)
                except Exception:  # noqa: BLE001  (logged and retried: a server's trigger must not end silently)
                    log.exception("trigger failed", extra={"action": "retry"})
                    await _pause(stop, self.config.poll_s)
        finally:
            watcher.cancel()

    async def _follow(self, conn: psycopg.AsyncConnection, stop: asyncio.Event) -> None:
        leading = False
        while not stop.is_set():
            if not leading:
                # two `shopfloor serve` on one database would each add a version per event: the lock's holder acts
                cur = await conn.execute("SELECT pg_try_advisory_lock(%s)", (_LOCK,))
                leading = bool((await cur.fetchone())[0])  # type: ignore[index]
                self.target = None  # re-read the baseline: another trigger may have acted meanwhile
            if leading:
                try:
                    await self.poll(conn)
                except psycopg.OperationalError:
                    raise
                except Exception:  # noqa: BLE001  (one bad schedule or event must not stop the trigger for good)
                    log.exception("trigger poll failed", extra={"action": "continue"})
            await _pause(stop, self.config.poll_s)


async def _pause(stop: asyncio.Event, seconds: float) -> None:
    try:
        await asyncio.wait_for(stop.wait(), seconds)
    except asyncio.TimeoutError:
        pass


__all__: list[Any] = ["TriggerConfig", "Debouncer", "TwinTrigger", "trigger_config"]
