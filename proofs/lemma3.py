"""Lemma 3 (paper App. A.1): the three-term squared triangle inequality.

Statement (true as stated; sharper intermediate form added). In a real inner-product
space, for all a, b, c:

    ||a + b + c||^2  <=  (||a|| + ||b|| + ||c||)^2  <=  3(||a||^2 + ||b||^2 + ||c||^2).

Proof.
Step 1. Expand: ||a+b+c||^2 = ||a||^2 + ||b||^2 + ||c||^2 + 2<a,b> + 2<b,c> + 2<a,c>.
Step 2. Hence 3(||a||^2+||b||^2+||c||^2) - ||a+b+c||^2 = ||a-b||^2 + ||b-c||^2 + ||a-c||^2 >= 0
        (the paper's proof); equality iff a = b = c.
Step 3 (sharper). The triangle inequality gives ||a+b+c|| <= p + q + r with p, q, r the
        norms; squaring (both sides >= 0) gives the middle term, attained when a, b, c are
        positively collinear.
Step 4. 3(p^2+q^2+r^2) - (p+q+r)^2 = (p-q)^2 + (q-r)^2 + (p-r)^2 >= 0, so the middle
        term never exceeds the paper's; equality iff p = q = r.

Code: ``skipit.theory.lemma3_bound`` and ``lemma3_bound_sharp`` (arguments: squared norms).
"""

import numpy as np
import sympy as sp

from skipit.theory import lemma3_bound, lemma3_bound_sharp
from skipit.theory.lemmas import SYMBOLIC

A, B, C = (sp.Matrix(sp.symbols(f"{n}1:4", real=True)) for n in "abc")
p, q, r = sp.symbols("p q r", nonnegative=True)


def _sq(v):
    return v.dot(v)


def test_step_1_expansion():
    lhs = _sq(A + B + C)
    rhs = _sq(A) + _sq(B) + _sq(C) + 2 * A.dot(B) + 2 * B.dot(C) + 2 * A.dot(C)
    assert sp.expand(lhs - rhs) == 0


def test_step_2_gap_is_a_sum_of_squares():
    gap = 3 * (_sq(A) + _sq(B) + _sq(C)) - _sq(A + B + C)
    assert sp.expand(gap - (_sq(A - B) + _sq(B - C) + _sq(A - C))) == 0


def test_step_3_triangle_inequality_on_adversarial_vectors():
    rng = np.random.default_rng(1)
    cases = [rng.normal(size=(3, 4)) * s for s in (1e-8, 1.0, 1e8) for _ in range(40)]
    u = rng.normal(size=4)
    cases += [np.array([u, u, u]), np.array([u, 2 * u, 3 * u]), np.array([u, -u, u]), np.zeros((3, 4))]
    for a, b, c in cases:
        lhs = float(np.sum((a + b + c) ** 2))
        assert lhs <= lemma3_bound_sharp(a @ a, b @ b, c @ c) * (1 + 1e-12) + 1e-300
    # positively collinear vectors attain the middle term
    attained = float(np.sum((u + 2 * u + 3 * u) ** 2))
    assert abs(attained - lemma3_bound_sharp(u @ u, 4 * u @ u, 9 * u @ u)) <= 1e-12 * attained


def test_step_4_sharp_form_never_exceeds_the_papers():
    assert sp.expand(3 * (p**2 + q**2 + r**2) - (p + q + r) ** 2 - ((p - q) ** 2 + (q - r) ** 2 + (p - r) ** 2)) == 0
    s = {sp.Symbol(n, nonnegative=True): v**2 for n, v in zip(("a_sq", "b_sq", "c_sq"), (p, q, r))}
    assert sp.simplify(SYMBOLIC["lemma3_bound_sharp"].subs(s) - (p + q + r) ** 2) == 0
    assert sp.simplify(SYMBOLIC["lemma3_bound"].subs(s) - 3 * (p**2 + q**2 + r**2)) == 0
    # equality iff the sum of squares vanishes, p = q = r: three equal vectors attain both forms
    gap = SYMBOLIC["lemma3_bound"].subs(s) - SYMBOLIC["lemma3_bound_sharp"].subs(s)
    assert sp.simplify(gap.subs({q: p, r: p})) == 0
    u = np.array([1.0, -2.0, 2.0])
    attained = float(np.sum((u + u + u) ** 2))
    assert lemma3_bound(u @ u, u @ u, u @ u) == lemma3_bound_sharp(u @ u, u @ u, u @ u) == attained
