"""Finite, meaningful inputs give finite outputs, and bounds of non-negative quantities stay >= 0.

The spherical-cap regime: F(t, d) is far below 1e-300 for hidden sizes of VLMs, so every
probability that small must be handled in log space (never through 1/p).
"""

import math

import numpy as np

from skipit.theory import (
    binary_kl, cap_fraction, corollary4_conditional_entropy_upper_bound, kl_divergence,
    log_cap_fraction, theorem3_mi_lower_bound, theorem3_mi_lower_bound_sharp, theorem4_mi_lower_bound,
    theorem4_mi_lower_bound_sharp,
)

SUBNORMAL = (1e-310, 5e-324)


def test_theorem4_is_finite_and_exact_for_subnormal_p_max():
    """With P_t = 0 the bound is exactly log(1/p_max) = -log p_max (= 744.44 at 5e-324)."""
    for p_max in SUBNORMAL:
        got = theorem4_mi_lower_bound(0.0, 0.0, p_max)
        assert math.isfinite(got) and got == -math.log(p_max)
        assert math.isfinite(theorem4_mi_lower_bound_sharp(0.0, 0.0, p_max))
        assert math.isfinite(corollary4_conditional_entropy_upper_bound(800.0, 0.0, 0.0, p_max))
    p_t = 0.3  # the general case, against its closed form with logs of p_max only
    want = -(1 - p_t) * math.log(1e-310) + p_t * math.log(p_t) + (1 - p_t) * math.log(1 - p_t)
    assert abs(theorem4_mi_lower_bound(p_t, 0.0, 1e-310) - want) <= 1e-13 * want


def test_theorem3_is_finite_where_the_cap_fraction_underflows():
    """d = 10^6, t = 1e-6: F = exp(-6.6e6) is 0 as a double; the bounds stay finite and positive."""
    assert cap_fraction(1e-6, 10**6) == 0.0
    log_f = log_cap_fraction(1e-6, 10**6)
    for p_t in (0.0, 0.5, 0.999):
        v, s = theorem3_mi_lower_bound(p_t, 1e-6, 10**6), theorem3_mi_lower_bound_sharp(p_t, 1e-6, 10**6)
        assert math.isfinite(v) and math.isfinite(s) and 0 < v <= s
        assert abs(v - ((1 - p_t) * -log_f - math.log(2))) <= 1e-12 * v


def test_kl_bounds_are_nonnegative_under_round_off():
    """d(1 - P_t || F) at P_t = 1 - F is 0; round-off made it -4e-16 for hundreds of t."""
    t = np.linspace(0.01, 1.99, 2000)
    for d in (2, 3, 5, 10):
        f = cap_fraction(t, d)
        assert np.all(theorem3_mi_lower_bound_sharp(1.0 - f, t, d) >= 0.0)
    q = np.linspace(0.0, 1.0, 1001)
    # 1 - (1 - q) differs from q by round-off: without the clip, d(q || 1 - (1 - q)) < 0 at ~180 points
    assert np.all(binary_kl(q, 1.0 - (1.0 - q)) >= 0.0)
    rng = np.random.default_rng(0)
    for _ in range(200):
        p = rng.dirichlet(np.ones(7))
        # p / p.sum() differs from p by round-off: without the clip, KL < 0 for ~1 draw in 4
        assert kl_divergence(p, p / p.sum()) >= 0.0


def test_theorem3_at_thresholds_beyond_2_is_the_whole_sphere():
    """t >= 2: F = 1 and P_t = 0, so the paper's form is -log 2 and the sharp form d(1 || 1) = 0."""
    for t in (2.0, 2.5, 10.0):
        assert theorem3_mi_lower_bound(0.0, t, 50) == -math.log(2)
        assert theorem3_mi_lower_bound_sharp(0.0, t, 50) == 0.0
        assert theorem3_mi_lower_bound_sharp(1e-16, t, 50) == 0.0  # P_t within float64 round-off of 0
        assert theorem3_mi_lower_bound_sharp(np.float32(1e-7), t, 50) == 0.0  # within float32 round-off
