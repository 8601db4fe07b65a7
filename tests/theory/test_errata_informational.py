"""Kept counterexamples for the informational results (ERRATA.md).

Where the paper's statement (or a step of its proof) is wrong, the paper's version
fails on the kept example and the corrected version holds on it.
"""

import math

import numpy as np
import pytest

from skipit.theory.entropy import conditional_entropy, conditional_mutual_information, mutual_information
from skipit.theory.informational import (
    conditional_mean_gap, exact_proximal_quantities, theorem3_mi_lower_bound, theorem4_mi_lower_bound, theorem5_bound,
    theorem5_entropy_bound,
)
from skipit.theory.spherical import cap_fraction


def _paper_theorem5_last_line(B, h_cond, C):
    """The last line of the paper's proof of Theorem 5: 2 B^2 H(X_l | X_prev) + C."""
    return 2 * B**2 * h_cond + C


def _two_arc_law(w, B):
    """Kept counterexample for Theorem 5's last line (exact, in closed form).

    X_prev constant; X_l uniform on two arcs of the unit circle, each of length w < 1,
    centred at opposite points; Z = +B on one arc, -B on the other (a function of X_l,
    so X_prev - X_l - Z is Markov and ||Z|| = B). Differential entropies are w.r.t. arc
    length (the surface measure of S^1):
      H(X_l | X_prev) = log(2 w),  H(X_l | Z, X_prev) = log w = -C with C = log(1/w) = log M,
      I(Z; X_l | X_prev) = log 2,  E||E[Z|X_l] - E[Z|X_prev]||^2 = E[Z^2] = B^2.
    """
    return {"lhs": B**2, "h_cond": math.log(2 * w), "C": -math.log(w), "cmi": math.log(2)}


def test_theorem5_last_line_is_false_and_statement_holds():
    law = _two_arc_law(w=0.01, B=1.0)
    paper = _paper_theorem5_last_line(1.0, law["h_cond"], law["C"])
    corrected = theorem5_entropy_bound(1.0, law["h_cond"], law["C"])
    assert law["lhs"] > paper  # 1 > 2 log(0.02) + log(100) = -3.22
    assert law["lhs"] <= corrected  # 1 <= 2 (log 0.02 + log 100) = 2 log 2
    assert corrected == pytest.approx(theorem5_bound(1.0, law["cmi"]), rel=1e-14)  # H + C = I here


def test_theorem5_corrected_form_does_not_depend_on_the_reference_measure():
    # normalising arc length by 2 pi shifts H by -log(2 pi) and the least C by +log(2 pi)
    law = _two_arc_law(w=0.05, B=2.0)
    shift = math.log(2 * math.pi)
    a = theorem5_entropy_bound(2.0, law["h_cond"], law["C"])
    b = theorem5_entropy_bound(2.0, law["h_cond"] + shift, law["C"] - shift)
    assert a == pytest.approx(b, rel=1e-12)
    assert _paper_theorem5_last_line(2.0, law["h_cond"], law["C"]) != pytest.approx(
        _paper_theorem5_last_line(2.0, law["h_cond"] + shift, law["C"] - shift))


def _binary_symmetric(e):
    """X_l uniform on two orthogonal unit vectors, X_prev = X_l flipped with probability e."""
    rho = np.array([[0.0, 1.0], [1.0, 0.0]])
    p = np.array([[1 - e, e], [e, 1 - e]]) / 2
    return p, rho


def test_theorem4_needs_strict_inequality_in_p_t():
    p, rho = _binary_symmetric(0.25)
    t = 0.0
    pq = exact_proximal_quantities(p, rho, t)  # P[rho > 0] = 1/4, p_min = p_max = 1/2
    mi = mutual_information(p, 0, 1)
    assert pq.p_t == pytest.approx(0.25)
    assert theorem4_mi_lower_bound(pq.p_t, pq.p_min, pq.p_max) <= mi + 1e-12
    p_t_geq = float(p[rho >= t].sum())  # P[rho >= 0] = 1
    wrong = theorem4_mi_lower_bound(p_t_geq, pq.p_min, pq.p_max)
    assert wrong == pytest.approx(math.log(2))
    assert wrong > mi + 0.1  # log 2 > log 2 - h(1/4)


def test_theorem4_holds_without_the_hypothesis_p_min_plus_p_max_below_one():
    # two points at cosine distance 0.5, t = 0.4: each ball holds only its centre
    p = np.array([[0.45, 0.05], [0.05, 0.45]])
    pq = exact_proximal_quantities(p, np.array([[0.0, 0.5], [0.5, 0.0]]), 0.4)
    assert pq.p_min + pq.p_max == pytest.approx(1.0)  # violates the paper's p_min + p_max < 1
    assert theorem4_mi_lower_bound(pq.p_t, pq.p_min, pq.p_max) <= mutual_information(p, 0, 1) + 1e-12


def test_theorem3_needs_x_l_uniform_on_the_sphere():
    # X_l = X_prev = one fixed point: I = 0 and P_t = 0, but the bound is log(1/F) - log 2 > 0
    d, t = 10, 0.2
    assert theorem3_mi_lower_bound(0.0, t, d) > 5.0
    assert mutual_information(np.array([[1.0]]), 0, 1) == 0.0


def test_theorem3_with_p_t_geq_is_only_more_conservative():
    # the paper's P[rho >= t] >= P[rho > t], and the factor log(1/F) >= 0: the paper's
    # version is a smaller (still valid) bound; the corrected statement uses '>'
    for t in (0.1, 0.5, 1.5):
        assert theorem3_mi_lower_bound(0.3, t, 50) <= theorem3_mi_lower_bound(0.2, t, 50)


def test_theorem3_surface_measure_gives_finite_cap_fractions():
    # with mu = Lebesgue measure of R^d both mu(S^{d-1}) and mu(cap) are 0 (ratio 0/0);
    # under the normalised surface measure the cap of S^2 is Archimedes' t / 2
    assert cap_fraction(0.3, 3) == pytest.approx(0.15, rel=1e-12)
    assert theorem3_mi_lower_bound(0.0, 0.3, 3) == pytest.approx(math.log(1 / 0.15) - math.log(2), rel=1e-12)


def test_theorem5_entropy_form_with_c_zero_bounds_the_gap_for_discrete_x_l():
    """Discrete X_l: H(X_l | Z, X_prev) >= 0, so C = 0 is admissible, and then the paper's last
    line (2 B^2 H + C) and the statement coincide and both hold. Exact Markov chain
    p[x_prev, x_l, z] (X_l a noisy copy of X_prev, Z a noisy function of X_l), Z in {-1, +1}."""
    p_prev = np.array([0.5, 0.3, 0.2])
    l_given_prev = np.array([[0.8, 0.1, 0.1], [0.2, 0.7, 0.1], [0.1, 0.2, 0.7]])
    z_given_l = np.array([[0.9, 0.1], [0.3, 0.7], [0.5, 0.5]])
    p = p_prev[:, None, None] * l_given_prev[:, :, None] * z_given_l[None, :, :]
    z = np.array([-1.0, 1.0])
    assert conditional_entropy(p, 1, (0, 2)) >= 0  # H(X_l | Z, X_prev) >= -C with C = 0
    h = conditional_entropy(p, 1, 0)
    gap = conditional_mean_gap(p, z)
    assert 0 < gap <= theorem5_bound(1.0, conditional_mutual_information(p, 2, 1, 0)) + 1e-12
    assert gap <= theorem5_entropy_bound(1.0, h, 0.0) + 1e-12
    assert theorem5_entropy_bound(1.0, h, 0.0) == pytest.approx(_paper_theorem5_last_line(1.0, h, 0.0), rel=1e-15)
