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

import numpy as np
from hypothesis import given

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


@given(markov_chains())
def test_step_1_expected_kl_is_an_expected_log_ratio(p):
    z_l, z_prev = _cond(p)
    joint_ab = p.sum(2)
    total = 0.0
    for a, b in zip(*np.nonzero(joint_ab)):
        for c in np.flatnonzero(z_l[b] > 0):
            total += joint_ab[a, b] * z_l[b, c] * math.log(z_l[b, c] / z_prev[a, c])
    assert abs(total - lemma4_expected_kl(p)) < TOL


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
