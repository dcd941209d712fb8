"""twin.kernels: every rule on patterns built to fire (or not) at a known point, EWMA/CUSUM and
counters against hand-computed values, the state machine, NaN handling, online == batch,
numba == the numpy oracle, snapshot round trips."""

from __future__ import annotations

from dataclasses import fields

import numpy as np
import pytest

from twin import kernels as k
from twin.kernels import (
    CUSUM_HIGH, CUSUM_LOW, EWMA_OUT, N1, N2, N3, N4, N5, N6, N7, N8, RULES, STATE_IDLE, STATE_PLANNED_DOWN,
    STATE_PRODUCING, STATE_SETUP, STATE_UNKNOWN, STATE_UNPLANNED_DOWN, WE1, WE2, WE3, WE4,
)
from twin.reference import tick_numpy, value_windows_rules
from twin.synthetic import Plant


def fired(series: list[float], bit: int) -> list[int]:
    """Indices where the rule bit is set, for a series already standardised (mu 0, sigma 1)."""
    flags = k.rule_flags(np.asarray(series, dtype=np.float64), 0.0, 1.0)
    return [int(i) for i in np.flatnonzero(flags & bit)]


# -- the rules, one by one ------------------------------------------------------------------------


def test_we1_n1_beyond_3_sigma():
    assert fired([0.0, 0.0, 3.5, 0.0, -3.2], WE1) == [2, 4]
    assert fired([0.0, 0.0, 3.5, 0.0, -3.2], N1) == [2, 4]
    assert fired([3.0, -3.0, 2.9], WE1 | N1) == []  # on the limit is not beyond it


def test_we2_n5_two_of_three_beyond_2_sigma_same_side():
    assert fired([0.0, 2.5, 0.0, 2.5], WE2) == [3]
    assert fired([0.0, 2.5, 0.0, 2.5], N5) == [3]
    assert fired([2.5, 0.0, 2.5, 0.0, 0.0], WE2) == [2]  # at 3 the last 3 are 0, 2.5, 0
    assert fired([0.0, 2.5, 2.5, 0.0, 0.0], WE2) == [2, 3]  # the pattern still holds on the next point
    assert fired([2.5, 0.0, 0.0, 2.5], WE2 | N5) == []  # 4 points apart
    assert fired([2.5, -2.5, 0.0, 2.5], WE2 | N5) == []  # opposite sides: 1 of 3 on each side
    assert fired([0.0, -2.1, -2.1], WE2) == [2]


def test_we3_n6_four_of_five_beyond_1_sigma_same_side():
    assert fired([0.0, 1.5, 1.5, 0.0, 1.5, 1.5], WE3) == [5]
    assert fired([0.0, 1.5, 1.5, 0.0, 1.5, 1.5], N6) == [5]
    assert fired([1.5, 1.5, 0.0, 0.0, 1.5, 1.5], WE3 | N6) == []  # 3 of the last 5
    assert fired([-1.5, -1.5, 1.5, 1.5, -1.5], WE3 | N6) == []  # 5 of 5 beyond, but 3 and 2 by side
    assert fired([-1.5, -1.5, -1.5, 0.0, -1.5], WE3) == [4]


def test_we4_eight_on_one_side_and_n2_nine():
    s = [-0.5] + [0.3] * 9
    assert fired(s, WE4) == [8, 9]  # the 8th point above fires WE4, and the 9th still does
    assert fired(s, N2) == [9]  # ...but only the 9th fires N2
    assert fired([-0.5] + [0.3] * 8, N2) == []
    assert fired([0.3] * 7 + [0.0] + [0.3] * 8, WE4) == [15]  # a point on the centre line breaks the run
    assert fired([-0.2] * 9, WE4 | N2) == [7, 8]


def test_n3_six_steadily_increasing_or_decreasing():
    up = [0.0, -0.5, -0.4, -0.3, -0.2, -0.1, 0.05]  # 6 rising points after a fall: 5 rises at index 6
    assert fired(up, N3) == [6]
    assert fired([-0.5, -0.4, -0.3, -0.2, -0.1], N3) == []  # 5 points, 4 steps
    assert fired([0.9, 0.7, 0.5, 0.3, 0.1, -0.1, -0.3], N3) == [5, 6]
    assert fired([-0.5, -0.4, -0.3, -0.3, -0.2, -0.1, 0.0], N3) == []  # a flat step breaks it


def test_n4_fourteen_alternating():
    # a flat step into index 1, then down, up, down...: points 1..14 are 14 alternating points
    alt = [0.5] + [0.5 if i % 2 == 0 else -0.5 for i in range(15)]
    assert fired(alt, N4) == [14, 15]
    assert fired(alt[:14], N4) == []  # 13 points
    broken = alt[:8] + [alt[7]] + alt[8:]  # a repeated value in the middle: runs of 7 and 9 points
    assert fired(broken, N4) == []
    assert fired([0.1, 0.2] + [0.3, 0.1] * 7, N4) == [14, 15]  # small swings alternate too


def test_n7_fifteen_within_1_sigma():
    s = [1.5] + [0.5, -0.5, 0.2, 0.9, -1.0, 0.0, 0.3, -0.3, 0.7, -0.7, 0.1, 0.4, -0.2, 0.6, 0.8, 0.2]
    # 15 points within 1 sigma end at index 15 (1.0 itself counts as within), and the run goes on
    assert fired(s, N7) == [15, 16]
    assert fired(s[:15], N7) == []


def test_n8_eight_beyond_1_sigma_on_both_sides():
    s = [0.0, 1.5, -1.5, 1.2, 2.5, -1.1, -2.0, 1.3, -1.4]
    assert fired(s, N8) == [8]
    assert fired([0.0] + [1.5] * 8, N8) == []  # all on one side
    assert fired([0.0, 1.5, -1.5, 1.2, 0.5, -1.1, -2.0, 1.3, -1.4], N8) == []  # one point within


def test_a_missing_point_is_skipped_not_a_break():
    s = [0.3] * 4 + [np.nan] + [0.3] * 4
    flags = k.rule_flags(np.asarray(s), 0.0, 1.0)
    assert flags[4] == 0
    assert [int(i) for i in np.flatnonzero(flags & WE4)] == [8]  # the 8th real point


def test_rules_on_unstandardised_series():
    mu, sigma = 100.0, 4.0
    s = mu + sigma * np.array([0.0, 2.5, 0.0, 2.5, 3.5])
    flags = k.rule_flags(s, mu, sigma)
    assert flags[3] & WE2 and not flags[2] & WE2
    assert flags[4] & WE1 and not flags[3] & WE1


def test_batch_rules_equal_the_numpy_window_oracle():
    rng = np.random.default_rng(3)
    # noise plus segments built to trip every rule
    parts = [rng.normal(size=200), np.full(12, 0.4), np.linspace(-0.9, 0.9, 8), 1.5 * (-1.0) ** np.arange(20),
             0.3 * rng.normal(size=30), rng.normal(2.0, 0.5, 20), rng.normal(size=200) * 2]
    z = np.concatenate(parts)
    z[rng.random(z.size) < 0.05] = np.nan
    flags = k.rule_flags(z, 0.0, 1.0)
    finite = z[np.isfinite(z)]
    padded = np.concatenate([np.full(k.WINDOW - 1, np.nan), finite])
    wins = np.lib.stride_tricks.sliding_window_view(padded, k.WINDOW)[:, ::-1]  # newest first
    expected = np.zeros(z.size, dtype=np.uint32)
    expected[np.isfinite(z)] = value_windows_rules(np.ascontiguousarray(wins))
    np.testing.assert_array_equal(flags, expected)
    seen = np.bitwise_or.reduce(flags)
    assert seen & RULES == RULES  # the oracle agreed on points where every rule fired


# -- EWMA and CUSUM against hand computation ------------------------------------------------------


def test_ewma_values_and_limits():
    z, lcl, ucl = k.ewma_series(np.array([1.0, 2.0, np.nan, 4.0]), mu=0.0, sigma=1.0, lam=0.5, L=3.0)
    # z1 = .5*1 = .5; z2 = .5*2 + .5*.5 = 1.25; z3 = .5*4 + .5*1.25 = 2.625
    # half width = 3 sqrt(.5/1.5 (1 - .25^t)): t=1 -> 3 sqrt(.25) = 1.5, t=2 -> 3 sqrt(.3125), t=3 -> 3 sqrt(21/64)
    np.testing.assert_allclose(z[[0, 1, 3]], [0.5, 1.25, 2.625], rtol=0, atol=1e-12)
    np.testing.assert_allclose(ucl[[0, 1, 3]], [1.5, 3 * np.sqrt(0.3125), 3 * np.sqrt(21 / 64)], rtol=0, atol=1e-12)
    np.testing.assert_allclose(lcl[[0, 1, 3]], [-1.5, -3 * np.sqrt(0.3125), -3 * np.sqrt(21 / 64)], rtol=0,
                               atol=1e-12)
    assert np.isnan(z[2]) and np.isnan(ucl[2])
    flags = k.alarm_flags(np.array([1.0, 2.0, np.nan, 4.0]), 0.0, 1.0, 0.5, 3.0, 0.5, 50.0)
    # 2.625 > 3 sqrt(21/64) = 1.7185 (out); 1.25 < 1.677 (in)
    assert [bool(f & EWMA_OUT) for f in flags] == [False, False, False, True]


def test_ewma_starts_at_the_target():
    z, lcl, ucl = k.ewma_series(np.array([10.0]), mu=10.0, sigma=2.0, lam=0.2, L=3.0)
    assert z[0] == 10.0
    # half width = 3 * 2 * sqrt(.2/1.8 * (1 - .64)) = 6 * sqrt(.04) = 1.2
    assert ucl[0] == pytest.approx(11.2, abs=1e-12) and lcl[0] == pytest.approx(8.8, abs=1e-12)


def test_cusum_values_and_decision_interval():
    x = np.array([13.0, 13.0, 8.0, 5.0, 15.0])
    hi, lo = k.cusum_series(x, mu=10.0, sigma=2.0, k=0.5)
    # K = 1, so C+ adds x - 11, C- adds 9 - x, both floored at 0
    np.testing.assert_allclose(hi, [2.0, 4.0, 1.0, 0.0, 4.0], rtol=0, atol=1e-12)
    np.testing.assert_allclose(lo, [0.0, 0.0, 1.0, 5.0, 0.0], rtol=0, atol=1e-12)
    flags = k.alarm_flags(x, 10.0, 2.0, 0.2, 3.0, 0.5, 2.0)  # H = 4: C+ = 4 is not above it; C- = 5 is
    assert [bool(f & CUSUM_HIGH) for f in flags] == [False] * 5
    assert [bool(f & CUSUM_LOW) for f in flags] == [False, False, False, True, False]
    flags = k.alarm_flags(x, 10.0, 2.0, 0.2, 3.0, 0.5, 1.5)  # H = 3
    assert [bool(f & CUSUM_HIGH) for f in flags] == [False, True, False, False, True]


# -- helpers for tick ------------------------------------------------------------------------------


def inputs(m: int, s: int, **over: object) -> dict:
    """Tick arguments with no news at all, overridden by keyword."""
    d = dict(x=np.full((m, s), np.nan), has_signal=np.zeros(m, np.uint8), running=np.zeros(m, np.uint8),
             fault=np.zeros(m, np.uint8), setup=np.zeros(m, np.uint8), planned_down=np.zeros(m, np.uint8),
             speed=np.zeros(m), good_raw=np.full(m, np.nan), scrap_raw=np.full(m, np.nan), now_us=0)
    d.update(over)
    return d


# -- counters ------------------------------------------------------------------------------------


def run_counter(readings: list[float], modulus: float) -> list[float]:
    """good_total after each raw reading of one machine."""
    p = k.make_params(1, 1, counter_modulus=modulus)
    st = k.new_state(p)
    totals = []
    for t, r in enumerate(readings):
        res = k.tick(st, p, **inputs(1, 1, good_raw=np.array([r]), now_us=t))
        totals.append(float(res.good_total[0]))
    return totals


def test_counter_baseline_then_increments():
    assert run_counter([500.0, 510.0, 510.0, 530.0], 1000.0) == [0.0, 10.0, 10.0, 30.0]


def test_counter_rollover():
    # 950 is in the top 10 % of 1000, 20 in the bottom 10 %: 50 to the wrap + 20 after it
    assert run_counter([900.0, 950.0, 20.0, 25.0], 1000.0) == [0.0, 50.0, 120.0, 125.0]


def test_counter_reset():
    # a drop that is not a wrap: the new value counts as parts made since the reset
    assert run_counter([500.0, 520.0, 3.0, 10.0], 1000.0) == [0.0, 20.0, 23.0, 30.0]
    assert run_counter([900.0, 950.0, 500.0], 1000.0) == [0.0, 50.0, 550.0]  # from the top, but not into the bottom
    assert run_counter([50.0, 80.0, 20.0], 1000.0) == [0.0, 30.0, 50.0]  # into the bottom, not from the top


def test_counter_without_modulus_never_rolls_over():
    assert run_counter([950.0, 990.0, 20.0], 0.0) == [0.0, 40.0, 60.0]


def test_counter_missing_reading_changes_nothing():
    assert run_counter([100.0, np.nan, 130.0, np.nan], 1000.0) == [0.0, 0.0, 30.0, 30.0]
    totals = run_counter([np.nan, 100.0, 130.0], 1000.0)  # the first real reading is the baseline
    assert totals == [0.0, 0.0, 30.0]


def test_scrap_counts_separately():
    p = k.make_params(2, 1, counter_modulus=np.array([100.0, 0.0]))
    st = k.new_state(p)
    k.tick(st, p, **inputs(2, 1, good_raw=np.array([10.0, 10.0]), scrap_raw=np.array([95.0, 95.0])))
    r = k.tick(st, p, **inputs(2, 1, good_raw=np.array([12.0, 12.0]), scrap_raw=np.array([2.0, 2.0])))
    assert r.good_total.tolist() == [2.0, 2.0]
    assert r.scrap_total.tolist() == [7.0, 2.0]  # machine 0 wraps at 100 (5 + 2), machine 1 was reset


# -- machine state ---------------------------------------------------------------------------------


@pytest.mark.parametrize("running,fault,setup,planned,speed,expected", [
    (1, 0, 0, 0, 10.0, STATE_PRODUCING),
    (1, 0, 0, 0, 0.0, STATE_IDLE),  # running at zero speed
    (0, 0, 0, 0, 10.0, STATE_IDLE),
    (1, 0, 1, 0, 10.0, STATE_SETUP),
    (1, 1, 1, 0, 10.0, STATE_UNPLANNED_DOWN),
    (1, 1, 1, 1, 10.0, STATE_PLANNED_DOWN),
    (0, 0, 0, 1, 0.0, STATE_PLANNED_DOWN),
    (0, 1, 0, 0, 0.0, STATE_UNPLANNED_DOWN),
])
def test_state_priority(running, fault, setup, planned, speed, expected):
    p = k.make_params(1, 1)
    st = k.new_state(p)
    r = k.tick(st, p, **inputs(1, 1, has_signal=np.ones(1, np.uint8), running=np.array([running], np.uint8),
                               fault=np.array([fault], np.uint8), setup=np.array([setup], np.uint8),
                               planned_down=np.array([planned], np.uint8), speed=np.array([speed]),
                               now_us=5))
    assert r.state[0] == expected
    assert r.changed[0] == 1 and r.prev_state[0] == STATE_UNKNOWN


def test_state_changes_are_reported_with_their_start():
    p = k.make_params(2, 1)
    st = k.new_state(p)
    one = np.ones(2, np.uint8)

    def step(t: int, has: list[int], running: list[int], fault: list[int]) -> k.TickResult:
        return k.tick(st, p, **inputs(2, 1, has_signal=np.array(has, np.uint8), running=np.array(running, np.uint8),
                                      fault=np.array(fault, np.uint8), speed=np.full(2, 5.0), now_us=t))

    r = step(100, [1, 1], [1, 0], [0, 0])
    assert r.state.tolist() == [STATE_PRODUCING, STATE_IDLE] and r.changed.tolist() == [1, 1]
    r = step(200, [1, 1], [1, 0], [0, 0])  # same signals: nothing changes
    assert r.changed.tolist() == [0, 0]
    r = step(300, [1, 0], [1, 1], [1, 1])  # machine 1 has no new signal: it holds, whatever the arrays say
    assert r.changed.tolist() == [1, 0]
    assert r.state.tolist() == [STATE_UNPLANNED_DOWN, STATE_IDLE]
    assert r.prev_state[0] == STATE_PRODUCING and r.prev_since_us[0] == 100  # producing over [100, 300)
    r = step(450, one.tolist(), [1, 1], [0, 0])
    assert r.changed.tolist() == [1, 1]
    assert r.prev_state.tolist() == [STATE_UNPLANNED_DOWN, STATE_IDLE]
    assert r.prev_since_us.tolist() == [300, 100]
    assert st.state_since_us.tolist() == [450, 450]


# -- tick: NaN, online == batch, numba == numpy, snapshots ---------------------------------------


def test_nan_leaves_a_sensor_untouched():
    p = k.make_params(2, 3, lam=0.3, sigma=2.0)
    st = k.new_state(p)
    rng = np.random.default_rng(1)
    for t in range(20):
        k.tick(st, p, **inputs(2, 3, x=rng.normal(0, 3, (2, 3)), now_us=t))
    before = st.copy()
    x = rng.normal(0, 3, (2, 3))
    x[0, 1] = np.nan
    x[1, 2] = np.nan
    r = k.tick(st, p, **inputs(2, 3, x=x, now_us=99))
    assert r.alarms[0, 1] == 0 and r.alarms[1, 2] == 0
    for f in ("ewma", "ewma_w2", "cusum_hi", "cusum_lo", "z_last", "hist_a", "hist_b"):
        a, b = getattr(st, f), getattr(before, f)
        assert a[0, 1] == b[0, 1] and a[1, 2] == b[1, 2], f
    for f in ("ewma", "ewma_w2", "z_last"):
        assert getattr(st, f)[0, 0] != getattr(before, f)[0, 0], f  # a sensor with a value did move


def test_online_tick_equals_batch_per_point():
    m, s, n = 3, 4, 300
    rng = np.random.default_rng(5)
    mu = rng.normal(10, 3, (m, s))
    sigma = rng.uniform(0.5, 2, (m, s))
    lam = rng.choice([0.1, 0.25, 0.4], (m, s))
    L = rng.choice([2.7, 3.0], (m, s))
    kk = rng.choice([0.25, 0.5], (m, s))
    h = rng.choice([3.0, 5.0], (m, s))
    p = k.make_params(m, s, mu=mu, sigma=sigma, lam=lam, L=L, k=kk, h=h)
    drift = np.cumsum(rng.normal(0, 0.1, (n, m, s)), axis=0)
    series = mu + sigma * (rng.normal(size=(n, m, s)) + drift)
    series[rng.random((n, m, s)) < 0.1] = np.nan
    st = k.new_state(p)
    online = np.stack([k.tick(st, p, **inputs(m, s, x=series[t], now_us=t)).alarms.copy() for t in range(n)])
    assert np.count_nonzero(online & RULES) > 0
    for i in range(m):
        for j in range(s):
            col = series[:, i, j]
            batch = k.alarm_flags(col, mu[i, j], sigma[i, j], lam[i, j], L[i, j], kk[i, j], h[i, j])
            np.testing.assert_array_equal(online[:, i, j], batch)
            np.testing.assert_array_equal(online[:, i, j] & RULES, k.rule_flags(col, mu[i, j], sigma[i, j]))
            z, _, _ = k.ewma_series(col, mu[i, j], sigma[i, j], lam[i, j], L[i, j])
            last = np.flatnonzero(np.isfinite(col))[-1]
            assert z[last] == st.ewma[i, j]
            c_hi, c_lo = k.cusum_series(col, mu[i, j], sigma[i, j], kk[i, j])
            assert c_hi[last] == st.cusum_hi[i, j] and c_lo[last] == st.cusum_lo[i, j]


def assert_states_close(a: k.EngineState, b: k.EngineState, tol: float) -> None:
    for f in fields(a):
        x, y = getattr(a, f.name), getattr(b, f.name)
        assert x.dtype == y.dtype and x.shape == y.shape, f.name
        if x.dtype.kind == "f":
            np.testing.assert_allclose(x, y, rtol=0, atol=tol, err_msg=f.name)  # NaN == NaN
        else:
            np.testing.assert_array_equal(x, y, err_msg=f.name)


# the serial and the threaded kernel; 2,500 x 7 points span several blocks, the last one partial
@pytest.mark.parametrize("machines", [60, k.PARALLEL_MIN_MACHINES, 2500])
def test_numba_equals_numpy_oracle(machines):
    plant = Plant(machines, 7, seed=11)
    p = plant.params
    st_nb = k.new_state(p)
    st_np = st_nb.copy()
    fired_any = 0
    for _ in range(60):
        inp = plant.inputs()
        r1 = k.tick(st_nb, p, **inp)
        r2 = tick_numpy(st_np, p, **inp)
        np.testing.assert_array_equal(r1.alarms, r2.alarms)
        for f in ("changed", "prev_state", "prev_since_us", "state"):
            np.testing.assert_array_equal(getattr(r1, f), getattr(r2, f), err_msg=f)
        np.testing.assert_allclose(r1.good_total, r2.good_total, rtol=0, atol=1e-9)
        np.testing.assert_allclose(r1.scrap_total, r2.scrap_total, rtol=0, atol=1e-9)
        fired_any |= int(np.bitwise_or.reduce(r1.alarms, axis=None))
    assert_states_close(st_nb, st_np, 1e-9)
    assert fired_any & RULES == RULES  # the comparison covered every rule firing
    assert st_nb.good_total.sum() > 0


def test_snapshot_round_trip_continues_identically():
    plant = Plant(20, 5, seed=2)
    p = plant.params
    st = k.new_state(p)
    for _ in range(30):
        k.tick(st, p, **plant.inputs())
    snap = k.snapshot(st)
    assert all(isinstance(v, np.ndarray) for v in snap.values())
    resumed = k.restore({name: v.copy() for name, v in snap.items()})
    assert_states_close(st, resumed, 0.0)
    for _ in range(30):
        inp = plant.inputs()
        r1 = k.tick(st, p, **inp).alarms.copy()
        r2 = k.tick(resumed, p, **inp).alarms.copy()
        np.testing.assert_array_equal(r1, r2)
    assert_states_close(st, resumed, 0.0)


def test_restored_counters_do_not_double_count():
    p = k.make_params(1, 1, counter_modulus=1000.0)
    st = k.new_state(p)
    for t, raw in enumerate([100.0, 140.0, 170.0]):
        k.tick(st, p, **inputs(1, 1, good_raw=np.array([raw]), now_us=t))
    resumed = k.restore(k.snapshot(st))
    r = k.tick(resumed, p, **inputs(1, 1, good_raw=np.array([170.0]), now_us=9))  # same reading again
    assert r.good_total[0] == 70.0
    r = k.tick(resumed, p, **inputs(1, 1, good_raw=np.array([175.0]), now_us=10))
    assert r.good_total[0] == 75.0


def test_restore_rejects_a_wrong_snapshot():
    st = k.new_state(k.make_params(2, 2))
    snap = k.snapshot(st)
    with pytest.raises(ValueError):
        k.restore({**snap, "version": np.array(99)})
    with pytest.raises(ValueError):
        k.restore({**snap, "hist_a": np.zeros((3, 2), np.int64)})


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError):
        k.make_params(1, 1, sigma=0.0)
    with pytest.raises(ValueError):
        k.make_params(1, 1, lam=1.5)
    p = k.make_params(2, 2)
    with pytest.raises(ValueError):
        k.tick(k.new_state(p), p, **inputs(2, 3))
