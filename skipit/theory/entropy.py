"""Discrete entropies of joint pmfs, exactly, and plug-in estimators from quantized samples.

Exact functions take a joint pmf as a numpy array ``p`` (one axis per variable,
entries >= 0 summing to 1) and name variables by axes: ``mutual_information(p, 0, (1, 2))``
is I(X0; X1, X2). ``base`` is ``e`` (nats, the default) or any other base > 0, != 1
(``base=2`` gives bits). Zero-probability cells contribute 0 (0 log 0 = 0).

Plug-in estimators take samples of quantized variables (an ``n`` array of symbols or
an ``n x k`` array whose rows are joint symbols) and apply the Miller-Madow bias
correction ``(K - 1) / (2 n)`` nats to each entropy, with ``K`` the number of
observed symbols (Miller 1955; Paninski 2003, Neural Computation 15(6):1191-1253).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from skipit.theory import _validation as _v

if TYPE_CHECKING:  # shapes for readers and type checkers; jaxtyping is not a runtime dependency
    from jaxtyping import ArrayLike, Float, Shaped

__all__ = [
    "validate_pmf",
    "shannon_entropy",
    "conditional_entropy",
    "mutual_information",
    "conditional_mutual_information",
    "binary_entropy",
    "binary_kl",
    "kl_divergence",
    "plugin_entropy",
    "plugin_conditional_entropy",
    "plugin_mutual_information",
    "plugin_conditional_mutual_information",
]



def _log_base(base) -> float:
    try:
        b = float(base)
    except (TypeError, ValueError):
        raise ValueError(f"`base` must be a finite number > 0 and != 1, got {base!r}") from None
    if not (b > 0) or b == 1.0 or not math.isfinite(b):
        raise ValueError(f"`base` must be a finite number > 0 and != 1, got {base!r}")
    return math.log(b)


def validate_pmf(p: Float[ArrayLike, "*axes"], name: str = "p", atol: float | None = None) -> np.ndarray:
    """Return ``p`` as a float64 array after checking it is a pmf (entries in [0, 1], sum 1 within ``atol``).

    Entries within round-off of [0, 1] (the tolerance of ``p``'s own dtype,
    ``skipit.theory._validation``) are clipped there; the total is then checked against 1
    with ``atol``, by default ``_validation.pmf_total_tolerance(p)``: ``1e-9`` for a float64
    pmf, more for one held in float32 or lower precision.
    """
    if np.size(p) == 0:
        raise ValueError(f"`{name}` must be a non-empty pmf, got an empty array")
    tol = _v.pmf_total_tolerance(p) if atol is None else atol
    arr = _v.check(name, p, 0.0, 1.0, what="a pmf with entries")
    total = float(arr.sum())
    if abs(total - 1.0) > tol:
        raise ValueError(f"`{name}` must be a pmf summing to 1 (tolerance {tol:.3g}), got sum {total!r}")
    return arr


def _axes(ax, ndim, name):
    axes = (ax,) if np.isscalar(ax) else tuple(ax)
    for a in axes:
        if not isinstance(a, (int, np.integer)) or not -ndim <= a < ndim:
            raise ValueError(f"`{name}` must be axes of the pmf (0 <= axis < {ndim}), got {ax!r}")
    return tuple(sorted(int(a) % ndim for a in axes))


def _h(q: np.ndarray) -> float:
    q = q[q > 0]
    return float(-(q * np.log(q)).sum())


def _marginal(p, keep):
    drop = tuple(i for i in range(p.ndim) if i not in keep)
    return p.sum(axis=drop) if drop else p


def entropy(p: Float[ArrayLike, "*axes"], axes: int | tuple[int, ...] | None = None, base: float = math.e) -> float:
    """H(X_axes) of the joint pmf ``p`` (all axes by default)."""
    lb = _log_base(base)
    p = validate_pmf(p)
    keep = tuple(range(p.ndim)) if axes is None else _axes(axes, p.ndim, "axes")
    return _h(_marginal(p, keep)) / lb


#: Package-level name (``skipit.theory.shannon_entropy``): ``skipit.theory.entropy`` is this module.
shannon_entropy = entropy


def conditional_entropy(p: Float[ArrayLike, "*axes"], x: int | tuple[int, ...], y: int | tuple[int, ...],
                        base: float = math.e) -> float:
    """H(X | Y) = H(X, Y) - H(Y), with X, Y given as axes (int or tuple) of ``p``."""
    lb = _log_base(base)
    p = validate_pmf(p)
    xa, ya = _axes(x, p.ndim, "x"), _axes(y, p.ndim, "y")
    return (_h(_marginal(p, tuple(sorted(set(xa) | set(ya))))) - _h(_marginal(p, ya))) / lb


def mutual_information(p: Float[ArrayLike, "*axes"], x: int | tuple[int, ...], y: int | tuple[int, ...],
                       base: float = math.e) -> float:
    """I(X; Y) = H(X) + H(Y) - H(X, Y) (clipped at 0 against rounding)."""
    lb = _log_base(base)
    p = validate_pmf(p)
    xa, ya = _axes(x, p.ndim, "x"), _axes(y, p.ndim, "y")
    val = _h(_marginal(p, xa)) + _h(_marginal(p, ya)) - _h(_marginal(p, tuple(sorted(set(xa) | set(ya)))))
    return max(val, 0.0) / lb


def conditional_mutual_information(p: Float[ArrayLike, "*axes"], x: int | tuple[int, ...], y: int | tuple[int, ...],
                                   z: int | tuple[int, ...], base: float = math.e) -> float:
    """I(X; Y | Z) = H(X, Z) + H(Y, Z) - H(X, Y, Z) - H(Z) (clipped at 0 against rounding)."""
    lb = _log_base(base)
    p = validate_pmf(p)
    xa, ya, za = _axes(x, p.ndim, "x"), _axes(y, p.ndim, "y"), _axes(z, p.ndim, "z")
    u = lambda *s: tuple(sorted(set().union(*s)))  # noqa: E731
    val = (_h(_marginal(p, u(xa, za))) + _h(_marginal(p, u(ya, za)))
           - _h(_marginal(p, u(xa, ya, za))) - _h(_marginal(p, za)))
    return max(val, 0.0) / lb


def binary_entropy(q: Float[ArrayLike, "*batch"], base: float = math.e) -> Float[np.ndarray, "*batch"] | float:
    """h(q) = -q log q - (1 - q) log(1 - q), vectorised, >= 0 (``+0.0`` at the ends); ``q`` in [0, 1]."""
    lb = _log_base(base)
    qq = _v.probability("q", q)
    with np.errstate(divide="ignore", invalid="ignore"):
        h = 0.0 - np.where(qq > 0, qq * np.log(qq), 0.0) - np.where(qq < 1, (1 - qq) * np.log1p(-qq), 0.0)
    return _v.result(h / lb, q)


def binary_kl(p: Float[ArrayLike, "*batch"], q: Float[ArrayLike, "*batch"],
              base: float = math.e) -> Float[np.ndarray, "*batch"] | float:
    """d(p || q) = p log(p/q) + (1-p) log((1-p)/(1-q)), vectorised, >= 0; +inf where p > 0 = q or p < 1 = q.

    Finite for every ``q`` in (0, 1), however small (``q = 5e-324`` gives about 744 p):
    logs are taken of ``q`` and ``1 - q`` (``log1p``), never of ``1/q``. A ``q`` outside
    [0, 1] by round-off (of its own dtype) is read at the tolerance inside the range, so
    it gives a finite value; only ``q`` exactly 0 or 1 gives +inf.
    """
    lb = _log_base(base)
    pp, qq = np.broadcast_arrays(_v.probability("p", p), _v.probability("q", q, pole=True))
    with np.errstate(divide="ignore", invalid="ignore"):
        a = np.where(pp > 0, pp * (np.log(pp) - np.log(qq)), 0.0)
        b = np.where(pp < 1, (1 - pp) * (np.log1p(-pp) - np.log1p(-qq)), 0.0)
    return _v.result(np.maximum(a + b, 0.0) / lb, p, q)


def _pole_free(raw, q):
    """``q`` with entries that were below 0 by round-off read at the tolerance above 0 (``_validation``, poles)."""
    below = np.asarray(_v.as_float_array(raw) < 0)
    return np.where(below, _v.tolerance(raw), q) if below.any() else q


def kl_divergence(p: Float[ArrayLike, "*axes"], q: Float[ArrayLike, "*axes"], base: float = math.e) -> float:
    """D(p || q) for two pmfs of the same shape (+inf if p is not absolutely continuous w.r.t. q).

    An entry of ``q`` below 0 by round-off is read at the tolerance above 0 (finite),
    only an exact 0 where ``p > 0`` gives +inf.
    """
    lb = _log_base(base)
    p = validate_pmf(p, "p")
    q = _pole_free(q, validate_pmf(q, "q"))
    if p.shape != q.shape:
        raise ValueError(f"`p` and `q` must have the same shape, got {p.shape} and {q.shape}")
    m = p > 0
    if np.any(q[m] == 0):
        return math.inf
    return max(float((p[m] * (np.log(p[m]) - np.log(q[m]))).sum()), 0.0) / lb


def _symbols(samples, name):
    s = np.asarray(samples)
    if s.ndim == 1:
        s = s[:, None]
    if s.ndim != 2 or s.shape[0] == 0:
        raise ValueError(f"`{name}` must be an array of n >= 1 samples (n or n x k), got shape {s.shape}")
    if s.dtype.kind == "f" and np.any(np.isnan(s)):
        raise ValueError(f"`{name}` must be quantized symbols, got NaN")
    _, inverse = np.unique(s, axis=0, return_inverse=True)
    return inverse.ravel()


def _plugin_h(codes, miller_madow):
    n = codes.size
    counts = np.bincount(codes)
    counts = counts[counts > 0]
    q = counts / n
    h = float(-(q * np.log(q)).sum())
    if miller_madow:
        h += (counts.size - 1) / (2.0 * n)
    return h


def _joint_codes(*arrays):
    n = {a.shape[0] for a in arrays}
    if len(n) != 1:
        raise ValueError(f"sample arrays must have the same number of rows, got {sorted(n)}")
    return _symbols(np.column_stack(arrays), "samples")


def plugin_entropy(x: Shaped[ArrayLike, "n *k"], base: float = math.e, miller_madow: bool = True) -> float:
    """Plug-in H(X) from quantized samples ``x`` (n or n x k), Miller-Madow corrected by default.

    The correction adds (K - 1)/(2n) nats, K = number of distinct observed symbols; it
    removes the O(1/n) bias of the plug-in estimate for a fixed alphabet.
    """
    lb = _log_base(base)
    return _plugin_h(_symbols(x, "x"), miller_madow) / lb


def plugin_conditional_entropy(x: Shaped[ArrayLike, "n *k"], y: Shaped[ArrayLike, "n *k"], base: float = math.e,
                               miller_madow: bool = True) -> float:
    """Plug-in H(X | Y) = H(X, Y) - H(Y), each Miller-Madow corrected."""
    lb = _log_base(base)
    xs, ys = np.asarray(x), np.asarray(y)
    xs = xs[:, None] if xs.ndim == 1 else xs
    ys = ys[:, None] if ys.ndim == 1 else ys
    return (_plugin_h(_joint_codes(xs, ys), miller_madow) - _plugin_h(_symbols(ys, "y"), miller_madow)) / lb


def plugin_mutual_information(x: Shaped[ArrayLike, "n *k"], y: Shaped[ArrayLike, "n *k"], base: float = math.e,
                              miller_madow: bool = True) -> float:
    """Plug-in I(X; Y) = H(X) + H(Y) - H(X, Y), each Miller-Madow corrected (may be slightly < 0)."""
    lb = _log_base(base)
    xs, ys = np.asarray(x), np.asarray(y)
    xs = xs[:, None] if xs.ndim == 1 else xs
    ys = ys[:, None] if ys.ndim == 1 else ys
    return (_plugin_h(_symbols(xs, "x"), miller_madow) + _plugin_h(_symbols(ys, "y"), miller_madow)
            - _plugin_h(_joint_codes(xs, ys), miller_madow)) / lb


def plugin_conditional_mutual_information(x: Shaped[ArrayLike, "n *k"], y: Shaped[ArrayLike, "n *k"],
                                          z: Shaped[ArrayLike, "n *k"], base: float = math.e,
                                          miller_madow: bool = True) -> float:
    """Plug-in I(X; Y | Z) = H(X,Z) + H(Y,Z) - H(X,Y,Z) - H(Z), each Miller-Madow corrected."""
    lb = _log_base(base)
    xs, ys, zs = (np.asarray(a)[:, None] if np.asarray(a).ndim == 1 else np.asarray(a) for a in (x, y, z))
    return (_plugin_h(_joint_codes(xs, zs), miller_madow) + _plugin_h(_joint_codes(ys, zs), miller_madow)
            - _plugin_h(_joint_codes(xs, ys, zs), miller_madow) - _plugin_h(_symbols(zs, "z"), miller_madow)) / lb


SYMBOLIC: dict = {}
