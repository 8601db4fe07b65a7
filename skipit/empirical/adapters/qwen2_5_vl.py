"""Qwen2.5-VL (``qwen2_5_vl``) and Qwen2-VL (``qwen2_vl``).

Vision tokens are the ``image_token_id`` (and ``video_token_id``) placeholders between
``vision_start_token_id`` and ``vision_end_token_id``; the markers themselves are text.
The forward needs ``mm_token_type_ids`` (0 text, 1 image, 2 video): without it,
transformers 5 silently falls back to 1-D positions instead of the 3-D multimodal
rotary positions (mrope).
"""

from __future__ import annotations

from typing import Any

import torch

from skipit.empirical.adapters.base import VLMAdapter


class Qwen2_5_VLAdapter(VLMAdapter):
    """Qwen2.5-VL: image and video placeholders are vision tokens; mrope needs token types."""

    model_type = "qwen2_5_vl"

    def vision_token_ids(self, config: Any) -> tuple[int, ...]:
        ids = [self.image_token_id(config)]
        video = getattr(config, "video_token_id", None)
        if video is not None:
            ids.append(int(video))
        return tuple(ids)

    def vision_start_token_id(self, config: Any) -> int:
        return int(config.vision_start_token_id)

    def vision_end_token_id(self, config: Any) -> int:
        return int(config.vision_end_token_id)

    def mm_token_type_ids(self, input_ids: torch.Tensor, config: Any) -> torch.Tensor:
        """LongTensor[B, S]: 0 for text, 1 for image and 2 for video placeholders."""
        ids = torch.as_tensor(input_ids)
        types = (ids == self.image_token_id(config)).long()
        video = getattr(config, "video_token_id", None)
        if video is not None:
            types = types + 2 * (ids == int(video)).long()
        return types

    def extra_forward_kwargs(self, input_ids: torch.Tensor, config: Any) -> dict[str, torch.Tensor]:
        return {"mm_token_type_ids": self.mm_token_type_ids(input_ids, config)}
