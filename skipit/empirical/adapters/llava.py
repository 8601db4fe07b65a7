"""LLaVA-1.5 (``llava``): ``model.model.language_model`` is a Llama-type decoder stack."""

from __future__ import annotations

from skipit.empirical.adapters.base import VLMAdapter


class LlavaAdapter(VLMAdapter):
    """LLaVA-1.5: one ``<image>`` placeholder per vision token (576 for 336px CLIP-L/14)."""

    model_type = "llava"
