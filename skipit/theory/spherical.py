"""Normalised surface measure of cosine-distance caps on the unit sphere S^{d-1}.

The cap of radius ``t`` around a point ``x`` is ``{x' in S^{d-1}: 1 - <x, x'> <= t}``
(``t`` is a cosine distance, in [0, 2]). Its measure under the uniform (normalised
surface) measure sigma on S^{d-1} does not depend on ``x`` and is

    F(t, d) = 1/2 I_{t(2-t)}((d-1)/2, 1/2)            for 0 <= t <= 1,
    F(t, d) = 1 - 1/2 I_{t(2-t)}((d-1)/2, 1/2)        for 1 <  t <= 2,

with ``I_x(a, b)`` the regularised incomplete beta function (the cap of polar angle
theta has ``sin^2 theta = 1 - (1 - t)^2 = t (2 - t)``). For the hidden sizes of
vision-language models ``F`` underflows double precision (falls below the smallest
normal double, 2.2e-308) for every ``t`` below about 0.46 at d = 4096 and 0.51 at
d = 5120 (it rounds to exactly 0 below about 0.45 and 0.50), so everything here is
computed in log space: a Lentz continued
fraction for ``log I_x(a, b)`` where it converges fast, the symmetry
``I_x(a, b) = 1 - I_{1-x}(b, a)`` elsewhere.

Used by Theorem 3 (``skipit.theory.informational.theorem3_mi_lower_bound``): with
``X_l`` uniform on the sphere, ``sup_x sigma(cap(x, t)) = F(t, d)``.
"""

from __future__ import annotations

import numpy as np
from scipy.special import betaln

__all__ = ["log_cap_fraction", "cap_fraction"]

_TINY = 1e-300
_CF_EPS = 1e-16
_CF_MAX_ITER = 20000


def _check_t_d(t, d):
    t = np.asarray(t, dtype=float)
    d_arr = np.asarray(d, dtype=float)
    if np.any(np.isnan(t)):
        raise ValueError(f"`t` must be a number in [0, 2], got NaN (t={t!r})")
    if np.any(~np.isfinite(d_arr)):
        bad = d_arr[~np.isfinite(d_arr)].ravel()[0]
        raise ValueError(f"`d` must be a finite integer >= 2 (the ambient dimension), got {bad}")
    if np.any((t < 0) | (t > 2)):
        bad = t[(t < 0) | (t > 2)].ravel()[0]
        raise ValueError(f"`t` must be in [0, 2] (a cosine distance), got {bad}")
    if np.any(d_arr < 2) or np.any(d_arr != np.round(d_arr)):
        bad = d_arr[(d_arr < 2) | (d_arr != np.round(d_arr))].ravel()[0]
        raise ValueError(f"`d` must be an integer >= 2 (the ambient dimension), got {bad}")
    return np.broadcast_arrays(t, d_arr)


def _log_betainc_cf(a, b, x):
    """log I_x(a, b) by the modified Lentz continued fraction (valid for 0 < x < 1).

    Converges quickly for x < (a + 1) / (a + b + 2); callers use the symmetry otherwise.
    """
    a, b, x = (np.asarray(v, dtype=float) for v in np.broadcast_arrays(a, b, x))
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
    return a * np.log(x) + b * np.log1p(-x) - betaln(a, b) - np.log(a) + np.log(h)


def _log_betainc_and_complement(a, b, x, one_minus_x):
    """(log I_x(a, b), I_{1-x}(b, a)) for 0 < x < 1, each accurate where it matters.

    ``one_minus_x`` is passed separately so that it keeps full relative precision.
    Returns log I and the complement J = 1 - I (J is exact to rounding only where the
    symmetric branch was used; elsewhere it is computed as -expm1(log I)).
    """
    direct = x < (a + 1.0) / (a + b + 2.0)
    log_i = np.empty_like(x)
    comp = np.empty_like(x)
    if direct.any():
        li = _log_betainc_cf(a[direct], b[direct], x[direct])
        log_i[direct] = li
        comp[direct] = -np.expm1(li)
    sym = ~direct
    if sym.any():
        lj = _log_betainc_cf(b[sym], a[sym], one_minus_x[sym])
        j = np.exp(lj)
        comp[sym] = j
        log_i[sym] = np.log1p(-j)
    return log_i, comp


def log_cap_fraction(t, d):
    """Natural log of the normalised surface measure of a cosine-distance cap on S^{d-1}.

    ``log sigma({x' in S^{d-1} : 1 - <x, x'> <= t}) / sigma(S^{d-1})`` for ``t`` in [0, 2]
    and integer ``d >= 2``, vectorised (``t`` and ``d`` broadcast). Exact values:
    ``-inf`` at ``t = 0`` (a point has measure zero), ``log(1/2)`` at ``t = 1`` (a
    hemisphere), ``0`` at ``t = 2``. Never underflows: for ``d = 8192, t = 1e-6`` the
    value is about -5.2e4. Relative accuracy better than 1e-11 (worst 2.8e-12 vs mpmath in
    the reference table, d up to 8192; checked in ``tests/theory/test_spherical.py``).

    Raises ValueError for ``t`` outside [0, 2], ``d`` < 2 or non-integer, or NaN.
    """
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
    full = t == 2.0
    half = t == 1.0
    out[zero] = -np.inf
    out[full] = 0.0
    out[half] = np.log(0.5)
    inner = ~(zero | full | half)
    if inner.any():
        ti = t[inner]
        log_i, comp = _log_betainc_and_complement(a[inner], b[inner], x[inner], one_minus_x[inner])
        small = ti <= 1.0
        res = np.empty_like(ti)
        res[small] = np.log(0.5) + log_i[small]
        # t > 1: F = 1 - I/2, and I = 1 - comp
        big = ~small
        i_val = np.where(log_i[big] > -745.0, np.exp(log_i[big]), 0.0)
        res[big] = np.log1p(-0.5 * i_val)
        out[inner] = res
    return out.reshape(shape)[()] if shape == () else out.reshape(shape)


def cap_fraction(t, d):
    """The normalised cap measure F(t, d) itself (``exp(log_cap_fraction(t, d))``; underflows to 0 for large d)."""
    return np.exp(log_cap_fraction(t, d))


SYMBOLIC: dict = {}
