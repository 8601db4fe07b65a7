"""Theorems 3-5, Corollary 4 and Lemma 4 of the paper (Sec. 3.3-3.4, App. A.1-A.2).

Notation. ``X_l, X_prev`` are the paper's ``X_l, X_{l-1}``; ``rho`` a symmetric
"distance" (the cosine distance ``1 - <x, x'>`` on unit vectors, values in [0, 2]);
``R_t = {(x, x') : rho(x, x') <= t}``; ``P_t = P[rho(X_l, X_prev) > t]`` (strict, the
complement of the closed ball); ``q_t = (P_{X_l} x P_{X_prev})(R_t)`` the probability
of ``R_t`` when the two layers are drawn independently from their marginals. All
information quantities are in nats unless ``base`` says otherwise.

The one inequality behind Theorems 3, 4 and Corollary 4 (Braun & Pokutta 2015,
arXiv:1504.05492, their information diffusion inequality and Prop. 2.2 / Cor. 2.3):
data processing for the KL divergence under the map (x, x') -> 1[(x, x') in R_t] gives

    I(X_l; X_prev) = D(P_{X_l X_prev} || P_{X_l} x P_{X_prev}) >= d(1 - P_t || q_t),

with ``d`` the binary KL divergence. Every bound here is a lower bound on ``d``:

======================================  =========================================================  ==================
function                                statement                                                   status
======================================  =========================================================  ==================
theorem3_mi_lower_bound                 X_l uniform on S^{d-1}: I >= (1-P_t) log(1/F(t,d)) - log 2  corrected (measure)
theorem3_mi_lower_bound_sharp           same hypotheses: I >= d(1 - P_t || F(t, d))                sharper
theorem4_mi_lower_bound                 I >= (1-P_t) log(1/p_max) - P_t log(1-p_min) - h(P_t)      as stated (+ hyp.)
theorem4_mi_lower_bound_sharp           I >= d(1 - P_t || clip(1 - P_t, p_min, p_max))             sharper
corollary4_conditional_entropy_upper..  H(X_l|X_prev) <= H(X_l) + log p_max + h(P_t) + P_t log((1-p_min)/p_max)  as stated
theorem5_bound                          E||E[Z|X_l]-E[Z|X_prev]||^2 <= 2 B^2 I(Z; X_l | X_prev)     as stated
theorem5_entropy_bound                  ... <= 2 B^2 (H(X_l | X_prev) + C)                          statement right, last line wrong
lemma4_expected_kl / lemma4_gap         E[D(p_{Z|X_l} || p_{Z|X_prev})] = I(Z; X_l | X_prev)        as stated (Markov)
======================================  =========================================================  ==================

Here ``F(t, d)`` is the normalised surface measure of a cosine cap
(:func:`skipit.theory.spherical.log_cap_fraction`), ``h`` the binary entropy and
``p_min <= q_t <= p_max`` with ``p_min = inf_x P[rho(X_prev, x) <= t]``,
``p_max = sup_x P[rho(X_prev, x) <= t]`` (x over the support of X_l). Errata in
``ERRATA.md``; proofs in ``proofs/theorem3.py`` ... ``proofs/lemma5.py``.

Differential entropy on the sphere. Hidden states normalised to unit norm have no
density in R^d (the sphere is Lebesgue-null), so ``H(X_l | X_prev)`` in Theorem 5 and
Corollary 4 must be read as the differential entropy of the density with respect to
the surface measure of S^{d-1} (or, for quantized activations, the discrete entropy).
The corrected entropy form of Theorem 5, ``2 B^2 (H(X_l|X_prev) + C)`` with
``C >= -H(X_l | Z, X_prev)``, does not depend on how the reference measure is
normalised (rescaling it shifts H by -log c and the least admissible C by +log c);
the paper's last line ``2 B^2 H + C`` does, one more reason it cannot be right. This
package computes discrete entropies (``skipit.theory.entropy``) and, for the sphere,
the cap measures under the normalised surface measure.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
import sympy as sp

from skipit.theory import _validation as _v
from skipit.theory._registry import register
from skipit.theory.distances import COSINE_DISTANCE_MAX
from skipit.theory.entropy import _log_base as _lb
from skipit.theory.redundancy import clopper_pearson_lower, clopper_pearson_upper
from skipit.theory.entropy import binary_entropy, binary_kl, conditional_mutual_information, validate_pmf
from skipit.theory.spherical import LogCapFraction, log_cap_fraction

if TYPE_CHECKING:  # shapes for readers and type checkers; jaxtyping is not a runtime dependency
    from jaxtyping import ArrayLike, Float, Int

__all__ = [
    "theorem3_mi_lower_bound",
    "theorem3_mi_lower_bound_sharp",
    "theorem4_mi_lower_bound",
    "theorem4_mi_lower_bound_sharp",
    "corollary4_conditional_entropy_upper_bound",
    "theorem5_bound",
    "theorem5_entropy_bound",
    "lemma4_expected_kl",
    "lemma4_gap",
    "conditional_mean_gap",
    "exact_proximal_quantities",
    "ProximalQuantities",
    "InformationalBounds",
    "informational_bounds_from_samples",
]


# ----------------------------------------------------------------------------- validation
def _pmin_pmax(p_min, p_max):
    pmin = _v.probability("p_min", p_min, high_open=True)
    pmax = _v.probability("p_max", p_max, low_open=True)
    if np.any(pmin > pmax):
        a, b = np.broadcast_arrays(pmin, pmax)
        i = np.flatnonzero((a > b).ravel())[0]
        raise ValueError(f"`p_min` must be <= `p_max`, got p_min={float(a.ravel()[i])!r} > p_max={float(b.ravel()[i])!r}")
    return pmin, pmax


def _theorem3_p_t(p_t, t):
    """P_t as a probability, and 0 wherever t >= 2: rho <= 2 always, so P[rho > t] = 0 there."""
    p = _v.probability("p_t", p_t)
    tt = _v.check("t", t, 0.0, what="a cosine-distance threshold")
    p_b, t_b = np.broadcast_arrays(p, tt)
    whole_sphere = t_b >= COSINE_DISTANCE_MAX
    impossible = whole_sphere & (p_b > _v.tolerance(p_t))
    if np.any(impossible):
        i = np.flatnonzero(impossible.ravel())[0]
        raise ValueError(f"`p_t` must be 0 when `t` >= 2 (the cosine distance never exceeds 2, so "
                         f"P[rho > t] = 0), got p_t={float(p_b.ravel()[i])!r} with t={float(t_b.ravel()[i])!r}")
    return np.where(whole_sphere, 0.0, p_b)


# ----------------------------------------------------------------------------- sympy forms
_P, _pmin, _pmax, _hx, _B, _cmi, _hc, _C = sp.symbols("p_t p_min p_max h_x B cmi h_cond C", real=True)
_t, _d = sp.symbols("t d", positive=True)


def _xlog_ratio(x, log_y):
    """x (log x - log_y), with the convention 0 log(0 / y) = 0 (sympy's x log x is NaN at x = 0).

    Written with two logs, never ``log(x / y)``: numpy's ``select`` (the lambdified
    Piecewise) evaluates both branches, and ``x / y`` of Python floats raises
    ZeroDivisionError at y = 0, where ``log`` only gives -inf.
    """
    return sp.Piecewise((0, sp.Eq(x, 0)), (x * (sp.log(x) - log_y), True))


_h2 = -_xlog_ratio(_P, 0) - _xlog_ratio(1 - _P, 0)
_logF = LogCapFraction(_t, _d)
_log1mF = LogCapFraction(sp.Max(2 - _t, 0), _d)  # 1 - F(t) = F(2 - t): the complement of a cap is a cap

SYMBOLIC = {
    "theorem3_mi_lower_bound": sp.Piecewise((0, sp.Eq(_P, 1)), ((1 - _P) * (-_logF), True)) - sp.log(2),
    "theorem4_mi_lower_bound": (1 - _P) * sp.log(1 / _pmax) - _P * sp.log(1 - _pmin) - _h2,
    "corollary4_conditional_entropy_upper_bound": _hx + sp.log(_pmax) + _h2 + _P * sp.log((1 - _pmin) / _pmax),
    "theorem5_bound": 2 * _B**2 * _cmi,
    "theorem5_entropy_bound": 2 * _B**2 * (_hc + _C),
}
_a = 1 - _P
_q4 = sp.Max(_pmin, sp.Min(_a, _pmax))
SYMBOLIC["theorem3_mi_lower_bound_sharp"] = _xlog_ratio(_a, _logF) + _xlog_ratio(_P, _log1mF)
SYMBOLIC["theorem4_mi_lower_bound_sharp"] = _xlog_ratio(_a, sp.log(_q4)) + _xlog_ratio(_P, sp.log(1 - _q4))
ARGUMENTS = {
    "theorem3_mi_lower_bound": (_P, _t, _d),
    "theorem4_mi_lower_bound": (_P, _pmin, _pmax),
    "corollary4_conditional_entropy_upper_bound": (_hx, _P, _pmin, _pmax),
    "theorem5_bound": (_B, _cmi),
    "theorem5_entropy_bound": (_B, _hc, _C),
    "theorem3_mi_lower_bound_sharp": (_P, _t, _d),
    "theorem4_mi_lower_bound_sharp": (_P, _pmin, _pmax),
}
_theorem5_np = sp.lambdify(ARGUMENTS["theorem5_bound"], SYMBOLIC["theorem5_bound"], "numpy")
_theorem5h_np = sp.lambdify(ARGUMENTS["theorem5_entropy_bound"], SYMBOLIC["theorem5_entropy_bound"], "numpy")


# ----------------------------------------------------------------------------- Theorem 3
def theorem3_mi_lower_bound(p_t: Float[ArrayLike, "*batch"], t: Float[ArrayLike, "*batch"], d: Int[ArrayLike, "*batch"],
                            base: float = math.e) -> Float[np.ndarray, "*batch"] | float:
    """Theorem 3 (continuous Fano on the sphere; Duchi & Wainwright 2013, Prop. 2), corrected.

    Hypotheses: X_l uniform on S^{d-1} (normalised surface measure sigma), X_prev any
    random vector jointly distributed with it, rho the cosine distance, t >= 0 (t >= 2: the whole sphere, P_t = 0),
    P_t = P[rho(X_l, X_prev) > t] (using ">=" instead, as the paper does, only
    lowers the bound). Conclusion:

        I(X_l; X_prev) >= (1 - P_t) log(1 / F(t, d)) - log 2,

    F(t, d) = sigma(cap of cosine radius t) (:func:`log_cap_fraction`). Erratum: the
    paper writes mu(X) / sup mu(B(t) cap X) with mu the Lebesgue measure of R^d, which
    is 0/0 on a sphere; the ratio must use the surface measure, and then the paper's
    boundary-measure hypotheses are not needed. Vectorised; never overflows (the log
    cap fraction is computed in log space, e.g. 2.7e3 nats at d = 8192, t = 0.3).
    """
    lb = _lb(base)
    logf = log_cap_fraction(t, d)
    p = _theorem3_p_t(p_t, t)
    with np.errstate(invalid="ignore"):
        val = np.where(p == 1.0, 0.0, (1.0 - p) * (-logf)) - math.log(2.0)
    return _v.result(np.asarray(val) / lb, p_t, t, d)


def theorem3_mi_lower_bound_sharp(p_t: Float[ArrayLike, "*batch"], t: Float[ArrayLike, "*batch"],
                                  d: Int[ArrayLike, "*batch"],
                                  base: float = math.e) -> Float[np.ndarray, "*batch"] | float:
    """Sharper Theorem 3: I(X_l; X_prev) >= d(1 - P_t || F(t, d)) (binary KL), same hypotheses.

    With X_l uniform on the sphere every cap has measure F, so q_t = F exactly and the
    data-processing bound applies with no slack from p_min/p_max; it dominates
    :func:`theorem3_mi_lower_bound` (by the amount P_t log(1/(1 - F)) + log 2 - h(P_t) >= 0).
    """
    lb = _lb(base)
    logf = log_cap_fraction(t, d)
    p = _theorem3_p_t(p_t, t)
    a = 1.0 - p
    # 1 - F(t, d) = F(2 - t, d) (the complement of a cap is the opposite open cap)
    log1mf = log_cap_fraction(np.maximum(2.0 - np.asarray(t, dtype=float), 0.0), d)  # t >= 2: empty, p = 0
    with np.errstate(divide="ignore", invalid="ignore"):
        term1 = np.where(a > 0, a * (np.log(np.where(a > 0, a, 1.0)) - logf), 0.0)
        term2 = np.where(p > 0, p * (np.log(np.where(p > 0, p, 1.0)) - log1mf), 0.0)
    return _v.result(np.maximum(term1 + term2, 0.0) / lb, p_t, t, d)  # a KL divergence: >= 0 under round-off too


# ----------------------------------------------------------------------------- Theorem 4
def theorem4_mi_lower_bound(p_t: Float[ArrayLike, "*batch"], p_min: Float[ArrayLike, "*batch"],
                            p_max: Float[ArrayLike, "*batch"],
                            base: float = math.e) -> Float[np.ndarray, "*batch"] | float:
    """Theorem 4 (Braun & Pokutta 2015, Prop. 2.2 with R = {rho <= t}): lower bound on I(X_l; X_prev).

    Hypotheses: X_l, X_prev any random variables (no unit norm needed), rho symmetric,
    P_t = P[rho(X_l, X_prev) > t] (strict: with ">=" the bound is false, see
    ``tests/theory/test_errata_informational.py``), 0 <= p_min <= q_t <= p_max, p_max > 0,
    p_min < 1. Conclusion:

        I(X_l; X_prev) >= (1 - P_t) log(1/p_max) - P_t log(1 - p_min) - h(P_t).

    The paper's extra hypothesis p_min + p_max < 1 is not needed (the proof never uses
    it; tests check the bound on exact pmfs that violate it). Vectorised. Finite for every
    p_max > 0, subnormal ones included (log p_max, never log(1/p_max), which overflows
    below 1e-308).
    """
    lb = _lb(base)
    p = _v.probability("p_t", p_t)
    pmin, pmax = _pmin_pmax(p_min, p_max)
    with np.errstate(divide="ignore", invalid="ignore"):
        val = -(1.0 - p) * np.log(pmax) - p * np.log1p(-pmin) - binary_entropy(p)
    return _v.result(np.asarray(val) / lb, p_t, p_min, p_max)


def theorem4_mi_lower_bound_sharp(p_t: Float[ArrayLike, "*batch"], p_min: Float[ArrayLike, "*batch"],
                                  p_max: Float[ArrayLike, "*batch"],
                                  base: float = math.e) -> Float[np.ndarray, "*batch"] | float:
    """Sharper Theorem 4: I >= min_{p_min <= q <= p_max} d(1 - P_t || q) = d(1 - P_t || clip(1 - P_t, p_min, p_max)).

    Same hypotheses. Since d(1 - P || q) = (1 - P) log(1/q) + P log(1/(1 - q)) - h(P) and
    q ranges over [p_min, p_max], this is always >= :func:`theorem4_mi_lower_bound`, and it
    is attained when q_t is the clipped value.
    """
    lb = _lb(base)
    p = _v.probability("p_t", p_t)
    pmin, pmax = _pmin_pmax(p_min, p_max)
    a = 1.0 - p
    return _v.result(np.asarray(binary_kl(a, np.clip(a, pmin, pmax))) / lb, p_t, p_min, p_max)


def corollary4_conditional_entropy_upper_bound(h_x: Float[ArrayLike, "*batch"], p_t: Float[ArrayLike, "*batch"],
                                               p_min: Float[ArrayLike, "*batch"], p_max: Float[ArrayLike, "*batch"],
                                               base: float = math.e) -> Float[np.ndarray, "*batch"] | float:
    """Corollary 4 (Braun & Pokutta 2015, Cor. 2.3): H(X_l | X_prev) <= H(X_l) + log p_max + h(P_t) + P_t log((1-p_min)/p_max).

    Hypotheses of :func:`theorem4_mi_lower_bound`, and H(X_l) = ``h_x`` finite (discrete
    entropy, or differential entropy w.r.t. a reference measure, in ``base`` units).
    It is H(X_l) - theorem4_mi_lower_bound, i.e. I = H(X_l) - H(X_l | X_prev).
    """
    lb = _lb(base)
    hx = _v.check("h_x", h_x)
    return _v.result(hx - np.asarray(theorem4_mi_lower_bound(p_t, p_min, p_max)) / lb, h_x, p_t, p_min, p_max)


# ----------------------------------------------------------------------------- Theorem 5
def theorem5_bound(B: Float[ArrayLike, "*batch"], cmi: Float[ArrayLike, "*batch"],
                   base: float = math.e) -> Float[np.ndarray, "*batch"] | float:
    """Theorem 5, first inequality: E||E[Z|X_l] - E[Z|X_prev]||^2 <= 2 B^2 I(Z; X_l | X_prev).

    Hypotheses: ||Z|| <= B almost surely, X_prev - X_l - Z a Markov chain; ``cmi`` is
    I(Z; X_l | X_prev) in ``base`` units (the constant 2 is for nats: Pinsker's
    inequality TV <= sqrt(KL / 2) holds with KL in nats, so bits are converted).
    The constant 2 is sharp (``proofs/theorem5.py``, step 6). Vectorised.
    """
    lb = _lb(base)
    b = _v.nonneg("B", B)
    c = _v.nonneg("cmi", cmi)
    return _v.result(_theorem5_np(b, c * lb), B, cmi)


def theorem5_entropy_bound(B: Float[ArrayLike, "*batch"], h_cond: Float[ArrayLike, "*batch"],
                           C: Float[ArrayLike, "*batch"] = 0.0,
                           base: float = math.e) -> Float[np.ndarray, "*batch"] | float:
    """Theorem 5, entropy form: E||E[Z|X_l] - E[Z|X_prev]||^2 <= 2 B^2 (H(X_l | X_prev) + C).

    Hypotheses of :func:`theorem5_bound` and H(X_l | Z, X_prev) >= -C. Discrete X_l:
    C = 0. X_l with a conditional density p_{X_l | Z, X_prev} <= M (w.r.t. the
    reference measure that defines H; on the sphere: the surface measure): C = log M.
    Erratum: the paper's proof ends with 2 B^2 H + C, which contradicts its statement
    and is false (kept counterexample in ``tests/theory/test_errata_informational.py``);
    the statement's 2 B^2 (H + C) is the right one (it is 2 B^2 times I <= H + C).
    ``h_cond`` and ``C`` are in ``base`` units.
    """
    lb = _lb(base)
    b = _v.nonneg("B", B)
    h = _v.check("h_cond", h_cond)
    c = _v.check("C", C)
    _v.check("h_cond + C", h + c, 0.0)  # it bounds I(Z; X_l | X_prev) >= 0
    return _v.result(np.maximum(np.asarray(_theorem5h_np(b, h * lb, c * lb)), 0.0), B, h_cond, C)


# ----------------------------------------------------------------------------- Lemma 4
def _markov_check(p, atol):
    # X_prev - X_l - Z  <=>  p(x_prev, x_l, z) p(x_l) = p(x_prev, x_l) p(x_l, z)
    lhs = p * p.sum(axis=(0, 2))[None, :, None]
    rhs = p.sum(axis=2)[:, :, None] * p.sum(axis=0)[None, :, :]
    err = float(np.max(np.abs(lhs - rhs)))
    if err > atol:
        raise ValueError(f"`p` must be a Markov chain X_prev - X_l - Z (p[x_prev, x_l, z]); "
                         f"max |p(a,b,c)p(b) - p(a,b)p(b,c)| = {err:.3g} > {atol}")


def lemma4_expected_kl(p: Float[ArrayLike, "x_prev x_l z"], base: float = math.e, require_markov: bool = True,
                       atol: float = 1e-12) -> float:
    """E_{(X_l, X_prev)}[D(p_{Z|X_l} || p_{Z|X_prev})] for a 3-d pmf ``p[x_prev, x_l, z]`` (exact).

    Lemma 4 (App. A.1): under the Markov chain X_prev - X_l - Z this equals
    I(Z; X_l | X_prev). ``require_markov`` raises ValueError when ``p`` is not one.
    """
    lb = _lb(base)
    p = validate_pmf(p)
    if p.ndim != 3:
        raise ValueError(f"`p` must be a 3-d pmf p[x_prev, x_l, z], got {p.ndim} axes")
    if require_markov:
        _markov_check(p, atol)
    p_ab = p.sum(axis=2)
    p_l = p.sum(axis=(0, 2))
    p_prev = p.sum(axis=(1, 2))
    z_given_l = np.divide(p.sum(axis=0), p_l[:, None], out=np.zeros(p.shape[1:]), where=p_l[:, None] > 0)
    z_given_prev = np.divide(p.sum(axis=1), p_prev[:, None], out=np.zeros((p.shape[0], p.shape[2])),
                             where=p_prev[:, None] > 0)
    total = 0.0
    for a, b in zip(*np.nonzero(p_ab)):
        pz, qz = z_given_l[b], z_given_prev[a]
        m = pz > 0
        if np.any(qz[m] == 0):
            return math.inf
        total += p_ab[a, b] * float(np.sum(pz[m] * (np.log(pz[m]) - np.log(qz[m]))))
    return float(max(total, 0.0) / lb)  # a mean of KL divergences: >= 0 under round-off too


def lemma4_gap(p: Float[ArrayLike, "x_prev x_l z"], base: float = math.e, atol: float = 1e-12) -> float:
    """E[D(p_{Z|X_l} || p_{Z|X_prev})] - I(Z; X_l | X_prev) for a Markov chain pmf ``p[x_prev, x_l, z]`` (Lemma 4: 0)."""
    return float(lemma4_expected_kl(p, base=base, atol=atol) - conditional_mutual_information(p, 2, 1, 0, base=base))


def conditional_mean_gap(p: Float[ArrayLike, "x_prev x_l z"], z_values: Float[ArrayLike, "z *k"]) -> float:
    """E||E[Z | X_l] - E[Z | X_prev]||^2 for ``p[x_prev, x_l, z]`` and Z's values ``z_values`` (n_z x k), exactly.

    The left side of Theorem 5; the expectation is over the joint law of (X_l, X_prev).
    """
    p = validate_pmf(p)
    z = np.asarray(z_values, dtype=float)
    z = z[:, None] if z.ndim == 1 else z
    if p.ndim != 3 or z.shape[0] != p.shape[2]:
        raise ValueError(f"`z_values` must have one row per value of Z ({p.shape[-1]}), got shape {z.shape}")
    p_l, p_prev = p.sum(axis=(0, 2)), p.sum(axis=(1, 2))
    m_l = np.divide(p.sum(axis=0) @ z, p_l[:, None], out=np.zeros((p.shape[1], z.shape[1])), where=p_l[:, None] > 0)
    m_prev = np.divide(p.sum(axis=1) @ z, p_prev[:, None], out=np.zeros((p.shape[0], z.shape[1])),
                       where=p_prev[:, None] > 0)
    diff = m_l[None, :, :] - m_prev[:, None, :]
    return float(np.sum(p.sum(axis=2) * np.sum(diff**2, axis=-1)))


# ----------------------------------------------------------------------------- finite laws
class ProximalQuantities(NamedTuple):
    """P_t, q_t, p_min, p_max of a finite joint law (exact), the inputs of Theorems 3-4."""

    p_t: float
    q_t: float
    p_min: float
    p_max: float


def exact_proximal_quantities(p: Float[ArrayLike, "x_l x_prev"], rho: Float[ArrayLike, "x_l x_prev"],
                              t: float) -> ProximalQuantities:
    """Exact P_t = P[rho > t], q_t, p_min, p_max for ``p[i, j] = P(X_l = v_i, X_prev = v_j)``.

    ``rho[i, j]`` is the distance between the i-th value of X_l and the j-th of X_prev;
    p_min / p_max are the inf / sup over the support of X_l of P[rho(X_prev, x) <= t].
    Entries of ``rho`` within round-off of [0, 2] are clipped there and ``t >= 2`` is the
    whole range (``skipit.theory._validation``). Raises ValueError when ``p`` is not a 2-d
    pmf, ``rho.shape != p.shape``, an entry of ``rho`` is NaN or outside [0, 2], or ``t``
    is NaN or negative.
    """
    p = validate_pmf(p)
    if p.ndim != 2:
        raise ValueError(f"`p` must be a 2-d pmf p[i, j] = P(X_l = v_i, X_prev = v_j), got {p.ndim} axes")
    if np.shape(rho) != p.shape:
        raise ValueError(f"`rho` must have the shape of `p` {p.shape}, got {np.shape(rho)}")
    rho = _v.check("rho", rho, 0.0, COSINE_DISTANCE_MAX, what="cosine distances")
    try:
        t = float(_v.check("t", t, 0.0, what="a cosine-distance threshold"))
    except TypeError:
        raise ValueError(f"`t` must be a number >= 0, got {t!r}") from None
    inside = rho <= t
    p_l, p_prev = p.sum(1), p.sum(0)
    ball = np.clip(inside.astype(float) @ p_prev, 0.0, 1.0)
    sup = p_l > 0
    return ProximalQuantities(min(1.0, float(p[~inside].sum())), min(1.0, float(p_l @ ball)), float(ball[sup].min()),
                              float(ball[sup].max()))


# ----------------------------------------------------------------------------- from samples
class InformationalBounds(NamedTuple):
    """Estimates from n paired samples and the bounds they certify with probability >= ``confidence``.

    ``p_t``, ``q_t``: point estimates of P[rho > t] and of the product-measure probability
    q_t (a U-statistic); ``*_lower`` / ``*_upper``: their confidence limits (Clopper-Pearson
    for P_t, Hoeffding's U-statistic bound for q_t); ``p_max_sample`` / ``p_min_sample``: the
    max / min over the sample points x_i of the leave-one-out estimate of
    P[rho(X_prev, x_i) <= t], each within ``sample_point_error`` of its true value
    simultaneously for all i with probability >= 1 - delta/2 (Hoeffding + union bound;
    the sup over the whole support may be larger, it is not identifiable from samples);
    ``mi_lower``: d(.||.) minimised over the confidence box (Theorem 4 sharp form with
    p_min, p_max set to the confidence limits of q_t), ``mi_lower_paper_form``: the
    paper's Theorem 4 expression at the least favourable point of the box;
    ``h_cond_upper``: ``h_x - mi_lower`` (Corollary 4) when ``h_x`` was given, else NaN.
    """

    n: int
    t: float
    p_t: float
    p_t_lower: float
    p_t_upper: float
    q_t: float
    q_t_lower: float
    q_t_upper: float
    p_max_sample: float
    p_min_sample: float
    sample_point_error: float
    mi_lower: float
    mi_lower_paper_form: float
    h_cond_upper: float
    confidence: float


def _cosine_distance_matrix(a, b, chunk=2048):
    an = a / np.linalg.norm(a, axis=1, keepdims=True)
    bn = b / np.linalg.norm(b, axis=1, keepdims=True)
    out = np.empty((a.shape[0], b.shape[0]))
    for s in range(0, a.shape[0], chunk):
        out[s:s + chunk] = 1.0 - an[s:s + chunk] @ bn.T
    return np.clip(out, 0.0, 2.0)


def _min_paper_form_over_box(p_lo, p_hi, pmin, pmax):
    # f(P) = (1-P) log(1/pmax) - P log(1-pmin) - h(P) is convex in P: minimise on [p_lo, p_hi]
    a, b = -math.log(pmax), -math.log1p(-pmin)
    p_star = 1.0 / (1.0 + math.exp(min(b - a, 700.0)))
    p = min(max(p_star, p_lo), p_hi)
    return float(theorem4_mi_lower_bound(p, pmin, pmax))


def informational_bounds_from_samples(x_l: Float[ArrayLike, "n d"], x_prev: Float[ArrayLike, "n d"], t: float,
                                      delta: float = 0.05, h_x: float | None = None,
                                      base: float = math.e) -> InformationalBounds:
    """Estimate P_t, q_t, p_min, p_max from paired samples and certify Theorem 4 / Corollary 4.

    ``x_l``, ``x_prev``: arrays n x d, row i a pair (X_l, X_prev) drawn i.i.d. (e.g. one
    token's hidden states at layers l and l-1); rho is the cosine distance; ``t >= 0``
    (``t >= 2`` is the whole range).
    With probability >= 1 - ``delta`` over the sample, I(X_l; X_prev) >= ``mi_lower``
    (and H(X_l | X_prev) <= ``h_cond_upper`` if H(X_l) = ``h_x``): P_t lies in its two-sided
    Clopper-Pearson interval at level delta/2, q_t in its two-sided Hoeffding interval
    at level delta/2 (union bound), and on that event Theorem 4 applies with
    p_min = q_t_lower, p_max = q_t_upper. The leave-one-out sup/inf over sample points are
    reported with their own simultaneous error but are not used by the certificate.
    """
    lb = _lb(base)
    a, b = np.asarray(x_l, dtype=float), np.asarray(x_prev, dtype=float)
    if a.ndim != 2 or a.shape != b.shape or a.shape[0] < 2:
        raise ValueError(f"`x_l` and `x_prev` must be arrays of the same shape n x d with n >= 2, "
                         f"got {a.shape} and {b.shape}")
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        raise ValueError("`x_l` and `x_prev` must be finite (no NaN or inf)")
    if np.any(np.linalg.norm(a, axis=1) == 0) or np.any(np.linalg.norm(b, axis=1) == 0):
        raise ValueError("`x_l` and `x_prev` must have no zero rows (cosine distance undefined)")
    t = float(_v.check("t", t, 0.0, what="a cosine-distance threshold"))
    delta = float(_v.check("delta", delta, 0.0, 1.0, low_closed=False, high_closed=False))
    n = a.shape[0]
    rho = _cosine_distance_matrix(a, b)
    inside = rho <= t
    k = int(np.sum(~np.diag(inside)))
    p_t = k / n
    alpha = delta / 2.0
    p_lo = float(clopper_pearson_lower(k, n, alpha / 2))  # two-sided at alpha: each side at alpha / 2
    p_hi = float(clopper_pearson_upper(k, n, alpha / 2))
    off = inside.sum() - np.trace(inside)
    q_t = float(off) / (n * (n - 1))
    eps_q = math.sqrt(math.log(4.0 / delta) / (2.0 * (n // 2)))
    q_lo, q_hi = max(0.0, q_t - eps_q), min(1.0, q_t + eps_q)
    loo = (inside.sum(axis=1) - np.diag(inside)) / (n - 1)
    eps_pt = math.sqrt(math.log(4.0 * n / delta) / (2.0 * (n - 1)))
    # on the good event: 1 - P_t in [1 - p_hi, 1 - p_lo], q_t in [q_lo, q_hi]
    a_lo, a_hi = 1.0 - p_hi, 1.0 - p_lo
    if a_lo > q_hi:
        mi = float(binary_kl(a_lo, q_hi))
    elif a_hi < q_lo:
        mi = float(binary_kl(a_hi, q_lo))
    else:
        mi = 0.0
    if q_hi > 0 and q_lo < 1:
        paper = _min_paper_form_over_box(p_lo, p_hi, q_lo, q_hi)
    else:
        paper = -math.inf
    h_up = math.nan if h_x is None else float(h_x) - mi / lb
    return InformationalBounds(n, t, p_t, p_lo, p_hi, q_t, q_lo, q_hi, float(loo.max()), float(loo.min()), eps_pt,
                               mi / lb, paper / lb, h_up, 1.0 - delta)


# ----------------------------------------------------------------------------- registry
register(
    "theorem3_mi_lower_bound", "Theorem 3 (App. A.2; Duchi & Wainwright 2013, Prop. 2)",
    "X_l uniform on S^{d-1}, P_t = P[rho(X_l,X_prev) > t] => I(X_l;X_prev) >= (1-P_t) log(1/F(t,d)) - log 2, "
    "F = normalised surface measure of a cosine cap (nats).",
    example={"p_t": 0.1, "t": 0.3, "d": 4096}, status="corrected",
    erratum="Lebesgue measure of a sphere subset is 0 (ratio 0/0): use the surface measure; boundary hypotheses "
            "unnecessary.",
)
register(
    "theorem3_mi_lower_bound_sharp", "Theorem 3, sharper form (via Braun & Pokutta 2015)",
    "Same hypotheses => I(X_l;X_prev) >= d(1-P_t || F(t,d)) >= the paper's form.",
    example={"p_t": 0.1, "t": 0.3, "d": 4096}, status="sharper than the paper",
)
register(
    "theorem4_mi_lower_bound", "Theorem 4 (App. A.2; Braun & Pokutta 2015, Prop. 2.2)",
    "P_t = P[rho > t] (strict), 0 <= p_min <= q_t <= p_max, p_max > 0, p_min < 1 => "
    "I >= (1-P_t) log(1/p_max) - P_t log(1-p_min) - h(P_t) (nats).",
    example={"p_t": 0.1, "p_min": 0.01, "p_max": 0.05}, status="as stated",
    erratum="Hypothesis p_min + p_max < 1 is unnecessary; unit norm unnecessary; P_t must use '>' (with '>=' false).",
)
register(
    "theorem4_mi_lower_bound_sharp", "Theorem 4, sharper form",
    "Same hypotheses => I >= d(1-P_t || clip(1-P_t, p_min, p_max)) >= the paper's form.",
    example={"p_t": 0.1, "p_min": 0.01, "p_max": 0.05}, status="sharper than the paper",
)
register(
    "corollary4_conditional_entropy_upper_bound", "Corollary 4 (App. A.2; Braun & Pokutta 2015, Cor. 2.3)",
    "Theorem 4's hypotheses, H(X_l) = h_x finite => H(X_l|X_prev) <= h_x + log p_max + h(P_t) "
    "+ P_t log((1-p_min)/p_max).",
    example={"h_x": 5.0, "p_t": 0.1, "p_min": 0.01, "p_max": 0.05}, status="as stated",
    erratum="Same unnecessary hypothesis as Theorem 4; on the sphere H is w.r.t. surface measure.",
)
register(
    "theorem5_bound", "Theorem 5, first inequality (Sec. 3.4, App. A.2)",
    "||Z|| <= B a.s., X_prev - X_l - Z Markov => E||E[Z|X_l]-E[Z|X_prev]||^2 <= 2 B^2 I(Z;X_l|X_prev) (I in nats); "
    "constant 2 sharp.",
    example={"B": 1.0, "cmi": 0.05}, status="as stated",
)
register(
    "theorem5_entropy_bound", "Theorem 5, entropy form (Sec. 3.4, App. A.2)",
    "Add H(X_l|Z,X_prev) >= -C => E||E[Z|X_l]-E[Z|X_prev]||^2 <= 2 B^2 (H(X_l|X_prev) + C); discrete C = 0, "
    "density <= M: C = log M.",
    example={"B": 1.0, "h_cond": 0.05, "C": 0.0}, status="as stated",
    erratum="The proof's last line 2B^2 H + C contradicts the statement and is false (counterexample kept); "
            "the statement's 2B^2 (H + C) holds.",
)
register(
    "lemma4_gap", "Lemma 4 (App. A.1)",
    "X_prev - X_l - Z Markov => E[D(p_{Z|X_l} || p_{Z|X_prev})] = I(Z;X_l|X_prev); returns the difference (0).",
    example={"p": (np.array([0.5, 0.5])[:, None, None] * np.array([[0.9, 0.1], [0.2, 0.8]])[:, :, None]
                   * np.array([[0.7, 0.3], [0.1, 0.9]])[None, :, :]).tolist()},
    status="as stated",
)
