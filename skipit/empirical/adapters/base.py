"""The adapter shape shared by every VLM family.

An adapter answers, for one family of Hugging Face ``transformers`` vision-language
models, the questions the capture engine and the skipping hooks ask: where the
decoder layers, the final norm and the lm head live, which module of a decoder
layer is its self-attention, and which positions of the language model's input
sequence hold vision tokens.

Layer indexing used across ``skipit.empirical``: decoder layers are ``l = 1..N``;
hidden state 0 is the embedding output (the input of layer 1). A forward hook on
``decoder_layers(model)[i]`` (0-based module index) sees hidden state ``i + 1``.

Adapters only name public modules and config fields; they never copy modeling code
(STYLE.md, practice 8; TransformerLens ``supported_architectures``).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


class VLMAdapter:
    """Where one VLM family keeps its language model, layers and vision tokens.

    Subclasses set ``model_type`` (the ``config.model_type`` they serve) and, if the
    base model does not call its decoder stack ``language_model``, ``language_model_attr``.
    Every method accepts either the ``...ForConditionalGeneration`` model or its inner
    base model (``model.model``).
    """

    model_type: str = ""
    language_model_attr: str = "language_model"
    nested_images: bool = False
    """Whether the family's processor wants one image list per sample (``[[im], [im]]``), not a flat list."""

    def __init__(self, model_type: str | None = None):
        if model_type is not None:
            self.model_type = model_type

    def __repr__(self) -> str:
        return f"{type(self).__name__}(model_type={self.model_type!r})"

    # ----------------------------------------------------------------- modules
    def language_model(self, model: nn.Module) -> nn.Module:
        """The decoder stack (has ``.layers``, ``.norm`` and ``.rotary_emb``)."""
        attr = self.language_model_attr
        for candidate in (model, getattr(model, "model", None)):
            if candidate is not None and isinstance(getattr(candidate, attr, None), nn.Module):
                return getattr(candidate, attr)
        raise ValueError(
            f"`model` must be a {self.model_type!r} vision-language model with a `{attr}` "
            f"decoder stack (directly or under `.model`), got {type(model).__name__}"
        )

    def decoder_layers(self, model: nn.Module) -> nn.ModuleList:
        """The ``nn.ModuleList`` of the N decoder layers, in order (layer l is index l - 1)."""
        return self.language_model(model).layers

    def num_layers(self, model: nn.Module) -> int:
        """N, the number of decoder layers."""
        return len(self.decoder_layers(model))

    def final_norm(self, model: nn.Module) -> nn.Module:
        """The norm applied to the output of layer N before the lm head."""
        return self.language_model(model).norm

    def rotary_embedding(self, model: nn.Module) -> nn.Module:
        """The decoder stack's rotary embedding module (computes (cos, sin) once per forward)."""
        return self.language_model(model).rotary_emb

    def embed_tokens(self, model: nn.Module) -> nn.Module:
        """The token embedding of the decoder stack."""
        return self.language_model(model).embed_tokens

    def lm_head(self, model: nn.Module) -> nn.Module:
        """The output projection to the vocabulary (only on ``...ForConditionalGeneration``)."""
        head = getattr(model, "lm_head", None)
        if not isinstance(head, nn.Module):
            raise ValueError(
                f"`model` must be the {self.model_type!r} ...ForConditionalGeneration model "
                f"(it holds `lm_head`), got {type(model).__name__}"
            )
        return head

    def self_attention(self, layer: nn.Module) -> nn.Module:
        """The self-attention module of one decoder layer (``q_proj``, ``k_proj``, ``v_proj``, ``o_proj``)."""
        attn = getattr(layer, "self_attn", None)
        if not isinstance(attn, nn.Module):
            raise ValueError(f"`layer` must be a decoder layer with `self_attn`, got {type(layer).__name__}")
        return attn

    # ------------------------------------------------------------------ config
    def text_config(self, config: Any) -> Any:
        """The language model's config (hidden size, heads, key/value heads, head_dim)."""
        return getattr(config, "text_config", config)

    def image_token_id(self, config: Any) -> int:
        """The token id that marks one vision-token position in the language model's input."""
        token = getattr(config, "image_token_id", None)
        if token is None:
            token = getattr(config, "image_token_index", None)
        if token is None:
            raise ValueError(f"config of type {type(config).__name__} has no `image_token_id`")
        return int(token)

    def vision_token_ids(self, config: Any) -> tuple[int, ...]:
        """All token ids whose positions count as vision tokens (image placeholders)."""
        return (self.image_token_id(config),)

    def vision_mask(self, input_ids: torch.Tensor, config: Any) -> torch.Tensor:
        """BoolTensor[B, S]: positions of ``input_ids`` holding vision tokens.

        The placeholders are replaced by the projected vision features before layer 1,
        so these are exactly the positions whose hidden states come from the image.
        Markers around an image (begin/end-of-image tokens) are text tokens.
        """
        ids = torch.as_tensor(input_ids)
        mask = torch.zeros(ids.shape, dtype=torch.bool, device=ids.device)
        for token in self.vision_token_ids(config):
            mask |= ids == token
        return mask

    def extra_forward_kwargs(self, input_ids: torch.Tensor, config: Any) -> dict[str, torch.Tensor]:
        """Keyword arguments the family's forward needs beyond ids, mask and pixels (default: none)."""
        return {}

    # ------------------------------------------------------------------ inputs
    def image_markers(self, config: Any, tokenizer: Any) -> tuple[list[int], list[int]]:
        """Token ids written before and after an image's placeholders (default: none)."""
        return [], []

    def image_token_counts(self, config: Any, image_processor: Any, vision: dict, num_images: int) -> list[int]:
        """Placeholders per image, from the image processor's output ``vision``: the patch count
        of the square pixel input (default, LLaVA-1.5 style without a CLS token)."""
        side = vision["pixel_values"].shape[-1]
        return [(side // config.vision_config.patch_size) ** 2] * num_images

    def image_problem(self, image: Any, config: Any) -> str | None:
        """Why the family cannot take ``image`` (a PIL image), or None (default: it can)."""
        return None

    def context_length(self, config: Any) -> int | None:
        """The language model's context (``max_position_embeddings``), None when the config has none."""
        value = getattr(self.text_config(config), "max_position_embeddings", None)
        return int(value) if value else None
