"""Adapters: one small object per VLM family, found from ``config.model_type``.

>>> from skipit.empirical.adapters import get_adapter
>>> adapter = get_adapter(model)              # or get_adapter(model.config)
>>> layers = adapter.decoder_layers(model)     # layer l = layers[l - 1], l = 1..N
>>> vision = adapter.vision_mask(input_ids, model.config)
"""

from __future__ import annotations

from typing import Any

from skipit.empirical.adapters.base import VLMAdapter
from skipit.empirical.adapters.deepseek_vl import DeepseekVLAdapter
from skipit.empirical.adapters.gemma3 import Gemma3Adapter
from skipit.empirical.adapters.idefics3 import Idefics3Adapter
from skipit.empirical.adapters.llava import LlavaAdapter
from skipit.empirical.adapters.llava_next import LlavaNextAdapter
from skipit.empirical.adapters.qwen2_5_vl import Qwen2_5_VLAdapter

_ADAPTERS: dict[str, type[VLMAdapter]] = {
    "llava": LlavaAdapter,
    "llava_next": LlavaNextAdapter,
    "qwen2_5_vl": Qwen2_5_VLAdapter,
    "qwen2_vl": Qwen2_5_VLAdapter,
    "gemma3": Gemma3Adapter,
    "idefics3": Idefics3Adapter,
    "smolvlm": Idefics3Adapter,
    "deepseek_vl": DeepseekVLAdapter,
}


def supported_model_types() -> list[str]:
    """The ``config.model_type`` values that have an adapter, sorted."""
    return sorted(_ADAPTERS)


def get_adapter(model_or_config: Any) -> VLMAdapter:
    """The adapter for a model or config, chosen by its ``config.model_type``.

    Raises ``ValueError`` listing the supported model types when there is none.
    """
    config = getattr(model_or_config, "config", model_or_config)
    model_type = getattr(config, "model_type", None)
    if model_type not in _ADAPTERS:
        raise ValueError(
            f"no adapter for model_type {model_type!r}; supported model types: "
            + ", ".join(supported_model_types())
        )
    return _ADAPTERS[model_type](model_type)


__all__ = [
    "VLMAdapter",
    "get_adapter",
    "supported_model_types",
    "LlavaAdapter",
    "LlavaNextAdapter",
    "Qwen2_5_VLAdapter",
    "Gemma3Adapter",
    "Idefics3Adapter",
    "DeepseekVLAdapter",
]
