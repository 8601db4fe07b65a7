"""Images as the independent units: identity by pixels, per-image values, splits and samples by image.

The questions asked of one image are not independent draws: the image comes first, so
their vision statistics are the same, and whether skipping changes their answers depends on
the same picture. Every bound of a certificate therefore treats the **image** as its i.i.d.
unit, and anything that divides or samples the data divides or samples whole images.

An image is identified by its content (:func:`unit_key`: sha256 of its mode, size and
decoded pixels), so the same picture under two file names, or loaded twice, is one unit.
numpy only (no torch).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["UNIT_RULE", "unit_key", "unit_ids", "unit_sizes", "unit_means", "split_units", "sample_units"]

UNIT_RULE = ("image: questions whose images have the same decoded pixels (mode, size, bytes; sha256) are one "
             "unit, whatever their file names; each unit's value is the mean over its questions")
"""The rule, in words, as the certificate states it."""


def unit_key(example: Any) -> str:
    """The identity of ``example``'s image: the sha256 (hex) of its mode, size and decoded
    pixels (:meth:`skipit.empirical.data.Example.image_bytes`)."""
    return hashlib.sha256(example.image_bytes()).hexdigest()


def unit_ids(examples: Sequence[Any]) -> list[int]:
    """Per example, the index of its image among the distinct images of ``examples``:
    ``0, 1, ...`` in order of first appearance (equal pixels, equal index)."""
    seen: dict[str, int] = {}
    return [seen.setdefault(unit_key(ex), len(seen)) for ex in examples]


def _ids(units: Sequence[int]) -> np.ndarray:
    ids = np.asarray(units, dtype=np.int64).reshape(-1)
    if ids.size and (ids.min() < 0):
        raise ValueError(f"`units` must be ids >= 0, got {int(ids.min())}")
    return ids


def unit_sizes(units: Sequence[int]) -> np.ndarray:
    """Questions per unit id ``0..max(units)`` (0 for an id that does not occur)."""
    ids = _ids(units)
    return np.bincount(ids) if ids.size else np.zeros(0, dtype=np.int64)


def unit_means(values: Sequence[float], units: Sequence[int]) -> np.ndarray:
    """The mean of ``values`` over each unit's questions, for the units that occur, in
    increasing id order: the per-image values a bound takes as its i.i.d. draws."""
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    ids = _ids(units)
    if v.shape != ids.shape:
        raise ValueError(f"`values` must have one entry per question ({ids.size}), got {v.size}")
    if not ids.size:
        return np.zeros(0)
    sizes = np.bincount(ids)
    sums = np.bincount(ids, weights=v)
    present = sizes > 0
    return sums[present] / sizes[present]


def _permuted_units(ids, seed):
    distinct = np.unique(ids)
    return distinct[np.random.default_rng(seed).permutation(distinct.size)]


def split_units(units: Sequence[int], calibration_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """``(statistics, calibration)`` question indices, disjoint by unit.

    The distinct units are put in a seeded random order; the first
    ``round((1 - calibration_fraction) U)`` of the ``U`` units (at least one, and at most
    ``U - 1`` when ``U >= 2``) go to the statistics, the rest to calibration, each with all of
    its questions. Both lists are sorted.
    """
    if not 0.0 < calibration_fraction < 1.0:
        raise ValueError(f"`calibration_fraction` must be in (0, 1), got {calibration_fraction!r}")
    ids = _ids(units)
    order = _permuted_units(ids, seed)
    n = order.size
    n_stats = min(max(int(round((1.0 - calibration_fraction) * n)), 1), n - 1) if n >= 2 else n
    stats = np.isin(ids, order[:n_stats])
    return [int(i) for i in np.flatnonzero(stats)], [int(i) for i in np.flatnonzero(~stats)]


def sample_units(units: Sequence[int], questions: int, seed: int) -> list[int]:
    """A seeded random sample of whole units with at least ``questions`` questions (all of
    them when there are fewer): the shortest prefix of a seeded random order of the units
    that reaches ``questions``, every question of a chosen unit included. Returns the chosen
    question indices in their original order (never simply the first rows)."""
    if isinstance(questions, bool) or not isinstance(questions, (int, np.integer)) or questions < 0:
        raise ValueError(f"`questions` must be an integer >= 0, got {questions!r}")
    ids = _ids(units)
    if questions >= ids.size:
        return list(range(ids.size))
    order = _permuted_units(ids, seed)
    sizes = np.bincount(ids)
    reached = np.cumsum(sizes[order])
    take = int(np.searchsorted(reached, questions)) + 1 if questions > 0 else 0
    return [int(i) for i in np.flatnonzero(np.isin(ids, order[:take]))]
