"""Baselines in the skipping framework: FastV pruning and visual token withdrawal.

* **FastV** (Chen et al., 2024; ``fastv_prune``): after decoder layer K, keep only the
  fraction ``keep_ratio`` of each example's vision tokens that received the most
  attention (mean over heads) from the answer query (the last non-padding prompt
  position) at layer K; the others leave layers K+1..N, keys and values included. The
  attention row comes from ``skipit.empirical.attention.AttentionProbe`` (hooked q/k
  projections, works under sdpa), taken in the prefill; generated tokens keep the set.
* **Visual token withdrawal** (VTW, Lin et al., 2024; ``visual_token_withdrawal``): all
  vision tokens leave after layer K (early exit at K), with K chosen by the output-KL
  rule ``choose_vtw_layer``: the first K from which the KL divergence of the answer
  distribution (full model || withdrawn at K) stays below a threshold at every later K.

``matched_fastv_ratio`` / ``matched_vtw_layer`` pick the baseline's parameter so its
prefill FLOPs (``skipit.empirical.flops``) match a budget, e.g. that of late entry at L.
"""

from __future__ import annotations

import contextlib

import torch

from skipit.empirical.capture import answer_positions
from skipit.empirical.flops import DecoderShape, fastv_kept_count, prefill_flops, tokens_per_layer
from skipit.empirical.hooks import check_layer
from skipit.empirical.skipping import TokenSkipper, early_exit, resolve_adapter

__all__ = [
    "fastv_prune", "visual_token_withdrawal", "choose_vtw_layer", "answer_kl_per_layer",
    "matched_fastv_ratio", "matched_vtw_layer", "fastv_kept_count",
    "fastv_selection",
]


def fastv_selection(scores, vision, keep_ratio):
    """BoolTensor[B, S]: the vision tokens FastV keeps, given the answer query's head-mean attention.

    ``scores`` is ``(B, S)`` (attention of each example's answer query on every key, mean
    over heads), ``vision`` the ``BoolTensor[B, S]`` of vision positions. Example ``b`` keeps
    its ``fastv_kept_count(keep_ratio, n_b)`` vision tokens of highest score (``n_b`` its own
    vision count); exact ties go to the earlier position, so the kept set never depends on
    how ``topk`` orders equal values.
    """
    masked = scores.masked_fill(~vision, float("-inf"))
    order = torch.sort(masked, dim=-1, descending=True, stable=True).indices
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(order.shape[1], device=order.device).expand_as(order))
    kept = torch.tensor([fastv_kept_count(keep_ratio, int(n)) for n in vision.sum(dim=1).tolist()],
                        device=vision.device)
    return vision & (rank < kept[:, None])


def _answer_rows(attention_mask, batch, seq, device):
    """Answer position of each example (``capture.answer_positions``); no mask: the last position."""
    if attention_mask is None:
        attention_mask = torch.ones(batch, seq, dtype=torch.bool, device=device)
    return answer_positions(attention_mask).to(device)


class _FastVSkipper(TokenSkipper):
    def __init__(self, model, layer, keep_ratio, adapter):
        super().__init__(model, self._keep, adapter)
        self.prune_layer = layer
        self.keep_ratio = keep_ratio
        self._selected = None
        self._probe = None

    def _keep(self, l, vision):
        if l <= self.prune_layer or not bool(vision.any()):
            return None
        if self._selected is None or self._selected.shape != vision.shape:
            raise RuntimeError("FastV: no attention from layer K was recorded for this forward")
        return ~vision | self._selected

    def _lm_pre(self, module, args, kwargs):
        # A forward that raised never reached _lm_post; its probe must not outlive it.
        self._close_probe()
        out = super()._lm_pre(module, args, kwargs)
        step = self._step
        if step is not None and step.past == 0 and bool(step.vision.any()):
            from skipit.empirical.attention import AttentionProbe

            self._selected = None
            vision = step.vision
            ratio = self.keep_ratio

            def on_layer(layer, probs):
                self._selected = fastv_selection(probs.mean(dim=1), vision, ratio)

            positions = _answer_rows(self._attention_mask2d, vision.shape[0], step.q, vision.device)
            probe = AttentionProbe(self.model, self.adapter, on_layer, layers=[self.prune_layer])
            probe.set_query_positions(positions)
            self._probe = probe.__enter__()
        return out

    def _lm_post(self, module, args, output):
        self._close_probe()
        return super()._lm_post(module, args, output)

    def _close_probe(self):
        if self._probe is not None:
            probe, self._probe = self._probe, None
            probe.close()

    def _install(self):
        super()._install()
        self.on_exit(setattr, self, "_selected", None)
        self.on_exit(self._close_probe)


@contextlib.contextmanager
def fastv_prune(model, layer, keep_ratio, adapter=None):
    """FastV: after layer ``layer`` (K) keep the top ``keep_ratio`` of vision tokens by the
    answer query's head-mean attention at layer K; drop the rest from layers K+1..N.

    Each example keeps :func:`fastv_kept_count` ``(keep_ratio, n)`` of its own ``n`` vision
    tokens (nearest integer, exact halves to even), chosen by :func:`fastv_selection`
    (exact ties to the earlier position). ``keep_ratio=1`` is the full model;
    ``keep_ratio=0`` is early exit at K.
    """
    ad = resolve_adapter(model, adapter)
    check_layer("layer", layer, 1, ad.num_layers(model))
    if isinstance(keep_ratio, bool) or not isinstance(keep_ratio, (int, float)) or not 0 <= keep_ratio <= 1:
        raise ValueError(f"`keep_ratio` must be in [0, 1], got {keep_ratio!r}")
    with _FastVSkipper(model, layer, float(keep_ratio), ad) as skipper:
        yield skipper


def visual_token_withdrawal(model, layer, adapter=None):
    """VTW: every vision token leaves after layer ``layer`` (= early exit at that layer)."""
    return early_exit(model, layer=layer, adapter=adapter)


def _answer_log_probs(model, batch):
    out = model(**batch)
    logits = out.logits
    pos = _answer_rows(batch.get("attention_mask"), logits.shape[0], logits.shape[1], logits.device)
    rows = logits[torch.arange(logits.shape[0], device=logits.device), pos]
    return torch.log_softmax(rows.double(), dim=-1)


@torch.no_grad()
def answer_kl_rows(model, batches, contexts):
    """``KL(full || skipped)`` of the answer-token distribution, per example: a float64 tensor
    ``(len(contexts), examples)``, examples in the order of ``batches``, one row per context
    factory of ``contexts`` (zero-argument callables returning a skipping context).

    The direction is the full model's distribution first: the expected log-loss of the
    skipped model's answers on the full model's (VTW's rule, ShortV's layer contribution).
    """
    rows = []
    for batch in batches:
        ref = _answer_log_probs(model, batch)
        got = torch.zeros(len(contexts), ref.shape[0], dtype=torch.float64)
        for i, context in enumerate(contexts):
            with context():
                skipped = _answer_log_probs(model, batch)
            got[i] = (ref.exp() * (ref - skipped)).sum(dim=-1).double().cpu()
        rows.append(got)
    if not rows or sum(r.shape[1] for r in rows) == 0:
        raise ValueError("`batches` must hold at least one example")
    return torch.cat(rows, dim=1)


def answer_kl(model, batches, contexts):
    """Mean over the examples of :func:`answer_kl_rows`: one mean ``KL(full || skipped)`` per
    context factory of ``contexts``, over ``batches``."""
    return answer_kl_rows(model, batches, contexts).mean(dim=1).tolist()


def answer_kl_per_layer(model, batches, adapter=None):
    """Mean KL(full || withdrawn at K) of the answer-token distribution, for K = 1..N."""
    ad = resolve_adapter(model, adapter)
    n = ad.num_layers(model)
    return answer_kl(model, batches, [lambda k=k: early_exit(model, layer=k, adapter=ad) for k in range(1, n + 1)])


def choose_vtw_layer(model, batches, kl_threshold, adapter=None):
    """The VTW layer: the smallest K with KL <= ``kl_threshold`` at K and every later layer.

    Returns ``(K, kls)`` with ``kls[K-1]`` the mean KL at K. K = N always qualifies (its KL
    is 0: early exit at N is the full model).
    """
    if not kl_threshold >= 0:
        raise ValueError(f"`kl_threshold` must be >= 0, got {kl_threshold!r}")
    kls = answer_kl_per_layer(model, batches, adapter)
    chosen = len(kls)
    for k in range(len(kls), 0, -1):
        if kls[k - 1] <= kl_threshold:
            chosen = k
        else:
            break
    return chosen, kls


def matched_fastv_ratio(shape: DecoderShape, text, vision, layer, budget):
    """Largest FastV keep ratio at layer K whose prefill FLOPs do not exceed ``budget``.

    Returns a ratio that is a multiple of 1/vision (the token counts are integers), or 0.0
    if even pruning every vision token exceeds the budget.
    """
    best = 0.0
    for kept in range(vision + 1):
        ratio = kept / vision if vision else 1.0
        tokens = tokens_per_layer(shape.num_layers, text, vision, "fastv", layer, keep_ratio=ratio)
        if prefill_flops(shape, tokens) <= budget:
            best = ratio
    return best


def matched_vtw_layer(shape: DecoderShape, text, vision, budget):
    """Largest withdrawal layer K whose prefill FLOPs do not exceed ``budget`` (0 if none)."""
    best = 0
    for k in range(1, shape.num_layers + 1):
        if prefill_flops(shape, tokens_per_layer(shape.num_layers, text, vision, "vtw", k)) <= budget:
            best = k
    return best
