"""LLaVA-NeXT (``llava_next``): any-resolution tiles, same layout as LLaVA-1.5.

The number of vision tokens depends on the image size (base tile + best-fit grid
+ one newline token per row); the processor expands ``<image>`` accordingly, so the
vision mask is still read from the placeholders in ``input_ids``.
"""

from __future__ import annotations

from skipit.empirical.adapters.base import VLMAdapter


class LlavaNextAdapter(VLMAdapter):
    """LLaVA-NeXT: ``image_token_index`` placeholders, Llama-type decoder stack."""

    model_type = "llava_next"
