"""Hypothesis strategies for the functional side: finite-support laws with exact expectations.

Every law here has finite support, so expectations are weighted sums and conditional
expectations are exact: a test that fails on them is a counterexample, not noise.

* :class:`FinitePairs`: the joint law of ``(X_l, X_prev)`` on a grid of unit vectors,
  ``P[i, j] = P(X_l = xs[i], X_prev = ys[j])``, with exact conditional means.
* :class:`LinearTask`: ``h(x, y) = A x + B y + c`` with Lipschitz constants
  ``alpha = ||A||_2``, ``beta = ||B||_2`` (spectral norms, exact).
* :class:`NonlinearTask`: ``h(x, y) = a sin(u.x) + b tanh(w.y) + c sin(u.x) cos(w.y)``,
  not separable, with Lipschitz constants ``alpha = a + |c|``, ``beta = b + |c|``.
* :class:`FiniteTriple`: ``(X_l, X_prev, Z)`` with ``Z`` finitely supported in a ball of
  radius ``bound`` given each cell.

Strategies: :func:`unit_vectors`, :func:`finite_probabilities`, :func:`finite_pairs`
(optionally with a chosen mean cosine distance), :func:`linear_tasks`, :func:`nonlinear_tasks`,
:func:`bounded_vectors`, :func:`finite_triples`; :func:`theorem1_extremal_pairs` is the
near-extremal law of Theorem 1 (a plain constructor).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from hypothesis import assume
from hypothesis import strategies as st

__all__ = [
    "FinitePairs",
    "LinearTask",
    "NonlinearTask",
    "FiniteTriple",
    "unit_vectors",
    "finite_probabilities",
    "finite_pairs",
    "linear_tasks",
    "nonlinear_tasks",
    "bounded_vectors",
    "finite_triples",
    "theorem1_extremal_pairs",
]

_coord = st.floats(-1.0, 1.0, allow_nan=False, allow_infinity=False)


@dataclass(frozen=True)
class FinitePairs:
    """Joint law of ``(X_l, X_prev)``: ``probs[i, j] = P(X_l = xs[i], X_prev = ys[j])``."""

    xs: np.ndarray     # (a, d), unit rows
    ys: np.ndarray     # (b, d), unit rows
    probs: np.ndarray  # (a, b), nonnegative, sums to 1, positive marginals

    @property
    def p_l(self):
        return self.probs.sum(axis=1)

    @property
    def p_prev(self):
        return self.probs.sum(axis=0)

    def cosine_distances(self):
        """``rho(xs[i], ys[j])`` for every grid cell, shape (a, b)."""
        return np.clip(1.0 - self.xs @ self.ys.T, 0.0, 2.0)

    def mean_cosine_distance(self):
        """``E[rho(X_l, X_prev)]``, exact."""
        return float(np.sum(self.probs * self.cosine_distances()))

    def mean_squared_distance(self):
        """``E||X_l - X_prev||^2``, exact."""
        diff = self.xs[:, None, :] - self.ys[None, :, :]
        return float(np.sum(self.probs * np.sum(diff**2, axis=-1)))

    def conditional_means(self, values):
        """``(E[H | X_l = xs[i]], E[H | X_prev = ys[j]])`` for ``H = values[i, j]`` of shape (a, b, k)."""
        f_l = np.einsum("ij,ijk->ik", self.probs, values) / self.p_l[:, None]
        f_prev = np.einsum("ij,ijk->jk", self.probs, values) / self.p_prev[:, None]
        return f_l, f_prev

    def expected_squared_difference(self, g_l, g_prev):
        """``E||g_l(X_l) - g_prev(X_prev)||^2`` for values ``g_l`` (a, k) and ``g_prev`` (b, k)."""
        diff = g_l[:, None, :] - g_prev[None, :, :]
        return float(np.sum(self.probs * np.sum(diff**2, axis=-1)))

    def functional_redundancy(self, values):
        """Definition 3's ``E||E[H|X_l] - E[H|X_prev]||^2`` for ``H = values`` (a, b, k), exact."""
        return self.expected_squared_difference(*self.conditional_means(values))


@dataclass(frozen=True)
class LinearTask:
    """``h(x, y) = A x + B y + c``: ``alpha = ||A||_2``-Lipschitz in x, ``beta = ||B||_2`` in y."""

    A: np.ndarray  # (k, d)
    B: np.ndarray  # (k, d)
    c: np.ndarray  # (k,)

    @property
    def alpha(self):
        return float(np.linalg.norm(self.A, 2))

    @property
    def beta(self):
        return float(np.linalg.norm(self.B, 2))

    def values(self, pairs):
        """``h(xs[i], ys[j])`` on the grid of ``pairs``, shape (a, b, k)."""
        return (pairs.xs @ self.A.T)[:, None, :] + (pairs.ys @ self.B.T)[None, :, :] + self.c


@dataclass(frozen=True)
class NonlinearTask:
    """``h(x, y) = a sin(u.x) + b tanh(w.y) + c sin(u.x) cos(w.y)`` (one output), ``u, w`` unit vectors.

    Lipschitz in x with ``alpha = a + |c|``: the x-gradient is ``(a + c cos(w.y)) cos(u.x) u``;
    in y with ``beta = b + |c|``: the y-gradient is ``(b sech^2(w.y) - c sin(u.x) sin(w.y)) w``.
    """

    a: float
    b: float
    c: float
    u: np.ndarray  # (d,), unit
    w: np.ndarray  # (d,), unit

    @property
    def alpha(self):
        return self.a + abs(self.c)

    @property
    def beta(self):
        return self.b + abs(self.c)

    def h(self, x, y):
        """``h`` at rows ``x`` (..., d) and ``y`` (..., d), broadcast; shape (..., 1)."""
        sx, wy = np.sin(x @ self.u), y @ self.w
        return (self.a * sx + self.b * np.tanh(wy) + self.c * sx * np.cos(wy))[..., None]

    def values(self, pairs):
        """``h(xs[i], ys[j])`` on the grid of ``pairs``, shape (a, b, 1)."""
        return self.h(pairs.xs[:, None, :], pairs.ys[None, :, :])


@dataclass(frozen=True)
class FiniteTriple:
    """``(X_l, X_prev, Z)``: ``cond[i, j, m] = P(Z = zs[m] | X_l = xs[i], X_prev = ys[j])``, ``||zs[m]|| <= bound``."""

    pairs: FinitePairs
    zs: np.ndarray    # (m, k)
    cond: np.ndarray  # (a, b, m), rows sum to 1
    bound: float

    def h_values(self):
        """``h(xs[i], ys[j]) = E[Z | X_l = xs[i], X_prev = ys[j]]``, shape (a, b, k)."""
        return self.cond @ self.zs


@st.composite
def unit_vectors(draw, dim=3):
    """A unit vector in R^dim (directions with a tiny pre-normalisation norm are dropped)."""
    v = np.array(draw(st.lists(_coord, min_size=dim, max_size=dim)))
    norm = np.linalg.norm(v)
    assume(norm > 0.1)
    return v / norm


@st.composite
def finite_probabilities(draw, size, max_weight=20, allow_zero=False):
    """Probabilities proportional to integer weights (exact ratios); never all zero."""
    w = np.array(draw(st.lists(st.integers(0 if allow_zero else 1, max_weight), min_size=size, max_size=size)),
                 dtype=float)
    assume(w.sum() > 0)
    return w / w.sum()


def _orthogonal_unit(x, v):
    u = v - (v @ x) * x
    n = np.linalg.norm(u)
    return u / n if n > 0.1 else None


@st.composite
def finite_pairs(draw, dim=3, max_atoms=4, mean_rho=None):
    """A :class:`FinitePairs` law, mixing a near-diagonal coupling with a general one.

    Each ``ys[j]`` is ``xs[j]`` rotated by a drawn angle, so the diagonal coupling has
    controlled distances; the law is ``(1 - w) diag(p) + w Q`` with Q a general coupling.
    With ``mean_rho`` (a float in (0, 2)), ``w`` is solved so that
    ``E[rho(X_l, X_prev)] = mean_rho`` (draws where that needs ``w`` outside [0, 1] are
    dropped).
    """
    a = draw(st.integers(1, max_atoms))
    xs, ys, rhos = [], [], []
    for _ in range(a):
        x = draw(unit_vectors(dim))
        u = _orthogonal_unit(x, draw(unit_vectors(dim)))
        assume(u is not None)
        frac = draw(st.floats(0.0, 1.0))
        rho = frac * (mean_rho if mean_rho is not None else draw(st.floats(0.0, 2.0)))
        cos = 1.0 - rho
        ys.append(cos * x + np.sqrt(max(0.0, 1.0 - cos * cos)) * u)
        xs.append(x)
        rhos.append(rho)
    xs, ys = np.array(xs), np.array(ys)
    p = draw(finite_probabilities(a))
    q = draw(finite_probabilities(a * a, allow_zero=True)).reshape(a, a)
    dist = np.clip(1.0 - xs @ ys.T, 0.0, 2.0)
    if mean_rho is None:
        w = draw(st.floats(0.0, 1.0))
    else:
        m_diag, m_q = float(p @ np.diag(dist)), float(np.sum(q * dist))
        assume(abs(m_q - m_diag) > 1e-6)
        w = (mean_rho - m_diag) / (m_q - m_diag)
        assume(0.0 <= w <= 1.0)
    probs = (1.0 - w) * np.diag(p) + w * q
    assume(probs.sum(axis=0).min() > 1e-9 and probs.sum(axis=1).min() > 1e-9)
    return FinitePairs(xs, ys, probs / probs.sum())


@st.composite
def linear_tasks(draw, dim=3, k=2, max_entry=2.0):
    """A :class:`LinearTask` with ``A, B`` of shape (k, dim) (entries in ``[-max_entry, max_entry]``)."""
    entry = st.floats(-max_entry, max_entry, allow_nan=False)

    def matrix(rows, cols):
        return np.array(draw(st.lists(entry, min_size=rows * cols, max_size=rows * cols))).reshape(rows, cols)

    return LinearTask(matrix(k, dim), matrix(k, dim), matrix(1, k)[0])


@st.composite
def nonlinear_tasks(draw, dim=3, max_coef=2.0):
    """A :class:`NonlinearTask` with ``a, b`` in ``[0, max_coef]``, ``c`` in ``[-1, 1]``."""
    coef = st.floats(0.0, max_coef, allow_nan=False)
    return NonlinearTask(draw(coef), draw(coef), draw(st.floats(-1.0, 1.0, allow_nan=False)),
                         draw(unit_vectors(dim)), draw(unit_vectors(dim)))


@st.composite
def bounded_vectors(draw, dim=2, bound=1.0):
    """A vector of R^dim with Euclidean norm at most ``bound``."""
    v = np.array(draw(st.lists(_coord, min_size=dim, max_size=dim)))
    n = np.linalg.norm(v)
    scale = draw(st.floats(0.0, 1.0))
    return v * (scale * bound / n) if n > 0 else v


@st.composite
def finite_triples(draw, dim=3, max_atoms=3, k=2, bound=1.0, max_z_atoms=3):
    """A :class:`FiniteTriple`: a :func:`finite_pairs` law and a bounded Z (``||Z|| <= bound``)."""
    pairs = draw(finite_pairs(dim=dim, max_atoms=max_atoms))
    m = draw(st.integers(1, max_z_atoms))
    zs = np.array([draw(bounded_vectors(k, bound)) for _ in range(m)])
    a, b = pairs.probs.shape
    cond = np.array([draw(finite_probabilities(m)) for _ in range(a * b)]).reshape(a, b, m)
    return FiniteTriple(pairs, zs, cond, float(bound))


def theorem1_extremal_pairs(theta, r):
    """Near-extremal law for Theorem 1: a doubly symmetric binary pair on the unit circle.

    ``X_l = (cos theta, s sin theta)``, ``X_prev = (cos theta, s' sin theta)`` with signs
    ``s, s'`` uniform and ``P(s = s') = (1 + r)/2``. With ``h(x, y) = alpha x_2 + beta y_2``,
    ``E||E[h|X_l] - E[h|X_prev]||^2 = (1 - r^2)(alpha^2 + beta^2 + 2 alpha beta r) sin^2 theta``
    and ``E||X_l - X_prev||^2 = 2(1 - r) sin^2 theta``: the ratio tends to ``(alpha+beta)^2``
    as ``r -> 1``.
    """
    pts = np.array([[np.cos(theta), np.sin(theta)], [np.cos(theta), -np.sin(theta)]])
    probs = np.array([[1 + r, 1 - r], [1 - r, 1 + r]]) / 4.0
    return FinitePairs(pts, pts.copy(), probs)
