"""Proposition 1 and Theorems 1-2 of the paper (Sec. 3.2 and 3.4, proofs in App. A.2).

Notation. ``X_l, X_prev`` (the paper's ``X_l, X_{l-1}``) are unit-norm random vectors,
``rho`` the cosine distance (values in ``[0, 2]``), Z a square-integrable task variable
in ``R^k`` and ``h(x, y) = E[Z | X_l = x, X_prev = y]``. The paper's hypothesis
"``E[rho(X, Y)] < eps/2``" has X, Y undefined: it means ``E[rho(X_l, X_prev)] < eps/2``.

=====================================  ===============================================  ======================
function                               conclusion                                       status
=====================================  ===============================================  ======================
proposition1_tail_threshold            P[rho>t] < (eps-t)/(1-t) => E[rho] < eps          as stated, rho in [0,1]
proposition1_tail_threshold_bounded    P[rho>t] < (eps-t)/(R-t) => E[rho] < eps          corrected (rho in [0,R])
proposition1_mean_bound                E[rho] <= t + (R-t) P[rho>t]                     sharp (attained)
theorem1_bound                         E||f_l - f_prev||^2 <= 2(a^2+b^2) eps             corrected (<= not <)
theorem1_bound_sharp                   E||f_l - f_prev||^2 <= (a+b)^2 eps                sharper, tight
theorem2_bound                         E||^f_l - ^f_prev||^2 <= 3n_l+3n_p+6(a^2+b^2)eps  corrected (<= not <)
theorem2_bound_sharp                   ... <= (sqrt n_l + sqrt n_p + (a+b) sqrt eps)^2   sharper
=====================================  ===============================================  ======================

Proofs with every step checked: ``proofs/proposition1.py``, ``proofs/theorem1.py``,
``proofs/theorem2.py``; errata in ``ERRATA.md``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import sympy as sp

from skipit.theory import _validation as _c
from skipit.theory._registry import register
from skipit.theory.distances import COSINE_DISTANCE_MAX

if TYPE_CHECKING:  # shapes for readers and type checkers; jaxtyping is not a runtime dependency
    import numpy as np
    from jaxtyping import ArrayLike, Float

__all__ = [
    "proposition1_tail_threshold",
    "proposition1_tail_threshold_bounded",
    "proposition1_mean_bound",
    "theorem1_bound",
    "theorem1_bound_sharp",
    "theorem2_bound",
    "theorem2_bound_sharp",
]

_t = sp.Symbol("t", nonnegative=True)
_eps = sp.Symbol("eps", positive=True)
_rho_max = sp.Symbol("rho_max", positive=True)
_tail = sp.Symbol("tail_prob", nonnegative=True)
_alpha, _beta = sp.symbols("alpha beta", nonnegative=True)
_eta_l, _eta_prev = sp.symbols("eta_l eta_prev", nonnegative=True)

SYMBOLIC = {
    "proposition1_tail_threshold": (_eps - _t) / (1 - _t),
    "proposition1_tail_threshold_bounded": (_eps - _t) / (_rho_max - _t),
    "proposition1_mean_bound": _t + (_rho_max - _t) * _tail,
    "theorem1_bound": 2 * (_alpha**2 + _beta**2) * _eps,
    "theorem1_bound_sharp": (_alpha + _beta) ** 2 * _eps,
    "theorem2_bound": 3 * _eta_l + 3 * _eta_prev + 6 * (_alpha**2 + _beta**2) * _eps,
    "theorem2_bound_sharp": (sp.sqrt(_eta_l) + sp.sqrt(_eta_prev) + (_alpha + _beta) * sp.sqrt(_eps)) ** 2,
}

#: Argument order of each numeric function (and of its lambdified sympy form).
ARGUMENTS = {
    "proposition1_tail_threshold": (_t, _eps),
    "proposition1_tail_threshold_bounded": (_t, _eps, _rho_max),
    "proposition1_mean_bound": (_t, _tail, _rho_max),
    "theorem1_bound": (_alpha, _beta, _eps),
    "theorem1_bound_sharp": (_alpha, _beta, _eps),
    "theorem2_bound": (_alpha, _beta, _eps, _eta_l, _eta_prev),
    "theorem2_bound_sharp": (_alpha, _beta, _eps, _eta_l, _eta_prev),
}
_NUMERIC = {name: sp.lambdify(ARGUMENTS[name], SYMBOLIC[name], "numpy") for name in SYMBOLIC}


def proposition1_tail_threshold(t: Float[ArrayLike, "*batch"],
                                eps: Float[ArrayLike, "*batch"]) -> Float[np.ndarray, "*batch"] | float:
    """Proposition 1 (Sec. 3.4, proof App. A.2), for a distance with values in ``[0, 1]``.

    Hypotheses: ``rho`` symmetric with ``0 <= rho <= 1``; ``t`` in ``[0, 1)``; ``eps > 0``.
    Conclusion: ``P[rho(X, Y) > t] < (eps - t)/(1 - t)`` implies ``E[rho(X, Y)] < eps``.

    Returns the threshold ``(eps - t)/(1 - t)``. A value ``<= 0`` (when ``eps <= t``)
    means no tail probability satisfies the hypothesis. True as stated, and sharp.

    Erratum: the cosine distance takes values in ``[0, 2]``, not ``[0, 1]``, so this
    threshold does not apply to it (counterexample in ``tests/theory/test_errata_functional.py``);
    use :func:`proposition1_tail_threshold_bounded` with ``rho_max=2``.
    """
    tt = _c.check("t", t, 0.0, 1.0, high_closed=False)
    e = _c.positive("eps", eps)
    return _c.result(_NUMERIC["proposition1_tail_threshold"](tt, e), t, eps)


def _below(name, value, upper, closed):
    """``value`` in ``[0, upper]`` (or ``[0, upper)``), elementwise with broadcasting."""
    return _c.check(name, value, 0.0, upper, high_closed=closed)


def proposition1_tail_threshold_bounded(t: Float[ArrayLike, "*batch"], eps: Float[ArrayLike, "*batch"],
                                        rho_max: float = COSINE_DISTANCE_MAX) -> Float[np.ndarray, "*batch"] | float:
    """Proposition 1 corrected for a distance with values in ``[0, rho_max]``.

    Hypotheses: ``0 <= rho <= rho_max``; ``t`` in ``[0, rho_max)``; ``eps > 0``.
    Conclusion: ``P[rho > t] < (eps - t)/(rho_max - t)`` implies ``E[rho] < eps``.
    For the cosine distance ``rho_max = 2`` (the default). ``rho_max = 1`` recovers
    :func:`proposition1_tail_threshold`. Sharp: the two-point law ``rho in {t, rho_max}``
    has ``E[rho] = t + (rho_max - t) P[rho > t]``.
    """
    r = _c.positive("rho_max", rho_max)
    tt = _below("t", t, r, closed=False)
    e = _c.positive("eps", eps)
    return _c.result(_NUMERIC["proposition1_tail_threshold_bounded"](tt, e, r), t, eps, rho_max)


def proposition1_mean_bound(t: Float[ArrayLike, "*batch"], tail_prob: Float[ArrayLike, "*batch"],
                            rho_max: float = COSINE_DISTANCE_MAX) -> Float[np.ndarray, "*batch"] | float:
    """Proposition 1 read forwards: ``E[rho] <= t + (rho_max - t) P[rho > t]``.

    Hypotheses: ``0 <= rho <= rho_max``, ``t`` in ``[0, rho_max]``, ``tail_prob`` an
    upper bound on ``P[rho > t]`` in ``[0, 1]``. Returns the bound on the mean cosine
    distance implied by proximal redundancy (Definition 2 gives
    ``P[rho >= t] < eps_p``, hence ``E[rho] < t + (rho_max - t) eps_p``: proximal
    implies geometric redundancy with ``eps = t + (2 - t) eps_p`` for the cosine
    distance). Attained with equality by the law ``rho in {t, rho_max}``.
    """
    r = _c.positive("rho_max", rho_max)
    tt = _below("t", t, r, closed=True)
    p = _c.check("tail_prob", tail_prob, 0.0, 1.0)
    return _c.result(_NUMERIC["proposition1_mean_bound"](tt, p, r), t, tail_prob, rho_max)


def _lipschitz(alpha, beta):
    return _c.nonneg("alpha", alpha), _c.nonneg("beta", beta)


def theorem1_bound(alpha: Float[ArrayLike, "*batch"], beta: Float[ArrayLike, "*batch"],
                   eps: Float[ArrayLike, "*batch"]) -> Float[np.ndarray, "*batch"] | float:
    """Theorem 1 (Sec. 3.2, proof App. A.2): geometric implies functional redundancy.

    Hypotheses: ``X_l, X_prev`` unit-norm; ``E[rho(X_l, X_prev)] <= eps/2`` with ``eps > 0``;
    ``h(x, y) = E[Z | X_l = x, X_prev = y]`` has a version defined on ``S x S`` (S a set
    containing both supports, so ``h(x, x)`` makes sense) that is ``alpha``-Lipschitz in
    x and ``beta``-Lipschitz in y (Euclidean norms).
    Conclusion: ``E||E[Z|X_l] - E[Z|X_prev]||^2 <= 2(alpha^2 + beta^2) eps``.

    Returns ``2 (alpha^2 + beta^2) eps``.

    Errata: (i) the paper's strict ``<`` fails for ``alpha = beta = 0`` (both sides 0);
    it holds whenever ``alpha + beta > 0``, even with ``E[rho] = eps/2`` (no law attains
    the sharp constant; ``proofs/theorem1.py``, Step 9). (ii) Eq. (22) of the proof
    compares h with ``E[X_prev | X_l = x]`` (a vector of the wrong space); the valid step
    compares ``h(X_l, X_prev)`` with ``h(X_l, X_l)``, a function of ``X_l``, which needs
    the version of h on the diagonal. (iii) The constant is sharp only for
    ``alpha = beta``; :func:`theorem1_bound_sharp` gives ``(alpha + beta)^2 eps``, never
    larger, and tight for all ``alpha, beta``.
    """
    a, b = _lipschitz(alpha, beta)
    e = _c.positive("eps", eps)
    return _c.result(_NUMERIC["theorem1_bound"](a, b, e), alpha, beta, eps)


def theorem1_bound_sharp(alpha: Float[ArrayLike, "*batch"], beta: Float[ArrayLike, "*batch"],
                         eps: Float[ArrayLike, "*batch"]) -> Float[np.ndarray, "*batch"] | float:
    """Theorem 1, sharper form: ``E||E[Z|X_l] - E[Z|X_prev]||^2 <= (alpha + beta)^2 eps``.

    Same hypotheses as :func:`theorem1_bound`. Proof (``proofs/theorem1.py``): with
    ``H = h(X_l, X_prev)``, Minkowski in L2 gives
    ``||E[H|X_l] - E[H|X_prev]|| <= ||H - E[H|X_l]|| + ||H - E[H|X_prev]||
    <= beta ||X_l - X_prev|| + alpha ||X_l - X_prev||`` and ``E||X_l - X_prev||^2 = 2E[rho] <= eps``.
    ``(alpha+beta)^2 <= 2(alpha^2+beta^2)``, with equality iff ``alpha = beta``.
    Tight: a doubly-symmetric binary pair on the sphere with correlation ``r -> 1`` and
    ``h(x, y) = alpha x_2 + beta y_2`` reaches ratio ``(1+r)/2 (alpha^2+beta^2+2 alpha beta r)/(alpha+beta)^2 -> 1``.

    The constant ``(alpha + beta)^2`` is a supremum that no law attains: for
    ``alpha + beta > 0`` the inequality is strict,
    ``E||E[Z|X_l] - E[Z|X_prev]||^2 < (alpha + beta)^2 eps``. Equality would make the
    Minkowski step an equality of collinear residuals, which forces
    ``E||E[Z|X_l] - E[Z|X_prev]||^2 = 0``, or (one residual zero) ``X_prev = X_l`` a.s. on
    the sphere (``proofs/theorem1.py``, Step 9). For ``alpha = beta = 0`` both sides are 0.
    """
    a, b = _lipschitz(alpha, beta)
    e = _c.positive("eps", eps)
    return _c.result(_NUMERIC["theorem1_bound_sharp"](a, b, e), alpha, beta, eps)


def _theorem2_args(alpha, beta, eps, eta_l, eta_prev):
    a, b = _lipschitz(alpha, beta)
    return a, b, _c.positive("eps", eps), _c.nonneg("eta_l", eta_l), _c.nonneg("eta_prev", eta_prev)


def theorem2_bound(alpha: Float[ArrayLike, "*batch"], beta: Float[ArrayLike, "*batch"], eps: Float[ArrayLike, "*batch"],
                   eta_l: Float[ArrayLike, "*batch"],
                   eta_prev: Float[ArrayLike, "*batch"]) -> Float[np.ndarray, "*batch"] | float:
    """Theorem 2 (Sec. 3.2, proof App. A.2): finite-sample estimators.

    Hypotheses: those of :func:`theorem1_bound`; ``f_l``, ``f_prev`` any square-integrable
    estimates (functions of ``X_l`` resp. ``X_prev``) of ``E[Z|X_l=.]``, ``E[Z|X_prev=.]``,
    with ``eta_l = E||f_l(X_l) - E[Z|X_l]||^2`` and ``eta_prev`` likewise.
    Conclusion: ``E||f_l(X_l) - f_prev(X_prev)||^2 <= 3 eta_l + 3 eta_prev + 6(alpha^2+beta^2) eps``.

    Errata: strict ``<`` fails when ``alpha = beta = eta_l = eta_prev = 0`` (0 < 0); the
    proof writes ``L_1, L_2`` for ``alpha, beta``. Loose: :func:`theorem2_bound_sharp` is
    never larger, and up to 6 times smaller: with ``eta_l = eta_prev = 0`` the ratio is
    ``6(alpha^2+beta^2)/(alpha+beta)^2``, in [3, 6] (6 when ``beta = 0``, 3 when
    ``alpha = beta``); with ``alpha = beta = 0`` and one ``eta`` zero it is 3.
    """
    args = _theorem2_args(alpha, beta, eps, eta_l, eta_prev)
    return _c.result(_NUMERIC["theorem2_bound"](*args), alpha, beta, eps, eta_l, eta_prev)


def theorem2_bound_sharp(alpha: Float[ArrayLike, "*batch"], beta: Float[ArrayLike, "*batch"],
                         eps: Float[ArrayLike, "*batch"], eta_l: Float[ArrayLike, "*batch"],
                         eta_prev: Float[ArrayLike, "*batch"]) -> Float[np.ndarray, "*batch"] | float:
    """Theorem 2, sharper form:
    ``E||f_l(X_l) - f_prev(X_prev)||^2 <= (sqrt(eta_l) + sqrt(eta_prev) + (alpha+beta) sqrt(eps))^2``.

    Same hypotheses as :func:`theorem2_bound`. Proof: Minkowski's inequality in L2 on
    the three-term split of the paper, then :func:`theorem1_bound_sharp`. Never larger
    than the paper's form (Cauchy-Schwarz, ``(x+y+z)^2 <= 3(x^2+y^2+z^2)``). Attained
    exactly when ``alpha = beta = 0`` and the two estimation errors are opposite
    (``f_l - f*_l = -(f_prev - f*_prev)``), and approached when ``eta_l = eta_prev = 0``
    (Theorem 1's extremal law).
    """
    args = _theorem2_args(alpha, beta, eps, eta_l, eta_prev)
    return _c.result(_NUMERIC["theorem2_bound_sharp"](*args), alpha, beta, eps, eta_l, eta_prev)


_T1_STATEMENT = ("X_l, X_prev unit-norm, E[rho(X_l, X_prev)] <= eps/2, h(x,y) = E[Z|X_l=x, X_prev=y] "
                 "alpha-Lipschitz in x and beta-Lipschitz in y on S x S  =>  ")
register("proposition1_tail_threshold", "Proposition 1 (Sec. 3.4, proof App. A.2)",
         "0 <= rho <= 1, t in [0,1), eps > 0: P[rho > t] < (eps - t)/(1 - t)  =>  E[rho] < eps.",
         {"t": 0.05, "eps": 0.1}, "as stated",
         "Stated for rho in [0,1]; the cosine distance ranges over [0,2], where it is false: use "
         "proposition1_tail_threshold_bounded (threshold (eps - t)/(2 - t)).")
register("proposition1_tail_threshold_bounded", "Proposition 1 (Sec. 3.4), corrected for rho in [0, rho_max]",
         "0 <= rho <= rho_max, t in [0, rho_max), eps > 0: P[rho > t] < (eps - t)/(rho_max - t)  =>  E[rho] < eps.",
         {"t": 0.05, "eps": 0.1, "rho_max": 2.0}, "corrected",
         "The paper's (eps-t)/(1-t) assumes rho <= 1; the cosine distance needs rho_max = 2.")
register("proposition1_mean_bound", "Proposition 1 (Sec. 3.4), forward form",
         "0 <= rho <= rho_max, P[rho > t] <= p  =>  E[rho] <= t + (rho_max - t) p (attained by rho in {t, rho_max}).",
         {"t": 0.05, "tail_prob": 0.02, "rho_max": 2.0}, "sharper than the paper")
register("theorem1_bound", "Theorem 1 (Sec. 3.2, proof App. A.2)",
         _T1_STATEMENT + "E||E[Z|X_l] - E[Z|X_prev]||^2 <= 2(alpha^2 + beta^2) eps.",
         {"alpha": 1.0, "beta": 0.5, "eps": 0.1}, "corrected",
         "Strict < fails for alpha = beta = 0 (holds whenever alpha + beta > 0); eq. (22) compares h with E[X_prev|X_l=x] (wrong space), fixed by "
         "comparing with h(X_l, X_l); 'E[rho(X,Y)]' means E[rho(X_l, X_prev)]; constant sharp only when alpha = beta.")
register("theorem1_bound_sharp", "Theorem 1 (Sec. 3.2), sharper",
         _T1_STATEMENT + "E||E[Z|X_l] - E[Z|X_prev]||^2 <= (alpha + beta)^2 eps; strict if alpha + beta > 0, "
         "constant not improvable (a supremum no law attains).",
         {"alpha": 1.0, "beta": 0.5, "eps": 0.1}, "sharper than the paper")
register("theorem2_bound", "Theorem 2 (Sec. 3.2, proof App. A.2)",
         "Hypotheses of Theorem 1, eta_l = E||f_l(X_l) - E[Z|X_l]||^2, eta_prev likewise  =>  "
         "E||f_l(X_l) - f_prev(X_prev)||^2 <= 3 eta_l + 3 eta_prev + 6(alpha^2 + beta^2) eps.",
         {"alpha": 1.0, "beta": 0.5, "eps": 0.1, "eta_l": 0.01, "eta_prev": 0.02}, "corrected",
         "Strict < fails when alpha = beta = eta_l = eta_prev = 0; proof writes L_1, L_2 for alpha, beta; loose by up to 6x (3x when alpha = beta).")
register("theorem2_bound_sharp", "Theorem 2 (Sec. 3.2), sharper",
         "Hypotheses of Theorem 2  =>  E||f_l(X_l) - f_prev(X_prev)||^2 <= "
         "(sqrt(eta_l) + sqrt(eta_prev) + (alpha + beta) sqrt(eps))^2.",
         {"alpha": 1.0, "beta": 0.5, "eps": 0.1, "eta_l": 0.01, "eta_prev": 0.02}, "sharper than the paper")
