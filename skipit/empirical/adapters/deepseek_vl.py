"""DeepSeek-VL (``deepseek_vl``): SigLIP tower, Llama-type ``language_model``.

One ``image_token_id`` placeholder per vision patch.
"""

from __future__ import annotations

from skipit.empirical.adapters.base import VLMAdapter


class DeepseekVLAdapter(VLMAdapter):
    """DeepSeek-VL: ``image_token_id`` placeholders, Llama-type decoder stack."""

    model_type = "deepseek_vl"
