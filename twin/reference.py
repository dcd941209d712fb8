"""The twin's tick written a second, independent way in numpy: the correctness oracle for twin.kernels.

Same state, parameters and outputs as `twin.kernels.tick`, no numba and no loop over machines or
sensors: every step works on whole [M, S] arrays. The rules are written the other way round from
the kernel: the packed predicate histories are unpacked into boolean [points, 15] windows (newest
first) and each rule is a whole-window reduction (all/any/sum over the last n points), not a
bit-mask test, so agreement is evidence, not tautology. It is slow by construction (the unpacked
windows): bench.twin times it only as the naive figure; its baseline is bench.twin_numpy. `value_windows_rules` applies the same
reductions to windows of standardised values: an oracle for the batch functions that does not
depend on the history format.
"""

from __future__ import annotations

import numpy as np

from twin.kernels import (
    CUSUM_HIGH, CUSUM_LOW, EWMA_OUT, F_BEYOND3, F_DOWN, F_HI1, F_HI2, F_LO1, F_LO2, F_NEG, F_POS, F_UP, F_WITHIN1, N1,
    N2, N3, N4, N5, N6, N7, N8, ROLLOVER_FRACTION, STATE_IDLE, STATE_PLANNED_DOWN, STATE_PRODUCING, STATE_SETUP,
    STATE_UNPLANNED_DOWN, W_BEYOND3, W_DOWN, W_HI1, W_HI2, W_LO1, W_LO2, W_NEG, W_POS, W_UP, W_WITHIN1, WE1, WE2,
    WE3, WE4, WINDOW, EngineParams, EngineState, TickResult, new_result,
)


def _field(word: np.ndarray, offset: int, width: int) -> np.ndarray:
    """One predicate field of packed histories [n] -> boolean windows [n, WINDOW], newest first, False past width."""
    win = np.zeros((word.shape[0], WINDOW), dtype=bool)
    win[:, :width] = (word[:, None] >> (offset + np.arange(width, dtype=np.int64))) & 1
    return win


def _packed(preds: list[tuple[np.ndarray, int, int]], old: np.ndarray) -> np.ndarray:
    """Shift each field of old packed histories by one point and put the new predicates at its bit 0."""
    new = np.zeros_like(old)
    for pred, offset, width in preds:
        kept = (old >> offset) & ((1 << (width - 1)) - 1)  # the field's newest width-1 points
        new |= (kept << (offset + 1)) | (pred.astype(np.int64) << offset)
    return new


def rules_from_windows(pos: np.ndarray, neg: np.ndarray, hi1: np.ndarray, lo1: np.ndarray, hi2: np.ndarray,
                       lo2: np.ndarray, beyond3: np.ndarray, within1: np.ndarray, up: np.ndarray,
                       down: np.ndarray) -> np.ndarray:
    """Rule bits (uint32) from boolean predicate windows [n, WINDOW], newest first (up/down: step into point i)."""
    bits = np.zeros(pos.shape[0], dtype=np.uint32)

    def put(mask: np.ndarray, bit: int) -> None:
        bits[mask] |= np.uint32(bit)

    put(beyond3[:, 0], WE1 | N1)
    put((hi2[:, :3].sum(1) >= 2) | (lo2[:, :3].sum(1) >= 2), WE2 | N5)
    put((hi1[:, :5].sum(1) >= 4) | (lo1[:, :5].sum(1) >= 4), WE3 | N6)
    put(pos[:, :8].all(1) | neg[:, :8].all(1), WE4)
    put(pos[:, :9].all(1) | neg[:, :9].all(1), N2)
    put(up[:, :5].all(1) | down[:, :5].all(1), N3)
    put(((up[:, :12] & down[:, 1:13]) | (down[:, :12] & up[:, 1:13])).all(1), N4)
    put(within1.all(1), N7)
    put((hi1[:, :8] | lo1[:, :8]).all(1) & hi1[:, :8].any(1) & lo1[:, :8].any(1), N8)
    return bits


def value_windows_rules(win: np.ndarray) -> np.ndarray:
    """Rule bits for windows win[n, WINDOW] of standardised values, newest first, NaN where no point."""
    older = np.concatenate([win[:, 1:], np.full((win.shape[0], 1), np.nan)], axis=1)
    a = np.abs(win)
    return rules_from_windows(win > 0, win < 0, win > 1, win < -1, win > 2, win < -2, a > 3, a <= 1,
                              win > older, win < older)


def tick_numpy(state: EngineState, params: EngineParams, x: np.ndarray, *, has_signal: np.ndarray,
               running: np.ndarray, fault: np.ndarray, setup: np.ndarray, planned_down: np.ndarray,
               speed: np.ndarray, good_raw: np.ndarray, scrap_raw: np.ndarray, now_us: int,
               out: TickResult | None = None) -> TickResult:
    """`twin.kernels.tick` in numpy: same arguments, same in-place state update, same outputs."""
    m, s = state.shape
    p, st = params, state
    if out is None:
        out = new_result(m, s)

    # machine state: later assignments win, so write in increasing priority
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

    # part counters
    for last, total, raw in ((st.good_last, st.good_total, good_raw), (st.scrap_last, st.scrap_total, scrap_raw)):
        mod = p.counter_modulus
        have = np.isfinite(raw)
        based = have & ~np.isnan(last)
        up = based & (raw >= last)
        roll = based & ~up & (mod > 0.0) & (last >= (1.0 - ROLLOVER_FRACTION) * mod) & (raw < ROLLOVER_FRACTION * mod)
        reset = based & ~up & ~roll
        total[up] += raw[up] - last[up]
        total[roll] += (mod[roll] - last[roll]) + raw[roll]
        total[reset] += raw[reset]
        last[have] = raw[have]

    # sensors: only the finite points move
    ok = np.isfinite(x)
    xs = x[ok]
    mu, sigma = p.mu[ok], p.sigma[ok]
    lam, L, k, h = p.lam[ok], p.L[ok], p.k[ok], p.h[ok]

    lam1 = 1.0 - lam
    z = lam * xs + lam1 * st.ewma[ok]
    w2 = st.ewma_w2[ok] * (lam1 * lam1)
    half = (L * sigma) * np.sqrt((lam / (2.0 - lam)) * (1.0 - w2))
    st.ewma[ok] = z
    st.ewma_w2[ok] = w2

    kk = k * sigma
    c_hi = np.maximum(0.0, (xs - (mu + kk)) + st.cusum_hi[ok])
    c_lo = np.maximum(0.0, ((mu - kk) - xs) + st.cusum_lo[ok])
    st.cusum_hi[ok] = c_hi
    st.cusum_lo[ok] = c_lo

    zs = (xs - mu) / sigma
    zl = st.z_last[ok]
    az = np.abs(zs)
    fields_a = [(zs > 0, F_POS, W_POS), (zs < 0, F_NEG, W_NEG), (zs > 1, F_HI1, W_HI1), (zs < -1, F_LO1, W_LO1),
                (zs > 2, F_HI2, W_HI2), (zs < -2, F_LO2, W_LO2), (az <= 1, F_WITHIN1, W_WITHIN1),
                (az > 3, F_BEYOND3, W_BEYOND3)]
    fields_b = [(zs > zl, F_UP, W_UP), (zs < zl, F_DOWN, W_DOWN)]
    hist_a = _packed(fields_a, st.hist_a[ok])
    hist_b = _packed(fields_b, st.hist_b[ok])
    st.hist_a[ok] = hist_a
    st.hist_b[ok] = hist_b
    st.z_last[ok] = zs
    wa = [_field(hist_a, f, w) for _, f, w in fields_a]
    wb = [_field(hist_b, f, w) for _, f, w in fields_b]
    bits = rules_from_windows(*wa[:6], wa[7], wa[6], *wb)
    hh = h * sigma
    bits[(z > mu + half) | (z < mu - half)] |= np.uint32(EWMA_OUT)
    bits[c_hi > hh] |= np.uint32(CUSUM_HIGH)
    bits[c_lo > hh] |= np.uint32(CUSUM_LOW)
    out.alarms[:] = 0
    out.alarms[ok] = bits
    out.state, out.good_total, out.scrap_total = st.machine_state, st.good_total, st.scrap_total
    return out
