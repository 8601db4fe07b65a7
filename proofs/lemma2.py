"""Lemma 2 (paper App. A.1): cosine distance and squared Euclidean distance of unit vectors.

Statement (true as stated). Let X, Y be random vectors with ||X|| = ||Y|| = 1 almost
surely and rho(x, y) = 1 - <x, y>/(||x|| ||y||). Then E||X - Y||^2 = 2 E[rho(X, Y)]
exactly; in particular E[rho(X, Y)] < eps/2 implies E||X - Y||^2 < eps.

Proof.
Step 1. ||x - y||^2 = ||x||^2 + ||y||^2 - 2<x, y> for all vectors (bilinearity).
Step 2. For unit vectors this is 2 - 2<x, y> = 2(1 - <x, y>/(||x|| ||y||)) = 2 rho(x, y).
Step 3. Take expectations (linearity): E||X - Y||^2 = 2 E[rho(X, Y)].
Step 4. Multiplying E[rho] < eps/2 by 2 > 0 keeps the strict inequality.
The identity is exact, so the lemma is tight for every law.

Code: ``skipit.theory.lemma2_mean_squared_distance``.
"""

import numpy as np
import sympy as sp
from hypothesis import given
from sympy.solvers.inequalities import solve_univariate_inequality

from skipit.theory import cosine_distance, lemma2_mean_squared_distance
from skipit.theory.testing import finite_pairs

x = sp.Matrix(sp.symbols("x1:4", real=True))
y = sp.Matrix(sp.symbols("y1:4", real=True))


def test_step_1_polarisation_identity():
    assert sp.expand((x - y).dot(x - y) - (x.dot(x) + y.dot(y) - 2 * x.dot(y))) == 0


def test_step_2_unit_vectors_give_twice_the_cosine_distance():
    nx, ny = sp.sqrt(x.dot(x)), sp.sqrt(y.dot(y))
    rho = 1 - x.dot(y) / (nx * ny)
    # on the unit sphere, substitute ||x|| = ||y|| = 1 through x.x = y.y = 1
    lhs = (x - y).dot(x - y)
    diff = sp.expand(lhs - 2 * rho.subs({nx: 1, ny: 1}))
    assert sp.simplify(diff.subs({x[0] ** 2: 1 - x[1] ** 2 - x[2] ** 2, y[0] ** 2: 1 - y[1] ** 2 - y[2] ** 2})) == 0
    rng = np.random.default_rng(0)
    u = rng.normal(size=(100, 3))
    v = rng.normal(size=(100, 3))
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    assert np.allclose(np.sum((u - v) ** 2, axis=1), 2 * cosine_distance(u, v), atol=1e-13)


@given(finite_pairs(dim=3, max_atoms=4))
def test_step_3_expectation_of_the_identity(pairs):
    assert abs(pairs.mean_squared_distance() - lemma2_mean_squared_distance(pairs.mean_cosine_distance())) < 1e-12


def _exact_finite_law():
    """Four rational unit vectors of R^3 and a joint pmf p[i, j] = P(X = v_i, Y = v_j), exact."""
    R = sp.Rational
    v = [sp.Matrix([R(3, 5), R(4, 5), 0]), sp.Matrix([0, 0, 1]), sp.Matrix([R(-2, 3), R(1, 3), R(2, 3)]),
         sp.Matrix([R(12, 13), 0, R(-5, 13)])]
    p = sp.Matrix([[R(1, 10), R(1, 20), 0, R(1, 20)], [R(1, 20), R(3, 20), R(1, 40), 0],
                   [0, R(1, 40), R(1, 5), R(1, 20)], [R(1, 20), 0, R(1, 20), R(1, 5)]])
    assert all(u.dot(u) == 1 for u in v) and sum(p) == 1
    return v, p


def test_step_4_strictness_is_preserved():
    """On an exact finite law: E||X - Y||^2 = 2 E[rho] in exact arithmetic, and the set of eps
    where the hypothesis E[rho] < eps/2 holds, solved for eps, is the set where the conclusion
    E||X - Y||^2 < eps holds: the open ray (2 E[rho], oo), boundary excluded from both."""
    v, p = _exact_finite_law()
    n = len(v)
    msd = sum(p[i, j] * (v[i] - v[j]).dot(v[i] - v[j]) for i in range(n) for j in range(n))
    mean_rho = sum(p[i, j] * (1 - v[i].dot(v[j]) / (sp.sqrt(v[i].dot(v[i])) * sp.sqrt(v[j].dot(v[j]))))
                   for i in range(n) for j in range(n))
    assert msd == 2 * mean_rho and mean_rho > 0  # exact rationals
    eps = sp.Symbol("eps", real=True)
    hypothesis = solve_univariate_inequality(mean_rho < eps / 2, eps, relational=False)
    conclusion = solve_univariate_inequality(msd < eps, eps, relational=False)
    assert hypothesis == conclusion == sp.Interval.open(2 * mean_rho, sp.oo)
    # the numeric path (cosine_distance, lemma2_mean_squared_distance) on the same law
    pts = np.array([[float(c) for c in u] for u in v])
    pf = np.array(p.tolist(), dtype=float)
    rho = cosine_distance(pts[:, None, :], pts[None, :, :])
    assert abs(lemma2_mean_squared_distance(float(np.sum(pf * rho))) - float(msd)) < 1e-14
