"""Counterexamples to the paper's functional-side statements as printed (see ERRATA.md)."""

import numpy as np
import pytest
import sympy as sp

from skipit.theory import (
    cosine_distance,
    proposition1_tail_threshold,
    proposition1_tail_threshold_bounded,
    theorem1_bound,
    theorem1_bound_sharp,
    theorem2_bound,
    theorem6_bound,
    theorem6_bound_sqrt,
)
from skipit.theory import late_entry
from skipit.theory.testing import FinitePairs, LinearTask


def test_proposition1_paper_threshold_fails_for_the_cosine_distance():
    """Cosine distance reaches 2. With t = 0.5, eps = 0.75 the paper's threshold is 0.5; antipodal
    pairs with probability 0.49 satisfy P[rho > t] = 0.49 < 0.5 yet E[rho] = 0.98 > eps."""
    x = np.array([1.0, 0.0])
    rho_far, rho_near = cosine_distance(x, -x), cosine_distance(x, x)
    assert (rho_far, rho_near) == (2.0, 0.0)
    t, eps, p = 0.5, 0.75, 0.49
    assert p < proposition1_tail_threshold(t, eps)
    mean = p * rho_far + (1 - p) * rho_near
    assert mean > eps
    # the corrected threshold (eps - t)/(2 - t) = 1/6 excludes this law
    assert not p < proposition1_tail_threshold_bounded(t, eps, 2.0)


def _single_point_pairs():
    x = np.array([[1.0, 0.0]])
    return FinitePairs(x, x.copy(), np.ones((1, 1)))


def test_theorem1_strict_inequality_fails_when_alpha_and_beta_vanish():
    """Z constant: h is 0-Lipschitz; both sides are 0, so the printed '<' (0 < 0) is false."""
    pairs = _single_point_pairs()
    task = LinearTask(np.zeros((1, 2)), np.zeros((1, 2)), np.array([4.0]))
    lhs = pairs.functional_redundancy(task.values(pairs))
    eps = 0.1  # E[rho] = 0 < eps / 2 holds
    assert lhs == 0.0 == theorem1_bound(0.0, 0.0, eps)
    assert not lhs < theorem1_bound(0.0, 0.0, eps)


def test_theorem2_strict_inequality_fails_with_exact_estimators_and_constant_z():
    lhs = 0.0  # f_l = f_prev = E[Z] = constant
    assert not lhs < theorem2_bound(0.0, 0.0, 0.1, 0.0, 0.0)


def test_theorem1_proof_step_22_to_23_is_false():
    """Eq. (22)-(23) bound E||h(X_l, X_prev) - m(X_l)||^2 by beta^2 E||X_prev - m(X_l)||^2 with
    m(x) = E[X_prev | X_l = x]. With h(x, y) = y + c (beta = 1) the left side exceeds the right
    by ||c||^2: the step compares h with a point of the X-space, not with h(X_l, m(X_l)).
    The corrected step, via h(X_l, X_l), holds."""
    theta = 0.4
    pts = np.array([[np.cos(theta), np.sin(theta)], [np.cos(theta), -np.sin(theta)]])
    pairs = FinitePairs(pts, pts.copy(), np.array([[0.4, 0.1], [0.1, 0.4]]))
    c = np.array([3.0, 0.0])
    h = pairs.ys[None, :, :] + c + 0 * pairs.xs[:, None, :]
    m = np.einsum("ij,jk->ik", pairs.probs, pairs.ys) / pairs.p_l[:, None]  # E[X_prev | X_l = xs[i]]
    lhs_23 = float(np.sum(pairs.probs * np.sum((h - m[:, None, :]) ** 2, axis=-1)))
    rhs_23 = float(np.sum(pairs.probs * np.sum((pairs.ys[None] - m[:, None, :]) ** 2, axis=-1)))
    assert lhs_23 > rhs_23 + 8.9  # exceeds by ||c||^2 = 9
    # corrected: E Var(h | X_l) <= E||h(X_l, X_prev) - h(X_l, X_l)||^2 <= beta^2 E||X_prev - X_l||^2
    f_l, _ = pairs.conditional_means(h)
    e_var = float(np.sum(pairs.probs * np.sum((h - f_l[:, None, :]) ** 2, axis=-1)))
    assert e_var <= pairs.mean_squared_distance() + 1e-12


def test_theorem1_paper_constant_exceeds_the_sharp_one_unless_alpha_equals_beta():
    assert theorem1_bound(1.0, 0.0, 0.1) == 2 * theorem1_bound_sharp(1.0, 0.0, 0.1)
    assert theorem1_bound(1.0, 1.0, 0.1) == theorem1_bound_sharp(1.0, 1.0, 0.1)


def test_theorem6_stated_bound_fails_for_late_entry_of_the_raw_vision_input():
    """Sec. 4's late entry inserts the raw vision V_0. One layer (L = 1) that moves the vision
    (V_1 = V_0 + 1) and ignores it in the text (delta = 0), phi = identity (mu = 1): the paper's
    hypotheses hold for every eps (no difference V_1..V_L to bound), its bound is
    mu((L-1) eps + delta) = 0, but ||Y_true - Y_skip|| = ||V_1 - V_0|| = 1."""
    v0, t0 = np.array([0.0]), np.array([2.0])
    v1, t1 = v0 + 1.0, 0.5 * t0            # f_vis(v, t) = v + 1, f_text(v, t) = t / 2
    t1_skip = 0.5 * t0                      # f_text(0, t0)
    err = float(np.linalg.norm(np.r_[v1, t1] - np.r_[v0, t1_skip]))
    assert err == 1.0 > theorem6_bound(1.0, 0.5, 1e-3, 0.0, 1)
    # corrected (entry=0, hypothesis on ||V_1 - V_0|| <= eps): holds, with equality
    assert err <= theorem6_bound_sqrt(1.0, 0.5, 1.0, 0.0, 1, entry=0) == 1.0


def test_theorem6_closed_form_divides_by_zero_at_lam_one():
    """The paper's (lam^L - 1)/(lam - 1) is 0/0 at lam = 1; the library's sympy form is Piecewise, = L there."""
    mu, lam, eps, delta, L, entry = late_entry.ARGUMENTS["theorem6_bound"]
    at_one = dict(zip((mu, lam, eps, delta, L, entry), (1, 1, sp.Rational(1, 10), sp.Rational(1, 10), 3, 1)))
    papers = mu * ((L - 1) * eps + delta * (lam**L - 1) / (lam - 1))
    assert papers.subs(at_one) is sp.nan
    assert late_entry.SYMBOLIC["theorem6_bound"].subs(at_one) == 2 * sp.Rational(1, 10) + 3 * sp.Rational(1, 10)
    assert theorem6_bound(1.0, 1.0, 0.1, 0.1, 3) == pytest.approx(2 * 0.1 + 3 * 0.1)


def test_theorem6_statement_sum_form_is_looser_than_its_proof():
    assert theorem6_bound_sqrt(1.0, 1.0, 0.1, 0.1, 2) == pytest.approx(np.hypot(0.1, 0.2))
    assert theorem6_bound(1.0, 1.0, 0.1, 0.1, 2) == pytest.approx(0.3)
