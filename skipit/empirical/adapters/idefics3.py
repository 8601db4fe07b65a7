"""Idefics3 (``idefics3``) and SmolVLM (``smolvlm``): the decoder stack is ``model.model.text_model``.

Each image (and each split tile) becomes ``(image_size / patch_size)^2 / scale_factor^2``
``<image>`` placeholders after pixel shuffle; the surrounding ``<fake_token_around_image>``
and row/column tokens are text.
"""

from __future__ import annotations

from skipit.empirical.adapters.base import VLMAdapter


class Idefics3Adapter(VLMAdapter):
    """Idefics3 / SmolVLM: ``image_token_id`` placeholders, decoder stack at ``text_model``."""

    model_type = "idefics3"
    language_model_attr = "text_model"
