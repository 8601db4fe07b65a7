"""One attention row per example and layer, without attention maps.

The visual attention ratio (paper, Sec. 4.1, eq. 3) needs, at every decoder layer,
the softmax attention row of one query (the answer position) over all keys.
Asking the model for it (``output_attentions=True``) forces the eager attention
path and materialises ``N`` maps of shape ``(B, heads, S, S)``. :class:`AttentionProbe`
instead hooks the attention module's own query and key projections while the model
runs its default (sdpa) attention, and recomputes only the row it needs:

    p_{b,h,:} = softmax( scaling * <RoPE(q_{b,h,i_b}), RoPE(k_{b,g(h),:})> + mask_{b,i_b,:} )

with ``i_b`` the query position of example ``b``, ``g(h) = h // (heads / kv_heads)``
the key/value head of query head ``h`` (GQA, as ``repeat_kv`` groups them), the
family's per-head ``q_norm``/``k_norm`` where it has them (Gemma 3, Qwen3-style),
the rotary function of the model's own modeling module applied to the ``(cos, sin)``
the model passes each layer (this covers Qwen2.5-VL's multimodal rotary, which
transformers 5 folds into ``cos, sin``), and the mask the layer receives (boolean,
additive, 2-D padding, or ``None`` = causal, plus the sliding window of the layer).
Rotary is applied in the model's dtype (as its own attention does), the logits
are accumulated in float32 (float64 for a float64 model) and the softmax is taken
in float64.

Memory: for one layer at a time the probe holds that layer's keys
``(B, kv_heads, S, head_dim)`` and the query rows ``(B, heads, head_dim)``, plus the
rotary temporaries of the keys (a few copies of that size) while the row is
computed; all is released when the layer's attention returns. Nothing grows with
the number of layers, and no ``S x S`` map exists. Compute: ``B * S * d`` multiply-adds
per layer (``heads * head_dim = d``), 1/d of one ``d x d`` projection, plus elementwise
rotary on the keys.
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
from torch import nn

from skipit.empirical.hooks import HookSet, check_layer

__all__ = ["AttentionProbe", "attention_row", "vision_attention_mass"]

Callback = Callable[[int, torch.Tensor], Any]


def _rotary_function(attention: nn.Module) -> Callable:
    """The ``apply_rotary_pos_emb`` of the modeling module that defines ``attention``."""
    module = sys.modules.get(type(attention).__module__)
    function = getattr(module, "apply_rotary_pos_emb", None)
    if function is None:
        raise ValueError(
            f"attention module {type(attention).__name__} comes from {type(attention).__module__!r}, "
            "which defines no `apply_rotary_pos_emb`; AttentionProbe supports rotary-embedding decoders"
        )
    return function


def _mask_rows(
    mask: torch.Tensor | None,
    rows: torch.Tensor,
    seq_len: int,
    *,
    causal: bool,
    sliding_window: int | None,
) -> torch.Tensor:
    """Additive float64 mask ``(B, 1 | heads, S)`` for query position ``rows[b]`` of each example.

    ``mask`` is what the attention module receives: ``None`` (sdpa without padding:
    causal, or full when the module is not causal), a 4-D boolean mask (True = attend),
    a 4-D additive float mask, or a 2-D padding mask (1 = token, flash-attention style).
    """
    if mask is not None and not isinstance(mask, torch.Tensor):
        raise ValueError(
            f"attention mask of type {type(mask).__name__} (e.g. flex attention's BlockMask) is not supported; "
            "run the model with sdpa or eager attention"
        )
    batch = rows.shape[0]
    keys = torch.arange(seq_len, device=rows.device)
    if mask is not None and mask.dim() == 4:
        if mask.shape[-1] != seq_len or mask.shape[-2] != seq_len:
            raise ValueError(
                f"attention mask of shape {tuple(mask.shape)} does not cover the {seq_len} positions of the "
                "layer input; AttentionProbe needs the whole sequence in one forward (no cache prefix)"
            )
        index = torch.arange(batch, device=rows.device) if mask.shape[0] == batch else torch.zeros_like(rows)
        row = mask[index, :, rows, :]  # (B, 1 | heads, S)
        if row.dtype == torch.bool:
            zero = torch.zeros((), dtype=torch.float64, device=row.device)
            return torch.where(row, zero, torch.full_like(zero, float("-inf")))
        return row.to(torch.float64)
    allowed = torch.ones(batch, seq_len, dtype=torch.bool, device=rows.device)
    if causal:
        allowed &= keys[None, :] <= rows[:, None]
    if sliding_window is not None:
        allowed &= keys[None, :] > rows[:, None] - sliding_window
    if mask is not None:
        if mask.dim() != 2 or mask.shape[-1] != seq_len:
            raise ValueError(
                f"attention mask of shape {tuple(mask.shape)} is neither 4-D (B, 1, S, S) nor 2-D (B, S={seq_len})"
            )
        allowed &= mask.to(torch.bool)
    zero = torch.zeros((), dtype=torch.float64, device=rows.device)
    return torch.where(allowed, zero, torch.full_like(zero, float("-inf")))[:, None, :]


def attention_row(
    attention: nn.Module,
    queries: torch.Tensor,
    keys: torch.Tensor,
    rows: torch.Tensor,
    position_embeddings: tuple[torch.Tensor, torch.Tensor],
    attention_mask: torch.Tensor | None,
) -> torch.Tensor:
    """Softmax attention row ``(B, heads, S)`` (float64) of query ``rows[b]`` of each example.

    ``queries`` is the ``q_proj`` output at the query rows, ``(B, heads * head_dim)``;
    ``keys`` the ``k_proj`` output, ``(B, S, kv_heads * head_dim)``; ``position_embeddings``
    the ``(cos, sin)`` pair, each ``(B | 1, S, head_dim)``, that the model passes to the
    layer; ``attention_mask`` what the layer receives (see :func:`_mask_rows`). Applies,
    in the module's order, ``q_norm``/``k_norm``, the rotary embedding, GQA grouping,
    ``attention.scaling`` and the mask; masked keys get probability exactly 0.
    """
    batch, seq_len, _ = keys.shape
    head_dim = attention.head_dim
    q = queries.reshape(batch, 1, -1, head_dim).transpose(1, 2)  # (B, H, 1, hd)
    k = keys.reshape(batch, seq_len, -1, head_dim).transpose(1, 2)  # (B, KV, S, hd)
    if getattr(attention, "q_norm", None) is not None:
        q = attention.q_norm(q)
    if getattr(attention, "k_norm", None) is not None:
        k = attention.k_norm(k)

    cos, sin = position_embeddings
    if cos.dim() != 3 or cos.shape[-2] != seq_len:
        raise ValueError(
            f"rotary (cos, sin) of shape {tuple(cos.shape)} is not (B, S={seq_len}, head_dim); "
            "this transformers version passes a layout AttentionProbe does not read"
        )
    if cos.shape[0] != batch:
        cos, sin = cos.expand(batch, -1, -1), sin.expand(batch, -1, -1)
    example = torch.arange(batch, device=rows.device)
    # Rotary in the model's dtype, as its own attention computes it; the keys' rotary
    # temporaries then cost what the model's do, not float64 copies of them.
    rotary = _rotary_function(attention)
    q, _ = rotary(q, q, cos[example, rows][:, None], sin[example, rows][:, None])
    _, k = rotary(k[:, :1], k, cos, sin)

    num_heads, kv_heads = q.shape[1], k.shape[1]
    if num_heads % kv_heads:
        raise ValueError(f"{num_heads} query heads are not a multiple of {kv_heads} key/value heads")
    compute = torch.promote_types(k.dtype, torch.float32)
    grouped = q.reshape(batch, kv_heads, num_heads // kv_heads, head_dim).to(compute)
    logits = torch.matmul(grouped, k.to(compute).transpose(-1, -2)).reshape(batch, num_heads, seq_len)
    logits = logits.to(torch.float64) * attention.scaling
    logits = logits + _mask_rows(
        attention_mask,
        rows,
        seq_len,
        causal=getattr(attention, "is_causal", True),
        sliding_window=getattr(attention, "sliding_window", None),
    )
    return torch.softmax(logits, dim=-1)


def _bound_arguments(module: nn.Module, args: tuple, kwargs: dict) -> dict:
    """``kwargs`` completed with the positional ``args`` named after ``module.forward``'s parameters."""
    signature = inspect.signature(module.forward)
    named = {}
    for name, value in signature.bind_partial(*args, **kwargs).arguments.items():
        if signature.parameters[name].kind is inspect.Parameter.VAR_KEYWORD:
            named.update(value)
        else:
            named[name] = value
    return named


def vision_attention_mass(probs: torch.Tensor, vision_mask: torch.Tensor) -> torch.Tensor:
    """Per-head attention mass on vision tokens, ``(B, heads)`` float64 (paper, Sec. 4.1, eq. 3).

    ``probs`` is a probe row ``(B, heads, S)``, ``vision_mask`` a ``BoolTensor[B, S]`` of the
    vision-token key positions (``adapter.vision_mask``). Entry ``[b, h]`` is
    ``sum_i A^{(l,h)}(a_b, i)`` over image tokens ``i``; the paper's VAR of the layer is its
    sum over heads (eq. 3 writes the head index as ``j = 0..h``, one head too many: heads
    are ``j = 1..h``), which lies in ``[0, heads]``; the head average lies in ``[0, 1]``.
    """
    if probs.dim() != 3 or vision_mask.shape != (probs.shape[0], probs.shape[2]):
        raise ValueError(
            f"`vision_mask` must be [B, S] = {(probs.shape[0], probs.shape[-1])} for probs of shape "
            f"{tuple(probs.shape)}, got {tuple(vision_mask.shape)}"
        )
    weights = vision_mask.to(device=probs.device, dtype=torch.float64)[:, :, None]
    return torch.matmul(probs.to(torch.float64), weights)[..., 0]


class _LayerState:
    __slots__ = ("mask", "position_embeddings", "queries", "keys")

    def __init__(self) -> None:
        self.clear()

    def clear(self) -> None:
        self.mask = None
        self.position_embeddings = None
        self.queries = None
        self.keys = None


class AttentionProbe(HookSet):
    """Context manager that reports, per decoder layer, one softmax attention row per example.

    ``AttentionProbe(model, adapter, callback)``; call :meth:`set_query_positions` with a
    ``LongTensor[B]`` (one query position per example, e.g. the answer position = the
    last non-padding prompt position) before a forward, then run the model inside
    ``with probe:``. For every probed decoder layer ``l`` (1-based, l = 1..N) the probe
    calls ``callback(l, probs)`` with ``probs`` a float64 tensor ``(B, heads, S)``: the
    attention of query position ``pos[b]`` on every key position, per head, equal to row
    ``pos[b]`` of the eager ``output_attentions=True`` map (masked keys 0). It works under
    the model's default sdpa attention and never asks for ``output_attentions``.

    ``layers`` restricts probing to some 1-based layers (FastV needs one). The query
    positions persist across forwards until set again; they are checked against each
    layer's batch size and sequence length. The probe needs the whole prompt in one
    forward: a forward continuing a non-empty cache raises ``ValueError``. The hooks follow
    :class:`~skipit.empirical.hooks.HookSet`: removed on exit, also when the forward
    raises; entering an active probe raises ``RuntimeError``.
    """

    def __init__(
        self,
        model: nn.Module,
        adapter: Any = None,
        callback: Callback | None = None,
        *,
        layers: Iterable[int] | None = None,
    ) -> None:
        if callback is None or not callable(callback):
            raise ValueError(f"`callback` must be a callable (layer, probs), got {callback!r}")
        if adapter is None:
            from skipit.empirical.adapters import get_adapter

            adapter = get_adapter(model)
        self.model = model
        self.adapter = adapter
        self.callback = callback
        decoder_layers = list(adapter.decoder_layers(model))
        self.num_layers = len(decoder_layers)
        if layers is None:
            chosen = range(1, self.num_layers + 1)
        else:
            chosen = sorted(set(check_layer("layers", layer, 1, self.num_layers) for layer in layers))
        self.layers = tuple(chosen)
        self._attention = {layer: adapter.self_attention(decoder_layers[layer - 1]) for layer in self.layers}
        for layer, attention in self._attention.items():
            for name in ("q_proj", "k_proj", "head_dim", "scaling"):
                if not hasattr(attention, name):
                    raise ValueError(
                        f"attention module {type(attention).__name__} of layer {layer} has no `{name}`; "
                        "AttentionProbe needs separate q_proj/k_proj projections"
                    )
        self._positions: torch.Tensor | None = None
        self._max_position = -1
        self._on_device: dict[torch.device, torch.Tensor] = {}
        self._states: dict[int, _LayerState] = {}

    def set_query_positions(self, positions: torch.Tensor | Sequence[int]) -> None:
        """Set the query position of each example (0-based index into the sequence), ``LongTensor[B]``."""
        positions = torch.as_tensor(positions)
        if positions.dim() != 1 or positions.dtype in (torch.bool,) or positions.is_floating_point():
            raise ValueError(
                f"`positions` must be a 1-D integer tensor [B], got dtype {positions.dtype} shape {tuple(positions.shape)}"
            )
        if positions.numel() and int(positions.min()) < 0:
            raise ValueError(f"`positions` must be >= 0, got {positions.tolist()}")
        self._positions = positions.to(torch.long)
        # Checked here once, so that the per-layer hooks never synchronise a GPU.
        self._max_position = int(positions.max()) if positions.numel() else -1
        self._on_device = {}

    def _rows(self, batch: int, seq_len: int, device: torch.device) -> torch.Tensor:
        if self._positions is None:
            raise RuntimeError("AttentionProbe: call set_query_positions(positions) before the forward")
        if self._positions.shape[0] != batch:
            raise ValueError(f"{self._positions.shape[0]} query positions set for a batch of {batch}")
        if self._max_position >= seq_len:
            raise ValueError(f"query positions {self._positions.tolist()} must be < sequence length {seq_len}")
        rows = self._on_device.get(device)
        if rows is None:
            rows = self._on_device[device] = self._positions.to(device)
        return rows

    def _install(self) -> None:
        self.on_exit(self._clear_states)
        for layer, attention in self._attention.items():
            state = self._states[layer] = _LayerState()
            self.forward_pre_hook(attention, self._pre_hook(state), with_kwargs=True)
            self.forward_hook(attention.q_proj, self._query_hook(state))
            self.forward_hook(attention.k_proj, self._key_hook(state))
            self.forward_hook(attention, self._post_hook(layer, attention, state))

    def _clear_states(self) -> None:
        for state in self._states.values():
            state.clear()
        self._states.clear()

    def _pre_hook(self, state: _LayerState):
        def hook(module, args, kwargs):
            state.clear()
            if args:
                kwargs = _bound_arguments(module, args, kwargs)
            cache = kwargs.get("cache", kwargs.get("past_key_values"))
            cached = 0 if cache is None else cache.get_seq_length(getattr(module, "layer_idx", 0))
            if cached > 0:
                raise ValueError(
                    f"AttentionProbe needs the whole prompt in one forward, but the cache already holds {cached} "
                    "positions (a decoding step); probe the prefill forward only"
                )
            if "position_embeddings" not in kwargs or kwargs["position_embeddings"] is None:
                raise ValueError(
                    f"{type(module).__name__} received no `position_embeddings` keyword; AttentionProbe reads "
                    "the rotary (cos, sin) each layer is given"
                )
            state.position_embeddings = kwargs["position_embeddings"]
            state.mask = kwargs.get("attention_mask")

        return hook

    def _query_hook(self, state: _LayerState):
        def hook(module, args, output):
            rows = self._rows(output.shape[0], output.shape[1], output.device)
            state.queries = output[torch.arange(output.shape[0], device=output.device), rows]

        return hook

    def _key_hook(self, state: _LayerState):
        def hook(module, args, output):
            state.keys = output

        return hook

    def _post_hook(self, layer: int, attention: nn.Module, state: _LayerState):
        def hook(module, args, output):
            try:
                if state.queries is None or state.keys is None or state.position_embeddings is None:
                    raise RuntimeError(f"layer {layer}: the attention ran without its q_proj/k_proj being seen")
                rows = self._rows(state.keys.shape[0], state.keys.shape[1], state.keys.device)
                with torch.no_grad():
                    probs = attention_row(
                        attention, state.queries, state.keys, rows, state.position_embeddings, state.mask
                    )
            finally:
                state.clear()
            self.callback(layer, probs)

        return hook
