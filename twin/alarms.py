"""Alarms as ISA-18.2 / IEC 62682 describe them: a condition with a lifecycle, not a row per point.

The tracker turns the kernel's per-point rule bits into transitions of one alarm per
(machine, signal, rule): `raised` on a point beyond 3 sigma, or on the `on_delay_points`-th
rule-breaking point in a row, `updated` while more
points break rules (folded into the one row), `escalated` when a worse rule breaks, `cleared`
after `clear_points` in-control points in a row, `suppressed` / `released` when the machine
leaves / re-enters production (state-based suppression by design). Besides the SPC condition
("spc": Western Electric, Nelson, EWMA, CUSUM) a signal can raise "bad_input" (stale or
bad-quality readings while producing), and a machine "flood" when more than `flood_count`
alarms were raised within `flood_window_s`. Acknowledge and shelve are operator actions on the
stored alarm (api/machines.py), so they are not tracked here. Times are data times (µs).

No I/O: twin.engine feeds it, twin.store writes what it returns in the twin's one transaction,
and its state goes into the twin's snapshot, so a restart resumes the same alarms.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

from twin import kernels

SPC, BAD_INPUT, FLOOD = "spc", "bad_input", "flood"
PRIORITIES = ("low", "medium", "high")
# beyond 3 sigma is high; a shift (2 of 3 beyond 2, 4 of 5 beyond 1, EWMA, CUSUM) medium; patterns low
_HIGH = kernels.WE1 | kernels.N1
_MEDIUM = (kernels.WE2 | kernels.WE3 | kernels.N5 | kernels.N6 | kernels.EWMA_OUT
           | kernels.CUSUM_HIGH | kernels.CUSUM_LOW)


def priority_of(bits: int) -> str:
    """The ISA-18.2 priority of a point's rule bits."""
    if bits & _HIGH:
        return "high"
    return "medium" if bits & _MEDIUM else "low"


@dataclass(frozen=True, slots=True)
class AlarmEvent:
    """One transition (or an update of an active alarm) of the alarm of (machine, tag, rule)."""

    machine: int
    tag_id: int | None
    rule: str
    kind: str  # raised, updated, escalated, cleared, suppressed, released
    ts_us: int
    priority: str
    rules: list[str]
    value: float


@dataclass(slots=True)
class _Active:
    priority: str
    ok_points: int = 0
    suppressed: bool = False


@dataclass
class AlarmTracker:
    """The active alarms of every machine, and each machine's recent raises (for flood detection)."""

    clear_points: int = kernels.WINDOW
    on_delay_points: int = 3
    """ISA-18.2 on-delay: a low or medium condition raises only after this many rule-breaking points in a
    row (a high one, beyond 3 sigma, at once), so a point or two that break a pattern rule do not chatter."""
    flood_count: int = 10
    flood_window_s: float = 600.0
    active: dict[tuple[int, int | None, str], _Active] = field(default_factory=dict)
    raised: dict[int, deque[int]] = field(default_factory=dict)
    pending: dict[tuple[int, int], int] = field(default_factory=dict)  # (machine, tag) -> breaking points in a row

    def point(self, m: int, tag: int, ts_us: int, bits: int, names: list[str], value: float) -> list[AlarmEvent]:
        """A judged point of a signal: raise, update, escalate or count it towards clearing."""
        key = (m, tag, SPC)
        alarm = self.active.get(key)
        if not bits:
            self.pending.pop((m, tag), None)
            if alarm is None:
                return []
            alarm.ok_points += 1
            if alarm.ok_points < self.clear_points:
                return []
            return self._clear(key, ts_us, value)
        prio = priority_of(bits)
        if alarm is None:
            run = self.pending.get((m, tag), 0) + 1
            if prio != "high" and run < self.on_delay_points:
                self.pending[(m, tag)] = run
                return []
            self.pending.pop((m, tag), None)
            return self._raise(key, ts_us, prio, names, value)
        alarm.ok_points = 0
        if PRIORITIES.index(prio) > PRIORITIES.index(alarm.priority):
            alarm.priority = prio
            return [AlarmEvent(m, tag, SPC, "escalated", ts_us, prio, names, value)]
        return [AlarmEvent(m, tag, SPC, "updated", ts_us, alarm.priority, names, value)]

    def bad_input(self, m: int, tag: int, ts_us: int, bad: bool, reason: str, value: float) -> list[AlarmEvent]:
        """A signal's input is (still) stale or bad, or good again."""
        key = (m, tag, BAD_INPUT)
        if bad and key not in self.active:
            return self._raise(key, ts_us, "medium", [reason], value)
        if not bad and key in self.active:
            return self._clear(key, ts_us, value)
        return []

    def producing(self, m: int, producing: bool, ts_us: int) -> list[AlarmEvent]:
        """Suppress a machine's signal alarms while it does not produce; release them when it does again."""
        events = []
        for key, alarm in self.active.items():
            if key[0] != m or key[2] == FLOOD or alarm.suppressed == (not producing):
                continue
            alarm.suppressed = not producing
            events.append(AlarmEvent(m, key[1], key[2], "released" if producing else "suppressed", ts_us,
                                     alarm.priority, [], float("nan")))
        return events

    def flood_check(self, m: int, now_us: int) -> list[AlarmEvent]:
        """Clear the machine's flood alarm once its raises in the window are back to flood_count or fewer."""
        recent = self._recent(m, now_us)
        key = (m, None, FLOOD)
        if key in self.active and recent <= self.flood_count:
            return self._clear(key, now_us, float(recent))
        return []

    def _recent(self, m: int, now_us: int) -> int:
        q = self.raised.setdefault(m, deque())
        while q and q[0] <= now_us - self.flood_window_s * 1e6:
            q.popleft()
        return len(q)

    def _raise(self, key: tuple[int, int | None, str], ts_us: int, prio: str, names: list[str],
               value: float) -> list[AlarmEvent]:
        m = key[0]
        self.active[key] = _Active(prio)
        events = [AlarmEvent(m, key[1], key[2], "raised", ts_us, prio, names, value)]
        self.raised.setdefault(m, deque()).append(ts_us)
        recent = self._recent(m, ts_us)
        flood = (m, None, FLOOD)
        if recent > self.flood_count and flood not in self.active:
            self.active[flood] = _Active("high")
            events.append(AlarmEvent(m, None, FLOOD, "raised", ts_us, "high",
                                     [f"{recent} alarms in {self.flood_window_s:g} s"], float(recent)))
        return events

    def _clear(self, key: tuple[int, int | None, str], ts_us: int, value: float) -> list[AlarmEvent]:
        alarm = self.active.pop(key)
        return [AlarmEvent(key[0], key[1], key[2], "cleared", ts_us, alarm.priority, [], value)]

    def is_active(self, m: int, tag: int | None, rule: str) -> bool:
        """Whether the alarm of (machine, tag, rule) is active."""
        return (m, tag, rule) in self.active

    def dump(self) -> dict[str, Any]:
        """The tracker's state for the twin's snapshot."""
        return {
            "active": [[m, t, r, a.priority, a.ok_points, a.suppressed] for (m, t, r), a in self.active.items()],
            "raised": [[m, list(q)] for m, q in self.raised.items()],
            "pending": [[m, t, n] for (m, t), n in self.pending.items()],
        }

    def load(self, raw: dict[str, Any] | None) -> None:
        """Resume from dump() (None: a snapshot from before alarms had a lifecycle)."""
        self.active.clear()
        self.raised.clear()
        self.pending.clear()
        if not raw:
            return
        for m, t, r, prio, ok, sup in raw["active"]:
            self.active[(int(m), None if t is None else int(t), r)] = _Active(prio, int(ok), bool(sup))
        for m, q in raw["raised"]:
            self.raised[int(m)] = deque(int(x) for x in q)
        for m, t, n in raw.get("pending", []):
            self.pending[(int(m), int(t))] = int(n)
