"""The twin's tick as a competent numpy engineer would write it: bench.twin's best-effort baseline.

Same state, parameters and outputs as `twin.kernels.tick`, and the same packed predicate
histories: each rule is a mask test on the packed int64 words (np.bitwise_count for the
"4 of 5" rules), computed on whole [M, S] arrays with np.where for missing points instead of
gathering the finite points out and scattering them back. No Python loop over machines or
sensors. The slow, independently written oracle is twin.reference.tick_numpy.
"""

from __future__ import annotations

import numpy as np

from twin.kernels import (
    _ALT, _KEEP_A, _KEEP_B, CUSUM_HIGH, CUSUM_LOW, EWMA_OUT, F_BEYOND3, F_DOWN, F_HI1, F_HI2, F_LO1, F_LO2, F_NEG,
    F_POS, F_UP, F_WITHIN1, N1, N2, N3, N4, N5, N6, N7, N8, ROLLOVER_FRACTION, STATE_IDLE, STATE_PLANNED_DOWN,
    STATE_PRODUCING, STATE_SETUP, STATE_UNPLANNED_DOWN, WE1, WE2, WE3, WE4, EngineParams, EngineState, TickResult,
    new_result,
)

_U = np.uint32


def _bit(cond: np.ndarray, b: int) -> np.ndarray:
    """cond as uint32 bit b."""
    return cond.astype(np.uint32) * _U(b)


def window_rules_packed(ha: np.ndarray, hb: np.ndarray) -> np.ndarray:
    """Western Electric/Nelson bits from packed histories (the kernel's mask tests, on whole arrays)."""
    pos = (ha >> F_POS) & 0x1FF
    neg = (ha >> F_NEG) & 0x1FF
    hi1 = (ha >> F_HI1) & 0xFF
    lo1 = (ha >> F_LO1) & 0xFF
    hi2 = (ha >> F_HI2) & 0x7
    lo2 = (ha >> F_LO2) & 0x7
    up = (hb >> F_UP) & 0x1FFF
    down = (hb >> F_DOWN) & 0x1FFF
    bits = _bit(((ha >> F_BEYOND3) & 1) != 0, WE1 | N1)
    bits |= _bit(((hi2 & (hi2 - 1)) != 0) | ((lo2 & (lo2 - 1)) != 0), WE2 | N5)
    bits |= _bit((np.bitwise_count(hi1 & 0x1F) >= 4) | (np.bitwise_count(lo1 & 0x1F) >= 4), WE3 | N6)
    bits |= _bit(((pos & 0xFF) == 0xFF) | ((neg & 0xFF) == 0xFF), WE4)
    bits |= _bit((pos == 0x1FF) | (neg == 0x1FF), N2)
    bits |= _bit(((up & 0x1F) == 0x1F) | ((down & 0x1F) == 0x1F), N3)
    bits |= _bit(((up == _ALT) & (down == (0x1FFF ^ _ALT))) | ((down == _ALT) & (up == (0x1FFF ^ _ALT))), N4)
    bits |= _bit(((ha >> F_WITHIN1) & 0x7FFF) == 0x7FFF, N7)
    bits |= _bit(((hi1 | lo1) == 0xFF) & (hi1 != 0) & (lo1 != 0), N8)
    return bits


def _count(last: np.ndarray, total: np.ndarray, raw: np.ndarray, mod: np.ndarray) -> None:
    """One part counter in place: increments, rollovers past the modulus, resets."""
    have = np.isfinite(raw)
    based = have & ~np.isnan(last)
    up = based & (raw >= last)
    roll = based & ~up & (mod > 0.0) & (last >= (1.0 - ROLLOVER_FRACTION) * mod) & (raw < ROLLOVER_FRACTION * mod)
    reset = based & ~up & ~roll
    total += np.where(up, raw - last, 0.0) + np.where(roll, (mod - last) + raw, 0.0) + np.where(reset, raw, 0.0)
    np.copyto(last, raw, where=have)


def tick_packed(state: EngineState, params: EngineParams, x: np.ndarray, *, has_signal: np.ndarray,
                running: np.ndarray, fault: np.ndarray, setup: np.ndarray, planned_down: np.ndarray,
                speed: np.ndarray, good_raw: np.ndarray, scrap_raw: np.ndarray, now_us: int,
                out: TickResult | None = None) -> TickResult:
    """`twin.kernels.tick` in vectorised numpy on packed histories: same arguments, state update and outputs."""
    m, s = state.shape
    p, st = params, state
    if out is None:
        out = new_result(m, s)

    code = np.full(m, STATE_IDLE, dtype=np.uint8)
    code[(running != 0) & (speed > 0.0)] = STATE_PRODUCING
    code[setup != 0] = STATE_SETUP
    code[fault != 0] = STATE_UNPLANNED_DOWN
    code[planned_down != 0] = STATE_PLANNED_DOWN
    ch = (has_signal != 0) & (code != st.machine_state)
    out.changed[:] = ch
    out.prev_state[ch] = st.machine_state[ch]
    out.prev_since_us[ch] = st.state_since_us[ch]
    st.machine_state[ch] = code[ch]
    st.state_since_us[ch] = now_us

    _count(st.good_last, st.good_total, good_raw, p.counter_modulus)
    _count(st.scrap_last, st.scrap_total, scrap_raw, p.counter_modulus)

    ok = np.isfinite(x)
    mu, sigma, lam = p.mu, p.sigma, p.lam
    lam1 = 1.0 - lam
    z = lam * x + lam1 * st.ewma
    w2 = st.ewma_w2 * (lam1 * lam1)
    half = (p.L * sigma) * np.sqrt((lam / (2.0 - lam)) * (1.0 - w2))
    np.copyto(st.ewma, z, where=ok)
    np.copyto(st.ewma_w2, w2, where=ok)

    kk = p.k * sigma
    c_hi = np.maximum(0.0, (x - (mu + kk)) + st.cusum_hi)
    c_lo = np.maximum(0.0, ((mu - kk) - x) + st.cusum_lo)
    np.copyto(st.cusum_hi, c_hi, where=ok)
    np.copyto(st.cusum_lo, c_lo, where=ok)

    zs = (x - mu) / sigma
    az = np.abs(zs)
    i64 = np.int64
    new_a = ((zs > 0).astype(i64) << F_POS) | ((zs < 0).astype(i64) << F_NEG) | ((zs > 1).astype(i64) << F_HI1) \
        | ((zs < -1).astype(i64) << F_LO1) | ((zs > 2).astype(i64) << F_HI2) | ((zs < -2).astype(i64) << F_LO2) \
        | ((az <= 1).astype(i64) << F_WITHIN1) | ((az > 3).astype(i64) << F_BEYOND3)
    new_b = ((zs > st.z_last).astype(i64) << F_UP) | ((zs < st.z_last).astype(i64) << F_DOWN)
    ha = ((st.hist_a << 1) & _KEEP_A) | new_a
    hb = ((st.hist_b << 1) & _KEEP_B) | new_b
    np.copyto(st.hist_a, ha, where=ok)
    np.copyto(st.hist_b, hb, where=ok)
    np.copyto(st.z_last, zs, where=ok)

    bits = window_rules_packed(ha, hb)
    hh = p.h * sigma
    bits |= _bit((z > mu + half) | (z < mu - half), EWMA_OUT)
    bits |= _bit(c_hi > hh, CUSUM_HIGH)
    bits |= _bit(c_lo > hh, CUSUM_LOW)
    bits[~ok] = 0
    out.alarms[:] = bits
    out.state, out.good_total, out.scrap_total = st.machine_state, st.good_total, st.scrap_total
    return out
