"""Normalised surface measure of cosine-distance caps on the unit sphere S^{d-1}.

The cap of radius ``t`` around a point ``x`` is ``{x' in S^{d-1}: 1 - <x, x'> <= t}``
(``t`` is a cosine distance; any ``t >= 2`` is the whole sphere). Its measure under the uniform (normalised
surface) measure sigma on S^{d-1} does not depend on ``x`` and is

    F(t, d) = 1/2 I_{t(2-t)}((d-1)/2, 1/2)            for 0 <= t <= 1,
    F(t, d) = 1 - 1/2 I_{t(2-t)}((d-1)/2, 1/2)        for 1 <  t <= 2,

with ``I_x(a, b)`` the regularised incomplete beta function (the cap of polar angle
theta has ``sin^2 theta = 1 - (1 - t)^2 = t (2 - t)``). For the hidden sizes of
vision-language models ``F`` underflows double precision (falls below the smallest
normal double, 2.2e-308) for every ``t`` below about 0.46 at d = 4096 and 0.51 at
d = 5120 (it rounds to exactly 0 below about 0.45 and 0.50), so everything here is
computed in log space. Around the hemisphere (``(1 - t)^2 <= 1/2``) at ``d >= 31``,
``log I_x(a, 1/2)`` comes from DiDonato & Morris's large-a expansion (BGRAT) written in
``y = (1 - t)^2``, never in ``x = 1 - y``: x carries an absolute rounding error of one ulp,
which the continued fraction in x turned into a relative error of ``a * eps`` (1.6e-10 at
d = 3e6, t = 1.001). Elsewhere a Lentz continued fraction for ``log I_x(a, b)`` where it
converges fast, the symmetry ``I_x(a, b) = 1 - I_{1-x}(b, a)`` otherwise.

Used by Theorem 3 (``skipit.theory.informational.theorem3_mi_lower_bound``): with
``X_l`` uniform on the sphere, ``sup_x sigma(cap(x, t)) = F(t, d)``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import math

import numpy as np
import sympy as sp
from scipy.special import betaln, erfcx

from skipit.theory import _validation as _v

if TYPE_CHECKING:  # shapes for readers and type checkers; jaxtyping is not a runtime dependency
    from jaxtyping import ArrayLike, Float, Int

__all__ = ["log_cap_fraction", "cap_fraction"]

_TINY = 1e-300
_CF_EPS = 1e-16
_CF_MAX_ITER = 20000


def _check_t_d(t, d) -> tuple[np.ndarray, ...]:
    t = _v.check("t", t, 0.0, what="a cosine-distance threshold", pole=True)
    d_arr = _v.check("d", d, 2.0, integer=True)
    return np.broadcast_arrays(t, d_arr)


#: Below this, log B(a, 1/2) comes from scipy's ``betaln``; from it on, from the Stirling difference.
_STIRLING_FROM = 20.0


def _stirling_tail(x):
    """The tail S(x) of Stirling's series, log Gamma(x) = (x - 1/2) log x - x + log(2 pi)/2 + S(x).

    Five terms (Bernoulli numbers B_2..B_10); the first omitted term, 691 / (360360 x^11), is
    below 1e-17 for x >= 20.
    """
    y = 1.0 / (x * x)
    return (1.0 / 12 - y * (1.0 / 360 - y * (1.0 / 1260 - y * (1.0 / 1680 - y / 1188)))) / x


def _log_beta_half(a):
    """log B(a, 1/2) for a > 0, to a few ulps of its size for every a (no cancellation).

    ``scipy.special.betaln(a, 1/2)`` forms log Gamma(a) - log Gamma(a + 1/2) as a difference of
    two numbers near a log a: at a = 5e5 (d = 10^6) that loses 1e-10 of the absolute value.
    From a = 20 on, the difference comes from Stirling's series instead:
    log Gamma(a) - log Gamma(a + 1/2) = -log(a)/2 - a log1p(1/(2a)) + 1/2 + S(a) - S(a + 1/2).
    """
    a = np.asarray(a, dtype=float)
    big = a >= _STIRLING_FROM
    ab = np.where(big, a, _STIRLING_FROM)
    stirling = (0.5 * np.log(np.pi) - 0.5 * np.log(ab) - ab * np.log1p(0.5 / ab) + 0.5
                + (_stirling_tail(ab) - _stirling_tail(ab + 0.5)))
    return np.where(big, stirling, betaln(np.where(big, 1.0, a), 0.5))


def _betaln(a, b):
    """log B(a, b) where one of a, b is 1/2 (the only case the cap measure needs)."""
    return _log_beta_half(np.where(b == 0.5, a, b))


def _log_betainc_cf(a, b, x, one_minus_x):
    """log I_x(a, b) by the modified Lentz continued fraction (valid for 0 < x < 1, b or a = 1/2).

    Converges quickly for x < (a + 1) / (a + b + 2); callers use the symmetry otherwise.
    ``one_minus_x`` is passed separately: log x and log(1 - x) are each taken from the
    one of the two that is below 1/2, so neither loses relative precision.
    """
    a, b, x, one_minus_x = (np.asarray(v, dtype=float) for v in np.broadcast_arrays(a, b, x, one_minus_x))
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c = np.ones_like(x)
    dd = 1.0 - qab * x / qap
    dd = np.where(np.abs(dd) < _TINY, _TINY, dd)
    dd = 1.0 / dd
    h = dd.copy()
    active = np.ones(x.shape, dtype=bool)
    for m in range(1, _CF_MAX_ITER + 1):
        m2 = 2.0 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        dd = 1.0 + aa * dd
        dd = np.where(np.abs(dd) < _TINY, _TINY, dd)
        c = 1.0 + aa / c
        c = np.where(np.abs(c) < _TINY, _TINY, c)
        dd = 1.0 / dd
        h = np.where(active, h * dd * c, h)
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        dd = 1.0 + aa * dd
        dd = np.where(np.abs(dd) < _TINY, _TINY, dd)
        c = 1.0 + aa / c
        c = np.where(np.abs(c) < _TINY, _TINY, c)
        dd = 1.0 / dd
        delta = dd * c
        h = np.where(active, h * delta, h)
        active &= np.abs(delta - 1.0) >= _CF_EPS
        if not active.any():
            break
    else:  # pragma: no cover - the iteration count above is far beyond what d <= 1e6 needs
        raise RuntimeError("incomplete-beta continued fraction did not converge")
    with np.errstate(divide="ignore"):
        log_x = np.where(x <= 0.5, np.log(x), np.log1p(-one_minus_x))
        log_1mx = np.where(one_minus_x <= 0.5, np.log(one_minus_x), np.log1p(-x))
    return a * log_x + b * log_1mx - _betaln(a, b) - np.log(a) + np.log(h)


def _bgrat_coefficients(b, count):
    """The p_n of DiDonato & Morris (1992, ACM TOMS 18(3), eq. 9.3) for a given b, n < count."""
    fact = [math.factorial(k) for k in range(2 * count + 2)]
    p = [1.0]
    for n in range(1, count):
        s = sum((m * b - n) * p[n - m] / fact[2 * m + 1] for m in range(1, n))
        p.append(s / n + (b - 1.0) / fact[2 * n + 1])
    return p


#: p_n of the BGRAT expansion for b = 1/2 (30 terms, as Boost's ``beta_small_b_large_a_series``).
_BGRAT_P = _bgrat_coefficients(0.5, 30)
#: From this a = (d - 1)/2 on, I_{1-y}(a, 1/2) for y <= 1/2 comes from BGRAT, not the continued fraction.
_BGRAT_FROM = 15.0


def _log_betainc_bgrat(a, y):
    """log I_{1-y}(a, 1/2) for a >= 15 and 0 < y <= 1/2, from y (never from x = 1 - y).

    DiDonato & Morris's BGRAT (1992, eq. 9), the expansion for large a and small b that
    Boost's ``ibeta`` uses, with b = 1/2: with T = a - 1/4 and u = -T log(1 - y),
    ``I = Gamma(a + 1/2) / (Gamma(a) sqrt(T)) sum_n p_n K_n``, ``K_0 = Q(1/2, u) = erfc(sqrt u)``
    and ``K_n`` from eq. 9.6. Everything is scaled by ``e^u`` (``erfcx``), so nothing
    underflows. Near t = 1 at large d the continued fraction in x loses ``a * eps``
    relative (x = 1 - y carries an absolute rounding error of eps, and I is exp(-a y)-like);
    here y enters only through ``log1p(-y)``.
    """
    t = a - 0.25
    lx = np.log1p(-y)
    u = -t * lx
    h = np.sqrt(u / np.pi)  # e^u u^(1/2) / Gamma(1/2)
    k = erfcx(np.sqrt(u))  # e^u Q(1/2, u)
    total = k.copy()
    lx2 = (0.5 * lx) ** 2
    lxp = np.ones_like(y)
    t4 = 4.0 * t * t
    b2n = 0.5
    for p_n in _BGRAT_P[1:]:
        k = (b2n * (b2n + 1.0) * k + (u + b2n + 1.0) * h * lxp) / t4
        lxp = lxp * lx2
        b2n += 2.0
        r = p_n * k
        total = total + r
        if np.all(np.abs(r) <= 1e-17 * np.abs(total)):
            break
    return 0.5 * np.log(np.pi) - _log_beta_half(a) - 0.5 * np.log(t) - u + np.log(total)


def _log_betainc(a, b, x, one_minus_x):
    """log I_x(a, b) for 0 < x < 1 by the continued fraction, in x or (symmetry) in 1 - x.

    ``one_minus_x`` is passed separately so that it keeps full relative precision. Used
    where x is far from 1 or a is small (the caller takes the rest to :func:`_log_betainc_bgrat`).
    """
    direct = x < (a + 1.0) / (a + b + 2.0)
    log_i = np.empty_like(x)
    if direct.any():
        log_i[direct] = _log_betainc_cf(a[direct], b[direct], x[direct], one_minus_x[direct])
    sym = ~direct
    if sym.any():
        log_i[sym] = np.log1p(-np.exp(_log_betainc_cf(b[sym], a[sym], one_minus_x[sym], x[sym])))
    return log_i


def log_cap_fraction(t: Float[ArrayLike, "*batch"], d: Int[ArrayLike, "*batch"]) -> Float[np.ndarray, "*batch"] | float:
    """Natural log of the normalised surface measure of a cosine-distance cap on S^{d-1}.

    ``log sigma({x' in S^{d-1} : 1 - <x, x'> <= t}) / sigma(S^{d-1})`` for ``t >= 0``
    and integer ``d >= 2``, vectorised (``t`` and ``d`` broadcast). Exact values:
    ``-inf`` at ``t = 0`` (a point has measure zero), ``log(1/2)`` at ``t = 1`` (a
    hemisphere), ``0`` for every ``t >= 2`` (the cosine distance never exceeds 2: the cap
    is the whole sphere). Never underflows: for ``d = 8192, t = 1e-6`` the value is about
    -5.2e4. Never positive. Relative error below 2e-13 for ``d`` up to 10^7 and every ``t``
    (worst 1.3e-13 against mpmath at 60 digits, ``tests/theory/data/cap_reference.json``:
    628 points, d = 2 to 10^7, t from 1e-6 to 1.99 and dense around 1: 1 +- 10^-k for
    k = 1..6 and both sides of the old branch switch; checked in
    ``tests/theory/test_spherical.py``). Where it exceeds 3e-14, t > 1 and ``|log F| < 1e-60``:
    there ``log F ~ -I/2`` with ``I ~ exp(-u)``, u in the hundreds, and rounding u alone
    costs ``u eps``.
    Values of ``|log F|`` below 1e-300 (t > 1 at large d) are not representable and come out
    as 0 or subnormal. scipy's ``betaln`` alone would give 2.1e-10 at d = 10^6 (cancellation
    between two log-gammas near 6e6); :func:`_log_beta_half` avoids it.

    Round-off: ``t`` below 0 by round-off of its own dtype is read at the tolerance above 0
    (finite; ``skipit.theory._validation``); only ``t = 0`` exactly gives ``-inf``.
    Raises ValueError for NaN or negative ``t``, and for ``d`` < 2, non-integer or not finite.
    """
    t_in, d_in = t, d
    t, d = _check_t_d(t, d)
    shape = t.shape
    t = t.ravel()
    d = d.ravel()
    out = np.empty_like(t)
    a = (d - 1.0) / 2.0
    b = np.full_like(t, 0.5)
    x = t * (2.0 - t)
    one_minus_x = (1.0 - t) ** 2
    zero = t == 0.0
    full = t >= 2.0
    half = t == 1.0
    out[zero] = -np.inf
    out[full] = 0.0
    out[half] = np.log(0.5)
    inner = ~(zero | full | half)
    if inner.any():
        ti = t[inner]
        ai, yi = a[inner], one_minus_x[inner]
        log_i = np.empty_like(ti)
        near = (yi <= 0.5) & (ai >= _BGRAT_FROM)  # around the hemisphere at d >= 31: in y
        if near.any():
            log_i[near] = _log_betainc_bgrat(ai[near], yi[near])
        far = ~near
        if far.any():
            log_i[far] = _log_betainc(ai[far], b[inner][far], x[inner][far], yi[far])
        small = ti <= 1.0
        res = np.empty_like(ti)
        res[small] = np.log(0.5) + log_i[small]
        big = ~small  # t > 1: F = 1 - I/2
        i_val = np.where(log_i[big] > -745.0, np.exp(log_i[big]), 0.0)
        res[big] = np.log1p(-0.5 * i_val)
        out[inner] = np.minimum(res, 0.0)  # a measure <= 1 under round-off too
    return _v.result(out.reshape(shape), t_in, d_in)


def cap_fraction(t: Float[ArrayLike, "*batch"], d: Int[ArrayLike, "*batch"]) -> Float[np.ndarray, "*batch"] | float:
    """The normalised cap measure F(t, d) itself (``exp(log_cap_fraction(t, d))``; underflows to 0 for large d)."""
    return _v.result(np.exp(log_cap_fraction(t, d)), t, d)


class LogCapFraction(sp.Function):
    """``log F(t, d)`` as a sympy function, for the sympy forms of the bounds that use it (Theorem 3).

    Symbolically it is the closed form of the module docstring:
    ``LogCapFraction(t, d).rewrite(sp.betainc_regularized)`` is ``log`` of the Piecewise
    incomplete-beta expression, and ``evalf`` goes through it (mpmath, any precision). It
    evaluates itself at ``t = 0`` (``-oo``), ``t = 1`` (``-log 2``) and ``t >= 2`` (0).
    ``sp.lambdify(..., "numpy")`` prints a call of :func:`log_cap_fraction`: numpy has no
    incomplete beta function, and F itself underflows (d = 4096, t < 0.46) where its log
    is finite, so a lambdified bound is finite wherever the numeric one is.
    """

    nargs = 2

    @classmethod
    def eval(cls, t, d):
        if t.is_zero:
            return sp.S.NegativeInfinity
        if t == 1:
            return -sp.log(2)
        if (t - 2).is_nonnegative:
            return sp.S.Zero
        return None

    def _eval_rewrite_as_betainc_regularized(self, t, d, **kwargs):
        i = sp.betainc_regularized((d - 1) / 2, sp.Rational(1, 2), 0, t * (2 - t))
        return sp.log(sp.Piecewise((i / 2, t <= 1), (1 - i / 2, True)))

    def _eval_evalf(self, prec):
        if not all(a.is_number for a in self.args):
            return None
        return self.rewrite(sp.betainc_regularized)._eval_evalf(prec)

    def _numpycode(self, printer):
        t, d = (printer._print(a) for a in self.args)
        return f"{printer._module_format('skipit.theory.spherical.log_cap_fraction')}({t}, {d})"


SYMBOLIC: dict = {}
