"""The one home of argument checks in ``skipit.theory``, with one round-off tolerance.

Round-off is not bad input (scipy's convention). A value within the tolerance of a
*closed* end of its nominal range is accepted and clipped onto that end; a value
beyond it is rejected with ``ValueError("`name` must be <range>, got <value>")``, on
one line, naming the argument, the range and the first offending value as a plain
number (``1.5``, ``nan``; never ``array(1.5)``). Open ends (``eps > 0``, a confidence
in ``(0, 1)``) get no tolerance: ``eps = -1e-9`` is still an error.

The tolerances, and why:

* :data:`ROUNDOFF` ``= 2**-20`` (about 9.5e-7), relative to ``max(1, |end|)``: eight
  float32 ulps of 1 (float32 eps is ``2**-23``). Distances and probabilities reach the
  theory from torch, mostly in float32: a cosine distance of two equal vectors comes out
  as ``1 - cos`` with ``cos`` a few ulps above 1, i.e. about -1e-7, every day; a
  probability computed as ``k / n`` then mapped through float32 can be ``1 + 6e-8``.
  Eight ulps covers the dot-product round-off of unit vectors with pairwise summation;
  a value 1e-6 outside ``[0, 1]`` is no longer round-off and is rejected.
* :data:`INTEGER_ROUNDOFF` ``= 8 * 2**-52`` relative: integers (``L``, ``d``, ``folds``)
  come from float64 arithmetic (``3.0000000000000004 = 0.1 * 30``), never from float32
  activations, so eight float64 ulps suffice and ``3.001`` stays an error.
* :data:`PMF_ATOL` ``= 1e-9``: how far the total of a pmf may be from 1 (entries are
  clipped to ``[0, 1]`` with :data:`ROUNDOFF` first).
"""

from __future__ import annotations

import math

import numpy as np

__all__: list[str] = []

#: Relative round-off accepted (and clipped) at a closed end of a range: 8 float32 ulps of 1.
ROUNDOFF = 2.0 ** -20
#: Relative distance to the nearest integer accepted (and rounded) for integer arguments.
INTEGER_ROUNDOFF = 8 * 2.0 ** -52
#: Absolute tolerance on the total of a pmf.
PMF_ATOL = 1e-9


def tolerance(end):
    """Round-off accepted beyond a closed range end ``end`` (array or scalar)."""
    return ROUNDOFF * np.maximum(1.0, np.abs(end))


def _describe(low, high, low_closed, high_closed):
    if high == math.inf and low == -math.inf:
        return "finite"
    if high == math.inf:
        return f"{'>=' if low_closed else '>'} {low:g}"
    if low == -math.inf:
        return f"{'<=' if high_closed else '<'} {high:g}"
    return f"in {'[' if low_closed else '('}{low:g}, {high:g}{']' if high_closed else ')'}"


def check(name, value, low=-math.inf, high=math.inf, *, low_closed=True, high_closed=None, integer=False,
          what="") -> np.ndarray:
    """``value`` as a float array in the range, clipped there if it was within round-off of a closed end.

    ``low`` and ``high`` may be arrays (broadcast against ``value``). ``high_closed``
    defaults to ``False`` when ``high`` is infinite (so inf is rejected) and ``True``
    otherwise; NaN and infinities are always rejected. ``integer`` accepts values
    within :data:`INTEGER_ROUNDOFF` of an integer and rounds them. ``what`` names the
    kind of value in the message (``"a probability"``).
    """
    lo = np.asarray(low, dtype=float)
    hi = np.asarray(high, dtype=float)
    if high_closed is None:
        high_closed = bool(np.all(hi != math.inf))
    a = np.asarray(value, dtype=float)
    # tolerances are formed on the (small) range ends, then broadcast against the value
    lo_c = lo - np.where(np.isfinite(lo), tolerance(np.where(np.isfinite(lo), lo, 0.0)), 0.0) if low_closed else lo
    hi_c = hi + np.where(np.isfinite(hi), tolerance(np.where(np.isfinite(hi), hi, 0.0)), 0.0) if high_closed else hi
    ok = (a >= lo_c) if low_closed else (a > lo)
    ok &= (a <= hi_c) if high_closed else (a < hi)
    ok &= np.isfinite(a)
    if integer:
        with np.errstate(invalid="ignore"):
            r = np.round(a)
            ok &= np.abs(a - r) <= INTEGER_ROUNDOFF * np.maximum(1.0, np.abs(r))
    if not np.all(ok):
        shape = np.broadcast_shapes(a.shape, lo.shape, hi.shape)
        i = np.flatnonzero(~np.broadcast_to(ok, shape).ravel())[0]
        at = [float(np.broadcast_to(x, shape).ravel()[i]) for x in (a, lo, hi)]
        described = _describe(at[1], at[2], low_closed, high_closed)
        kind = f"{what} " if what else ""
        raise ValueError(f"`{name}` must be {kind}{described}{' and an integer' if integer else ''}, got {at[0]!r}")
    out = np.clip(a, lo if low_closed else -np.inf, hi if high_closed else np.inf)
    if integer:
        out = np.round(out)
    return out


def nonneg(name, value) -> np.ndarray:
    """A finite value >= 0 (Lipschitz constants, error terms); ``-1e-12`` is read as 0."""
    return check(name, value, 0.0)


def positive(name, value) -> np.ndarray:
    """A finite value > 0 (the paper's eps); no tolerance at the open end."""
    return check(name, value, 0.0, low_closed=False)


def probability(name, value, *, low_open=False, high_open=False) -> np.ndarray:
    """A probability in ``[0, 1]`` (ends open on request), clipped there within round-off."""
    return check(name, value, 0.0, 1.0, low_closed=not low_open, high_closed=not high_open, what="a probability")


def result(value, *inputs) -> np.ndarray | float:
    """A Python float when every input was a scalar, else the broadcast array."""
    value = np.asarray(value, dtype=float)
    if all(np.ndim(x) == 0 for x in inputs):
        return float(value)
    return np.broadcast_to(value, np.broadcast_shapes(*(np.shape(x) for x in inputs))).copy()
