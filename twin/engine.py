"""The twin engine: samples of configured tags in, machine state intervals, part counts and alarms out.

It maps tags to (machine, sensor) slots, orders what arrived since the last step by time, and runs
the numba kernel (twin.kernels.tick) once per "round": samples within `time_resolution` of each
other with no tag twice, so a sensor that reported three times since the last step is evaluated
three times, in order, and a state change is stamped with its sample's time (within the resolution). A sample at or before the last one taken for its tag is skipped (a replay after a restart
counts nothing twice); late data reaches the historian but not the twin.

No I/O here: twin.service feeds it from the gateway's tap and records what it returns.
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import msgspec
import numpy as np

from historian.registry import TagRegistry
from historian.samples import SampleBatch
from twin import kernels
from twin.alarms import BAD_INPUT, AlarmEvent, AlarmTracker
from twin.config import FAILURE_INPUTS, SIGNALS, MachineConfig, TwinConfig

log = logging.getLogger(__name__)

_SENSOR, _STATE, _GOOD, _SCRAP, _RUL, _FAIL = "sensor", "state", "good", "scrap", "rul", "failure"
_RENEWED = "renewed"
# an ISO 22400 state code as the five signals the kernel derives states from
_CODE_SIGNALS = {
    kernels.STATE_PRODUCING: (1, 1, 0, 0, 0),
    kernels.STATE_IDLE: (0, 0, 0, 0, 0),
    kernels.STATE_SETUP: (0, 0, 0, 1, 0),
    kernels.STATE_UNPLANNED_DOWN: (0, 0, 1, 0, 0),
    kernels.STATE_PLANNED_DOWN: (0, 0, 0, 0, 1),
}
STATE_NAMES = {
    kernels.STATE_UNKNOWN: "unknown",
    kernels.STATE_PRODUCING: "producing",
    kernels.STATE_IDLE: "idle",
    kernels.STATE_SETUP: "setup",
    kernels.STATE_UNPLANNED_DOWN: "unplanned_down",
    kernels.STATE_PLANNED_DOWN: "planned_down",
}


def rule_names(bits: int) -> list[str]:
    """['WE1', 'N1', ...] for a word of alarm bits."""
    return [name for bit, name in kernels.ALARM_NAMES.items() if bits & bit]


@dataclass(frozen=True, slots=True)
class Interval:
    """A machine state that ended: [start_us, end_us)."""

    machine: int
    state: str
    start_us: int
    end_us: int


@dataclass(frozen=True, slots=True)
class Count:
    """Parts counted for a machine in one step, stamped with the step's last sample time."""

    machine: int
    ts_us: int
    good: int
    scrap: int


@dataclass(slots=True)
class StepOutput:
    """What a step produced, for the historian."""

    intervals: list[Interval] = field(default_factory=list)
    counts: list[Count] = field(default_factory=list)
    alarms: list[AlarmEvent] = field(default_factory=list)
    """Alarm transitions (raised, updated, escalated, cleared, suppressed, released), in time order."""
    rul_rows: set[int] = field(default_factory=set)
    """Machines that got a new row of model inputs."""

    def __bool__(self) -> bool:
        return bool(self.intervals or self.counts or self.alarms or self.rul_rows)


class Layout(msgspec.Struct, frozen=True):
    """Which tag ids feed which machine slot; a snapshot is restored only into the same layout."""

    machines: list[str]
    sensors: list[list[int]]  # per machine, the tag id of each sensor slot
    roles: list[tuple[int, str, int, int]]  # (tag id, role, machine, index)


def build_layout(config: TwinConfig, registry: TagRegistry) -> Layout:
    """The layout of the configured machines over the registered tags; ValueError names an unknown tag."""

    def tag_id(machine: MachineConfig, key: str, name: str) -> int:
        info = registry.by_name.get(name)
        if info is None:
            raise ValueError(f"twin.machines[{machine.name}].{key}: no tag {name!r} in the historian")
        return info.id

    roles: list[tuple[int, str, int, int]] = []
    sensors: list[list[int]] = []
    for m, mc in enumerate(config.machines):
        if mc.state_tag:
            roles.append((tag_id(mc, "state_tag", mc.state_tag), _STATE, m, 0))
        for k, signal in enumerate(SIGNALS):
            if name := getattr(mc, f"{signal}_tag"):
                roles.append((tag_id(mc, f"{signal}_tag", name), signal, m, k))
        if mc.good_counter_tag:
            roles.append((tag_id(mc, "good_counter_tag", mc.good_counter_tag), _GOOD, m, 0))
        if mc.scrap_counter_tag:
            roles.append((tag_id(mc, "scrap_counter_tag", mc.scrap_counter_tag), _SCRAP, m, 0))
        for j, name in enumerate(mc.rul_tags):
            roles.append((tag_id(mc, f"rul_tags[{j}]", name), _RUL, m, j))
        if mc.rul_reset_tag:
            roles.append((tag_id(mc, "rul_reset_tag", mc.rul_reset_tag), _RENEWED, m, 0))
        if mc.failure_model:
            for j, key in enumerate(FAILURE_INPUTS):
                roles.append((tag_id(mc, f"failure_tags.{key}", mc.failure_tags[key]), _FAIL, m, j))
        ids = [tag_id(mc, f"sensors[{j}].tag", s.tag) for j, s in enumerate(mc.sensors)]
        roles.extend((tid, _SENSOR, m, j) for j, tid in enumerate(ids))
        sensors.append(ids)
    return Layout([m.name for m in config.machines], sensors, roles)


class Twin:
    """Every configured machine's state, counters, sensor health and model inputs, as arrays."""

    def __init__(self, config: TwinConfig, layout: Layout) -> None:
        self.config = config
        self.layout = layout
        m = len(layout.machines)
        s = max([len(ids) for ids in layout.sensors] + [1])
        mu = np.zeros((m, s))
        sigma = np.ones((m, s))
        lam, L, k, h = (np.full((m, s), d) for d in (0.2, 3.0, 0.5, 5.0))
        # slots without a sensor, or still learning their baseline, get no points (x stays NaN)
        self.active = np.zeros((m, s), dtype=bool)
        for i, mc in enumerate(config.machines):
            for j, sc in enumerate(mc.sensors):
                lam[i, j], L[i, j], k[i, j], h[i, j] = sc.lam, sc.L, sc.k, sc.h
                if sc.mu is not None and sc.sigma is not None:
                    mu[i, j], sigma[i, j] = sc.mu, sc.sigma
                    self.active[i, j] = True
        modulus = np.array([mc.counter_modulus for mc in config.machines], dtype=np.float64)
        self.params = kernels.make_params(m, s, mu=mu, sigma=sigma, lam=lam, L=L, k=k, h=h, counter_modulus=modulus)
        self.state = kernels.new_state(self.params)
        self.baseline: dict[tuple[int, int], list[float]] = {}
        self.signals = np.zeros((m, len(SIGNALS)))  # last value of each state signal
        self.rul_inputs = np.full((m, 24), np.nan)  # latest value of each model input
        self.failure_inputs = np.full((m, len(FAILURE_INPUTS)), np.nan)  # latest process readings
        self.renewal_counter = np.full(m, np.nan)  # last cycles-since-renewal reading
        self.rul_history: list[deque[np.ndarray]] = [deque(maxlen=config.rul_window) for _ in range(m)]
        self.last_ts: dict[int, int] = {}  # tag id -> newest sample taken
        self.last_value = np.full((m, s), np.nan)
        self.last_alarm = np.zeros((m, s), dtype=np.uint32)
        # state-based suppression: SPC runs only on a producing machine (when the twin knows its state)
        self.has_state = np.array([bool(mc.state_tag or any(getattr(mc, f"{g}_tag") for g in SIGNALS))
                                   for mc in config.machines], dtype=bool)
        self.novar = np.zeros((m, s), dtype=bool)  # baseline had no variation (constant or quantised)
        self.bad = np.zeros((m, s), dtype=bool)  # the latest reading had bad quality
        self.alarms = AlarmTracker()
        self._roles: dict[int, list[tuple[str, int, int]]] = {}
        for tid, role, machine, index in layout.roles:
            self._roles.setdefault(tid, []).append((role, machine, index))
        self._known = np.array(sorted(self._roles), dtype=np.int32)
        self._out = kernels.new_result(m, s)

    def catch_up_from(self) -> dict[int, int]:
        """Per tag, the time after which the historian has samples this twin has not taken.

        A tag never seen since the twin first ran starts from the oldest time it took of any tag
        (it was listening from then on); a twin that never took anything catches up on nothing.
        """
        if not self.last_ts:
            return {}
        floor = min(self.last_ts.values())
        return {int(t): self.last_ts.get(int(t), floor) for t in self._known}

    def last_ts_max(self) -> int:
        """The newest sample time taken (µs), 0 before any."""
        return max(self.last_ts.values(), default=0)

    @property
    def tag_ids(self) -> np.ndarray:
        """Every tag id the twin reads."""
        return self._known

    def step(self, batch: SampleBatch) -> StepOutput:
        """Take a batch of samples (any order, any tags): run the kernel round by round, return what changed."""
        out = StepOutput()
        mine = batch.take(np.isin(batch.tag_id, self._known))
        if not len(mine):
            return out
        order = np.argsort(mine.ts_us, kind="stable")
        tag, ts, value = mine.tag_id[order], mine.ts_us[order], mine.value[order]
        good_q = mine.quality[order] >= 192  # a bad reading has no value to judge a machine by
        new = np.ones(len(tag), dtype=bool)
        for tid in np.unique(tag):
            last = self.last_ts.get(int(tid))
            if last is not None:
                new &= ~((tag == tid) & (ts <= last))
        self._mark_bad(tag[new & ~good_q], ts[new & ~good_q], tag[new & good_q], ts[new & good_q])
        fresh = new & good_q
        tag, ts, value = tag[fresh], ts[fresh], value[fresh]
        if not len(tag):
            self._input_health(out)
            return out
        for t in np.unique(tag):
            self.last_ts[int(t)] = int(ts[tag == t].max())
        rounds = self._rounds(tag.tolist(), ts.tolist())
        before_good = self.state.good_total.copy()
        before_scrap = self.state.scrap_total.copy()
        last_round_ts = 0
        for lo, hi in zip(rounds[:-1], rounds[1:]):
            last_round_ts = self._round(tag[lo:hi], ts[lo:hi], value[lo:hi], out)
        good = self.state.good_total - before_good
        scrap = self.state.scrap_total - before_scrap
        for m in np.flatnonzero((good > 0) | (scrap > 0)):
            out.counts.append(Count(int(m), last_round_ts, int(round(good[m])), int(round(scrap[m]))))
        self._input_health(out)
        return out

    def _mark_bad(self, bad_tags: np.ndarray, bad_ts: np.ndarray, ok_tags: np.ndarray, ok_ts: np.ndarray) -> None:
        """Sensors whose newest reading in this batch has bad quality (a newer good one clears it in _round)."""
        for tid in np.unique(bad_tags).tolist():
            newest_bad = int(bad_ts[bad_tags == tid].max())
            ok = ok_ts[ok_tags == tid]
            if len(ok) and int(ok.max()) > newest_bad:
                continue
            for role, m, j in self._roles[tid]:
                if role == _SENSOR:
                    self.bad[m, j] = True

    def _producing(self) -> np.ndarray:
        """Machines whose signals are judged: producing, or with no state source to tell."""
        return ~self.has_state | (self.state.machine_state == kernels.STATE_PRODUCING)

    def _input_health(self, out: StepOutput) -> None:
        """Bad-input alarms for producing machines' sensors that are bad or stale; the flood alarm's clearing."""
        now = self.last_ts_max()
        if not now:
            return
        stale_us = self.config.stale_after_s * 1e6
        producing = self._producing()
        for m, ids in enumerate(self.layout.sensors):
            if producing[m]:
                since = int(self.state.state_since_us[m]) or now
                for j, tid in enumerate(ids):
                    age = now - self.last_ts.get(tid, since)
                    reason = "bad quality" if self.bad[m, j] else f"stale: no reading for {age / 1e6:.0f} s"
                    out.alarms += self.alarms.bad_input(m, tid, now, bool(self.bad[m, j] or age > stale_us), reason,
                                                        float(self.last_value[m, j]))
            out.alarms += self.alarms.flood_check(m, now)

    def _rounds(self, tags: list[int], ts: list[int]) -> list[int]:
        """Boundaries of the kernel ticks over time-ordered samples: a tick spans at most time_resolution
        and takes one sample per tag, so every point is judged and every state change keeps its time."""
        bounds = [0]
        start, seen = ts[0] if ts else 0, set()
        quantum = int(self.config.time_resolution * 1e6)
        for i, (t, when) in enumerate(zip(tags, ts)):
            if t in seen or when - start > quantum:
                bounds.append(i)
                start, seen = when, set()
            seen.add(t)
        bounds.append(len(tags))
        return bounds

    def _round(self, tags: np.ndarray, ts: np.ndarray, values: np.ndarray, out: StepOutput) -> int:
        m_count, s_count = self.params.shape
        x = np.full((m_count, s_count), np.nan)
        x_ts = np.zeros((m_count, s_count), dtype=np.int64)
        has_signal = np.zeros(m_count, dtype=np.uint8)
        producing = self._producing()  # as of the previous tick: a sensor is judged in the state it was read in
        good_raw = np.full(m_count, np.nan)
        scrap_raw = np.full(m_count, np.nan)
        for tid, t, v in zip(tags.tolist(), ts.tolist(), values.tolist()):
            for role, m, j in self._roles[tid]:
                if role == _SENSOR:
                    self.bad[m, j] = False
                    if not producing[m] or v == self.last_value[m, j]:
                        # state-based suppression: no SPC, no baseline from an idle or stopped machine; and
                        # a polled value held since the last reading is not a new measurement
                        pass
                    elif self.active[m, j]:
                        x[m, j], x_ts[m, j] = v, t
                    else:
                        self._learn(m, j, v)
                    self.last_value[m, j] = v
                elif role == _STATE:
                    signals = _CODE_SIGNALS.get(int(v))
                    if signals is None:
                        log.warning("twin: %s state code %r is not 1..5; ignored", self.layout.machines[m], v)
                        continue
                    self.signals[m] = signals
                    has_signal[m] = 1
                elif role == _GOOD:
                    good_raw[m] = v
                elif role == _SCRAP:
                    scrap_raw[m] = v
                elif role == _RUL:
                    self.rul_inputs[m, j] = v
                elif role == _FAIL:
                    self.failure_inputs[m, j] = v
                elif role == _RENEWED:
                    if v < self.renewal_counter[m]:  # renewed: the model's history starts again
                        self.rul_history[m].clear()
                    self.renewal_counter[m] = v
                else:  # one of the five signals
                    self.signals[m, j] = v
                    has_signal[m] = 1
        now_us = int(ts.max())
        parts_before = self.state.good_total + self.state.scrap_total
        sig = self.signals
        res = kernels.tick(
            self.state, self.params, x, has_signal=has_signal,
            running=(sig[:, 0] != 0).astype(np.uint8), speed=sig[:, 1], fault=(sig[:, 2] != 0).astype(np.uint8),
            setup=(sig[:, 3] != 0).astype(np.uint8), planned_down=(sig[:, 4] != 0).astype(np.uint8),
            good_raw=good_raw, scrap_raw=scrap_raw, now_us=now_us, out=self._out,
        )
        for m in np.flatnonzero(res.changed):
            if res.prev_state[m] != kernels.STATE_UNKNOWN:
                out.intervals.append(
                    Interval(int(m), STATE_NAMES[int(res.prev_state[m])], int(res.prev_since_us[m]), now_us)
                )
            if self.has_state[m]:
                out.alarms += self.alarms.producing(int(m), self.state.machine_state[m] == kernels.STATE_PRODUCING,
                                                    now_us)
        judged = set(zip(*np.nonzero(res.alarms)))
        # an active SPC alarm counts its signal's in-control points towards clearing
        judged |= {(m, self.layout.sensors[m].index(t)) for m, t, r in self.alarms.active
                   if r == "spc" and t is not None and not np.isnan(x[m, self.layout.sensors[m].index(t)])}
        for m, j in sorted(judged):
            bits = int(res.alarms[m, j])
            if bits:
                self.last_alarm[m, j] = bits
            out.alarms += self.alarms.point(int(m), self.layout.sensors[m][j], int(x_ts[m, j]), bits,
                                            rule_names(bits), float(x[m, j]))
        # a part made is one cycle of model inputs (the plant's machines wear one C-MAPSS cycle per part)
        made = (self.state.good_total + self.state.scrap_total) > parts_before
        for m in np.flatnonzero(made):
            if self.config.machines[m].rul_model and not np.isnan(self.rul_inputs[m]).any():
                self.rul_history[m].append(self.rul_inputs[m].copy())
                out.rul_rows.add(int(m))
        return now_us

    def _learn(self, m: int, j: int, value: float) -> None:
        """Collect a sensor's baseline; once long enough, freeze mu and sigma and start judging it."""
        points = self.baseline.setdefault((m, j), [])
        points.append(value)
        if len(points) < self.config.baseline_points:
            return
        mu = float(np.mean(points))
        sigma = float(np.std(points, ddof=1))
        # a constant or quantised signal (a few levels) would break the pattern rules on every point:
        # it is not judged, and learns again from its next points (it may start to vary)
        if not sigma > 0 or len(set(points)) < self.config.min_distinct_values:
            self.novar[m, j] = True
            del self.baseline[(m, j)]
            return
        self.novar[m, j] = False
        self.params.mu[m, j], self.params.sigma[m, j] = mu, sigma
        self.state.ewma[m, j] = mu
        self.active[m, j] = True
        del self.baseline[(m, j)]

    def machine_view(self, m: int) -> dict[str, Any]:
        """State, counts and per-sensor health of machine m, as JSON-able data."""
        sensors = {}
        for j, tid in enumerate(self.layout.sensors[m]):
            mu, sigma = float(self.params.mu[m, j]), float(self.params.sigma[m, j])
            lam, w2 = float(self.params.lam[m, j]), float(self.state.ewma_w2[m, j])
            width = float(self.params.L[m, j]) * sigma * np.sqrt(lam / (2 - lam) * (1 - w2))
            sensors[str(tid)] = {
                "value": _finite(self.last_value[m, j]),
                "baseline": "learned" if self.active[m, j] else
                f"learning ({len(self.baseline.get((m, j), []))}/{self.config.baseline_points})"
                + ("; no variation so far (constant or quantised): not judged" if self.novar[m, j] else ""),
                "input": "bad" if self.bad[m, j] else "good",
                "mu": mu if self.active[m, j] else None,
                "sigma": sigma if self.active[m, j] else None,
                "ewma": _finite(self.state.ewma[m, j]) if self.active[m, j] else None,
                "ewma_limits": [mu - width, mu + width] if self.active[m, j] else None,
                "cusum_high": float(self.state.cusum_hi[m, j]),
                "cusum_low": float(self.state.cusum_lo[m, j]),
                "decision_interval": float(self.params.h[m, j]) * sigma if self.active[m, j] else None,
                "last_rules": rule_names(int(self.last_alarm[m, j])),
            }
        return {
            "state": STATE_NAMES[int(self.state.machine_state[m])],
            "state_since_us": int(self.state.state_since_us[m]) or None,
            "good_total": int(round(self.state.good_total[m])),
            "scrap_total": int(round(self.state.scrap_total[m])),
            "sensors": sensors,
        }

    # -- snapshots ---------------------------------------------------------------------------------

    def snapshot(self) -> bytes:
        """Everything needed to resume exactly here, as bytes."""
        arrays = kernels.snapshot(self.state) | {
            "mu": self.params.mu, "sigma": self.params.sigma, "active": self.active, "signals": self.signals,
            "rul_inputs": self.rul_inputs, "failure_inputs": self.failure_inputs,
            "renewal_counter": self.renewal_counter, "last_value": self.last_value, "last_alarm": self.last_alarm,
            "novar": self.novar, "bad": self.bad,
        }
        return msgspec.msgpack.encode({
            "arrays": {k: (str(v.dtype), list(v.shape), np.ascontiguousarray(v).tobytes()) for k, v in arrays.items()},
            "baseline": [[m, j, pts] for (m, j), pts in self.baseline.items()],
            "rul_history": [[row.tolist() for row in h] for h in self.rul_history],
            "last_ts": [[k, v] for k, v in self.last_ts.items()],
            "alarms": self.alarms.dump(),
        })

    def restore(self, data: bytes) -> None:
        """Resume from snapshot() bytes taken with the same layout."""
        raw = msgspec.msgpack.decode(data)
        arrays = {k: np.frombuffer(b, dtype=d).reshape(shape).copy() for k, (d, shape, b) in raw["arrays"].items()}
        self.state = kernels.restore(arrays)
        self.params.mu[:], self.params.sigma[:] = arrays["mu"], arrays["sigma"]
        self.active[:], self.signals[:] = arrays["active"], arrays["signals"]
        self.rul_inputs[:], self.last_value[:] = arrays["rul_inputs"], arrays["last_value"]
        self.failure_inputs[:] = arrays["failure_inputs"]
        self.renewal_counter[:] = arrays["renewal_counter"]
        self.last_alarm[:] = arrays["last_alarm"]
        for key in ("novar", "bad"):  # absent from snapshots taken before alarms had a lifecycle
            if key in arrays:
                getattr(self, key)[:] = arrays[key]
        self.alarms.load(raw.get("alarms"))
        self.baseline = {(m, j): list(pts) for m, j, pts in raw["baseline"]}
        for h, rows in zip(self.rul_history, raw["rul_history"]):
            h.clear()
            h.extend(np.array(r, dtype=np.float64) for r in rows)
        self.last_ts = {int(k): int(v) for k, v in raw["last_ts"]}


def _finite(v: float) -> float | None:
    return float(v) if np.isfinite(v) else None
