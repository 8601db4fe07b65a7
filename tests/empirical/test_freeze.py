"""Freeze (skipit.empirical.skipping.freeze, after ShortV) and skip() on every tiny family.

The reference is an independent full computation: the model's own decoder layers on the
whole sequence, every token, no packing, no cache surgery; after each frozen layer a
forward hook puts back the vision rows of its input. That is freeze by definition: the
text rows of a full layer see the vision keys/values computed from the layer's input
states, and the vision rows leave unchanged.
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from skipit.empirical.adapters import get_adapter  # noqa: E402
from skipit.empirical.baselines import fastv_prune  # noqa: E402
from skipit.empirical.skipping import early_exit, freeze, late_entry, skip  # noqa: E402
from skipit.empirical.testing import TINY_MODEL_TYPES as FAMILIES  # noqa: E402
from skipit.empirical.testing import collate, tiny_batch, tiny_examples, tiny_model  # noqa: E402
from tests.empirical.test_skipping import _logits, _real, _zero_layers  # noqa: E402

N = 4
ATOL = 1e-5
"""float32: packing and the cache reorder no arithmetic that matters beyond round-off."""
BF16_ATOL = 2e-2
"""bfloat16 (8 mantissa bits): a few ulps of logits of size ~1."""
MOVED = 1e-3
"""A change smaller than this is no change (the negative controls must exceed it)."""
GEN = dict(do_sample=False, suppress_tokens=list(range(120, 128)))

_MODELS = {}


def _model(model_type, attn=None, dtype=torch.float32):
    key = (model_type, attn, dtype)
    if key not in _MODELS:
        _MODELS[key] = tiny_model(model_type, seed=0, num_layers=N, attn_implementation=attn, dtype=dtype)
    return _MODELS[key]


def _vision(model, batch):
    return get_adapter(model).vision_mask(batch["input_ids"], model.config)


class _Reference:
    """Full compute, then the vision rows of each frozen layer's output reset to its input.

    Optionally late entry at ``enter`` / early exit at ``leave`` by masking: text queries
    of a layer outside [enter, leave] do not see vision keys (eager attention, additive
    mask), and at ``enter`` the vision rows restart from their embedding.
    """

    def __init__(self, model, batch, frozen, enter=1, leave=N):
        self.model, self.frozen, self.enter, self.leave = model, set(frozen), enter, leave
        self.vision_of = lambda ids: get_adapter(model).vision_mask(ids, model.config)
        self.batch = batch
        self.saved = {}
        self.handles = []

    def __enter__(self):
        for l, layer in enumerate(get_adapter(self.model).decoder_layers(self.model), start=1):
            self.handles.append(layer.register_forward_pre_hook(self._pre(l), with_kwargs=True))
            self.handles.append(layer.register_forward_hook(self._post(l)))
        self.handles.append(self.model.register_forward_pre_hook(self._ids, with_kwargs=True))
        return self

    def __exit__(self, *exc):
        for h in self.handles:
            h.remove()

    def _ids(self, module, args, kwargs):
        self.vision = self.vision_of(kwargs["input_ids"])

    def _pre(self, l):
        def hook(module, args, kwargs):
            h = args[0] if args else kwargs["hidden_states"]
            if l == 1:
                self.saved["emb"] = h
            if l == self.enter and self.enter > 1:
                h = torch.where(self.vision[..., None], self.saved["emb"], h)
            self.saved[l] = h
            kwargs = dict(kwargs)
            if not self.enter <= l <= self.leave:
                blocked = (~self.vision)[:, None, :, None] & self.vision[:, None, None, :]
                mask = kwargs["attention_mask"]
                kwargs["attention_mask"] = mask.masked_fill(blocked, torch.finfo(mask.dtype).min)
            if args:
                return (h,) + tuple(args[1:]), kwargs
            return args, dict(kwargs, hidden_states=h)
        return hook

    def _post(self, l):
        def hook(module, args, output):
            if l not in self.frozen:
                return None
            h = output[0] if isinstance(output, tuple) else output
            return torch.where(self.vision[..., None], self.saved[l], h)
        return hook


def _reference_logits(model, batch, frozen, **kw):
    with torch.no_grad(), _Reference(model, batch, frozen, **kw):
        return model(**batch).logits


@pytest.fixture(params=FAMILIES)
def family(request):
    return request.param


def test_freezing_no_layer_is_the_full_model(family):
    model = _model(family)
    batch = tiny_batch(model, batch_size=3, padding_side="left", seed=1)
    real = batch["attention_mask"].bool()
    assert torch.equal(_logits(model, batch, freeze, layers=[])[real], _logits(model, batch)[real])


def test_freezing_identity_layers_changes_nothing(family):
    """Layers 2 and 3 with zero o_proj/down_proj are identities for every token: freezing
    them keeps the full model's logits, while freezing them in the unmodified model moves
    the logits (so the comparison can fail)."""
    model = tiny_model(family, seed=0, num_layers=N)
    _zero_layers(model, [2, 3])
    batch = tiny_batch(model, batch_size=3, padding_side="left", seed=2)
    text = _real(batch, model)
    assert torch.allclose(_logits(model, batch, freeze, layers=[2, 3])[text], _logits(model, batch)[text],
                          atol=ATOL)
    plain = _model(family)
    moved = (_logits(plain, batch, freeze, layers=[2, 3]) - _logits(plain, batch))[text].abs().max()
    assert moved > MOVED


@pytest.mark.parametrize("padding_side", ["left", "right"])
@pytest.mark.parametrize("attn", [None, "eager"])
def test_freezing_equals_the_full_compute_reference(family, padding_side, attn):
    """Packed text queries + frozen vision keys (sdpa or eager) == the full layers with the
    vision rows reset after each frozen layer; padding on either side."""
    model = _model(family, attn)
    batch = tiny_batch(model, batch_size=3, padding_side=padding_side, seed=3)
    text = _real(batch, model)
    got = _logits(model, batch, freeze, layers=[2, 3])
    assert torch.allclose(got[text], _reference_logits(model, batch, {2, 3})[text], atol=ATOL)


@pytest.mark.parametrize("family", ["llava", "qwen2_5_vl", "gemma3"])
def test_freezing_layer_3_is_not_freezing_layer_2_or_4(family):
    """An off-by-one in the layer numbering fails here: freeze [3] equals the reference for
    layer 3 (1-based) and differs from freeze [2] and freeze [4]."""
    model = _model(family)
    batch = tiny_batch(model, batch_size=2, padding_side="left", seed=4)
    text = _real(batch, model)
    three = _logits(model, batch, freeze, layers=[3])[text]
    assert torch.allclose(three, _reference_logits(model, batch, {3})[text], atol=ATOL)
    for other in (2, 4):
        assert (_logits(model, batch, freeze, layers=[other])[text] - three).abs().max() > MOVED


@pytest.mark.parametrize("padding_side", ["left", "right"])
def test_padded_batch_equals_one_example_at_a_time(family, padding_side):
    model = _model(family)
    examples = tiny_examples(model, 3, seed=5)
    batch = collate(model, examples, padding_side=padding_side)
    got = _logits(model, batch, freeze, layers=[1, 3])
    for i, example in enumerate(examples):
        alone = collate(model, [example], padding_side=padding_side)
        ref = _logits(model, alone, freeze, layers=[1, 3])[0]
        rows = batch["attention_mask"][i].bool()
        assert torch.allclose(got[i][rows][-1], ref[-1], atol=1e-4)


def test_cached_generation_equals_recomputation(family):
    """generate with the KV cache (vision keys/values of frozen layers in that layer's
    cache) == generate without cache under freeze == the reference without cache."""
    model = _model(family)
    batch = tiny_batch(model, batch_size=3, padding_side="left", seed=6)
    with torch.no_grad():
        with freeze(model, layers=[2, 4]):
            cached = model.generate(**batch, max_new_tokens=4, **GEN)
            plain = model.generate(**batch, max_new_tokens=4, use_cache=False, **GEN)
        with _Reference(model, batch, {2, 4}):
            ref = model.generate(**batch, max_new_tokens=4, use_cache=False, **GEN)
    assert torch.equal(cached, plain)
    assert torch.equal(cached, ref)


def test_beam_search_with_cache_equals_beam_search_without():
    model = _model("qwen2_5_vl")
    batch = tiny_batch(model, batch_size=2, padding_side="left", seed=6)
    with torch.no_grad(), freeze(model, layers=[2, 3]):
        cached = model.generate(**batch, max_new_tokens=3, num_beams=3, **GEN)
        plain = model.generate(**batch, max_new_tokens=3, num_beams=3, use_cache=False, **GEN)
    assert torch.equal(cached, plain)


def test_frozen_layer_cache_holds_the_vision_keys():
    """The frozen layer's cache has every prompt position (its vision keys included); the
    layers it runs on text only in a prefill still decode against all of them."""
    model = _model("llava")
    batch = tiny_batch(model, batch_size=2, padding_side="left", seed=7)
    with torch.no_grad(), freeze(model, layers=[2]):
        out = model.generate(**batch, max_new_tokens=3, return_dict_in_generate=True, **GEN)
    full = batch["input_ids"].shape[1] + 2  # the last generated token is never fed back
    assert [out.cache.layers[i].keys.shape[-2] for i in range(N)] == [full] * N


def test_frozen_layers_process_only_text_queries(family):
    """The compute leaves: a frozen layer is called on the packed text (B x longest text),
    and ``layer_tokens`` counts the text tokens only."""
    model = _model(family)
    batch = tiny_batch(model, batch_size=2, padding_side="left", seed=8)
    vision = _vision(model, batch)
    seen = {}
    dec = get_adapter(model).decoder_layers(model)
    with torch.no_grad(), freeze(model, layers=[2, 3]) as skipper:
        handles = [d.register_forward_pre_hook(
            lambda m, a, k, l=l: seen.__setitem__(l, (a[0] if a else k["hidden_states"]).shape[1]),
            with_kwargs=True) for l, d in enumerate(dec, 1)]
        try:
            model(**batch)
        finally:
            for h in handles:
                h.remove()
    widest_text = int((~vision).sum(dim=1).max())
    assert seen == {1: vision.shape[1], 2: widest_text, 3: widest_text, 4: vision.shape[1]}
    assert skipper.layer_tokens[2] == int((~vision).sum()) and skipper.layer_tokens[1] == vision.numel()


@pytest.mark.parametrize("attn", [None, "eager"])
@pytest.mark.parametrize("family", ["gemma3", "qwen2_5_vl"])
def test_bfloat16_freezing_equals_the_reference(family, attn):
    model = _model(family, attn, torch.bfloat16)
    batch = tiny_batch(model, batch_size=3, padding_side="left", seed=9)
    text = _real(batch, model)
    got = _logits(model, batch, freeze, layers=[2, 3])
    ref = _reference_logits(model, batch, {2, 3})
    assert torch.isfinite(got[text]).all()
    assert (got[text].float() - ref[text].float()).abs().max() <= BF16_ATOL
    assert (_logits(model, batch)[text].float() - ref[text].float()).abs().max() > BF16_ATOL
    with torch.no_grad(), freeze(model, layers=[2, 3]):
        model.generate(**batch, max_new_tokens=2, **GEN)


@pytest.mark.parametrize("family", ["llava", "gemma3", "qwen2_5_vl"])
@pytest.mark.parametrize("enter,leave,frozen", [(2, 4, [3]), (1, 3, [2, 3]), (2, 3, [2])])
def test_skip_composes_late_entry_early_exit_and_freeze(family, enter, leave, frozen):
    """One skipper for all three == the masked full-compute reference of all three."""
    eager = _model(family, "eager")
    batch = tiny_batch(eager, batch_size=3, padding_side="left", seed=10)
    text = _real(batch, eager)
    got = _logits(_model(family), batch, skip, late_entry=enter, early_exit=leave, freeze=frozen)
    ref = _reference_logits(eager, batch, set(frozen), enter=enter, leave=leave)
    assert torch.allclose(got[text], ref[text], atol=1e-4)
    with torch.no_grad(), skip(_model(family), late_entry=enter, early_exit=leave, freeze=frozen):
        cached = _model(family).generate(**batch, max_new_tokens=3, **GEN)
        plain = _model(family).generate(**batch, max_new_tokens=3, use_cache=False, **GEN)
    assert torch.equal(cached, plain)


NESTED = [
    pytest.param(late_entry, dict(layer=2), freeze, dict(layers=[3]), id="late_entry+freeze"),
    pytest.param(freeze, dict(layers=[3]), early_exit, dict(layer=2), id="freeze+early_exit"),
    pytest.param(early_exit, dict(layer=3), fastv_prune, dict(layer=2, keep_ratio=0.5), id="early_exit+fastv"),
    pytest.param(freeze, dict(layers=[2]), freeze, dict(layers=[3]), id="freeze+freeze"),
]


@pytest.mark.parametrize("outer,outer_kw,inner,inner_kw", NESTED)
def test_nested_skipping_contexts_refuse(outer, outer_kw, inner, inner_kw):
    """Two skippers on one model would each pack what the other already packed: the inner
    one refuses in one line; the outer keeps working and both leave no hook behind."""
    model = _model("llava")
    batch = tiny_batch(model, batch_size=2, padding_side="left", seed=11)
    alone = _logits(model, batch, outer, **outer_kw)
    with torch.no_grad(), outer(model, **outer_kw):
        with pytest.raises(ValueError, match=r"skipping contexts do not nest: .* skipit\.skip\(model"):
            with inner(model, **inner_kw):
                pass
        assert torch.equal(model(**batch).logits, alone)
    assert not hasattr(model, "_skipit_skipper")
    with inner(model, **inner_kw):  # and the inner one opens once the outer is closed
        pass


@pytest.mark.parametrize("layers,message", [
    (3, r"`freeze` must be a list of integers in \[1, 4\], got 3"),
    ([0, 2], r"`freeze` must be integers in \[1, 4\], got 0 in \[0, 2\]"),
    ([5], r"`freeze` must be integers in \[1, 4\], got 5 in \[5\]"),
    ([2.0], r"`freeze` must be integers in \[1, 4\], got 2.0"),
    ([True], r"`freeze` must be integers in \[1, 4\], got True"),
    ([2, 2], r"`freeze` must not repeat a layer, got \[2, 2\]"),
])
def test_bad_freeze_layers_are_refused_in_one_line(layers, message):
    with pytest.raises(ValueError, match=message):
        with freeze(_model("llava"), layers=layers):
            pass


@pytest.mark.parametrize("kw,message", [
    (dict(late_entry=3, freeze=[2]), r"`freeze` layers must lie in \[late_entry, early_exit\] = \[3, 4\], got \[2\]"),
    (dict(early_exit=2, freeze=[3, 4]), r"= \[1, 2\], got \[3, 4\]"),
    (dict(late_entry=3, early_exit=2), r"`late_entry` must be <= `early_exit`, got late_entry=3, early_exit=2"),
    (dict(early_exit=5), r"`early_exit` must be an integer in \[1, 4\], got 5"),
])
def test_inconsistent_skip_settings_are_refused(kw, message):
    with pytest.raises(ValueError, match=message):
        with skip(_model("llava"), **kw):
            pass


def test_top_level_api_exports_freeze_and_skip():
    import skipit
    import skipit.empirical

    assert skipit.freeze is freeze and skipit.empirical.freeze is freeze
    assert skipit.skip is skip and skipit.empirical.skip is skip


# -- `skipit skip --mode freeze` ---------------------------------------------------------
from tests.empirical.test_evaluate import tiny_dir  # noqa: E402,F401  (the saved tiny LLaVA + digits)


def _skip_cli(tiny_dir, *argv):
    from skipit.cli import main

    return main(["skip", "--model", str(tiny_dir / "model"), "--data", str(tiny_dir / "data.jsonl"),
                 "--repeats", "1", "--quiet", *argv])


def test_skip_cli_freeze_json_reports_accuracy_time_and_flops(tiny_dir, capsys):
    import json

    assert _skip_cli(tiny_dir, "--mode", "freeze", "--layers", "2,4", "--json") == 0
    report = json.loads(capsys.readouterr().out)
    assert report["mode"] == "freeze" and report["layers"] == [2, 4] and report["examples"] == 8
    assert report["num_layers"] == N and set(report["full"]) == {"accuracy", "forward_s"}
    assert 0 < report["skipped"]["flops_fraction"] < 1
    assert report["skipped"]["predicted_speedup"] == pytest.approx(1 / report["skipped"]["flops_fraction"])


def test_skip_cli_freeze_prints_the_layer_set(tiny_dir, capsys):
    assert _skip_cli(tiny_dir, "--mode", "freeze", "--layers", "2-3") == 0
    assert "freeze {2,3}" in capsys.readouterr().out


@pytest.mark.parametrize("argv,message", [
    (["--mode", "freeze", "--layers", "2,5"], r"--layers must lie in \[1, 4\], got \[5\]"),
    (["--mode", "freeze", "--layers", "2,x"], r"--layers must look like 'all', '1,2,8', '2-12' or '2-12:2', got '2,x'"),
    (["--mode", "freeze", "--layer", "2"], r"--mode freeze takes --layers \(e.g. 6,8,10\), not --layer; "
                                           r"got --layer 2 --layers None"),
    (["--mode", "late-entry", "--layers", "2"], r"--mode late-entry takes --layer, not --layers; got --layer None --layers 2"),
    (["--mode", "early-exit", "--layer", "9"], r"--layer must be in \[1, 4\] for this model, got 9"),
])
def test_skip_cli_bad_layers_are_one_line_errors(tiny_dir, capsys, argv, message):
    import re

    assert _skip_cli(tiny_dir, *argv) == 2
    err = capsys.readouterr().err
    assert re.search(message, err) and err.count("\n") == 1, err
