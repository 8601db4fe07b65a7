"""The one home of argument checks in ``skipit.theory``, with one round-off policy.

Round-off is not bad input, and a bug is not round-off. A value within round-off of a
*closed* end of its nominal range is accepted and clipped onto that end; a value beyond
it is rejected with ``ValueError("`name` must be <range>, got <value>")``, on one line,
naming the argument, the range and the first offending value as a plain number
(``1.5``, ``nan``; never ``array(1.5)``). Open ends (``eps > 0``, a confidence in
``(0, 1)``) get no tolerance: ``eps = -1e-9`` is still an error.

Round-off is measured in the precision the value was computed in, read from its dtype
*before* any cast to float64:

    tolerance = ROUNDOFF_ULPS * eps(dtype) * max(1, |end|),    ROUNDOFF_ULPS = 8

with ``eps`` the machine epsilon of the dtype (:func:`dtype_eps`):

==============================================  ==========  ==================
input                                            eps         tolerance at 0, 1
==============================================  ==========  ==================
Python float or int, float64 or integer array    2**-52      1.8e-15
float32                                          2**-23      9.5e-7
float16                                          2**-10      7.8e-3
bfloat16                                         2**-7       6.25e-2
==============================================  ==========  ==================

bfloat16 arrays come from ``ml_dtypes`` (numpy has no such type); any other object
whose ``dtype`` is named ``float16``/``half``/``bfloat16``/``float32``/``float64`` (a
torch tensor, say) is read by that name, without importing its library. Eight ulps is
the rounding of one quantity computed in that precision as ``1 - cos`` or ``k / n`` (a
cosine of two equal vectors comes out a few ulps above 1). An error that is not
round-off is refused: a probability ``(n + 1) / n`` with ``n = 2**21`` (an off-by-one
count over two million tokens) is ``1 + 4.8e-7``, two billion float64 ulps above 1.

This is not scipy's convention: scipy has no tolerance (``bernoulli(1 + 2.2e-16).pmf(1)``
and ``betainc(2, 3, 1 + 2.2e-16)`` are nan).

Integers (``L``, ``d``, ``folds``): a value within the same tolerance of an integer is
rounded to it (``0.1 * 30 = 3.0000000000000004`` is 3; ``3.001`` is an error).

Poles: where the function is infinite at a closed end (``log q`` at ``q = 0`` in a KL
divergence, ``log F(t, d)`` at ``t = 0``), a value outside that end by round-off is read
at the tolerance *inside* the end (``check(..., pole=True)``): the rounding cannot tell
the true value from any point of that band, and the band's inner edge gives a finite
answer it allows. A value exactly on the end keeps its exact, possibly infinite, meaning.

The total of a pmf has its own tolerance, :func:`pmf_total_tolerance`: ``PMF_ATOL = 1e-9``,
or for a pmf held in a lower precision ``tolerance * log2(size)`` if that is larger
(summing ``size`` entries in that precision errs by about ``log2(size)`` ulps).
"""

from __future__ import annotations

import math

import numpy as np

__all__: list[str] = []

#: Round-off accepted at a closed end of a range, in machine epsilons of the input's dtype.
ROUNDOFF_ULPS = 8
#: Absolute tolerance on the total of a float64 pmf (see :func:`pmf_total_tolerance`).
PMF_ATOL = 1e-9

_FLOAT64_EPS = 2.0 ** -52
#: Machine epsilon by dtype name (``str(dtype)`` after its last dot: ``torch.bfloat16`` -> ``bfloat16``).
_EPS_BY_NAME = {
    "float64": _FLOAT64_EPS, "double": _FLOAT64_EPS,
    "float32": 2.0 ** -23, "float": 2.0 ** -23,
    "float16": 2.0 ** -10, "half": 2.0 ** -10,
    "bfloat16": 2.0 ** -7,
}


def dtype_eps(value) -> float:
    """Machine epsilon of the precision ``value`` was computed in (float64 for Python numbers and integers)."""
    dtype = getattr(value, "dtype", None)
    if dtype is None and isinstance(value, (list, tuple)):
        try:
            dtype = np.asarray(value).dtype
        except (TypeError, ValueError):
            dtype = None
    if dtype is None:
        return _FLOAT64_EPS
    name = str(dtype).rsplit(".", 1)[-1]
    if name in _EPS_BY_NAME:
        return _EPS_BY_NAME[name]
    try:
        np_dtype = np.dtype(dtype)
    except TypeError:
        return _FLOAT64_EPS
    return float(np.finfo(np_dtype).eps) if np_dtype.kind == "f" else _FLOAT64_EPS


def tolerance(value, end=0.0) -> np.ndarray | float:
    """Round-off accepted for ``value`` beyond a closed range end ``end`` (array or scalar): see the module docstring."""
    return ROUNDOFF_ULPS * dtype_eps(value) * np.maximum(1.0, np.abs(end))


def pmf_total_tolerance(p) -> float:
    """How far the total of the pmf ``p`` may be from 1: ``max(PMF_ATOL, tolerance(p) * log2(size))``."""
    size = int(np.size(p))
    return max(PMF_ATOL, float(tolerance(p)) * max(1.0, math.log2(max(size, 1))))


def as_float_array(value) -> np.ndarray:
    """``value`` as a float64 array; an object numpy cannot read (a bfloat16 torch tensor) through its ``float()``."""
    try:
        return np.asarray(value, dtype=float)
    except (TypeError, RuntimeError):
        to_float = getattr(value, "float", None)
        if to_float is None:
            raise
        return np.asarray(to_float(), dtype=float)


def _describe(low, high, low_closed, high_closed):
    if high == math.inf and low == -math.inf:
        return "finite"
    if high == math.inf:
        return f"{'>=' if low_closed else '>'} {low:g}"
    if low == -math.inf:
        return f"{'<=' if high_closed else '<'} {high:g}"
    return f"in {'[' if low_closed else '('}{low:g}, {high:g}{']' if high_closed else ')'}"


def check(name, value, low=-math.inf, high=math.inf, *, low_closed=True, high_closed=None, integer=False,
          what="", pole=False) -> np.ndarray:
    """``value`` as a float64 array in the range, clipped there if it was within round-off of a closed end.

    ``low`` and ``high`` may be arrays (broadcast against ``value``). ``high_closed``
    defaults to ``False`` when ``high`` is infinite (so inf is rejected) and ``True``
    otherwise; NaN and infinities are always rejected. The tolerance is
    :func:`tolerance` of ``value``'s own dtype. ``integer`` accepts values within that
    tolerance of an integer and rounds them. ``what`` names the kind of value in the
    message (``"a probability"``). ``pole=True``: a value outside a closed end by
    round-off is read at the tolerance inside that end instead of on it (the function
    is infinite on the end).
    """
    eps = ROUNDOFF_ULPS * dtype_eps(value)
    lo = np.asarray(low, dtype=float)
    hi = np.asarray(high, dtype=float)
    if high_closed is None:
        high_closed = bool(np.all(hi != math.inf))
    a = as_float_array(value)
    with np.errstate(invalid="ignore"):
        tol_lo = eps * np.maximum(1.0, np.abs(np.where(np.isfinite(lo), lo, 0.0)))
        tol_hi = eps * np.maximum(1.0, np.abs(np.where(np.isfinite(hi), hi, 0.0)))
        ok = (a >= lo - tol_lo) if low_closed else (a > lo)
        ok &= (a <= hi + tol_hi) if high_closed else (a < hi)
        ok &= np.isfinite(a)
        if integer:
            r = np.round(a)
            ok &= np.abs(a - r) <= eps * np.maximum(1.0, np.abs(r))
    if not np.all(ok):
        shape = np.broadcast_shapes(a.shape, lo.shape, hi.shape)
        i = np.flatnonzero(~np.broadcast_to(ok, shape).ravel())[0]
        at = [float(np.broadcast_to(x, shape).ravel()[i]) for x in (a, lo, hi)]
        described = _describe(at[1], at[2], low_closed, high_closed)
        kind = f"{what} " if what else ""
        raise ValueError(f"`{name}` must be {kind}{described}{' and an integer' if integer else ''}, got {at[0]!r}")
    lo_to = lo + tol_lo if pole else lo
    hi_to = hi - tol_hi if pole else hi
    out = a
    if low_closed:
        out = np.where(a < lo, lo_to, out)
    if high_closed:
        out = np.where(a > hi, hi_to, out)
    if integer:
        out = np.round(out)
    return np.asarray(out, dtype=float)


def nonneg(name, value) -> np.ndarray:
    """A finite value >= 0 (Lipschitz constants, error terms); round-off below 0 is read as 0."""
    return check(name, value, 0.0)


def positive(name, value) -> np.ndarray:
    """A finite value > 0 (the paper's eps); no tolerance at the open end."""
    return check(name, value, 0.0, low_closed=False)


def probability(name, value, *, low_open=False, high_open=False, pole=False) -> np.ndarray:
    """A probability in ``[0, 1]`` (ends open on request), clipped there within round-off."""
    return check(name, value, 0.0, 1.0, low_closed=not low_open, high_closed=not high_open, what="a probability",
                 pole=pole)


def result(value, *inputs) -> np.ndarray | float:
    """A Python float when every input was a scalar (0-d), else the broadcast float64 array.

    The one return-type rule of the numeric functions of ``skipit.theory``.
    """
    value = np.asarray(value, dtype=float)
    if all(np.ndim(x) == 0 for x in inputs):
        return float(value)
    return np.broadcast_to(value, np.broadcast_shapes(value.shape, *(np.shape(x) for x in inputs))).copy()
