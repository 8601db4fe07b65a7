"""Idefics3 (``idefics3``) and SmolVLM (``smolvlm``): the decoder stack is ``model.model.text_model``.

Each image (and each split tile) becomes ``(image_size / patch_size)^2 / scale_factor^2``
``<image>`` placeholders after pixel shuffle; the surrounding ``<fake_token_around_image>``
and row/column tokens are text.
"""

from __future__ import annotations

from typing import Any

from skipit.empirical.adapters.base import VLMAdapter


class Idefics3Adapter(VLMAdapter):
    """Idefics3 / SmolVLM: ``image_token_id`` placeholders, decoder stack at ``text_model``."""

    model_type = "idefics3"
    language_model_attr = "text_model"
    nested_images = True  # Idefics3Processor / SmolVLMProcessor take one image list per sample

    def image_markers(self, config: Any, tokenizer: Any) -> tuple[list[int], list[int]]:
        """``<fake_token_around_image>`` then ``<global-img>`` (when the tokenizer has it) before
        the image, ``<fake_token_around_image>`` after it: the real processor's layout of an image
        that is not split."""
        fake = tokenizer.convert_tokens_to_ids("<fake_token_around_image>")
        if fake is None or fake == tokenizer.unk_token_id:
            return [], []
        begin = [fake]
        glob = tokenizer.convert_tokens_to_ids("<global-img>")
        if glob is not None and glob != tokenizer.unk_token_id:
            begin.append(glob)
        return begin, [fake]

    def image_token_counts(self, config: Any, image_processor: Any, vision: dict, num_images: int) -> list[int]:
        """``(image_size / patch_size)^2 / scale_factor^2`` each; split tiles are refused
        (the real processor lays them out with row/column tokens that only it writes)."""
        from skipit.errors import SkipitError

        tiles = vision["pixel_values"].shape[1] if vision["pixel_values"].dim() == 5 else 1
        if tiles > 1 or getattr(image_processor, "do_image_splitting", False):
            raise SkipitError(
                f"{self.model_type}: image splitting (do_image_splitting) is on, but the family's processor "
                "could not be assembled here, and skipit's stand-in cannot lay out the split tiles as it does "
                "(row/column tokens per tile plus a global image); install what the processor needs, or set "
                '"do_image_splitting": false in preprocessor_config.json (one tile per image)')
        patches = super().image_token_counts(config, image_processor, vision, num_images)
        return [p // int(config.scale_factor) ** 2 for p in patches]
