"""Lemma 5 (paper App. E): Uni(X : X \\ Y) = H(X | Y) for discrete X, Y (BROJA unique information).

Statement (as stated). For discrete X, Y with joint pmf P and the BROJA unique information
(Bertschinger et al. 2014; the paper's Definition 6) of the triple (X, X', Y) with X' = X:
Uni(X : X' \\ Y) = H(X | Y).

Proof (direct; the paper's route through "non-negativity of PID" needs a PID with that
property, which BROJA has, but no axiom is needed).
Step 1 (Delta_P is a point). Q in Delta_P has Q(x, x') = P(x, x') = [x = x'] P(x), so Q puts
        no mass off x = x', and Q(x, y) = P(x, y) fixes the rest: Q = P.
Step 2 (value). I_P(X; X' | Y) = H(X | Y) - H(X | X', Y) = H(X | Y) - 0.
Step 3 (numerically). The solver finds Delta_P = {P} (no free direction) and returns H(X|Y)
        to rounding on random pmfs, in bits and nats.

Code: ``lemma5_gap``, ``unique_information``, ``broja``.
"""

import math

import numpy as np
from hypothesis import given

from skipit.theory.entropy import conditional_entropy, conditional_mutual_information
from skipit.theory.pid import _problem, broja, lemma5_gap
from skipit.theory.testing import joint_pmfs


def _copy_triple(p_xy):
    nx = p_xy.shape[0]
    p3 = np.zeros((nx, nx, p_xy.shape[1]))
    p3[np.arange(nx), np.arange(nx), :] = p_xy
    return p3


@given(joint_pmfs(ndim=2, max_size=5))
def test_step_1_marginal_polytope_is_a_single_point(p_xy):
    p3 = _copy_triple(p_xy)
    _cells, _q0, g, *_ = _problem(p3)
    assert g.shape[1] == 0
    assert np.allclose(broja(p3).q, p3, atol=1e-15)


@given(joint_pmfs(ndim=2, max_size=5))
def test_step_2_conditional_information_of_x_with_itself(p_xy):
    p3 = _copy_triple(p_xy)
    assert abs(conditional_mutual_information(p3, 0, 1, 2) - conditional_entropy(p_xy, 0, 1)) < 1e-12


@given(joint_pmfs(ndim=2, max_size=5))
def test_step_3_solver_returns_conditional_entropy(p_xy):
    assert abs(lemma5_gap(p_xy)) < 1e-12
    assert abs(lemma5_gap(p_xy, base=math.e)) < 1e-12
