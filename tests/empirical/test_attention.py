"""AttentionProbe: attention rows from hooked q/k projections equal the eager maps' rows.

Reference: the same weights run with ``attn_implementation="eager"`` and
``output_attentions=True``; row ``pos[b]`` of example ``b`` in each layer's map.
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from skipit.empirical.adapters import get_adapter  # noqa: E402
from skipit.empirical.attention import (  # noqa: E402
    AttentionProbe,
    _bound_arguments,
    _mask_rows,
    vision_attention_mass,
)
from skipit.empirical.testing import TINY_MODEL_TYPES, tiny_batch, tiny_model  # noqa: E402

#: float32 eager maps against float64 rows recomputed from the sdpa run's projections.
RTOL = 1e-5
ATOL = 1e-12

_MODELS: dict[str, tuple] = {}


def _models(model_type: str):
    """(sdpa model, eager model with the same weights), built once per module."""
    if model_type not in _MODELS:
        model = tiny_model(model_type, seed=0, num_layers=3)
        eager = tiny_model(model_type, seed=0, num_layers=3, attn_implementation="eager")
        eager.load_state_dict(model.state_dict())
        _MODELS[model_type] = (model, eager)
    return _MODELS[model_type]


def _probe_rows(model, batch, positions, **probe_kwargs) -> dict[int, torch.Tensor]:
    rows: dict[int, torch.Tensor] = {}

    def record(layer, probs):
        assert layer not in rows, f"layer {layer} reported twice"
        rows[layer] = probs

    probe = AttentionProbe(model, get_adapter(model), record, **probe_kwargs)
    probe.set_query_positions(positions)
    with torch.no_grad(), probe:
        out = model(**batch)
    assert not getattr(out, "attentions", None), "the probed forward must not produce attention maps"
    return rows


def _eager_rows(eager, batch, positions) -> list[torch.Tensor]:
    with torch.no_grad():
        maps = eager(**batch, output_attentions=True).attentions
    examples = torch.arange(len(positions))
    return [layer_map[examples, :, positions].double() for layer_map in maps]


def _query_positions(batch) -> list[torch.Tensor]:
    """The answer positions, and a second set inside the prompt (first real token + 2)."""
    mask = batch["attention_mask"].bool()
    first = mask.float().argmax(dim=-1)
    return [batch.answer_positions, first + 2]


@pytest.mark.parametrize("padding_side", ["left", "right"])
@pytest.mark.parametrize("model_type", TINY_MODEL_TYPES)
def test_probe_rows_equal_eager_attention_rows_under_sdpa(model_type, padding_side):
    """For every layer l = 1..N and example b, probe row == eager map[b, :, pos_b, :] to 1e-5 relative,
    with the probed model running sdpa, a padded batch of 3 examples of different lengths."""
    model, eager = _models(model_type)
    assert model.config.get_text_config()._attn_implementation == "sdpa"
    batch = tiny_batch(model, batch_size=3, padding_side=padding_side, seed=1)
    assert len(set(batch.lengths.tolist())) > 1, "the batch must need padding"
    num_heads = model.config.get_text_config().num_attention_heads
    for positions in _query_positions(batch):
        rows = _probe_rows(model, batch, positions)
        reference = _eager_rows(eager, batch, positions)
        assert sorted(rows) == list(range(1, len(reference) + 1))
        for layer, expected in enumerate(reference, start=1):
            got = rows[layer]
            assert got.dtype == torch.float64
            assert got.shape == (3, num_heads, batch["input_ids"].shape[1])
            torch.testing.assert_close(got, expected, rtol=RTOL, atol=ATOL, msg=f"layer {layer}")
            padding = ~batch["attention_mask"].bool()
            assert torch.all(got.masked_select(padding[:, None, :].expand_as(got)) == 0)
            torch.testing.assert_close(got.sum(-1), torch.ones_like(got[..., 0]), rtol=0, atol=1e-12)


@pytest.mark.parametrize("model_type", ["llava", "gemma3"])
def test_probe_rows_equal_eager_rows_when_the_probed_model_runs_eager(model_type):
    """Under eager attention the layers receive additive float masks; the rows still match."""
    _, eager = _models(model_type)
    batch = tiny_batch(eager, batch_size=2, padding_side="left", seed=2)
    rows = _probe_rows(eager, batch, batch.answer_positions)
    for layer, expected in enumerate(_eager_rows(eager, batch, batch.answer_positions), start=1):
        torch.testing.assert_close(rows[layer], expected, rtol=RTOL, atol=ATOL)


def test_probe_rows_equal_eager_rows_without_padding_where_sdpa_passes_no_mask():
    """One unpadded example: sdpa layers get ``attention_mask=None`` (pure causal)."""
    model, eager = _models("llava")
    batch = tiny_batch(model, batch_size=1, seed=3)
    seen = []
    attention = get_adapter(model).self_attention(get_adapter(model).decoder_layers(model)[0])
    handle = attention.register_forward_pre_hook(
        lambda module, args, kwargs: seen.append(kwargs.get("attention_mask")), with_kwargs=True
    )
    try:
        rows = _probe_rows(model, batch, batch.answer_positions)
    finally:
        handle.remove()
    assert seen == [None]
    for layer, expected in enumerate(_eager_rows(eager, batch, batch.answer_positions), start=1):
        torch.testing.assert_close(rows[layer], expected, rtol=RTOL, atol=ATOL)


def test_probe_holds_at_most_one_layers_keys():
    """While layer l's key projection runs, no other layer's keys or queries are held."""
    model, _ = _models("llava")
    batch = tiny_batch(model, batch_size=2)
    adapter = get_adapter(model)
    probe = AttentionProbe(model, adapter, lambda layer, probs: None)
    probe.set_query_positions(batch.answer_positions)
    held = []
    with torch.no_grad(), probe:
        handles = [
            adapter.self_attention(layer).k_proj.register_forward_hook(
                lambda *args: held.append(sum(s.keys is not None for s in probe._states.values()))
            )
            for layer in adapter.decoder_layers(model)
        ]
        try:
            model(**batch)
        finally:
            for handle in handles:
                handle.remove()
        assert all(state.keys is None and state.queries is None for state in probe._states.values())
    assert held == [1] * adapter.num_layers(model)


def _hook_count(model) -> int:
    adapter = get_adapter(model)
    count = 0
    for layer in adapter.decoder_layers(model):
        attention = adapter.self_attention(layer)
        for module in (attention, attention.q_proj, attention.k_proj):
            count += len(module._forward_hooks) + len(module._forward_pre_hooks)
    return count


def test_hooks_removed_after_exit_and_after_an_exception():
    model, _ = _models("llava")
    batch = tiny_batch(model, batch_size=2)
    before = _hook_count(model)

    def fail(layer, probs):
        raise KeyError("callback failed")

    probe = AttentionProbe(model, get_adapter(model), fail)
    probe.set_query_positions(batch.answer_positions)
    with pytest.raises(KeyError, match="callback failed"), torch.no_grad(), probe:
        assert _hook_count(model) == before + 4 * get_adapter(model).num_layers(model)
        model(**batch)
    assert _hook_count(model) == before
    assert probe._states == {}


def test_layers_restricts_the_callback_to_the_chosen_layers():
    model, eager = _models("qwen2_5_vl")
    batch = tiny_batch(model, batch_size=2, padding_side="right")
    rows = _probe_rows(model, batch, batch.answer_positions, layers=[2])
    assert list(rows) == [2]
    expected = _eager_rows(eager, batch, batch.answer_positions)[1]
    torch.testing.assert_close(rows[2], expected, rtol=RTOL, atol=ATOL)


def test_adapter_defaults_to_the_models_own():
    model, _ = _models("llava")
    probe = AttentionProbe(model, callback=lambda layer, probs: None)
    assert probe.adapter.model_type == "llava"
    assert probe.layers == (1, 2, 3)


def test_invalid_arguments_raise_actionable_errors():
    model, _ = _models("llava")
    adapter = get_adapter(model)
    with pytest.raises(ValueError, match="`callback` must be a callable"):
        AttentionProbe(model, adapter, None)
    with pytest.raises(ValueError, match=r"^`layers` must be an integer in \[1, 3\], got 0$"):
        AttentionProbe(model, adapter, print, layers=[0, 4, 2])
    probe = AttentionProbe(model, adapter, print)
    with pytest.raises(ValueError, match="`positions` must be a 1-D integer tensor"):
        probe.set_query_positions(torch.tensor([[1, 2]]))
    with pytest.raises(ValueError, match="`positions` must be a 1-D integer tensor"):
        probe.set_query_positions(torch.tensor([1.0, 2.0]))
    with pytest.raises(ValueError, match=r"`positions` must be >= 0, got \[-1, 2\]"):
        probe.set_query_positions([-1, 2])


def test_forward_errors_name_the_mismatch_and_leave_no_hooks():
    model, _ = _models("llava")
    batch = tiny_batch(model, batch_size=2)
    before = _hook_count(model)
    probe = AttentionProbe(model, get_adapter(model), lambda layer, probs: None)
    with pytest.raises(RuntimeError, match="call set_query_positions"), torch.no_grad(), probe:
        model(**batch)
    probe.set_query_positions(torch.tensor([3]))
    with pytest.raises(ValueError, match="1 query positions set for a batch of 2"), torch.no_grad(), probe:
        model(**batch)
    width = batch["input_ids"].shape[1]
    probe.set_query_positions(torch.tensor([0, width]))
    with pytest.raises(ValueError, match=f"must be < sequence length {width}"), torch.no_grad(), probe:
        model(**batch)
    assert _hook_count(model) == before


def test_a_forward_continuing_a_cache_is_refused():
    """The probe needs all keys in one forward; a decoding step sees only the new token's keys."""
    model, _ = _models("llava")
    batch = tiny_batch(model, batch_size=1)
    with torch.no_grad():
        cache = model(**batch, use_cache=True).past_key_values
    probe = AttentionProbe(model, get_adapter(model), lambda layer, probs: None)
    probe.set_query_positions(torch.tensor([0]))
    step = {
        "input_ids": torch.tensor([[5]]),
        "attention_mask": torch.ones(1, batch["input_ids"].shape[1] + 1, dtype=torch.long),
    }
    with pytest.raises(ValueError, match="whole prompt in one forward"), torch.no_grad(), probe:
        model(**step, cache=cache, use_cache=True)


def test_mask_rows_agree_across_mask_formats():
    """A 2-D padding mask (flash style), a 4-D boolean mask and a 4-D additive mask give one row;
    ``None`` is causal, and the sliding window keeps keys j > i - window."""
    padding = torch.tensor([[0, 1, 1, 1, 1], [1, 1, 1, 1, 0]])
    rows = torch.tensor([4, 2])
    keys = torch.arange(5)
    allowed = (keys[None, :, None] <= keys[None, None, :]).transpose(1, 2) & padding[:, None, :].bool()
    boolean = allowed[:, None]  # (B, 1, S, S): True = attend
    additive = torch.zeros(boolean.shape).masked_fill(~boolean, torch.finfo(torch.float32).min)
    from_2d = _mask_rows(padding, rows, 5, causal=True, sliding_window=None)
    from_bool = _mask_rows(boolean, rows, 5, causal=True, sliding_window=None)
    from_additive = _mask_rows(additive, rows, 5, causal=True, sliding_window=None)
    expected = torch.tensor([[False, True, True, True, True], [True, True, True, False, False]])
    assert torch.equal(torch.isfinite(from_2d[:, 0]), expected)
    assert torch.equal(from_2d, from_bool)
    assert torch.equal(torch.softmax(from_additive, -1), torch.softmax(from_bool, -1))
    causal = _mask_rows(None, rows, 5, causal=True, sliding_window=None)
    assert torch.equal(torch.isfinite(causal[:, 0]), keys[None, :] <= rows[:, None])
    window = _mask_rows(None, rows, 5, causal=True, sliding_window=2)
    assert torch.equal(torch.isfinite(window[:, 0]), torch.tensor([[0, 0, 0, 1, 1], [0, 1, 1, 0, 0]]).bool())
    full = _mask_rows(None, rows, 5, causal=False, sliding_window=None)
    assert torch.isfinite(full).all()
    with pytest.raises(ValueError, match="attention mask of type dict .* is not supported"):
        _mask_rows({"block": 1}, rows, 5, causal=True, sliding_window=None)
    with pytest.raises(ValueError, match="does not cover the 6 positions"):
        _mask_rows(boolean, rows, 6, causal=True, sliding_window=None)


@pytest.mark.parametrize("model_type", ["qwen2_5_vl", "gemma3"])
def test_vision_attention_mass_is_the_eager_rows_mass_on_vision_keys(model_type):
    """eq. 3 per head: sum over vision keys i of A^{(l,h)}(answer, i); VAR = its sum over heads."""
    model, eager = _models(model_type)
    batch = tiny_batch(model, batch_size=3, padding_side="right", seed=4)
    vision = get_adapter(model).vision_mask(batch["input_ids"], model.config)
    rows = _probe_rows(model, batch, batch.answer_positions)
    reference = _eager_rows(eager, batch, batch.answer_positions)
    for layer, expected in enumerate(reference, start=1):
        mass = vision_attention_mass(rows[layer], vision)
        naive = torch.stack([expected[b][:, vision[b]].sum(-1) for b in range(3)])
        torch.testing.assert_close(mass, naive, rtol=RTOL, atol=ATOL)
        assert mass.shape == (3, model.config.get_text_config().num_attention_heads)
        assert torch.all((mass > 0) & (mass < 1))
    with pytest.raises(ValueError, match=r"`vision_mask` must be \[B, S\]"):
        vision_attention_mass(rows[1], vision[:, :-1])


@pytest.mark.parametrize("model_type", ["llava", "gemma3"])
def test_probe_runs_on_a_bfloat16_model(model_type):
    """bf16 weights: float64 rows, within bf16 rounding of the bf16 eager maps."""
    model = tiny_model(model_type, seed=0, num_layers=2, dtype=torch.bfloat16)
    eager = tiny_model(model_type, seed=0, num_layers=2, dtype=torch.bfloat16, attn_implementation="eager")
    eager.load_state_dict(model.state_dict())
    batch = tiny_batch(model, batch_size=2, padding_side="left", seed=5)
    rows = _probe_rows(model, batch, batch.answer_positions)
    for layer, expected in enumerate(_eager_rows(eager, batch, batch.answer_positions), start=1):
        assert rows[layer].dtype == torch.float64
        torch.testing.assert_close(rows[layer], expected, rtol=0.02, atol=1e-3)


def test_positional_attention_arguments_are_named_from_the_forward_signature():
    model, _ = _models("llava")
    attention = get_adapter(model).self_attention(get_adapter(model).decoder_layers(model)[0])
    hidden, cos, sin, mask = torch.zeros(1, 2, 4), torch.ones(1, 2, 16), torch.zeros(1, 2, 16), torch.ones(1, 2)
    named = _bound_arguments(attention, (hidden, (cos, sin), mask), {"position_ids": 7})
    assert named["hidden_states"] is hidden and named["attention_mask"] is mask
    assert named["position_embeddings"][0] is cos and named["position_ids"] == 7
