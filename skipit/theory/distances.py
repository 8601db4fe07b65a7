"""Cosine distance and unit-norm helpers.

The paper's distance (Sec. 3, Theorems 1-2, Lemma 2) is
``rho(x, y) = 1 - <x, y> / (||x|| ||y||)``, which ranges over ``[0, 2]``: 0 for parallel
vectors, 1 for orthogonal ones, 2 for antipodal ones. Results stated for a distance in
``[0, 1]`` (Proposition 1) therefore do not apply to it unchanged; see
:func:`skipit.theory.proposition1_tail_threshold_bounded`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # shapes for readers and type checkers; jaxtyping is not a runtime dependency
    from jaxtyping import ArrayLike, Float

__all__ = ["COSINE_DISTANCE_MAX", "cosine_distance", "unit_normalize", "is_unit_norm"]

#: Largest value of the cosine distance (antipodal vectors).
COSINE_DISTANCE_MAX = 2.0

#: No bound lives here; kept for the uniform module layout.
SYMBOLIC: dict = {}


def _vectors(name, v):
    a = np.asarray(v, dtype=float)
    if a.ndim == 0:
        raise ValueError(f"`{name}` must have at least one axis (the vector axis), got a scalar {float(a)!r}")
    if np.any(np.isnan(a)):
        raise ValueError(f"`{name}` must not contain NaN, got NaN at index {tuple(int(i) for i in np.argwhere(np.isnan(a))[0])}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"`{name}` must be finite, got an infinite entry")
    return a


def _scaled(name, a):
    """``(a / m, ||a / m||)`` with ``m`` the max-abs entry of each vector (last axis).

    Dividing by ``m`` first keeps the norm from overflowing (entries near 1e155 square to
    inf) or underflowing (entries near 1e-170 square to 0); the cosine and the unit vector
    do not depend on the scale. ``ValueError`` naming ``name`` for a zero vector.
    """
    m = np.max(np.abs(a), axis=-1)
    if np.any(m == 0):
        where = tuple(int(i) for i in np.argwhere(np.atleast_1d(m == 0))[0]) if m.ndim else ()
        raise ValueError(f"`{name}` must have nonzero norm (cosine distance is undefined for zero vectors), "
                         f"got a zero vector at batch index {where}")
    s = a / m[..., None]
    return s, np.linalg.norm(s, axis=-1)


def cosine_distance(x: Float[ArrayLike, "*batch d"], y: Float[ArrayLike, "*batch d"]) -> Float[np.ndarray, "*batch"] | float:
    """Cosine distance ``rho(x, y) = 1 - <x, y>/(||x|| ||y||)``, in ``[0, 2]``.

    Batched over leading axes (``x`` of shape ``(..., d)`` and ``y`` of shape
    ``(..., d)`` broadcast against each other); the last axis is the vector axis.
    Returns a float for a single pair and an array of shape ``(...)`` otherwise.
    Rounding is clipped so the result always lies in ``[0, 2]``.

    Raises ``ValueError`` naming ``x`` or ``y`` for zero vectors, NaN or inf entries.
    """
    a = _vectors("x", x)
    b = _vectors("y", y)
    if a.shape[-1] != b.shape[-1]:
        raise ValueError(f"`x` and `y` must have the same vector length (last axis), got {a.shape[-1]} and {b.shape[-1]}")
    a, na = _scaled("x", a)
    b, nb = _scaled("y", b)
    cos = np.einsum("...i,...i->...", a, b) / (na * nb)
    rho = np.clip(1.0 - cos, 0.0, COSINE_DISTANCE_MAX)
    return float(rho) if rho.ndim == 0 else rho


def unit_normalize(x: Float[ArrayLike, "*batch d"]) -> Float[np.ndarray, "*batch d"]:
    """``x / ||x||`` along the last axis; ``ValueError`` naming ``x`` for zero vectors or NaN."""
    a, n = _scaled("x", _vectors("x", x))
    return a / n[..., None]


def is_unit_norm(x: Float[ArrayLike, "*batch d"], atol: float = 1e-9) -> bool:
    """Whether every vector (last axis) of ``x`` has norm 1 within ``atol``."""
    a = np.asarray(x, dtype=float)
    return bool(np.all(np.abs(np.linalg.norm(a, axis=-1) - 1.0) <= atol))
