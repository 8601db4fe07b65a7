"""Capture per-layer statistics from a running VLM with hooks, never holding all hidden states.

>>> from skipit.empirical import capture_statistics
>>> with torch.inference_mode(), capture_statistics(model) as cap:
...     for batch in batches:              # any number of forwards, batch > 1 and padding allowed
...         model(**batch)
>>> stats = cap.statistics               # RunStatistics: stats.layers(), stats.merge(...), stats.save(...)

How it works (layers ``l = 1..N``, hidden state 0 = embedding output):

* a forward pre-hook on the top model reads ``input_ids`` and ``attention_mask`` and derives,
  per example, the vision positions (``adapter.vision_mask``), the text positions (every
  other non-padding position) and the answer position (the last non-padding position);
* a forward pre-hook on decoder layer 1 takes hidden state 0 (its input), and a forward hook
  on decoder layer ``l`` takes hidden state ``l`` (its raw output, before the final norm);
  the hook compares it with hidden state ``l - 1`` and then keeps only hidden state ``l``,
  so at most two hidden states ``(B, S, d)`` are alive at once, whatever ``N``;
* statistics are computed in float64 on the device of the hidden states, buffered for one
  forward and moved to the host once per forward (no per-layer synchronisation);
* CKA keeps, per example and token group, only the Gram matrix of the previous layer
  (``n x n`` for a group of ``n`` tokens);
* the visual attention ratio comes from :class:`skipit.empirical.attention.AttentionProbe`
  (the answer query's attention row, recomputed from the hooked q/k projections, so the
  model keeps its default sdpa attention);
* per example and group, the distances are also reduced to the example's mean and its
  fractions below each threshold (``index_add_`` over the batch), whose sums and centred
  moments over the batch's examples join the run by Chan's merge: examples are the
  independent units of the confidence bounds, and batching or padding cannot change them;
* a token whose state at ``l - 1`` or ``l`` is the zero vector has no cosine distance: it is
  counted in ``zero_norm_tokens`` and left out of every distance statistic;
* padding positions never enter any statistic; all hooks are removed on exit, also when a
  forward raises.

The capture assumes each forward holds whole prompts (a prefill): a forward continuing a
generation cache is refused.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch import nn

from skipit.empirical.adapters import VLMAdapter, get_adapter
from skipit.empirical.hooks import HookSet
from skipit.empirical.stats import CKA_GROUPS, DEFAULT_THRESHOLDS, GROUPS, RunStatistics, check_thresholds


def answer_positions(attention_mask: torch.Tensor) -> torch.Tensor:
    """LongTensor[B]: the last position whose ``attention_mask`` is 1 (the query predicting the answer)."""
    mask = torch.as_tensor(attention_mask).bool()
    if mask.dim() != 2:
        raise ValueError(f"`attention_mask` must be 2-D (B, S), got shape {tuple(mask.shape)}")
    if not bool(mask.any(dim=-1).all()):
        raise ValueError("`attention_mask` must have at least one non-padding position per example")
    cols = torch.arange(mask.shape[-1], device=mask.device).expand_as(mask)
    return torch.where(mask, cols, torch.full_like(cols, -1)).max(dim=-1).values


def _hsic1_tilde(Kt: torch.Tensor, rk: torch.Tensor, Lt: torch.Tensor, rl: torch.Tensor) -> torch.Tensor:
    """``HSIC_1`` (Song et al. 2012, eq. 5) from zero-diagonal Grams and their row sums."""
    n = Kt.shape[0]
    return ((Kt * Lt).sum() + rk.sum() * rl.sum() / ((n - 1) * (n - 2)) - 2.0 * (rk * rl).sum() / (n - 2)) / (
        n * (n - 3))


def _distance_row(rho: torch.Tensor, keep: torch.Tensor, example: torch.Tensor, batch: int,
                  thresholds: torch.Tensor) -> torch.Tensor:
    """One group's distance statistics at one layer, float64, as a row for the host.

    ``rho`` (n,) distances, ``keep`` (n,) bool (False: a zero-norm state, no distance),
    ``example`` (n,) the example of each token in ``0..batch-1``. The row is
    ``[tokens, sum, sum_sq, m2, zero_norm, examples, sum m_e, m2 of m_e,
    #{rho < t} (T), sum f_e(t) (T), m2 of f_e(t) (T), m_e (batch), f_e(t) (batch x T),
    has (batch)]`` over kept tokens and over the examples with at least one kept token (the
    per-example values close the row; ``has`` is 1 for an example with a kept token) (``m_e``: an example's mean distance, ``f_e(t)`` its fraction
    of distances strictly below ``t``).
    """
    w = keep.to(torch.float64)
    r = torch.where(keep, rho, torch.zeros_like(rho))
    n = w.sum()
    s = r.sum()
    m2 = (((r - s / n.clamp_min(1.0)) ** 2) * w).sum()
    below = (r[:, None] < thresholds[None, :]).to(torch.float64) * w[:, None]
    per_n = torch.zeros(batch, dtype=torch.float64, device=rho.device).index_add_(0, example, w)
    per_s = torch.zeros(batch, dtype=torch.float64, device=rho.device).index_add_(0, example, r)
    per_below = torch.zeros(batch, len(thresholds), dtype=torch.float64, device=rho.device).index_add_(0, example, below)
    has = (per_n > 0).to(torch.float64)
    examples = has.sum()
    mean_e = per_s / per_n.clamp_min(1.0)
    frac_e = per_below / per_n.clamp_min(1.0)[:, None]
    sm = (mean_e * has).sum()
    m2m = (((mean_e - sm / examples.clamp_min(1.0)) ** 2) * has).sum()
    sf = (frac_e * has[:, None]).sum(0)
    m2f = (((frac_e - sf / examples.clamp_min(1.0)) ** 2) * has[:, None]).sum(0)
    head = torch.stack([n, s, (r * r).sum(), m2, float(rho.numel()) - n, examples, sm, m2m])
    return torch.cat([head, below.sum(0), sf, m2f, mean_e, frac_e.reshape(-1), has])


class _Gram:
    """Zero-diagonal Gram matrix of one group's tokens, its row sums and its own ``HSIC_1``."""

    __slots__ = ("tilde", "rows", "self_hsic")

    def __init__(self, features: torch.Tensor):
        gram = features @ features.T
        gram.diagonal().zero_()
        self.tilde = gram
        self.rows = gram.sum(1)
        self.self_hsic = _hsic1_tilde(gram, self.rows, gram, self.rows)

    def to(self, device: torch.device) -> _Gram:
        moved = object.__new__(_Gram)
        moved.tilde, moved.rows, moved.self_hsic = self.tilde.to(device), self.rows.to(device), self.self_hsic.to(device)
        return moved


class StatisticsCapture(HookSet):
    """The context manager returned by :func:`capture_statistics`; ``.statistics`` is the run so far."""

    MIN_CKA_TOKENS = 4  # HSIC_1 is defined for n >= 4

    def __init__(self, model: nn.Module, adapter: VLMAdapter | None = None,
                 thresholds: Sequence[float] = DEFAULT_THRESHOLDS, cka: bool = True, attention: bool = True):
        self.model = model
        self.adapter = adapter if adapter is not None else get_adapter(model)
        self.thresholds = check_thresholds(thresholds)
        self.cka = bool(cka)
        self.attention = bool(attention)
        self.layers = list(self.adapter.decoder_layers(model))
        self.num_layers = len(self.layers)
        self._stats = RunStatistics(num_layers=self.num_layers, thresholds=self.thresholds,
                                    model_type=getattr(model.config, "model_type", None))
        self._thresholds_cache: dict[torch.device, torch.Tensor] = {}
        self._probe = None
        self._clear_forward()

    # ---------------------------------------------------------------- public
    @property
    def statistics(self) -> RunStatistics:
        """The statistics of every completed forward so far (a copy)."""
        return RunStatistics.from_dict(self._stats.to_dict())

    # ---------------------------------------------------------------- internals
    def _install(self) -> None:
        """Register the hooks (the shared :class:`skipit.empirical.hooks.HookSet` lifecycle removes
        them on exit, also when a forward raises)."""
        self.on_exit(self._clear_forward)
        self.forward_pre_hook(self.model, self._model_pre_hook, with_kwargs=True)
        self.forward_hook(self.model, self._model_post_hook)
        self.forward_pre_hook(self.layers[0], self._embedding_hook, with_kwargs=True)
        for index, layer in enumerate(self.layers):
            self.forward_hook(layer, self._layer_hook(index + 1))
        if self.attention:
            from skipit.empirical.attention import AttentionProbe

            self._probe = self.enter(AttentionProbe(self.model, self.adapter, self._attention_callback))
            self.on_exit(setattr, self, "_probe", None)

    def _clear_forward(self) -> None:
        self._active = False
        self._prev: torch.Tensor | None = None
        self._grams: dict[tuple[int, str], _Gram] = {}
        self._pending_dist: list[tuple[int, str, torch.Tensor]] = []
        self._pending_cka: list[tuple[int, str, torch.Tensor]] = []
        self._pending_skipped: list[tuple[int, str, int]] = []
        self._pending_att: list[tuple[int, torch.Tensor]] = []

    def _model_pre_hook(self, module, args, kwargs):
        self._clear_forward()
        input_ids = kwargs.get("input_ids", args[0] if args else None)
        if input_ids is None:
            raise ValueError("capture_statistics needs `input_ids` in each forward (to find vision tokens), got none")
        mask = kwargs.get("attention_mask")
        if mask is None:
            mask = torch.ones_like(input_ids)
        if mask.shape != input_ids.shape:
            raise ValueError(
                f"capture_statistics needs whole prompts in each forward: `attention_mask` of shape "
                f"{tuple(mask.shape)} does not match `input_ids` {tuple(input_ids.shape)} (a cache continuation?)")
        cache = kwargs.get("cache", kwargs.get("past_key_values"))
        if cache is not None and hasattr(cache, "get_seq_length") and cache.get_seq_length() > 0:
            raise ValueError("capture_statistics needs whole prompts in each forward, but the cache is not empty")
        config = getattr(self.model, "config", None)
        if kwargs.get("pixel_values") is not None:
            missing = sorted(set(self.adapter.extra_forward_kwargs(input_ids, config)) - set(kwargs))
            if missing:
                raise ValueError(
                    f"{self.adapter.model_type} forwards need {missing} (see adapter.extra_forward_kwargs); "
                    "without them the model silently changes its positions or masks")
        valid = mask.bool()
        vision = self.adapter.vision_mask(input_ids, config).to(valid.device) & valid
        answer_pos = answer_positions(valid)
        batch, seq = valid.shape
        answer = torch.zeros_like(valid)
        answer[torch.arange(batch, device=valid.device), answer_pos] = True
        masks = {"vision": vision, "text": valid & ~vision, "answer": answer}
        # Positions of every non-padding token (flattened), and of each group within that list.
        valid_flat = valid.reshape(-1)
        self._valid_index = valid_flat.nonzero().squeeze(1)
        self._group_index = {g: masks[g].reshape(-1)[valid_flat].nonzero().squeeze(1) for g in GROUPS}
        self._group_count = {g: int(masks[g].sum()) for g in GROUPS}
        self._group_example = {g: self._valid_index[self._group_index[g]] // seq for g in GROUPS}
        self._example_index = {g: [masks[g][b].nonzero().squeeze(1) for b in range(batch)] for g in CKA_GROUPS}
        self._vision = vision
        self._shape = (batch, seq)
        if self._probe is not None:
            self._probe.set_query_positions(answer_pos)
        self._active = True

    def _embedding_hook(self, module, args, kwargs):
        if not self._active:
            return
        hidden = kwargs.get("hidden_states", args[0] if args else None)
        if hidden is None or tuple(hidden.shape[:2]) != self._shape:
            got = None if hidden is None else tuple(hidden.shape)
            raise ValueError(
                f"decoder input of shape {got} does not match `input_ids` {self._shape}: this family changes "
                "the sequence length inside the model, which capture_statistics does not support")
        self._prev = hidden.detach()
        if self.cka:
            with torch.no_grad():
                self._update_grams(hidden, layer=0)

    def _layer_hook(self, layer: int):
        def hook(module, args, output):
            if not self._active:
                return
            hidden = output[0] if isinstance(output, (tuple, list)) else output
            with torch.no_grad():
                self._distances(layer, self._prev, hidden)
                if self.cka:
                    self._update_grams(hidden, layer)
            self._prev = hidden.detach() if layer < self.num_layers else None

        return hook

    def _thresholds_on(self, device: torch.device) -> torch.Tensor:
        if device not in self._thresholds_cache:
            self._thresholds_cache[device] = torch.tensor(self.thresholds, dtype=torch.float64, device=device)
        return self._thresholds_cache[device]

    def _distances(self, layer: int, prev: torch.Tensor, hidden: torch.Tensor) -> None:
        d = hidden.shape[-1]
        # Layers may sit on different devices (device_map="auto"): work where this layer's output is.
        device = hidden.device
        index = self._valid_index.to(device)
        x = prev.reshape(-1, d)[index.to(prev.device)].to(device=device, dtype=torch.float64)
        y = hidden.reshape(-1, d)[index].to(torch.float64)
        norm_x, norm_y = torch.linalg.vector_norm(x, dim=-1), torch.linalg.vector_norm(y, dim=-1)
        keep = (norm_x > 0) & (norm_y > 0)  # a zero vector has no direction: no cosine distance
        # float64, and clipped where computed: 1 - cos of near-equal vectors is a few ulps below 0
        rho = (1.0 - (x * y).sum(-1) / (norm_x * norm_y).clamp_min(torch.finfo(torch.float64).tiny)).clamp(0.0, 2.0)
        thresholds = self._thresholds_on(rho.device)
        for group in GROUPS:
            if self._group_count[group] == 0:
                continue
            index = self._group_index[group].to(device)
            row = _distance_row(rho[index], keep[index], self._group_example[group].to(device), self._shape[0],
                                thresholds)
            self._pending_dist.append((layer, group, row))

    def _update_grams(self, hidden: torch.Tensor, layer: int) -> None:
        for group in CKA_GROUPS:
            for b, positions in enumerate(self._example_index[group]):
                if positions.numel() < self.MIN_CKA_TOKENS:
                    if layer > 0:
                        self._pending_skipped.append((layer, group, 1))
                    continue
                gram = _Gram(hidden[b, positions.to(hidden.device)].to(torch.float64))
                if layer > 0:
                    before = self._grams[(b, group)]
                    if before.tilde.device != gram.tilde.device:
                        before = before.to(gram.tilde.device)
                    xy = _hsic1_tilde(before.tilde, before.rows, gram.tilde, gram.rows)
                    self._pending_cka.append((layer, group, torch.stack([xy, before.self_hsic, gram.self_hsic])))
                self._grams[(b, group)] = gram

    def _attention_callback(self, layer: int, probs: torch.Tensor) -> None:
        if not self._active:
            return
        vision = self._vision.to(device=probs.device, dtype=probs.dtype)
        self._pending_att.append((layer, (probs * vision[:, None, :]).sum(-1)))

    def _model_post_hook(self, module, args, output):
        if not self._active:
            return
        stats = self._stats
        per_example = {}  # [group] -> (B, N, 1 + T) values of this forward's examples
        shares = np.full((self._shape[0], self.num_layers), np.nan)  # (B, N) head-mean attention shares
        if self._pending_dist:
            rows = _to_host([row for *_, row in self._pending_dist])
            T, B = len(self.thresholds), self._shape[0]
            for (layer, group, _), row in zip(self._pending_dist, rows):
                n, zero, examples = (int(v) for v in np.rint(row[[0, 4, 5]]))
                below, fraction_sum, fraction_m2 = row[8:8 + T], row[8 + T:8 + 2 * T], row[8 + 2 * T:8 + 3 * T]
                values = per_example.setdefault(group, np.full((B, self.num_layers, 1 + T), np.nan))
                has = row[8 + 3 * T + B * (1 + T):] > 0.5
                values[has, layer - 1, 0] = row[8 + 3 * T:8 + 3 * T + B][has]
                values[has, layer - 1, 1:] = row[8 + 3 * T + B:8 + 3 * T + B * (1 + T)].reshape(B, T)[has]
                stats.add_distance_sums(layer, group, n, row[1], row[2], row[3], np.rint(below).astype(np.int64),
                                        zero_norm=zero)
                stats.add_example_sums(layer, group, examples, row[6], row[7], fraction_sum, fraction_m2)
        if self._pending_cka:
            rows = _to_host([row for *_, row in self._pending_cka])
            for (layer, group, _), row in zip(self._pending_cka, rows):
                stats.add_cka(layer, group, *row)
        for layer, group, k in self._pending_skipped:
            stats.add_cka_skipped(layer, group, k)
        if self._pending_att:
            masses = _to_host([m for _, m in self._pending_att])
            for (layer, _), mass in zip(self._pending_att, masses):
                stats.add_attention(layer, mass)
                shares[:, layer - 1] = np.asarray(mass, dtype=np.float64).mean(1)
        stats.add_example_values(per_example, shares)
        stats.num_examples += self._shape[0]
        self._clear_forward()


def _to_host(tensors: list[torch.Tensor]) -> np.ndarray:
    """Stack same-shape tensors (possibly on several devices) and copy them to the host once."""
    device = tensors[0].device
    return torch.stack([t.to(device) for t in tensors]).cpu().numpy()


def capture_statistics(model: nn.Module, adapter: VLMAdapter | None = None,
                       thresholds: Sequence[float] = DEFAULT_THRESHOLDS, cka: bool = True,
                       attention: bool = True) -> StatisticsCapture:
    """Context manager capturing per-layer statistics of every forward of ``model`` run inside it.

    ``adapter`` defaults to ``get_adapter(model)``; ``thresholds`` are the ``t`` of eq. (2);
    ``cka=False`` skips CKA, ``attention=False`` the visual attention ratio. After (or during)
    the ``with`` block, ``.statistics`` is a :class:`~skipit.empirical.stats.RunStatistics`.
    See the module docstring for what is measured and how.
    """
    return StatisticsCapture(model, adapter=adapter, thresholds=thresholds, cka=cka, attention=attention)


__all__ = ["StatisticsCapture", "answer_positions", "capture_statistics"]
