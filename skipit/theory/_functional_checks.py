"""Vectorised argument checks shared by the functional-side modules.

Every check raises ``ValueError("`name` must be <range>, got <value>")`` naming the
argument, the allowed range and the first offending value (NaN included: it fails
every comparison).
"""

from __future__ import annotations

import math

import numpy as np

__all__: list[str] = []


def _describe(low, high, low_closed, high_closed):
    if high == math.inf and low == -math.inf:
        return "finite"
    if high == math.inf:
        return f"{'>=' if low_closed else '>'} {low:g}"
    if low == -math.inf:
        return f"{'<=' if high_closed else '<'} {high:g}"
    return f"in {'[' if low_closed else '('}{low:g}, {high:g}{']' if high_closed else ')'}"


def check(name, value, low=-math.inf, high=math.inf, *, low_closed=True, high_closed=None, integer=False):
    """``value`` as a float array, after checking it lies in the interval, elementwise.

    ``high_closed`` defaults to ``False`` when ``high`` is infinite (so inf is rejected)
    and ``True`` otherwise.
    """
    if high_closed is None:
        high_closed = high != math.inf
    a = np.asarray(value, dtype=float)
    ok = a >= low if low_closed else a > low
    ok &= a <= high if high_closed else a < high
    if low == -math.inf:
        ok &= np.isfinite(a)
    if integer:
        ok &= np.floor(a) == a
    if not np.all(ok):
        bad = np.atleast_1d(a)[np.atleast_1d(~ok)][0]
        what = _describe(low, high, low_closed, high_closed) + (" and an integer" if integer else "")
        raise ValueError(f"`{name}` must be {what}, got {float(bad)!r}")
    return a


def nonneg(name, value):
    """A finite value >= 0 (Lipschitz constants, error terms)."""
    return check(name, value, 0.0)


def positive(name, value):
    """A finite value > 0 (the paper's eps)."""
    return check(name, value, 0.0, low_closed=False)


def result(value, *inputs):
    """A Python float when every input was a scalar, else the broadcast array."""
    value = np.asarray(value, dtype=float)
    if all(np.ndim(x) == 0 for x in inputs):
        return float(value)
    return np.broadcast_to(value, np.broadcast_shapes(*(np.shape(x) for x in inputs))).copy()
