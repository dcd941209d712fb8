"""Process capability against specification limits: Cp, Cpk (within subgroups), Pp, Ppk (overall), Cpm.

Cp and Cpk use the within-subgroup sigma a chart estimates (R̄/d2, s̄/c4 or MR̄/d2): what the
process could do if its mean held still. Pp and Ppk use the overall sample standard deviation of
every value: what it did. With one limit missing only the one-sided index exists: Cpk is then
Cpu = (USL - mean) / 3 sigma or Cpl = (mean - LSL) / 3 sigma, and Cp, Pp and Cpm are None.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from analytics.spc.charts import Subgroups


@dataclass(frozen=True, slots=True)
class Spec:
    """Specification limits of a tag; either limit may be missing, not both."""

    lsl: float | None
    usl: float | None
    target: float | None = None

    def __post_init__(self) -> None:
        if self.lsl is None and self.usl is None:
            raise ValueError("a specification needs lsl, usl or both")
        if self.lsl is not None and self.usl is not None and not self.lsl < self.usl:
            raise ValueError(f"lsl ({self.lsl}) must be below usl ({self.usl})")


@dataclass(frozen=True, slots=True)
class Capability:
    """Capability indices; None where a limit they need is missing or the sigma is 0."""

    mean: float
    sigma_within: float
    sigma_overall: float
    count: int
    cp: float | None
    cpk: float | None
    pp: float | None
    ppk: float | None
    cpm: float | None  # Taguchi: against the target (the mid-specification when none), overall sigma


def capability(mean: float, sigma_within: float, sigma_overall: float, count: int, spec: Spec) -> Capability:
    """Indices of a process of this mean, within-subgroup and overall sigma against the spec."""
    cp, cpk = _indices(mean, sigma_within, spec)
    pp, ppk = _indices(mean, sigma_overall, spec)
    cpm = None
    if spec.lsl is not None and spec.usl is not None:
        target = spec.target if spec.target is not None else (spec.lsl + spec.usl) / 2.0
        tau = float(np.sqrt(sigma_overall * sigma_overall + (mean - target) ** 2))
        cpm = (spec.usl - spec.lsl) / (6.0 * tau) if tau > 0 else None
    return Capability(float(mean), float(sigma_within), float(sigma_overall), int(count), cp, cpk, pp, ppk, cpm)


def of_values(values: np.ndarray, sigma_within: float, spec: Spec) -> Capability:
    """Capability of individual values (overall sigma: their sample standard deviation)."""
    x = np.asarray(values, dtype=np.float64)
    x = x[np.isfinite(x)]
    if x.shape[0] < 2:
        raise ValueError(f"capability needs at least 2 values, got {x.shape[0]}")
    return capability(float(np.mean(x)), sigma_within, float(np.std(x, ddof=1)), int(x.shape[0]), spec)


def of_subgroups(g: Subgroups, sigma_within: float, spec: Spec) -> Capability:
    """Capability of the samples behind these subgroups, without the samples themselves.

    The overall sum of squares splits exactly into within (sum (n_i - 1) s_i^2) and between
    (sum n_i (mean_i - grand mean)^2) parts, so the overall sigma is exact.
    """
    total = int(np.sum(g.n))
    if total < 2:
        raise ValueError(f"capability needs at least 2 values, got {total}")
    grand = float(np.sum(g.mean * g.n) / total)
    within = np.where(g.n > 1, (g.n - 1) * np.nan_to_num(g.sd) ** 2, 0.0)
    ss = float(np.sum(within) + np.sum(g.n * (g.mean - grand) ** 2))
    return capability(grand, sigma_within, float(np.sqrt(ss / (total - 1))), total, spec)


def _indices(mean: float, sigma: float, spec: Spec) -> tuple[float | None, float | None]:
    """(two-sided potential, worst one-sided) index for a sigma."""
    if not sigma > 0:
        return None, None
    sides = []
    if spec.usl is not None:
        sides.append((spec.usl - mean) / (3.0 * sigma))
    if spec.lsl is not None:
        sides.append((mean - spec.lsl) / (3.0 * sigma))
    both = None
    if spec.lsl is not None and spec.usl is not None:
        both = (spec.usl - spec.lsl) / (6.0 * sigma)
    return both, min(sides)
