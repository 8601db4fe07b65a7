"""Theorem 5 (paper Sec. 3.4, proof App. A.2): informational redundancy implies functional redundancy.

Statement (the statement is right; the proof's last line is not). Let ||Z|| <= B almost
surely and X_prev - X_l - Z be a Markov chain. Then, with I in nats,

    E||E[Z|X_l] - E[Z|X_prev]||^2 <= 2 B^2 I(Z; X_l | X_prev),

and if H(X_l | Z, X_prev) >= -C then the right side is <= 2 B^2 (H(X_l | X_prev) + C);
C = 0 for discrete X_l, C = log M when the conditional density of X_l is <= M. For unit
vectors X_l (on S^{d-1}, Lebesgue-null in R^d) "density" and "H" are taken with respect
to the surface measure; H + C does not depend on how that measure is normalised.
Erratum: the proof ends with "<= 2 B^2 H(X_l|X_prev) + C", which does not follow and is
false (Step 8). The constant 2 is sharp (Step 7).

Proof.
Step 1. For a, b: E[Z|X_l=a] - E[Z|X_prev=b] = sum_z z (p(z|a) - p(z|b)).
Step 2 (triangle inequality, eq. 28-30). Its norm is <= sum_z ||z|| |p(z|a) - p(z|b)|
        <= B ||p(.|a) - p(.|b)||_1 = 2 B TV(p(.|a), p(.|b)).
        (Because sum_z (p(z|a) - p(z|b)) = 0, B may be replaced by the radius of any ball
        containing the support of Z, a sharper constant for uncentred Z.)
Step 3 (Pinsker, eq. 31-32). TV^2 <= KL/2 (nats), so the square is <= 2 B^2 D(p(.|a) || p(.|b)).
Step 4 (average). Taking E over (X_l, X_prev) = (a, b) and Lemma 4:
        E||E[Z|X_l] - E[Z|X_prev]||^2 <= 2 B^2 E[D] = 2 B^2 I(Z; X_l | X_prev).
Step 5 (entropy). I(Z; X_l | X_prev) = H(X_l | X_prev) - H(X_l | Z, X_prev) <= H(X_l | X_prev) + C.
Step 6 (C for bounded densities). p <= M gives H(X_l | Z, X_prev) = -E log p >= -log M.
Step 7 (sharpness). X_prev constant, X_l a fair bit, Z = +-B with P(Z = B | X_l = x) = 1/2 +- delta:
        left side 4 B^2 delta^2, right side 2 B^2 (log 2 - h(1/2 + delta)) = 4 B^2 delta^2 + O(delta^4).
Step 8 (the last line is false). X_prev constant, X_l uniform on two opposite arcs of
        length w < 1 of the circle, Z = +-B by arc: left side B^2, H(X_l|X_prev) = log 2w,
        C = log(1/w); 2 B^2 (H + C) = 2 B^2 log 2 >= B^2, but 2 B^2 log(2w) + log(1/w) < B^2
        for B = 1, w = 0.01.

Code: ``theorem5_bound``, ``theorem5_entropy_bound``, ``conditional_mean_gap``.
"""

import math

import numpy as np
import sympy as sp
from hypothesis import given
from hypothesis import strategies as st
from scipy import integrate

from skipit.theory.entropy import (
    binary_entropy, conditional_entropy, conditional_mutual_information, kl_divergence,
)
from skipit.theory.informational import conditional_mean_gap, lemma4_expected_kl, theorem5_bound, theorem5_entropy_bound
from skipit.theory.testing import bounded_points, joint_pmfs, markov_chains

TOL = 1e-10


def _conditionals(p):
    p_l, p_prev = p.sum(axis=(0, 2)), p.sum(axis=(1, 2))
    z_l = np.divide(p.sum(0), p_l[:, None], out=np.zeros(p.shape[1:]), where=p_l[:, None] > 0)
    z_prev = np.divide(p.sum(1), p_prev[:, None], out=np.zeros((p.shape[0], p.shape[2])), where=p_prev[:, None] > 0)
    return z_l, z_prev


@given(markov_chains(), st.data())
def test_step_1_and_2_difference_of_means_bounded_by_2B_tv(p, data):
    z = data.draw(bounded_points(p.shape[2], dim=3, bound=2.0))
    b = float(np.max(np.linalg.norm(z, axis=1)))
    z_l, z_prev = _conditionals(p)
    joint = p.sum(2)  # P(X_prev = b_, X_l = a_)
    for b_, a_ in zip(*np.nonzero(joint)):
        diff = (z_l[a_] - z_prev[b_]) @ z
        tv = 0.5 * np.abs(z_l[a_] - z_prev[b_]).sum()
        assert np.linalg.norm(diff) <= 2 * b * tv + TOL
        centre = z.mean(0)  # any centre works: the weights sum to zero
        radius = float(np.max(np.linalg.norm(z - centre, axis=1)))
        assert np.linalg.norm(diff) <= 2 * radius * tv + TOL


@given(joint_pmfs(shape=(5,)), joint_pmfs(shape=(5,), allow_zeros=False))
def test_step_3_pinsker(p, q):
    tv = 0.5 * np.abs(p - q).sum()
    assert tv**2 <= kl_divergence(p, q) / 2 + TOL


@given(markov_chains(), st.data())
def test_step_4_average_and_lemma4(p, data):
    z = data.draw(bounded_points(p.shape[2], dim=2, bound=1.0))
    b = float(np.max(np.linalg.norm(z, axis=1)))
    lhs = conditional_mean_gap(p, z)
    assert lhs <= 2 * b**2 * lemma4_expected_kl(p) + TOL
    assert lhs <= theorem5_bound(b, conditional_mutual_information(p, 2, 1, 0)) + TOL


@given(markov_chains())
def test_step_5_cmi_is_entropy_difference_and_discrete_c_is_zero(p):
    cmi = conditional_mutual_information(p, 2, 1, 0)
    diff = conditional_entropy(p, 1, 0) - conditional_entropy(p, 1, (0, 2))
    assert abs(cmi - diff) < TOL
    assert conditional_entropy(p, 1, (0, 2)) >= -TOL  # discrete: C = 0 admissible
    assert theorem5_bound(1.0, cmi) <= theorem5_entropy_bound(1.0, conditional_entropy(p, 1, 0)) + TOL


def _densities_on_the_circle(a):
    """Z = -1 or +1 (B = 1) with probability 1/2, X_prev constant, X_l on the circle (angle
    th, reference measure arc length) with conditional densities
    p_-(th) = (1 + a cos th)/(2 pi), p_+(th) = (1 + a sin 2th)/(2 pi), both <= M = (1 + a)/(2 pi)."""
    p_minus = lambda th: (1 + a * math.cos(th)) / (2 * math.pi)  # noqa: E731
    p_plus = lambda th: (1 + a * math.sin(2 * th)) / (2 * math.pi)  # noqa: E731
    return p_minus, p_plus, (1 + a) / (2 * math.pi)


def _quad(f):
    return integrate.quad(f, 0, 2 * math.pi, epsabs=1e-13, epsrel=1e-13, limit=200)[0]


def test_step_6_bounded_density_gives_c_log_m():
    """H(X_l | Z, X_prev) = -E log p >= -log M, computed by quadrature on a concrete law with
    non-uniform densities bounded by M; then Steps 4-5 with C = log M bound the exact left side.
    Uniform densities on an arc of length w attain H = -log M (p = M = 1/w on its support)."""
    for a in (0.3, 0.7, 0.95):
        p_minus, p_plus, m = _densities_on_the_circle(a)
        neg_ent = lambda f: _quad(lambda th: f(th) * math.log(f(th)))  # noqa: E731
        h_given_z = -0.5 * (neg_ent(p_minus) + neg_ent(p_plus))  # H(X_l | Z, X_prev)
        assert h_given_z >= -math.log(m) + 1e-6  # strict: the densities are not uniform
        mix = lambda th: 0.5 * (p_minus(th) + p_plus(th))  # noqa: E731
        h_l = -neg_ent(mix)  # H(X_l | X_prev) = H(X_l)
        cmi = h_l - h_given_z
        assert 0 < cmi <= h_l + math.log(m)
        # left side: E[Z] = 0, E[Z | X_l = th] = (p_+ - p_-)/(p_+ + p_-)
        lhs = _quad(lambda th: mix(th) * ((p_plus(th) - p_minus(th)) / (p_plus(th) + p_minus(th))) ** 2)
        assert lhs <= theorem5_bound(1.0, cmi) + TOL
        assert theorem5_bound(1.0, cmi) <= theorem5_entropy_bound(1.0, h_l, math.log(m)) + TOL
    for w in (0.01, 0.3, 0.9):  # equality case: uniform densities on arcs, H(X_l | Z, X_prev) = -log M
        law = _two_arcs(w)
        assert abs(law["h_given_z"] - (-math.log(law["M"]))) < 1e-9


def _fair_bit_law(dl, B):
    """Step 7's law as atoms: X_prev constant, X_l a fair bit, Z = +-B with
    P(Z = B | X_l = 0) = 1/2 + delta, P(Z = B | X_l = 1) = 1/2 - delta. Returns
    {(x_l, z): probability}."""
    half = sp.Rational(1, 2)
    return {(0, B): half * (half + dl), (0, -B): half * (half - dl),
            (1, B): half * (half - dl), (1, -B): half * (half + dl)}


def _left_and_right(law, B):
    """E||E[Z|X_l] - E[Z|X_prev]||^2 and 2 B^2 I(Z; X_l | X_prev), from the atoms (X_prev constant)."""
    p_l = {a: sum(v for (x, _z), v in law.items() if x == a) for a in (0, 1)}
    p_z = {c: sum(v for (_x, z), v in law.items() if z == c) for c in (B, -B)}
    mean_z = sum(z * v for (_x, z), v in law.items())  # E[Z | X_prev] = E[Z]
    mean_given = {a: sum(z * v for (x, z), v in law.items() if x == a) / p_l[a] for a in (0, 1)}
    lhs = sum(p_l[a] * (mean_given[a] - mean_z) ** 2 for a in (0, 1))
    info = sum(v * sp.log(v / (p_l[x] * p_z[z])) for (x, z), v in law.items())
    return sp.simplify(lhs), 2 * B**2 * info


def test_step_7_constant_two_is_sharp():
    """On the fair-bit law, built as atoms: the left side is 4 B^2 delta^2 and the right side
    2 B^2 I with I = log 2 - h(1/2 + delta) = 2 delta^2 + O(delta^4), so their ratio -> 1 as
    delta -> 0. The bound holds for every delta in (0, 1/2): right - left vanishes at 0 and its
    derivative 2 B^2 g, g = log((1 + 2 delta)/(1 - 2 delta)) - 4 delta, is >= 0 (g(0) = 0,
    g' = 16 delta^2/(1 - 4 delta^2))."""
    dl, B = sp.symbols("delta B", positive=True)
    lhs, rhs = _left_and_right(_fair_bit_law(dl, B), B)
    assert sp.simplify(lhs - 4 * B**2 * dl**2) == 0
    entropy_form = 2 * B**2 * (sp.log(2) + (sp.Rational(1, 2) + dl) * sp.log(sp.Rational(1, 2) + dl)
                               + (sp.Rational(1, 2) - dl) * sp.log(sp.Rational(1, 2) - dl))
    # force=True merges the logs: every argument is positive for delta in (0, 1/2)
    assert sp.simplify(sp.logcombine(sp.expand(rhs - entropy_form), force=True)) == 0
    series = sp.series(rhs, dl, 0, 6).removeO()
    assert sp.expand(series - (4 * B**2 * dl**2 + sp.Rational(8, 3) * B**2 * dl**4)) == 0
    assert sp.limit(lhs / rhs, dl, 0) == 1
    slack = rhs - lhs
    g = sp.log(1 + 2 * dl) - sp.log(1 - 2 * dl) - 4 * dl  # = 2 (atanh(2 delta) - 2 delta)
    assert slack.subs(dl, 0) == 0 and g.subs(dl, 0) == 0
    assert sp.simplify(sp.diff(slack, dl) - 2 * B**2 * g) == 0
    assert sp.simplify(sp.diff(g, dl) - 16 * dl**2 / (1 - 4 * dl**2)) == 0  # >= 0 on (0, 1/2)
    for delta in (sp.Rational(1, 10), sp.Rational(1, 100)):  # the library's numbers on the same law
        law = _fair_bit_law(delta, 1)
        p = np.zeros((1, 2, 2))  # p[x_prev, x_l, z], z index 0 <-> Z = +1
        for (x, z), v in law.items():
            p[0, x, 0 if z == 1 else 1] = float(v)
        exact_lhs, exact_rhs = _left_and_right(law, 1)
        assert abs(conditional_mean_gap(p, np.array([[1.0], [-1.0]])) - float(exact_lhs)) < 1e-15
        assert abs(theorem5_bound(1.0, conditional_mutual_information(p, 2, 1, 0)) - float(exact_rhs)) < 1e-15
        assert exact_lhs < exact_rhs and float(exact_lhs / exact_rhs) > 1 - 2 * float(delta) ** 2


def _two_arcs(w):
    """Step 8's law, every quantity computed from its densities (quadrature, not formulas):
    Z = -1 or +1 (B = 1) with probability 1/2, X_prev constant, X_l | Z = -1 uniform on the arc
    [0, w] and X_l | Z = +1 on [pi, pi + w] (reference measure: arc length)."""
    p_minus = lambda th: (0.0 <= th <= w) / w  # noqa: E731
    p_plus = lambda th: (math.pi <= th <= math.pi + w) / w  # noqa: E731
    mix = lambda th: 0.5 * (p_minus(th) + p_plus(th))  # noqa: E731
    pieces = [(0.0, w), (w, math.pi), (math.pi, math.pi + w), (math.pi + w, 2 * math.pi)]

    def integral(f):
        return sum(integrate.quad(f, a, b, epsabs=1e-13, epsrel=1e-13)[0] for a, b in pieces)

    def xlogx(v):
        return v * math.log(v) if v > 0 else 0.0

    mean_z = lambda th: (p_plus(th) - p_minus(th)) / (p_plus(th) + p_minus(th)) if mix(th) > 0 else 0.0  # noqa: E731
    grid = np.linspace(0, 2 * math.pi, 100001)
    return {
        "mass": integral(mix),
        "h_given_z": -0.5 * (integral(lambda th: xlogx(p_minus(th))) + integral(lambda th: xlogx(p_plus(th)))),
        "h_l": -integral(lambda th: xlogx(mix(th))),  # = H(X_l | X_prev), X_prev constant
        "lhs": integral(lambda th: mix(th) * mean_z(th) ** 2),  # E[Z] = 0
        "M": max(max(p_minus(th), p_plus(th)) for th in grid),
    }


def test_step_8_the_paper_last_line_is_false():
    """On the two-arcs law (B = 1, w = 0.01): left side > 2 B^2 H(X_l|X_prev) + C (the paper's last
    line), and <= 2 B^2 (H + C) (the statement), with C = log M the bounded-density constant."""
    B = 1.0
    law = _two_arcs(0.01)
    assert abs(law["mass"] - 1.0) < 1e-9
    c = math.log(law["M"])
    assert law["h_given_z"] >= -c - 1e-9  # the hypothesis H(X_l | Z, X_prev) >= -C holds
    assert law["lhs"] > 2 * B**2 * law["h_l"] + c
    assert law["lhs"] <= theorem5_entropy_bound(B, law["h_l"], c)
    assert law["lhs"] <= theorem5_bound(B, law["h_l"] - law["h_given_z"]) + TOL  # via I = H - H(.|Z)
