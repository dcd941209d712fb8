"""Control charts as pure numpy: subgrouping, limits from a centre and a sigma, rules from the twin's kernels.

Every chart is computed from `Limits` (a centre line and a process sigma), either estimated from
the data charted (`estimate`, phase I) or frozen from a baseline period (`analytics.spc.limits`).
Limits at a subgroup of n follow from them with the standard constants, so a chart with frozen
limits stays right when later subgroups have another size.

Rules are the twin's kernels (`twin.kernels.rule_flags`, `alarm_flags`), not a second copy:

* X̄, I, p, np, c, u: the Western Electric and Nelson rules on the plotted statistic, with mu the
  centre line and sigma the statistic's own, (UCL - CL) / 3. Where limits vary from point to point
  (time buckets of different sizes, p and u with varying n), each point is standardised by its own
  sigma, z = (x - CL) / ((UCL - CL) / 3), and the rules run on z with mu 0 and sigma 1. A lower limit
  cut at 0 (attribute charts) does not change that sigma.
* R, S, MR: a point beyond its limits only (flagged WE1 and N1): ranges and deviations are skewed,
  so the zone rules, which assume a symmetric statistic, do not apply to them.
* EWMA: the EWMA bit, CUSUM: the CUSUM+ and CUSUM- bits, from `alarm_flags`, exactly as online.

Everything is vectorised numpy or numba (per-subgroup statistics in one compiled pass); there is
no per-point Python loop.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit
from scipy.special import gammaln

from twin.kernels import (
    ALARM_NAMES, CUSUM_HIGH, CUSUM_LOW, EWMA_OUT, N1, RULES, WE1, alarm_flags, cusum_series, ewma_series, rule_flags,
)

VARIABLES = ("xbar_r", "xbar_s", "imr", "ewma", "cusum")
ATTRIBUTES = ("p", "np", "c", "u")
CHARTS = VARIABLES + ATTRIBUTES
MIN_SUBGROUPS = 2  # fewer cannot give a centre line and a spread
MAX_RANGE_N = 25  # d2, D3, D4 are tabulated to 25; larger subgroups belong on an X̄-S chart
BEYOND = WE1 | N1  # what a point outside its limits sets on R, S and MR charts
ORIGIN_US = 946_857_600_000_000  # 2000-01-03 00:00 UTC in Unix µs: where the historian's time_bucket starts

# n: A2, A3, c4, B3, B4, d2, D3, D4 (ASTM STP 15D; checked against their defining integrals to 0.001)
_TABLE = """
2 1.880 2.659 0.7979 0 3.267 1.128 0 3.267
3 1.023 1.954 0.8862 0 2.568 1.693 0 2.574
4 0.729 1.628 0.9213 0 2.266 2.059 0 2.282
5 0.577 1.427 0.9400 0 2.089 2.326 0 2.114
6 0.483 1.287 0.9515 0.030 1.970 2.534 0 2.004
7 0.419 1.182 0.9594 0.118 1.882 2.704 0.076 1.924
8 0.373 1.099 0.9650 0.185 1.815 2.847 0.136 1.864
9 0.337 1.032 0.9693 0.239 1.761 2.970 0.184 1.816
10 0.308 0.975 0.9727 0.284 1.716 3.078 0.223 1.777
11 0.285 0.927 0.9754 0.321 1.679 3.173 0.256 1.744
12 0.266 0.886 0.9776 0.354 1.646 3.258 0.283 1.717
13 0.249 0.850 0.9794 0.382 1.618 3.336 0.307 1.693
14 0.235 0.817 0.9810 0.406 1.594 3.407 0.328 1.672
15 0.223 0.789 0.9823 0.428 1.572 3.472 0.347 1.653
16 0.212 0.763 0.9835 0.448 1.552 3.532 0.363 1.637
17 0.203 0.739 0.9845 0.466 1.534 3.588 0.378 1.622
18 0.194 0.718 0.9854 0.482 1.518 3.640 0.391 1.608
19 0.187 0.698 0.9862 0.497 1.503 3.689 0.403 1.597
20 0.180 0.680 0.9869 0.510 1.490 3.735 0.415 1.585
21 0.173 0.663 0.9876 0.523 1.477 3.778 0.425 1.575
22 0.167 0.647 0.9882 0.534 1.466 3.819 0.434 1.566
23 0.162 0.633 0.9887 0.545 1.455 3.858 0.443 1.557
24 0.157 0.619 0.9892 0.555 1.445 3.895 0.451 1.548
25 0.153 0.606 0.9896 0.565 1.435 3.931 0.459 1.541
"""


def _columns() -> tuple[np.ndarray, ...]:
    rows = np.array([line.split() for line in _TABLE.split("\n") if line.strip()], dtype=np.float64)
    out = []
    for col in range(1, rows.shape[1]):
        a = np.full(MAX_RANGE_N + 1, np.nan)  # indexed by n; 0 and 1 have no constants
        a[rows[:, 0].astype(int)] = rows[:, col]
        out.append(a)
    return tuple(out)


A2, A3, C4, B3, B4, D2, D3, D4 = _columns()


class ChartDataError(ValueError):
    """Data that cannot make the chart asked for: too few subgroups, sizes out of range, no variation."""

    def __init__(self, problem: str, needed: int | None = None, got: int | None = None) -> None:
        super().__init__(problem)
        self.problem = problem
        self.needed = needed
        self.got = got


@dataclass(frozen=True, slots=True)
class Subgroups:
    """Measurements in subgroups: start time (Unix µs), size, mean, range and sample standard deviation."""

    ts: np.ndarray
    n: np.ndarray
    mean: np.ndarray
    range: np.ndarray
    sd: np.ndarray  # NaN for a subgroup of one

    def __len__(self) -> int:
        return int(self.ts.shape[0])

    def take(self, keep: np.ndarray) -> Subgroups:
        """The subgroups a boolean mask keeps (the same object when it keeps all: no copy of every column)."""
        if keep.all():
            return self
        return Subgroups(self.ts[keep], self.n[keep], self.mean[keep], self.range[keep], self.sd[keep])


@dataclass(frozen=True, slots=True)
class Counts:
    """Attribute data per subgroup: start time (Unix µs), defectives or defects, and units inspected."""

    ts: np.ndarray
    count: np.ndarray
    size: np.ndarray

    def __len__(self) -> int:
        return int(self.ts.shape[0])


@dataclass(frozen=True, slots=True)
class Limits:
    """What a chart's limits follow from: its centre and the process sigma.

    centre: the process mean (variables), the rate per unit p̄ or ū (p, np, u), the mean count c̄ (c).
    sigma: of one measurement within subgroups (variables), of one unit (p, np: sqrt(p̄(1-p̄)); u:
    sqrt(ū)), of one count (c: sqrt(c̄)).
    """

    centre: float
    sigma: float


@dataclass(frozen=True, slots=True)
class Options:
    """Chart parameters: EWMA weight and width, CUSUM reference and decision interval, which rules."""

    lam: float = 0.2
    L: float = 3.0
    k: float = 0.5
    h: float = 5.0
    rules: int = RULES


@dataclass(frozen=True, slots=True)
class Chart:
    """One plotted statistic: points, limits (scalars, or arrays when they vary), rule bits per point.

    X̄-R, X̄-S and I-MR carry their dispersion chart (R, S, MR) as `secondary`; CUSUM its C- side.
    """

    stat: str  # xbar, r, s, i, mr, p, np, c, u, ewma, cusum+, cusum-
    ts: np.ndarray  # int64 Unix µs per point
    x: np.ndarray  # float64
    n: np.ndarray  # subgroup size per point: int64 samples, or float64 units inspected (attribute charts)
    cl: float | np.ndarray
    ucl: float | np.ndarray
    lcl: float | np.ndarray | None  # None: no lower limit (CUSUM)
    flags: np.ndarray  # uint32 twin.kernels alarm bits
    secondary: Chart | None = None

    @property
    def varying(self) -> bool:
        """Whether the limits differ from point to point."""
        return any(isinstance(v, np.ndarray) for v in (self.cl, self.ucl, self.lcl))

    def violations(self) -> list[tuple[int, list[str]]]:
        """(point index, rule names) for every point that broke a rule."""
        return [(int(i), rule_names(int(self.flags[i]))) for i in np.flatnonzero(self.flags)]


def rule_names(bits: int) -> list[str]:
    """The names of the alarm bits set, in bit order (WE1..WE4, N1..N8, EWMA, CUSUM+, CUSUM-)."""
    return [name for bit, name in ALARM_NAMES.items() if bits & bit]


# -- subgrouping ------------------------------------------------------------------------------------


def subgroup_by_count(ts: np.ndarray, values: np.ndarray, size: int) -> Subgroups:
    """Consecutive subgroups of `size` samples; a last incomplete one is left out."""
    if size < 1:
        raise ValueError(f"subgroup size must be >= 1, got {size}")
    m = values.shape[0] // size
    starts = np.arange(0, m * size, size)
    return _reduce(ts[: m * size], np.asarray(values[: m * size], dtype=np.float64), starts, ts[starts])


def subgroup_by_time(ts: np.ndarray, values: np.ndarray, width_us: int, origin_us: int = ORIGIN_US) -> Subgroups:
    """Subgroups of the samples in each time bucket [origin + k width, origin + (k+1) width); ts sorted."""
    starts, bucket = _time_bounds(ts, width_us, origin_us)
    return _reduce(ts, np.asarray(values, dtype=np.float64), starts, origin_us + bucket * width_us)


def individuals(ts: np.ndarray, values: np.ndarray) -> Subgroups:
    """Each sample its own subgroup of one."""
    x = np.asarray(values, dtype=np.float64)
    nan = np.full(x.shape[0], np.nan)
    return Subgroups(np.asarray(ts, dtype=np.int64), np.ones(x.shape[0], dtype=np.int64), x, nan, nan)


def counts_by_count(ts: np.ndarray, count: np.ndarray, size: np.ndarray, every: int) -> Counts:
    """Attribute data summed over consecutive runs of `every` records; a last incomplete run is left out."""
    m = count.shape[0] // every
    starts = np.arange(0, m * every, every)
    return _sum_counts(ts[starts], count[: m * every], size[: m * every], starts)


def counts_by_time(ts: np.ndarray, count: np.ndarray, size: np.ndarray, width_us: int,
                   origin_us: int = ORIGIN_US) -> Counts:
    """Attribute data summed per time bucket; ts sorted."""
    starts, bucket = _time_bounds(ts, width_us, origin_us)
    return _sum_counts(origin_us + bucket * width_us, count, size, starts)


def _time_bounds(ts: np.ndarray, width_us: int, origin_us: int) -> tuple[np.ndarray, np.ndarray]:
    """Where each bucket's samples start in ts, and the bucket numbers."""
    if width_us <= 0:
        raise ValueError(f"bucket width must be > 0 µs, got {width_us}")
    b = (np.asarray(ts, dtype=np.int64) - origin_us) // width_us
    if b.shape[0] == 0:
        return np.zeros(0, dtype=np.int64), b
    starts = np.flatnonzero(np.concatenate(([True], b[1:] != b[:-1])))
    return starts, b[starts]


def _reduce(ts: np.ndarray, x: np.ndarray, starts: np.ndarray, group_ts: np.ndarray) -> Subgroups:
    n = np.diff(np.append(starts, x.shape[0])).astype(np.int64)
    mean, rng, sd = _group_stats(np.ascontiguousarray(x), starts.astype(np.int64), n)
    return Subgroups(np.asarray(group_ts, dtype=np.int64), n, mean, rng, sd)


@njit(cache=True)
def _group_stats(x: np.ndarray, starts: np.ndarray, n: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean, range and sample sd per group of consecutive values; one pass over a group each for mean and sd.

    Deviations from the group's mean rather than sums of squares of raw values, which lose their
    digits on a large offset (a 1000 degC furnace varying by 0.01).
    """
    m = starts.shape[0]
    mean, rng, sd = np.empty(m), np.empty(m), np.full(m, np.nan)
    for g in range(m):
        a, b = starts[g], starts[g] + n[g]
        total, lo, hi = 0.0, x[a], x[a]
        for i in range(a, b):
            total += x[i]
            lo = min(lo, x[i])
            hi = max(hi, x[i])
        mu = total / n[g]
        mean[g], rng[g] = mu, hi - lo
        if n[g] > 1:
            ss = 0.0
            for i in range(a, b):
                ss += (x[i] - mu) * (x[i] - mu)
            sd[g] = np.sqrt(ss / (n[g] - 1))
    return mean, rng, sd


def _sum_counts(group_ts: np.ndarray, count: np.ndarray, size: np.ndarray, starts: np.ndarray) -> Counts:
    if starts.shape[0] == 0:
        return Counts(np.zeros(0, dtype=np.int64), np.zeros(0), np.zeros(0))
    c = np.add.reduceat(np.asarray(count, dtype=np.float64), starts)
    s = np.add.reduceat(np.asarray(size, dtype=np.float64), starts)
    return Counts(np.asarray(group_ts, dtype=np.int64), c, s)


# -- constants beyond the table (S charts for large subgroups) -------------------------------------


def c4(n: np.ndarray) -> np.ndarray:
    """c4 per subgroup size: the table to 25, sqrt(2/(n-1)) Γ(n/2) / Γ((n-1)/2) beyond."""
    n = np.asarray(n, dtype=np.int64)
    out = np.sqrt(2.0 / np.maximum(n - 1, 1)) * np.exp(gammaln(n / 2.0) - gammaln((n - 1) / 2.0))
    small = n <= MAX_RANGE_N
    out[small] = C4[n[small]]
    return out


def _s_constants(n: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(c4, A3, B3, B4) per subgroup size: the table to 25, their defining formulas beyond."""
    c = c4(n)
    spread = 3.0 * np.sqrt(1.0 - c * c) / c
    a3, b3, b4 = 3.0 / (c * np.sqrt(n)), np.maximum(0.0, 1.0 - spread), 1.0 + spread
    small = n <= MAX_RANGE_N
    a3[small], b3[small], b4[small] = A3[n[small]], B3[n[small]], B4[n[small]]
    return c, a3, b3, b4


def _sizes(n: np.ndarray) -> np.ndarray:
    """The subgroup sizes to look constants up for: one when all are equal (the usual case, and cheap)."""
    return n[:1] if n.shape[0] and n.min() == n.max() else n


# -- estimation (phase I) ---------------------------------------------------------------------------


def estimate(kind: str, data: Subgroups | Counts) -> Limits:
    """Centre and sigma estimated from the data itself: the baseline of a chart of this kind.

    Sigma within subgroups is R̄/d2 (X̄-R, and EWMA/CUSUM of means), s̄/c4 (X̄-S), each the mean of
    R_i/d2(n_i) or s_i/c4(n_i) when sizes vary, or MR̄/d2(2) for individual values.
    """
    if kind in ATTRIBUTES:
        assert isinstance(data, Counts)
        return _estimate_attribute(kind, _usable_counts(kind, data))
    assert isinstance(data, Subgroups)
    g = _usable_groups(kind, data)
    _need(kind, len(g))
    if kind in ("xbar_r", "xbar_s") or (kind in ("ewma", "cusum") and np.any(g.n > 1)):
        centre = float(np.sum(g.mean * g.n) / np.sum(g.n))
        n = _sizes(g.n)
        sigma = float(np.mean(g.sd / c4(n) if kind == "xbar_s" else g.range / D2[n]))
    else:
        centre = float(np.mean(g.mean))
        sigma = float(np.mean(np.abs(np.diff(g.mean))) / D2[2])  # MR̄ / d2(2)
    if not sigma > 0:
        raise ChartDataError(f"{kind}: the data has no variation (sigma 0); limits would collapse onto the centre")
    return Limits(centre, sigma)


def _estimate_attribute(kind: str, d: Counts) -> Limits:
    _need(kind, len(d))
    if kind == "c":
        centre = float(np.mean(d.count))
        sigma = float(np.sqrt(centre))
    else:
        centre = float(np.sum(d.count) / np.sum(d.size))
        sigma = float(np.sqrt(centre * (1.0 - centre))) if kind in ("p", "np") else float(np.sqrt(centre))
    if not sigma > 0:
        raise ChartDataError(f"{kind}: the baseline has {'no' if centre == 0 else 'only'} nonconforming "
                             "units, so its limits collapse onto the centre")
    return Limits(centre, sigma)


def _need(kind: str, got: int) -> None:
    if got < MIN_SUBGROUPS:
        raise ChartDataError(f"{kind} needs at least {MIN_SUBGROUPS} subgroups, got {got}", MIN_SUBGROUPS, got)


def _usable_groups(kind: str, g: Subgroups) -> Subgroups:
    """Subgroups this chart can plot; a subgroup of one has no spread, so X̄ charts leave it out."""
    individual = kind == "imr" or (kind in ("ewma", "cusum") and np.all(g.n == 1))
    if individual:
        if np.any(g.n != 1):
            raise ChartDataError(f"{kind} plots individual values; use subgroup 1")
        return g
    g = g.take(g.n >= 2)
    top = MAX_RANGE_N if kind in ("xbar_r", "ewma", "cusum") else None
    if top is not None and len(g) and int(g.n.max()) > top:
        hint = "; use xbar_s or a smaller subgroup" if kind == "xbar_r" else "; use a smaller subgroup"
        raise ChartDataError(f"{kind}: subgroups of up to {top} samples, got one of {int(g.n.max())}{hint}")
    if kind in ("ewma", "cusum") and len(g) and np.any(g.n != g.n[0]):
        raise ChartDataError(f"{kind} of subgroup means needs equal subgroup sizes; subgroup by count")
    return g


def _usable_counts(kind: str, d: Counts) -> Counts:
    """Subgroups that inspected something (p, np, u); np also needs one size for all."""
    if kind == "c":
        return d
    keep = d.size > 0
    d = Counts(d.ts[keep], d.count[keep], d.size[keep])
    if np.any(d.count > d.size) and kind in ("p", "np"):
        raise ChartDataError(f"{kind}: a subgroup has more defectives than units inspected")
    if kind == "np" and len(d) and np.any(d.size != d.size[0]):
        raise ChartDataError("np needs the same subgroup size throughout; use p for varying sizes")
    return d


# -- charts -----------------------------------------------------------------------------------------


def chart(kind: str, data: Subgroups | Counts, limits: Limits | None = None, options: Options = Options()) -> Chart:
    """The chart of this kind over the data, with these limits (estimated from the data when None)."""
    if kind not in CHARTS:
        raise ValueError(f"unknown chart {kind!r}; one of {', '.join(CHARTS)}")
    lim = limits if limits is not None else estimate(kind, data)
    if kind in ATTRIBUTES:
        assert isinstance(data, Counts)
        d = _usable_counts(kind, data)
        if len(d) == 0:
            raise ChartDataError(f"{kind} needs at least 1 subgroup, got 0", 1, 0)
        return _attribute(kind, d, lim, options)
    assert isinstance(data, Subgroups)
    g = _usable_groups(kind, data)
    if len(g) == 0:
        raise ChartDataError(f"{kind} needs at least 1 subgroup, got 0", 1, 0)
    if kind == "xbar_r":
        return _xbar_r(g, lim, options)
    if kind == "xbar_s":
        return _xbar_s(g, lim, options)
    if kind == "imr":
        return _imr(g, lim, options)
    return _ewma_cusum(kind, g, lim, options)


def _xbar_r(g: Subgroups, lim: Limits, opt: Options) -> Chart:
    n = _sizes(g.n)
    rbar = D2[n] * lim.sigma  # the average range a subgroup of n would have
    half = A2[n] * rbar
    r = Chart("r", g.ts, g.range, g.n, _one(rbar), _one(D4[n] * rbar), _one(D3[n] * rbar),
              _beyond(g.range, D3[n] * rbar, D4[n] * rbar, opt.rules))
    return _centred("xbar", g.ts, g.mean, g.n, lim.centre, half, half, opt.rules, r)


def _xbar_s(g: Subgroups, lim: Limits, opt: Options) -> Chart:
    c, a3, b3, b4 = _s_constants(_sizes(g.n))
    sbar = c * lim.sigma  # the average standard deviation a subgroup of n would have
    half = a3 * sbar
    s = Chart("s", g.ts, g.sd, g.n, _one(sbar), _one(b4 * sbar), _one(b3 * sbar),
              _beyond(g.sd, b3 * sbar, b4 * sbar, opt.rules))
    return _centred("xbar", g.ts, g.mean, g.n, lim.centre, half, half, opt.rules, s)


def _imr(g: Subgroups, lim: Limits, opt: Options) -> Chart:
    mr = np.abs(np.diff(g.mean))
    mrbar = D2[2] * lim.sigma
    mr_chart = Chart("mr", g.ts[1:], mr, g.n[1:], mrbar, D4[2] * mrbar, 0.0,
                     _beyond(mr, 0.0, D4[2] * mrbar, opt.rules))
    half = np.array([3.0 * lim.sigma])
    return _centred("i", g.ts, g.mean, g.n, lim.centre, half, half, opt.rules, mr_chart)


def _ewma_cusum(kind: str, g: Subgroups, lim: Limits, opt: Options) -> Chart:
    sigma = lim.sigma / np.sqrt(float(g.n[0]))  # of the plotted value: one sample or a subgroup mean
    flags = alarm_flags(g.mean, lim.centre, sigma, opt.lam, opt.L, opt.k, opt.h)
    if kind == "ewma":
        z, lo, hi = ewma_series(g.mean, lim.centre, sigma, opt.lam, opt.L)
        return Chart("ewma", g.ts, z, g.n, lim.centre, hi, lo, flags & np.uint32(EWMA_OUT))
    c_hi, c_lo = cusum_series(g.mean, lim.centre, sigma, opt.k)
    h = opt.h * sigma
    low = Chart("cusum-", g.ts, c_lo, g.n, 0.0, h, None, flags & np.uint32(CUSUM_LOW))
    return Chart("cusum+", g.ts, c_hi, g.n, 0.0, h, None, flags & np.uint32(CUSUM_HIGH), low)


def _attribute(kind: str, d: Counts, lim: Limits, opt: Options) -> Chart:
    if kind == "c":
        x, cl, sd = d.count, np.full(len(d), lim.centre), np.full(len(d), lim.sigma)
    elif kind == "np":
        x, cl, sd = d.count, d.size * lim.centre, np.sqrt(d.size) * lim.sigma
    else:  # p, u: a rate per unit, its sigma shrinking with the units inspected
        x, cl, sd = d.count / d.size, np.full(len(d), lim.centre), lim.sigma / np.sqrt(d.size)
    return _centred(kind, d.ts, x, d.size, cl, 3.0 * sd, np.minimum(3.0 * sd, cl), opt.rules)


def _centred(stat: str, ts: np.ndarray, x: np.ndarray, n: np.ndarray, cl: float | np.ndarray, up: np.ndarray,
             down: np.ndarray, rules: int, secondary: Chart | None = None) -> Chart:
    """A chart with limits cl + up, cl - down, and the rules on x standardised by up / 3."""
    cl_a = np.broadcast_to(np.asarray(cl, dtype=np.float64), x.shape)
    ucl, lcl = cl_a + up, cl_a - down
    flags = _rules(x, cl_a, up / 3.0, rules)
    return Chart(stat, ts, x, n, _one(cl_a), _one(ucl), _one(lcl), flags, secondary)


def _rules(x: np.ndarray, cl: np.ndarray, sigma: np.ndarray, mask: int) -> np.ndarray:
    """Rule bits on x: through the kernel at the chart's mu and sigma, or on z-scores when they vary."""
    if x.shape[0] and np.all(cl == cl[0]) and np.all(sigma == sigma[0]):
        flags = rule_flags(x, float(cl[0]), float(sigma[0]))
    else:
        flags = rule_flags((x - cl) / sigma, 0.0, 1.0)
    return flags & np.uint32(mask)


def _beyond(x: np.ndarray, lcl: float | np.ndarray, ucl: float | np.ndarray, mask: int) -> np.ndarray:
    out = np.where((x > ucl) | (x < lcl), np.uint32(BEYOND), np.uint32(0)).astype(np.uint32)
    return out & np.uint32(mask)


def _one(v: float | np.ndarray) -> float | np.ndarray:
    """A scalar when every point has the same value, else the array."""
    a = np.asarray(v, dtype=np.float64)
    if a.ndim == 0:
        return float(a)
    if a.shape[0] and np.all(a == a[0]):
        return float(a[0])
    return a
