"""Lemmas 1-3 (App. A.1) on adversarial and exact inputs; each constant is shown to be sharp."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from skipit.theory import (
    lemma1_bound,
    lemma1_bound_sharp,
    lemma2_mean_squared_distance,
    lemma3_bound,
    lemma3_bound_sharp,
)
from skipit.theory.testing import finite_pairs

SLACK = 1e-9  # relative rounding slack of float64 sums
vec = st.lists(st.floats(-10, 10, allow_nan=False), min_size=3, max_size=3).map(np.array)
METRICS = {
    "euclidean": lambda u, v: float(np.linalg.norm(u - v)),
    "manhattan": lambda u, v: float(np.abs(u - v).sum()),
    "discrete": lambda u, v: float(not np.array_equal(u, v)),
}


@pytest.mark.parametrize("metric", sorted(METRICS))
@given(x=vec, y=vec, z=vec)
def test_lemma1_squared_triangle_inequality_in_metric_spaces(metric, x, y, z):
    d = METRICS[metric]
    lhs = d(x, y) ** 2
    sharp, paper = lemma1_bound_sharp(d(x, z), d(z, y)), lemma1_bound(d(x, z), d(z, y))
    assert lhs <= sharp * (1 + SLACK) + 1e-12
    assert sharp <= paper * (1 + SLACK) + 1e-12


def test_lemma1_constant_two_is_attained_at_the_midpoint():
    x, z, y = np.zeros(2), np.array([1.0, 0.0]), np.array([2.0, 0.0])
    d = METRICS["euclidean"]
    assert d(x, y) ** 2 == lemma1_bound(d(x, z), d(z, y)) == lemma1_bound_sharp(d(x, z), d(z, y)) == 4.0


def test_lemma1_sharp_form_is_strictly_smaller_off_the_midpoint():
    assert lemma1_bound_sharp(1.0, 3.0) == 16.0 < lemma1_bound(1.0, 3.0) == 20.0


@given(finite_pairs(dim=4, max_atoms=4))
def test_lemma2_mean_squared_distance_is_twice_the_mean_cosine_distance(pairs):
    assert pairs.mean_squared_distance() == pytest.approx(
        lemma2_mean_squared_distance(pairs.mean_cosine_distance()), rel=1e-9, abs=1e-12)


def test_lemma2_antipodal_pair_has_squared_distance_four():
    assert lemma2_mean_squared_distance(2.0) == 4.0


@given(a=vec, b=vec, c=vec)
def test_lemma3_three_term_inequality(a, b, c):
    sq = [float(v @ v) for v in (a, b, c)]
    lhs = float(np.sum((a + b + c) ** 2))
    assert lhs <= lemma3_bound_sharp(*sq) * (1 + SLACK) + 1e-12
    assert lemma3_bound_sharp(*sq) <= lemma3_bound(*sq) * (1 + SLACK) + 1e-12


def test_lemma3_constant_three_is_attained_when_the_vectors_are_equal():
    a = np.array([1.0, -2.0, 0.5])
    sq = float(a @ a)
    assert float(np.sum((3 * a) ** 2)) == pytest.approx(lemma3_bound(sq, sq, sq), rel=1e-15)
    assert lemma3_bound_sharp(sq, sq, sq) == pytest.approx(lemma3_bound(sq, sq, sq), rel=1e-15)


def test_lemma3_sharp_form_is_attained_by_collinear_unequal_vectors():
    a = np.array([1.0, 0.0])
    lhs = float(np.sum((a + 2 * a + 4 * a) ** 2))
    assert lhs == lemma3_bound_sharp(1.0, 4.0, 16.0) == 49.0 < lemma3_bound(1.0, 4.0, 16.0)


def test_lemmas_are_vectorised_and_return_floats_for_scalars():
    got = lemma3_bound(np.array([0.0, 1.0]), 1.0, np.array([[1.0], [2.0]]))
    assert got.shape == (2, 2) and got[1, 1] == 12.0
    assert type(lemma1_bound(1, 2)) is float


@pytest.mark.parametrize("call, match", [
    (lambda: lemma1_bound(-1.0, 1.0), r"`d_xz` must be >= 0, got -1.0"),
    (lambda: lemma1_bound_sharp(1.0, np.nan), r"`d_zy` must be >= 0, got nan"),
    (lambda: lemma2_mean_squared_distance(2.1), r"`mean_rho` must be in \[0, 2\], got 2.1"),
    (lambda: lemma3_bound(1.0, [1.0, -0.5], 1.0), r"`b_sq` must be >= 0, got -0.5"),
    (lambda: lemma3_bound_sharp(1.0, 1.0, np.inf), r"`c_sq` must be >= 0, got inf"),
])
def test_invalid_arguments_raise_naming_argument_range_and_value(call, match):
    with pytest.raises(ValueError, match=match):
        call()
