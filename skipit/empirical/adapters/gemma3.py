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

    def extra_forward_kwargs(self, input_ids: torch.Tensor, config: Any) -> dict[str, torch.Tensor]:
        return {"token_type_ids": self.vision_mask(input_ids, config).long()}
