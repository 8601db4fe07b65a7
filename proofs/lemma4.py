"""Lemma 4 (paper App. A.1): expected conditional KL equals conditional mutual information.

Statement (as stated). If X_prev - X_l - Z is a Markov chain (paper: Y - X - Z), then

    E_{(X_l, X_prev)}[ D(p_{Z|X_l} || p_{Z|X_prev}) ] = I(Z; X_l | X_prev).

Proof (finite laws; the general case is the same with densities).
Step 1 (eq. 7-8). E[D(p_{Z|X_l} || p_{Z|X_prev})] = E_{(X_l, X_prev), Z ~ p(.|X_l)}[log p(Z|X_l)/p(Z|X_prev)].
Step 2 (eq. 9, the Markov property). p(z | x_l) = p(z | x_l, x_prev), so Z ~ p(.|X_l) is
        Z ~ p(.|X_l, X_prev) and the expectation is over the joint law of (X_prev, X_l, Z).
Step 3 (eq. 10-11). log p(z|x_l,x_prev)/p(z|x_prev) = log p(z,x_l|x_prev)/(p(x_l|x_prev) p(z|x_prev)),
        whose expectation is I(Z; X_l | X_prev).
Step 4 (the hypothesis is needed). Z = X_prev XOR X_l with independent fair bits: the
        left side is 0, the right side log 2.

Code: ``lemma4_expected_kl``, ``lemma4_gap``.
"""

import math
from collections import defaultdict
from fractions import Fraction

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from sympy import factorint

from skipit.theory.entropy import conditional_mutual_information
from skipit.theory.informational import lemma4_expected_kl, lemma4_gap
from skipit.theory.testing import markov_chains

TOL = 1e-12


def _cond(p):
    p_l = p.sum(axis=(0, 2))
    p_prev = p.sum(axis=(1, 2))
    z_l = np.divide(p.sum(0), p_l[:, None], out=np.zeros(p.shape[1:]), where=p_l[:, None] > 0)
    z_prev = np.divide(p.sum(1), p_prev[:, None], out=np.zeros((p.shape[0], p.shape[2])), where=p_prev[:, None] > 0)
    return z_l, z_prev


def _weights(n, m):
    """Rows of small integer weights (at least one positive per row) for an n x m kernel."""
    row = st.lists(st.integers(0, 4), min_size=m, max_size=m).filter(any)
    return st.lists(row, min_size=n, max_size=n)


@st.composite
def exact_markov_chains(draw):
    """p[a, b, c] = p(a) p(b | a) p(c | b) (X_prev - X_l - Z) with rational entries (Fractions)."""
    na, nb, nc = (draw(st.integers(2, 3)) for _ in range(3))
    pa = draw(_weights(1, na))[0]
    pba, pcb = draw(_weights(na, nb)), draw(_weights(nb, nc))
    return {(a, b, c): Fraction(pa[a], sum(pa)) * Fraction(pba[a][b], sum(pba[a])) * Fraction(pcb[b][c], sum(pcb[b]))
            for a in range(na) for b in range(nb) for c in range(nc)}


def _log_coefficients(terms):
    """sum_i w_i log r_i (rational w_i, r_i > 0) as {prime: coefficient}: logs of primes are
    linearly independent over Q, so two such sums are equal iff these maps are equal."""
    out = defaultdict(Fraction)
    for w, r in terms:
        for prime, e in factorint(r.numerator).items():
            out[prime] += w * e
        for prime, e in factorint(r.denominator).items():
            out[prime] -= w * e
    return {k: v for k, v in out.items() if v != 0}


def _marginal(p, keep):
    out = defaultdict(Fraction)
    for key, v in p.items():
        out[tuple(key[i] for i in keep)] += v
    return out


def _three_sides(p):
    """Steps 1-3's three sums, as lists of (weight, ratio) for sum weight * log(ratio)."""
    pab, pa, pb = _marginal(p, (0, 1)), _marginal(p, (0,)), _marginal(p, (1,))
    pac, pbc = _marginal(p, (0, 2)), _marginal(p, (1, 2))
    zs = sorted({c for _a, _b, c in p})

    def z_given_l(c, b):
        return pbc[(b, c)] / pb[(b,)]

    def z_given_prev(c, a):
        return pac[(a, c)] / pa[(a,)]

    expected_kl = [(pab[(a, b)] * z_given_l(c, b), z_given_l(c, b) / z_given_prev(c, a))
                   for (a, b), v in pab.items() if v > 0 for c in zs if z_given_l(c, b) > 0]
    joint_log_ratio = [(v, z_given_l(c, b) / z_given_prev(c, a)) for (a, b, c), v in p.items() if v > 0]
    cmi = [(v, v * pa[(a,)] / (pab[(a, b)] * pac[(a, c)])) for (a, b, c), v in p.items() if v > 0]
    return expected_kl, joint_log_ratio, cmi


@settings(max_examples=30)
@given(exact_markov_chains())
def test_step_1_to_3_expected_kl_is_the_conditional_mutual_information_exactly(p):
    """Exact rationals: E over (X_prev, X_l) of D(p(.|X_l) || p(.|X_prev)), built pair by pair from
    the conditionals (Step 1), equals E over the joint law of log p(Z|X_l)/p(Z|X_prev) (Step 2,
    the Markov property puts p(a, b) p(c | b) = p(a, b, c)), equals I(Z; X_l | X_prev) from its
    definition (Step 3); the library's number is the same."""
    expected_kl, joint_log_ratio, cmi = _three_sides(p)
    assert _log_coefficients(expected_kl) == _log_coefficients(joint_log_ratio) == _log_coefficients(cmi)
    value = sum(float(w) * math.log(r) for w, r in cmi)
    shape = tuple(1 + max(k[i] for k in p) for i in range(3))
    dense = np.zeros(shape)
    for key, v in p.items():
        dense[key] = float(v)
    assert abs(lemma4_expected_kl(dense / dense.sum()) - value) < TOL


@given(markov_chains())
def test_step_2_markov_property_p_z_given_x_l_equals_p_z_given_both(p):
    z_l, _ = _cond(p)
    joint_ab = p.sum(2)
    for a, b in zip(*np.nonzero(joint_ab)):
        assert np.allclose(p[a, b] / joint_ab[a, b], z_l[b], atol=TOL)


@given(markov_chains())
def test_step_3_equals_conditional_mutual_information(p):
    assert abs(lemma4_gap(p)) < TOL
    assert lemma4_expected_kl(p) <= conditional_mutual_information(p, 2, (0, 1), 0) + TOL


def test_step_4_markov_hypothesis_is_needed():
    p = np.zeros((2, 2, 2))
    for a in range(2):
        for b in range(2):
            p[a, b, a ^ b] = 0.25
    assert lemma4_expected_kl(p, require_markov=False) == 0.0
    assert abs(conditional_mutual_information(p, 2, 1, 0) - math.log(2)) < TOL
    # exactly: the expected KL is 0, the conditional mutual information log 2 (p(z | x_l) != p(z | x_l, x_prev))
    xor = {(a, b, a ^ b): Fraction(1, 4) for a in range(2) for b in range(2)}
    expected_kl, joint_log_ratio, cmi = _three_sides(xor)
    assert _log_coefficients(expected_kl) == {} and _log_coefficients(cmi) == {2: 1}
