"""Definitions 1-4 of the paper (Sec. 3.1) as estimators with confidence bounds, and predicates.

The paper's definitions are population statements (``E[rho] < eps``,
``P[rho < t] > 1 - eps``). From n samples of adjacent-layer distances a point estimate
is not a certificate; each estimator here also returns a one-sided bound that holds
with probability at least ``confidence`` over the sample (i.i.d. samples assumed):

* :func:`geometric_redundancy` (Definition 1): mean distance, with an *upper* bound on
  ``E[rho]`` for ``rho`` in ``[0, rho_max]``: Maurer-Pontil empirical Bernstein
  (Maurer & Pontil 2009, Thm. 4), Hoeffding, or the smaller of the two at half the
  error level each (``method="best"``, the default).
* :func:`proximal_probability` (Definition 2): fraction of distances ``< t``, with a
  Clopper-Pearson *lower* bound on ``P[rho < t]``.
* :func:`mean_upper_bound`, :func:`mean_lower_bound`, :func:`clopper_pearson_lower`,
  :func:`clopper_pearson_upper`: the same bounds from sufficient statistics (mean,
  variance, count), for runs that stream sums; the estimators above call them. With every
  unit's value at hand, the betting bounds of :mod:`skipit.theory.confidence` are sharper
  (no range term ``7 R log(2/delta) / (3(n-1))``); the certificate uses those.
* :func:`functional_redundancy` (Definition 3): cross-fitted estimate of
  ``E||f_l(X_l) - f_prev(X_prev)||^2`` with regressors fit on held-out folds.
* :func:`is_informationally_redundant` (Definition 4) takes a conditional entropy value.

Estimators reduce along the last axis, so many repeats can be evaluated at once
(``d`` of shape ``(repeats, n)``).
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
from scipy import stats

if TYPE_CHECKING:  # shapes for readers and type checkers; jaxtyping is not a runtime dependency
    from jaxtyping import ArrayLike, Bool, Float, Int

from skipit.theory import _validation as _c
from skipit.theory._registry import register
from skipit.theory.distances import COSINE_DISTANCE_MAX

__all__ = [
    "MeanEstimate",
    "ProbabilityEstimate",
    "FunctionalEstimate",
    "RidgeRegressor",
    "mean_upper_bound",
    "mean_lower_bound",
    "clopper_pearson_lower",
    "clopper_pearson_upper",
    "geometric_redundancy",
    "proximal_probability",
    "functional_redundancy",
    "is_geometrically_redundant",
    "is_proximally_redundant",
    "is_functionally_redundant",
    "is_informationally_redundant",
]

_METHODS = ("best", "bernstein", "hoeffding")

#: No closed-form bound lives here (estimators only); kept for the uniform module layout.
SYMBOLIC: dict = {}


class MeanEstimate(NamedTuple):
    """Sample mean of the distances and an upper confidence bound on ``E[rho]``."""

    estimate: float | np.ndarray
    bound: float | np.ndarray
    n: int
    confidence: float


class ProbabilityEstimate(NamedTuple):
    """Fraction of distances below ``t`` and a lower confidence bound on ``P[rho < t]``."""

    estimate: float | np.ndarray
    bound: float | np.ndarray
    n: int
    confidence: float


class FunctionalEstimate(NamedTuple):
    """Cross-fitted ``E||f_l(X_l) - f_prev(X_prev)||^2`` and its standard error."""

    estimate: float
    standard_error: float
    n: int
    folds: int


def _samples(d, rho_max):
    shape = np.shape(d)
    if len(shape) == 0 or shape[-1] == 0:
        raise ValueError(f"`d` must hold at least one distance along its last axis, got shape {shape}")
    return _c.check("d", d, 0.0, rho_max)  # the round-off tolerance of d's own dtype, before any cast


def _confidence(confidence):
    c = float(_c.check("confidence", confidence, 0.0, 1.0, low_closed=False, high_closed=False))
    return c


def _scalar(x):
    return float(x) if np.ndim(x) == 0 else x


# ------------------------------------------------------------------ bounds from sufficient statistics
# The one home of the confidence bounds: the sample estimators below and the certificate
# (which keeps only streamed sums) both call these.

def _hoeffding_excess(n, delta, value_range):
    """Hoeffding's one-sided deviation ``R sqrt(ln(1/delta) / (2n))`` at level ``delta``."""
    return value_range * np.sqrt(np.log(1.0 / delta) / (2.0 * n))


def _bernstein_excess(variance, n, delta, value_range):
    """Maurer-Pontil (2009, Thm. 4) deviation ``sqrt(2 V ln(2/delta) / n) + 7 R ln(2/delta) / (3(n-1))``."""
    log_term = np.log(2.0 / delta)
    return np.sqrt(2.0 * variance * log_term / n) + 7.0 * value_range * log_term / (3.0 * (n - 1))


def _bound_args(n, delta):
    nn = _c.check("n", n, 0.0, integer=True)
    dl = _c.check("delta", delta, 0.0, 1.0, low_closed=False, high_closed=False)
    return nn, dl


def mean_upper_bound(mean: Float[ArrayLike, "*batch"], variance: Float[ArrayLike, "*batch"] | None,
                     n: Int[ArrayLike, "*batch"], delta: Float[ArrayLike, "*batch"],
                     value_range: float = COSINE_DISTANCE_MAX) -> Float[np.ndarray, "*batch"] | float:
    """Upper confidence bound on ``E[X]`` from the sufficient statistics of a sample.

    Hypotheses: ``n`` i.i.d. draws of ``X`` in ``[0, R]``, ``R = value_range`` (the draws are
    the independent unit: examples, not the correlated tokens of one example); ``mean`` their
    sample mean, ``variance`` their unbiased sample variance. Conclusion: with probability
    ``>= 1 - delta``, ``E[X] <= bound``, where ``bound`` is the smallest of

    * Hoeffding at level ``delta/2``: ``mean + R sqrt(ln(2/delta) / (2n))``;
    * the empirical Bernstein bound of Maurer & Pontil (2009, Thm. 4) at level ``delta/2``:
      ``mean + sqrt(2 V ln(4/delta) / n) + 7 R ln(4/delta) / (3(n-1))``;
    * ``R``

    (a union bound over the two). ``variance=None`` (sums without a variance): Hoeffding
    alone at level ``delta``, ``mean + R sqrt(ln(1/delta) / (2n))``, capped at ``R``.
    ``n < 2``: ``R`` (one draw certifies nothing here). Arguments broadcast; a scalar call
    returns a float.
    """
    r = float(_c.positive("value_range", value_range))
    m = _c.check("mean", mean, 0.0, r)
    nn, dl = _bound_args(n, delta)
    safe = np.maximum(nn, 2.0)
    if variance is None:
        bound = m + _hoeffding_excess(safe, dl, r)
    else:
        v = _c.nonneg("variance", variance)  # a variance from sums may fall an ulp below 0
        bound = np.minimum(m + _hoeffding_excess(safe, dl / 2.0, r), m + _bernstein_excess(v, safe, dl / 2.0, r))
    out = np.where(nn < 2, r, np.minimum(bound, r))
    return _c.result(out, mean, variance, n, delta)


def mean_lower_bound(mean: Float[ArrayLike, "*batch"], variance: Float[ArrayLike, "*batch"] | None,
                     n: Int[ArrayLike, "*batch"], delta: Float[ArrayLike, "*batch"],
                     value_range: float = COSINE_DISTANCE_MAX) -> Float[np.ndarray, "*batch"] | float:
    """Lower confidence bound on ``E[X]``: :func:`mean_upper_bound` applied to ``R - X``.

    Same hypotheses (``n`` i.i.d. draws in ``[0, R]``; ``R - X`` has mean ``R - mean`` and
    the same variance). Conclusion: with probability ``>= 1 - delta``,
    ``E[X] >= R - mean_upper_bound(R - mean, variance, n, delta, R)`` (``>= 0``; ``0`` when
    ``n < 2``).
    """
    r = float(_c.positive("value_range", value_range))
    m = _c.check("mean", mean, 0.0, r)
    return _c.result(r - np.asarray(mean_upper_bound(r - m, variance, n, delta, r)), mean, variance, n, delta)


def _binomial_args(k, n, delta):
    nn, dl = _bound_args(n, delta)
    kk = _c.check("k", k, 0.0, integer=True)
    if np.any(kk > nn):
        bad = np.broadcast_arrays(kk, nn)
        i = np.flatnonzero(np.atleast_1d(bad[0] > bad[1]))[0]
        raise ValueError(f"`k` must be <= n, got k={float(np.atleast_1d(bad[0])[i])!r}, "
                         f"n={float(np.atleast_1d(bad[1])[i])!r}")
    return kk, nn, dl


def clopper_pearson_lower(k: Int[ArrayLike, "*batch"], n: Int[ArrayLike, "*batch"],
                          delta: Float[ArrayLike, "*batch"]) -> Float[np.ndarray, "*batch"] | float:
    """One-sided exact (Clopper-Pearson) lower confidence bound on a binomial probability.

    Hypotheses: ``k`` successes in ``n`` i.i.d. Bernoulli(p) trials. Conclusion: with
    probability ``>= 1 - delta``, ``p >= Beta^{-1}(delta; k, n - k + 1)``, the ``p`` at which
    ``P[Bin(n, p) >= k] = delta``; ``0`` when ``k = 0`` (also ``n = 0``). Arguments broadcast.
    """
    kk, nn, dl = _binomial_args(k, n, delta)
    with np.errstate(invalid="ignore"):
        lower = np.where(kk <= 0, 0.0, stats.beta.ppf(dl, np.maximum(kk, 1.0), np.maximum(nn - kk + 1.0, 1.0)))
    return _c.result(lower, k, n, delta)


def clopper_pearson_upper(k: Int[ArrayLike, "*batch"], n: Int[ArrayLike, "*batch"],
                          delta: Float[ArrayLike, "*batch"]) -> Float[np.ndarray, "*batch"] | float:
    """One-sided exact (Clopper-Pearson) upper confidence bound on a binomial probability.

    Hypotheses: ``k`` successes in ``n`` i.i.d. Bernoulli(p) trials. Conclusion: with
    probability ``>= 1 - delta``, ``p <= Beta^{-1}(1 - delta; k + 1, n - k)``, the ``p`` at
    which ``P[Bin(n, p) <= k] = delta``; ``1`` when ``k = n`` (also ``n = 0``). Arguments broadcast.
    """
    kk, nn, dl = _binomial_args(k, n, delta)
    with np.errstate(invalid="ignore"):
        upper = np.where(kk >= nn, 1.0, stats.beta.isf(dl, kk + 1.0, np.maximum(nn - kk, 1.0)))
    return _c.result(upper, k, n, delta)


def geometric_redundancy(d: Float[ArrayLike, "*repeats n"], confidence: float = 0.95,
                         rho_max: float = COSINE_DISTANCE_MAX, method: str = "best") -> MeanEstimate:
    """Definition 1 estimator: the mean of ``d`` and an upper confidence bound on ``E[rho]``.

    ``d``: i.i.d. samples of ``rho(X_l, X_prev)`` in ``[0, rho_max]`` (cosine distance:
    ``rho_max = 2``), reduced along the last axis. With probability at least
    ``confidence``, ``E[rho] <= bound``. Methods, with ``delta = 1 - confidence`` and
    ``R = rho_max``:

    * ``"hoeffding"``: ``mean + R sqrt(log(1/delta) / (2n))``;
    * ``"bernstein"`` (Maurer-Pontil, needs n >= 2):
      ``mean + sqrt(2 V log(2/delta) / n) + 7 R log(2/delta) / (3(n-1))`` with V the
      unbiased sample variance;
    * ``"best"``: the smaller of the two, each at level ``delta/2`` (union bound): exactly
      :func:`mean_upper_bound` of the sample's mean and variance.

    The bound is clipped to ``rho_max``; with ``n < 2`` it is ``rho_max`` (as
    :func:`mean_upper_bound`). The samples are the independent unit: distances of the
    tokens of one image are correlated, so pass one value per example (e.g. its mean).
    """
    r = float(_c.positive("rho_max", rho_max))
    a = _samples(d, r)
    c = _confidence(confidence)
    if method not in _METHODS:
        raise ValueError(f"`method` must be one of {_METHODS}, got {method!r}")
    n = a.shape[-1]
    delta = 1.0 - c
    mean = np.clip(a.mean(axis=-1), 0.0, r)  # a mean of values in [0, r], up to round-off
    var = a.var(axis=-1, ddof=1) if n > 1 else np.zeros_like(mean)
    if method == "hoeffding":
        bound = mean_upper_bound(mean, None, n, delta, r)
    elif method == "bernstein":
        bound = r if n < 2 else np.minimum(mean + _bernstein_excess(var, n, delta, r), r)
    else:
        bound = mean_upper_bound(mean, var, n, delta, r)
    return MeanEstimate(_scalar(mean), _scalar(np.broadcast_to(bound, np.shape(mean)).copy()), n, c)


def proximal_probability(d: Float[ArrayLike, "*repeats n"], t: float, confidence: float = 0.95,
                         rho_max: float = COSINE_DISTANCE_MAX) -> ProbabilityEstimate:
    """Definition 2 estimator: the fraction of ``d < t`` and a Clopper-Pearson lower bound.

    ``d``: i.i.d. samples of ``rho`` in ``[0, rho_max]``; ``t >= 0`` (a threshold
    above ``rho_max`` counts every distance: the whole range). With probability at least
    ``confidence``, ``P[rho < t] >= bound``, where ``bound`` is the ``1 - confidence``
    quantile of ``Beta(k, n - k + 1)`` (0 when ``k = 0``), k the count below t.
    """
    r = float(_c.positive("rho_max", rho_max))
    a = _samples(d, r)
    tt = float(_c.check("t", t, 0.0))
    c = _confidence(confidence)
    n = a.shape[-1]
    k = np.sum(a < tt, axis=-1)
    return ProbabilityEstimate(_scalar(k / n), _scalar(np.asarray(clopper_pearson_lower(k, n, 1.0 - c))), n, c)


def is_geometrically_redundant(d: Float[ArrayLike, "*repeats n"], eps: float, confidence: float | None = None,
                               rho_max: float = COSINE_DISTANCE_MAX) -> Bool[np.ndarray, "*repeats"] | bool:
    """Definition 1 predicate, ``E[rho] < eps``, judged from samples ``d``.

    ``confidence=None`` uses the point estimate (the paper's reading); a level such as
    0.95 uses the upper confidence bound of :func:`geometric_redundancy`, so a ``True``
    answer is a certificate at that level.
    """
    e = _c.positive("eps", eps)
    if confidence is None:
        est = _samples(d, float(_c.positive("rho_max", rho_max))).mean(axis=-1)
    else:
        est = np.asarray(geometric_redundancy(d, confidence, rho_max).bound)
    return _scalar(est < e) if np.ndim(est) else bool(est < e)


def is_proximally_redundant(d: Float[ArrayLike, "*repeats n"], t: float, eps: float, confidence: float | None = None,
                            rho_max: float = COSINE_DISTANCE_MAX) -> Bool[np.ndarray, "*repeats"] | bool:
    """Definition 2 predicate, ``P[rho < t] > 1 - eps``, judged from samples ``d``.

    ``confidence=None`` uses the observed fraction; a level uses the Clopper-Pearson
    lower bound of :func:`proximal_probability`. ``eps`` in ``(0, 1]``.
    """
    e = _c.check("eps", eps, 0.0, 1.0, low_closed=False)
    est = proximal_probability(d, t, 0.95 if confidence is None else confidence, rho_max)
    value = np.asarray(est.estimate if confidence is None else est.bound)
    out = value > 1.0 - e
    return bool(out) if out.ndim == 0 else out


def is_functionally_redundant(value: Float[ArrayLike, "*batch"],
                              eps: Float[ArrayLike, "*batch"]) -> Bool[np.ndarray, "*batch"] | bool:
    """Definition 3 predicate: ``E||E[Z|X_l] - E[Z|X_prev]||^2 < eps`` for a given value (>= 0)."""
    v = _c.nonneg("value", value)
    e = _c.positive("eps", eps)
    out = v < e
    return bool(out) if out.ndim == 0 else out


def is_informationally_redundant(conditional_entropy: Float[ArrayLike, "*batch"],
                                 eps: Float[ArrayLike, "*batch"]) -> Bool[np.ndarray, "*batch"] | bool:
    """Definition 4 predicate: ``H(X_l | X_prev) < eps``.

    ``conditional_entropy`` may be negative (differential entropy); it must be finite.
    """
    h = _c.check("conditional_entropy", conditional_entropy)
    e = _c.positive("eps", eps)
    out = h < e
    return bool(out) if out.ndim == 0 else out


class RidgeRegressor:
    """Ridge regression with an unpenalised intercept, in numpy (sklearn-like ``fit``/``predict``).

    Minimises ``||Z - X W - b||^2 + alpha ||W||_F^2``; ``Z`` may have several columns.
    """

    def __init__(self, alpha=1.0):
        self.alpha = float(_c.nonneg("alpha", alpha))

    def fit(self, x, z):
        x = np.asarray(x, dtype=float)
        z = np.asarray(z, dtype=float)
        self.x_mean_ = x.mean(axis=0)
        self.z_mean_ = z.mean(axis=0)
        xc, zc = x - self.x_mean_, z - self.z_mean_
        gram = xc.T @ xc + self.alpha * np.eye(x.shape[1])
        self.coef_ = np.linalg.lstsq(gram, xc.T @ zc, rcond=None)[0]
        return self

    def predict(self, x):
        return (np.asarray(x, dtype=float) - self.x_mean_) @ self.coef_ + self.z_mean_


def _design(name, x, n=None):
    a = np.asarray(x, dtype=float)
    if a.ndim == 1:
        a = a[:, None]
    if a.ndim != 2:
        raise ValueError(f"`{name}` must have shape (n,) or (n, d), got {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"`{name}` must be finite (no NaN or inf)")
    if n is not None and a.shape[0] != n:
        raise ValueError(f"`{name}` must have {n} rows like `x_l`, got {a.shape[0]}")
    return a


def functional_redundancy(x_l: Float[ArrayLike, "n d_l"], x_prev: Float[ArrayLike, "n d_prev"],
                          z: Float[ArrayLike, "n *k"], regressor=None, folds: int = 5,
                          seed: int = 0) -> FunctionalEstimate:
    """Definition 3 estimator: cross-fitted ``E||f_l(X_l) - f_prev(X_prev)||^2``.

    ``x_l`` (n, d_l), ``x_prev`` (n, d_prev), ``z`` (n,) or (n, k): i.i.d. samples of
    ``(X_l, X_prev, Z)``. The samples are split into ``folds`` random folds (``seed``);
    for each fold, ``f_l`` (regressing Z on X_l) and ``f_prev`` (Z on X_prev) are fit
    on the other folds and evaluated on it, so each squared difference uses regressors
    that never saw that sample. ``regressor``: any object with ``fit(x, z)`` and
    ``predict(x)`` (an sklearn estimator works; it is deep-copied, never refit in
    place); default :class:`RidgeRegressor` ``(alpha=1.0)``.

    Returns the mean of the held-out squared differences and its standard error. It
    estimates the left side of Theorem 2; it equals Definition 3's quantity when the
    regressors are consistent (then ``eta_l, eta_prev -> 0``).
    """
    xl = _design("x_l", x_l)
    n = xl.shape[0]
    xp = _design("x_prev", x_prev, n)
    zz = _design("z", z, n)
    k = int(_c.check("folds", folds, 2.0, float(n), integer=True))
    base = RidgeRegressor() if regressor is None else regressor
    for attr in ("fit", "predict"):
        if not callable(getattr(base, attr, None)):
            raise ValueError(f"`regressor` must have a `{attr}` method, got {type(base).__name__}")
    order = np.random.default_rng(seed).permutation(n)
    sq = np.empty(n)
    for held in np.array_split(order, k):
        train = np.setdiff1d(order, held, assume_unique=True)
        pred = []
        for x in (xl, xp):
            model = copy.deepcopy(base).fit(x[train], zz[train] if zz.shape[1] > 1 else zz[train, 0])
            pred.append(np.asarray(model.predict(x[held]), dtype=float).reshape(len(held), -1))
        sq[held] = np.sum((pred[0] - pred[1]) ** 2, axis=1)
    return FunctionalEstimate(float(sq.mean()), float(sq.std(ddof=1) / np.sqrt(n)) if n > 1 else float("nan"), n, k)


_EXAMPLE_D = [0.01, 0.02, 0.03, 0.02, 0.04, 0.01, 0.06, 0.02]
register("geometric_redundancy", "Definition 1 (Sec. 3.1)",
         "Geometric eps-redundancy: E[rho(X_prev, X_l)] < eps. Estimator: sample mean of d and an upper "
         "confidence bound (Maurer-Pontil empirical Bernstein / Hoeffding) for rho in [0, 2].",
         {"d": _EXAMPLE_D, "confidence": 0.95}, "definition")
register("proximal_probability", "Definition 2 (Sec. 3.1)",
         "t-proximal with probability 1 - eps: P[rho(X_l, X_prev) < t] > 1 - eps, t >= 0 (t >= 2 is every pair) for the cosine "
         "distance. Estimator: fraction of d below t and a Clopper-Pearson lower confidence bound.",
         {"d": _EXAMPLE_D, "t": 0.05, "confidence": 0.95}, "definition")
register("is_functionally_redundant", "Definition 3 (Sec. 3.1)",
         "Functional eps-redundancy: E||E[Z|X_l] - E[Z|X_prev]||^2 < eps (estimate it with "
         "functional_redundancy, cross-fitted regressors).",
         {"value": 0.01, "eps": 0.05}, "definition")
register("is_informationally_redundant", "Definition 4 (Sec. 3.1)",
         "Informational eps-redundancy: H(X_l | X_prev) < eps.",
         {"conditional_entropy": 0.02, "eps": 0.05}, "definition")
