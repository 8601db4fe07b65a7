"""skipit.empirical: torch + transformers. Activations in, certified layers out.

Public names are resolved lazily so that ``import skipit.empirical`` stays cheap
(torch and transformers load on first use of a name that needs them).
"""

from __future__ import annotations

import importlib

_LAZY = {
    # adapters: where each model family keeps its layers, vision tokens, image-token id
    "get_adapter": "skipit.empirical.adapters",
    "supported_model_types": "skipit.empirical.adapters",
    # streaming statistics
    "capture_statistics": "skipit.empirical.capture",
    "RunStatistics": "skipit.empirical.stats",
    "AttentionProbe": "skipit.empirical.attention",
    # skipping
    "late_entry": "skipit.empirical.skipping",
    "early_exit": "skipit.empirical.skipping",
    "freeze": "skipit.empirical.skipping",
    "skip": "skipit.empirical.skipping",
    "TokenSkipper": "skipit.empirical.skipping",
    "choose_vtw_layer": "skipit.empirical.baselines",
    "fastv_prune": "skipit.empirical.baselines",
    "visual_token_withdrawal": "skipit.empirical.baselines",
    # certificate
    "certify": "skipit.empirical.certify_run",
    "theorem6_measurements": "skipit.empirical.lipschitz",
}


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'skipit.empirical' has no attribute {name!r}")


__all__ = sorted(_LAZY)
