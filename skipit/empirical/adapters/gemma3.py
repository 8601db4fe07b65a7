"""Gemma 3 (``gemma3``): SigLIP tower, pooled to ``mm_tokens_per_image`` tokens per image.

Image blocks attend bidirectionally inside the block; the model learns where the
blocks are from ``token_type_ids`` (1 on image placeholders), which
:meth:`Gemma3Adapter.extra_forward_kwargs` supplies. ``boi``/``eoi`` markers are text.
Sliding-window and full-attention layers alternate (``text_config.layer_types``).
"""

from __future__ import annotations

from typing import Any

import torch

from skipit.empirical.adapters.base import VLMAdapter


class Gemma3Adapter(VLMAdapter):
    """Gemma 3: ``image_token_index`` placeholders; ``token_type_ids`` mark image blocks."""

    model_type = "gemma3"
    nested_images = True  # Gemma3Processor takes one image list per sample

    def image_markers(self, config: Any, tokenizer: Any) -> tuple[list[int], list[int]]:
        """``boi_token_index`` before the image, ``eoi_token_index`` after it."""
        return [int(config.boi_token_index)], [int(config.eoi_token_index)]

    def image_token_counts(self, config: Any, image_processor: Any, vision: dict, num_images: int) -> list[int]:
        """``mm_tokens_per_image`` each: the SigLIP patches are pooled to a fixed count."""
        return [int(config.mm_tokens_per_image)] * num_images

    def extra_forward_kwargs(self, input_ids: torch.Tensor, config: Any) -> dict[str, torch.Tensor]:
        return {"token_type_ids": self.vision_mask(input_ids, config).long()}
