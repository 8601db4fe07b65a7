"""Cosine distance: range [0, 2], batching, and errors naming the argument."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from skipit.theory import cosine_distance, is_unit_norm, unit_normalize
from skipit.theory.testing import unit_vectors

TOL = 1e-12


def test_cosine_distance_of_parallel_orthogonal_antipodal_vectors_is_0_1_2():
    assert cosine_distance([2.0, 0.0], [3.0, 0.0]) == pytest.approx(0.0, abs=TOL)
    assert cosine_distance([1.0, 0.0], [0.0, 5.0]) == pytest.approx(1.0, abs=TOL)
    assert cosine_distance([1.0, 1.0], [-2.0, -2.0]) == pytest.approx(2.0, abs=TOL)


def test_cosine_distance_of_a_single_pair_is_a_python_float():
    assert type(cosine_distance([1.0, 2.0], [2.0, 1.0])) is float


@given(unit_vectors(4), unit_vectors(4), st.floats(0.1, 10.0), st.floats(0.1, 10.0))
def test_cosine_distance_is_symmetric_scale_invariant_and_in_0_2(x, y, a, b):
    rho = cosine_distance(x, y)
    assert 0.0 <= rho <= 2.0
    assert cosine_distance(a * x, b * y) == pytest.approx(rho, abs=1e-9)
    assert cosine_distance(y, x) == pytest.approx(rho, abs=TOL)
    assert rho == pytest.approx(1.0 - float(x @ y), abs=1e-12)


def test_cosine_distance_broadcasts_over_leading_axes():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4, 1, 3))
    y = rng.normal(size=(5, 3))
    got = cosine_distance(x, y)
    assert got.shape == (4, 5)
    for i in range(4):
        for j in range(5):
            assert got[i, j] == pytest.approx(cosine_distance(x[i, 0], y[j]), abs=TOL)


@pytest.mark.parametrize("which", ["x", "y"])
def test_zero_vector_raises_naming_the_argument(which):
    good, zero = np.array([[1.0, 0.0], [1.0, 1.0]]), np.array([[1.0, 0.0], [0.0, 0.0]])
    args = (zero, good) if which == "x" else (good, zero)
    with pytest.raises(ValueError, match=rf"`{which}` must have nonzero norm.*batch index \(1,\)"):
        cosine_distance(*args)


@pytest.mark.parametrize("which", ["x", "y"])
def test_nan_raises_naming_the_argument(which):
    args = ([np.nan, 1.0], [1.0, 1.0]) if which == "x" else ([1.0, 1.0], [1.0, np.nan])
    with pytest.raises(ValueError, match=rf"`{which}` must not contain NaN"):
        cosine_distance(*args)


def test_mismatched_vector_lengths_raise():
    with pytest.raises(ValueError, match="same vector length"):
        cosine_distance([1.0, 0.0], [1.0, 0.0, 0.0])


def test_unit_normalize_gives_unit_rows_and_rejects_zero():
    x = unit_normalize([[3.0, 4.0], [0.0, -2.0]])
    assert np.allclose(x, [[0.6, 0.8], [0.0, -1.0]])
    assert is_unit_norm(x) and not is_unit_norm([[1.0, 1.0]])
    with pytest.raises(ValueError, match="`x` must have nonzero norm"):
        unit_normalize([0.0, 0.0])


@pytest.mark.parametrize("scale", [1e155, 1e300, 1e-170, 1e-320])
def test_cosine_distance_and_unit_normalize_survive_extreme_scales(scale):
    """Entries whose squares overflow (1e155) or underflow (1e-170, subnormal 1e-320) still give exact answers."""
    x, y = scale * np.array([3.0, 4.0]), scale * np.array([4.0, 3.0])
    assert cosine_distance(x, x) == pytest.approx(0.0, abs=TOL)
    assert cosine_distance(x, -x) == pytest.approx(2.0, abs=TOL)
    assert cosine_distance(x, y) == pytest.approx(1.0 - 24.0 / 25.0, abs=TOL)
    assert cosine_distance([scale, 0.0], [scale, 0.0]) == pytest.approx(0.0, abs=TOL)
    assert np.allclose(unit_normalize(x), [0.6, 0.8], rtol=0, atol=TOL)
    assert np.allclose(unit_normalize([[scale, 0.0], [3.0, 4.0]]), [[1.0, 0.0], [0.6, 0.8]], rtol=0, atol=TOL)
