"""Exact entropies on finite pmfs, and the Miller-Madow plug-in estimators."""

import math

import numpy as np
import pytest
from hypothesis import given
from scipy import stats

from skipit.theory.entropy import (
    binary_entropy, binary_kl, conditional_entropy, conditional_mutual_information, entropy,
    kl_divergence, mutual_information, plugin_conditional_entropy,
    plugin_conditional_mutual_information, plugin_entropy, plugin_mutual_information, validate_pmf,
)
from skipit.theory.testing import joint_pmfs

TOL = 1e-12


@given(joint_pmfs(ndim=3))
def test_entropy_matches_scipy_and_chain_rule(p):
    assert entropy(p) == pytest.approx(stats.entropy(p.ravel()), abs=TOL)
    # H(X0, X1, X2) = H(X2) + H(X1 | X2) + H(X0 | X1, X2)
    chain = entropy(p, 2) + conditional_entropy(p, 1, 2) + conditional_entropy(p, 0, (1, 2))
    assert entropy(p) == pytest.approx(chain, abs=TOL)


@given(joint_pmfs(ndim=3))
def test_mutual_information_identities(p):
    i01 = mutual_information(p, 0, 1)
    assert i01 == pytest.approx(mutual_information(p, 1, 0), abs=TOL)
    assert i01 == pytest.approx(entropy(p, 0) - conditional_entropy(p, 0, 1), abs=TOL)
    # chain rule I(X0; X1, X2) = I(X0; X2) + I(X0; X1 | X2)
    lhs = mutual_information(p, 0, (1, 2))
    rhs = mutual_information(p, 0, 2) + conditional_mutual_information(p, 0, 1, 2)
    assert lhs == pytest.approx(rhs, abs=TOL)
    assert 0 <= i01 <= min(entropy(p, 0), entropy(p, 1)) + TOL


@given(joint_pmfs(ndim=2))
def test_mutual_information_is_kl_to_product_of_marginals(p):
    prod = p.sum(1)[:, None] * p.sum(0)[None, :]
    assert mutual_information(p, 0, 1) == pytest.approx(kl_divergence(p, prod), abs=TOL)


def test_base_two_gives_bits_of_a_fair_coin_pair():
    p = np.full((2, 2), 0.25)
    assert entropy(p, base=2) == 2.0
    assert conditional_entropy(p, 0, 1, base=2) == pytest.approx(1.0, abs=TOL)
    copy = np.diag([0.5, 0.5])
    assert mutual_information(copy, 0, 1, base=2) == pytest.approx(1.0, abs=TOL)
    assert mutual_information(copy, 0, 1) == pytest.approx(math.log(2), abs=TOL)


def test_binary_entropy_and_kl_values():
    assert binary_entropy(0.5, base=2) == pytest.approx(1.0)
    assert binary_entropy(0.0) == 0.0 and binary_entropy(1.0) == 0.0
    assert binary_kl(0.5, 0.25) == pytest.approx(0.5 * math.log(2) + 0.5 * math.log(0.5 / 0.75))
    assert binary_kl(0.3, 0.3) == 0.0
    assert binary_kl(1.0, 0.0) == math.inf


def test_plugin_estimators_on_a_sample_equal_exact_values_of_its_empirical_pmf():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 3, 500)
    y = (x + rng.integers(0, 2, 500)) % 3
    z = rng.integers(0, 2, 500)
    emp = np.zeros((3, 3, 2))
    np.add.at(emp, (x, y, z), 1.0)
    emp /= emp.sum()
    assert plugin_entropy(x, miller_madow=False) == pytest.approx(entropy(emp, 0), abs=TOL)
    assert plugin_conditional_entropy(x, y, miller_madow=False) == pytest.approx(conditional_entropy(emp, 0, 1), abs=TOL)
    assert plugin_mutual_information(x, y, miller_madow=False) == pytest.approx(mutual_information(emp, 0, 1), abs=TOL)
    assert plugin_conditional_mutual_information(x, y, z, miller_madow=False) == pytest.approx(
        conditional_mutual_information(emp, 0, 1, 2), abs=TOL)


def test_miller_madow_adds_k_minus_one_over_two_n_nats():
    x = np.array([0, 0, 1, 2, 2, 2, 3, 3])
    assert plugin_entropy(x) - plugin_entropy(x, miller_madow=False) == pytest.approx(3 / 16, abs=TOL)
    rows = np.array([[0, 1], [0, 1], [1, 0], [1, 1]])  # joint symbols: 3 distinct
    assert plugin_entropy(rows) - plugin_entropy(rows, miller_madow=False) == pytest.approx(2 / 8, abs=TOL)


def test_miller_madow_reduces_the_bias_of_the_plugin_entropy():
    # exact expectation over all multinomial samples of size n = 6 from a 4-letter pmf
    from itertools import product

    q = np.array([0.4, 0.3, 0.2, 0.1])
    true_h = stats.entropy(q)
    e_plugin = e_mm = 0.0
    for seq in product(range(4), repeat=6):
        w = float(np.prod(q[list(seq)]))
        arr = np.array(seq)
        e_plugin += w * plugin_entropy(arr, miller_madow=False)
        e_mm += w * plugin_entropy(arr)
    assert abs(e_mm - true_h) < 0.5 * abs(e_plugin - true_h)


@pytest.mark.parametrize(
    "p, match",
    [(np.array([0.5, 0.6]), r"`p` must be a pmf summing to 1.*1.1"),
     (np.array([-0.1, 1.1]), r"`p` must be a pmf with entries in \[0, 1\], got -0.1$"),
     (np.array([np.nan, 1.0]), r"`p` must be a pmf with entries in \[0, 1\], got nan$")],
)
def test_invalid_pmf_raises_naming_the_argument(p, match):
    with pytest.raises(ValueError, match=match):
        validate_pmf(p)
    with pytest.raises(ValueError, match=match):
        entropy(p)


def test_invalid_base_and_axes_raise():
    with pytest.raises(ValueError, match=r"`base` must be a finite number > 0 and != 1, got 1"):
        entropy([0.5, 0.5], base=1)
    with pytest.raises(ValueError, match=r"`base` must be a finite number > 0 and != 1, got inf"):
        entropy([0.5, 0.5], base=math.inf)
    with pytest.raises(ValueError, match=r"`base` must be a finite number > 0 and != 1, got nan"):
        mutual_information(np.full((2, 2), 0.25), 0, 1, base=math.nan)
    with pytest.raises(ValueError, match=r"`x` must be axes of the pmf.*5"):
        mutual_information(np.full((2, 2), 0.25), 5, 1)
