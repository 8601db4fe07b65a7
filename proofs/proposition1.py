"""Proposition 1 (paper Sec. 3.4, proof App. A.2): proximal implies geometric redundancy.

Statement (corrected for the range of the distance). Let D = rho(X, Y) with
0 <= D <= R almost surely, t in [0, R) and eps > 0. Then

    E[D]  <=  t + (R - t) P[D > t],

so P[D > t] < (eps - t)/(R - t) implies E[D] < eps. The paper states R = 1, which is
true, but applies it to the cosine distance, whose range is [0, 2]: there R = 2 is
needed, and the paper's threshold (eps - t)/(1 - t) is false (Step 5). Since
Definition 2 gives P[D >= t] < eps_p and P[D > t] <= P[D >= t], proximal redundancy
(t, eps_p) implies geometric redundancy with eps = t + (R - t) eps_p.

Proof.
Step 1. Tail integration: for 0 <= D <= R, E[D] = int_0^R P[D > s] ds.
Step 2. Split at t. On [0, t] the integrand is <= 1, so that part is <= t. On [t, R]
        the survival function s -> P[D > s] is non-increasing, so that part is
        <= (R - t) P[D > t].
Step 3. If P[D > t] < (eps - t)/(R - t), multiply by R - t > 0 (strictness kept):
        (R - t) P[D > t] < eps - t, so E[D] < t + (eps - t) = eps.
Step 4. Sharp: the law D = R with probability p, D = t otherwise, has
        E[D] = t + (R - t) p and P[D > t] = p (for t < R): Steps 1-2 are equalities.
Step 5. With R = 2 and the paper's threshold: t = 0.5, eps = 0.75 give threshold 0.5;
        the law D = 2 w.p. 0.49, D = 0 otherwise has P[D > t] = 0.49 < 0.5 but
        E[D] = 0.98 > 0.75.

Code: ``proposition1_tail_threshold`` (R = 1), ``proposition1_tail_threshold_bounded``,
``proposition1_mean_bound``.
"""

import numpy as np
import sympy as sp

from skipit.theory import (
    proposition1_mean_bound,
    proposition1_tail_threshold,
    proposition1_tail_threshold_bounded,
)
from skipit.theory.functional import SYMBOLIC

t, R, eps, p, s = sp.symbols("t rho_max eps p s", positive=True)


def _laws(R_value):
    rng = np.random.default_rng(3)
    laws = [(np.array([0.0, R_value]), np.array([0.5, 0.5])), (np.array([R_value]), np.array([1.0])),
            (np.array([0.0]), np.array([1.0]))]
    for k in (1, 2, 5, 20):
        for _ in range(25):
            w = rng.random(k)
            laws.append((rng.random(k) * R_value, w / w.sum()))
    return laws


def _survival_integral(values, probs, lo, hi):
    """int_lo^hi P[D > s] ds for a finite law, exactly: sum_i p_i |[lo, hi] cap [0, v_i)|."""
    return float(probs @ np.clip(np.minimum(values, hi) - lo, 0.0, None))


def test_step_1_tail_integration_formula():
    for R_value in (1.0, 2.0):
        for values, probs in _laws(R_value):
            assert abs(_survival_integral(values, probs, 0.0, R_value) - probs @ values) < 1e-12
    v = sp.Symbol("v", positive=True)  # one atom: int_0^R 1{s < v} ds = v
    assert sp.integrate(sp.Piecewise((1, s < v), (0, True)), (s, 0, R)).subs(R, 2).subs(v, sp.Rational(3, 4)) \
        == sp.Rational(3, 4)


def test_step_2_split_at_t():
    for R_value in (1.0, 2.0):
        for values, probs in _laws(R_value):
            for t_value in (0.0, 0.05, R_value / 2, R_value * 0.999):
                below = _survival_integral(values, probs, 0.0, t_value)
                above = _survival_integral(values, probs, t_value, R_value)
                tail = min(1.0, float(probs @ (values > t_value)))
                assert below <= t_value + 1e-12
                assert above <= (R_value - t_value) * tail + 1e-12
                assert probs @ values <= proposition1_mean_bound(t_value, tail, R_value) + 1e-12


def test_step_3_threshold_gives_the_mean_bound():
    bound = t + (R - t) * SYMBOLIC["proposition1_tail_threshold_bounded"].subs(
        {sp.Symbol("t", nonnegative=True): t, sp.Symbol("eps", positive=True): eps,
         sp.Symbol("rho_max", positive=True): R})
    assert sp.simplify(bound - eps) == 0
    assert proposition1_tail_threshold_bounded(0.3, 0.8, 1.0) == proposition1_tail_threshold(0.3, 0.8)


def test_step_4_two_point_law_attains_the_bound():
    mean = (1 - p) * t + p * R
    assert sp.expand(mean - (t + (R - t) * p)) == 0
    for t_value, p_value in [(0.0, 0.3), (0.05, 0.01), (1.5, 0.9)]:
        assert abs((1 - p_value) * t_value + 2 * p_value - proposition1_mean_bound(t_value, p_value, 2.0)) < 1e-15


def test_step_5_paper_threshold_fails_on_the_cosine_range():
    t_value, eps_value, p_value = 0.5, 0.75, 0.49
    assert p_value < proposition1_tail_threshold(t_value, eps_value) == 0.5
    assert p_value * 2.0 > eps_value
    assert p_value > proposition1_tail_threshold_bounded(t_value, eps_value, 2.0)
