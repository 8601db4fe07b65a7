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

t, R, eps, p = sp.symbols("t rho_max eps p", positive=True)


def _laws(R_value):
    rng = np.random.default_rng(3)
    laws = [(np.array([0.0, R_value]), np.array([0.5, 0.5])), (np.array([R_value]), np.array([1.0])),
            (np.array([0.0]), np.array([1.0]))]
    for k in (1, 2, 5, 20):
        for _ in range(25):
            w = rng.random(k)
            laws.append((rng.random(k) * R_value, w / w.sum()))
    return laws


def _exact_laws():
    """Finite laws of D on [0, R] with rational atoms, as (R, [(value, probability), ...])."""
    R_ = sp.Rational
    return [(1, [(R_(0), R_(1, 2)), (R_(1), R_(1, 2))]),
            (2, [(R_(1, 3), R_(1, 5)), (R_(3, 4), R_(1, 2)), (R_(7, 4), R_(3, 10))]),
            (2, [(R_(2), R_(49, 100)), (R_(0), R_(51, 100))]),
            (2, [(R_(1, 10), R_(1, 7)), (R_(1, 10), R_(2, 7)), (R_(19, 10), R_(4, 7))])]


def _exact_survival_integral(atoms, lo, hi):
    """int_lo^hi P[D > s] ds for rational atoms [(value, probability), ...], exactly: s -> P[D > s]
    is constant on [a, b) between consecutive breakpoints (lo, hi and the atoms between), where
    it equals P[D > a]."""
    cuts = sorted({lo, hi} | {v for v, _ in atoms if lo < v < hi})
    return sum((b - a) * sum(pr for v, pr in atoms if v > a) for a, b in zip(cuts, cuts[1:]))


def _survival_integral(values, probs, lo, hi):
    """int_lo^hi P[D > s] ds for a finite law, exactly: sum_i p_i |[lo, hi] cap [0, v_i)|."""
    return float(probs @ np.clip(np.minimum(values, hi) - lo, 0.0, None))


def test_step_1_tail_integration_formula():
    for R_value in (1.0, 2.0):
        for values, probs in _laws(R_value):
            assert abs(_survival_integral(values, probs, 0.0, R_value) - probs @ values) < 1e-12
    for R_value, atoms in _exact_laws():  # the same on rational atoms, exactly
        assert _exact_survival_integral(atoms, 0, R_value) == sum(pr * v for v, pr in atoms)


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


def _mean_and_tail(atoms, threshold):
    """E[D] and P[D > threshold] of a finite law given as [(value, probability), ...]."""
    return (sum(pr * v for v, pr in atoms),
            sum(pr for v, pr in atoms if sp.simplify(v - threshold).is_positive))


def test_step_4_two_point_law_attains_the_bound():
    """D = R w.p. p, D = t otherwise (t < R, written R = t + r with r > 0): the mean and the tail,
    computed from the atoms, make the bound an equality; so do both halves of Step 2."""
    r = sp.Symbol("r", positive=True)
    atoms = [(t + r, p), (t, 1 - p)]
    mean, tail = _mean_and_tail(atoms, t)
    assert tail == p
    bound = SYMBOLIC["proposition1_mean_bound"]
    names = {sym.name: sym for sym in bound.free_symbols}
    assert sp.expand(mean - bound.subs({names["t"]: t, names["tail_prob"]: tail, names["rho_max"]: t + r})) == 0
    for t_value, r_value, p_value in [(0, sp.Rational(2), sp.Rational(3, 10)), (sp.Rational(1, 20), sp.Rational(39, 20),
                                      sp.Rational(1, 100)), (sp.Rational(3, 2), sp.Rational(1, 2), sp.Rational(9, 10))]:
        at = {t: t_value, r: r_value, p: p_value}
        law = [(v.subs(at), pr.subs(at)) for v, pr in atoms]
        assert _exact_survival_integral(law, 0, t_value) == t_value  # [0, t]: integrand 1
        assert _exact_survival_integral(law, t_value, t_value + r_value) == r_value * p_value
        assert abs(float(mean.subs(at)) - proposition1_mean_bound(float(t_value), float(p_value), 2.0)) < 1e-15


def test_step_5_paper_threshold_fails_on_the_cosine_range():
    """D = 2 w.p. 49/100, 0 otherwise (a cosine distance law: antipodal or equal points), t = 1/2,
    eps = 3/4: the paper's threshold (eps - t)/(1 - t) admits it, its mean exceeds eps, and the
    corrected threshold (eps - t)/(R - t) with R = 2 rejects it; exact rationals throughout."""
    t_value, eps_value = sp.Rational(1, 2), sp.Rational(3, 4)
    atoms = [(sp.Integer(2), sp.Rational(49, 100)), (sp.Integer(0), sp.Rational(51, 100))]
    mean, tail = _mean_and_tail(atoms, t_value)

    def threshold(name, **extra):
        expr = SYMBOLIC[name]
        names = {sym.name: sym for sym in expr.free_symbols}
        return expr.subs({names["t"]: t_value, names["eps"]: eps_value, **{names[k]: v for k, v in extra.items()}})

    paper, corrected = threshold("proposition1_tail_threshold"), threshold("proposition1_tail_threshold_bounded", rho_max=2)
    assert tail < paper and mean > eps_value  # the paper's implication fails
    assert not tail < corrected  # the corrected one does not apply
    assert float(tail) < proposition1_tail_threshold(float(t_value), float(eps_value))
    assert not float(tail) < proposition1_tail_threshold_bounded(float(t_value), float(eps_value), 2.0)
