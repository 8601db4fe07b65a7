"""Definitions 1-4: estimators, their confidence bounds (coverage by simulation), predicates."""

import subprocess
import sys

import numpy as np
import pytest
from scipy import stats

from skipit.theory import (
    RidgeRegressor,
    functional_redundancy,
    geometric_redundancy,
    is_functionally_redundant,
    is_geometrically_redundant,
    is_informationally_redundant,
    is_proximally_redundant,
    proximal_probability,
)

REPEATS = 2000
MIN_COVERAGE = 0.94  # nominal 0.95; 2000 repeats put the Monte Carlo s.e. near 0.005


def _beta_distances(rng, n, a=2.0, b=8.0):
    """Cosine distances 2 * Beta(a, b): mean 2a/(a+b), inside [0, 2]."""
    return 2.0 * rng.beta(a, b, size=(REPEATS, n)), 2.0 * a / (a + b)


@pytest.mark.parametrize("method", ["best", "bernstein", "hoeffding"])
@pytest.mark.parametrize("n", [20, 200])
def test_mean_upper_bound_covers_the_true_mean_at_95_percent(method, n):
    rng = np.random.default_rng(1234 + n)
    d, true_mean = _beta_distances(rng, n)
    est = geometric_redundancy(d, confidence=0.95, method=method)
    assert est.bound.shape == (REPEATS,)
    assert np.mean(true_mean <= est.bound) >= MIN_COVERAGE


def test_mean_upper_bound_covers_a_two_point_law_with_tiny_variance():
    # Mass 0.99 at 0 and 0.01 at 2: the variance term matters, Bernstein beats Hoeffding.
    rng = np.random.default_rng(7)
    d = np.where(rng.random((REPEATS, 500)) < 0.01, 2.0, 0.0)
    est = geometric_redundancy(d, confidence=0.95, method="bernstein")
    assert np.mean(0.02 <= est.bound) >= MIN_COVERAGE
    assert np.median(est.bound) < geometric_redundancy(d, 0.95, method="hoeffding").bound[0]


def test_mean_bounds_match_their_formulas():
    d = np.array([0.1, 0.3, 0.2, 0.0, 0.4])
    n, delta, m, v = 5, 0.1, d.mean(), d.var(ddof=1)
    hoeff = m + 2.0 * np.sqrt(np.log(1 / delta) / (2 * n))
    bern = m + np.sqrt(2 * v * np.log(2 / delta) / n) + 7 * 2.0 * np.log(2 / delta) / (3 * (n - 1))
    assert geometric_redundancy(d, 0.9, method="hoeffding").bound == pytest.approx(min(hoeff, 2.0), rel=1e-12)
    assert geometric_redundancy(d, 0.9, method="bernstein").bound == pytest.approx(min(bern, 2.0), rel=1e-12)
    assert geometric_redundancy(d, 0.9).estimate == pytest.approx(m, rel=1e-12)


def test_mean_upper_bound_tightens_with_n_and_is_at_most_rho_max():
    rng = np.random.default_rng(3)
    d = 0.1 * rng.random(100_000)
    est = geometric_redundancy(d, 0.95)
    assert est.estimate <= est.bound <= est.estimate + 0.005
    assert geometric_redundancy([2.0, 2.0], 0.95).bound == 2.0


def test_probability_lower_bound_covers_the_true_probability_at_95_percent():
    rng = np.random.default_rng(99)
    for p, n in [(0.9, 30), (0.5, 100), (0.99, 300)]:
        d = np.where(rng.random((REPEATS, n)) < p, 0.01, 1.5)
        est = proximal_probability(d, t=0.05, confidence=0.95)
        assert np.mean(est.bound <= p) >= MIN_COVERAGE
        # not vacuous: the bound is within a few standard errors of p
        assert np.median(est.bound) > p - 4 * np.sqrt(p * (1 - p) / n) - 1.0 / n


def test_clopper_pearson_bound_matches_closed_forms():
    # k = n: lower bound solves p^n = 1 - confidence; k = 0: bound 0.
    assert proximal_probability(np.zeros(10), 0.5, 0.95).bound == pytest.approx(0.05 ** (1 / 10), rel=1e-10)
    assert proximal_probability(np.ones(10), 0.5, 0.95).bound == 0.0
    d = np.r_[np.zeros(7), np.ones(3)]
    assert proximal_probability(d, 0.5, 0.9).bound == pytest.approx(stats.beta.ppf(0.1, 7, 4), rel=1e-12)


def test_proximal_probability_counts_strictly_below_t():
    est = proximal_probability([0.1, 0.2, 0.2, 0.5], t=0.2)
    assert est.estimate == 0.25 and est.n == 4


def test_geometric_predicate_point_estimate_and_certified():
    d = np.full(50, 0.04)
    assert is_geometrically_redundant(d, eps=0.05)
    assert not is_geometrically_redundant(d, eps=0.04)
    # 50 samples cannot certify 0.05 at 95% with range 2 ...
    assert not is_geometrically_redundant(d, eps=0.05, confidence=0.95)
    # ... but 200 000 can.
    assert is_geometrically_redundant(np.full(200_000, 0.04), eps=0.05, confidence=0.95)


def test_proximal_predicate_point_estimate_and_certified():
    d = np.r_[np.zeros(98), np.ones(2)]
    assert is_proximally_redundant(d, t=0.05, eps=0.05)
    assert not is_proximally_redundant(d, t=0.05, eps=0.02)
    assert not is_proximally_redundant(d, t=0.05, eps=0.05, confidence=0.95)


def test_functional_and_informational_predicates():
    assert is_functionally_redundant(0.01, 0.02) and not is_functionally_redundant(0.02, 0.02)
    assert is_informationally_redundant(-3.0, 0.1)  # differential entropies may be negative
    assert not is_informationally_redundant(0.1, 0.1)
    assert list(is_informationally_redundant(np.array([0.0, 1.0]), 0.5)) == [True, False]


@pytest.mark.parametrize("call, match", [
    (lambda: geometric_redundancy([0.1, 2.5]), r"`d` must be in \[0, 2\], got 2.5"),
    (lambda: geometric_redundancy([0.1, np.nan]), r"`d` must be in \[0, 2\], got nan"),
    (lambda: geometric_redundancy([0.1, 0.2], confidence=1.0), r"`confidence` must be in \(0, 1\), got 1.0"),
    (lambda: geometric_redundancy([0.1, 0.2], method="chernoff"), r"`method` must be one of"),
    (lambda: proximal_probability([0.1], t=-0.1), r"`t` must be >= 0, got -0.1$"),
    (lambda: geometric_redundancy([0.1, 2.0 + 1e-5]), r"`d` must be in \[0, 2\], got 2.00001$"),
    (lambda: geometric_redundancy([0.1, -1e-5]), r"`d` must be in \[0, 2\], got -1e-05$"),
    (lambda: is_proximally_redundant([0.1], 0.1, eps=1.5), r"`eps` must be in \(0, 1\], got 1.5"),
    (lambda: is_geometrically_redundant([0.1], eps=0.0), r"`eps` must be > 0, got 0.0"),
    (lambda: is_informationally_redundant(np.nan, 0.1), r"`conditional_entropy` must be finite, got nan"),
])
def test_invalid_arguments_raise_naming_argument_range_and_value(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_functional_redundancy_is_exactly_zero_for_identical_layers():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 4))
    z = x @ rng.normal(size=(4, 2)) + rng.normal(size=(300, 2))
    est = functional_redundancy(x, x.copy(), z, folds=4)
    assert est.estimate == 0.0 and est.n == 300 and est.folds == 4


def test_functional_redundancy_recovers_the_variance_when_the_previous_layer_is_noise():
    # Z = w.X_l exactly and X_prev independent: E[Z|X_l] = Z, E[Z|X_prev] = E[Z] = 0,
    # so Definition 3's quantity is Var(Z) = ||w||^2 = 14.
    rng = np.random.default_rng(1)
    x, w = rng.normal(size=(4000, 3)), np.array([1.0, 2.0, 3.0])
    est = functional_redundancy(x, rng.normal(size=(4000, 3)), x @ w, regressor=RidgeRegressor(1e-6))
    assert abs(est.estimate - 14.0) < 4 * est.standard_error + 0.2


def test_functional_redundancy_is_cross_fitted():
    # A memorising regressor (1-nearest neighbour) fits training Z exactly; on pure-noise Z
    # an in-sample estimate would be ~0, the cross-fitted one is ~2 Var(Z) = 2.
    class NearestNeighbour:
        def fit(self, x, z):
            self.x, self.z = x, z
            return self

        def predict(self, x):
            return self.z[np.argmin(((x[:, None, :] - self.x[None]) ** 2).sum(-1), axis=1)]

    rng = np.random.default_rng(2)
    x = rng.normal(size=(600, 2))
    est = functional_redundancy(x, rng.normal(size=(600, 2)), rng.normal(size=600), regressor=NearestNeighbour())
    assert 1.6 < est.estimate < 2.4


def test_functional_redundancy_accepts_an_sklearn_regressor():
    linear_model = pytest.importorskip("sklearn.linear_model")
    rng = np.random.default_rng(5)
    x, xp = rng.normal(size=(500, 3)), rng.normal(size=(500, 3))
    z = x @ np.array([1.0, -1.0, 0.5])
    ours = functional_redundancy(x, xp, z, regressor=RidgeRegressor(1e-8))
    theirs = functional_redundancy(x, xp, z, regressor=linear_model.LinearRegression())
    assert theirs.estimate == pytest.approx(ours.estimate, rel=1e-6)


def test_functional_redundancy_rejects_bad_inputs():
    x = np.zeros((10, 2))
    with pytest.raises(ValueError, match="`x_prev` must have 10 rows like `x_l`, got 9"):
        functional_redundancy(x, np.zeros((9, 2)), np.zeros(10))
    with pytest.raises(ValueError, match="`regressor` must have a `fit` method, got object"):
        functional_redundancy(x, x, np.zeros(10), regressor=object())
    with pytest.raises(ValueError, match=r"`folds` must be in \[2, 10\] and an integer, got 11.0"):
        functional_redundancy(x, x, np.zeros(10), folds=11)


def test_importing_theory_does_not_import_sklearn():
    code = "import skipit.theory, sys; print('sklearn' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
