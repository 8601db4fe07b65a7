"""Verification candidates as forwards and as FLOPs: the one map from a candidate config to both.

A candidate config (built by :func:`skipit.empirical.certificate.candidate_pool`) is a dict:

==================================  ==========================================================
``{"mode": "late-entry", "layer"}``  vision tokens skip layers 1..L-1
``{"mode": "early-exit", "layer"}``  vision tokens leave after layer L; this is also visual
                                     token withdrawal (VTW) at K = L
``{"mode": "freeze", "layers"}``     vision tokens keep their state in the layers S
``{"mode": "fastv", "layer",         FastV: after layer K keep the top ``keep_ratio`` of the
"keep_ratio"}``                      vision tokens by the answer query's attention
``{"mode": "freeze+early-exit",      freeze of S (all <= L) and early exit after L, in one
"layers", "layer"}``                 forward (:func:`skipit.empirical.skipping.skip`)
==================================  ==========================================================

:func:`candidate_context` runs one; :func:`candidate_flops_fraction` predicts its prefill FLOPs
over the full model's with :mod:`skipit.empirical.flops` (per layer: the query tokens and the
keys, as :func:`~skipit.empirical.flops.tokens_per_layer` / ``keys_per_layer`` lay them out).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Any

from skipit.empirical.flops import DecoderShape, keys_per_layer, prefill_flops, tokens_per_layer
from skipit.empirical.verification import COMPOSITION

__all__ = ["candidate_context", "candidate_layout", "candidate_flops_fraction"]

def candidate_context(model: Any, config: Mapping[str, Any], adapter: Any = None) -> AbstractContextManager[Any]:
    """The skipping context manager of ``config`` (see the module docstring)."""
    from skipit.empirical.modes import get_mode, skip_context

    mode = config["mode"]
    if mode == COMPOSITION:
        from skipit.empirical.skipping import skip

        return skip(model, early_exit=int(config["layer"]), freeze=list(config["layers"]), adapter=adapter)
    if mode == "fastv":
        return get_mode("fastv").context(model, int(config["layer"]), adapter=adapter,
                                         keep_ratio=float(config["keep_ratio"]))
    if mode == "freeze":
        return skip_context(model, "freeze", list(config["layers"]), adapter)
    return skip_context(model, mode, int(config["layer"]), adapter)


def candidate_layout(num_layers: int, text: int, vision: int,
                     config: Mapping[str, Any]) -> tuple[list[int], list[int]]:
    """``(queries, keys)`` per decoder layer l = 1..N of one example with ``text`` and
    ``vision`` prompt tokens under ``config``. A composition takes, per layer, the fewer
    queries of its freeze set and of its early exit, and the keys of its early exit (frozen
    vision tokens are keys in their layer, absent ones are not)."""
    mode = config["mode"]
    if mode == COMPOSITION:
        frozen, _ = candidate_layout(num_layers, text, vision, {"mode": "freeze", "layers": config["layers"]})
        leave, keys = candidate_layout(num_layers, text, vision, {"mode": "early-exit", "layer": config["layer"]})
        return [min(a, b) for a, b in zip(frozen, leave)], keys
    layer = list(config["layers"]) if mode == "freeze" else int(config["layer"])
    ratio = config.get("keep_ratio")
    return (tokens_per_layer(num_layers, text, vision, mode, layer, ratio),
            keys_per_layer(num_layers, text, vision, mode, layer, ratio))


def candidate_flops_fraction(model_config: Any, config: Mapping[str, Any],
                             token_counts: Iterable[Sequence[int]]) -> float:
    """Predicted prefill FLOPs of ``config`` over the full model's, summed over examples with
    their own ``(text, vision)`` token counts (``model_config``: a VLM config or a
    :class:`~skipit.empirical.flops.DecoderShape`)."""
    shape = model_config if isinstance(model_config, DecoderShape) else DecoderShape.from_config(model_config)
    counts = [tuple(int(x) for x in c) for c in token_counts]
    if not counts:
        raise ValueError("`token_counts` must hold at least one (text, vision) pair, got none")
    full = skipped = 0
    layouts: dict[tuple[int, int], tuple[int, int]] = {}
    for text, vision in counts:
        if (text, vision) not in layouts:
            queries, keys = candidate_layout(shape.num_layers, text, vision, config)
            layouts[text, vision] = (prefill_flops(shape, text + vision), prefill_flops(shape, queries, keys=keys))
        a, b = layouts[text, vision]
        full += a
        skipped += b
    return skipped / full
