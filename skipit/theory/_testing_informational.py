"""Hypothesis strategies for the informational side: exact finite-support joint pmfs.

Probabilities are integer weights divided by their total, so every entropy or mutual
information computed from a draw is the exact value for that distribution (up to
float rounding), and a failing property is a real counterexample.
"""

from __future__ import annotations

import numpy as np
from typing import NamedTuple

from hypothesis import assume
from hypothesis import strategies as st

__all__ = ["joint_pmfs", "markov_chains", "gates", "bounded_points", "finite_sphere_laws", "SphereLaw", "MAX_WEIGHT"]

MAX_WEIGHT = 12


@st.composite
def joint_pmfs(draw, ndim=3, min_size=2, max_size=4, allow_zeros=True, shape=None):
    """A joint pmf with ``ndim`` axes, each of size in [min_size, max_size] (or ``shape``)."""
    if shape is None:
        shape = tuple(draw(st.integers(min_size, max_size)) for _ in range(ndim))
    lo = 0 if allow_zeros else 1
    w = np.array(draw(st.lists(st.integers(lo, MAX_WEIGHT), min_size=int(np.prod(shape)),
                               max_size=int(np.prod(shape)))), dtype=float).reshape(shape)
    assume(w.sum() > 0)
    return w / w.sum()


@st.composite
def markov_chains(draw, min_size=2, max_size=4, allow_zeros=True):
    """p[x_prev, x_l, z] = p(x_prev) p(x_l | x_prev) p(z | x_l): the chain X_{l-1} - X_l - Z."""
    a, b, c = (draw(st.integers(min_size, max_size)) for _ in range(3))
    lo = 0 if allow_zeros else 1

    def stochastic(rows, cols):
        m = np.array(draw(st.lists(st.integers(lo, MAX_WEIGHT), min_size=rows * cols, max_size=rows * cols)),
                     dtype=float).reshape(rows, cols)
        m[m.sum(axis=1) == 0, 0] = 1.0
        return m / m.sum(axis=1, keepdims=True)

    p_prev = stochastic(1, a)[0]
    k_l = stochastic(a, b)
    k_z = stochastic(b, c)
    return p_prev[:, None, None] * k_l[:, :, None] * k_z[None, :, :]


@st.composite
def bounded_points(draw, n, dim=2, bound=1.0):
    """``n`` points of R^dim with Euclidean norm <= ``bound`` (values of a bounded Z)."""
    raw = np.array(draw(st.lists(st.integers(-10, 10), min_size=n * dim, max_size=n * dim)), dtype=float)
    pts = raw.reshape(n, dim)
    norms = np.linalg.norm(pts, axis=1)
    scale = np.where(norms > 0, bound / np.maximum(norms, 1e-300), 0.0)
    shrink = np.array(draw(st.lists(st.integers(0, 4), min_size=n, max_size=n)), dtype=float) / 4.0
    return pts * (scale * shrink)[:, None]


def gates():
    """One of the standard PID gates of ``skipit.theory.pid.GATES`` as ``(name, gate)``."""
    from skipit.theory.pid import GATES

    return st.sampled_from(sorted(GATES.items()))


class SphereLaw(NamedTuple):
    """A finite joint law of (X_l, X_prev) on distinct unit vectors ``points`` (k x dim).

    ``p[i, j] = P(X_l = points[i], X_prev = points[j])`` (shared support, as in the paper),
    ``rho[i, j]`` the cosine distance between points i and j.
    """

    points: np.ndarray
    p: np.ndarray
    rho: np.ndarray


@st.composite
def finite_sphere_laws(draw, min_atoms=2, max_atoms=4, dim=3, allow_zeros=True):
    """A :class:`SphereLaw` with 2-4 distinct unit vectors and integer-weight probabilities."""
    k = draw(st.integers(min_atoms, max_atoms))
    raw = np.array(draw(st.lists(st.integers(-3, 3), min_size=k * dim, max_size=k * dim)), dtype=float)
    pts = raw.reshape(k, dim)
    norms = np.linalg.norm(pts, axis=1)
    assume(np.all(norms > 0))
    pts = pts / norms[:, None]
    rho = np.clip(1.0 - pts @ pts.T, 0.0, 2.0)
    np.fill_diagonal(rho, 0.0)
    off = rho[~np.eye(k, dtype=bool)]
    assume(np.all(off > 1e-9))
    p = draw(joint_pmfs(shape=(k, k), allow_zeros=allow_zeros))
    return SphereLaw(pts, p, rho)
