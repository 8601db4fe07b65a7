"""The analytic FLOPs model equals the profiler's count (FlopCounterMode) on a tiny LLaVA.

Tolerance: none (exact integers). Both count matrix multiplications only, 2 FLOPs per
multiply-add; the profiler does not count norms, rotary, softmax or the gathers of the
packing, and the FLOPs model leaves them out too. Eager attention, because the profiler
does not count the CPU sdpa kernel.
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from skipit.empirical.adapters import get_adapter  # noqa: E402
from skipit.empirical.flops import (  # noqa: E402
    DecoderShape, VisionShape, config_flops_fraction, example_token_counts, generation_flops, keys_per_layer,
    layer_flops, predicted_speedup, prefill_flops, tokens_per_layer, vision_flops,
)
from skipit.empirical.modes import skip_context  # noqa: E402
from skipit.empirical.skipping import early_exit, late_entry  # noqa: E402
from skipit.empirical.testing import collate, tiny_batch, tiny_examples, tiny_model  # noqa: E402


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


def _predicted(shape, text, vision, mode, layer, new_tokens=None):
    tokens = tokens_per_layer(N, text, vision, mode, layer)
    keys = keys_per_layer(N, text, vision, mode, layer)
    if new_tokens is None:
        return prefill_flops(shape, tokens, keys=keys)
    return generation_flops(shape, tokens, new_tokens, keys=keys)["total"]


@pytest.mark.parametrize("layers", [[2], [2, 3], [1, 4], [1, 2, 3, 4]])
def test_freeze_flops_equal_profiler_count_and_are_fewer(setup, layers):
    """Prefill and generate under freeze: the profiler counts exactly what the model predicts
    (text queries, all keys, vision K/V projections only in frozen layers), and both count
    fewer FLOPs than the full model, by the same amount."""
    model, batch, text, vision = setup
    shape = DecoderShape.from_config(model.config)
    tower = vision_flops(VisionShape.from_llava_config(model.config))
    kw = dict(max_new_tokens=4, min_new_tokens=4, do_sample=False)
    full_pre = _profiled(lambda: model(**batch))
    full_gen = _profiled(lambda: model.generate(**batch, **kw))
    with skip_context(model, "freeze", layers):
        pre = _profiled(lambda: model(**batch))
        gen = _profiled(lambda: model.generate(**batch, **kw))
    assert pre == tower + _predicted(shape, text, vision, "freeze", layers)
    assert gen == tower + _predicted(shape, text, vision, "freeze", layers, new_tokens=4)
    assert pre < full_pre and gen < full_gen
    assert full_pre - pre == (_predicted(shape, text, vision, "full", None)
                              - _predicted(shape, text, vision, "freeze", layers))


def test_freeze_layer_flops_closed_form():
    """A frozen layer: text queries/o/MLP, attention text x (text + vision), and the
    vision tokens' k/v projections 2*v*d*e*2g."""
    shape = DecoderShape(num_layers=2, hidden=8, intermediate=16, heads=2, kv_heads=1, head_dim=4, vocab=10)
    t, v = 3, 5
    frozen = 2 * t * 8 * 4 * 6 + 2 * v * 8 * 4 * 2 + 4 * t * (t + v) * 2 * 4 + 6 * t * 8 * 16
    full = layer_flops(shape, t + v, t + v)
    head = 2 * (t + v) * 8 * 10
    assert prefill_flops(shape, tokens_per_layer(2, t, v, "freeze", [2]),
                         keys=keys_per_layer(2, t, v, "freeze", [2])) == full + frozen + head


def test_freeze_token_layout_names_each_layer():
    assert tokens_per_layer(4, 10, 100, "freeze", [2, 4]) == [110, 10, 110, 10]
    assert keys_per_layer(4, 10, 100, "freeze", [2, 4]) == [110] * 4
    assert keys_per_layer(4, 10, 100, "late-entry", 3) == [10, 10, 110, 110]
    assert tokens_per_layer(4, 10, 100, "freeze", []) == [110] * 4


@pytest.mark.parametrize("layer,match", [
    (3, r"`layer` must be a list of integers in \[1, 4\], got 3"),
    ([0], r"`layer` must be integers in \[1, 4\], got 0"),
    ([2, 2], r"`layer` must not repeat a layer"),
])
def test_bad_freeze_layers_are_rejected(layer, match):
    with pytest.raises(ValueError, match=match):
        tokens_per_layer(4, 10, 100, "freeze", layer)


def test_flops_fraction_uses_every_examples_own_token_counts():
    """LLaVA-NeXT's vision token count depends on the image: the fraction is the sum over
    examples of the profiled FLOPs under the mode over the sum of the full ones, each
    example with its own counts; the first example's counts alone give another number."""
    model = tiny_model("llava_next", seed=0, num_layers=N, attn_implementation="eager")
    examples = tiny_examples(model, 3, seed=0)
    batch = collate(model, examples, padding_side="left")
    counts = example_token_counts(get_adapter(model).vision_mask(batch["input_ids"], model.config),
                                  batch["attention_mask"])
    assert len({v for _, v in counts}) > 1  # the test needs varying vision counts

    def lm_flops(example, mode, layer):
        alone = collate(model, [example])
        with FlopCounterMode(display=False) as counter, torch.no_grad(), skip_context(model, mode, layer):
            model(**alone)
        flops = counter.get_flop_counts()
        return sum(sum(flops[k].values()) for k in flops if k.endswith((".language_model", ".lm_head")))

    for mode, layer in (("freeze", [2, 3]), ("late-entry", 3), ("early-exit", 2)):
        measured = (sum(lm_flops(e, mode, layer) for e in examples)
                    / sum(lm_flops(e, "full", None) for e in examples))
        predicted = config_flops_fraction(model.config, mode, layer, counts)
        assert predicted == pytest.approx(measured, rel=1e-12)
        assert predicted != pytest.approx(config_flops_fraction(model.config, mode, layer, counts[:1]), rel=1e-6)


def test_example_token_counts_leave_out_padding():
    vision = torch.tensor([[0, 1, 1, 0, 0], [0, 0, 1, 1, 1]], dtype=torch.bool)
    mask = torch.tensor([[0, 1, 1, 1, 1], [1, 1, 1, 1, 1]])
    assert example_token_counts(vision, mask) == [(2, 2), (2, 3)]
    assert example_token_counts(vision) == [(3, 2), (2, 3)]
