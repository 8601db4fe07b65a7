"""FastV pruning and visual token withdrawal (skipit.empirical.baselines)."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from skipit.empirical.adapters import get_adapter  # noqa: E402
from skipit.empirical.attention import AttentionProbe  # noqa: E402
from skipit.empirical.baselines import (  # noqa: E402
    answer_kl_per_layer, choose_vtw_layer, fastv_kept_count, fastv_prune, fastv_selection, matched_fastv_ratio, matched_vtw_layer,
    visual_token_withdrawal,
)
from skipit.empirical.flops import DecoderShape, prefill_flops, tokens_per_layer  # noqa: E402
from skipit.empirical.skipping import early_exit  # noqa: E402
from skipit.empirical.testing import tiny_batch, tiny_model  # noqa: E402

from skipit.empirical.testing import TINY_MODEL_TYPES as FAMILIES  # noqa: E402  every family C builds

N = 4
GEN = dict(do_sample=False, suppress_tokens=list(range(120, 128)))
_MODELS = {}


def _model(family):
    if family not in _MODELS:
        _MODELS[family] = tiny_model(family, seed=0, num_layers=N)
    return _MODELS[family]


def _run(model, batch, ctx=None, **kw):
    with torch.no_grad():
        if ctx is None:
            return model(**batch).logits
        with ctx(model, **kw):
            return model(**batch).logits


@pytest.mark.parametrize("family", FAMILIES)
def test_fastv_extremes_are_full_model_and_early_exit(family):
    """keep_ratio = 1 changes nothing; keep_ratio = 0 is early exit at K."""
    model = _model(family)
    batch = tiny_batch(model, batch_size=3, padding_side="left", seed=1)
    real = batch["attention_mask"].bool()
    full = _run(model, batch)
    assert torch.allclose(_run(model, batch, fastv_prune, layer=2, keep_ratio=1.0)[real], full[real], atol=1e-5)
    rows = torch.arange(3), batch.answer_positions
    assert torch.allclose(_run(model, batch, fastv_prune, layer=2, keep_ratio=0.0)[rows],
                          _run(model, batch, early_exit, layer=2)[rows], atol=1e-5)


@pytest.mark.parametrize("family", ["llava", "qwen2_5_vl"])
def test_fastv_keeps_the_most_attended_vision_tokens(family):
    """The kept set is the top round(R * n_vision) vision tokens by head-mean attention at K.

    Reference: attention rows from an independent AttentionProbe run of the full model at K
    (layers 1..K are unchanged by pruning), then the pruned forward must equal early exit
    with exactly those tokens kept, i.e. the layer token count and the logits agree with a
    recomputation through the generic skipper.
    """
    from skipit.empirical.skipping import TokenSkipper

    model = _model(family)
    batch = tiny_batch(model, batch_size=2, padding_side="right", seed=2)
    vision = get_adapter(model).vision_mask(batch["input_ids"], model.config)
    K, R = 2, 0.5
    rows = {}
    probe = AttentionProbe(model, None, lambda l, p: rows.__setitem__(l, p), layers=[K])
    probe.set_query_positions(batch.answer_positions)
    with torch.no_grad(), probe:
        model(**batch)
    score = rows[K].mean(dim=1).masked_fill(~vision, float("-inf"))
    chosen = torch.zeros_like(vision)
    for b in range(2):
        chosen[b, score[b].topk(int(round(R * int(vision[b].sum())))).indices] = True

    def keep(l, v):
        return None if l <= K or not bool(v.any()) else ~v | chosen

    with torch.no_grad(), TokenSkipper(model, keep):
        ref = model(**batch).logits
    with torch.no_grad(), fastv_prune(model, layer=K, keep_ratio=R) as skipper:
        got = model(**batch).logits
    real = batch["attention_mask"].bool() & ~vision
    assert torch.allclose(got[real], ref[real], atol=1e-5)
    assert skipper.layer_tokens[K + 1] == int((~vision).sum() + chosen.sum())


# (keep ratio, vision tokens, kept): R * n is never an integer here, and floor, ceil and
# round-half-up each disagree with the documented rule (nearest, exact halves to even) in a row.
KEPT = [(0.15625, 16, 2), (0.21875, 16, 4), (0.3, 16, 5), (0.2, 16, 3), (0.625, 4, 2), (0.3, 8, 2), (0.375, 4, 2)]


@pytest.mark.parametrize("ratio, vision, kept", KEPT)
def test_fastv_kept_count_is_the_nearest_integer_with_halves_to_even(ratio, vision, kept):
    assert fastv_kept_count(ratio, vision) == kept


@pytest.mark.parametrize("ratio, vision, kept", [k for k in KEPT if k[1] == 16])
def test_fastv_keeps_exactly_the_documented_count_and_flops_count_the_same(ratio, vision, kept):
    """A real FastV forward (16 vision tokens per example) keeps ``kept`` of them after K; the
    FLOPs model counts the same tokens."""
    model = _model("llava")
    batch = tiny_batch(model, batch_size=2, padding_side="right", seed=2)
    is_vision = get_adapter(model).vision_mask(batch["input_ids"], model.config)
    assert is_vision.sum(dim=1).tolist() == [vision, vision]
    K = 2
    with torch.no_grad(), fastv_prune(model, layer=K, keep_ratio=ratio) as skipper:
        model(**batch)
    other = int((~is_vision).sum())
    assert [skipper.layer_tokens[l] for l in range(1, N + 1)] == [other + 2 * vision] * K + [other + 2 * kept] * (N - K)
    assert tokens_per_layer(N, 10, vision, "fastv", K, keep_ratio=ratio)[K:] == [10 + kept] * (N - K)


def test_fastv_selection_breaks_exact_ties_by_position_and_ignores_text_scores():
    """Scores with exact ties (all equal; a tie at the cut) keep the earliest vision tokens;
    a text position with the highest score is never chosen; each example has its own count."""
    vision = torch.tensor([[False] + [True] * 16 + [False], [False, True, True, True, True, False] + [False] * 12])
    scores = torch.zeros(2, 18)
    scores[0, 0] = scores[0, 17] = 9.0  # text
    scores[1, 2] = 0.5
    scores[1, 3] = scores[1, 4] = 0.25  # tie at the cut of 2 kept (0.5 of 4)
    chosen = fastv_selection(scores, vision, 0.5)
    assert chosen[0].nonzero().flatten().tolist() == list(range(1, 9))
    assert chosen[1].nonzero().flatten().tolist() == [2, 3]


def test_fastv_selection_keeps_the_highest_scores():
    gen = torch.Generator().manual_seed(0)
    scores = torch.rand(1, 20, generator=gen)
    vision = torch.zeros(1, 20, dtype=torch.bool)
    vision[0, 4:14] = True
    chosen = fastv_selection(scores, vision, 0.3)
    top = set((scores[0, 4:14].topk(3).indices + 4).tolist())
    assert set(chosen[0].nonzero().flatten().tolist()) == top


def test_fastv_keeps_the_documented_count_per_example_when_counts_differ():
    """Qwen2.5-VL examples with 4 and 8 vision tokens at R = 0.625: 2.5 -> 2 and 5 -> 5 kept."""
    model = _model("qwen2_5_vl")
    batch = tiny_batch(model, batch_size=2, padding_side="right", seed=2)
    is_vision = get_adapter(model).vision_mask(batch["input_ids"], model.config)
    assert is_vision.sum(dim=1).tolist() == [4, 8]
    with torch.no_grad(), fastv_prune(model, layer=2, keep_ratio=0.625) as skipper:
        model(**batch)
    assert skipper.layer_tokens[3] == int((~is_vision).sum()) + 2 + 5


@pytest.mark.parametrize("family", FAMILIES)
def test_fastv_generate_first_token_is_the_forward_argmax(family):
    model = _model(family)
    batch = tiny_batch(model, batch_size=3, padding_side="left", seed=3)
    with torch.no_grad(), fastv_prune(model, layer=2, keep_ratio=0.5):
        logits = model(**batch).logits
        out = model.generate(**batch, max_new_tokens=3, **GEN)
    allowed = logits[torch.arange(3), batch.answer_positions].clone()
    allowed[:, 120:] = float("-inf")
    assert torch.equal(out[:, batch["input_ids"].shape[1]], allowed.argmax(-1))


def _withdrawn_reference(model, batch, layer):
    """VTW at K without packing or the skipper: eager attention in which, in layers > K, text
    queries get the vision keys masked (the vision rows are never read by a text token again)."""
    ad = get_adapter(model)
    vision = ad.vision_mask(batch["input_ids"], model.config)
    blocked = (~vision)[:, None, :, None] & vision[:, None, None, :]

    def pre(module, args, kwargs):
        mask = kwargs["attention_mask"]
        return args, dict(kwargs, attention_mask=mask.masked_fill(blocked, torch.finfo(mask.dtype).min))

    handles = [dec.register_forward_pre_hook(pre, with_kwargs=True)
               for dec in ad.decoder_layers(model)[layer:]]
    try:
        return _run(model, batch)
    finally:
        for h in handles:
            h.remove()


@pytest.mark.parametrize("family", ["llava", "qwen2_5_vl"])
@pytest.mark.parametrize("layer", [1, 2, 3])
def test_vtw_drops_the_vision_tokens_after_layer_k(family, layer):
    """Layers 1..K get every token, layers K+1..N the text tokens only (packed: B x longest
    text); the text logits equal the masked eager reference, and differ from the full model."""
    model = _model(family)
    batch = tiny_batch(model, batch_size=2, padding_side="left", seed=4)
    vision = get_adapter(model).vision_mask(batch["input_ids"], model.config)
    seen = {}

    def count(l):
        def hook(module, args, kwargs):
            seen[l] = tuple((args[0] if args else kwargs["hidden_states"]).shape[:2])
        return hook

    with torch.no_grad(), visual_token_withdrawal(model, layer=layer):
        dec = get_adapter(model).decoder_layers(model)
        handles = [d.register_forward_pre_hook(count(l), with_kwargs=True) for l, d in enumerate(dec, 1)]
        try:
            got = model(**batch).logits
        finally:
            for h in handles:
                h.remove()
    widest = int((~vision).sum(dim=1).max())
    assert seen == {l: (2, vision.shape[1] if l <= layer else widest) for l in range(1, N + 1)}
    real = batch["attention_mask"].bool() & ~vision
    ref = _withdrawn_reference(tiny_model(family, seed=0, num_layers=N, attn_implementation="eager"), batch, layer)
    assert torch.allclose(got[real], ref[real], atol=1e-4)
    assert not torch.allclose(got[real], _run(model, batch)[real], atol=1e-3)


def test_vtw_layer_takes_the_first_k_after_which_every_kl_is_small(monkeypatch):
    """Constructed KLs: small at K = 1, large at 2, small from 3 on: VTW withdraws at 3, not 1
    (the KL must stay below the threshold at every later layer); the threshold itself passes."""
    import skipit.empirical.baselines as baselines

    kls = [1e-9, 0.5, 1e-6, 0.0]
    monkeypatch.setattr(baselines, "answer_kl_per_layer", lambda model, batches, adapter=None: list(kls))
    assert choose_vtw_layer(None, [], kl_threshold=1e-6) == (3, kls)
    assert choose_vtw_layer(None, [], kl_threshold=1.0) == (1, kls)
    assert choose_vtw_layer(None, [], kl_threshold=0.0) == (4, kls)


def test_vtw_layer_is_the_first_from_which_kl_stays_small():
    """Layers 3..N made identities: withdrawing at K >= 2 is exact (KL 0), at K = 1 it is not."""
    model = tiny_model("llava", seed=0, num_layers=N)
    dec = get_adapter(model).decoder_layers(model)
    with torch.no_grad():
        for l in (3, 4):
            dec[l - 1].self_attn.o_proj.weight.zero_()
            dec[l - 1].mlp.down_proj.weight.zero_()
    batches = [tiny_batch(model, batch_size=2, seed=s) for s in (5, 6)]
    layer, kls = choose_vtw_layer(model, batches, kl_threshold=1e-12)
    assert layer == 2
    assert kls[0] > 1e-6 and max(kls[1:]) <= 1e-12


def _kl(p_log, q_log):
    """KL(p || q) = sum_i p_i (log p_i - log q_i), in float64 numpy, from log-probabilities."""
    p_log, q_log = p_log.double().numpy(), q_log.double().numpy()
    return float((np.exp(p_log) * (p_log - q_log)).sum())


def test_vtw_kl_is_kl_of_the_full_model_from_the_withdrawn_one_at_the_answer_position():
    """answer_kl_per_layer[K-1] is the mean over examples of KL(full || withdrawn at K) of the
    next-token distribution at each example's answer position (right padding: not the last
    column), computed here by hand; the reversed KL differs clearly in this case (the LM head
    is scaled up so that the distributions are far apart: for close ones KL is symmetric to
    second order)."""
    model = tiny_model("llava", seed=0, num_layers=N)
    with torch.no_grad():
        model.lm_head.weight.mul_(40.0)
    batch = tiny_batch(model, batch_size=2, padding_side="right", seed=7)
    assert batch.answer_positions.tolist() != [batch["input_ids"].shape[1] - 1] * 2
    rows = torch.arange(2), batch.answer_positions
    got = answer_kl_per_layer(model, [batch])
    full = torch.log_softmax(_run(model, batch)[rows].double(), dim=-1)
    for k in range(1, N):
        withdrawn = torch.log_softmax(_run(model, batch, early_exit, layer=k)[rows].double(), dim=-1)
        forward = [_kl(full[b], withdrawn[b]) for b in range(2)]
        reverse = [_kl(withdrawn[b], full[b]) for b in range(2)]
        assert got[k - 1] == pytest.approx(np.mean(forward), rel=1e-6)
        assert abs(np.mean(reverse) - np.mean(forward)) > 0.05 * np.mean(forward)
    assert got[N - 1] == pytest.approx(0.0, abs=1e-9)


def test_matched_flops_parameters_do_not_exceed_the_budget():
    shape = DecoderShape(num_layers=32, hidden=512, intermediate=1376, heads=8, kv_heads=8, head_dim=64,
                         vocab=1000)
    text, vision = 60, 576
    budget = prefill_flops(shape, tokens_per_layer(32, text, vision, "late-entry", 8))
    ratio = matched_fastv_ratio(shape, text, vision, 2, budget)
    fastv = lambda r: prefill_flops(shape, tokens_per_layer(32, text, vision, "fastv", 2, keep_ratio=r))  # noqa: E731
    assert fastv(ratio) <= budget < fastv(ratio + 1 / vision)
    k = matched_vtw_layer(shape, text, vision, budget)
    vtw = lambda k: prefill_flops(shape, tokens_per_layer(32, text, vision, "vtw", k))  # noqa: E731
    assert vtw(k) <= budget < vtw(k + 1)


@pytest.mark.parametrize("kw,match", [
    (dict(layer=0, keep_ratio=0.5), r"`layer` must be an integer in \[1, 4\]"),
    (dict(layer=2, keep_ratio=1.5), r"`keep_ratio` must be in \[0, 1\]"),
])
def test_fastv_bad_arguments(kw, match):
    with pytest.raises(ValueError, match=match):
        with fastv_prune(_model("llava"), **kw):
            pass


def test_vtw_threshold_must_be_non_negative():
    with pytest.raises(ValueError, match="`kl_threshold` must be >= 0"):
        choose_vtw_layer(_model("llava"), [], kl_threshold=-1.0)
