"""The sympy forms are valid at the edges of their domains, where x log x and the geometric sum are 0/0.

At P_t = 0 or 1 a plain ``P log P`` is NaN in sympy (0 * -oo) and at lam = 1 the closed form
(lam^L - 1)/(lam - 1) is 0/0; the library writes them as Piecewise (0 log 0 = 0, S_L(1) = L),
and each form must equal the numeric function there.
"""

import math

import pytest
import sympy as sp

from skipit.theory import informational as inf
from skipit.theory import late_entry

REL = 1e-12

INFORMATIONAL = [
    ("theorem3_mi_lower_bound", {"t": 0.3, "d": 5}),
    ("theorem3_mi_lower_bound_sharp", {"t": 0.3, "d": 5}),
    ("theorem4_mi_lower_bound", {"p_min": 0.02, "p_max": 0.3}),
    ("theorem4_mi_lower_bound_sharp", {"p_min": 0.02, "p_max": 0.3}),
    ("corollary4_conditional_entropy_upper_bound", {"h_x": 2.0, "p_min": 0.02, "p_max": 0.3}),
]


def _evaluate(expr, args, values):
    out = expr.subs({s: sp.nsimplify(values[s.name]) for s in args}).evalf(30)
    assert out.is_finite and out is not sp.nan, out
    return float(out)


@pytest.mark.parametrize("name, fixed", INFORMATIONAL)
@pytest.mark.parametrize("p_t", [0.0, 1.0])
def test_informational_symbolic_form_is_finite_and_equals_numeric_at_p_t_0_and_1(name, fixed, p_t):
    values = dict(fixed, p_t=p_t)
    want = getattr(inf, name)(**values)
    got = _evaluate(inf.SYMBOLIC[name], inf.ARGUMENTS[name], values)
    assert got == pytest.approx(want, rel=REL, abs=REL)


@pytest.mark.parametrize("name", ["theorem6_bound", "theorem6_bound_sqrt"])
@pytest.mark.parametrize("L, entry", [(1, 0), (3, 1), (7, 0)])
def test_theorem6_symbolic_form_is_finite_and_equals_numeric_at_lam_1(name, L, entry):
    values = {"mu": 0.7, "lam": 1.0, "eps": 0.1, "delta": 0.03, "L": L, "entry": entry}
    want = getattr(late_entry, name)(**values)
    got = _evaluate(late_entry.SYMBOLIC[name], late_entry.ARGUMENTS[name], values)
    assert got == pytest.approx(want, rel=REL)
    by_hand = 0.7 * ((L - entry) * 0.1 + 0.03 * L) if name == "theorem6_bound" else 0.7 * math.hypot((L - entry) * 0.1, 0.03 * L)
    assert got == pytest.approx(by_hand, rel=REL)


def test_theorem6_symbolic_form_is_continuous_at_lam_1():
    expr = late_entry.SYMBOLIC["theorem6_bound"]
    lam = late_entry.ARGUMENTS["theorem6_bound"][1]
    general = expr.replace(lambda e: isinstance(e, sp.Piecewise), lambda e: e.args[-1][0])
    assert sp.simplify(sp.limit(general.subs(late_entry.ARGUMENTS["theorem6_bound"][4], 5), lam, 1)
                       - expr.subs({lam: 1, late_entry.ARGUMENTS["theorem6_bound"][4]: 5})) == 0
