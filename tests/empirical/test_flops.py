"""The analytic FLOPs model equals the profiler's count (FlopCounterMode) on a tiny LLaVA."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from skipit.empirical.adapters import get_adapter  # noqa: E402
from skipit.empirical.flops import (  # noqa: E402
    DecoderShape, VisionShape, generation_flops, layer_flops, predicted_speedup, prefill_flops,
    tokens_per_layer, vision_flops,
)
from skipit.empirical.skipping import early_exit, late_entry  # noqa: E402
from skipit.empirical.testing import tiny_batch, tiny_model  # noqa: E402


N = 4


@pytest.fixture(scope="module")
def setup():
    # eager attention: the profiler counts its matmuls (CPU sdpa kernels are not counted)
    model = tiny_model("llava", seed=0, num_layers=N, attn_implementation="eager")
    batch = tiny_batch(model, batch_size=1, seed=0)
    vision = int(get_adapter(model).vision_mask(batch["input_ids"], model.config).sum())
    seq = batch["input_ids"].shape[1]
    return model, batch, seq - vision, vision


def _profiled(fn):
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        fn()
    return counter.get_total_flops()


@pytest.mark.parametrize("mode,layer", [("full", None), ("late-entry", 3), ("early-exit", 2),
                                        ("late-entry", 1), ("early-exit", N)])
def test_prefill_flops_equal_profiler_count(setup, mode, layer):
    model, batch, text, vision = setup
    shape = DecoderShape.from_config(model.config)
    predicted = prefill_flops(shape, tokens_per_layer(N, text, vision, mode, layer))
    predicted += vision_flops(VisionShape.from_llava_config(model.config))
    if mode == "full":
        measured = _profiled(lambda: model(**batch))
    else:
        ctx = late_entry if mode == "late-entry" else early_exit
        with ctx(model, layer=layer):
            measured = _profiled(lambda: model(**batch))
    assert measured == predicted


@pytest.mark.parametrize("mode,layer", [("full", None), ("late-entry", 3), ("early-exit", 2)])
def test_generation_flops_equal_profiler_count(setup, mode, layer):
    model, batch, text, vision = setup
    shape = DecoderShape.from_config(model.config)
    new = 4
    predicted = generation_flops(shape, tokens_per_layer(N, text, vision, mode, layer), new)["total"]
    predicted += vision_flops(VisionShape.from_llava_config(model.config))
    kw = dict(max_new_tokens=new, min_new_tokens=new, do_sample=False)
    if mode == "full":
        measured = _profiled(lambda: model.generate(**batch, **kw))
    else:
        ctx = late_entry if mode == "late-entry" else early_exit
        with ctx(model, layer=layer):
            measured = _profiled(lambda: model.generate(**batch, **kw))
    assert measured == predicted


def test_layer_flops_closed_form():
    """One layer, hand-counted: q,k,v,o = 2*n*d*e*(2h+2g); attention 4*n*m*h*e; gated MLP 6*n*d*f."""
    shape = DecoderShape(num_layers=1, hidden=8, intermediate=16, heads=2, kv_heads=1, head_dim=4, vocab=10)
    n, m = 3, 5
    assert layer_flops(shape, n, m) == 2 * 3 * 8 * 4 * 6 + 4 * 3 * 5 * 2 * 4 + 6 * 3 * 8 * 16


def test_tokens_per_layer_boundaries():
    assert tokens_per_layer(4, 10, 100, "late-entry", 3) == [10, 10, 110, 110]
    assert tokens_per_layer(4, 10, 100, "early-exit", 3) == [110, 110, 110, 10]
    assert tokens_per_layer(4, 10, 100, "late-entry", 1) == [110] * 4
    assert tokens_per_layer(4, 10, 100, "early-exit", 4) == [110] * 4
    assert tokens_per_layer(4, 10, 100, "fastv", 2, keep_ratio=0.25) == [110, 110, 35, 35]


def test_speedup_of_late_entry_grows_with_layer():
    shape = DecoderShape(num_layers=32, hidden=512, intermediate=1376, heads=8, kv_heads=8, head_dim=64,
                         vocab=1000)
    full = prefill_flops(shape, tokens_per_layer(32, 60, 576))
    gains = [predicted_speedup(full, prefill_flops(shape, tokens_per_layer(32, 60, 576, "late-entry", L)))
             for L in (1, 8, 16)]
    assert gains[0] == 1.0 and gains[0] < gains[1] < gains[2]


@pytest.mark.parametrize("kwargs,match", [
    (dict(mode="sideways"), "`mode` must be one of"),
    (dict(mode="late-entry", layer=0), r"`layer` must be an integer in \[1, 4\]"),
    (dict(mode="fastv", layer=2, keep_ratio=1.5), r"`keep_ratio` must be in \[0, 1\]"),
])
def test_bad_arguments_are_rejected(kwargs, match):
    with pytest.raises(ValueError, match=match):
        tokens_per_layer(4, 10, 100, **kwargs)
