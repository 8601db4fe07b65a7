"""Confidence bounds from sufficient statistics: each equals its closed form, written out here.

``mean_upper_bound`` / ``mean_lower_bound`` (Hoeffding and Maurer-Pontil empirical
Bernstein, each at delta/2, or Hoeffding alone at delta without a variance) and the
one-sided Clopper-Pearson bounds; the sample estimators of Definitions 1-2 must give the
same numbers (one home), also at n < 2.
"""

import math

import numpy as np
import pytest
from scipy import stats

from skipit.theory import (
    clopper_pearson_lower,
    clopper_pearson_upper,
    geometric_redundancy,
    mean_lower_bound,
    mean_upper_bound,
    proximal_probability,
)

REL = 1e-12  # the closed forms below use the same float64 operations up to ordering


def _hoeffding(mean, n, delta, r, sign=1.0):
    return mean + sign * r * math.sqrt(math.log(1.0 / delta) / (2.0 * n))


def _bernstein(mean, v, n, delta, r, sign=1.0):
    log_term = math.log(2.0 / delta)
    return mean + sign * (math.sqrt(2.0 * v * log_term / n) + 7.0 * r * log_term / (3.0 * (n - 1)))


def test_upper_bound_is_hoeffding_at_half_delta_when_the_variance_is_large():
    mean, v, n, delta, r = 0.5, 0.9, 20, 0.05, 2.0
    hoeffding, bernstein = _hoeffding(mean, n, delta / 2, r), _bernstein(mean, v, n, delta / 2, r)
    assert hoeffding < bernstein  # this case exercises the Hoeffding branch
    assert mean_upper_bound(mean, v, n, delta, r) == pytest.approx(hoeffding, rel=REL)


def test_upper_bound_is_bernstein_at_half_delta_when_the_variance_is_small():
    mean, v, n, delta, r = 0.1, 0.001, 10_000, 0.05, 2.0
    hoeffding, bernstein = _hoeffding(mean, n, delta / 2, r), _bernstein(mean, v, n, delta / 2, r)
    assert bernstein < hoeffding
    assert mean_upper_bound(mean, v, n, delta, r) == pytest.approx(bernstein, rel=REL)


def test_upper_bound_without_a_variance_is_hoeffding_at_full_delta():
    mean, n, delta, r = 0.3, 50, 0.1, 1.0
    assert mean_upper_bound(mean, None, n, delta, r) == pytest.approx(_hoeffding(mean, n, delta, r), rel=REL)


def test_lower_bound_mirrors_the_upper_bound_in_both_branches():
    r, delta = 1.0, 0.05
    # Hoeffding branch: large variance, few draws
    mean, v, n = 0.6, 0.2, 30
    assert mean_lower_bound(mean, v, n, delta, r) == pytest.approx(_hoeffding(mean, n, delta / 2, r, -1.0), rel=REL)
    # Bernstein branch: tiny variance, many draws
    mean, v, n = 0.9, 0.0005, 20_000
    assert mean_lower_bound(mean, v, n, delta, r) == pytest.approx(_bernstein(mean, v, n, delta / 2, r, -1.0),
                                                                   rel=REL)
    mean, n = 0.7, 40
    assert mean_lower_bound(mean, None, n, delta, r) == pytest.approx(_hoeffding(mean, n, delta, r, -1.0), rel=REL)


def test_bounds_are_trivial_below_two_draws_and_capped_at_the_range():
    for variance in (0.0, None):
        assert mean_upper_bound(0.3, variance, 1, 0.05, 2.0) == 2.0
        assert mean_upper_bound(0.3, variance, 0, 0.05, 2.0) == 2.0
        assert mean_lower_bound(0.3, variance, 1, 0.05, 2.0) == 0.0
    assert mean_upper_bound(1.9, 0.5, 3, 0.05, 2.0) == 2.0
    assert mean_lower_bound(0.1, 0.5, 3, 0.05, 2.0) == 0.0


def test_bounds_broadcast_over_arrays():
    mean = np.array([0.1, 0.5, 0.3])
    v = np.array([0.01, 0.2, 0.0])
    n = np.array([100, 10, 1])
    out = mean_upper_bound(mean, v, n, 0.05, 2.0)
    assert out.shape == (3,)
    for i in range(3):
        assert out[i] == mean_upper_bound(float(mean[i]), float(v[i]), int(n[i]), 0.05, 2.0)


@pytest.mark.parametrize("k, n", [(1, 10), (7, 10), (37, 400), (399, 400)])
def test_clopper_pearson_bounds_are_the_beta_quantiles_and_the_exact_binomial_tails(k, n):
    delta = 0.05
    lower, upper = clopper_pearson_lower(k, n, delta), clopper_pearson_upper(k, n, delta)
    assert lower == pytest.approx(stats.beta.ppf(delta, k, n - k + 1), rel=1e-10)
    assert upper == pytest.approx(stats.beta.ppf(1.0 - delta, k + 1, n - k), rel=1e-10)
    # the defining tails: P[Bin(n, lower) >= k] = delta = P[Bin(n, upper) <= k]
    assert stats.binom.sf(k - 1, n, lower) == pytest.approx(delta, rel=1e-8)
    assert stats.binom.cdf(k, n, upper) == pytest.approx(delta, rel=1e-8)
    assert lower < k / n < upper


def test_clopper_pearson_edge_cases():
    assert clopper_pearson_lower(0, 10, 0.05) == 0.0
    assert clopper_pearson_upper(10, 10, 0.05) == 1.0
    assert clopper_pearson_lower(0, 0, 0.05) == 0.0 and clopper_pearson_upper(0, 0, 0.05) == 1.0
    # k = 0: the upper bound solves (1 - p)^n = delta
    assert clopper_pearson_upper(0, 10, 0.05) == pytest.approx(1.0 - 0.05 ** 0.1, rel=1e-12)
    assert clopper_pearson_lower(10, 10, 0.05) == pytest.approx(0.05 ** 0.1, rel=1e-12)


def test_sample_estimators_use_the_sufficient_statistic_bounds():
    d = np.array([0.1, 0.3, 0.2, 0.0, 0.4, 0.05])
    for confidence in (0.9, 0.99):
        est = geometric_redundancy(d, confidence)
        assert est.bound == mean_upper_bound(d.mean(), d.var(ddof=1), d.size, 1.0 - confidence, 2.0)
        assert geometric_redundancy(d, confidence, method="hoeffding").bound == mean_upper_bound(
            d.mean(), None, d.size, 1.0 - confidence, 2.0)
        assert proximal_probability(d, 0.2, confidence).bound == clopper_pearson_lower(3, 6, 1.0 - confidence)


@pytest.mark.parametrize("method", ["best", "bernstein", "hoeffding"])
def test_one_sample_gives_the_trivial_bound_like_the_sufficient_statistic_version(method):
    delta = 1.0 - 0.95
    assert geometric_redundancy([0.3], 0.95, method=method).bound == mean_upper_bound(0.3, 0.0, 1, delta, 2.0) == 2.0
    assert proximal_probability([0.3], 0.5, 0.95).bound == clopper_pearson_lower(1, 1, delta)


@pytest.mark.parametrize("call, match", [
    (lambda: mean_upper_bound(0.1, 0.0, 10, 0.0, 2.0), r"`delta` must be in \(0, 1\), got 0.0"),
    (lambda: mean_upper_bound(2.5, 0.0, 10, 0.05, 2.0), r"`mean` must be in \[0, 2\], got 2.5"),
    (lambda: mean_upper_bound(0.1, -0.5, 10, 0.05, 2.0), r"`variance` must be >= 0, got -0.5"),
    (lambda: mean_upper_bound(0.1, 0.0, 2.5, 0.05, 2.0), r"`n` must be >= 0 and an integer, got 2.5"),
    (lambda: mean_lower_bound(0.1, 0.0, 10, 0.05, 0.0), r"`value_range` must be > 0, got 0.0"),
    (lambda: clopper_pearson_lower(5, 4, 0.05), r"`k` must be <= n, got k=5.0, n=4.0"),
    (lambda: clopper_pearson_upper(-1, 4, 0.05), r"`k` must be >= 0 and an integer, got -1.0"),
])
def test_invalid_arguments_raise_naming_argument_range_and_value(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_variance_an_ulp_below_zero_is_round_off_not_an_error():
    assert mean_upper_bound(0.1, -1e-18, 100, 0.05, 2.0) == mean_upper_bound(0.1, 0.0, 100, 0.05, 2.0)
