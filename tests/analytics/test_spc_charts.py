"""analytics.spc.charts: subgrouping, every chart type against limits worked out by hand with the tabulated
constants, every rule surfacing on a chart built to trigger it (and not on one built not to), frozen limits
at other subgroup sizes, and the errors for data a chart cannot use."""

from __future__ import annotations

import numpy as np
import pytest

from analytics.spc import charts as c
from analytics.spc.charts import ChartDataError, Counts, Limits, Options
from twin.kernels import NELSON, WESTERN_ELECTRIC

MIN = 60_000_000  # µs
T0 = c.ORIGIN_US + 1000 * 86_400_000_000  # a day boundary, so minute buckets start on whole minutes


def ts(k: int, step: int = 1_000_000) -> np.ndarray:
    """k timestamps, step µs apart from T0."""
    return T0 + np.arange(k, dtype=np.int64) * step


def arr(*v: float) -> np.ndarray:
    """The values as a float64 array."""
    return np.array(v, dtype=np.float64)


def at(chart: c.Chart) -> dict[int, list[str]]:
    """Rule names by point index."""
    return dict(chart.violations())


# -- subgrouping ------------------------------------------------------------------------------------


def test_subgroup_by_count_leaves_out_the_incomplete_last_group():
    g = c.subgroup_by_count(ts(7), arr(1, 2, 3, 2, 4, 6, 9), 3)
    assert g.n.tolist() == [3, 3]
    assert g.ts.tolist() == [T0, T0 + 3_000_000]  # each group starts at its first sample
    assert g.mean.tolist() == [2.0, 4.0]  # (1+2+3)/3, (2+4+6)/3
    assert g.range.tolist() == [2.0, 4.0]
    assert g.sd.tolist() == pytest.approx([1.0, 2.0])  # sqrt((1+0+1)/2), sqrt((4+0+4)/2)


def test_subgroup_by_time_buckets_from_the_historians_origin():
    # samples at 0 s, 20 s, 40 s | 70 s | 130 s, 150 s: three one-minute buckets of 3, 1 and 2
    t = T0 + np.array([0, 20, 40, 70, 130, 150], dtype=np.int64) * 1_000_000
    g = c.subgroup_by_time(t, arr(1, 2, 6, 5, 1000.01, 1000.03), MIN)
    assert g.ts.tolist() == [T0, T0 + MIN, T0 + 2 * MIN]
    assert g.n.tolist() == [3, 1, 2]
    assert g.mean.tolist() == pytest.approx([3.0, 5.0, 1000.02])
    assert g.range.tolist() == pytest.approx([5.0, 0.0, 0.02])
    # sd of 1, 2, 6: mean 3, squares 4 + 1 + 9 = 14, /2 = 7; of 1000.01, 1000.03: sqrt(2 * 0.01^2 / 1)
    assert g.sd[0] == pytest.approx(np.sqrt(7.0))
    assert np.isnan(g.sd[1])
    assert g.sd[2] == pytest.approx(np.sqrt(2) * 0.01, rel=1e-6)  # no digits lost to the 1000 offset


def test_counts_by_time_sum_per_bucket():
    t = T0 + np.array([0, 30, 65], dtype=np.int64) * 1_000_000
    d = c.counts_by_time(t, arr(1, 2, 4), arr(10, 10, 20), MIN)
    assert d.count.tolist() == [3.0, 4.0] and d.size.tolist() == [20.0, 20.0]


# -- each chart by hand -----------------------------------------------------------------------------

# subgroups (1, 2, 3), (2, 4, 6), (3, 3, 3): means 2, 4, 3 -> X̿ = 3; ranges 2, 4, 0 -> R̄ = 2; s 1, 2, 0 -> s̄ = 1
XBAR_DATA = arr(1, 2, 3, 2, 4, 6, 3, 3, 3)


def test_xbar_r_by_hand():
    ch = c.chart("xbar_r", c.subgroup_by_count(ts(9), XBAR_DATA, 3))
    assert ch.stat == "xbar" and ch.x.tolist() == [2.0, 4.0, 3.0]
    assert ch.cl == pytest.approx(3.0)
    assert ch.ucl == pytest.approx(5.046)  # 3 + A2(3) R̄ = 3 + 1.023 * 2
    assert ch.lcl == pytest.approx(0.954)  # 3 - 2.046
    r = ch.secondary
    assert r is not None and r.stat == "r" and r.x.tolist() == [2.0, 4.0, 0.0]
    assert r.cl == pytest.approx(2.0)
    assert r.ucl == pytest.approx(5.148)  # D4(3) R̄ = 2.574 * 2
    assert r.lcl == pytest.approx(0.0)  # D3(3) = 0
    assert ch.violations() == [] and r.violations() == []


def test_xbar_s_by_hand():
    ch = c.chart("xbar_s", c.subgroup_by_count(ts(9), XBAR_DATA, 3))
    assert ch.cl == pytest.approx(3.0)
    assert ch.ucl == pytest.approx(4.954)  # 3 + A3(3) s̄ = 3 + 1.954 * 1
    assert ch.lcl == pytest.approx(1.046)
    s = ch.secondary
    assert s is not None and s.stat == "s" and s.x.tolist() == pytest.approx([1.0, 2.0, 0.0])
    assert (s.cl, s.ucl, s.lcl) == pytest.approx((1.0, 2.568, 0.0))  # s̄, B4(3) s̄, B3(3) s̄


def test_xbar_r_with_time_buckets_of_different_sizes():
    # buckets (0, 2), (1, 2, 3), (2, 4): n 2, 3, 2; means 1, 2, 3; ranges 2, 2, 2; grand mean 14 / 7 = 2
    t = T0 + np.array([0, 10, 60, 70, 80, 120, 130], dtype=np.int64) * 1_000_000
    ch = c.chart("xbar_r", c.subgroup_by_time(t, arr(0, 2, 1, 2, 3, 2, 4), MIN))
    sigma = (2 / 1.128 + 2 / 1.693 + 2 / 1.128) / 3  # mean of R_i / d2(n_i): (1.773050 + 1.181335 + 1.773050) / 3
    assert ch.cl == pytest.approx(2.0)
    assert ch.varying
    # UCL_i = X̿ + A2(n_i) d2(n_i) sigma, sigma = 1.575812:
    # n=2: 2 + 1.880 * 1.128 * 1.575812 = 2 + 2.12064 * 1.575812 = 5.341727; n=3: 2 + 1.731939 * 1.575812 = 4.729208
    assert ch.ucl.tolist() == pytest.approx([5.341727, 4.729208, 5.341727], abs=2e-6)
    assert ch.secondary.cl.tolist() == pytest.approx([1.128 * sigma, 1.693 * sigma, 1.128 * sigma])


def test_xbar_r_estimates_the_process_sigma_as_rbar_over_d2():
    # X̿ = 3, R̄ = 2, d2(3) = 1.693; the chart's A2 d2 (R̄ / d2) is then A2 R̄ (test_xbar_r_by_hand)
    g = c.subgroup_by_count(ts(9), XBAR_DATA, 3)
    assert c.estimate("xbar_r", g) == Limits(3.0, pytest.approx(2 / 1.693))


def test_imr_by_hand():
    ch = c.chart("imr", c.individuals(ts(4), arr(1, 3, 2, 4)))
    # x̄ = 2.5; moving ranges 2, 1, 2 -> MR̄ = 5/3; sigma = MR̄ / 1.128 = 1.477541
    assert ch.stat == "i" and ch.cl == pytest.approx(2.5)
    assert ch.ucl == pytest.approx(2.5 + 3 * (5 / 3) / 1.128)  # 6.932624
    assert ch.lcl == pytest.approx(2.5 - 3 * (5 / 3) / 1.128)
    mr = ch.secondary
    assert mr.x.tolist() == [2.0, 1.0, 2.0] and mr.ts.tolist() == ts(4)[1:].tolist()
    assert (mr.cl, mr.ucl, mr.lcl) == pytest.approx((5 / 3, 3.267 * 5 / 3, 0.0))  # MR̄, D4(2) MR̄ = 5.445


def test_p_chart_by_hand_with_varying_n():
    d = Counts(ts(3), arr(1, 2, 3), arr(10, 20, 30))
    ch = c.chart("p", d)
    # p̄ = 6 / 60 = 0.1; UCL_i = 0.1 + 3 sqrt(0.09 / n_i): n=10: 0.1 + 3 * 0.0948683 = 0.384605
    assert ch.x.tolist() == pytest.approx([0.1, 0.1, 0.1])
    assert ch.cl == pytest.approx(0.1)
    assert ch.ucl.tolist() == pytest.approx([0.384605, 0.301246, 0.264317], abs=1e-6)
    assert ch.lcl == 0.0  # 0.1 - 0.28 < 0: cut at 0 for every n here


def test_np_chart_by_hand():
    ch = c.chart("np", Counts(ts(4), arr(2, 4, 3, 3), arr(20, 20, 20, 20)))
    # p̄ = 12 / 80 = 0.15; CL = n p̄ = 3; sigma = sqrt(20 * 0.15 * 0.85) = sqrt(2.55) = 1.596872
    assert ch.cl == pytest.approx(3.0)
    assert ch.ucl == pytest.approx(3 + 3 * 1.596872, abs=1e-6)  # 7.790616
    assert ch.lcl == 0.0  # 3 - 4.79 < 0


def test_c_chart_by_hand():
    ch = c.chart("c", Counts(ts(4), arr(4, 6, 5, 5), arr(1, 1, 1, 1)))
    # c̄ = 20 / 4 = 5; UCL = 5 + 3 sqrt(5) = 11.708204; LCL = 5 - 6.708 < 0 -> 0
    assert (ch.cl, ch.ucl, ch.lcl) == pytest.approx((5.0, 11.708204, 0.0))


def test_u_chart_by_hand():
    ch = c.chart("u", Counts(ts(2), arr(2, 6), arr(1, 2)))
    # ū = 8 / 3 = 2.666667; u = 2, 3; UCL_1 = ū + 3 sqrt(ū / 1) = 7.565646; UCL_2 = ū + 3 sqrt(ū / 2) = 6.130768
    assert ch.x.tolist() == [2.0, 3.0]
    assert ch.ucl.tolist() == pytest.approx([7.565646, 6.130768], abs=1e-6)


def test_ewma_by_hand():
    ch = c.chart("ewma", c.individuals(ts(3), arr(10, 12, 14)), Limits(10.0, 1.0), Options(lam=0.5, L=3.0))
    # z = 0.5 x + 0.5 z_prev from 10: 10, 11, 12.5
    assert ch.x.tolist() == [10.0, 11.0, 12.5]
    # half width 3 sqrt(0.5 / 1.5 (1 - 0.25^t)): t=1: 3 sqrt(0.25) = 1.5; t=2: 3 sqrt(0.3125) = 1.677051;
    # t=3: 3 sqrt(0.328125) = 1.718466
    assert ch.ucl.tolist() == pytest.approx([11.5, 11.677051, 11.718466], abs=1e-6)
    assert ch.lcl.tolist() == pytest.approx([8.5, 8.322949, 8.281534], abs=1e-6)
    assert at(ch) == {2: ["EWMA"]}  # 12.5 > 11.718


def test_cusum_by_hand():
    ch = c.chart("cusum", c.individuals(ts(5), arr(1, 2, 3, -1, -4)), Limits(0.0, 1.0), Options(k=0.5, h=4.0))
    # C+ = max(0, x - 0.5 + C+): 0.5, 2, 4.5, 3, 0; C- = max(0, -0.5 - x + C-): 0, 0, 0, 0.5, 4
    assert ch.stat == "cusum+" and ch.x.tolist() == [0.5, 2.0, 4.5, 3.0, 0.0]
    assert ch.secondary.x.tolist() == [0.0, 0.0, 0.0, 0.5, 4.0]
    assert ch.ucl == 4.0 and ch.lcl is None
    assert at(ch) == {2: ["CUSUM+"]}  # 4.5 > h sigma = 4
    assert at(ch.secondary) == {}  # 4.0 is not above 4


def test_cusum_of_subgroup_means_uses_the_sigma_of_a_mean():
    # sigma 2 per sample, subgroups of 4: a mean has sigma 1, so H = 5 * 1
    g = c.subgroup_by_count(ts(8), arr(5, 7, 5, 7, 5, 7, 5, 7), 4)
    ch = c.chart("cusum", g, Limits(0.0, 2.0))
    assert ch.ucl == pytest.approx(5.0)
    assert ch.x.tolist() == pytest.approx([5.5, 11.0])  # 6 - 0.5, then 6 - 0.5 + 5.5


# -- rules: each on a chart built to trigger it and on one built not to -----------------------------

# rule -> (z-scores that fire it at `index`, z-scores like them that do not fire it, index)
RULES = {
    "WE1": ([0, 0.5, -0.5, 3.5], [0, 0.5, -0.5, 2.5], 3),
    "N1": ([0, 0.5, -0.5, -3.5], [0, 0.5, -0.5, -2.5], 3),
    "WE2": ([0.5, 2.5, -0.5, 2.5], [0.5, 2.5, -0.5, -2.5], 3),
    "N5": ([-0.5, -2.5, 0.5, -2.5], [-0.5, -2.5, 0.5, 2.5], 3),
    "WE3": ([0, 1.5, 1.5, 0.5, 1.5, 1.5], [0, 1.5, 1.5, 0.5, 0.5, 1.5], 5),
    "N6": ([0, -1.5, -1.5, -0.5, -1.5, -1.5], [0, -1.5, -1.5, -0.5, -0.5, -1.5], 5),
    "WE4": ([-0.5] + [0.5] * 8, [-0.5] + [0.5] * 7 + [-0.5], 8),
    "N2": ([-0.5] + [0.5] * 9, [-0.5] + [0.5] * 8 + [-0.5], 9),
    "N3": ([0, -1.2, -0.8, -0.4, 0.1, 0.4, 0.8], [0, -1.2, -0.8, -0.4, 0.1, 0.4, 0.3], 6),
    "N4": ([0.5, -0.5] * 7, [0.5, -0.5] * 6 + [0.5, 0.7], 13),
    "N7": ([0.2, 0.4, -0.3, -0.1, 0.6, 0.5, -0.2, 0.3, 0.1, -0.4, -0.6, 0.2, 0.7, -0.5, 0.1],
           [0.2, 0.4, -0.3, -0.1, 0.6, 0.5, -0.2, 1.5, 0.1, -0.4, -0.6, 0.2, 0.7, -0.5, 0.1], 14),
    "N8": ([1.5, -1.5] * 4, [1.5, -1.5] * 3 + [1.5, 0.5], 7),
}


def i_chart(z: list[float]) -> c.Chart:
    """An I chart of 10 + 2 z against frozen limits 10 ± 3 * 2, so each point is z sigmas out."""
    x = 10.0 + 2.0 * np.asarray(z)
    return c.chart("imr", c.individuals(ts(len(z)), x), Limits(10.0, 2.0))


def xbar_chart(z: list[float]) -> c.Chart:
    """An X̄ chart of subgroups (m - 0.5, m + 0.5, m - 0.5, m + 0.5) with mean m = 10 + z.

    Frozen sigma 2 at n = 4: the mean's sigma is A2(4) d2(4) 2 / 3 = 0.729 * 2.059 * 2 / 3 = 1.0006,
    so each mean is z sigmas out to within 0.06 %: none of the z here is that close to 1, 2 or 3.
    """
    m = 10.0 + np.asarray(z)
    raw = (m[:, None] + np.array([-0.5, 0.5, -0.5, 0.5])).ravel()
    return c.chart("xbar_r", c.subgroup_by_count(ts(raw.shape[0]), raw, 4), Limits(10.0, 2.0))


@pytest.mark.parametrize("make", [i_chart, xbar_chart], ids=["I", "Xbar"])
@pytest.mark.parametrize("rule", sorted(RULES))
def test_each_rule_surfaces_on_a_chart_built_to_trigger_it(make, rule):
    fire, quiet, index = RULES[rule]
    assert rule in at(make(fire)).get(index, []), at(make(fire))
    assert all(rule not in names for names in at(make(quiet)).values()), at(make(quiet))


def test_rule_sets_can_be_narrowed():
    z = RULES["WE1"][0]
    x = 10.0 + 2.0 * np.asarray(z)
    we = c.chart("imr", c.individuals(ts(4), x), Limits(10.0, 2.0), Options(rules=WESTERN_ELECTRIC))
    nelson = c.chart("imr", c.individuals(ts(4), x), Limits(10.0, 2.0), Options(rules=NELSON))
    assert at(we) == {3: ["WE1"]} and at(nelson) == {3: ["N1"]}


def test_dispersion_charts_flag_points_beyond_their_limits_only():
    # ranges 1, 1, ... 1 then 4 with frozen sigma 1 at n=2: R̄ = d2 sigma = 1.128, UCL = D4 R̄ = 3.267 * 1.128 = 3.685
    pairs = [[0, 1]] * 9 + [[0, 4]]
    ch = c.chart("xbar_r", c.subgroup_by_count(ts(20), np.asarray(pairs, dtype=float).ravel(), 2), Limits(0.5, 1.0))
    r = ch.secondary
    assert r.ucl == pytest.approx(3.267 * 1.128)
    # nine ranges of 1 below R̄ = 1.128 in a row would be N2 on an X̄ chart; on the R chart only 4 > 3.685 counts
    assert at(r) == {9: ["WE1", "N1"]}


def test_p_chart_standardises_each_point_by_its_own_n():
    # p̄ = 0.5 (sigma per unit 0.5): sigma of p is 0.125 at n=16, 0.025 at n=400
    # p = 0.6 is 0.1 / 0.025 = 4 sigmas out at n=400 (WE1), 0.1 / 0.125 = 0.8 at n=16 (nothing)
    lim = Limits(0.5, 0.5)
    ch = c.chart("p", Counts(ts(4), arr(8, 200, 240, 9.6), arr(16, 400, 400, 16)), lim)
    assert at(ch) == {2: ["WE1", "N1"]}


@pytest.mark.parametrize("rule", ["WE1", "WE2", "WE3"])
def test_rules_on_a_p_chart_with_varying_n(rule):
    # count = n (0.5 + z 0.5 / sqrt(n)) = n / 2 + z sqrt(n) / 2: integers for n 16, 64, 400 and z in halves
    sizes = np.array([16, 400, 64, 16, 400, 64], dtype=np.float64)
    fire, quiet, index = RULES[rule]

    def chart(z: list[float]) -> c.Chart:
        """A p chart of points z sigmas out at the sizes above."""
        n = sizes[: len(z)]
        return c.chart("p", Counts(ts(len(z)), n / 2 + np.asarray(z) * np.sqrt(n) / 2, n), Limits(0.5, 0.5))

    assert rule in at(chart(fire)).get(index, [])
    assert all(rule not in names for names in at(chart(quiet)).values())


def test_u_chart_rules_with_varying_n():
    # ū = 4 (sigma per unit 2): sigma of u is 2 / sqrt(n) = 1 at n=4, 0.5 at n=16
    # u = 8 at n=4 is 4 / 1 = 4 sigmas out; u = 5 at n=16 is 1 / 0.5 = 2: in
    lim = Limits(4.0, 2.0)
    fired = c.chart("u", Counts(ts(3), arr(16, 64, 32), arr(4, 16, 4)), lim)
    assert fired.x.tolist() == [4.0, 4.0, 8.0] and at(fired) == {2: ["WE1", "N1"]}
    quiet = c.chart("u", Counts(ts(3), arr(16, 80, 16), arr(4, 16, 4)), lim)
    assert at(quiet) == {}


def test_ewma_and_cusum_charts_report_their_own_alarms_only():
    # a step of 1.5 sigma: 8 on one side of the centre line would be WE4 on an I chart, not here
    x = np.r_[np.zeros(4), np.full(12, 1.5)]
    e = c.chart("ewma", c.individuals(ts(16), x), Limits(0.0, 1.0))
    cu = c.chart("cusum", c.individuals(ts(16), x), Limits(0.0, 1.0))
    assert {n for names in at(e).values() for n in names} == {"EWMA"}
    assert {n for names in at(cu).values() for n in names} == {"CUSUM+"}
    # C+ grows 1.5 - 0.5 = 1 per point after the step: above h = 5 from the 6th shifted point (index 9)
    assert min(at(cu)) == 9


# -- frozen limits and errors -----------------------------------------------------------------------


def test_frozen_limits_apply_at_another_subgroup_size():
    baseline = c.estimate("xbar_r", c.subgroup_by_count(ts(9), XBAR_DATA, 3))  # sigma = R̄ / d2(3) = 2 / 1.693
    later = c.chart("xbar_r", c.subgroup_by_count(ts(10), arr(3, 3, 3, 3, 3, 3, 3, 3, 3, 13), 5), baseline)
    # n = 5 now: UCL = 3 + A2(5) d2(5) sigma = 3 + 0.577 * 2.326 * 1.181335 = 4.585474
    assert later.ucl == pytest.approx(3 + 0.577 * 2.326 * 2 / 1.693)
    assert later.secondary.ucl == pytest.approx(2.114 * 2.326 * 2 / 1.693)  # D4(5) d2(5) sigma = 5.808771
    # (3,3,3,3,13): mean 5 > 4.585 and range 10 > 5.809
    assert at(later) == {1: ["WE1", "N1"]} and at(later.secondary) == {1: ["WE1", "N1"]}


def test_too_few_subgroups_says_how_many_are_needed():
    with pytest.raises(ChartDataError) as e:
        c.chart("xbar_r", c.subgroup_by_count(ts(5), arr(1, 2, 3, 4, 5), 5))
    assert (e.value.needed, e.value.got) == (2, 1)


def test_no_variation_is_refused_rather_than_dividing_by_zero():
    with pytest.raises(ChartDataError, match="no variation"):
        c.estimate("imr", c.individuals(ts(5), arr(2, 2, 2, 2, 2)))
    with pytest.raises(ChartDataError, match="no nonconforming"):
        c.estimate("p", Counts(ts(3), arr(0, 0, 0), arr(10, 10, 10)))


def test_np_needs_one_subgroup_size():
    with pytest.raises(ChartDataError, match="use p"):
        c.chart("np", Counts(ts(2), arr(1, 2), arr(10, 20)))


def test_xbar_r_refuses_subgroups_over_25():
    t = ts(60)
    with pytest.raises(ChartDataError, match="xbar_s"):
        c.chart("xbar_r", c.subgroup_by_time(t, np.arange(60.0), 30_000_000))  # 30 samples per bucket


def test_xbar_s_takes_large_subgroups_with_the_c4_formula():
    # n = 30: c4 = sqrt(2/29) Γ(15) / Γ(14.5) = 0.991418 (beyond the table); A3 = 3 / (c4 sqrt(30)) = 0.552462
    g = c.subgroup_by_time(ts(60), np.tile([0.0, 1.0], 30), 30_000_000)
    ch = c.chart("xbar_s", g)
    s = float(np.std([0.0, 1.0] * 15, ddof=1))  # 0.508548 in each bucket
    assert ch.ucl == pytest.approx(0.5 + 0.552462 * s, abs=1e-6)
    assert ch.secondary.cl == pytest.approx(s)
