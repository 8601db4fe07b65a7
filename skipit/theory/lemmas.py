"""Lemmas 1-3 of the paper (Appendix A.1), as numeric functions with sympy forms.

Lemma 4 (the KL / conditional-mutual-information identity used by Theorem 5) lives on
the informational side.

=====================  =======================================================  ==========
function               result                                                   status
=====================  =======================================================  ==========
lemma1_bound           d(x,y)^2 <= 2 d(x,z)^2 + 2 d(z,y)^2                       as stated
lemma1_bound_sharp     d(x,y)^2 <= (d(x,z) + d(z,y))^2                           sharper
lemma2_mean_squared..  E||X-Y||^2 = 2 E[rho(X,Y)] for unit X, Y (an identity)    as stated
lemma3_bound           ||a+b+c||^2 <= 3(||a||^2 + ||b||^2 + ||c||^2)             as stated
lemma3_bound_sharp     ||a+b+c||^2 <= (||a|| + ||b|| + ||c||)^2                  sharper
=====================  =======================================================  ==========

Proofs with every step checked: ``proofs/lemma1.py``, ``proofs/lemma2.py``,
``proofs/lemma3.py``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import sympy as sp

from skipit.theory import _validation as _c
from skipit.theory._registry import register
from skipit.theory.distances import COSINE_DISTANCE_MAX

if TYPE_CHECKING:  # shapes for readers and type checkers; jaxtyping is not a runtime dependency
    import numpy as np
    from jaxtyping import ArrayLike, Float

__all__ = [
    "lemma1_bound",
    "lemma1_bound_sharp",
    "lemma2_mean_squared_distance",
    "lemma3_bound",
    "lemma3_bound_sharp",
]

_d_xz, _d_zy = sp.symbols("d_xz d_zy", nonnegative=True)
_mean_rho = sp.Symbol("mean_rho", nonnegative=True)
_a_sq, _b_sq, _c_sq = sp.symbols("a_sq b_sq c_sq", nonnegative=True)

SYMBOLIC = {
    "lemma1_bound": 2 * _d_xz**2 + 2 * _d_zy**2,
    "lemma1_bound_sharp": (_d_xz + _d_zy) ** 2,
    "lemma2_mean_squared_distance": 2 * _mean_rho,
    "lemma3_bound": 3 * (_a_sq + _b_sq + _c_sq),
    "lemma3_bound_sharp": (sp.sqrt(_a_sq) + sp.sqrt(_b_sq) + sp.sqrt(_c_sq)) ** 2,
}

ARGUMENTS = {
    "lemma1_bound": (_d_xz, _d_zy),
    "lemma1_bound_sharp": (_d_xz, _d_zy),
    "lemma2_mean_squared_distance": (_mean_rho,),
    "lemma3_bound": (_a_sq, _b_sq, _c_sq),
    "lemma3_bound_sharp": (_a_sq, _b_sq, _c_sq),
}
_NUMERIC = {name: sp.lambdify(ARGUMENTS[name], SYMBOLIC[name], "numpy") for name in SYMBOLIC}


def lemma1_bound(d_xz: Float[ArrayLike, "*batch"],
                 d_zy: Float[ArrayLike, "*batch"]) -> Float[np.ndarray, "*batch"] | float:
    """Lemma 1 (App. A.1): in a metric space, ``d(x, y)^2 <= 2 d(x, z)^2 + 2 d(z, y)^2``.

    Returns the right-hand side ``2 d_xz^2 + 2 d_zy^2``. True as stated: the triangle
    inequality gives ``d(x,y) <= d(x,z) + d(z,y)`` and ``(a+b)^2 <= 2a^2 + 2b^2``
    because the difference is ``(a-b)^2``. The constant 2 is sharp (z the midpoint of a
    segment); :func:`lemma1_bound_sharp` keeps the intermediate, never larger, form.
    ``d_xz``, ``d_zy`` >= 0.
    """
    a, b = _c.nonneg("d_xz", d_xz), _c.nonneg("d_zy", d_zy)
    return _c.result(_NUMERIC["lemma1_bound"](a, b), d_xz, d_zy)


def lemma1_bound_sharp(d_xz: Float[ArrayLike, "*batch"],
                       d_zy: Float[ArrayLike, "*batch"]) -> Float[np.ndarray, "*batch"] | float:
    """Lemma 1, sharper form: ``d(x, y)^2 <= (d(x, z) + d(z, y))^2`` (the triangle
    inequality squared). Attained by collinear points with z between x and y; never
    larger than :func:`lemma1_bound`, equal to it iff ``d_xz == d_zy``."""
    a, b = _c.nonneg("d_xz", d_xz), _c.nonneg("d_zy", d_zy)
    return _c.result(_NUMERIC["lemma1_bound_sharp"](a, b), d_xz, d_zy)


def lemma2_mean_squared_distance(mean_rho: Float[ArrayLike, "*batch"]) -> Float[np.ndarray, "*batch"] | float:
    """Lemma 2 (App. A.1): for unit-norm random vectors X, Y,
    ``E||X - Y||^2 = 2 E[rho(X, Y)]`` with rho the cosine distance.

    Returns ``2 * mean_rho``. The paper states the consequence
    ``E[rho] < eps/2  =>  E||X - Y||^2 < eps``; the underlying identity is exact, so the
    lemma is tight for every distribution. ``mean_rho`` in ``[0, 2]`` (the range of the
    cosine distance).
    """
    m = _c.check("mean_rho", mean_rho, 0.0, COSINE_DISTANCE_MAX)
    return _c.result(_NUMERIC["lemma2_mean_squared_distance"](m), mean_rho)


def lemma3_bound(a_sq: Float[ArrayLike, "*batch"], b_sq: Float[ArrayLike, "*batch"],
                 c_sq: Float[ArrayLike, "*batch"]) -> Float[np.ndarray, "*batch"] | float:
    """Lemma 3 (App. A.1): in a real inner-product space,
    ``||a + b + c||^2 <= 3(||a||^2 + ||b||^2 + ||c||^2)``.

    Arguments are the squared norms ``||a||^2, ||b||^2, ||c||^2`` (>= 0); returns the
    right-hand side. True as stated; equality iff ``a = b = c``.
    """
    a, b, c = _c.nonneg("a_sq", a_sq), _c.nonneg("b_sq", b_sq), _c.nonneg("c_sq", c_sq)
    return _c.result(_NUMERIC["lemma3_bound"](a, b, c), a_sq, b_sq, c_sq)


def lemma3_bound_sharp(a_sq: Float[ArrayLike, "*batch"], b_sq: Float[ArrayLike, "*batch"],
                       c_sq: Float[ArrayLike, "*batch"]) -> Float[np.ndarray, "*batch"] | float:
    """Lemma 3, sharper form: ``||a + b + c||^2 <= (||a|| + ||b|| + ||c||)^2``
    (triangle inequality squared). Attained whenever a, b, c are positively
    collinear; never larger than :func:`lemma3_bound` (Cauchy-Schwarz), equal iff
    ``||a|| = ||b|| = ||c||``. Arguments are squared norms (>= 0)."""
    a, b, c = _c.nonneg("a_sq", a_sq), _c.nonneg("b_sq", b_sq), _c.nonneg("c_sq", c_sq)
    return _c.result(_NUMERIC["lemma3_bound_sharp"](a, b, c), a_sq, b_sq, c_sq)


register("lemma1_bound", "Lemma 1 (App. A.1)",
         "(X, d) metric space, x, y, z in X  =>  d(x,y)^2 <= 2 d(x,z)^2 + 2 d(z,y)^2.",
         {"d_xz": 0.3, "d_zy": 0.4}, "as stated")
register("lemma1_bound_sharp", "Lemma 1 (App. A.1), sharper",
         "(X, d) metric space  =>  d(x,y)^2 <= (d(x,z) + d(z,y))^2 <= 2 d(x,z)^2 + 2 d(z,y)^2.",
         {"d_xz": 0.3, "d_zy": 0.4}, "sharper than the paper")
register("lemma2_mean_squared_distance", "Lemma 2 (App. A.1)",
         "X, Y unit-norm, rho cosine distance  =>  E||X-Y||^2 = 2 E[rho(X,Y)]; hence E[rho] < eps/2 "
         "implies E||X-Y||^2 < eps.",
         {"mean_rho": 0.05}, "as stated")
register("lemma3_bound", "Lemma 3 (App. A.1)",
         "a, b, c in a real inner-product space  =>  ||a+b+c||^2 <= 3(||a||^2 + ||b||^2 + ||c||^2).",
         {"a_sq": 0.1, "b_sq": 0.2, "c_sq": 0.3}, "as stated")
register("lemma3_bound_sharp", "Lemma 3 (App. A.1), sharper",
         "a, b, c in a real inner-product space  =>  ||a+b+c||^2 <= (||a|| + ||b|| + ||c||)^2 "
         "<= 3(||a||^2 + ||b||^2 + ||c||^2).",
         {"a_sq": 0.1, "b_sq": 0.2, "c_sq": 0.3}, "sharper than the paper")
