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

Under late entry at L, layers 1..L-1 process the text tokens only; under early exit at
L, layers L+1..N do (``tokens_per_layer``). The LM head projects ``logits_positions``
positions (all of them in a plain forward, 1 in ``generate``).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "DecoderShape", "VisionShape", "tokens_per_layer", "layer_flops", "prefill_flops",
    "decode_flops", "generation_flops", "vision_flops", "predicted_speedup",
]

MODES = ("full", "late-entry", "early-exit", "fastv", "vtw")


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


def tokens_per_layer(num_layers, text, vision, mode="full", layer=None, keep_ratio=None):
    """Tokens each decoder layer l = 1..N processes (list of N ints).

    ``late-entry`` at L: text only in 1..L-1. ``early-exit`` / ``vtw`` at L: text only in
    L+1..N. ``fastv`` at K with ``keep_ratio`` R: text + round(R * vision) in K+1..N.
    """
    _check_count("num_layers", num_layers, 1)
    _check_count("text", text)
    _check_count("vision", vision)
    if mode not in MODES:
        raise ValueError(f"`mode` must be one of {', '.join(MODES)}, got {mode!r}")
    if mode == "full":
        return [text + vision] * num_layers
    if isinstance(layer, bool) or not isinstance(layer, int) or not 1 <= layer <= num_layers:
        raise ValueError(f"`layer` must be an integer in [1, {num_layers}], got {layer!r}")
    if mode == "late-entry":
        return [text if l < layer else text + vision for l in range(1, num_layers + 1)]
    kept = 0
    if mode == "fastv":
        if keep_ratio is None or not 0.0 <= keep_ratio <= 1.0:
            raise ValueError(f"`keep_ratio` must be in [0, 1], got {keep_ratio!r}")
        kept = int(round(keep_ratio * vision))
    return [text + vision if l <= layer else text + kept for l in range(1, num_layers + 1)]


def layer_flops(shape: DecoderShape, queries: int, keys: int) -> int:
    """Matmul FLOPs of one decoder layer for ``queries`` tokens over ``keys`` keys."""
    d, e, h, g, f = shape.hidden, shape.head_dim, shape.heads, shape.kv_heads, shape.intermediate
    proj = 2 * queries * d * e * (2 * h + 2 * g)
    attn = 4 * queries * keys * h * e
    mlp = 2 * queries * d * f * (3 if shape.gated_mlp else 2)
    return proj + attn + mlp


def prefill_flops(shape: DecoderShape, tokens, logits_positions=None, batch=1) -> int:
    """FLOPs of a prefill (a forward without cache) of the language model + LM head.

    ``tokens``: per-layer token counts (``tokens_per_layer``) or one int (the full model).
    ``logits_positions``: positions the LM head projects (default: all of the sequence).
    """
    if isinstance(tokens, int):
        tokens = [tokens] * shape.num_layers
    if len(tokens) != shape.num_layers:
        raise ValueError(f"`tokens` must have {shape.num_layers} entries, got {len(tokens)}")
    seq = max(tokens)
    head = 2 * (seq if logits_positions is None else logits_positions) * shape.hidden * shape.vocab
    return batch * (sum(layer_flops(shape, n, n) for n in tokens) + head)


def decode_flops(shape: DecoderShape, cached, batch=1) -> int:
    """FLOPs of one generated token: layer l attends to ``cached[l-1] + 1`` keys."""
    if isinstance(cached, int):
        cached = [cached] * shape.num_layers
    if len(cached) != shape.num_layers:
        raise ValueError(f"`cached` must have {shape.num_layers} entries, got {len(cached)}")
    head = 2 * shape.hidden * shape.vocab
    return batch * (sum(layer_flops(shape, 1, c + 1) for c in cached) + head)


def generation_flops(shape: DecoderShape, tokens, new_tokens, batch=1) -> dict:
    """Prefill (LM head on the last position) plus ``new_tokens - 1`` decode steps.

    ``generate`` feeds back every generated token but the last. Returns a dict with
    ``prefill``, ``per_token`` (list) and ``total``.
    """
    _check_count("new_tokens", new_tokens, 1)
    if isinstance(tokens, int):
        tokens = [tokens] * shape.num_layers
    pre = prefill_flops(shape, tokens, logits_positions=1, batch=batch)
    steps = [decode_flops(shape, [n + t for n in tokens], batch) for t in range(new_tokens - 1)]
    return {"prefill": pre, "per_token": steps, "total": pre + sum(steps)}


def vision_flops(shape: VisionShape, images=1) -> int:
    """Vision tower (patch conv, ViT layers with the class token) and projector FLOPs."""
    p = shape.patches
    n = p + (1 if shape.class_token else 0)
    d, f = shape.hidden, shape.intermediate
    conv = 2 * p * shape.channels * shape.patch_size ** 2 * d
    layer = 2 * n * d * d * 4 + 4 * n * n * d + 2 * n * d * f * 2
    proj = 2 * shape.image_tokens * (d * shape.text_hidden + shape.text_hidden * shape.text_hidden)
    return images * (conv + shape.num_layers * layer + proj)


def predicted_speedup(full_flops, skipped_flops):
    """FLOPs ratio full / skipped (the speed-up a compute-bound run can reach)."""
    if skipped_flops <= 0:
        raise ValueError(f"`skipped_flops` must be > 0, got {skipped_flops}")
    return full_flops / skipped_flops
