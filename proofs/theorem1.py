"""Theorem 1 (paper Sec. 3.2, proof App. A.2): geometric implies functional redundancy.

Statement (corrected, with a sharper constant). Let X_l, X_prev be unit-norm random
vectors, Z a square-integrable random vector, and suppose h(x, y) = E[Z | X_l = x,
X_prev = y] has a version defined on S x S (S containing the supports of X_l and
X_prev, so that h(x, x) is defined) which is alpha-Lipschitz in x and beta-Lipschitz in
y. If E[rho(X_l, X_prev)] <= eps/2, then

    E||E[Z|X_l] - E[Z|X_prev]||^2  <=  (alpha + beta)^2 * 2 E[rho]  <=  (alpha + beta)^2 eps
                                    <=  2(alpha^2 + beta^2) eps           (the paper's bound).

The paper's strict "<" holds when E[rho] < eps/2 and alpha + beta > 0; it fails for
alpha = beta = 0 (both sides 0). The paper's hypothesis "E[rho(X, Y)]" means
E[rho(X_l, X_prev)]. Its eq. (22) compares h with E[X_prev | X_l = x], a point of the
X-space, not a value of h; the step that follows from it is false (counterexample in
``tests/theory/test_errata_functional.py``). The repair is Step 3 below.

Proof. Write H = h(X_l, X_prev) and ||U||_2 = sqrt(E||U||^2) (the L2 norm of random vectors).
Step 1 (tower). sigma(X_l) is contained in sigma(X_l, X_prev), so
        E[Z|X_l] = E[E[Z|X_l, X_prev]|X_l] = E[H|X_l]; likewise E[Z|X_prev] = E[H|X_prev].
Step 2 (Minkowski). E[H|X_l] - E[H|X_prev] = (E[H|X_l] - H) + (H - E[H|X_prev]), so
        ||E[H|X_l] - E[H|X_prev]||_2 <= ||H - E[H|X_l]||_2 + ||H - E[H|X_prev]||_2.
        (The paper uses Lemma 1 here instead: the square is <= 2(first^2 + second^2).)
Step 3 (MMSE, corrected eq. 22-25). For any g, E||H - g(X_l)||^2 = E||H - E[H|X_l]||^2
        + E||E[H|X_l] - g(X_l)||^2 (Pythagoras: H - E[H|X_l] is orthogonal to every
        function of X_l). Take g(x) = h(x, x): then
        E||H - E[H|X_l]||^2 <= E||h(X_l, X_prev) - h(X_l, X_l)||^2 <= beta^2 E||X_prev - X_l||^2.
Step 4 (symmetric). Likewise E||H - E[H|X_prev]||^2 <= alpha^2 E||X_l - X_prev||^2
        with g(y) = h(y, y).
Step 5 (Lemma 2). E||X_l - X_prev||^2 = 2 E[rho] <= eps. Steps 2-4 give
        E||E[Z|X_l] - E[Z|X_prev]||^2 <= (alpha + beta)^2 * 2 E[rho].
Step 6 (comparison). 2(alpha^2 + beta^2) - (alpha + beta)^2 = (alpha - beta)^2 >= 0;
        the two constants agree iff alpha = beta.
Step 7 (tightness). Let s, s' be uniform signs with P(s = s') = (1 + r)/2,
        X_l = (cos th, s sin th), X_prev = (cos th, s' sin th), h(x, y) = alpha x_2 + beta y_2.
        Then the left side is (1 - r^2)(alpha^2 + beta^2 + 2 alpha beta r) sin^2 th and
        E||X_l - X_prev||^2 = 2(1 - r) sin^2 th; their ratio tends to (alpha + beta)^2 as
        r -> 1. So (alpha + beta)^2 cannot be lowered, and for alpha = beta neither can
        the paper's 2(alpha^2 + beta^2).

Code: ``theorem1_bound`` (paper), ``theorem1_bound_sharp``.
"""

import numpy as np
import sympy as sp
from hypothesis import assume, given

from skipit.theory import theorem1_bound, theorem1_bound_sharp
from skipit.theory.functional import SYMBOLIC
from skipit.theory.testing import LinearTask, finite_pairs, finite_triples, linear_tasks, theorem1_extremal_pairs

alpha, beta, r, th = sp.symbols("alpha beta r theta", nonnegative=True)
TOL = 1e-10


@given(finite_triples(dim=3, max_atoms=3, k=2, bound=2.0))
def test_step_1_tower_property(triple):
    pairs = triple.pairs
    # E[Z | X_l = xs[i]] computed from the joint law of (X_l, Z) directly
    joint = pairs.probs[:, :, None] * triple.cond  # P(X_l = i, X_prev = j, Z = m)
    e_z_given_l = np.einsum("ijm,mk->ik", joint, triple.zs) / joint.sum(axis=(1, 2))[:, None]
    f_l, f_prev = pairs.conditional_means(triple.h_values())
    assert np.allclose(e_z_given_l, f_l, atol=TOL)
    e_z_given_prev = np.einsum("ijm,mk->jk", joint, triple.zs) / joint.sum(axis=(0, 2))[:, None]
    assert np.allclose(e_z_given_prev, f_prev, atol=TOL)


def _l2(pairs, values):
    return float(np.sqrt(np.sum(pairs.probs * np.sum(values**2, axis=-1))))


@given(finite_pairs(dim=3, max_atoms=4), linear_tasks(dim=3, k=2))
def test_step_2_minkowski(pairs, task):
    H = task.values(pairs)
    f_l, f_prev = pairs.conditional_means(H)
    lhs = _l2(pairs, f_l[:, None, :] - f_prev[None, :, :])
    assert lhs <= _l2(pairs, H - f_l[:, None, :]) + _l2(pairs, H - f_prev[None, :, :]) + TOL


@given(finite_pairs(dim=3, max_atoms=4), linear_tasks(dim=3, k=2))
def test_step_3_and_4_mmse_with_the_diagonal_version_of_h(pairs, task):
    H = task.values(pairs)
    f_l, f_prev = pairs.conditional_means(H)
    g_l = pairs.xs @ (task.A + task.B).T + task.c  # h(x, x)
    g_prev = pairs.ys @ (task.A + task.B).T + task.c  # h(y, y)
    var_l = _l2(pairs, H - f_l[:, None, :]) ** 2
    to_g = _l2(pairs, H - g_l[:, None, :]) ** 2
    assert abs(to_g - (var_l + float(pairs.p_l @ np.sum((f_l - g_l) ** 2, axis=1)))) < TOL * (1 + to_g)
    msd = pairs.mean_squared_distance()
    assert to_g <= task.beta**2 * msd * (1 + 1e-9) + TOL
    var_prev = _l2(pairs, H - f_prev[None, :, :]) ** 2
    assert var_prev <= _l2(pairs, H - g_prev[None, :, :]) ** 2 + TOL
    assert _l2(pairs, H - g_prev[None, :, :]) ** 2 <= task.alpha**2 * msd * (1 + 1e-9) + TOL


@given(finite_pairs(dim=3, max_atoms=4), linear_tasks(dim=3, k=2))
def test_step_5_conclusion_with_lemma2(pairs, task):
    m = pairs.mean_cosine_distance()
    assume(m > 1e-9)
    assert abs(pairs.mean_squared_distance() - 2 * m) < TOL
    lhs = pairs.functional_redundancy(task.values(pairs))
    assert lhs <= theorem1_bound_sharp(task.alpha, task.beta, 2 * m) * (1 + 1e-9) + TOL


def test_step_6_paper_constant_minus_sharp_constant_is_a_square():
    e = sp.Symbol("eps", positive=True)
    a, b = sp.Symbol("alpha", nonnegative=True), sp.Symbol("beta", nonnegative=True)
    gap = SYMBOLIC["theorem1_bound"] - SYMBOLIC["theorem1_bound_sharp"]
    assert sp.factor(gap) == sp.factor(e * (a - b) ** 2)


def test_step_7_extremal_law_in_closed_form():
    signs = (1, -1)
    P = {(s1, s2): (1 + r * s1 * s2) / 4 for s1 in signs for s2 in signs}
    h = {(s1, s2): (alpha * s1 + beta * s2) * sp.sin(th) for s1 in signs for s2 in signs}
    f_l = {s1: sum(P[s1, s2] * h[s1, s2] for s2 in signs) * 2 for s1 in signs}
    f_prev = {s2: sum(P[s1, s2] * h[s1, s2] for s1 in signs) * 2 for s2 in signs}
    lhs = sum(P[k] * (f_l[k[0]] - f_prev[k[1]]) ** 2 for k in P)
    msd = sum(P[k] * ((k[0] - k[1]) * sp.sin(th)) ** 2 for k in P)
    assert sp.simplify(lhs - (1 - r**2) * (alpha**2 + beta**2 + 2 * alpha * beta * r) * sp.sin(th) ** 2) == 0
    assert sp.simplify(msd - 2 * (1 - r) * sp.sin(th) ** 2) == 0
    assert sp.simplify(sp.limit(sp.simplify(lhs / msd), r, 1) - (alpha + beta) ** 2) == 0
    # and numerically, through the library's exact finite law
    pairs = theorem1_extremal_pairs(0.3, 0.9999)
    task = LinearTask(np.array([[0.0, 2.0]]), np.array([[0.0, 0.5]]), np.zeros(1))
    ratio = pairs.functional_redundancy(task.values(pairs)) / theorem1_bound_sharp(2.0, 0.5, 2 * pairs.mean_cosine_distance())
    assert 0.9998 < ratio <= 1.0 + 1e-12
    eq = LinearTask(np.array([[0.0, 1.0]]), np.array([[0.0, 1.0]]), np.zeros(1))
    ratio = pairs.functional_redundancy(eq.values(pairs)) / theorem1_bound(1.0, 1.0, 2 * pairs.mean_cosine_distance())
    assert 0.9998 < ratio <= 1.0 + 1e-12


def test_step_8_strict_inequality_needs_alpha_plus_beta_positive():
    assert theorem1_bound(0.0, 0.0, 0.1) == 0.0  # LHS = 0 for constant Z: 0 < 0 is false
    assert theorem1_bound_sharp(1e-3, 0.0, 0.1) > 0.0
