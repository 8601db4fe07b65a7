"""The intervals behind ``informational_bounds_from_samples`` against their closed forms, and every
branch of its min / clip logic reached (a coverage simulation alone would miss a wrong level or width).

With delta the total error, P_t gets a two-sided Clopper-Pearson interval at level delta/2 (each tail
delta/4) and q_t, a U-statistic of order 2, Hoeffding's width sqrt(log(4/delta) / (2 floor(n/2))).
"""

import math

import numpy as np
import pytest
from scipy import stats

from skipit.theory import binary_kl, informational_bounds_from_samples, theorem4_mi_lower_bound

DELTA = 0.05


def _circle(angles):
    return np.column_stack([np.cos(angles), np.sin(angles)])


def _spread(n, seed=0):
    return _circle(np.random.default_rng(seed).uniform(0, 2 * np.pi, n))


def _hoeffding_width(n, delta=DELTA):
    return math.sqrt(math.log(4 / delta) / (2 * (n // 2)))


@pytest.mark.parametrize("n", [5, 40, 401])
def test_clopper_pearson_endpoints_in_closed_form_when_no_pair_or_every_pair_exceeds_t(n):
    """k = 0: upper limit 1 - (delta/4)^(1/n) (Beta(1, n) quantile); k = n: lower limit (delta/4)^(1/n)."""
    x = _spread(n)
    none = informational_bounds_from_samples(x, x, 0.1, DELTA)
    assert none.p_t == 0.0 and none.p_t_lower == 0.0
    assert none.p_t_upper == pytest.approx(1 - (DELTA / 4) ** (1 / n), rel=1e-12)
    every = informational_bounds_from_samples(x, -x, 1.5, DELTA)
    assert every.p_t == 1.0 and every.p_t_upper == 1.0
    assert every.p_t_lower == pytest.approx((DELTA / 4) ** (1 / n), rel=1e-12)


@pytest.mark.parametrize("n, k", [(20, 3), (21, 10), (200, 199)])
def test_clopper_pearson_limits_solve_the_binomial_tail_equations(n, k):
    """The defining equations: P[Bin(n, lower) >= k] = delta/4 and P[Bin(n, upper) <= k] = delta/4."""
    x = _spread(n, seed=k)
    y = x.copy()
    y[:k] = -y[:k]  # exactly k pairs at distance 2 > t
    b = informational_bounds_from_samples(x, y, 1.5, DELTA)
    assert b.p_t == k / n
    assert stats.binom.sf(k - 1, n, b.p_t_lower) == pytest.approx(DELTA / 4, rel=1e-9)
    assert stats.binom.cdf(k, n, b.p_t_upper) == pytest.approx(DELTA / 4, rel=1e-9)


@pytest.mark.parametrize("n", [40, 41, 400])
def test_q_t_interval_is_the_u_statistic_hoeffding_width_with_floor_n_over_2(n):
    """Unclipped: q_t -+ sqrt(log(4/delta) / (2 floor(n/2))); odd n uses floor(n/2), not n/2."""
    x = _spread(n)
    b = informational_bounds_from_samples(x, x, 1.0, DELTA)  # q_t near 1/2
    assert 0.3 < b.q_t < 0.7
    rho = 1 - x @ x.T
    assert b.q_t == (np.sum(rho <= 1.0) - n) / (n * (n - 1))  # off-diagonal pairs only
    assert b.q_t_upper - b.q_t == pytest.approx(_hoeffding_width(n), rel=1e-12)
    assert b.q_t - b.q_t_lower == pytest.approx(_hoeffding_width(n), rel=1e-12)


def test_q_t_interval_is_clipped_to_0_and_to_1():
    n = 50
    x = np.tile([1.0, 0.0], (n, 1))
    at_one = informational_bounds_from_samples(x, x, 0.5, DELTA)  # every pair (i, j) within t
    assert at_one.q_t == 1.0 and at_one.q_t_upper == 1.0
    assert at_one.q_t_lower == pytest.approx(1 - _hoeffding_width(n), rel=1e-12)
    at_zero = informational_bounds_from_samples(x, -x, 0.5, DELTA)  # no pair within t
    assert at_zero.q_t == 0.0 and at_zero.q_t_lower == 0.0
    assert at_zero.q_t_upper == pytest.approx(_hoeffding_width(n), rel=1e-12)


def _paper_form_by_grid(b):
    p = np.linspace(b.p_t_lower, b.p_t_upper, 20001)
    return float(np.min(theorem4_mi_lower_bound(p, b.q_t_lower, b.q_t_upper)))


def test_mi_lower_when_pairs_are_closer_than_the_product_law():
    """Branch 1 - P_t >= 1 - p_hi > q_hi: the KL at (1 - p_hi, q_hi)."""
    x = _spread(400)
    b = informational_bounds_from_samples(x, x, 0.05, DELTA)
    assert 1 - b.p_t_upper > b.q_t_upper
    assert b.mi_lower == binary_kl(1 - b.p_t_upper, b.q_t_upper) > 0
    assert b.mi_lower_paper_form == pytest.approx(_paper_form_by_grid(b), abs=1e-9)


def test_mi_lower_when_pairs_are_farther_than_the_product_law():
    """Branch 1 - p_lo < q_lo: antipodal pairs, most product pairs within t: the KL at (1 - p_lo, q_lo)."""
    x = _spread(400)
    b = informational_bounds_from_samples(x, -x, 1.5, DELTA)
    assert 1 - b.p_t_lower < b.q_t_lower
    assert b.mi_lower == binary_kl(1 - b.p_t_lower, b.q_t_lower) > 0
    assert b.mi_lower_paper_form == pytest.approx(_paper_form_by_grid(b), abs=1e-9)


def test_mi_lower_is_zero_when_the_boxes_overlap():
    """Branch: [1 - p_hi, 1 - p_lo] meets [q_lo, q_hi] (independent pairs): no information certified."""
    x = _spread(400)
    y = _spread(400, seed=1)
    b = informational_bounds_from_samples(x, y, 1.0, DELTA)
    assert b.q_t_lower <= 1 - b.p_t_lower and 1 - b.p_t_upper <= b.q_t_upper
    assert b.mi_lower == 0.0
    assert b.mi_lower_paper_form == pytest.approx(_paper_form_by_grid(b), abs=1e-9)
    assert b.mi_lower_paper_form <= 0.0
