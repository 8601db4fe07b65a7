"""Theorem 1 (paper Sec. 3.2, proof App. A.2): geometric implies functional redundancy.

Statement (corrected, with a sharper constant). Let X_l, X_prev be unit-norm random
vectors, Z a square-integrable random vector, and suppose h(x, y) = E[Z | X_l = x,
X_prev = y] has a version defined on S x S (S containing the supports of X_l and
X_prev, so that h(x, x) is defined) which is alpha-Lipschitz in x and beta-Lipschitz in
y. If E[rho(X_l, X_prev)] <= eps/2, then

    E||E[Z|X_l] - E[Z|X_prev]||^2  <=  (alpha + beta)^2 * 2 E[rho]  <=  (alpha + beta)^2 eps
                                    <=  2(alpha^2 + beta^2) eps           (the paper's bound).

The constant (alpha + beta)^2 is a supremum that no law attains: whenever alpha + beta > 0
(and eps > 0) the inequality is strict, E||E[Z|X_l] - E[Z|X_prev]||^2 < (alpha + beta)^2 eps,
even when E[rho] = eps/2 (Step 9). Hence the paper's strict "<" holds whenever
alpha + beta > 0; it fails only for alpha = beta = 0 (both sides 0, Step 8). The paper's hypothesis "E[rho(X, Y)]" means
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
        the paper's 2(alpha^2 + beta^2). For r < 1 the ratio is below 1:
        2(alpha + beta)^2 - (1 + r)(alpha^2 + beta^2 + 2 alpha beta r)
        = (1 - r)(alpha^2 + beta^2 + 2 alpha beta (2 + r)) > 0.
Step 8 (alpha = beta = 0). Then h is constant, E[Z|X_l] = E[Z|X_prev] = h and both sides
        are 0: the paper's strict "<" is false, "<=" holds with equality.
Step 9 (no law attains the supremum). Let alpha + beta > 0, eps > 0 and suppose equality
        E||f - g||^2 = (alpha + beta)^2 eps, f = E[Z|X_l], g = E[Z|X_prev]. Every step above
        is then an equality; with D = ||X_l - X_prev||_2, 2E[rho] = D^2 = eps > 0 and, for
        A = f(X_l) - H and B = H - g(X_prev) (so f - g = A + B), ||A + B|| = ||A|| + ||B||,
        ||A||_2 = beta D and ||B||_2 = alpha D.
        (a) A and B both nonzero. Equality in Minkowski in the Hilbert space L2 gives A = cB,
            c > 0. A is orthogonal to every function of X_l, B to every function of X_prev
            (Step 3), so E<A, f> = E<B, g> = 0 and
            E||f - g||^2 = E<A + B, f - g> = E<B, f> - E<A, g> = E<A, f>/c - c E<B, g> = 0,
            contradicting E||f - g||^2 = (alpha + beta)^2 eps > 0.
        (b) B = 0. Then alpha D = 0, so alpha = 0, beta > 0, and h(x, y) = k(y) with k
            beta-Lipschitz. Equality in Step 3 needs E[k(X_prev) | X_l] = k(X_l) and
            ||k(X_prev) - k(X_l)|| = beta ||X_prev - X_l|| a.s. Given X_l = x, let Y, Y' be two
            independent draws of X_prev, m = E[Y]. Then
            2 beta^2 E||Y - x||^2 = 2 E||k(Y) - k(x)||^2 = E||k(Y) - k(Y')||^2
                                  <= beta^2 E||Y - Y'||^2 = 2 beta^2 (1 - ||m||^2),
            and with ||x|| = ||Y|| = 1, E||Y - x||^2 = 2 - 2<x, m>, so
            ||m - x||^2 = (2 - 2<x, m>) - (1 - ||m||^2) <= 0: m = x, hence E<x, Y> = 1 and
            Y = x a.s. (the sphere is strictly convex). So X_prev = X_l a.s. and D = 0,
            a contradiction.
        (c) A = 0 is (b) with the roles of X_l and X_prev exchanged.
        So equality is impossible: the bound is strict, and by Step 7 the constant is still
        the least possible. (Without the unit-norm constraint (b) can be attained: X_l = 0,
        X_prev = +-1, h(x, y) = y.)

Code: ``theorem1_bound`` (paper), ``theorem1_bound_sharp``.
"""

import numpy as np
import sympy as sp
from hypothesis import assume, given
from hypothesis import strategies as st

from skipit.theory import theorem1_bound, theorem1_bound_sharp
from skipit.theory.functional import SYMBOLIC
from skipit.theory.testing import (
    LinearTask, finite_pairs, finite_probabilities, finite_triples, linear_tasks, nonlinear_tasks, theorem1_extremal_pairs,
    unit_vectors,
)

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


def _diagonal(task, pairs):
    """(h(xs[i], xs[i]), h(ys[j], ys[j])): the version of h on the diagonal, evaluated directly."""
    if isinstance(task, LinearTask):
        return pairs.xs @ (task.A + task.B).T + task.c, pairs.ys @ (task.A + task.B).T + task.c
    return task.h(pairs.xs, pairs.xs), task.h(pairs.ys, pairs.ys)


@given(finite_pairs(dim=3, max_atoms=4), st.one_of(linear_tasks(dim=3, k=2), nonlinear_tasks(dim=3)))
def test_step_3_and_4_mmse_with_the_diagonal_version_of_h(pairs, task):
    """Pythagoras and the comparison with h(X_l, X_l), for linear h and for non-separable non-linear h."""
    H = task.values(pairs)
    f_l, f_prev = pairs.conditional_means(H)
    g_l, g_prev = _diagonal(task, pairs)
    var_l = _l2(pairs, H - f_l[:, None, :]) ** 2
    to_g = _l2(pairs, H - g_l[:, None, :]) ** 2
    assert abs(to_g - (var_l + float(pairs.p_l @ np.sum((f_l - g_l) ** 2, axis=1)))) < TOL * (1 + to_g)
    msd = pairs.mean_squared_distance()
    assert to_g <= task.beta**2 * msd * (1 + 1e-9) + TOL
    var_prev = _l2(pairs, H - f_prev[None, :, :]) ** 2
    assert var_prev <= _l2(pairs, H - g_prev[None, :, :]) ** 2 + TOL
    assert _l2(pairs, H - g_prev[None, :, :]) ** 2 <= task.alpha**2 * msd * (1 + 1e-9) + TOL


@given(finite_pairs(dim=3, max_atoms=4), st.one_of(linear_tasks(dim=3, k=2), nonlinear_tasks(dim=3)))
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
    # and numerically, through the library's exact finite law: the ratio approaches 1 as r -> 1
    # but stays strictly below it (Step 9: the supremum is not attained)
    task = LinearTask(np.array([[0.0, 2.0]]), np.array([[0.0, 0.5]]), np.zeros(1))
    eq = LinearTask(np.array([[0.0, 1.0]]), np.array([[0.0, 1.0]]), np.zeros(1))
    for corr, closest in ((0.9, 0.85), (0.99, 0.99), (0.9999, 0.9998)):
        pairs = theorem1_extremal_pairs(0.3, corr)
        eps = 2 * pairs.mean_cosine_distance()
        sharp = pairs.functional_redundancy(task.values(pairs)) / theorem1_bound_sharp(2.0, 0.5, eps)
        paper = pairs.functional_redundancy(eq.values(pairs)) / theorem1_bound(1.0, 1.0, eps)
        assert closest < sharp and 1.0 - sharp > 0.0
        assert closest < paper and 1.0 - paper > 0.0


def test_step_7_ratio_below_one_for_every_r_below_one():
    gap = 2 * (alpha + beta) ** 2 - (1 + r) * (alpha**2 + beta**2 + 2 * alpha * beta * r)
    assert sp.expand(gap - (1 - r) * (alpha**2 + beta**2 + 2 * alpha * beta * (2 + r))) == 0


@given(finite_triples(dim=3, max_atoms=3, k=2, bound=2.0), st.data())
def test_step_8_alpha_beta_zero_both_sides_are_zero(triple, data):
    """Z independent of (X_l, X_prev): h is the constant E[Z] (alpha = beta = 0). The left side,
    computed from the joint law, is 0, and so is the bound: equality, so the paper's "<" fails."""
    pairs = triple.pairs
    law_z = data.draw(finite_probabilities(triple.zs.shape[0]))
    joint = pairs.probs[:, :, None] * law_z[None, None, :]  # P(X_l = i, X_prev = j, Z = m)
    cell = pairs.probs[:, :, None] > 0  # on null cells h's version is free: take E[Z] there too
    h = np.divide(np.einsum("ijm,mk->ijk", joint, triple.zs), pairs.probs[:, :, None],
                  out=np.broadcast_to(law_z @ triple.zs, pairs.probs.shape + (triple.zs.shape[1],)).copy(), where=cell)
    lhs = pairs.functional_redundancy(h)
    assert lhs <= 1e-28  # zero up to rounding; the exact law below compares it with the bound


def test_step_8_exact_law_with_z_independent_gives_equality_at_zero():
    """Exact rationals: X_l, X_prev on rational points of S^2, Z independent of them. h, its
    Lipschitz constants over the atoms, f = E[Z|X_l], g = E[Z|X_prev], the left side and
    eps = 2 E[rho] are all computed from the law; both forms of the bound are then 0 = the left
    side, so "<" fails and "<=" holds with equality."""
    R = sp.Rational
    xs = [sp.Matrix([R(3, 5), R(4, 5), 0]), sp.Matrix([0, R(5, 13), R(12, 13)])]
    ys = [sp.Matrix([R(2, 3), R(1, 3), R(2, 3)]), sp.Matrix([1, 0, 0])]
    p_xy = {(0, 0): R(1, 3), (0, 1): R(1, 6), (1, 0): R(1, 8), (1, 1): R(3, 8)}
    zs, p_z = [sp.Matrix([1, -2]), sp.Matrix([R(1, 2), 3])], [R(2, 7), R(5, 7)]
    joint = {(i, j, m): p_xy[(i, j)] * p_z[m] for (i, j) in p_xy for m in range(2)}  # Z independent

    def mean_z(where):
        mass = sum(v for key, v in joint.items() if where(*key))
        return sum((v * zs[m] for (i, j, m), v in joint.items() if where(i, j, m)), sp.zeros(2, 1)) / mass

    h = {(i, j): mean_z(lambda a, b, _m, i=i, j=j: (a, b) == (i, j)) for (i, j) in p_xy}
    f = [mean_z(lambda a, _b, _m, i=i: a == i) for i in range(2)]
    g = [mean_z(lambda _a, b, _m, j=j: b == j) for j in range(2)]
    alpha = max(sp.sqrt((h[(i, 0)] - h[(i, 1)]).dot(h[(i, 0)] - h[(i, 1)]) / (ys[0] - ys[1]).dot(ys[0] - ys[1]))
                for i in range(2))
    beta = max(sp.sqrt((h[(0, j)] - h[(1, j)]).dot(h[(0, j)] - h[(1, j)]) / (xs[0] - xs[1]).dot(xs[0] - xs[1]))
               for j in range(2))
    lhs = sum(v * (f[i] - g[j]).dot(f[i] - g[j]) for (i, j), v in p_xy.items())
    eps = 2 * sum(v * (1 - xs[i].dot(ys[j])) for (i, j), v in p_xy.items())
    assert alpha == 0 and beta == 0 and eps > 0
    for name in ("theorem1_bound", "theorem1_bound_sharp"):
        form = SYMBOLIC[name]
        names = {s.name: s for s in form.free_symbols}
        bound = form.subs({names["alpha"]: alpha, names["beta"]: beta, names["eps"]: eps})
        assert lhs == bound == 0 and not lhs < bound
    assert theorem1_bound(0.0, 0.0, float(eps)) == theorem1_bound_sharp(0.0, 0.0, float(eps)) == float(lhs)


@given(finite_pairs(dim=3, max_atoms=4), st.one_of(linear_tasks(dim=3, k=2), nonlinear_tasks(dim=3)))
def test_step_9a_orthogonality_gives_the_cross_term_identity(pairs, task):
    """E<A, f> = E<B, g> = 0 and E||f - g||^2 = E<B, f> - E<A, g>, A = f(X_l) - H, B = H - g(X_prev)."""
    H = task.values(pairs)
    f, g = pairs.conditional_means(H)
    A, B = f[:, None, :] - H, H - g[None, :, :]

    def inner(U, V):
        return float(np.sum(pairs.probs * np.sum(U * V, axis=-1)))

    F, G = np.broadcast_to(f[:, None, :], H.shape), np.broadcast_to(g[None, :, :], H.shape)
    scale = 1.0 + inner(H, H)
    assert abs(inner(A, F)) <= TOL * scale and abs(inner(B, G)) <= TOL * scale
    assert abs(pairs.expected_squared_difference(f, g) - (inner(B, F) - inner(A, G))) <= TOL * scale


def test_step_9b_sphere_algebra():
    """(2 - 2<x, m>) - (1 - ||m||^2) - ||m - x||^2 = 1 - ||x||^2, which is 0 on the sphere."""
    x = sp.symbols("x1:4", real=True)
    m = sp.symbols("m1:4", real=True)
    dot = lambda u, v: sum(ui * vi for ui, vi in zip(u, v))  # noqa: E731
    diff = [mi - xi for mi, xi in zip(m, x)]
    assert sp.expand((2 - 2 * dot(x, m)) - (1 - dot(m, m)) - dot(diff, diff) - (1 - dot(x, x))) == 0


@given(finite_probabilities(4), st.lists(unit_vectors(3), min_size=4, max_size=4), unit_vectors(3),
       nonlinear_tasks(dim=3))
def test_step_9b_independent_copies_and_the_mean_on_the_sphere(p, ys, x, task):
    """For a finite law of Y on the sphere and unit x: E||k(Y) - k(Y')||^2 = 2 E||k(Y) - E k(Y)||^2,
    E||Y - Y'||^2 = 2(1 - ||m||^2) and E||Y - x||^2 = 2 - 2<x, m>, m = E[Y]."""
    Y = np.array(ys)
    k = task.h(Y, Y)  # any function of Y
    pair = p[:, None] * p[None, :]
    kk = np.sum((k[:, None, :] - k[None, :, :]) ** 2, axis=-1)
    assert abs(np.sum(pair * kk) - 2 * p @ np.sum((k - p @ k) ** 2, axis=-1)) <= TOL * (1 + np.sum(pair * kk))
    m = p @ Y
    assert abs(np.sum(pair * np.sum((Y[:, None] - Y[None]) ** 2, axis=-1)) - 2 * (1 - m @ m)) <= TOL
    assert abs(p @ np.sum((Y - x) ** 2, axis=1) - (2 - 2 * x @ m)) <= TOL
