"""The one registry of skipping modes: name -> context factory, FLOPs layout, layer argument.

Every place that lists modes (``skipit.empirical.evaluate``, ``skipit skip``, the FLOPs
model, the baselines) imports them from here. No torch at import time: the context
factories are imported on first use, so the command-line parsers can offer the names.

=====================  =========  ============================================  ===========
mode                   takes      what the vision tokens do                     FLOPs
=====================  =========  ============================================  ===========
``late-entry``         layer L    skip layers 1..L-1, enter at L (embedding)    late-entry
``early-exit``         layer L    run layers 1..L, absent from L+1..N           early-exit
``freeze``             layers S   keep their state in each layer of S; text     freeze
                                  attends to their keys/values there
``late-entry-oracle``  layer L    enter at L with a full pass's state           (none)
``fastv``              layer K    top ``keep_ratio`` by attention stay after K  fastv
``vtw``                layer K    early exit at K (K from the output-KL rule)   vtw
=====================  =========  ============================================  ===========
"""

from __future__ import annotations

import contextlib
import importlib
from dataclasses import dataclass

__all__ = ["Mode", "MODES", "SKIP_MODES", "EVALUATE_MODES", "VERIFY_MODES", "FLOPS_MODES", "get_mode",
           "skip_context"]


@dataclass(frozen=True)
class Mode:
    """One skipping mode.

    ``factory``: ``"module:function"`` of its context manager, called as
    ``function(model, layer=L | layers=S, adapter=..., **options)``. ``takes``: ``"layer"``
    (one layer L) or ``"layers"`` (a set of layers). ``flops``: its token layout in
    ``skipit.empirical.flops.tokens_per_layer``, None where no speed-up is predicted (the
    oracle costs a full pass more). ``kind``: ``"skip"`` (the paper's and ShortV's modes),
    ``"reference"`` (an analysis tool) or ``"baseline"`` (FastV, VTW).
    """

    name: str
    factory: str
    takes: str
    flops: str | None
    kind: str
    options: tuple = ()

    def context(self, model, layer, adapter=None, **options):
        """The context manager of this mode at ``layer`` (an int, or a list for ``layers``)."""
        module, function = self.factory.split(":")
        make = getattr(importlib.import_module(module), function)
        return make(model, **{self.takes: layer}, adapter=adapter, **dict(self.options), **options)


MODES = {m.name: m for m in (
    Mode("late-entry", "skipit.empirical.skipping:late_entry", "layer", "late-entry", "skip"),
    Mode("early-exit", "skipit.empirical.skipping:early_exit", "layer", "early-exit", "skip"),
    Mode("freeze", "skipit.empirical.skipping:freeze", "layers", "freeze", "skip"),
    Mode("late-entry-oracle", "skipit.empirical.skipping:late_entry", "layer", None, "reference",
         (("variant", "oracle"),)),
    Mode("fastv", "skipit.empirical.baselines:fastv_prune", "layer", "fastv", "baseline"),
    Mode("vtw", "skipit.empirical.baselines:visual_token_withdrawal", "layer", "vtw", "baseline"),
)}

SKIP_MODES = tuple(n for n, m in MODES.items() if m.kind == "skip")
"""The modes ``skipit skip`` runs: late entry, early exit, freeze."""
EVALUATE_MODES = SKIP_MODES + tuple(n for n, m in MODES.items() if m.kind == "reference")
"""The modes ``skipit evaluate`` sweeps over a layer grid: ``SKIP_MODES`` plus the analysis
reference ``late-entry-oracle``."""
VERIFY_MODES = SKIP_MODES
"""The modes certify verifies, one fixed-sequence chain each (the level ``1 - c`` is split
evenly among them): ``SKIP_MODES``."""
FLOPS_MODES = ("full",) + tuple(m.flops for m in MODES.values() if m.flops is not None)
"""The token layouts of the FLOPs model (``full`` and each mode's)."""


def get_mode(name):
    """The registered ``Mode`` called ``name``."""
    if name not in MODES:
        raise ValueError(f"`mode` must be one of {', '.join(MODES)}, got {name!r}")
    return MODES[name]


def skip_context(model, mode, layer, adapter=None):
    """The context manager of ``mode`` at ``layer`` (``None`` or ``"full"``: no skipping)."""
    if mode is None or mode == "full":
        return contextlib.nullcontext()
    return get_mode(mode).context(model, layer, adapter=adapter)
