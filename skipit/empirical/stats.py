"""Streaming, mergeable per-layer statistics of a VLM run (paper Sec. 4.1, eqs. 1-3, App. C).

Layer indexing: decoder layers ``l = 1..N``; hidden state 0 is the embedding output.
"Layer l" compares hidden state ``l`` (output of layer ``l``) with hidden state ``l - 1``.

For each layer and token group (``vision``, ``text``, ``answer``) a run keeps sufficient
statistics of the cosine distances ``rho = 1 - <h_l, h_{l-1}> / (|h_l| |h_{l-1}|)``:

* eq. (1) ``D_l = mean rho`` from the count and the sum; the sum of squares and a
  numerically stable centred second moment ``M2`` (Chan, Golub & LeVeque 1979 merge)
  give the unbiased variance ``M2 / (n - 1)``;
* eq. (2) ``p_l(t) = #{rho < t} / n`` (strict, as in the paper: ``rho = t`` is not below
  ``t``) for every threshold at once;
* **examples as the independent units.** The tokens of one image are correlated, so a
  confidence bound must treat examples, not tokens, as its i.i.d. draws. Per example ``e``
  with ``n_e >= 1`` tokens of the group at that layer, the run keeps the sum and the centred
  second moment (Chan merge) of the per-example mean ``m_e = mean rho`` and of the
  per-example fractions ``f_e(t) = #{rho < t} / n_e``, and the number of such examples.
  ``design_effect = Var_e(m_e) / (Var(rho) / (tokens / examples))`` measures how much the
  clustering inflates the variance of a mean over independent tokens (1 = independent);
* **zero-norm hidden states** (e.g. a zero-initialised projector) have no cosine distance.
  A token whose state at ``l - 1`` or ``l`` is the zero vector is counted in
  ``zero_norm_tokens`` and left out of every distance statistic (token and example level);
* linear CKA between hidden states ``l - 1`` and ``l`` of the vision and of the text tokens
  with the minibatch estimator of Nguyen, Raghu & Kornblith (2021, eq. 3): the mean over
  minibatches of the unbiased HSIC estimator ``HSIC_1`` (Song et al. 2012, eq. 5), combined as
  ``CKA = mean HSIC_1(K, L) / sqrt(mean HSIC_1(K, K) * mean HSIC_1(L, L))``.
  **Minibatch = the tokens of one group in one example** (at least 4 tokens; smaller
  groups are skipped and counted). This choice makes the estimate independent of how
  examples are batched or padded, so a batched run equals one example at a time and
  merging two runs equals one run on both;
* **per-example values** (for confidence bounds that need every unit's value, not only
  sums: :mod:`skipit.theory.confidence`): per group, ``m_e`` and ``f_e(t)`` of every example at
  every layer (NaN where the example has no distance there), and its head-mean visual
  attention share, with an integer label per example (``-1`` until the caller labels the
  rows, :meth:`RunStatistics.label_examples`; :func:`skipit.empirical.certify` labels them
  with the example's index in its data, so that questions of one image can be joined into
  one unit);
* eq. (3) the visual attention ratio at the answer position: per layer and head, the sum
  over examples of the answer query's attention mass on vision tokens, so that
  ``VAR_l = mean over examples of sum over heads`` (the paper's head-wise sum) and the
  head-mean ``VAR_l / H`` in ``[0, 1]``.

Everything is float64 (int64 for counts), whatever the model's dtype, and every field is a
sum over examples, so ``merge`` is addition (``M2`` by Chan's formula).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

GROUPS = ("vision", "text", "answer")
CKA_GROUPS = ("vision", "text")
DEFAULT_THRESHOLDS = (0.01, 0.02, 0.05, 0.1)
FORMAT = "skipit.run_statistics/2"
_FORMATS_BEFORE = {"skipit.run_statistics/1": "token-level sums only, before the per-example statistics"}


def threshold_key(t: float) -> str:
    """The key of threshold ``t`` in the per-layer dicts: ``repr(float(t))`` (``0.05 -> "0.05"``)."""
    return repr(float(t))


def check_thresholds(thresholds: Sequence[float]) -> tuple[float, ...]:
    """Thresholds as a tuple of floats in (0, 2], strictly increasing."""
    values = tuple(float(t) for t in thresholds)
    if not values:
        raise ValueError("`thresholds` must hold at least one value in (0, 2], got none")
    for t in values:
        if not (0.0 < t <= 2.0):
            raise ValueError(f"`thresholds` must lie in (0, 2] (cosine distance range), got {t}")
    if any(b <= a for a, b in zip(values, values[1:])):
        raise ValueError(f"`thresholds` must be strictly increasing, got {list(values)}")
    return values


# ------------------------------------------------------------------ HSIC / CKA
def hsic1_from_grams(K, L):
    """Unbiased HSIC estimator ``HSIC_1`` of Song et al. (2012, eq. 5) from two Gram matrices.

    With ``K~, L~`` the Grams with zeroed diagonals and ``n >= 4`` samples::

        HSIC_1 = [tr(K~ L~) + (1'K~1)(1'L~1) / ((n-1)(n-2)) - 2/(n-2) 1'K~L~1] / (n(n-3))

    ``K``, ``L``: torch or numpy arrays ``(n, n)``, symmetric. Returns a 0-d tensor/array.
    """
    n = K.shape[0]
    if n < 4:
        raise ValueError(f"HSIC_1 needs n >= 4 samples, got {n}")
    Kt = K - _diag_matrix(K)
    Lt = L - _diag_matrix(L)
    trace = (Kt * Lt).sum()
    row_k, row_l = Kt.sum(1), Lt.sum(1)
    cross = (row_k * row_l).sum()
    return (trace + row_k.sum() * row_l.sum() / ((n - 1) * (n - 2)) - 2.0 * cross / (n - 2)) / (n * (n - 3))


def _diag_matrix(K):
    if isinstance(K, np.ndarray):
        return np.diag(np.diag(K))
    import torch

    return torch.diag_embed(torch.diagonal(K))


def cka_from_hsic(hsic_xy: float, hsic_xx: float, hsic_yy: float) -> float | None:
    """``hsic_xy / sqrt(hsic_xx hsic_yy)``; ``None`` unless both self-HSIC estimates are positive
    (the unbiased estimator can fall below zero on near-degenerate data)."""
    if not (hsic_xx > 0.0 and hsic_yy > 0.0):
        return None
    denom = hsic_xx * hsic_yy
    return float(hsic_xy / math.sqrt(denom))


# ------------------------------------------------------------------ statistics
def _zeros(*shape, dtype=np.float64):
    return np.zeros(shape, dtype=dtype)


@dataclass
class RunStatistics:
    """Mergeable per-layer statistics of a run; see the module docstring for the definitions.

    Arrays are indexed ``[layer - 1]`` (layer ``l = 1..N``); group arrays by ``GROUPS``.
    """

    num_layers: int
    thresholds: tuple[float, ...] = DEFAULT_THRESHOLDS
    num_heads: int | None = None
    num_examples: int = 0
    model_type: str | None = None
    # distances: [group] -> arrays over layers
    count: dict = field(default_factory=dict)      # int64 (N,)
    total: dict = field(default_factory=dict)      # float64 (N,): sum of rho
    total_sq: dict = field(default_factory=dict)   # float64 (N,): sum of rho^2
    m2: dict = field(default_factory=dict)         # float64 (N,): sum of (rho - mean)^2
    proximal: dict = field(default_factory=dict)   # int64 (N, T): #{rho < t}
    zero_norm: dict = field(default_factory=dict)  # int64 (N,): tokens left out, a zero-norm state
    # per-example means m_e and fractions f_e(t) over examples with >= 1 token of the group
    examples: dict = field(default_factory=dict)             # int64 (N,)
    example_total: dict = field(default_factory=dict)        # float64 (N,): sum of m_e
    example_m2: dict = field(default_factory=dict)           # float64 (N,): sum of (m_e - mean)^2
    example_proximal: dict = field(default_factory=dict)     # float64 (N, T): sum of f_e(t)
    example_proximal_m2: dict = field(default_factory=dict)  # float64 (N, T): sum of (f_e(t) - mean)^2
    # CKA: [group] -> float64 (N, 3) sums of HSIC_1 (xy, xx, yy); int64 (N,) minibatches, skipped
    cka_hsic: dict = field(default_factory=dict)
    cka_minibatches: dict = field(default_factory=dict)
    cka_skipped: dict = field(default_factory=dict)
    # attention at the answer position: float64 (N, H) sum over examples of per-head vision mass
    attention_head_sum: np.ndarray | None = None
    attention_ratio_sq: np.ndarray | None = None   # float64 (N,): sum over examples of VAR^2
    attention_examples: np.ndarray | None = None   # int64 (N,)
    # per-example values, rows in capture order: [group] -> float64 (E, N, 1 + T) with column 0 the
    # example's mean distance m_e and columns 1.. its fractions f_e(t) (NaN: no distance there);
    # the head-mean visual attention share (E, N) (NaN: not captured); int64 labels (E,), -1 unset
    example_values: dict = field(default_factory=dict)
    example_attention: np.ndarray | None = None
    example_ids: np.ndarray | None = None

    def __post_init__(self):
        if int(self.num_layers) < 1:
            raise ValueError(f"`num_layers` must be >= 1, got {self.num_layers}")
        self.num_layers = int(self.num_layers)
        self.thresholds = check_thresholds(self.thresholds)
        N, T = self.num_layers, len(self.thresholds)
        for g in GROUPS:
            self.count.setdefault(g, _zeros(N, dtype=np.int64))
            self.total.setdefault(g, _zeros(N))
            self.total_sq.setdefault(g, _zeros(N))
            self.m2.setdefault(g, _zeros(N))
            self.proximal.setdefault(g, _zeros(N, T, dtype=np.int64))
            self.zero_norm.setdefault(g, _zeros(N, dtype=np.int64))
            self.examples.setdefault(g, _zeros(N, dtype=np.int64))
            self.example_total.setdefault(g, _zeros(N))
            self.example_m2.setdefault(g, _zeros(N))
            self.example_proximal.setdefault(g, _zeros(N, T))
            self.example_proximal_m2.setdefault(g, _zeros(N, T))
            self.example_values.setdefault(g, _zeros(0, N, 1 + T))
        if self.example_attention is None:
            self.example_attention = _zeros(0, N)
        if self.example_ids is None:
            self.example_ids = _zeros(0, dtype=np.int64)
        for g in CKA_GROUPS:
            self.cka_hsic.setdefault(g, _zeros(N, 3))
            self.cka_minibatches.setdefault(g, _zeros(N, dtype=np.int64))
            self.cka_skipped.setdefault(g, _zeros(N, dtype=np.int64))
        if self.num_heads is not None:
            self._init_attention(int(self.num_heads))

    def _init_attention(self, num_heads: int) -> None:
        self.num_heads = num_heads
        if self.attention_head_sum is None:
            self.attention_head_sum = _zeros(self.num_layers, num_heads)
            self.attention_ratio_sq = _zeros(self.num_layers)
            self.attention_examples = _zeros(self.num_layers, dtype=np.int64)

    # ------------------------------------------------------------ accumulation
    def add_distances(self, layer: int, group: str, rho: np.ndarray, zero_norm: int = 0) -> None:
        """Add ONE example's cosine distances ``rho`` (1-D, float64) of its ``group`` tokens at
        ``layer`` (1-based), and ``zero_norm`` tokens of it that had a zero-norm state.

        Token sums and the example's mean and fractions are both added; an example with no
        distance (``rho`` empty) adds no example."""
        rho = np.asarray(rho, dtype=np.float64).reshape(-1)
        below = np.array([(rho < t).sum() for t in self.thresholds], dtype=np.int64)
        self.add_distance_sums(layer, group, rho.size, rho.sum(), (rho * rho).sum(),
                               ((rho - rho.mean()) ** 2).sum() if rho.size else 0.0, below, zero_norm)
        if rho.size:
            self.add_example_sums(layer, group, 1, rho.mean(), 0.0, below / rho.size, np.zeros(len(below)))

    def add_distance_sums(self, layer: int, group: str, n: int, s: float, q: float, m2: float,
                          below: Sequence[int], zero_norm: int = 0) -> None:
        """Add a chunk of ``n`` distances given by its sum ``s``, sum of squares ``q``, centred
        second moment ``m2`` and counts ``below[j] = #{rho < thresholds[j]}``, and ``zero_norm``
        tokens left out because a state had norm zero (token level only; see :meth:`add_example_sums`)."""
        i = self._layer_index(layer)
        self.zero_norm[group][i] += int(zero_norm)
        if n == 0:
            return
        n_a, s_a = int(self.count[group][i]), float(self.total[group][i])
        self.m2[group][i] = _chan_m2(n_a, s_a, float(self.m2[group][i]), int(n), float(s), float(m2))
        self.count[group][i] += int(n)
        self.total[group][i] += float(s)
        self.total_sq[group][i] += float(q)
        self.proximal[group][i] += np.asarray(below, dtype=np.int64)

    def add_example_sums(self, layer: int, group: str, examples: int, s: float, m2: float,
                         fraction_sum: Sequence[float], fraction_m2: Sequence[float]) -> None:
        """Add ``examples`` examples (each with >= 1 distance of ``group`` at ``layer``) by the sum ``s``
        and centred second moment ``m2`` of their per-example mean distances, and the sums and
        centred second moments of their per-example fractions below each threshold."""
        i = self._layer_index(layer)
        if examples == 0:
            return
        n_a = int(self.examples[group][i])
        self.example_m2[group][i] = _chan_m2(n_a, float(self.example_total[group][i]), float(self.example_m2[group][i]),
                                             int(examples), float(s), float(m2))
        self.example_proximal_m2[group][i] = _chan_m2(
            n_a, self.example_proximal[group][i], self.example_proximal_m2[group][i], int(examples),
            np.asarray(fraction_sum, dtype=np.float64), np.asarray(fraction_m2, dtype=np.float64))
        self.examples[group][i] += int(examples)
        self.example_total[group][i] += float(s)
        self.example_proximal[group][i] += np.asarray(fraction_sum, dtype=np.float64)

    def add_cka(self, layer: int, group: str, hsic_xy: float, hsic_xx: float, hsic_yy: float) -> None:
        """Add one minibatch's ``HSIC_1`` values (between hidden states ``layer - 1`` and ``layer``)."""
        i = self._layer_index(layer)
        self.cka_hsic[group][i] += (float(hsic_xy), float(hsic_xx), float(hsic_yy))
        self.cka_minibatches[group][i] += 1

    def add_cka_skipped(self, layer: int, group: str, k: int = 1) -> None:
        self.cka_skipped[group][self._layer_index(layer)] += int(k)

    def add_attention(self, layer: int, head_mass: np.ndarray) -> None:
        """Add ``head_mass`` ``(B, H)``: per example and head, the answer query's attention on vision tokens."""
        head_mass = np.asarray(head_mass, dtype=np.float64)
        if head_mass.ndim != 2:
            raise ValueError(f"`head_mass` must be (B, heads), got shape {head_mass.shape}")
        if self.num_heads is None:
            self._init_attention(head_mass.shape[1])
        elif head_mass.shape[1] != self.num_heads:
            raise ValueError(f"`head_mass` has {head_mass.shape[1]} heads, the run has {self.num_heads}")
        i = self._layer_index(layer)
        self.attention_head_sum[i] += head_mass.sum(0)
        self.attention_ratio_sq[i] += (head_mass.sum(1) ** 2).sum()
        self.attention_examples[i] += head_mass.shape[0]

    def add_example_values(self, values: dict[str, np.ndarray], attention: np.ndarray | None = None,
                           ids: Sequence[int] | None = None) -> None:
        """Append the per-example values of ``B`` examples (the rows of one forward, in order).

        ``values[group]``: float64 ``(B, N, 1 + T)``, column 0 the example's mean distance at
        each layer, then its fraction below each threshold, NaN where it has no distance (a
        group missing from ``values`` is all NaN). ``attention``: ``(B, N)`` head-mean visual
        attention shares (None: NaN). ``ids``: the examples' labels (None: -1, unlabelled)."""
        N, T = self.num_layers, len(self.thresholds)
        sizes = {np.shape(v)[0] for v in values.values()} | ({np.shape(attention)[0]} if attention is not None else set())
        if len(sizes) != 1:
            raise ValueError(f"`values` and `attention` must hold the same number of examples, got {sorted(sizes)}")
        b = sizes.pop()
        for g in GROUPS:
            v = np.full((b, N, 1 + T), np.nan) if g not in values else np.asarray(values[g], dtype=np.float64)
            if v.shape != (b, N, 1 + T):
                raise ValueError(f"`values[{g!r}]` must have shape {(b, N, 1 + T)}, got {v.shape}")
            self.example_values[g] = np.concatenate([self.example_values[g], v])
        a = np.full((b, N), np.nan) if attention is None else np.asarray(attention, dtype=np.float64)
        if a.shape != (b, N):
            raise ValueError(f"`attention` must have shape {(b, N)}, got {a.shape}")
        self.example_attention = np.concatenate([self.example_attention, a])
        labels = np.full(b, -1, dtype=np.int64) if ids is None else np.asarray(ids, dtype=np.int64).reshape(-1)
        if labels.shape != (b,):
            raise ValueError(f"`ids` must hold {b} labels, got {labels.size}")
        self.example_ids = np.concatenate([self.example_ids, labels])

    def label_examples(self, ids: Sequence[int]) -> None:
        """Label the per-example rows, in capture order (e.g. with each example's index in the data)."""
        labels = np.asarray(ids, dtype=np.int64).reshape(-1)
        if labels.shape != self.example_ids.shape:
            raise ValueError(f"`ids` must hold one label per captured example ({self.example_ids.size}), "
                             f"got {labels.size}")
        self.example_ids = labels

    def _layer_index(self, layer: int) -> int:
        if not 1 <= int(layer) <= self.num_layers:
            raise ValueError(f"`layer` must lie in 1..{self.num_layers}, got {layer}")
        return int(layer) - 1

    # ------------------------------------------------------------ merge
    def merge(self, other: RunStatistics) -> RunStatistics:
        """A new run = this run and ``other`` together (same layers and thresholds)."""
        if other.num_layers != self.num_layers:
            raise ValueError(f"cannot merge runs with {self.num_layers} and {other.num_layers} layers")
        if other.thresholds != self.thresholds:
            raise ValueError(f"cannot merge runs with thresholds {self.thresholds} and {other.thresholds}")
        if None not in (self.num_heads, other.num_heads) and self.num_heads != other.num_heads:
            raise ValueError(f"cannot merge runs with {self.num_heads} and {other.num_heads} attention heads")
        if None not in (self.model_type, other.model_type) and self.model_type != other.model_type:
            raise ValueError(f"cannot merge runs of model types {self.model_type!r} and {other.model_type!r}")
        out = RunStatistics.from_dict(self.to_dict())
        out.num_examples += other.num_examples
        out.model_type = self.model_type or other.model_type
        for g in GROUPS:  # the same Chan merges as adding `other`'s sums chunk by chunk
            for i, layer in enumerate(range(1, self.num_layers + 1)):
                out.add_distance_sums(layer, g, int(other.count[g][i]), float(other.total[g][i]),
                                      float(other.total_sq[g][i]), float(other.m2[g][i]), other.proximal[g][i],
                                      int(other.zero_norm[g][i]))
                out.add_example_sums(layer, g, int(other.examples[g][i]), float(other.example_total[g][i]),
                                     float(other.example_m2[g][i]), other.example_proximal[g][i],
                                     other.example_proximal_m2[g][i])
        for g in CKA_GROUPS:
            out.cka_hsic[g] = self.cka_hsic[g] + other.cka_hsic[g]
            out.cka_minibatches[g] = self.cka_minibatches[g] + other.cka_minibatches[g]
            out.cka_skipped[g] = self.cka_skipped[g] + other.cka_skipped[g]
        for g in GROUPS:
            out.example_values[g] = np.concatenate([self.example_values[g], other.example_values[g]])
        out.example_attention = np.concatenate([self.example_attention, other.example_attention])
        out.example_ids = np.concatenate([self.example_ids, other.example_ids])
        if other.num_heads is not None:
            out._init_attention(other.num_heads)
            out.attention_head_sum = out.attention_head_sum + other.attention_head_sum
            out.attention_ratio_sq = out.attention_ratio_sq + other.attention_ratio_sq
            out.attention_examples = out.attention_examples + other.attention_examples
        return out

    # ------------------------------------------------------------ results
    def group(self, layer: int, group: str) -> dict[str, Any]:
        """Eqs. (1)-(2) for one layer and group, over tokens and over examples.

        Per-example values (when captured): ``example_values`` (``m_e``),
        ``example_fraction_values`` ``(E, T)`` and ``example_value_ids``, numpy arrays over the
        examples with a distance at that layer, as lists. Token level: ``tokens``, ``mean_cosine_distance``, ``variance`` (unbiased), ``sum``,
        ``sum_sq``, ``proximal_probability`` and ``proximal_count`` per threshold key, and
        ``zero_norm_tokens`` (left out of all of these). Example level (the independent units):
        ``examples``, ``example_mean_cosine_distance`` (mean of the per-example means),
        ``example_mean_variance`` (their unbiased variance; 0.0 below 2 examples),
        ``example_proximal_fraction`` and ``example_proximal_variance`` per threshold key (the
        same for the per-example fractions), and ``design_effect`` (``None`` below 2 examples
        or 2 tokens, or when the token variance is 0).
        """
        i = self._layer_index(layer)
        n = int(self.count[group][i])
        s, q = float(self.total[group][i]), float(self.total_sq[group][i])
        below = self.proximal[group][i]
        token_variance = float(self.m2[group][i]) / (n - 1) if n > 1 else None
        e = int(self.examples[group][i])
        example_variance = float(self.example_m2[group][i]) / (e - 1) if e > 1 else 0.0
        design_effect = None
        if e > 1 and token_variance:
            design_effect = example_variance / (token_variance * e / n)
        keys = [threshold_key(t) for t in self.thresholds]
        return {
            "tokens": n,
            "mean_cosine_distance": s / n if n else None,
            "variance": token_variance,
            "sum": s,
            "sum_sq": q,
            "proximal_probability": {key: (int(k) / n if n else None) for key, k in zip(keys, below)},
            "proximal_count": {key: int(k) for key, k in zip(keys, below)},
            "zero_norm_tokens": int(self.zero_norm[group][i]),
            "examples": e,
            "example_mean_cosine_distance": float(self.example_total[group][i]) / e if e else None,
            "example_mean_variance": example_variance,
            "example_proximal_fraction": {key: (float(f) / e if e else None)
                                          for key, f in zip(keys, self.example_proximal[group][i])},
            "example_proximal_variance": {key: (float(m) / (e - 1) if e > 1 else 0.0)
                                          for key, m in zip(keys, self.example_proximal_m2[group][i])},
            "design_effect": design_effect,
            **self._example_rows(self.example_values[group][:, i, :]),
        }

    def _example_rows(self, rows: np.ndarray) -> dict[str, list]:
        """The per-example values of one layer and group, rows without a distance left out."""
        has = ~np.isnan(rows[:, 0])
        return {"example_values": rows[has, 0].tolist(), "example_fraction_values": rows[has, 1:].tolist(),
                "example_value_ids": self.example_ids[has].tolist()}

    def cka(self, layer: int, group: str) -> float | None:
        """Minibatch-unbiased linear CKA between hidden states ``layer - 1`` and ``layer`` of ``group``."""
        i = self._layer_index(layer)
        if self.cka_minibatches[group][i] == 0:
            return None
        xy, xx, yy = (float(v) for v in self.cka_hsic[group][i])
        return cka_from_hsic(xy, xx, yy)

    def attention(self, layer: int) -> dict[str, Any]:
        """Eq. (3) at the answer position: VAR (head sum), its head mean, per-head means, variance of VAR."""
        i = self._layer_index(layer)
        shares = self.example_attention[:, i]
        has = ~np.isnan(shares)
        values = {"visual_attention_example_values": shares[has].tolist(),
                  "visual_attention_example_ids": self.example_ids[has].tolist()}
        if self.attention_head_sum is None or self.attention_examples[i] == 0:
            return {**values,"visual_attention_ratio": None, "visual_attention_mean_head": None,
                    "visual_attention_per_head": None, "visual_attention_examples": 0,
                    "visual_attention_ratio_variance": None}
        n = int(self.attention_examples[i])
        per_head = self.attention_head_sum[i] / n
        ratio = float(self.attention_head_sum[i].sum()) / n
        variance = None
        if n > 1:
            variance = max(float(self.attention_ratio_sq[i]) - n * ratio * ratio, 0.0) / (n - 1)
        return {**values, "visual_attention_ratio": ratio, "visual_attention_mean_head": ratio / self.num_heads,
                "visual_attention_per_head": [float(v) for v in per_head], "visual_attention_examples": n,
                "visual_attention_ratio_variance": variance}

    def layers(self) -> list[dict[str, Any]]:
        """Per-layer dicts, ``l = 1..N`` (keys as in the shared contract)."""
        out = []
        for layer in range(1, self.num_layers + 1):
            entry = {"layer": layer}
            for g in GROUPS:
                entry[g] = self.group(layer, g)
            entry["cka"] = {g: self.cka(layer, g) for g in CKA_GROUPS}
            entry.update(self.attention(layer))
            out.append(entry)
        return out

    # ------------------------------------------------------------ persistence
    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict holding every accumulator (float64 values round-trip exactly)."""
        d = {
            "format": FORMAT, "num_layers": self.num_layers, "thresholds": list(self.thresholds),
            "num_heads": self.num_heads, "num_examples": int(self.num_examples), "model_type": self.model_type,
            "groups": {g: {"count": self.count[g].tolist(), "sum": self.total[g].tolist(),
                           "sum_sq": self.total_sq[g].tolist(), "m2": self.m2[g].tolist(),
                           "proximal_count": self.proximal[g].tolist(), "zero_norm": self.zero_norm[g].tolist(),
                           "examples": self.examples[g].tolist(), "example_sum": self.example_total[g].tolist(),
                           "example_m2": self.example_m2[g].tolist(),
                           "example_proximal_sum": self.example_proximal[g].tolist(),
                           "example_proximal_m2": self.example_proximal_m2[g].tolist()} for g in GROUPS},
            "cka": {g: {"hsic": self.cka_hsic[g].tolist(), "minibatches": self.cka_minibatches[g].tolist(),
                        "skipped": self.cka_skipped[g].tolist()} for g in CKA_GROUPS},
            "attention": None,
            "example_values": {"ids": self.example_ids.tolist(),
                               "groups": {g: _nan_to_none(self.example_values[g]) for g in GROUPS},
                               "attention": _nan_to_none(self.example_attention)},
        }
        if self.attention_head_sum is not None:
            d["attention"] = {"head_sum": self.attention_head_sum.tolist(),
                              "ratio_sq": self.attention_ratio_sq.tolist(),
                              "examples": self.attention_examples.tolist()}
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunStatistics:
        """Inverse of :meth:`to_dict`."""
        if d.get("format") in _FORMATS_BEFORE:
            raise ValueError(f"statistics dict has the older format {d['format']!r} "
                             f"({_FORMATS_BEFORE[d['format']]}); capture the run again to get {FORMAT!r}")
        if d.get("format") != FORMAT:
            raise ValueError(f"statistics dict must have format {FORMAT!r}, got {d.get('format')!r}")
        out = cls(num_layers=d["num_layers"], thresholds=tuple(d["thresholds"]), num_heads=None,
                  num_examples=int(d["num_examples"]), model_type=d.get("model_type"))
        for g in GROUPS:
            src = d["groups"][g]
            out.count[g] = np.asarray(src["count"], dtype=np.int64)
            out.total[g] = np.asarray(src["sum"], dtype=np.float64)
            out.total_sq[g] = np.asarray(src["sum_sq"], dtype=np.float64)
            out.m2[g] = np.asarray(src["m2"], dtype=np.float64)
            out.proximal[g] = np.asarray(src["proximal_count"], dtype=np.int64).reshape(out.num_layers, -1)
            out.zero_norm[g] = np.asarray(src["zero_norm"], dtype=np.int64)
            out.examples[g] = np.asarray(src["examples"], dtype=np.int64)
            out.example_total[g] = np.asarray(src["example_sum"], dtype=np.float64)
            out.example_m2[g] = np.asarray(src["example_m2"], dtype=np.float64)
            out.example_proximal[g] = np.asarray(src["example_proximal_sum"], dtype=np.float64).reshape(out.num_layers, -1)
            out.example_proximal_m2[g] = np.asarray(src["example_proximal_m2"],
                                                    dtype=np.float64).reshape(out.num_layers, -1)
        rows = d.get("example_values")  # absent in dicts written before the per-example values
        if rows is not None:
            N, T = out.num_layers, len(out.thresholds)
            out.example_ids = np.asarray(rows["ids"], dtype=np.int64).reshape(-1)
            for g in GROUPS:
                out.example_values[g] = _none_to_nan(rows["groups"][g]).reshape(-1, N, 1 + T)
            out.example_attention = _none_to_nan(rows["attention"]).reshape(-1, N)
        for g in CKA_GROUPS:
            src = d["cka"][g]
            out.cka_hsic[g] = np.asarray(src["hsic"], dtype=np.float64).reshape(out.num_layers, 3)
            out.cka_minibatches[g] = np.asarray(src["minibatches"], dtype=np.int64)
            out.cka_skipped[g] = np.asarray(src["skipped"], dtype=np.int64)
        if d.get("attention") is not None:
            out.num_heads = int(d["num_heads"])
            out.attention_head_sum = np.asarray(d["attention"]["head_sum"], dtype=np.float64)
            out.attention_ratio_sq = np.asarray(d["attention"]["ratio_sq"], dtype=np.float64)
            out.attention_examples = np.asarray(d["attention"]["examples"], dtype=np.int64)
        return out

    def save(self, path: str | os.PathLike) -> None:
        """Write :meth:`to_dict` as JSON (``repr`` of each float64, so loading is exact)."""
        with open(path, "w") as fh:
            json.dump(self.to_dict(), fh, allow_nan=False)

    @classmethod
    def load(cls, path: str | os.PathLike) -> RunStatistics:
        with open(path) as fh:
            return cls.from_dict(json.load(fh))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RunStatistics) and self.to_dict() == other.to_dict()


def _nan_to_none(a: np.ndarray) -> list:
    """Nested lists with None for NaN (strict JSON has no NaN)."""
    return np.where(np.isnan(a), None, a).tolist()


def _none_to_nan(rows: list) -> np.ndarray:
    return np.asarray(rows, dtype=object).astype(np.float64) if len(rows) else np.zeros(0)


def _chan_m2(n_a: int, s_a, m2_a, n_b: int, s_b, m2_b):
    """Centred second moment of the union of two samples (Chan, Golub & LeVeque 1979); ``s``, ``m2``
    may be arrays (several statistics of the same samples)."""
    if n_a == 0:
        return m2_b
    if n_b == 0:
        return m2_a
    delta = s_b / n_b - s_a / n_a
    return m2_a + m2_b + delta * delta * n_a * n_b / (n_a + n_b)


__all__ = ["CKA_GROUPS", "DEFAULT_THRESHOLDS", "GROUPS", "RunStatistics", "check_thresholds", "cka_from_hsic",
           "hsic1_from_grams", "threshold_key"]
