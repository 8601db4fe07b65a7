"""Late entry / early exit hooks (skipit.empirical.skipping) on every tiny family."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from skipit.empirical.adapters import get_adapter  # noqa: E402
from skipit.empirical.baselines import fastv_prune  # noqa: E402
from skipit.empirical.skipping import early_exit, freeze, late_entry  # noqa: E402
from skipit.empirical.testing import tiny_batch, tiny_examples, tiny_model, collate  # noqa: E402

from skipit.empirical.testing import TINY_MODEL_TYPES as FAMILIES  # noqa: E402  every family C builds

N = 4
ATOL = 1e-5
# random tiny models may emit an image placeholder, which no-cache decoding re-reads as an image
GEN = dict(do_sample=False, suppress_tokens=list(range(120, 128)))


@pytest.fixture(scope="module", params=FAMILIES)
def family(request):
    return request.param


_MODELS = {}


def _model(model_type, attn=None):
    key = (model_type, attn)
    if key not in _MODELS:
        _MODELS[key] = tiny_model(model_type, seed=0, num_layers=N, attn_implementation=attn)
    return _MODELS[key]


def _real(batch, model):
    """BoolTensor[B, S]: non-padding text positions (the ones every mode computes)."""
    vision = get_adapter(model).vision_mask(batch["input_ids"], model.config)
    return batch["attention_mask"].bool() & ~vision


def _logits(model, batch, ctx=None, **kw):
    with torch.no_grad():
        if ctx is None:
            return model(**batch).logits
        with ctx(model, **kw):
            return model(**batch).logits


@pytest.mark.parametrize("padding_side", ["left", "right"])
def test_late_entry_at_1_and_early_exit_at_n_are_the_full_model(family, padding_side):
    model = _model(family)
    batch = tiny_batch(model, batch_size=3, padding_side=padding_side, seed=1)
    full = _logits(model, batch)
    keep = batch["attention_mask"].bool()
    assert torch.allclose(_logits(model, batch, late_entry, layer=1)[keep], full[keep], atol=ATOL)
    assert torch.allclose(_logits(model, batch, early_exit, layer=N)[keep], full[keep], atol=ATOL)


def _zero_layers(model, layers):
    """Make decoder layers (1-based) exact identities: attention and MLP outputs are 0."""
    dec = get_adapter(model).decoder_layers(model)
    with torch.no_grad():
        for l in layers:
            dec[l - 1].self_attn.o_proj.weight.zero_()
            dec[l - 1].mlp.down_proj.weight.zero_()
            for mod in (dec[l - 1].self_attn.o_proj, dec[l - 1].mlp.down_proj):
                if getattr(mod, "bias", None) is not None:
                    mod.bias.zero_()


@pytest.mark.parametrize("mode,layer", [("late", 3), ("early", 2)])
def test_skipping_identity_layers_changes_nothing(family, mode, layer):
    """Skipped layers that are exact identities (zero o_proj/down_proj): same logits.

    Late entry at L skips layers 1..L-1 for vision; early exit at L skips L+1..N. With a
    wrong layer range (off by one) a non-identity layer would be skipped and logits move.
    """
    model = tiny_model(family, seed=0, num_layers=N)
    skipped = range(1, layer) if mode == "late" else range(layer + 1, N + 1)
    _zero_layers(model, skipped)
    batch = tiny_batch(model, batch_size=3, padding_side="left", seed=2)
    full = _logits(model, batch)
    ctx = late_entry if mode == "late" else early_exit
    got = _logits(model, batch, ctx, layer=layer)
    real = _real(batch, model)
    assert torch.allclose(got[real], full[real], atol=ATOL)
    # and skipping really changes something when those layers are not identities
    assert not torch.allclose(_logits(_model(family), batch, ctx, layer=layer)[real],
                              _logits(_model(family), batch)[real], atol=1e-3)


def _reference(model, batch, mode, layer):
    """The same computation without packing: eager attention with vision keys masked for
    text queries in the skipped layers, and (late entry) the vision states reset to their
    embedding at layer L. Independent of the hooks under test (no gathers, no cache)."""
    ad = get_adapter(model)
    vision = ad.vision_mask(batch["input_ids"], model.config)
    blocked = (~vision)[:, None, :, None] & vision[:, None, None, :]
    handles, saved = [], {}

    def pre(l):
        def hook(module, args, kwargs):
            h = args[0] if args else kwargs["hidden_states"]
            if l == 1:
                saved["emb"] = h
            if mode == "late" and l == layer:
                h = torch.where(vision[..., None], saved["emb"], h)
            skip = (mode == "late" and l < layer) or (mode == "early" and l > layer)
            mask = kwargs["attention_mask"]
            if skip:
                mask = mask.masked_fill(blocked, torch.finfo(mask.dtype).min)
            kwargs = dict(kwargs, attention_mask=mask)
            return ((h,) + tuple(args[1:]) if args else ()), (kwargs if args else dict(kwargs, hidden_states=h))
        return hook

    for l, dec in enumerate(ad.decoder_layers(model), start=1):
        handles.append(dec.register_forward_pre_hook(pre(l), with_kwargs=True))
    try:
        with torch.no_grad():
            return model(**batch).logits
    finally:
        for h in handles:
            h.remove()


@pytest.mark.parametrize("mode,layer", [("late", 3), ("early", 2)])
def test_skipping_matches_masked_reference(family, mode, layer):
    """Packed skipping (sdpa) == full-length eager computation with the vision keys masked."""
    model = _model(family)
    eager = _model(family, attn="eager")
    batch = tiny_batch(model, batch_size=3, padding_side="left", seed=3)
    ctx = late_entry if mode == "late" else early_exit
    got = _logits(model, batch, ctx, layer=layer)
    ref = _reference(eager, batch, mode, layer)
    real = _real(batch, model)
    assert torch.allclose(got[real], ref[real], atol=1e-4)


@pytest.mark.parametrize("family", ["llava", "qwen2_5_vl", "gemma3"])
@pytest.mark.parametrize("mode,layer", [("late", 3), ("early", 2)])
def test_skipping_under_eager_attention_equals_sdpa(family, mode, layer):
    """Eager layers get additive float masks, sdpa layers boolean ones (or None): same result."""
    batch = tiny_batch(_model(family), batch_size=3, padding_side="left", seed=9)
    ctx = late_entry if mode == "late" else early_exit
    sdpa = _logits(_model(family), batch, ctx, layer=layer)
    eager = _logits(_model(family, attn="eager"), batch, ctx, layer=layer)
    real = batch["attention_mask"].bool()
    assert torch.allclose(sdpa[real], eager[real], atol=1e-4)


@pytest.mark.parametrize("attn", [None, "eager"])
def test_bfloat16_skipping_is_finite_and_identity_at_the_ends(attn):
    model = tiny_model("gemma3", seed=0, num_layers=N, dtype=torch.bfloat16, attn_implementation=attn)
    batch = tiny_batch(model, batch_size=3, padding_side="left", seed=10)
    real = batch["attention_mask"].bool()
    full = _logits(model, batch)
    assert torch.equal(_logits(model, batch, late_entry, layer=1)[real], full[real])
    for ctx, layer in ((late_entry, 3), (early_exit, 2)):
        assert torch.isfinite(_logits(model, batch, ctx, layer=layer)[real]).all()
        with torch.no_grad(), ctx(model, layer=layer):
            model.generate(**batch, max_new_tokens=2, **GEN)


def test_padded_batch_equals_one_example_at_a_time(family):
    model = _model(family)
    examples = tiny_examples(model, 3, seed=4)
    batch = collate(model, examples, padding_side="right")
    got = _logits(model, batch, late_entry, layer=3)
    for i, example in enumerate(examples):
        alone = collate(model, [example], padding_side="right")
        ref = _logits(model, alone, late_entry, layer=3)
        n = int(batch.lengths[i])
        assert torch.allclose(got[i, :n][-1], ref[0, :n][-1], atol=1e-4)


@pytest.mark.parametrize("mode,layer", [("late", 3), ("early", 2)])
def test_skipped_layers_process_only_text_tokens(family, mode, layer):
    model = _model(family)
    batch = tiny_batch(model, batch_size=2, padding_side="left", seed=5)
    vision = get_adapter(model).vision_mask(batch["input_ids"], model.config)
    total, n_vision = vision.numel(), int(vision.sum())
    seen = {}

    def count(l):
        def hook(module, args, kwargs):
            h = args[0] if args else kwargs["hidden_states"]
            seen[l] = h.shape[0] * h.shape[1]
        return hook

    dec = get_adapter(model).decoder_layers(model)
    ctx = late_entry if mode == "late" else early_exit
    with torch.no_grad(), ctx(model, layer=layer) as skipper:
        handles = [d.register_forward_pre_hook(count(l), with_kwargs=True) for l, d in enumerate(dec, 1)]
        try:
            model(**batch)
        finally:
            for h in handles:
                h.remove()
    for l in range(1, N + 1):
        skipped = l < layer if mode == "late" else l > layer
        assert skipper.layer_tokens[l] == (total - n_vision if skipped else total)
        # the layer is called on the packed tensor: B x (longest kept sequence)
        widest = int((~vision).sum(dim=1).max()) if skipped else vision.shape[1]
        assert seen[l] == vision.shape[0] * widest


@pytest.mark.parametrize("mode,layer", [("late", 3), ("early", 2), ("late", 1), ("early", N)])
def test_generate_with_cache_equals_generate_without(family, mode, layer):
    """Per-layer caches of different lengths: cached decoding == recomputing every step."""
    model = _model(family)
    batch = tiny_batch(model, batch_size=3, padding_side="left", seed=6)
    ctx = late_entry if mode == "late" else early_exit
    with torch.no_grad(), ctx(model, layer=layer):
        cached = model.generate(**batch, max_new_tokens=4, **GEN)
        plain = model.generate(**batch, max_new_tokens=4, use_cache=False, **GEN)
    assert torch.equal(cached, plain)
    if (mode, layer) in (("late", 1), ("early", N)):
        with torch.no_grad():
            full = model.generate(**batch, max_new_tokens=4, **GEN)
        assert torch.equal(cached, full)


@pytest.mark.parametrize("mode,layer", [("late", 3), ("early", 2)])
def test_beam_search_with_cache_equals_beam_search_without(mode, layer):
    model = _model("qwen2_5_vl")
    batch = tiny_batch(model, batch_size=3, padding_side="left", seed=6)
    ctx = late_entry if mode == "late" else early_exit
    with torch.no_grad(), ctx(model, layer=layer):
        cached = model.generate(**batch, max_new_tokens=4, num_beams=3, **GEN)
        plain = model.generate(**batch, max_new_tokens=4, num_beams=3, use_cache=False, **GEN)
    assert torch.equal(cached, plain)


def test_early_exit_cache_holds_no_vision_keys_after_exit():
    model = _model("llava")
    batch = tiny_batch(model, batch_size=2, padding_side="left", seed=7)
    vision = get_adapter(model).vision_mask(batch["input_ids"], model.config)
    per_example_text = int((~vision).sum(dim=1).max())
    with torch.no_grad(), early_exit(model, layer=2):
        out = model.generate(**batch, max_new_tokens=3, **GEN,
                             return_dict_in_generate=True)
    lengths = [out.cache.layers[i].keys.shape[-2] for i in range(N)]
    full = batch["input_ids"].shape[1] + 2  # the last generated token is never fed back
    assert lengths == [full, full, per_example_text + 2, per_example_text + 2]


def test_oracle_variant_enters_with_the_full_pass_state():
    model = _model("llava")
    batch = tiny_batch(model, batch_size=2, padding_side="left", seed=8)
    dec = get_adapter(model).decoder_layers(model)
    vision = get_adapter(model).vision_mask(batch["input_ids"], model.config)
    got = {}
    handle = dec[1].register_forward_hook(lambda m, a, o: got.__setitem__("full", o))
    with torch.no_grad():
        model(**batch)
    handle.remove()
    with torch.no_grad(), late_entry(model, layer=3, variant="oracle"):
        # registered after the skipper's own hook, so it sees what layer 3 receives
        handle = dec[2].register_forward_pre_hook(
            lambda m, a, k: got.__setitem__("entered", a[0] if a else k["hidden_states"]), with_kwargs=True)
        try:
            model(**batch)
        finally:
            handle.remove()
    assert torch.allclose(got["entered"][vision], got["full"][vision], atol=ATOL)


def _hook_counts(model):
    """Forward (pre-)hooks per module: what a skipping context must leave as it found it."""
    return {name: (len(m._forward_pre_hooks), len(m._forward_hooks)) for name, m in model.named_modules()}


CONTEXTS = [
    pytest.param(late_entry, dict(layer=3), id="late_entry"),
    pytest.param(late_entry, dict(layer=3, variant="oracle"), id="late_entry-oracle"),
    pytest.param(early_exit, dict(layer=2), id="early_exit"),
    pytest.param(freeze, dict(layers=[2, 3]), id="freeze"),
]
RAISING_CONTEXTS = CONTEXTS + [pytest.param(fastv_prune, dict(layer=2, keep_ratio=0.5), id="fastv_prune")]


@pytest.mark.parametrize("ctx,kw", CONTEXTS)
def test_hooks_are_removed_when_the_with_body_raises(ctx, kw):
    model = _model("llava")
    batch = tiny_batch(model, batch_size=2, padding_side="left", seed=9)
    ref = _logits(model, batch)  # a first forward may add transformers' own hooks; count after it
    before = _hook_counts(model)
    with pytest.raises(RuntimeError, match="boom"):
        with ctx(model, **kw):
            raise RuntimeError("boom")
    assert _hook_counts(model) == before
    assert torch.equal(_logits(model, batch), ref)


@pytest.mark.parametrize("family", ["llava", "qwen2_5_vl"])
@pytest.mark.parametrize("ctx,kw", RAISING_CONTEXTS)
def test_hooks_are_removed_when_a_decoder_layer_raises(ctx, kw, family):
    """A forward that fails inside decoder layer 3 (after the skipper's hooks ran) leaves no
    hook behind: not after a second failing forward in the same context, not after exit; the
    context still computes what a fresh one does, and the plain model its reference logits.
    (FastV opens an attention probe per forward that only the language model's post hook
    closes: the next forward and the exit must close it.)"""
    model = _model(family)
    batch = tiny_batch(model, batch_size=2, padding_side="left", seed=9)
    ref = _logits(model, batch)
    fresh = _logits(model, batch, ctx, **kw)
    before = _hook_counts(model)
    layer3 = get_adapter(model).decoder_layers(model)[2]

    def boom(module, args, output):
        raise RuntimeError("boom")

    with torch.no_grad(), ctx(model, **kw):
        inside = _hook_counts(model)
        handle = layer3.register_forward_hook(boom)
        try:
            for _ in range(2):
                with pytest.raises(RuntimeError, match="boom"):
                    model(**batch)
        finally:
            handle.remove()
        again = model(**batch).logits  # a successful forward closes whatever the failed ones left open
        assert _hook_counts(model) == inside
    assert _hook_counts(model) == before
    real = _real(batch, model)
    assert torch.allclose(again[real], fresh[real], atol=ATOL)
    assert torch.equal(_logits(model, batch), ref)


@pytest.mark.parametrize("bad", [0, N + 1, 2.0, True])
def test_layer_out_of_range_is_rejected(bad):
    model = _model("llava")
    with pytest.raises(ValueError, match=r"`layer` must be an integer in \[1, 4\]"):
        with late_entry(model, layer=bad):
            pass


def test_unknown_variant_is_rejected():
    with pytest.raises(ValueError, match="`variant` must be 'embedding' or 'oracle'"):
        with late_entry(_model("llava"), layer=2, variant="teleport"):
            pass


def test_every_registered_mode_opens_its_own_context():
    """The registry (skipit.empirical.modes) is the one list of modes: each name opens the
    context it names, with the layer argument it declares, and its FLOPs layout exists."""
    from skipit.empirical.baselines import fastv_prune, visual_token_withdrawal
    from skipit.empirical.flops import tokens_per_layer
    from skipit.empirical.modes import FLOPS_MODES, MODES, SKIP_MODES, skip_context

    model = _model("llava")
    batch = tiny_batch(model, batch_size=2, padding_side="left", seed=12)
    expected = {"late-entry": (late_entry, dict(layer=3)), "early-exit": (early_exit, dict(layer=2)),
                "freeze": (freeze, dict(layers=[2, 3])),
                "late-entry-oracle": (late_entry, dict(layer=3, variant="oracle")),
                "fastv": (fastv_prune, dict(layer=2, keep_ratio=0.5)),
                "vtw": (visual_token_withdrawal, dict(layer=2))}
    assert set(MODES) == set(expected) and SKIP_MODES == ("late-entry", "early-exit", "freeze")
    for name, (ctx, kw) in expected.items():
        layer = kw.pop("layers", kw.pop("layer", None))
        options = {k: v for k, v in kw.items() if k != "variant"}
        with torch.no_grad(), MODES[name].context(model, layer, **options):
            got = model(**batch).logits
        direct = dict(kw, **({"layers": layer} if MODES[name].takes == "layers" else {"layer": layer}))
        real = _real(batch, model)
        assert torch.equal(got[real], _logits(model, batch, ctx, **direct)[real]), name
        if MODES[name].flops is not None:
            assert MODES[name].flops in FLOPS_MODES
            tokens_per_layer(N, 5, 7, MODES[name].flops, layer, keep_ratio=options.get("keep_ratio"))
    with pytest.raises(ValueError, match="`mode` must be one of late-entry, early-exit, freeze"):
        skip_context(model, "sideways", 2)
