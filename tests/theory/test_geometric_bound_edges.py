"""The geometric bound (Definition 1, ``geometric_redundancy``) at the edges its code treats apart.

* A large sample, where the empirical Bernstein side is the smaller one: its variance is the
  unbiased one (``ddof=1``), as ``mean_upper_bound`` documents. The biased variance
  (``ddof=0``) is smaller by the factor ``(n - 1) / n`` and gives a lower bound, which is
  anti-conservative; at ``n = 2000`` the difference is about 5e-7, far above round-off.
* ``n = 1``: one draw certifies nothing, the bound is ``R`` for every method (the
  documented "n < 2 gives R", otherwise tested only at n = 0).
"""

from fractions import Fraction

import numpy as np
import pytest

from skipit.theory import geometric_redundancy, mean_upper_bound

N = 2000
CONFIDENCE = 0.95
RELATIVE = 1e-12
"""Round-off of a mean and variance of 2000 float64 values (the variances compared differ by 5e-4)."""


def _sample():
    """2000 distances in [0, 2] with a small spread (mean ~0.05): the Bernstein side wins."""
    rng = np.random.default_rng(7)
    return np.round(rng.uniform(0.0, 0.1, size=N), 6)


def _exact_mean_and_unbiased_variance(d):
    values = [Fraction(float(x)) for x in d]
    mean = sum(values) / len(values)
    return float(mean), float(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


@pytest.mark.parametrize("method", ["best", "bernstein"])
def test_geometric_bound_uses_the_unbiased_variance_at_n_2000(method):
    d = _sample()
    mean, variance = _exact_mean_and_unbiased_variance(d)
    delta = 1 - CONFIDENCE
    log_term = np.log(4 / delta) if method == "best" else np.log(2 / delta)  # "best": each side at delta / 2
    bernstein = mean + np.sqrt(2 * variance * log_term / N) + 7 * 2.0 * log_term / (3 * (N - 1))
    hoeffding = mean + 2.0 * np.sqrt(np.log(2 / delta) / (2 * N))
    assert bernstein < hoeffding  # the side this test is about decides the bound
    bound = geometric_redundancy(d, CONFIDENCE, method=method).bound
    assert bound == pytest.approx(bernstein, rel=RELATIVE)
    if method == "best":
        assert bound == pytest.approx(mean_upper_bound(mean, variance, N, delta), rel=RELATIVE)
    biased = mean + np.sqrt(2 * variance * (N - 1) / N * log_term / N) + 7 * 2.0 * log_term / (3 * (N - 1))
    assert bound - biased > 1e4 * RELATIVE * bound  # ddof=0 would be told apart


WIDE = 0.5
"""A confidence low enough that two draws already bound the mean below ``R`` (at 0.95 even
n = 2 gives ``R``, so a bound that treated n = 1 as n = 2 would go unseen)."""


@pytest.mark.filterwarnings("error")  # R by rule, not by clipping an infinity from dividing by n - 1 = 0
@pytest.mark.parametrize("method", ["best", "hoeffding", "bernstein"])
@pytest.mark.parametrize("value", [0.0, 0.3])
def test_geometric_bound_of_one_draw_is_rho_max(method, value):
    est = geometric_redundancy([value], WIDE, method=method)
    assert est.n == 1 and est.estimate == value and est.bound == 2.0
    if method != "bernstein":  # Bernstein's 7R ln(2/delta) / (3(n-1)) term alone is > R at n = 2
        assert geometric_redundancy([value, value], WIDE, method=method).bound < 2.0


@pytest.mark.parametrize("variance", [None, 0.0, 0.01])
def test_mean_upper_bound_of_one_draw_is_the_range(variance):
    assert mean_upper_bound(0.3, variance, 1, 1 - WIDE, 2.0) == 2.0
    assert mean_upper_bound(0.3, variance, 2, 1 - WIDE, 2.0) < 2.0
