"""Analytic FLOPs of a VLM forward (prefill) and of each generated token, with skipping.

Counts the matrix multiplications only (2 FLOPs per multiply-add), as
``torch.utils.flop_counter.FlopCounterMode`` does: norms, rotary, softmax and residual
adds are a few FLOPs per element and are left out. Attention is counted over the full
query x key rectangle (no causal discount), as the profiler counts it.

Decoder layer with ``n`` query tokens attending to ``m`` keys (``m = n`` in a prefill
without cache; ``m = cached + 1`` for a generated token), hidden ``d``, ``h`` query heads
and ``g`` key/value heads of size ``e``, MLP width ``f``:

    projections   2 n d e (2 h + 2 g)            q, k, v, o
    attention     4 n m h e                       Q K^T and A V
    MLP           2 n d f (3 if gated else 2)     gate, up, down  /  fc1, fc2

    key/value of ``v`` tokens that are keys only   2 v d e (2 g)        (freeze)

Under late entry at L, layers 1..L-1 process the text tokens only; under early exit at
L, layers L+1..N do (``tokens_per_layer``). Under freeze of a set S, each layer of S runs
its queries, output projection and MLP on the text tokens only, while its keys are all the
tokens (``keys_per_layer``): the vision tokens there cost their input norm (not counted)
and key/value projections. The LM head projects ``logits_positions`` positions (all of
them in a plain forward, 1 in ``generate``).

``config_flops_fraction`` is the predicted prefill FLOPs of a mode over the full model's,
summed over examples with their own text and vision token counts.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from skipit.empirical.hooks import check_layer, check_layers
from skipit.empirical.modes import FLOPS_MODES

if TYPE_CHECKING:
    import torch

__all__ = [
    "DecoderShape", "VisionShape", "tokens_per_layer", "keys_per_layer", "layer_flops", "prefill_flops",
    "decode_flops", "generation_flops", "vision_flops", "predicted_speedup", "config_flops_fraction",
    "example_token_counts",
]


@dataclass(frozen=True)
class DecoderShape:
    """Sizes of the language model that set its FLOPs."""

    num_layers: int
    hidden: int
    intermediate: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int
    gated_mlp: bool = True

    @classmethod
    def from_config(cls, config):
        """From a VLM config (its ``text_config``) or a text config."""
        c = getattr(config, "text_config", None) or config
        heads = c.num_attention_heads
        head_dim = getattr(c, "head_dim", None) or c.hidden_size // heads
        act = str(getattr(c, "hidden_act", getattr(c, "hidden_activation", "silu")))
        gated = getattr(c, "model_type", "") not in ("gpt2", "opt") and act != "gelu_new"
        return cls(
            num_layers=c.num_hidden_layers, hidden=c.hidden_size, intermediate=c.intermediate_size,
            heads=heads, kv_heads=getattr(c, "num_key_value_heads", None) or heads,
            head_dim=head_dim, vocab=c.vocab_size, gated_mlp=gated,
        )


@dataclass(frozen=True)
class VisionShape:
    """A ViT/CLIP vision tower plus LLaVA's two-layer projector."""

    num_layers: int
    hidden: int
    intermediate: int
    image_size: int
    patch_size: int
    channels: int
    text_hidden: int
    class_token: bool = True
    drop_class_token: bool = True

    @classmethod
    def from_llava_config(cls, config):
        v = config.vision_config
        return cls(
            num_layers=v.num_hidden_layers, hidden=v.hidden_size, intermediate=v.intermediate_size,
            image_size=v.image_size, patch_size=v.patch_size, channels=getattr(v, "num_channels", 3),
            text_hidden=config.text_config.hidden_size,
            drop_class_token=getattr(config, "vision_feature_select_strategy", "default") == "default",
        )

    @property
    def patches(self):
        return (self.image_size // self.patch_size) ** 2

    @property
    def image_tokens(self):
        return self.patches + (0 if (self.drop_class_token or not self.class_token) else 1)


def _check_count(name, value, minimum=0):
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"`{name}` must be an integer >= {minimum}, got {value!r}")


def fastv_kept_count(keep_ratio: float, vision: int) -> int:
    """The number of vision tokens FastV keeps of ``vision``: the integer nearest ``keep_ratio * vision``.

    An exact half goes to the even neighbour (Python's ``round``: 0.5 of 5 tokens keeps 2,
    0.5 of 7 keeps 4). FastV's pruning (:mod:`skipit.empirical.baselines`) and its FLOPs
    (:func:`tokens_per_layer`) both use this one rule. A ratio ``k / vision`` keeps exactly ``k``.
    """
    return int(round(keep_ratio * vision))


def tokens_per_layer(num_layers: int, text: int, vision: int, mode: str = "full",
                     layer: int | Iterable[int] | None = None, keep_ratio: float | None = None) -> list[int]:
    """Tokens each decoder layer l = 1..N processes as queries (list of N ints).

    ``late-entry`` at L: text only in 1..L-1. ``early-exit`` / ``vtw`` at L: text only in
    L+1..N. ``fastv`` at K with ``keep_ratio`` R: text + round(R * vision) in K+1..N.
    ``freeze`` of the layers ``layer`` (a list): text only in those layers.
    """
    _check_count("num_layers", num_layers, 1)
    _check_count("text", text)
    _check_count("vision", vision)
    if mode not in FLOPS_MODES:
        raise ValueError(f"`mode` must be one of {', '.join(FLOPS_MODES)}, got {mode!r}")
    if mode == "full":
        return [text + vision] * num_layers
    if mode == "freeze":
        frozen = set(check_layers(layer, num_layers, "layer"))
        return [text if l in frozen else text + vision for l in range(1, num_layers + 1)]
    layer = check_layer("layer", layer, 1, num_layers)
    if mode == "late-entry":
        return [text if l < layer else text + vision for l in range(1, num_layers + 1)]
    kept = 0
    if mode == "fastv":
        if keep_ratio is None or not 0.0 <= keep_ratio <= 1.0:
            raise ValueError(f"`keep_ratio` must be in [0, 1], got {keep_ratio!r}")
        kept = fastv_kept_count(keep_ratio, vision)
    return [text + vision if l <= layer else text + kept for l in range(1, num_layers + 1)]


def keys_per_layer(num_layers: int, text: int, vision: int, mode: str = "full",
                   layer: int | Iterable[int] | None = None, keep_ratio: float | None = None) -> list[int]:
    """Tokens whose keys/values each decoder layer l = 1..N computes in a prefill.

    Equal to ``tokens_per_layer`` except under ``freeze``, where the frozen layers' keys
    are all ``text + vision`` tokens (the vision ones from their frozen states).
    """
    tokens = tokens_per_layer(num_layers, text, vision, mode, layer, keep_ratio)
    return [text + vision] * num_layers if mode == "freeze" else tokens


def layer_flops(shape: DecoderShape, queries: int, keys: int, keys_only: int = 0) -> int:
    """Matmul FLOPs of one decoder layer for ``queries`` tokens over ``keys`` keys, of which
    ``keys_only`` are tokens the layer projects to keys/values only (frozen vision)."""
    d, e, h, g, f = shape.hidden, shape.head_dim, shape.heads, shape.kv_heads, shape.intermediate
    proj = 2 * queries * d * e * (2 * h + 2 * g) + 2 * keys_only * d * e * 2 * g
    attn = 4 * queries * keys * h * e
    mlp = 2 * queries * d * f * (3 if shape.gated_mlp else 2)
    return proj + attn + mlp


def _per_layer(shape, name, counts):
    if isinstance(counts, int):
        counts = [counts] * shape.num_layers
    if len(counts) != shape.num_layers:
        raise ValueError(f"`{name}` must have {shape.num_layers} entries, got {len(counts)}")
    return list(counts)


def prefill_flops(shape: DecoderShape, tokens: Sequence[int], logits_positions: int | None = None, batch: int = 1,
                  keys: Sequence[int] | None = None) -> int:
    """FLOPs of a prefill (a forward without cache) of the language model + LM head.

    ``tokens``: per-layer query token counts (``tokens_per_layer``) or one int (the full
    model). ``keys``: per-layer key counts (``keys_per_layer``; default ``tokens``), each
    >= its layer's tokens. ``logits_positions``: positions the LM head projects (default:
    all of the sequence).
    """
    tokens = _per_layer(shape, "tokens", tokens)
    keys = tokens if keys is None else _per_layer(shape, "keys", keys)
    if any(m < n for n, m in zip(tokens, keys)):
        raise ValueError(f"`keys` must be >= `tokens` in every layer, got keys={keys}, tokens={tokens}")
    seq = max(keys)
    head = 2 * (seq if logits_positions is None else logits_positions) * shape.hidden * shape.vocab
    return batch * (sum(layer_flops(shape, n, m, m - n) for n, m in zip(tokens, keys)) + head)


def decode_flops(shape: DecoderShape, cached: Sequence[int], batch: int = 1) -> int:
    """FLOPs of one generated token: layer l attends to ``cached[l-1] + 1`` keys."""
    cached = _per_layer(shape, "cached", cached)
    head = 2 * shape.hidden * shape.vocab
    return batch * (sum(layer_flops(shape, 1, c + 1) for c in cached) + head)


def generation_flops(shape: DecoderShape, tokens: Sequence[int], new_tokens: int, batch: int = 1,
                     keys: Sequence[int] | None = None) -> dict:
    """Prefill (LM head on the last position) plus ``new_tokens - 1`` decode steps.

    ``generate`` feeds back every generated token but the last; each layer's cache holds
    its prefill ``keys`` (default ``tokens``) plus the generated tokens. Returns a dict with
    ``prefill``, ``per_token`` (list) and ``total``.
    """
    _check_count("new_tokens", new_tokens, 1)
    tokens = _per_layer(shape, "tokens", tokens)
    keys = tokens if keys is None else _per_layer(shape, "keys", keys)
    pre = prefill_flops(shape, tokens, logits_positions=1, batch=batch, keys=keys)
    steps = [decode_flops(shape, [n + t for n in keys], batch) for t in range(new_tokens - 1)]
    return {"prefill": pre, "per_token": steps, "total": pre + sum(steps)}


def vision_flops(shape: VisionShape, images: int = 1) -> int:
    """Vision tower (patch conv, ViT layers with the class token) and projector FLOPs."""
    p = shape.patches
    n = p + (1 if shape.class_token else 0)
    d, f = shape.hidden, shape.intermediate
    conv = 2 * p * shape.channels * shape.patch_size ** 2 * d
    layer = 2 * n * d * d * 4 + 4 * n * n * d + 2 * n * d * f * 2
    proj = 2 * shape.image_tokens * (d * shape.text_hidden + shape.text_hidden * shape.text_hidden)
    return images * (conv + shape.num_layers * layer + proj)


def predicted_speedup(full_flops: float, skipped_flops: float) -> float:
    """FLOPs ratio full / skipped (the speed-up a compute-bound run can reach)."""
    if skipped_flops <= 0:
        raise ValueError(f"`skipped_flops` must be > 0, got {skipped_flops}")
    return full_flops / skipped_flops


def config_flops_fraction(config: Any, mode: str, layer: int | Iterable[int] | None,
                          token_counts: Iterable[Sequence[int]], keep_ratio: float | None = None,
                          logits_positions: int | None = None) -> float:
    """Predicted prefill FLOPs of ``mode`` at ``layer`` over those of the full model.

    ``config``: a VLM config (or a ``DecoderShape``); ``mode``: a FLOPs layout of
    ``skipit.empirical.modes`` (``late-entry``, ``early-exit``, ``freeze`` ...); ``layer``:
    L, or the list of layers for ``freeze``; ``token_counts``: ``(text, vision)`` per
    example (``example_token_counts``), each example with its own counts. Both sums run
    over all examples (a batch of one each, so no padding is counted); the LM head projects
    ``logits_positions`` positions (default: every position, as a plain forward does).
    """
    shape = config if isinstance(config, DecoderShape) else DecoderShape.from_config(config)
    counts = [tuple(c) for c in token_counts]
    if not counts:
        raise ValueError("`token_counts` must hold at least one (text, vision) pair, got none")
    n = shape.num_layers
    full = skipped = 0
    for text, vision in counts:
        full += prefill_flops(shape, tokens_per_layer(n, text, vision), logits_positions)
        skipped += prefill_flops(
            shape, tokens_per_layer(n, text, vision, mode, layer, keep_ratio), logits_positions,
            keys=keys_per_layer(n, text, vision, mode, layer, keep_ratio),
        )
    return skipped / full


def example_token_counts(vision_mask: torch.Tensor,
                         attention_mask: torch.Tensor | None = None) -> list[tuple[int, int]]:
    """``[(text, vision), ...]`` per example of a batch: non-padding text and vision tokens.

    ``vision_mask``: BoolTensor[B, S] (the adapter's ``vision_mask``); ``attention_mask``:
    [B, S] (1 = real token) or None (no padding).
    """
    out = []
    for b in range(vision_mask.shape[0]):
        vision = vision_mask[b].bool()
        real = attention_mask[b].bool() if attention_mask is not None else vision | ~vision
        v = int((vision & real).sum())
        out.append((int(real.sum()) - v, v))
    return out
