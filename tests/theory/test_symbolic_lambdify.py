"""Every sympy form lambdifies with ``sp.lambdify(..., "numpy")`` and evaluates, at the ends of its
arguments' ranges and inside, to its numeric function: for Python numbers, numpy scalars and arrays.

numpy's ``select`` (a lambdified Piecewise) evaluates every branch, so a branch that is not taken must
not raise (Python floats raise ZeroDivisionError on x / 0); it may produce nan or inf, which ``select``
discards: the checks run under ``np.errstate(divide="ignore", invalid="ignore")`` for that reason only.
"""

import itertools

import numpy as np
import pytest
import sympy as sp

import skipit.theory as th
from skipit.theory import functional, informational, late_entry, lemmas, symbolic

#: Each form's arguments at their range ends and one inside; combinations the numeric function
#: rejects (entry > L, p_min > p_max, P_t > 0 at t = 2, ...) are left out.
POINTS = {
    "lemma1_bound": {"d_xz": [0, 0.3, 2], "d_zy": [0, 1.5]},
    "lemma1_bound_sharp": {"d_xz": [0, 0.3, 2], "d_zy": [0, 1.5]},
    "lemma2_mean_squared_distance": {"mean_rho": [0, 0.7, 2]},
    "lemma3_bound": {"a_sq": [0, 0.2], "b_sq": [0, 1], "c_sq": [0, 3]},
    "lemma3_bound_sharp": {"a_sq": [0, 0.2], "b_sq": [0, 1], "c_sq": [0, 3]},
    "proposition1_tail_threshold": {"t": [0, 0.5, 0.999], "eps": [0.01, 0.5, 2]},
    "proposition1_tail_threshold_bounded": {"t": [0, 0.5, 1.5], "eps": [0.01, 2], "rho_max": [1, 2]},
    "proposition1_mean_bound": {"t": [0, 1, 2], "tail_prob": [0, 0.3, 1], "rho_max": [2, 3]},
    "theorem1_bound": {"alpha": [0, 1.5], "beta": [0, 0.5], "eps": [1e-3, 2]},
    "theorem1_bound_sharp": {"alpha": [0, 1.5], "beta": [0, 0.5], "eps": [1e-3, 2]},
    "theorem2_bound": {"alpha": [0, 1.5], "beta": [0, 0.5], "eps": [1e-3, 2], "eta_l": [0, 0.2], "eta_prev": [0, 0.1]},
    "theorem2_bound_sharp": {"alpha": [0, 1.5], "beta": [0, 0.5], "eps": [1e-3, 2], "eta_l": [0, 0.2],
                             "eta_prev": [0, 0.1]},
    "theorem6_bound": {"mu": [0, 1.2], "lam": [0, 0.5, 1, 1.5], "eps": [0, 0.1], "delta": [0, 0.03], "L": [1, 3],
                       "entry": [0, 1]},
    "theorem6_bound_sqrt": {"mu": [0, 1.2], "lam": [0, 0.5, 1, 1.5], "eps": [0, 0.1], "delta": [0, 0.03],
                            "L": [1, 3], "entry": [0, 1]},
    "theorem3_mi_lower_bound": {"p_t": [0, 0.4, 1], "t": [0, 0.3, 1, 1.5, 2, 2.5], "d": [2, 5, 4096]},
    "theorem3_mi_lower_bound_sharp": {"p_t": [0, 0.4, 1], "t": [0, 0.3, 1, 1.5, 2, 2.5], "d": [2, 5, 4096]},
    "theorem4_mi_lower_bound": {"p_t": [0, 0.4, 1], "p_min": [0, 0.1, 0.3], "p_max": [0.3, 1]},
    "theorem4_mi_lower_bound_sharp": {"p_t": [0, 0.4, 1], "p_min": [0, 0.1, 0.3], "p_max": [0.3, 1]},
    "corollary4_conditional_entropy_upper_bound": {"h_x": [0, 2.5], "p_t": [0, 0.4, 1], "p_min": [0, 0.1, 0.3],
                                                   "p_max": [0.3, 1]},
    "theorem5_bound": {"B": [0, 1.5], "cmi": [0, 0.2]},
    "theorem5_entropy_bound": {"B": [0, 1.5], "h_cond": [-0.2, 0, 0.3], "C": [0, 0.2, 1]},
}
MODULES = (lemmas, functional, late_entry, informational)
REL = 1e-12


def _arguments(name):
    return next(m.ARGUMENTS[name] for m in MODULES if name in m.SYMBOLIC)


def _valid_points(name):
    """Every combination of POINTS[name] that the numeric function accepts, with its value."""
    args = [s.name for s in _arguments(name)]
    numeric = getattr(th, name)
    out = []
    for combo in itertools.product(*(POINTS[name][a] for a in args)):
        try:
            out.append((combo, numeric(*combo)))
        except ValueError:
            continue
    return out


def test_every_form_in_the_registry_is_checked():
    assert set(POINTS) == set(symbolic.EXPRESSIONS)
    for name in POINTS:
        assert {s.name for s in _arguments(name)} == set(POINTS[name]), name


@pytest.mark.parametrize("name", sorted(POINTS))
def test_lambdified_form_equals_the_numeric_function_at_the_ends_and_inside(name):
    f = sp.lambdify(_arguments(name), symbolic.expr(name), "numpy")
    points = _valid_points(name)
    assert len(points) >= 2
    with np.errstate(divide="ignore", invalid="ignore"):
        for combo, want in points:
            for cast in (lambda v: v, np.float64):  # Python numbers, numpy scalars
                got = f(*(cast(v) for v in combo))
                np.testing.assert_allclose(float(got), want, rtol=REL, atol=REL, err_msg=f"{name}{combo}")
        arrays = [np.array(column, dtype=float) for column in zip(*(c for c, _ in points))]
        got = np.broadcast_to(f(*arrays), arrays[0].shape)
        np.testing.assert_allclose(got, [w for _, w in points], rtol=REL, atol=REL, err_msg=name)


def test_theorem6_form_at_lam_1_with_python_floats_does_not_divide_by_zero():
    """The reviewed failure: the general branch (lam^L - 1)/(lam - 1) raised ZeroDivisionError."""
    f = sp.lambdify(late_entry.ARGUMENTS["theorem6_bound"], late_entry.SYMBOLIC["theorem6_bound"], "numpy")
    assert float(f(0.7, 1.0, 0.1, 0.03, 3, 1)) == pytest.approx(0.7 * (2 * 0.1 + 3 * 0.03), rel=REL)


def test_theorem3_form_is_finite_where_the_cap_fraction_underflows():
    """F(0.3, 4096) is 0 as a double; the form uses log F, so it stays finite as the numeric function does."""
    f = sp.lambdify(informational.ARGUMENTS["theorem3_mi_lower_bound"],
                    informational.SYMBOLIC["theorem3_mi_lower_bound"], "numpy")
    assert th.cap_fraction(0.3, 4096) == 0.0
    assert float(f(0.1, 0.3, 4096)) == pytest.approx(th.theorem3_mi_lower_bound(0.1, 0.3, 4096), rel=REL)
