"""Theorem 6 (paper Sec. 4, proof App. A.2): late entry of vision tokens.

Setting. Layers f^l(V, T) = (f_vis^l(V, T), f_text^l(V, T)), l = 1..n; (V_0, T_0) the
input and (V_l, T_l) = f^l(V_{l-1}, T_{l-1}); the tail phi = f^n o ... o f^{L+1}, so
Y_true = phi(V_L, T_L). Late entry runs the text alone through layers 1..L,
T~_0 = T_0, T~_l = f_text^l(0, T~_{l-1}), and then inserts a vision state V_k:
Y_skip = phi(V_k, T~_L). The paper's proof inserts V_1 (k = 1); Sec. 4 defines late
entry with the raw input V_0 (k = 0).

Statement (corrected). Suppose phi is mu-Lipschitz for the Euclidean norm of the
stacked (V, T); f_text^l(0, .) is lam-Lipschitz for l = 2..L; ||V_l - V_{l-1}|| <= eps
for l = k+1..L; and ||f_text^l(V_{l-1}, T_{l-1}) - f_text^l(0, T_{l-1})|| <= delta for
l = 1..L on the true trajectory. With S_L = sum_{j=0}^{L-1} lam^j ((lam^L - 1)/(lam - 1),
and L at lam = 1),

    ||Y_true - Y_skip|| <= mu sqrt(((L - k) eps)^2 + (delta S_L)^2) <= mu((L - k) eps + delta S_L).

For k = 1 the right end is the paper's statement, true but looser than its proof's
sqrt form. Errata: the statement writes Y_skip = phi(V_l, T~_l) with l undefined; its
hypotheses start at V_1, so for Sec. 4's late entry (k = 0) the statement is false
(an L = 1 counterexample: ``tests/theory/test_errata_functional.py``) unless
||V_1 - V_0|| <= eps is assumed, giving L eps; (lam^L - 1)/(lam - 1) is 0/0 at lam = 1.

Proof.
Step 1 (vision drift). Telescoping and the triangle inequality:
        ||V_L - V_k|| <= sum_{l=k+1}^{L} ||V_l - V_{l-1}|| <= (L - k) eps.
Step 2 (text error recurrence). E_l := ||T_l - T~_l||, E_0 = 0 (same input). Adding and
        subtracting f_text^l(0, T_{l-1}):
        E_l <= ||f_text^l(V_{l-1}, T_{l-1}) - f_text^l(0, T_{l-1})|| + ||f_text^l(0, T_{l-1}) - f_text^l(0, T~_{l-1})||
            <= delta + lam E_{l-1}   (for l = 1, E_0 = 0 and lam plays no role).
Step 3 (closed form). By induction E_L <= delta sum_{j<L} lam^j = delta S_L: the
        recurrence e_l = delta + lam e_{l-1}, e_0 = 0 solves to delta (lam^l - 1)/(lam - 1),
        whose limit at lam = 1 is l delta.
Step 4 (tail). ||Y_true - Y_skip|| = ||phi(V_L, T_L) - phi(V_k, T~_L)||
        <= mu ||(V_L - V_k, T_L - T~_L)|| = mu sqrt(||V_L - V_k||^2 + E_L^2), then Steps 1 and 3.
Step 5 (sum form). For a, b >= 0, sqrt(a^2 + b^2) <= a + b <= sqrt(2) sqrt(a^2 + b^2).
Step 6 (tightness). Scalar layers V_l = V_{l-1} + eps, f_text^l(v, t) = lam t + (delta/V_{l-1}) v
        and phi = mu * identity make every inequality an equality.

Code: ``theorem6_bound`` (sum form), ``theorem6_bound_sqrt``, ``geometric_sum``.
"""

import numpy as np
import sympy as sp

from skipit.theory import geometric_sum, theorem6_bound, theorem6_bound_sqrt
from skipit.theory.late_entry import ARGUMENTS, SYMBOLIC

lam, delta = sp.symbols("lam delta", positive=True)
l_sym = sp.Symbol("l", integer=True, nonnegative=True)
TOL = 1e-12


def _trajectories(seed, L, dv=3, dt=3):
    rng = np.random.default_rng(seed)
    E, F = rng.normal(size=(L, dv, dv)), rng.normal(size=(L, dv, dt))
    C, D = rng.normal(size=(L, dt, dt)) / np.sqrt(dt), 0.5 * rng.normal(size=(L, dt, dv))

    def f_vis(l, v, t):
        return v + 0.2 * np.tanh(E[l - 1] @ v + F[l - 1] @ t)

    def f_text(l, v, t):
        return np.tanh(C[l - 1] @ t + D[l - 1] @ v)

    V, T, Ts = [rng.normal(size=dv)], [rng.normal(size=dt)], []
    Ts.append(T[0])
    for l in range(1, L + 1):
        V.append(f_vis(l, V[-1], T[-1]))
        T.append(f_text(l, V[-2], T[-1]))
        Ts.append(f_text(l, np.zeros(dv), Ts[-1]))
    return V, T, Ts, f_text, [float(np.linalg.norm(c, 2)) for c in C]


def test_step_1_vision_drift_telescopes():
    for seed in range(20):
        L = 1 + seed % 6
        V = _trajectories(seed, L)[0]
        for k in range(L + 1):
            steps = [np.linalg.norm(V[l] - V[l - 1]) for l in range(k + 1, L + 1)]
            assert np.linalg.norm(V[L] - V[k]) <= sum(steps) + TOL
    # each of the steps l = k+1..L is <= eps: the count of terms is L - k (no off-by-one)
    eps, l_, k_, L_ = sp.Symbol("eps", positive=True), *sp.symbols("l k L", integer=True)
    assert sp.simplify(sp.summation(eps, (l_, k_ + 1, L_)) - (L_ - k_) * eps) == 0


def test_step_2_text_error_recurrence():
    for seed in range(20):
        L = 1 + seed % 6
        V, T, Ts, f_text, lams = _trajectories(seed, L)
        for l in range(1, L + 1):
            e_l = np.linalg.norm(T[l] - Ts[l])
            d_l = np.linalg.norm(f_text(l, V[l - 1], T[l - 1]) - f_text(l, 0 * V[0], T[l - 1]))
            assert e_l <= d_l + lams[l - 1] * np.linalg.norm(T[l - 1] - Ts[l - 1]) + TOL


def test_step_3_closed_form_of_the_recurrence():
    e = sp.Function("e")
    sol = sp.rsolve(e(l_sym) - lam * e(l_sym - 1) - delta, e(l_sym), {e(0): 0})
    assert sp.simplify(sol - delta * (lam**l_sym - 1) / (lam - 1)) == 0
    j, L = sp.Symbol("j", integer=True, nonnegative=True), sp.Symbol("L", integer=True, positive=True)
    total = sp.summation(lam**j, (j, 0, L - 1))  # sympy returns Piecewise((L, lam = 1), (closed form, else))
    assert isinstance(total, sp.Piecewise) and total.subs(lam, 1) == L
    assert sp.simplify(total.args[-1][0] - (lam**L - 1) / (lam - 1)) == 0
    assert sp.limit((lam**L - 1) / (lam - 1), lam, 1) == L
    for L_value in (1, 2, 5, 9):  # off-by-one guard: the library's S_L is sympy's sum of L terms
        for lam_value in (sp.Rational(1, 2), 1, 2):
            exact = total.subs({lam: lam_value, L: L_value})
            assert abs(geometric_sum(float(lam_value), L_value) - float(exact)) <= 1e-14 * float(exact)


def test_step_4_lipschitz_tail_on_the_stacked_vector():
    rng = np.random.default_rng(0)
    M = rng.normal(size=(6, 6))
    mu = float(np.linalg.norm(M, 2))
    a_sym, b_sym = sp.Matrix(sp.symbols("a1:4", real=True)), sp.Matrix(sp.symbols("b1:4", real=True))
    stacked = a_sym.col_join(b_sym)  # ||(a, b)||^2 = ||a||^2 + ||b||^2, symbol by symbol
    assert sp.expand(stacked.dot(stacked) - a_sym.dot(a_sym) - b_sym.dot(b_sym)) == 0
    for _ in range(50):
        a, b = rng.normal(size=3), rng.normal(size=3)
        assert np.linalg.norm(M @ np.r_[a, b]) <= mu * np.hypot(np.linalg.norm(a), np.linalg.norm(b)) * (1 + 1e-12)
    for seed in range(10):
        L = 1 + seed % 5
        V, T, Ts, f_text, lams = _trajectories(seed, L)
        eps = max(np.linalg.norm(V[l] - V[l - 1]) for l in range(2, L + 1)) if L > 1 else 0.0
        d = max(np.linalg.norm(f_text(l, V[l - 1], T[l - 1]) - f_text(l, 0 * V[0], T[l - 1])) for l in range(1, L + 1))
        err = np.linalg.norm(M @ np.r_[V[L], T[L]] - M @ np.r_[V[1], Ts[L]])
        assert err <= theorem6_bound_sqrt(mu, max(lams), eps, d, L) * (1 + 1e-12)


def test_step_5_sqrt_form_between_sum_form_over_sqrt2_and_sum_form():
    a, b = sp.symbols("a b", nonnegative=True)
    assert sp.expand((a + b) ** 2 - (a**2 + b**2)) == 2 * a * b
    assert sp.expand(2 * (a**2 + b**2) - (a + b) ** 2) == sp.expand((a - b) ** 2)
    grid = np.linspace(0, 2, 9)
    m, lm, e, dl = np.meshgrid(grid, grid, grid, grid, indexing="ij")
    s, q = theorem6_bound(m, lm, e, dl, 4), theorem6_bound_sqrt(m, lm, e, dl, 4)
    assert np.all(q <= s * (1 + 1e-12)) and np.all(s <= np.sqrt(2) * q * (1 + 1e-12) + 1e-15)
    # the same two identities on the library's own sympy forms, on each branch of S_L(lam):
    # (L, at lam = 1) and ((lam^L - 1)/(lam - 1), elsewhere)
    mu, lam_, eps, dl, L, entry = ARGUMENTS["theorem6_bound"]
    for branch, S in ((0, L), (-1, (lam_**L - 1) / (lam_ - 1))):
        def on_branch(name):
            return SYMBOLIC[name].replace(lambda e: isinstance(e, sp.Piecewise), lambda e: e.args[branch][0])

        sym_sum, sym_sqrt = on_branch("theorem6_bound"), on_branch("theorem6_bound_sqrt")
        v, t = (L - entry) * eps, dl * S
        assert sp.simplify(sym_sum**2 - sym_sqrt**2 - 2 * mu**2 * v * t) == 0
        assert sp.simplify(2 * sym_sqrt**2 - sym_sum**2 - mu**2 * (v - t) ** 2) == 0


def test_step_6_aligned_scalar_layers_attain_the_sqrt_form():
    mu, lm, eps, d, L = 0.7, 1.2, 0.1, 0.03, 5
    V, T, Ts = [2.0], [1.0], [1.0]
    for _ in range(L):
        T.append(lm * T[-1] + (d / V[-1]) * V[-1])
        Ts.append(lm * Ts[-1])
        V.append(V[-1] + eps)
    err = mu * np.hypot(V[L] - V[1], T[L] - Ts[L])
    assert abs(err - theorem6_bound_sqrt(mu, lm, eps, d, L)) < 1e-12
    err0 = mu * np.hypot(V[L] - V[0], T[L] - Ts[L])  # raw vision: L steps of eps
    assert abs(err0 - theorem6_bound_sqrt(mu, lm, eps, d, L, entry=0)) < 1e-12
