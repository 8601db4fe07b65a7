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


MAX_ASPECT_RATIO = 200
"""Qwen2-VL / Qwen2.5-VL's image processor (``smart_resize``) refuses longer sides above 200x the shorter."""


class Qwen2_5_VLAdapter(VLMAdapter):
    """Qwen2.5-VL: image and video placeholders are vision tokens; mrope needs token types."""

    model_type = "qwen2_5_vl"

    def image_markers(self, config: Any, tokenizer: Any) -> tuple[list[int], list[int]]:
        """``vision_start_token_id`` before the image, ``vision_end_token_id`` after it."""
        return [self.vision_start_token_id(config)], [self.vision_end_token_id(config)]

    def image_token_counts(self, config: Any, image_processor: Any, vision: dict, num_images: int) -> list[int]:
        """``t * h * w / merge_size^2`` each, from ``image_grid_thw``."""
        merge = int(getattr(image_processor, "merge_size", None) or config.vision_config.spatial_merge_size)
        return [int(g.prod()) // (merge * merge) for g in vision["image_grid_thw"]]

    def image_problem(self, image: Any, config: Any) -> str | None:
        """Images whose aspect ratio exceeds :data:`MAX_ASPECT_RATIO` (e.g. 400x1) are refused."""
        width, height = image.size
        if min(width, height) == 0 or max(width, height) / min(width, height) > MAX_ASPECT_RATIO:
            return (f"image of {width}x{height} pixels: its aspect ratio is beyond {self.model_type}'s limit of "
                    f"{MAX_ASPECT_RATIO}:1")
        return None

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
