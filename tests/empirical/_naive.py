"""Naive reference for the capture engine: every hidden state and attention map materialised.

Hidden states 0..N-1 come from ``output_hidden_states=True``; the raw output of layer N
from one forward hook on the last decoder layer, because transformers applies the final
norm to the last entry of ``output_hidden_states``. A token whose state at ``l - 1`` or ``l``
is the zero vector has no distance: it is counted in ``zero_norm_tokens`` and left out.
Example-level fields: the mean and variance over examples of each example's mean distance
and fractions below each threshold. Attention rows come from the eager
``output_attentions=True`` maps. All arithmetic is numpy float64, written from the
definitions (paper eqs. 1-3; HSIC_1 of Song et al. 2012 with explicit matrix products).
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from skipit.empirical.adapters import get_adapter
from skipit.empirical.capture import answer_positions
from skipit.empirical.stats import threshold_key


def forward_states(model, batch, attentions=True):
    """(hidden states 0..N as float64 numpy (B, S, d) each, attentions (B, H, S, S) per layer or None)."""
    layers = get_adapter(model).decoder_layers(model)
    raw = {}
    handle = layers[-1].register_forward_hook(lambda m, a, o: raw.__setitem__("last", o))
    try:
        with torch.no_grad():
            out = model(**batch, output_hidden_states=True, output_attentions=attentions)
    finally:
        handle.remove()
    states = [h.to(torch.float64).numpy() for h in out.hidden_states[:-1]] + [raw["last"].to(torch.float64).numpy()]
    atts = [a.to(torch.float64).numpy() for a in out.attentions] if attentions else None
    return states, atts


def hsic1(K, L):
    n = K.shape[0]
    Kt = K - np.diag(np.diag(K))
    Lt = L - np.diag(np.diag(L))
    one = np.ones(n)
    return (np.trace(Kt @ Lt) + (one @ Kt @ one) * (one @ Lt @ one) / ((n - 1) * (n - 2))
            - 2.0 / (n - 2) * (one @ Kt @ Lt @ one)) / (n * (n - 3))


def naive_layers(model, batches, thresholds=(0.01, 0.02, 0.05, 0.1), attention_model=None):
    """Per-layer dicts in the format of ``RunStatistics.layers()`` for all ``batches`` together.

    Hidden states come from ``model``; attention maps from ``attention_model`` (the same weights
    with ``attn_implementation="eager"``), or none when it is ``None``. Eager attention runs its
    softmax in float32, which in a float64 model turns fully masked padding rows into NaN that
    leak through 0 * NaN; so the eager copy should be float32 and the hidden states float64.
    """
    adapter = get_adapter(model)
    attentions = attention_model is not None
    rho = None
    cka = None
    att = None
    for batch in batches:
        states, _ = forward_states(model, batch, attentions=False)
        maps = forward_states(attention_model, batch)[1] if attentions else None
        N = len(states) - 1
        if rho is None:
            rho = [{g: [] for g in ("vision", "text", "answer")} for _ in range(N)]
            zero = [{g: 0 for g in ("vision", "text", "answer")} for _ in range(N)]
            cka = [{g: [] for g in ("vision", "text")} for _ in range(N)]
            att = [[] for _ in range(N)]
        valid = batch["attention_mask"].bool().numpy()
        vision = adapter.vision_mask(batch["input_ids"], model.config).numpy() & valid
        answer = answer_positions(batch["attention_mask"]).numpy()
        for b in range(valid.shape[0]):
            groups = {"vision": np.flatnonzero(vision[b]), "text": np.flatnonzero(valid[b] & ~vision[b]),
                      "answer": np.array([answer[b]])}
            for l in range(1, N + 1):
                x, y = states[l - 1][b], states[l][b]
                if not (np.isfinite(x).all() and np.isfinite(y).all()):
                    raise ValueError(f"non-finite hidden states at layer {l}")
                for g, pos in groups.items():
                    norms = np.linalg.norm(x[pos], axis=-1) * np.linalg.norm(y[pos], axis=-1)
                    kept = norms > 0
                    zero[l - 1][g] += int((~kept).sum())
                    cos = (x[pos][kept] * y[pos][kept]).sum(-1) / norms[kept]
                    if kept.any():
                        rho[l - 1][g].append(1.0 - cos)  # one array per example
                for g in ("vision", "text"):
                    pos = groups[g]
                    if len(pos) >= 4:
                        K, L = x[pos] @ x[pos].T, y[pos] @ y[pos].T
                        cka[l - 1][g].append((hsic1(K, L), hsic1(K, K), hsic1(L, L)))
                if attentions:
                    row = maps[l - 1][b, :, answer[b], :]  # (H, S)
                    att[l - 1].append(row[:, vision[b]].sum(-1))
    out = []
    for l in range(1, len(rho) + 1):
        entry = {"layer": l}
        for g, per_example in rho[l - 1].items():
            r = np.concatenate(per_example) if per_example else np.zeros(0)
            means = np.array([e.mean() for e in per_example])
            fractions = {t: np.array([(e < t).mean() for e in per_example]) for t in thresholds}
            e = len(per_example)
            token_var = r.var(ddof=1) if len(r) > 1 else None
            example_var = means.var(ddof=1) if e > 1 else 0.0
            entry[g] = {
                "tokens": len(r), "mean_cosine_distance": r.mean() if len(r) else None, "variance": token_var,
                "sum": r.sum(), "sum_sq": (r * r).sum(),
                "proximal_probability": {threshold_key(t): float((r < t).mean()) if len(r) else None
                                         for t in thresholds},
                "proximal_count": {threshold_key(t): int((r < t).sum()) for t in thresholds},
                "zero_norm_tokens": zero[l - 1][g],
                "examples": e,
                "example_mean_cosine_distance": means.mean() if e else None,
                "example_mean_variance": example_var,
                "example_proximal_fraction": {threshold_key(t): f.mean() if e else None for t, f in fractions.items()},
                "example_proximal_variance": {threshold_key(t): f.var(ddof=1) if e > 1 else 0.0
                                              for t, f in fractions.items()},
                "design_effect": example_var / (token_var / (len(r) / e)) if e > 1 and token_var else None,
            }
        entry["cka"] = {}
        for g, values in cka[l - 1].items():
            xy, xx, yy = np.array(values).mean(0)
            entry["cka"][g] = xy / np.sqrt(xx * yy)
        if attentions:
            heads = np.array(att[l - 1])  # (examples, H)
            entry["visual_attention_ratio"] = heads.sum(1).mean()
            entry["visual_attention_mean_head"] = heads.sum(1).mean() / heads.shape[1]
            entry["visual_attention_per_head"] = list(heads.mean(0))
        out.append(entry)
    return out
