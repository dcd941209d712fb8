"""analytics.spc.capability: Cp, Cpk, Pp, Ppk and Cpm worked out by hand, one-sided specifications, and the
overall sigma from subgroup statistics equal to the one from the samples."""

from __future__ import annotations

import numpy as np
import pytest

from analytics.spc import charts
from analytics.spc.capability import Spec, capability, of_subgroups, of_values

# subgroups (1, 2, 3), (2, 4, 6), (3, 3, 3): mean 3; R̄ = 2, so sigma within = R̄ / d2(3) = 2 / 1.693 = 1.181335;
# overall: squared deviations from 3 are 4 1 0 1 1 9 0 0 0 = 16, / (9 - 1) = 2, sigma overall = sqrt(2) = 1.414214
VALUES = np.array([1, 2, 3, 2, 4, 6, 3, 3, 3], dtype=np.float64)
WITHIN = 2 / 1.693


def test_two_sided_by_hand():
    cap = of_values(VALUES, WITHIN, Spec(lsl=0.0, usl=9.0))
    assert cap.mean == pytest.approx(3.0) and cap.sigma_overall == pytest.approx(np.sqrt(2)) and cap.count == 9
    assert cap.cp == pytest.approx(1.269750, abs=1e-6)  # 9 / (6 * 2 / 1.693) = 9 * 1.693 / 12
    assert cap.cpk == pytest.approx(0.846500, abs=1e-6)  # min(9 - 3, 3 - 0) / (3 * 2 / 1.693) = 1.693 / 2
    assert cap.pp == pytest.approx(9 / (6 * 1.414214), abs=1e-6)  # 1.060660
    assert cap.ppk == pytest.approx(3 / (3 * 1.414214), abs=1e-6)  # 0.707107
    # Cpm against the mid-specification 4.5: tau = sqrt(2 + (3 - 4.5)^2) = sqrt(4.25) = 2.061553; 9 / 12.369317
    assert cap.cpm == pytest.approx(0.727607, abs=1e-6)


def test_target_moves_cpm_only():
    cap = of_values(VALUES, WITHIN, Spec(lsl=0.0, usl=9.0, target=3.0))
    assert cap.cpm == pytest.approx(9 / (6 * np.sqrt(2)))  # on target: tau is the overall sigma, Cpm = Pp
    assert cap.cpk == pytest.approx(0.846500, abs=1e-6)


def test_one_sided_upper_gives_cpu_as_cpk():
    cap = of_values(VALUES, WITHIN, Spec(lsl=None, usl=9.0))
    assert cap.cp is None and cap.pp is None and cap.cpm is None
    assert cap.cpk == pytest.approx(1.693, abs=1e-6)  # (9 - 3) / (3 * 2 / 1.693) = 1.693
    assert cap.ppk == pytest.approx(6 / (3 * 1.414214), abs=1e-6)  # 1.414214


def test_one_sided_lower_gives_cpl_as_cpk():
    cap = of_values(VALUES, WITHIN, Spec(lsl=2.0, usl=None))
    assert cap.cpk == pytest.approx(1.693 / 6, abs=1e-6)  # (3 - 2) / (3 * 2 / 1.693) = 0.282167


def test_mean_outside_the_spec_gives_a_negative_cpk():
    cap = capability(10.0, 1.0, 1.0, 5, Spec(lsl=0.0, usl=9.0))
    assert cap.cpk == pytest.approx(-1 / 3)  # (9 - 10) / 3
    assert cap.cp == pytest.approx(1.5)  # 9 / 6: potential ignores where the mean is


def test_overall_sigma_from_subgroups_is_exact():
    g = charts.subgroup_by_count(np.arange(9, dtype=np.int64), VALUES, 3)
    cap = of_subgroups(g, WITHIN, Spec(lsl=0.0, usl=9.0))
    # within: (3-1) (1 + 4 + 0) = 10; between: 3 ((2-3)^2 + (4-3)^2 + 0) = 6; 16 / 8 = 2 as from the samples
    assert cap.sigma_overall == pytest.approx(np.sqrt(2)) and cap.count == 9 and cap.mean == pytest.approx(3.0)


def test_individuals_give_the_same_capability_as_their_values():
    g = charts.individuals(np.arange(9, dtype=np.int64), VALUES)
    assert of_subgroups(g, WITHIN, Spec(0.0, 9.0)).ppk == pytest.approx(0.707107, abs=1e-6)


def test_a_spec_needs_a_limit_and_order():
    with pytest.raises(ValueError, match="lsl, usl or both"):
        Spec(None, None)
    with pytest.raises(ValueError, match="below usl"):
        Spec(5.0, 5.0)


def test_zero_sigma_leaves_the_indices_undefined():
    cap = capability(3.0, 0.0, 1.0, 9, Spec(0.0, 9.0))
    assert cap.cp is None and cap.cpk is None and cap.pp == pytest.approx(1.5)  # 9 / 6
