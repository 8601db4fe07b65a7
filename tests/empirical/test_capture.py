"""capture_statistics equals the naive reference, ignores padding, merges, and cleans up.

The naive reference (``_naive.py``) materialises every hidden state
(``output_hidden_states=True``) and every eager attention map (``output_attentions=True``)
and computes each statistic from its definition in numpy float64.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

sys.path.insert(0, str(Path(__file__).parent))
from _naive import naive_layers  # noqa: E402

from skipit.empirical import RunStatistics, capture_statistics  # noqa: E402
from skipit.empirical.adapters import get_adapter  # noqa: E402
from skipit.empirical.capture import answer_positions  # noqa: E402
from skipit.empirical.testing import TINY_MODEL_TYPES, collate, tiny_batch, tiny_examples, tiny_model  # noqa: E402

REFERENCE_REL = 1e-5   # the tolerance against the naive reference
BATCHING_REL = 1e-9    # float64 models: batching changes hidden states by ~1e-16


def _assert_close(ours, ref, rel, path=""):
    """Dicts/lists compared recursively: ints exactly, floats to ``rel``, None only with None."""
    if isinstance(ref, dict):
        assert set(ref) <= set(ours), (path, sorted(set(ref) - set(ours)))
        for key in ref:
            _assert_close(ours[key], ref[key], rel, f"{path}.{key}")
    elif isinstance(ref, (list, tuple)):
        assert len(ours) == len(ref), path
        for i, (a, b) in enumerate(zip(ours, ref)):
            _assert_close(a, b, rel, f"{path}[{i}]")
    elif ref is None or ours is None:
        assert ours is None and ref is None, (path, ours, ref)
    elif isinstance(ref, (int, np.integer)) and not isinstance(ref, bool):
        assert ours == ref, (path, ours, ref)
    else:
        assert math.isclose(float(ours), float(ref), rel_tol=rel, abs_tol=1e-14), (path, ours, ref)


def _capture(model, batches, **kwargs):
    with torch.no_grad(), capture_statistics(model, **kwargs) as cap:
        for batch in batches:
            model(**batch)
    return cap.statistics


@pytest.fixture(scope="module", params=TINY_MODEL_TYPES)
def family(request):
    model = tiny_model(request.param, seed=0, num_layers=3, dtype=torch.float64)
    return request.param, model


def test_every_statistic_equals_the_naive_reference(family):
    """Capture under sdpa (no attention maps) == naive float64 states + eager attention maps."""
    model_type, model = family
    eager = tiny_model(model_type, seed=0, num_layers=3, attn_implementation="eager")
    batches = [tiny_batch(model, 3, "left", seed=0), tiny_batch(model, 2, "right", seed=1)]
    stats = _capture(model, batches)
    assert stats.num_examples == 5 and stats.num_layers == 3
    ours, ref = stats.layers(), naive_layers(model, batches, stats.thresholds, attention_model=eager)
    _assert_close(ours, ref, REFERENCE_REL)
    # the random models are far from degenerate: every group has tokens and a CKA
    assert all(layer[g]["tokens"] > 0 for layer in ours for g in ("vision", "text", "answer"))
    assert all(layer["cka"][g] is not None for layer in ours for g in ("vision", "text"))


@pytest.mark.parametrize("padding_side", ["left", "right"])
def test_padded_batch_equals_one_example_at_a_time(family, padding_side):
    _, model = family
    examples = tiny_examples(model, 3, seed=2)
    batched = _capture(model, [collate(model, examples, padding_side)])
    single = _capture(model, [collate(model, [e], padding_side) for e in examples])
    assert batched.num_examples == single.num_examples == 3
    _assert_close(batched.layers(), single.layers(), BATCHING_REL)


@pytest.mark.parametrize("model_type", ["llava", "qwen2_5_vl"])
def test_merge_of_two_runs_equals_one_run_on_both(model_type):
    model = tiny_model(model_type, num_layers=2, dtype=torch.float64)
    a, b = tiny_batch(model, 2, "left", seed=3), tiny_batch(model, 3, "right", seed=4)
    merged = _capture(model, [a]).merge(_capture(model, [b]))
    both = _capture(model, [a, b])
    assert merged.num_examples == both.num_examples == 5
    _assert_close(merged.layers(), both.layers(), 1e-12)
    _assert_close(merged.to_dict()["groups"], both.to_dict()["groups"], 1e-12)


def test_low_precision_model_gets_float64_statistics_of_its_states():
    """A bf16 model: statistics equal float64 arithmetic on its bf16 states, not bf16 arithmetic."""
    model = tiny_model("llava", num_layers=2, dtype=torch.bfloat16)
    batch = tiny_batch(model, 2, "left")
    stats = _capture(model, [batch], attention=False)
    _assert_close(stats.layers(), naive_layers(model, [batch], stats.thresholds), 1e-10)


def test_statistics_survive_json(tmp_path):
    model = tiny_model("llava", num_layers=2)
    stats = _capture(model, [tiny_batch(model, 2)])
    stats.save(tmp_path / "stats.json")
    assert RunStatistics.load(tmp_path / "stats.json").layers() == stats.layers()


def test_switches_leave_out_cka_and_attention():
    model = tiny_model("llava", num_layers=2)
    layer = _capture(model, [tiny_batch(model, 2)], cka=False, attention=False).layers()[0]
    assert layer["cka"] == {"vision": None, "text": None}
    assert layer["visual_attention_ratio"] is None
    assert layer["vision"]["tokens"] > 0


def _hook_count(model):
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


def _warm(model, batch):
    """transformers installs its own output-capturing hooks on a model's first forward."""
    with torch.no_grad():
        model(**batch)


def test_hooks_are_removed_on_exit_and_on_error():
    model = tiny_model("llava", num_layers=2)
    batch = tiny_batch(model, 2)
    _warm(model, batch)
    before = _hook_count(model)
    with capture_statistics(model):
        assert _hook_count(model) > before
    assert _hook_count(model) == before
    with pytest.raises(ValueError, match=r"needs `input_ids`"):
        with capture_statistics(model):
            model(inputs_embeds=torch.zeros(1, 4, 64))
    assert _hook_count(model) == before
    with pytest.raises(RuntimeError, match="boom"):
        with capture_statistics(model) as cap:
            model(**batch)
            raise RuntimeError("boom")
    assert _hook_count(model) == before
    assert cap.statistics.num_examples == 2


def test_capture_keeps_one_hidden_state_whatever_the_depth():
    """After layer l's hook the capture holds only hidden state l (shared with the model), none after N."""
    model = tiny_model("llava", num_layers=4)
    batch = tiny_batch(model, 2)
    held = []

    def check(module, args, output):
        held.append(None if cap._prev is None else cap._prev.data_ptr() == output.data_ptr())

    with capture_statistics(model, attention=False) as cap:
        probe = [layer.register_forward_hook(check) for layer in cap.layers]  # run after the capture's hooks
        try:
            with torch.no_grad():
                model(**batch)
        finally:
            for handle in probe:
                handle.remove()
        assert cap._prev is None and not cap._grams and not cap._pending_dist
    assert held == [True, True, True, None]


def test_qwen_forward_without_token_types_is_refused():
    model = tiny_model("qwen2_5_vl", num_layers=1)
    batch = dict(tiny_batch(model, 2))
    del batch["mm_token_type_ids"]
    with pytest.raises(ValueError, match=r"qwen2_5_vl forwards need \['mm_token_type_ids'\]"):
        with capture_statistics(model, attention=False):
            model(**batch)


def test_answer_position_is_the_last_non_padding_token():
    mask = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    assert answer_positions(mask).tolist() == [4, 2, 4]
    with pytest.raises(ValueError, match="at least one non-padding position"):
        answer_positions(torch.tensor([[0, 0], [1, 0]]))


def test_bad_thresholds_are_refused_before_any_hook():
    model = tiny_model("llava", num_layers=1)
    _warm(model, tiny_batch(model, 1))
    before = _hook_count(model)
    with pytest.raises(ValueError, match=r"`thresholds` must be strictly increasing"):
        capture_statistics(model, thresholds=(0.1, 0.05))
    assert _hook_count(model) == before


def _replace_vision_states(model, batch, before, after):
    """Hooks (registered before the capture's, so they run first) that set the vision tokens'
    input of decoder layer 1 to ``before[b]`` and its output to ``after`` (vectors of size d)."""
    adapter = get_adapter(model)
    vision = adapter.vision_mask(batch["input_ids"], model.config)
    layer = adapter.decoder_layers(model)[0]

    def pre(module, args, kwargs):
        hidden = kwargs["hidden_states"] if "hidden_states" in kwargs else args[0]
        hidden = hidden.clone()
        for b in range(hidden.shape[0]):
            hidden[b, vision[b]] = before[b].to(hidden.dtype)
        if "hidden_states" in kwargs:
            return args, {**kwargs, "hidden_states": hidden}
        return (hidden, *args[1:]), kwargs

    def post(module, args, output):
        hidden = (output[0] if isinstance(output, (tuple, list)) else output).clone()
        hidden[vision] = after.to(hidden.dtype)
        return (hidden, *output[1:]) if isinstance(output, (tuple, list)) else hidden

    return vision, [layer.register_forward_pre_hook(pre, with_kwargs=True), layer.register_forward_hook(post)]


def test_exact_ties_are_not_below_and_zero_norm_states_are_reported():
    """Orthogonal states give rho = 1.0 exactly: not below t = 1.0 (strict), below 1.5. Example 0's
    vision input is the zero vector: those tokens are counted in zero_norm_tokens and left out."""
    model = tiny_model("llava", num_layers=2, dtype=torch.float64)
    batch = tiny_batch(model, 3, "left", seed=5)
    d = model.config.text_config.hidden_size
    e0, e1 = torch.zeros(d, dtype=torch.float64), torch.zeros(d, dtype=torch.float64)
    e0[0], e1[1] = 2.0, 3.0
    vision, handles = _replace_vision_states(model, batch, [torch.zeros(d), e0, e0], e1)
    try:
        g = _capture(model, [batch], thresholds=(0.5, 1.0, 1.5), cka=False, attention=False).group(1, "vision")
    finally:
        for handle in handles:
            handle.remove()
    counts = vision.sum(1).tolist()
    kept = counts[1] + counts[2]
    assert g["zero_norm_tokens"] == counts[0] > 0
    assert g["tokens"] == kept and g["examples"] == 2
    assert g["mean_cosine_distance"] == 1.0 and g["example_mean_cosine_distance"] == 1.0
    assert g["proximal_count"] == {"0.5": 0, "1.0": 0, "1.5": kept}
    assert g["example_proximal_fraction"] == {"0.5": 0.0, "1.0": 0.0, "1.5": 1.0}


def test_zero_initialised_projector_is_reported_as_zero_norm_tokens():
    model = tiny_model("llava", num_layers=2, dtype=torch.float64)
    with torch.no_grad():
        for p in model.model.multi_modal_projector.parameters():
            p.zero_()
    batch = tiny_batch(model, 2, "right", seed=6)
    stats = _capture(model, [batch], cka=False, attention=False)
    first, second = stats.group(1, "vision"), stats.group(2, "vision")
    vision_tokens = int(get_adapter(model).vision_mask(batch["input_ids"], model.config).sum())
    assert first["zero_norm_tokens"] == vision_tokens and first["tokens"] == 0 and first["examples"] == 0
    assert first["mean_cosine_distance"] is None
    assert second["zero_norm_tokens"] == 0 and second["tokens"] == vision_tokens and second["examples"] == 2
