"""The twin's state engine: per-machine, per-sensor state as numpy arrays, updated by numba kernels.

One `tick` updates every machine at once: a loop over machines for their state and counters, then
one flat, branch-free, SIMD-vectorised loop over every (machine, sensor) point (in blocks, threaded
for large plants):

* machine state (ISO 22400) from signals, priority planned_down > fault (unplanned down) > setup >
  producing (running and speed > 0) > idle; a machine with no new signal holds its state;
* good/scrap totals from raw part counters that may reset or roll over;
* per sensor: EWMA with its time-varying limits, tabular CUSUM, Western Electric rules 1-4 and
  Nelson rules 1-8 on the standardised value (x - mu) / sigma, from the sensor's last 15 points.

The per-point steps (`ewma_step`, `cusum_step`, `window_rules` via `rules_push`, `sensor_step`)
are the only implementation: the online `tick` and the batch functions for SPC charts and
trainers (`rule_flags`, `alarm_flags`, `ewma_series`, `cusum_series`) all call them, so what is
served, charted and trained on agree by construction.

A non-finite sensor value (NaN, the usual "no new value") is not a point: the sensor's EWMA,
CUSUM and rule history do not move and its alarm bits are 0 for that tick.

Rules look at the sensor's last points, missing ones skipped: "k of n" counts the last n points
(WE2/N5: 2 of the last 3 beyond 2 sigma on one side), runs need all of their last n points. A
rule fires on the point that completes its pattern and on every later point while the pattern
still holds; a point exactly on a limit is not beyond it (|z| <= 1 is "within 1 sigma"), a point
on the centre line is on neither side, an equal neighbour is neither a rise nor a fall. The
history is kept as per-predicate shift registers rather than a ring of values (see F_*): the
same last 15 points, but O(1) and 12 bytes per sensor per point.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
from numba import njit, prange

# -- alarm bits (uint32 per sensor per evaluated point) -------------------------------------------

WE1 = 1 << 0  # one point beyond 3 sigma
WE2 = 1 << 1  # 2 of 3 consecutive beyond 2 sigma, same side
WE3 = 1 << 2  # 4 of 5 consecutive beyond 1 sigma, same side
WE4 = 1 << 3  # 8 consecutive on one side of the centre line
N1 = 1 << 4  # one point beyond 3 sigma
N2 = 1 << 5  # 9 in a row on one side
N3 = 1 << 6  # 6 in a row steadily increasing or decreasing (5 strict steps)
N4 = 1 << 7  # 14 in a row alternating up and down (13 steps)
N5 = 1 << 8  # 2 of 3 beyond 2 sigma, same side
N6 = 1 << 9  # 4 of 5 beyond 1 sigma, same side
N7 = 1 << 10  # 15 in a row within 1 sigma (|z| <= 1, either side)
N8 = 1 << 11  # 8 in a row beyond 1 sigma (|z| > 1), with points on both sides
EWMA_OUT = 1 << 12  # EWMA outside mu +- L sigma sqrt(lam/(2-lam) (1-(1-lam)^2t))
CUSUM_HIGH = 1 << 13  # C+ > h sigma
CUSUM_LOW = 1 << 14  # C- > h sigma

WESTERN_ELECTRIC = WE1 | WE2 | WE3 | WE4
NELSON = N1 | N2 | N3 | N4 | N5 | N6 | N7 | N8
RULES = WESTERN_ELECTRIC | NELSON
ALARM_NAMES: dict[int, str] = {
    WE1: "WE1", WE2: "WE2", WE3: "WE3", WE4: "WE4",
    N1: "N1", N2: "N2", N3: "N3", N4: "N4", N5: "N5", N6: "N6", N7: "N7", N8: "N8",
    EWMA_OUT: "EWMA", CUSUM_HIGH: "CUSUM+", CUSUM_LOW: "CUSUM-",
}

WINDOW = 15  # points of history the rules see: the longest rule (Nelson 7) looks at 15

# The rules' memory of a sensor: a shift register per predicate over its last points, newest
# at each field's bit 0 (bit i = the point i points back), as long as the longest rule using it.
# Packed into two ints per sensor (12 bytes), so a point costs a shift, a mask and an or, where
# a ring of 15 values would be 120 bytes re-read in full for every point.
F_POS, W_POS = 0, 9  # z > 0: WE4 (8), N2 (9)
F_NEG, W_NEG = 9, 9  # z < 0
F_HI1, W_HI1 = 18, 8  # z > 1: WE3/N6 (5), N8 (8)
F_LO1, W_LO1 = 26, 8  # z < -1
F_HI2, W_HI2 = 34, 3  # z > 2: WE2/N5 (3)
F_LO2, W_LO2 = 37, 3  # z < -2
F_WITHIN1, W_WITHIN1 = 40, 15  # |z| <= 1: N7 (15)
F_BEYOND3, W_BEYOND3 = 55, 1  # |z| > 3: WE1/N1 (1)
F_UP, W_UP = 0, 13  # in hist_b: step into the point from the one before, up: N3 (5), N4 (13)
F_DOWN, W_DOWN = 13, 13  # in hist_b: step down (flat, or no point before: neither)


def _keep(*fields: tuple[int, int]) -> int:
    """Bits that survive a shift by one: each field but its newest bit (the old top bit spills out)."""
    return sum(((1 << w) - 2) << f for f, w in fields)


_KEEP_A = _keep((F_POS, W_POS), (F_NEG, W_NEG), (F_HI1, W_HI1), (F_LO1, W_LO1), (F_HI2, W_HI2), (F_LO2, W_LO2),
                (F_WITHIN1, W_WITHIN1), (F_BEYOND3, W_BEYOND3))
_KEEP_B = _keep((F_UP, W_UP), (F_DOWN, W_DOWN))
_ALT = sum(1 << i for i in range(0, 13, 2))  # steps 0, 2, ..., 12: one phase of 13 alternating steps

# -- machine states (ISO 22400 time categories) -------------------------------------------------

STATE_UNKNOWN = 0  # no signal seen yet: an interval ending in this state has nothing to record
STATE_PRODUCING = 1
STATE_IDLE = 2
STATE_SETUP = 3
STATE_UNPLANNED_DOWN = 4
STATE_PLANNED_DOWN = 5
STATE_NAMES = {
    STATE_UNKNOWN: "unknown", STATE_PRODUCING: "producing", STATE_IDLE: "idle", STATE_SETUP: "setup",
    STATE_UNPLANNED_DOWN: "unplanned_down", STATE_PLANNED_DOWN: "planned_down",
}

ROLLOVER_FRACTION = 0.1  # a drop from the top 10 % of the modulus into the bottom 10 % is a rollover
SNAPSHOT_VERSION = 1


# ================================================================================================
# Data
# ================================================================================================


@dataclass
class EngineParams:
    """Per-sensor SPC parameters ([M, S] float64) and per-machine counter moduli ([M] float64)."""

    mu: np.ndarray  # target (centre line)
    sigma: np.ndarray  # process standard deviation, > 0
    lam: np.ndarray  # EWMA weight, 0 < lam <= 1
    L: np.ndarray  # EWMA limit width in sigmas of the EWMA
    k: np.ndarray  # CUSUM reference value K = k sigma
    h: np.ndarray  # CUSUM decision interval H = h sigma
    counter_modulus: np.ndarray  # raw counter wraps at this value; <= 0: never rolls over, every drop is a reset

    @property
    def shape(self) -> tuple[int, int]:
        """(machines, sensors)."""
        return self.mu.shape  # type: ignore[return-value]


@dataclass
class EngineState:
    """Everything the engine remembers between ticks, struct of arrays for M machines x S sensors."""

    ewma: np.ndarray  # [M,S] float64, starts at mu
    ewma_w2: np.ndarray  # [M,S] float64, (1-lam)^(2t) after t points: the limits' start-up factor
    cusum_hi: np.ndarray  # [M,S] float64, C+
    cusum_lo: np.ndarray  # [M,S] float64, C-
    z_last: np.ndarray  # [M,S] float64, the last standardised value, NaN before the first point
    hist_a: np.ndarray  # [M,S] int64, the rules' window: predicate shift registers (F_* fields)
    hist_b: np.ndarray  # [M,S] int64, the step fields (F_UP, F_DOWN)
    machine_state: np.ndarray  # [M] uint8, STATE_*
    state_since_us: np.ndarray  # [M] int64, when the current state began (0 while unknown)
    good_last: np.ndarray  # [M] float64, last raw good counter, NaN before the first reading
    scrap_last: np.ndarray  # [M] float64
    good_total: np.ndarray  # [M] float64, parts counted since the engine started (never goes down)
    scrap_total: np.ndarray  # [M] float64

    @property
    def shape(self) -> tuple[int, int]:
        """(machines, sensors)."""
        return self.ewma.shape  # type: ignore[return-value]

    def copy(self) -> EngineState:
        """A deep copy (every array copied)."""
        return EngineState(**{f.name: getattr(self, f.name).copy() for f in fields(self)})


@dataclass
class TickResult:
    """What one tick produced; the caller copies what it keeps past the next tick."""

    alarms: np.ndarray  # [M,S] uint32, alarm bits of the points evaluated this tick (0 where no point)
    changed: np.ndarray  # [M] uint8, 1 where the machine state changed this tick
    prev_state: np.ndarray  # [M] uint8, the state that ended (valid where changed)
    prev_since_us: np.ndarray  # [M] int64, when the ended state began: interval [prev_since_us, now_us)
    state: np.ndarray  # [M] uint8, the engine's machine_state array (not a copy)
    good_total: np.ndarray  # [M] float64, the engine's array (not a copy)
    scrap_total: np.ndarray  # [M] float64, the engine's array (not a copy)


_STATE_DTYPES = {
    "ewma": np.float64, "ewma_w2": np.float64, "cusum_hi": np.float64, "cusum_lo": np.float64,
    "z_last": np.float64, "hist_a": np.int64, "hist_b": np.int64, "machine_state": np.uint8, "state_since_us": np.int64,
    "good_last": np.float64, "scrap_last": np.float64, "good_total": np.float64, "scrap_total": np.float64,
}


def make_params(machines: int, sensors: int, *, mu: float | np.ndarray = 0.0, sigma: float | np.ndarray = 1.0,
                lam: float | np.ndarray = 0.2, L: float | np.ndarray = 3.0, k: float | np.ndarray = 0.5,
                h: float | np.ndarray = 5.0, counter_modulus: float | np.ndarray = 65536.0) -> EngineParams:
    """Parameters broadcast to [machines, sensors] (moduli to [machines]), checked."""
    ms = (machines, sensors)

    def full(v: float | np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
        return np.array(np.broadcast_to(np.asarray(v, dtype=np.float64), shape), order="C")  # writable copy

    p = EngineParams(full(mu, ms), full(sigma, ms), full(lam, ms), full(L, ms), full(k, ms), full(h, ms),
                     full(counter_modulus, (machines,)))
    if not np.all(p.sigma > 0):
        raise ValueError("sigma must be > 0")
    if not np.all((p.lam > 0) & (p.lam <= 1)):
        raise ValueError("lam must be in (0, 1]")
    return p


def new_state(params: EngineParams) -> EngineState:
    """A fresh engine: EWMA at mu, CUSUMs at 0, empty histories, machines unknown, no counter baseline."""
    m, s = params.shape
    return EngineState(
        ewma=params.mu.copy(),
        ewma_w2=np.ones((m, s)),
        cusum_hi=np.zeros((m, s)),
        cusum_lo=np.zeros((m, s)),
        z_last=np.full((m, s), np.nan),
        hist_a=np.zeros((m, s), dtype=np.int64),
        hist_b=np.zeros((m, s), dtype=np.int64),
        machine_state=np.full(m, STATE_UNKNOWN, dtype=np.uint8),
        state_since_us=np.zeros(m, dtype=np.int64),
        good_last=np.full(m, np.nan),
        scrap_last=np.full(m, np.nan),
        good_total=np.zeros(m),
        scrap_total=np.zeros(m),
    )


def new_result(machines: int, sensors: int) -> TickResult:
    """Output arrays for `tick(..., out=)`, so a steady loop allocates nothing."""
    return TickResult(np.zeros((machines, sensors), dtype=np.uint32), np.zeros(machines, dtype=np.uint8),
                      np.zeros(machines, dtype=np.uint8), np.zeros(machines, dtype=np.int64),
                      np.zeros(machines, dtype=np.uint8), np.zeros(machines), np.zeros(machines))


def snapshot(state: EngineState) -> dict[str, np.ndarray]:
    """The state as a dict of numpy arrays (copies), with a version, for storing."""
    d = {f.name: getattr(state, f.name).copy() for f in fields(state)}
    d["version"] = np.array(SNAPSHOT_VERSION, dtype=np.int64)
    return d


def restore(snap: dict[str, np.ndarray]) -> EngineState:
    """An engine state from `snapshot` output; counters continue from the stored raw readings."""
    version = int(np.asarray(snap.get("version", -1)))
    if version != SNAPSHOT_VERSION:
        raise ValueError(f"snapshot version {version}, expected {SNAPSHOT_VERSION}")
    arrays = {name: np.array(snap[name], dtype=dt, copy=True, order="C") for name, dt in _STATE_DTYPES.items()}
    state = EngineState(**arrays)
    if state.ewma.ndim != 2:
        raise ValueError(f"snapshot ewma has shape {state.ewma.shape}, expected (machines, sensors)")
    m, s = state.shape
    want = {n: (m, s) for n in ("ewma_w2", "cusum_hi", "cusum_lo", "z_last", "hist_a", "hist_b")}
    want |= {n: (m,) for n in ("machine_state", "state_since_us", "good_last", "scrap_last", "good_total",
                               "scrap_total")}
    for name, shape in want.items():
        if getattr(state, name).shape != shape:
            raise ValueError(f"snapshot {name} has shape {getattr(state, name).shape}, expected {shape}")
    return state


# ================================================================================================
# Per-point steps: the one implementation, shared by tick and the batch functions
# ================================================================================================


# The per-point steps are inlined into their callers at numba's IR level (inline="always") and
# written without branches (a rule is a 0/1 times its bit), with numpy's error model (no Python
# zero-division check; sigma > 0 and lam <= 1 are checked in make_params): together they let LLVM
# turn tick's loop over points into SIMD code. Every operation is the same IEEE one in the same
# order, so results are bit for bit those of the scalar code (tests/twin compares with the oracle).
_STEP = dict(cache=True, error_model="numpy", inline="always")


@njit(**_STEP)
def _at_least_2(v: int) -> bool:
    """Two or more bits set."""
    return (v & (v - 1)) != 0


@njit(**_STEP)
def _popcount(v: int) -> int:
    """Set bits of a non-negative int below 2**16 (branch-free SWAR count)."""
    v = v - ((v >> 1) & 0x5555)
    v = (v & 0x3333) + ((v >> 2) & 0x3333)
    v = (v + (v >> 4)) & 0x0F0F
    return (v + (v >> 8)) & 0x1F


@njit(**_STEP)
def window_rules(hist_a: int, hist_b: int) -> int:
    """Western Electric 1-4 and Nelson 1-8 bits for the newest point of a window of standardised values.

    The window is the sensor's predicate history (F_* fields of hist_a, hist_b), newest point at
    each field's bit 0: each rule is a mask test on its last n points, branch-free. A missing
    point never enters the window; before a field is full its unfilled bits are 0 (no side, not
    within, no step), so no pattern completes on points that were never seen.
    """
    pos = (hist_a >> F_POS) & 0x1FF
    neg = (hist_a >> F_NEG) & 0x1FF
    hi1 = (hist_a >> F_HI1) & 0xFF
    lo1 = (hist_a >> F_LO1) & 0xFF
    up = (hist_b >> F_UP) & 0x1FFF
    down = (hist_b >> F_DOWN) & 0x1FFF
    bits = ((hist_a >> F_BEYOND3) & 1) * (WE1 | N1)
    bits |= (_at_least_2((hist_a >> F_HI2) & 0x7) | _at_least_2((hist_a >> F_LO2) & 0x7)) * (WE2 | N5)
    bits |= ((_popcount(hi1 & 0x1F) >= 4) | (_popcount(lo1 & 0x1F) >= 4)) * (WE3 | N6)
    bits |= (((pos & 0xFF) == 0xFF) | ((neg & 0xFF) == 0xFF)) * WE4
    bits |= ((pos == 0x1FF) | (neg == 0x1FF)) * N2
    bits |= (((up & 0x1F) == 0x1F) | ((down & 0x1F) == 0x1F)) * N3
    bits |= (((up == _ALT) & (down == 0x1FFF ^ _ALT)) | ((down == _ALT) & (up == 0x1FFF ^ _ALT))) * N4
    bits |= (((hist_a >> F_WITHIN1) & 0x7FFF) == 0x7FFF) * N7
    bits |= (((hi1 | lo1) == 0xFF) & (hi1 != 0) & (lo1 != 0)) * N8
    return bits


@njit(**_STEP)
def rules_push(hist_a: int, hist_b: int, z_last: float, z: float) -> tuple[int, int, int]:
    """Shift standardised value z (after z_last, NaN if none) into the history: (hist_a, hist_b, rule bits)."""
    az = abs(z)
    new_a = ((int(z > 0.0) << F_POS) | (int(z < 0.0) << F_NEG) | (int(z > 1.0) << F_HI1) | (int(z < -1.0) << F_LO1)
             | (int(z > 2.0) << F_HI2) | (int(z < -2.0) << F_LO2) | (int(az <= 1.0) << F_WITHIN1)
             | (int(az > 3.0) << F_BEYOND3))
    new_b = (int(z > z_last) << F_UP) | (int(z < z_last) << F_DOWN)
    hist_a = ((hist_a << 1) & _KEEP_A) | new_a
    hist_b = ((hist_b << 1) & _KEEP_B) | new_b
    return hist_a, hist_b, window_rules(hist_a, hist_b)


@njit(**_STEP)
def ewma_step(z_prev: float, w2_prev: float, x: float, sigma: float, lam: float,
              L: float) -> tuple[float, float, float]:
    """One EWMA point: (z, (1-lam)^(2t), limit half-width L sigma sqrt(lam/(2-lam) (1-(1-lam)^(2t))))."""
    lam1 = 1.0 - lam
    z = lam * x + lam1 * z_prev
    w2 = w2_prev * (lam1 * lam1)
    half = (L * sigma) * np.sqrt((lam / (2.0 - lam)) * (1.0 - w2))
    return z, w2, half


@njit(**_STEP)
def cusum_step(c_hi: float, c_lo: float, x: float, mu: float, sigma: float, k: float) -> tuple[float, float]:
    """One tabular CUSUM point: C+ = max(0, x - (mu+K) + C+), C- = max(0, (mu-K) - x + C-), K = k sigma."""
    kk = k * sigma
    return max(0.0, (x - (mu + kk)) + c_hi), max(0.0, ((mu - kk) - x) + c_lo)


@njit(**_STEP)
def sensor_step(hist_a: int, hist_b: int, z_last: float, z: float, w2: float, c_hi: float, c_lo: float, x: float,
                mu: float, sigma: float, lam: float, L: float, k: float,
                h: float) -> tuple[int, int, float, float, float, float, float, int]:
    """One finite point of one sensor: (hist_a, hist_b, z_last, ewma, w2, C+, C-, alarm bits)."""
    zs = (x - mu) / sigma
    hist_a, hist_b, bits = rules_push(hist_a, hist_b, z_last, zs)
    z, w2, half = ewma_step(z, w2, x, sigma, lam, L)
    bits |= ((z > mu + half) | (z < mu - half)) * EWMA_OUT
    c_hi, c_lo = cusum_step(c_hi, c_lo, x, mu, sigma, k)
    hh = h * sigma
    bits |= (c_hi > hh) * CUSUM_HIGH
    bits |= (c_lo > hh) * CUSUM_LOW
    return hist_a, hist_b, zs, z, w2, c_hi, c_lo, bits


@njit(cache=True)
def machine_code(running: int, fault: int, setup: int, planned_down: int, speed: float) -> int:
    """State from signals: planned_down > fault (unplanned down) > setup > producing (running, speed > 0) > idle."""
    if planned_down:
        return STATE_PLANNED_DOWN
    if fault:
        return STATE_UNPLANNED_DOWN
    if setup:
        return STATE_SETUP
    if running and speed > 0.0:
        return STATE_PRODUCING
    return STATE_IDLE


@njit(cache=True)
def counter_step(last: float, total: float, raw: float, modulus: float) -> tuple[float, float]:
    """One raw counter reading: (new last, new total). Rollover near the modulus, else a drop is a reset."""
    if not np.isfinite(raw):
        return last, total
    if np.isnan(last):
        return raw, total  # first reading: the baseline
    if raw >= last:
        return raw, total + (raw - last)
    if modulus > 0.0 and last >= (1.0 - ROLLOVER_FRACTION) * modulus and raw < ROLLOVER_FRACTION * modulus:
        return raw, total + ((modulus - last) + raw)
    return raw, total + raw  # reset: the new value counts the parts made since


# ================================================================================================
# The tick
# ================================================================================================


@njit(cache=True)
def _machines(has_signal, running, fault, setup, planned_down, speed, good_raw, scrap_raw, now_us, modulus,
              machine_state, state_since_us, good_last, scrap_last, good_total, scrap_total,
              changed, prev_state, prev_since_us):
    """tick's per-machine part: state from signals, part counters."""
    for m in range(machine_state.shape[0]):
        changed[m] = 0
        if has_signal[m]:
            code = machine_code(running[m], fault[m], setup[m], planned_down[m], speed[m])
            if code != machine_state[m]:
                changed[m] = 1
                prev_state[m] = machine_state[m]
                prev_since_us[m] = state_since_us[m]
                machine_state[m] = code
                state_since_us[m] = now_us
        good_last[m], good_total[m] = counter_step(good_last[m], good_total[m], good_raw[m], modulus[m])
        scrap_last[m], scrap_total[m] = counter_step(scrap_last[m], scrap_total[m], scrap_raw[m], modulus[m])


@njit(cache=True, error_model="numpy", inline="always")
def _points(x, mu, sigma, lam, L, k, h, ewma, ewma_w2, cusum_hi, cusum_lo, z_last, hist_a, hist_b, alarms):
    """tick's per-sensor part on flat slices: every point stepped, a missing one (NaN) kept out by a select.

    Branch-free on purpose, so LLVM vectorises it: the step is computed for a missing point too
    (no exception is possible) and its result dropped, where a `continue` would stop vectorisation.
    """
    for i in range(x.shape[0]):
        xv = x[i]
        ok = np.isfinite(xv)
        ha0, hb0, zl0, z0, w20, chi0, clo0 = hist_a[i], hist_b[i], z_last[i], ewma[i], ewma_w2[i], cusum_hi[i], cusum_lo[i]
        ha, hb, zl, z, w2, chi, clo, bits = sensor_step(ha0, hb0, zl0, z0, w20, chi0, clo0, xv,
                                                        mu[i], sigma[i], lam[i], L[i], k[i], h[i])
        hist_a[i] = ha if ok else ha0
        hist_b[i] = hb if ok else hb0
        z_last[i] = zl if ok else zl0
        ewma[i] = z if ok else z0
        ewma_w2[i] = w2 if ok else w20
        cusum_hi[i] = chi if ok else chi0
        cusum_lo[i] = clo if ok else clo0
        alarms[i] = bits if ok else 0


POINT_BLOCK = 8192  # points per parallel chunk: ~1 MB of state and parameters, a core's L2 share


def _tick_body(x, mu, sigma, lam, L, k, h, ewma, ewma_w2, cusum_hi, cusum_lo, z_last, hist_a, hist_b, alarms):
    """tick's sensor work on flat arrays, in blocks (one per prange iteration in the threaded build)."""
    n = x.shape[0]
    for b in prange((n + POINT_BLOCK - 1) // POINT_BLOCK):
        lo = b * POINT_BLOCK
        hi = min(n, lo + POINT_BLOCK)
        # slices start at 0, so the loop index is known non-negative (no wraparound select) and vectorises
        _points(x[lo:hi], mu[lo:hi], sigma[lo:hi], lam[lo:hi], L[lo:hi], k[lo:hi], h[lo:hi], ewma[lo:hi],
                ewma_w2[lo:hi], cusum_hi[lo:hi], cusum_lo[lo:hi], z_last[lo:hi], hist_a[lo:hi], hist_b[lo:hi],
                alarms[lo:hi])


# One body, compiled twice: threads pay off only for a plant of many machines on an otherwise idle
# host; for a few, starting them costs more than the work, and on a busy host a parallel region
# waits for its slowest (descheduled) thread.
_tick_kernel = njit(cache=True, parallel=True, error_model="numpy")(_tick_body)
_tick_kernel_serial = njit(cache=True, error_model="numpy")(_tick_body)
PARALLEL_MIN_MACHINES = 256


def _flat(a: np.ndarray, name: str) -> np.ndarray:
    """A 1-D view of a C-contiguous state/parameter array (never a copy: tick writes through it)."""
    if not a.flags.c_contiguous:
        raise ValueError(f"{name} must be C-contiguous")
    return a.reshape(-1)


def _arr(a: np.ndarray, dtype: type, shape: tuple[int, ...], name: str) -> np.ndarray:
    a = np.ascontiguousarray(a, dtype=dtype)
    if a.shape != shape:
        raise ValueError(f"{name} has shape {a.shape}, expected {shape}")
    return a


def tick(state: EngineState, params: EngineParams, x: np.ndarray, *, has_signal: np.ndarray,
         running: np.ndarray, fault: np.ndarray, setup: np.ndarray, planned_down: np.ndarray,
         speed: np.ndarray, good_raw: np.ndarray, scrap_raw: np.ndarray, now_us: int,
         out: TickResult | None = None) -> TickResult:
    """Advance every machine by one tick in place; see the module docstring and TickResult."""
    m, s = state.shape
    u8 = np.uint8
    x = _arr(x, np.float64, (m, s), "x")
    sig = [_arr(a, u8, (m,), n) for a, n in ((has_signal, "has_signal"), (running, "running"), (fault, "fault"),
                                               (setup, "setup"), (planned_down, "planned_down"))]
    speed = _arr(speed, np.float64, (m,), "speed")
    good_raw = _arr(good_raw, np.float64, (m,), "good_raw")
    scrap_raw = _arr(scrap_raw, np.float64, (m,), "scrap_raw")
    if out is None:
        out = new_result(m, s)
    p, st = params, state
    _machines(*sig, speed, good_raw, scrap_raw, np.int64(now_us), p.counter_modulus, st.machine_state,
              st.state_since_us, st.good_last, st.scrap_last, st.good_total, st.scrap_total,
              out.changed, out.prev_state, out.prev_since_us)
    kernel = _tick_kernel if m >= PARALLEL_MIN_MACHINES else _tick_kernel_serial
    kernel(*(_flat(a, n) for a, n in (
        (x, "x"), (p.mu, "mu"), (p.sigma, "sigma"), (p.lam, "lam"), (p.L, "L"), (p.k, "k"), (p.h, "h"),
        (st.ewma, "ewma"), (st.ewma_w2, "ewma_w2"), (st.cusum_hi, "cusum_hi"), (st.cusum_lo, "cusum_lo"),
        (st.z_last, "z_last"), (st.hist_a, "hist_a"), (st.hist_b, "hist_b"), (out.alarms, "alarms"))))
    out.state, out.good_total, out.scrap_total = st.machine_state, st.good_total, st.scrap_total
    return out


# ================================================================================================
# Batch versions over one historian series (SPC charts, trainers)
# ================================================================================================


@njit(cache=True)
def _rule_flags(series, mu, sigma):
    """rule_flags on a float64 array."""
    out = np.zeros(series.shape[0], dtype=np.uint32)
    hist_a, hist_b, z_last = 0, 0, np.nan
    for i in range(series.shape[0]):
        if np.isfinite(series[i]):
            z = (series[i] - mu) / sigma
            hist_a, hist_b, out[i] = rules_push(hist_a, hist_b, z_last, z)
            z_last = z
    return out


@njit(cache=True)
def _alarm_flags(series, mu, sigma, lam, L, k, h):
    """alarm_flags on a float64 array."""
    out = np.zeros(series.shape[0], dtype=np.uint32)
    hist_a, hist_b, z_last, z, w2, c_hi, c_lo = 0, 0, np.nan, mu, 1.0, 0.0, 0.0
    for i in range(series.shape[0]):
        if np.isfinite(series[i]):
            hist_a, hist_b, z_last, z, w2, c_hi, c_lo, bits = sensor_step(
                hist_a, hist_b, z_last, z, w2, c_hi, c_lo, series[i], mu, sigma, lam, L, k, h)
            out[i] = bits
    return out


@njit(cache=True)
def _ewma_series(series, mu, sigma, lam, L):
    """ewma_series on a float64 array."""
    n = series.shape[0]
    z_out, lcl, ucl = np.full(n, np.nan), np.full(n, np.nan), np.full(n, np.nan)
    z, w2 = mu, 1.0
    for i in range(n):
        if np.isfinite(series[i]):
            z, w2, half = ewma_step(z, w2, series[i], sigma, lam, L)
            z_out[i], lcl[i], ucl[i] = z, mu - half, mu + half
    return z_out, lcl, ucl


@njit(cache=True)
def _cusum_series(series, mu, sigma, k):
    """cusum_series on a float64 array."""
    n = series.shape[0]
    hi_out, lo_out = np.full(n, np.nan), np.full(n, np.nan)
    c_hi, c_lo = 0.0, 0.0
    for i in range(n):
        if np.isfinite(series[i]):
            c_hi, c_lo = cusum_step(c_hi, c_lo, series[i], mu, sigma, k)
            hi_out[i], lo_out[i] = c_hi, c_lo
    return hi_out, lo_out


def _series(series: np.ndarray) -> np.ndarray:
    a = np.ascontiguousarray(series, dtype=np.float64)
    if a.ndim != 1:
        raise ValueError(f"series must be 1-D, got shape {a.shape}")
    return a


def rule_flags(series: np.ndarray, mu: float, sigma: float) -> np.ndarray:
    """Western Electric / Nelson bits (uint32) per point of a series, as tick gives them online; 0 at NaN."""
    return _rule_flags(_series(series), float(mu), float(sigma))


def alarm_flags(series: np.ndarray, mu: float, sigma: float, lam: float, L: float, k: float, h: float) -> np.ndarray:
    """All alarm bits (rules, EWMA, CUSUM) per point, exactly as tick gives them for one sensor; 0 at NaN."""
    return _alarm_flags(_series(series), float(mu), float(sigma), float(lam), float(L), float(k), float(h))


def ewma_series(series: np.ndarray, mu: float, sigma: float, lam: float,
                L: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(EWMA, lower limit, upper limit) per point, started at mu; NaN where the series has no point."""
    return _ewma_series(_series(series), float(mu), float(sigma), float(lam), float(L))


def cusum_series(series: np.ndarray, mu: float, sigma: float, k: float) -> tuple[np.ndarray, np.ndarray]:
    """(C+, C-) per point, started at 0 (decision interval H = h sigma); NaN where the series has no point."""
    return _cusum_series(_series(series), float(mu), float(sigma), float(k))
