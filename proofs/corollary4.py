"""Corollary 4 (paper App. A.2; Braun & Pokutta 2015, Cor. 2.3): upper bound on H(X_l | X_prev).

Statement (as stated; hypotheses of Theorem 4, p_min + p_max < 1 not needed). If H(X_l)
is finite,

    H(X_l | X_prev) <= H(X_l) + log p_max + h(P_t) + P_t log((1 - p_min) / p_max).

For X_l on the unit sphere with a density, H is the differential entropy with respect
to the surface measure (the identity of Step 1 holds for it whenever both sides are
finite); for quantized activations it is the discrete entropy.

Proof.
Step 1. H(X_l | X_prev) = H(X_l) - I(X_l; X_prev).
Step 2. Theorem 4: I >= (1 - P_t) log(1/p_max) - P_t log(1 - p_min) - h(P_t).
Step 3 (algebra). H(X_l) - [(1 - P_t) log(1/p_max) - P_t log(1 - p_min) - h(P_t)]
        = H(X_l) + log p_max + h(P_t) + P_t log((1 - p_min)/p_max).
Step 4 (numerically on exact laws). The bound holds, also in bits.

Code: ``corollary4_conditional_entropy_upper_bound``.
"""

import math

import sympy as sp
from hypothesis import assume, given
from hypothesis import strategies as st

from skipit.theory.entropy import conditional_entropy, entropy, mutual_information
from skipit.theory.informational import SYMBOLIC, corollary4_conditional_entropy_upper_bound, exact_proximal_quantities
from skipit.theory.testing import finite_sphere_laws, joint_pmfs

TOL = 1e-10


@given(joint_pmfs(ndim=2))
def test_step_1_conditional_entropy_is_entropy_minus_information(p):
    assert abs(conditional_entropy(p, 0, 1) - (entropy(p, 0) - mutual_information(p, 0, 1))) < TOL


def test_step_2_and_3_algebra():
    hx = sp.Symbol("h_x", real=True)
    thm4 = SYMBOLIC["theorem4_mi_lower_bound"]
    cor = SYMBOLIC["corollary4_conditional_entropy_upper_bound"]
    assert sp.simplify(sp.expand_log(cor - (hx - thm4), force=True)) == 0


@given(finite_sphere_laws(), st.floats(0, 2))
def test_step_4_bound_holds_on_exact_laws_in_nats_and_bits(law, t):
    pq = exact_proximal_quantities(law.p, law.rho, t)
    assume(0 < pq.p_max and pq.p_min < 1)
    h_cond = conditional_entropy(law.p, 0, 1)
    hx = entropy(law.p, 0)
    assert h_cond <= corollary4_conditional_entropy_upper_bound(hx, pq.p_t, pq.p_min, pq.p_max) + TOL
    bits = corollary4_conditional_entropy_upper_bound(hx / math.log(2), pq.p_t, pq.p_min, pq.p_max, base=2)
    assert h_cond / math.log(2) <= bits + TOL
