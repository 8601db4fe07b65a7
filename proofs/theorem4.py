"""Theorem 4 (paper App. A.2; Braun & Pokutta 2015, Prop. 2.2): a Fano-type lower bound on I(X_l; X_prev).

Statement (as stated, with a superfluous hypothesis dropped). Let X_l, X_prev be random
variables on a common space (unit norm is not needed), rho a symmetric function,
t a threshold, R_t = {(x, x') : rho(x, x') <= t}, P_t = P[rho(X_l, X_prev) > t] (strict),
q_t = (P_{X_l} x P_{X_prev})(R_t), and 0 <= p_min <= q_t <= p_max with p_max > 0,
p_min < 1 (true for p_min = inf_x P[rho(X_prev, x) <= t], p_max = sup_x of the same,
x over the support of X_l). Then

    I(X_l; X_prev) >= d(1 - P_t || q_t)
                   >= d(1 - P_t || clip(1 - P_t, p_min, p_max))                   (sharper form)
                   >= (1 - P_t) log(1/p_max) - P_t log(1 - p_min) - h(P_t)        (the paper's form).

The paper's hypothesis p_min + p_max < 1 is never used (Step 6 checks exact laws that
violate it). The strict ">" in P_t matters: with ">=" the bound fails (Step 7).

Proof.
Step 1 (mutual information is a KL divergence). I(X_l; X_prev) = D(P || Q) with
        P = P_{X_l X_prev} and Q = P_{X_l} x P_{X_prev}.
Step 2 (data processing for one event). For any event A, D(P || Q) >= d(P(A) || Q(A)):
        apply the log-sum inequality on A and on its complement.
Step 3 (the event). A = R_t: P(R_t) = 1 - P_t, Q(R_t) = q_t = sum_x P_{X_l}(x) P_{X_prev}(ball(x)),
        an average of ball probabilities, hence in [p_min, p_max].
Step 4 (expansion). d(a || q) = a log(1/q) + (1 - a) log(1/(1 - q)) - h(a).
Step 5 (monotonicity). For a = 1 - P_t: a log(1/q) >= a log(1/p_max) since q <= p_max, and
        (1 - a) log(1/(1 - q)) >= -(1 - a) log(1 - p_min) since q >= p_min. With Step 4 this
        is the paper's form. Sharper: d(a || q) is convex in q with d/dq = (q - a)/(q(1 - q)),
        so its minimum over [p_min, p_max] is at clip(a, p_min, p_max).
Step 6 (no hypothesis p_min + p_max < 1). Steps 1-5 never used it; exact laws with
        p_min + p_max >= 1 satisfy the bound.
Step 7 ('>' not '>='). R_t is a closed ball, so P(R_t) = 1 - P[rho > t]. Replacing P_t by
        P[rho >= t] breaks the bound: X_l uniform on two orthogonal vectors, X_prev = X_l
        flipped with probability 1/4, t = 0: P[rho >= 0] = 1 gives log 2 > I = log 2 - h(1/4).

Code: ``theorem4_mi_lower_bound``, ``theorem4_mi_lower_bound_sharp``.
"""

import math

import numpy as np
import sympy as sp
from hypothesis import assume, given
from hypothesis import strategies as st

from skipit.theory.distances import cosine_distance
from skipit.theory.entropy import binary_entropy, binary_kl, kl_divergence, mutual_information
from skipit.theory.informational import (
    ARGUMENTS, SYMBOLIC, exact_proximal_quantities, theorem4_mi_lower_bound, theorem4_mi_lower_bound_sharp,
)
from skipit.theory.testing import finite_sphere_laws, joint_pmfs

TOL = 1e-10
a, q = sp.symbols("a q", positive=True)
P, pmin, pmax = ARGUMENTS["theorem4_mi_lower_bound"]


@given(joint_pmfs(ndim=2))
def test_step_1_mutual_information_is_kl_to_product(p):
    prod = np.outer(p.sum(1), p.sum(0))
    assert abs(mutual_information(p, 0, 1) - kl_divergence(p, prod)) < TOL


@given(joint_pmfs(shape=(3, 3), allow_zeros=False), joint_pmfs(shape=(3, 3)), st.data())
def test_step_2_data_processing_for_one_event(q_, p, data):
    mask = np.array(data.draw(st.lists(st.booleans(), min_size=p.size, max_size=p.size))).reshape(p.shape)
    pa, qa = min(1.0, p[mask].sum()), min(1.0, q_[mask].sum())
    assert kl_divergence(p, q_) >= binary_kl(pa, qa) - TOL


@given(finite_sphere_laws(), st.floats(0, 2))
def test_step_3_product_probability_of_the_ball_lies_in_p_min_p_max(law, t):
    pq = exact_proximal_quantities(law.p, law.rho, t)
    prod = np.outer(law.p.sum(1), law.p.sum(0))
    assert abs(pq.q_t - prod[law.rho <= t].sum()) < TOL
    assert pq.p_min - TOL <= pq.q_t <= pq.p_max + TOL
    assert abs(pq.p_t - law.p[law.rho > t].sum()) < TOL


def _binary_kl_expansion():
    """d(a || q) = a log(1/q) + (1 - a) log(1/(1 - q)) - h(a): the three terms."""
    return a * sp.log(1 / q), (1 - a) * sp.log(1 / (1 - q)), -a * sp.log(a) - (1 - a) * sp.log(1 - a)


def test_step_4_expansion_of_binary_kl():
    d = a * sp.log(a / q) + (1 - a) * sp.log((1 - a) / (1 - q))
    first, second, h = _binary_kl_expansion()
    assert sp.simplify(sp.expand_log(d - (first + second - h), force=True)) == 0


def test_step_5_monotonicity_and_the_sharper_minimiser():
    d = a * sp.log(a / q) + (1 - a) * sp.log((1 - a) / (1 - q))
    assert sp.simplify(sp.diff(d, q) - (q - a) / (q * (1 - q))) == 0
    # the paper's form is Step 4 with q replaced by p_max in the first log and p_min in the second
    # (for 0 < P_t < 1: the general branch of the Piecewise that makes 0 log 0 = 0)
    interior = SYMBOLIC["theorem4_mi_lower_bound"].replace(lambda e: isinstance(e, sp.Piecewise), lambda e: e.args[-1][0])
    paper = interior.subs(P, 1 - a)
    # Step 4's three terms: a log(1/q) falls with q (so q <= p_max bounds it below by its value
    # at p_max), (1 - a) log(1/(1 - q)) rises with q (bounded below at p_min), h(a) is kept
    first, second, h = _binary_kl_expansion()
    b, s = sp.symbols("b s", positive=True)  # b = 1 - a, s = 1 - q
    assert sp.diff(first, q).is_negative and sp.diff(second.subs({a: 1 - b, q: 1 - s}), s).is_negative
    ref = first.subs(q, pmax) + second.subs(q, pmin) - h
    assert sp.simplify(sp.expand_log(paper - ref, force=True)) == 0
    # adversarial numeric points: sharp >= paper everywhere on a grid including the edges
    g = np.array([0.0, 1e-9, 0.01, 0.3, 0.5, 0.7, 0.99, 1 - 1e-9])
    pt, lo, hi = np.meshgrid(g, g[:-1], g[1:], indexing="ij")
    ok = lo <= hi
    assert np.all(theorem4_mi_lower_bound_sharp(pt[ok], lo[ok], hi[ok]) >= theorem4_mi_lower_bound(pt[ok], lo[ok], hi[ok]) - TOL)


@given(finite_sphere_laws(), st.floats(0, 2))
def test_step_6_bound_holds_whether_or_not_p_min_plus_p_max_below_one(law, t):
    pq = exact_proximal_quantities(law.p, law.rho, t)
    assume(0 < pq.p_max and pq.p_min < 1)
    mi = mutual_information(law.p, 0, 1)
    assert binary_kl(1 - pq.p_t, pq.q_t) <= mi + TOL
    assert theorem4_mi_lower_bound_sharp(pq.p_t, pq.p_min, pq.p_max) <= mi + TOL


def test_step_7_strict_inequality_in_p_t_is_needed():
    vectors = np.eye(2)  # X_l uniform on two orthogonal unit vectors, X_prev = X_l flipped w.p. 1/4
    p = np.array([[0.75, 0.25], [0.25, 0.75]]) / 2
    rho = cosine_distance(vectors[:, None, :], vectors[None, :, :])
    mi = mutual_information(p, 0, 1)
    assert abs(mi - (math.log(2) - float(binary_entropy(0.25)))) < TOL
    pq = exact_proximal_quantities(p, rho, 0.0)
    assert theorem4_mi_lower_bound(pq.p_t, pq.p_min, pq.p_max) <= mi + TOL
    assert theorem4_mi_lower_bound(float(p[rho >= 0].sum()), pq.p_min, pq.p_max) > mi + 0.5
