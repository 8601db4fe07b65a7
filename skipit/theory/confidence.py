"""Betting confidence bounds on the mean of bounded i.i.d. units (Waudby-Smith & Ramdas 2024).

The certificate's tests (``U_l < eps``, ``P_l > 1 - eps``, ``A_l < tau_att``) need one-sided
confidence bounds on a mean that are valid for every ``n`` and sharp when the variance is
small. Hoeffding and the Maurer-Pontil empirical Bernstein bound (:mod:`skipit.theory.redundancy`,
from sufficient statistics) pay a range term ``7 R log(2/delta) / (3(n-1))`` whatever the data;
the betting bound here pays about ``sqrt(2 V log(1/delta) / n)`` plus a term that vanishes with
the variance, down to the floor that no valid bound escapes (a mass ``log(1/delta)/n`` at the top
of the range can hide in any sample: the width is at least about ``R log(1/delta) / n``).

**Hypotheses.** ``x_1, ..., x_n`` are i.i.d. (the independent units: images, not the tokens or
the several questions of one image; pass one value per unit, e.g. the unit's mean) with values
in ``[lo, hi]``, and the order in which they are bet on is fixed independently of the values.
Here the order is a permutation drawn from ``numpy.random.default_rng(seed)`` (``seed=0`` by
default), so the bound does not depend on how the caller sorted the units (a file sorted by
class); any order fixed before the values are seen keeps the guarantee.

**Construction** (WSR 2024, Sec. 4: the capital process, with the predictable plug-in bets of
their fixed-``n`` interval, Sec. 4.3 and Remark 1, one-sided). Map the values to
``y = (x - lo) / (hi - lo)`` in ``[0, 1]``. For a candidate mean ``m`` the capital

    K_t(m) = prod_{i <= t} (1 - lambda_i(m) (y_i - m)),
    lambda_i(m) = min(sqrt(2 log(1/delta) / (n s2_{i-1})), c / (1 - m)),

with ``s2_{i-1} = (1/4 + sum_{j < i} (y_j - mu_j)^2) / i`` and ``mu_j = (1/2 + sum_{k <= j} y_k) / (j + 1)``
(predictable: ``lambda_i`` uses ``y_1..y_{i-1}`` only) and truncation ``c`` in ``(0, 1)``, is a
non-negative supermartingale under ``H_0(m): E[y] >= m`` (each factor has conditional mean
``1 - lambda_i (E[y] - m) <= 1`` and is ``>= 1 - c > 0``). Ville's inequality gives
``P[max_{t <= n} K_t(m) >= 1/delta] <= delta`` under ``H_0(m)``. Every factor is non-decreasing
in ``m`` (the truncated bet is continuous and the factor increases on both of its pieces), so
the rejected means form an interval ``[U, 1]`` and

    U = inf{m : max_{t <= n} K_t(m) >= 1/delta}

satisfies ``P[E[y] >= U] <= delta`` (if ``E[y] >= U`` then ``H_0(E[y])`` was rejected). ``U`` is
found by bisection (to about 1e-15, returning the rejected end, so rounding never makes it
smaller). The lower bound mirrors the values: ``lo + hi - U(lo + hi - x)``.

**Conclusion.** ``P[E[X] <= betting_upper_bound(x, delta, lo, hi)] >= 1 - delta`` and
``P[E[X] >= betting_lower_bound(x, delta, lo, hi)] >= 1 - delta``, for every ``n >= 1`` and every
law on ``[lo, hi]``. ``betting_p_value`` is the matching p-value ``1 / max_t K_t(m)`` (valid for
any bet sizes, so it may be compared with any level). The bounds need the per-unit values
themselves, not only their mean and variance: the capital is a product over the units in order.

Reference: I. Waudby-Smith and A. Ramdas, "Estimating means of bounded random variables by
betting", J. R. Stat. Soc. B 86(1), 2024 (arXiv:2010.09686). Coverage is checked by simulation on
exact finite laws in ``tests/theory/test_betting_coverage.py`` and
``tests/theory/test_clustered_coverage.py``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # shapes for readers and type checkers; jaxtyping is not a runtime dependency
    from jaxtyping import ArrayLike, Float

from skipit.theory import _validation as _c

__all__ = ["BETTING_TRUNCATION", "betting_upper_bound", "betting_lower_bound", "betting_p_value"]

#: Default truncation ``c`` of the bets (``lambda (y - m) <= c``): a unit at the far end of the
#: range costs at most ``log(1/(1 - c))`` of log-capital. WSR use 1/2 or 3/4 for confidence
#: sequences; a fixed-``n`` bound on data near one end of the range (a mean distance near 0 on
#: ``[0, 2]``) gains most from a larger ``c``: the width on constant data is about
#: ``(1 - m) log(1/delta) / (c n)`` on ``[0, 1]``. Any ``c`` in ``(0, 1)`` is valid.
BETTING_TRUNCATION = 0.9

_BISECTIONS = 52  # halvings of [0, 1]: 2**-52, about float64 resolution near 1

#: No closed form (a root of a random capital process); kept for the uniform module layout.
SYMBOLIC: dict = {}


def _units(values, lo, hi):
    """``(y, lo, hi)``: values mapped to ``[0, 1]`` (after the range checks), as ``(..., n)``."""
    low = float(_c.check("lo", lo))
    high = float(_c.check("hi", hi))
    if not high > low:
        raise ValueError(f"`hi` must be > lo = {low!r}, got {high!r}")
    if np.ndim(values) == 0:
        raise ValueError(f"`values` must hold the units along its last axis, got a scalar {float(values)!r}")
    x = _c.check("values", values, low, high)  # round-off judged in the values' own dtype
    return (x - low) / (high - low), low, high


def _order(y, seed):
    """The units in a seeded permutation along the last axis (fixed before the values are read)."""
    n = y.shape[-1]
    perm = np.random.default_rng(int(_c.check("seed", seed, 0.0, integer=True))).permutation(n)
    return y[..., perm]


def _plug_in_bets(y, log_inv_delta):
    """Predictable plug-in bets ``sqrt(2 log(1/delta) / (n s2_{i-1}))`` (before truncation), ``(..., n)``."""
    n = y.shape[-1]
    t = np.arange(1, n + 1, dtype=float)
    mu = (0.5 + np.cumsum(y, axis=-1)) / (t + 1.0)
    s2 = (0.25 + np.cumsum((y - mu) ** 2, axis=-1)) / (t + 1.0)
    s2_prev = np.concatenate([np.full(y.shape[:-1] + (1,), 0.25), s2[..., :-1]], axis=-1)
    return np.sqrt(2.0 * log_inv_delta[..., None] / (n * s2_prev))


def _max_log_capital(y, bets, m, truncation):
    """``max_{t <= n} log K_t(m)`` (and ``log K_0 = 0``) of the bet against ``E[y] >= m``, ``(...)``."""
    with np.errstate(divide="ignore"):
        cap = np.where(m < 1.0, truncation / np.maximum(1.0 - m, 0.0), np.inf)
    lam = np.minimum(bets, cap[..., None])
    log_k = np.cumsum(np.log1p(-lam * (y - m[..., None])), axis=-1)
    return np.maximum(log_k.max(axis=-1), 0.0)


def _upper01(y, delta, truncation):
    """The upper bound ``U`` on ``E[y]`` for ``y`` in ``[0, 1]`` (see the module docstring)."""
    batch = y.shape[:-1]
    d = np.broadcast_to(delta, batch).astype(float)
    if y.shape[-1] == 0:
        return np.ones(batch)
    threshold = -np.log(d)
    bets = _plug_in_bets(y, threshold)
    low = np.zeros(batch)  # never rejected: at m = 0 every factor is <= 1
    high = np.ones(batch)
    rejected_at_one = _max_log_capital(y, bets, high, truncation) >= threshold
    for _ in range(_BISECTIONS):
        mid = 0.5 * (low + high)
        rej = _max_log_capital(y, bets, mid, truncation) >= threshold
        high = np.where(rej, mid, high)
        low = np.where(rej, low, mid)
    return np.where(rejected_at_one, high, 1.0)


def _level(delta):
    return _c.check("delta", delta, 0.0, 1.0, low_closed=False, high_closed=False)


def _truncation(truncation):
    return float(_c.check("truncation", truncation, 0.0, 1.0, low_closed=False, high_closed=False))


def betting_upper_bound(values: Float[ArrayLike, "*batch n"], delta: Float[ArrayLike, "*batch"],
                        lo: float = 0.0, hi: float = 1.0, *, truncation: float = BETTING_TRUNCATION,
                        seed: int = 0) -> Float[np.ndarray, "*batch"] | float:
    """Upper confidence bound on ``E[X]`` from ``n`` i.i.d. units in ``[lo, hi]`` by betting.

    Hypotheses: the last axis of ``values`` holds ``n`` i.i.d. draws of ``X`` in ``[lo, hi]``,
    one per independent unit (average the correlated parts of a unit first: the tokens or the
    questions of one image); the betting order is a permutation seeded by ``seed``, fixed
    before the values are read. Conclusion: with probability ``>= 1 - delta``,
    ``E[X] <= bound`` (Waudby-Smith & Ramdas 2024, the capital process with predictable
    plug-in bets, one-sided; construction and proof in the module docstring). ``n = 0``
    gives ``hi``. Leading axes are independent problems (many layers at once); ``delta``
    broadcasts against them. A call with one row (``values`` 1-D) returns a float.

    Values a few float32 ulps outside ``[lo, hi]`` are clipped; values really outside are
    rejected. ``truncation`` is the cap ``c`` of the bets (:data:`BETTING_TRUNCATION`).
    """
    y, low, high = _units(values, lo, hi)
    d = _level(delta)
    u = _upper01(_order(y, seed), np.broadcast_to(d, y.shape[:-1]), _truncation(truncation))
    out = low + (high - low) * u
    return float(out) if out.ndim == 0 else out


def betting_lower_bound(values: Float[ArrayLike, "*batch n"], delta: Float[ArrayLike, "*batch"],
                        lo: float = 0.0, hi: float = 1.0, *, truncation: float = BETTING_TRUNCATION,
                        seed: int = 0) -> Float[np.ndarray, "*batch"] | float:
    """Lower confidence bound on ``E[X]``: :func:`betting_upper_bound` of the mirrored values.

    Same hypotheses (``n`` i.i.d. units in ``[lo, hi]``, order seeded by ``seed``). Conclusion:
    with probability ``>= 1 - delta``, ``E[X] >= lo + hi - betting_upper_bound(lo + hi - x)``
    (``lo`` when ``n = 0``).
    """
    y, low, high = _units(values, lo, hi)
    d = _level(delta)
    u = _upper01(_order(1.0 - y, seed), np.broadcast_to(d, y.shape[:-1]), _truncation(truncation))
    out = high - (high - low) * u
    return float(out) if out.ndim == 0 else out


def betting_p_value(values: Float[ArrayLike, "*batch n"], null: Float[ArrayLike, "*batch"],
                    lo: float = 0.0, hi: float = 1.0, *, alternative: str = "less",
                    delta: float = 0.05, truncation: float = BETTING_TRUNCATION,
                    seed: int = 0) -> Float[np.ndarray, "*batch"] | float:
    """Betting p-value for a one-sided hypothesis on ``E[X]`` from i.i.d. units in ``[lo, hi]``.

    ``alternative="less"`` tests ``H_0: E[X] >= null`` (evidence that the mean is below
    ``null``: the geometric and attention tests), ``"greater"`` tests ``H_0: E[X] <= null``
    (the proximal test). The p-value is ``min(1, 1 / max_{t <= n} K_t)``, ``K`` the capital of
    the module docstring at ``m = null``, with bets tuned for level ``delta``. Hypotheses as
    :func:`betting_upper_bound`. Conclusion: under ``H_0``, ``P[p <= a] <= a`` for every ``a``
    in ``(0, 1)`` whatever ``delta`` (Ville's inequality), so p-values of several tests may be
    combined by Holm or fixed-sequence rules. Consistent with the bounds: at ``a = delta``,
    ``p <= delta`` exactly when the bound at level ``delta`` rejects ``null`` (up to the
    bisection's 1e-15).
    """
    if alternative not in ("less", "greater"):
        raise ValueError(f"`alternative` must be 'less' or 'greater', got {alternative!r}")
    y, low, high = _units(values, lo, hi)
    d = np.broadcast_to(_level(delta), y.shape[:-1]).astype(float)
    m = (_c.check("null", null, low, high) - low) / (high - low)
    if alternative == "greater":
        y, m = 1.0 - y, 1.0 - m
    m = np.broadcast_to(m, y.shape[:-1]).astype(float)
    y = _order(y, seed)
    if y.shape[-1] == 0:
        out = np.ones(y.shape[:-1])
    else:
        out = np.exp(-_max_log_capital(y, _plug_in_bets(y, -np.log(d)), m, _truncation(truncation)))
    return float(out) if out.ndim == 0 else out
