"""Lemma 1 (paper App. A.1): the squared triangle inequality.

Statement (true as stated; sharper intermediate form added). Let (X, d) be a metric
space and x, y, z in X. Then

    d(x, y)^2  <=  (d(x, z) + d(z, y))^2  <=  2 d(x, z)^2 + 2 d(z, y)^2.

Proof. Write a = d(x, z) and b = d(z, y), both >= 0.

Step 1. The triangle inequality gives d(x, y) <= a + b. Both sides are >= 0 and
        squaring is increasing on [0, inf), so d(x, y)^2 <= (a + b)^2.
Step 2. 2a^2 + 2b^2 - (a + b)^2 = (a - b)^2 (an identity), which is >= 0, so
        (a + b)^2 <= 2a^2 + 2b^2.
Step 3. Equality in Step 2 iff a = b, and in Step 1 iff z lies "between" x and y;
        the midpoint of a segment achieves both, so the constant 2 cannot be lowered.

Code: ``skipit.theory.lemma1_bound`` (right side) and ``lemma1_bound_sharp`` (middle).
"""

import numpy as np
import sympy as sp

from skipit.theory import lemma1_bound, lemma1_bound_sharp

a, b = sp.symbols("a b", nonnegative=True)


def _adversarial_triples():
    rng = np.random.default_rng(0)
    e = np.array([1.0, 0.0, 0.0])
    fixed = [(0 * e, 2 * e, e), (0 * e, 0 * e, e), (e, e, e), (0 * e, 2 * e, 5 * e), (0 * e, 1e-9 * e, 0.5e-9 * e)]
    return fixed + [tuple(rng.normal(size=(3, 3)) * s) for s in (1e-6, 1.0, 1e6) for _ in range(50)]


METRICS = (lambda u, v: float(np.linalg.norm(u - v)),
           lambda u, v: float(np.abs(u - v).sum()),
           lambda u, v: float(not np.array_equal(u, v)))


def test_step_1_triangle_inequality_squared():
    for d in METRICS:
        for x, y, z in _adversarial_triples():
            assert d(x, y) ** 2 <= lemma1_bound_sharp(d(x, z), d(z, y)) * (1 + 1e-12)


def test_step_2_identity_two_squares_minus_square_of_sum():
    assert sp.expand(2 * a**2 + 2 * b**2 - (a + b) ** 2 - (a - b) ** 2) == 0
    assert sp.simplify(lemma1_expr() - 2 * a**2 - 2 * b**2) == 0  # the code uses this expression


def lemma1_expr():
    from skipit.theory.lemmas import SYMBOLIC
    return SYMBOLIC["lemma1_bound"].subs({sp.Symbol("d_xz", nonnegative=True): a,
                                          sp.Symbol("d_zy", nonnegative=True): b})


def test_step_3_midpoint_attains_both_inequalities():
    x, z, y = np.zeros(2), np.array([0.5, 0.0]), np.array([1.0, 0.0])
    d = METRICS[0]
    assert d(x, y) ** 2 == lemma1_bound_sharp(d(x, z), d(z, y)) == lemma1_bound(d(x, z), d(z, y))
