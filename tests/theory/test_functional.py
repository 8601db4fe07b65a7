"""Proposition 1 and Theorems 1-2 against exact finite-support ground truth, with tightness."""

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from skipit.theory import (
    proposition1_mean_bound,
    proposition1_tail_threshold,
    proposition1_tail_threshold_bounded,
    theorem1_bound,
    theorem1_bound_sharp,
    theorem2_bound,
    theorem2_bound_sharp,
)
from skipit.theory.testing import (
    LinearTask,
    finite_pairs,
    finite_probabilities,
    linear_tasks,
    theorem1_extremal_pairs,
)

SLACK = 1e-9  # relative rounding slack of float64 sums


def _holds(lhs, rhs):
    return lhs <= rhs * (1 + SLACK) + 1e-12


@st.composite
def distance_laws(draw, rho_max):
    """A finite law of a distance D in [0, rho_max]: (values, probabilities)."""
    k = draw(st.integers(1, 5))
    values = np.array(draw(st.lists(st.floats(0.0, rho_max), min_size=k, max_size=k)))
    return values, draw(finite_probabilities(k))


# --- Proposition 1 ---------------------------------------------------------------------

@pytest.mark.parametrize("rho_max", [1.0, 2.0])
@given(data=st.data())
def test_proximal_implies_geometric(rho_max, data):
    """E[D] <= t + (R - t) P[D > t]; so P[D > t] < (eps - t)/(R - t) implies E[D] < eps."""
    values, probs = data.draw(distance_laws(rho_max))
    t = data.draw(st.floats(0.0, rho_max, exclude_max=True))
    mean, tail = float(probs @ values), min(1.0, float(probs @ (values > t)))
    assert _holds(mean, proposition1_mean_bound(t, tail, rho_max))
    eps = data.draw(st.floats(1e-6, 3.0))
    if tail < proposition1_tail_threshold_bounded(t, eps, rho_max):
        assert mean < eps
        if rho_max == 1.0:
            assert tail < proposition1_tail_threshold(t, eps)


@given(t=st.floats(0.0, 1.9), p=st.floats(0.0, 1.0))
def test_proposition1_mean_bound_is_attained_by_the_two_point_law(t, p):
    """D = 2 with probability p, D = t otherwise: E[D] = t + (2 - t) p exactly."""
    mean = p * 2.0 + (1 - p) * t
    assert mean == pytest.approx(proposition1_mean_bound(t, p, 2.0), rel=1e-12, abs=1e-15)


def test_proposition1_threshold_is_sharp():
    """Any tail probability above the threshold admits a law with E[D] >= eps."""
    t, eps = 0.1, 0.3
    thr = proposition1_tail_threshold(t, eps)
    p = thr * (1 + 1e-6)  # D = 1 w.p. p, D = t otherwise
    assert p * 1.0 + (1 - p) * t > eps
    p = thr * (1 - 1e-6)
    assert p * 1.0 + (1 - p) * t < eps


def test_proposition1_paper_threshold_is_the_bounded_one_with_rho_max_one():
    t, eps = np.array([0.0, 0.05, 0.5]), 0.6
    assert np.allclose(proposition1_tail_threshold(t, eps), proposition1_tail_threshold_bounded(t, eps, 1.0))
    assert proposition1_tail_threshold(0.05, 0.1) == pytest.approx(0.05 / 0.95, rel=1e-15)


# --- Theorem 1 ---------------------------------------------------------------------------

@given(pairs=finite_pairs(dim=3, max_atoms=4), task=linear_tasks(dim=3, k=2))
def test_theorem1_geometric_implies_functional(pairs, task):
    """E||E[Z|X_l] - E[Z|X_prev]||^2 <= (a+b)^2 * 2E[rho] <= 2(a^2+b^2) * 2E[rho]."""
    m = pairs.mean_cosine_distance()
    assume(m > 1e-9)
    lhs = pairs.functional_redundancy(task.values(pairs))
    sharp = theorem1_bound_sharp(task.alpha, task.beta, 2 * m)
    assert _holds(lhs, sharp)
    assert _holds(sharp, theorem1_bound(task.alpha, task.beta, 2 * m))


@given(pairs=finite_pairs(dim=3, max_atoms=3, mean_rho=0.05), task=linear_tasks(dim=3, k=1))
def test_theorem1_with_a_chosen_mean_cosine_distance(pairs, task):
    """E[rho] = 0.05 < eps/2 for eps = 0.1 + 1e-6: the strict conclusion holds when alpha + beta > 0."""
    assume(task.alpha + task.beta > 1e-6)
    lhs = pairs.functional_redundancy(task.values(pairs))
    assert lhs < theorem1_bound_sharp(task.alpha, task.beta, 0.1 + 1e-6)


@given(pairs=finite_pairs(dim=2, max_atoms=4), a=st.floats(0, 3), b=st.floats(0, 3))
def test_theorem1_holds_for_a_nonlinear_lipschitz_h(pairs, a, b):
    """h(x, y) = (a ||x - x0||, b ||y - y0||) is a-Lipschitz in x and b-Lipschitz in y."""
    x0, y0 = np.array([0.3, -0.2]), np.array([-1.0, 0.5])
    hx = a * np.linalg.norm(pairs.xs - x0, axis=1)
    hy = b * np.linalg.norm(pairs.ys - y0, axis=1)
    values = np.stack(np.broadcast_arrays(hx[:, None], hy[None, :]), axis=-1)
    m = pairs.mean_cosine_distance()
    assume(m > 1e-9)
    assert _holds(pairs.functional_redundancy(values), theorem1_bound_sharp(a, b, 2 * m))


def _extremal_ratio(alpha, beta, r, bound):
    pairs = theorem1_extremal_pairs(0.3, r)
    task = LinearTask(np.array([[0.0, alpha]]), np.array([[0.0, beta]]), np.zeros(1))
    lhs = pairs.functional_redundancy(task.values(pairs))
    return lhs / bound(alpha, beta, 2 * pairs.mean_cosine_distance())


@pytest.mark.parametrize("alpha, beta", [(1.0, 1.0), (1.0, 0.0), (0.3, 2.0)])
def test_theorem1_sharp_constant_is_nearly_attained(alpha, beta):
    """Ratio (1+r)/2 (a^2+b^2+2abr)/(a+b)^2 -> 1 as r -> 1: no constant below (a+b)^2 works."""
    ratio = _extremal_ratio(alpha, beta, 0.999, theorem1_bound_sharp)
    assert 0.998 < ratio <= 1.0 + SLACK


def test_theorem1_paper_constant_is_attained_when_alpha_equals_beta():
    """For alpha = beta the paper's 2(a^2+b^2) equals (a+b)^2: its constant 2 cannot be lowered."""
    ratio = _extremal_ratio(1.5, 1.5, 0.999, theorem1_bound)
    assert 0.998 < ratio <= 1.0 + SLACK


def test_theorem1_paper_constant_is_loose_when_alpha_differs_from_beta():
    """With beta = 0 the paper's bound is twice the attainable value."""
    assert _extremal_ratio(1.0, 0.0, 0.999, theorem1_bound) < 0.5 + 1e-9
    assert theorem1_bound_sharp(1.0, 0.0, 0.1) == pytest.approx(0.5 * theorem1_bound(1.0, 0.0, 0.1))


# --- Theorem 2 ---------------------------------------------------------------------------

@given(pairs=finite_pairs(dim=3, max_atoms=3), task=linear_tasks(dim=3, k=2), data=st.data())
def test_theorem2_estimators_inherit_functional_redundancy(pairs, task, data):
    """E||f_l(X_l) - f_prev(X_prev)||^2 <= sharp form <= 3 eta_l + 3 eta_prev + 6(a^2+b^2) eps."""
    m = pairs.mean_cosine_distance()
    assume(m > 1e-9)
    f_l, f_prev = pairs.conditional_means(task.values(pairs))
    noise = st.floats(-2, 2, allow_nan=False)
    g_l = f_l + np.array(data.draw(st.lists(noise, min_size=f_l.size, max_size=f_l.size))).reshape(f_l.shape)
    g_prev = f_prev + np.array(data.draw(st.lists(noise, min_size=f_prev.size, max_size=f_prev.size))).reshape(f_prev.shape)
    eta_l = float(pairs.p_l @ np.sum((g_l - f_l) ** 2, axis=1))
    eta_prev = float(pairs.p_prev @ np.sum((g_prev - f_prev) ** 2, axis=1))
    lhs = pairs.expected_squared_difference(g_l, g_prev)
    sharp = theorem2_bound_sharp(task.alpha, task.beta, 2 * m, eta_l, eta_prev)
    assert _holds(lhs, sharp)
    assert _holds(sharp, theorem2_bound(task.alpha, task.beta, 2 * m, eta_l, eta_prev))


def test_theorem2_sharp_form_is_attained_by_opposite_estimation_errors():
    """One atom, Z constant (alpha = beta = 0), f_l = c + u, f_prev = c - u: LHS = 4|u|^2 = (|u| + |u|)^2."""
    u = np.array([0.3, -0.4])
    lhs = float(np.sum((2 * u) ** 2))
    eta = float(u @ u)
    assert lhs == pytest.approx(theorem2_bound_sharp(0.0, 0.0, 1e-3, eta, eta), rel=1e-12)
    assert lhs == pytest.approx(theorem2_bound(0.0, 0.0, 1e-3, eta, eta) * 2 / 3, rel=1e-12)


def test_theorem2_with_exact_estimators_reduces_to_theorem1_and_is_nearly_attained():
    assert theorem2_bound_sharp(1.0, 0.5, 0.1, 0.0, 0.0) == pytest.approx(theorem1_bound_sharp(1.0, 0.5, 0.1))
    assert theorem2_bound(1.0, 0.5, 0.1, 0.0, 0.0) == pytest.approx(3 * theorem1_bound(1.0, 0.5, 0.1))
    assert _extremal_ratio(0.7, 1.2, 0.999, lambda a, b, e: theorem2_bound_sharp(a, b, e, 0.0, 0.0)) > 0.998


def test_theorem2_paper_constants_on_each_term():
    assert theorem2_bound(0.0, 0.0, 1.0, 1.0, 0.0) == 3.0
    assert theorem2_bound(0.0, 0.0, 1.0, 0.0, 1.0) == 3.0
    assert theorem2_bound(1.0, 0.0, 1.0, 0.0, 0.0) == 6.0
    assert theorem2_bound(0.0, 1.0, 2.0, 0.0, 0.0) == 12.0


@given(a=st.floats(0, 5), b=st.floats(0, 5), e=st.floats(1e-6, 2), n1=st.floats(0, 5), n2=st.floats(0, 5))
def test_sharp_forms_never_exceed_the_papers(a, b, e, n1, n2):
    assert _holds(theorem1_bound_sharp(a, b, e), theorem1_bound(a, b, e))
    assert _holds(theorem2_bound_sharp(a, b, e, n1, n2), theorem2_bound(a, b, e, n1, n2))


# --- vectorisation and validation --------------------------------------------------------

def test_bounds_broadcast_and_return_floats_for_scalars():
    got = theorem2_bound(np.array([[0.0], [1.0]]), 0.5, np.array([0.1, 0.2, 0.3]), 0.0, 0.0)
    assert got.shape == (2, 3) and got[1, 2] == pytest.approx(6 * 1.25 * 0.3)
    assert type(theorem1_bound(1, 1, 0.1)) is float
    assert proposition1_mean_bound(np.array([0.0, 1.0]), 0.5).shape == (2,)


@pytest.mark.parametrize("call, match", [
    (lambda: theorem1_bound(-1.0, 1.0, 0.1), r"`alpha` must be >= 0, got -1.0"),
    (lambda: theorem1_bound_sharp(1.0, [0.5, -2.0], 0.1), r"`beta` must be >= 0, got -2.0"),
    (lambda: theorem1_bound(1.0, 1.0, 0.0), r"`eps` must be > 0, got 0.0"),
    (lambda: theorem1_bound(1.0, 1.0, np.nan), r"`eps` must be > 0, got nan"),
    (lambda: theorem2_bound(1.0, 1.0, 0.1, -0.1, 0.0), r"`eta_l` must be >= 0, got -0.1"),
    (lambda: theorem2_bound_sharp(1.0, 1.0, 0.1, 0.0, np.nan), r"`eta_prev` must be >= 0, got nan"),
    (lambda: proposition1_tail_threshold(1.0, 0.5), r"`t` must be in \[0, 1\), got 1.0"),
    (lambda: proposition1_tail_threshold(0.5, -0.5), r"`eps` must be > 0, got -0.5"),
    (lambda: proposition1_tail_threshold_bounded(2.0, 0.5), r"`t` must be in \[0, 2\), got 2.0$"),
    (lambda: proposition1_tail_threshold_bounded(-0.1, 0.5), r"`t` must be in \[0, 2\), got -0.1$"),
    (lambda: proposition1_mean_bound(0.1, 1.2), r"`tail_prob` must be in \[0, 1\], got 1.2"),
    (lambda: proposition1_mean_bound(0.1, 0.2, rho_max=0.0), r"`rho_max` must be > 0, got 0.0"),
])
def test_invalid_arguments_raise_naming_argument_range_and_value(call, match):
    with pytest.raises(ValueError, match=match):
        call()
