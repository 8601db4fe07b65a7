"""Theorem 6 of the paper (late entry of vision tokens, Sec. 4, proof App. A.2).

Setting (corrected). Layers ``f^l(V, T) = (f_vis^l(V, T), f_text^l(V, T))``,
``l = 1..n``; ``(V_0, T_0)`` the input, ``(V_l, T_l) = f^l(V_{l-1}, T_{l-1})``; the tail
``phi = f^n o ... o f^{L+1}``, so ``Y_true = phi(V_L, T_L)``. Late entry at layer L runs
the text alone, ``T~_0 = T_0``, ``T~_l = f_text^l(0, T~_{l-1})`` for ``l = 1..L``, then
inserts a vision state ``V_k`` (``k`` = ``entry``): ``Y_skip = phi(V_k, T~_L)``. The paper's
proof inserts ``V_1`` (``entry=1``); late entry as defined in Sec. 4 inserts the raw
vision input ``V_0`` (``entry=0``).

Hypotheses: ``phi`` is ``mu``-Lipschitz (Euclidean norm on the stacked ``(V, T)``);
``f_text^l(0, .)`` is ``lam``-Lipschitz for ``l = 2..L``; ``||V_l - V_{l-1}|| <= eps`` for
``l = entry+1..L``; ``||f_text^l(V_{l-1}, T_{l-1}) - f_text^l(0, T_{l-1})|| <= delta`` for
``l = 1..L``, on the *true* trajectory ``(V_{l-1}, T_{l-1})``.

Conclusion (proof's form, :func:`theorem6_bound_sqrt`):
``||Y_true - Y_skip|| <= mu sqrt(((L - entry) eps)^2 + (delta S_L(lam))^2)`` with
``S_L(lam) = sum_{j<L} lam^j = (lam^L - 1)/(lam - 1)`` (``= L`` at ``lam = 1``), hence the
statement's sum form (:func:`theorem6_bound`) ``mu((L - entry) eps + delta S_L(lam))``.

Errata (``ERRATA.md``): the statement's ``Y_skip = phi(V_l, T~_l)`` uses an undefined l
(the proof uses ``phi(V_1, T~_L)``); with the raw vision ``V_0`` inserted, as Sec. 4
defines late entry, the paper's hypotheses (differences from ``V_1`` on) do not bound
``||V_L - V_0||`` and the stated bound is false (counterexample test); the closed form
divides by zero at ``lam = 1``; the proof's sqrt form is tighter than the statement; the
statement defines ``T~_l = f_text^l(0, T_{l-1})`` (one step from the true state), while
the proof and the corrected statement use the recursive ``T~_l = f_text^l(0, T~_{l-1})``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import sympy as sp

from skipit.theory import _validation as _c
from skipit.theory._registry import register

if TYPE_CHECKING:  # shapes for readers and type checkers; jaxtyping is not a runtime dependency
    from jaxtyping import ArrayLike, Float, Int

__all__ = ["geometric_sum", "theorem6_bound", "theorem6_bound_sqrt"]

_mu, _lam, _eps, _delta = sp.symbols("mu lam eps delta", nonnegative=True)
_L = sp.Symbol("L", positive=True, integer=True)
_entry = sp.Symbol("entry", nonnegative=True, integer=True)
# S_L(lam), with its limit L at lam = 1. numpy's select (the lambdified Piecewise) evaluates both
# branches, so the general one divides by lam - 1 + [lam = 1]: 1 there, where its value is not
# used (a Python-float lam = 1 must not raise ZeroDivisionError), lam - 1 everywhere else.
_S = sp.Piecewise((_L, sp.Eq(_lam, 1)),
                  ((_lam**_L - 1) / (_lam - 1 + sp.Piecewise((1, sp.Eq(_lam, 1)), (0, True))), True))

SYMBOLIC = {
    "theorem6_bound": _mu * ((_L - _entry) * _eps + _delta * _S),
    "theorem6_bound_sqrt": _mu * sp.sqrt(((_L - _entry) * _eps) ** 2 + (_delta * _S) ** 2),
}
ARGUMENTS = {
    "theorem6_bound": (_mu, _lam, _eps, _delta, _L, _entry),
    "theorem6_bound_sqrt": (_mu, _lam, _eps, _delta, _L, _entry),
}


def _geometric_sum(lam, L):
    # (lam^L - 1)/(lam - 1) as expm1(L log1p(x))/x with x = lam - 1: no cancellation near
    # lam = 1 (x is exact there), and the limit L at lam = 1 itself.
    x = lam - 1.0
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        s = np.expm1(L * np.log1p(x)) / x
    return np.where(x == 0.0, L, s)


def geometric_sum(lam: Float[ArrayLike, "*batch"], L: Int[ArrayLike, "*batch"]) -> Float[np.ndarray, "*batch"] | float:
    """``S_L(lam) = 1 + lam + ... + lam^(L-1) = (lam^L - 1)/(lam - 1)``, ``= L`` at ``lam = 1``.

    Accurate to a few ulps for ``lam`` near 1 (no cancellation), vectorised.
    ``lam >= 0``, ``L`` a positive integer.
    """
    lm = _c.nonneg("lam", lam)
    LL = _c.check("L", L, 1.0, integer=True)
    return _c.result(_geometric_sum(lm, LL), lam, L)


def _args(mu, lam, eps, delta, L, entry):
    m = _c.nonneg("mu", mu)
    lm = _c.nonneg("lam", lam)
    e = _c.nonneg("eps", eps)
    d = _c.nonneg("delta", delta)
    LL = _c.check("L", L, 1.0, integer=True)
    k = _c.check("entry", entry, 0.0, integer=True)
    if np.any(k > LL):
        raise ValueError(f"`entry` must be in [0, L] (the inserted vision state V_entry), "
                         f"got entry={float(np.max(k))!r} > L={float(np.min(LL))!r}")
    return m, (LL - k) * e, d * _geometric_sum(lm, LL)


def theorem6_bound(mu: Float[ArrayLike, "*batch"], lam: Float[ArrayLike, "*batch"], eps: Float[ArrayLike, "*batch"],
                   delta: Float[ArrayLike, "*batch"], L: Int[ArrayLike, "*batch"],
                   entry: Int[ArrayLike, "*batch"] = 1) -> Float[np.ndarray, "*batch"] | float:
    """Theorem 6 (Sec. 4, proof App. A.2), the statement's sum form:
    ``||Y_true - Y_skip|| <= mu((L - entry) eps + delta (lam^L - 1)/(lam - 1))``.

    With ``entry=1`` (the default) this is the paper's ``mu((L-1) eps + delta (lam^L-1)/(lam-1))``.
    ``lam = 1`` gives the limit ``mu((L - entry) eps + L delta)``. Hypotheses in the
    module docstring; ``mu, lam, eps, delta >= 0`` (``eps = 0`` is allowed: the bound
    is not strict), ``L >= 1`` and ``0 <= entry <= L`` integers. Use ``entry=0`` for late
    entry of the raw vision input (Sec. 4's definition). True, but looser than
    :func:`theorem6_bound_sqrt` (by at most a factor sqrt(2)).
    """
    m, v, t = _args(mu, lam, eps, delta, L, entry)
    return _c.result(m * (v + t), mu, lam, eps, delta, L, entry)


def theorem6_bound_sqrt(mu: Float[ArrayLike, "*batch"], lam: Float[ArrayLike, "*batch"],
                        eps: Float[ArrayLike, "*batch"], delta: Float[ArrayLike, "*batch"], L: Int[ArrayLike, "*batch"],
                        entry: Int[ArrayLike, "*batch"] = 1) -> Float[np.ndarray, "*batch"] | float:
    """Theorem 6, the proof's form (eq. 40):
    ``||Y_true - Y_skip|| <= mu sqrt(((L - entry) eps)^2 + (delta (lam^L - 1)/(lam - 1))^2)``.

    Same hypotheses as :func:`theorem6_bound`; never larger than it. Attained with
    equality by linear layers whose vision steps and text errors are aligned
    (``tests/theory/test_late_entry.py::test_theorem6_sqrt_form_is_attained``).
    """
    m, v, t = _args(mu, lam, eps, delta, L, entry)
    return _c.result(m * np.hypot(v, t), mu, lam, eps, delta, L, entry)


_T6 = ("phi mu-Lipschitz, f_text^l(0,.) lam-Lipschitz, ||V_l - V_{l-1}|| <= eps for l = entry+1..L, "
       "||f_text^l(V_{l-1},T_{l-1}) - f_text^l(0,T_{l-1})|| <= delta for l <= L, Y_skip = phi(V_entry, T~_L)  =>  "
       "||Y_true - Y_skip|| <= ")
register("theorem6_bound", "Theorem 6 (Sec. 4, proof App. A.2)",
         _T6 + "mu((L - entry) eps + delta (lam^L - 1)/(lam - 1)); entry = 1 is the paper's statement.",
         {"mu": 1.0, "lam": 1.1, "eps": 0.05, "delta": 0.01, "L": 4}, "corrected",
         "Statement's Y_skip = phi(V_l, T~_l) has l undefined (proof: phi(V_1, T~_L)); false for raw vision V_0 "
         "unless ||V_1 - V_0|| <= eps is added (then L eps); lam = 1 needs the limit L delta; the proof's "
         "sqrt form is tighter.")
register("theorem6_bound_sqrt", "Theorem 6 (App. A.2, eq. 40)",
         _T6 + "mu sqrt(((L - entry) eps)^2 + (delta (lam^L - 1)/(lam - 1))^2) (attained).",
         {"mu": 1.0, "lam": 1.1, "eps": 0.05, "delta": 0.01, "L": 4}, "sharper than the paper")
