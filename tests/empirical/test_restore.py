"""Every temporary change to a model goes through HookSet: an exception raised inside any of
them leaves the model bit-identical to before.

"Bit-identical" is checked on a snapshot: every tensor of the state dict (values, dtype,
``requires_grad``), every module's attributes (names; plain values; submodules and parameters
by identity, so a swapped ``q_proj`` put back as a copy fails), every config's attributes
(``_attn_implementation`` included), every hook dictionary of every module, and the
tokenizer's ``padding_side``. Each test checks, at the moment it raises, that the change
it is about was in effect, so the exception really came from inside that context.
"""

from __future__ import annotations

import copy

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from PIL import Image  # noqa: E402

from skipit.empirical.adapters import get_adapter  # noqa: E402
from skipit.empirical.modes import MODES  # noqa: E402
from skipit.empirical.testing import collate, tiny_batch, tiny_examples, tiny_model  # noqa: E402

N = 4
OPTIONS = {"fastv": {"keep_ratio": 0.5}}
HOOK_DICTS = ("_forward_hooks", "_forward_pre_hooks", "_forward_hooks_with_kwargs", "_forward_pre_hooks_with_kwargs",
              "_forward_hooks_always_called", "_backward_hooks", "_backward_pre_hooks")


def _plain(value):
    return value is None or isinstance(value, (bool, int, float, str, torch.dtype, torch.device))


def _configs(model):
    seen = {}
    for module in model.modules():
        config = getattr(module, "config", None)
        if config is not None:
            seen[id(config)] = config
            for sub in ("text_config", "vision_config"):
                if getattr(config, sub, None) is not None:
                    seen[id(getattr(config, sub))] = getattr(config, sub)
    return seen


def _snapshot(model, tokenizer=None):
    from transformers import PretrainedConfig

    return {
        "state": {k: (v.detach().clone(), v.dtype) for k, v in model.state_dict(keep_vars=True).items()},
        "requires_grad": {k: p.requires_grad for k, p in model.named_parameters()},
        "modules": {name: {k: (id(v) if not _plain(v) else v) for k, v in vars(m).items() if k not in HOOK_DICTS}
                    for name, m in model.named_modules()},
        "children": {name: {k: id(v) for k, v in m._modules.items()} for name, m in model.named_modules()},
        "hooks": {name: {d: list(getattr(m, d)) for d in HOOK_DICTS} for name, m in model.named_modules()},
        "configs": {key: ({k: copy.deepcopy(v) for k, v in vars(c).items() if not isinstance(v, PretrainedConfig)},
                          c._attn_implementation) for key, c in _configs(model).items()},
        "padding_side": getattr(tokenizer, "padding_side", None),
    }


def _assert_same(before, after):
    assert before["state"].keys() == after["state"].keys()
    for key, (tensor, dtype) in before["state"].items():
        now, now_dtype = after["state"][key]
        assert now_dtype == dtype and torch.equal(now, tensor), key
    for part in ("requires_grad", "modules", "children", "hooks", "configs", "padding_side"):
        assert after[part] == before[part], part


def _no_hooks_of_ours(model):
    """No hook on the language model (transformers' own output hooks live on the vision tower)."""
    lm = get_adapter(model).language_model(model)
    return all(not getattr(m, d) for m in list(lm.modules()) + [model] for d in HOOK_DICTS)


@pytest.fixture(scope="module")
def model():
    model = tiny_model("llava", seed=0, num_layers=N)
    with torch.no_grad():  # transformers installs its output-capturing hooks on a first forward
        model(**tiny_batch(model, batch_size=2, seed=1))
    return model


def _raise_in(module, when):
    """A forward hook on ``module`` that raises RuntimeError("planted") once ``when()`` holds."""
    def hook(mod, args, output):
        if when():
            raise RuntimeError("planted")
    return module.register_forward_hook(hook)


@pytest.mark.parametrize("mode", list(MODES))
def test_an_exception_inside_a_skipping_context_leaves_the_model_as_before(model, mode):
    """Hooks, the skipper's mark on the model (``_skipit_skipper``) and the cache surgery of each mode."""
    batch = tiny_batch(model, batch_size=2, seed=3)
    layers = get_adapter(model).decoder_layers(model)
    before = _snapshot(model)
    seen = []

    def when():
        seen.append(getattr(model, "_skipit_skipper", None))
        return True

    handle = _raise_in(layers[2], when)
    try:
        with pytest.raises(RuntimeError, match="planted"), torch.no_grad():
            with MODES[mode].context(model, [2, 3] if MODES[mode].takes == "layers" else 3, **OPTIONS.get(mode, {})):
                model(**batch)
    finally:
        handle.remove()
    assert seen and seen[0] is not None  # the skipper was active when the layer raised
    _assert_same(before, _snapshot(model))
    assert not hasattr(model, "_skipit_skipper") and _no_hooks_of_ours(model)


def test_an_exception_inside_the_statistics_capture_leaves_the_model_as_before(model):
    """The capture engine and its attention probe: hooks on every decoder layer and attention."""
    from skipit.empirical.capture import capture_statistics

    batch = tiny_batch(model, batch_size=2, seed=5)
    before = _snapshot(model)
    handle = _raise_in(get_adapter(model).decoder_layers(model)[2], lambda: True)
    try:
        with pytest.raises(RuntimeError, match="planted"), torch.no_grad(), capture_statistics(model) as capture:
            assert capture.active
            model(**batch)
    finally:
        handle.remove()
    _assert_same(before, _snapshot(model))
    assert _no_hooks_of_ours(model)


def test_an_exception_while_freeze_swaps_q_proj_leaves_the_model_as_before(model):
    """Freeze computes a frozen layer's keys with its ``q_proj`` swapped for a no-op: raised
    from the key projection while swapped, the original module is back in its place."""
    from skipit.empirical.skipping import freeze

    batch = tiny_batch(model, batch_size=2, seed=4)
    attn = get_adapter(model).self_attention(get_adapter(model).decoder_layers(model)[2])
    before = _snapshot(model)
    swapped = []

    def when():
        swapped.append(type(attn.q_proj).__name__ == "_NoQuery")
        return swapped[-1]

    handle = _raise_in(attn.k_proj, when)
    try:
        with pytest.raises(RuntimeError, match="planted"), torch.no_grad(), freeze(model, layers=[3]):
            model(**batch)
    finally:
        handle.remove()
    assert swapped[-1]
    _assert_same(before, _snapshot(model))
    assert _no_hooks_of_ours(model)


def test_an_exception_under_eager_attention_in_theorem6_leaves_the_model_as_before(model):
    """``theorem6_measurements`` sets ``_attn_implementation = "eager"`` and every parameter's
    ``requires_grad = False`` while it measures Jacobians: raised there, both are restored."""
    from skipit.empirical.lipschitz import theorem6_measurements

    example = collate(model, tiny_examples(model, 1, seed=0))
    ad = get_adapter(model)
    config = ad.self_attention(ad.decoder_layers(model)[0]).config
    before = _snapshot(model)
    assert before["configs"][id(config)][1] == "sdpa" and all(before["requires_grad"].values())
    state = []

    def eager():
        state.append((config._attn_implementation, any(p.requires_grad for p in model.parameters())))
        return state[-1][0] == "eager"

    handle = _raise_in(ad.decoder_layers(model)[1], eager)
    try:
        with pytest.raises(RuntimeError, match="planted"):
            theorem6_measurements(model, example, iters=1)
    finally:
        handle.remove()
    assert state[-1] == ("eager", False)
    _assert_same(before, _snapshot(model))
    assert _no_hooks_of_ours(model)


def test_an_exception_while_generating_leaves_the_tokenizer_padding_side_as_before(tmp_path):
    """Answers are generated with left padding; raised from inside the generation, the
    tokenizer pads on its old side again (and the model is as before)."""
    from skipit.empirical.answers import predict_answers
    from skipit.empirical.data import Example
    from skipit.empirical.loading import load_model_and_processor
    from skipit.empirical.skipping import late_entry
    from skipit.empirical.testing import save_tiny_vlm

    save_tiny_vlm("llava", tmp_path, seed=5, num_layers=2)
    model, processor, _ = load_model_and_processor(str(tmp_path), device="cpu")
    tokenizer = processor.tokenizer
    tokenizer.padding_side = "right"
    examples = [Example(Image.new("RGB", (8, 8), (40 * i, 9, 90)), "what digit", "one", metric="exact")
                for i in range(2)]  # generated answers: the padding side matters
    predict_answers(model, processor, examples[:1], max_new_tokens=1)  # transformers' first-forward hooks
    before = _snapshot(model, tokenizer)
    sides = []

    def context():
        sides.append(tokenizer.padding_side)
        if len(sides) == 2:
            raise RuntimeError("planted")
        return late_entry(model, layer=2)

    with pytest.raises(RuntimeError, match="planted"):
        predict_answers(model, processor, examples, batch_size=1, context=context, max_new_tokens=2)
    assert sides == ["left", "left"]
    _assert_same(before, _snapshot(model, tokenizer))
    assert tokenizer.padding_side == "right" and not hasattr(model, "_skipit_skipper")
