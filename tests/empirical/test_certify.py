"""The certificate: confidence bounds, the decision rule, checkpoints and atomic writes.

The decision rule is tested on synthetic per-layer statistics whose verdicts are known
exactly; the run (capture, resume, atomic write) on a tiny random LLaVA.
"""

from __future__ import annotations

import json
import math
import os

import numpy as np
import pytest

from skipit.empirical.certify import (
    SCHEMA,
    DecisionSettings,
    _clopper_pearson_lower,
    _hoeffding_upper,
    _mean_upper,
    build_certificate,
    certificate_layers,
    decide,
)
from skipit.theory import geometric_redundancy, proximal_probability

THRESHOLDS = (0.01, 0.02, 0.05, 0.1)
N_LAYERS = 12


def _block(d):
    """A statistics block (capture-engine layout) from samples ``d`` of cosine distances."""
    d = np.asarray(d, dtype=float)
    return {"tokens": d.size, "mean_cosine_distance": float(d.mean()), "variance": float(d.var()),
            "sum": float(d.sum()), "sum_sq": float((d * d).sum()),
            "proximal_probability": {repr(t): float(np.mean(d < t)) for t in THRESHOLDS},
            "proximal_count": {repr(t): int(np.sum(d < t)) for t in THRESHOLDS}}


REDUNDANT = np.full(4000, 0.001)          # D = 0.001, every token 0.05-proximal
MOVING = np.full(4000, 0.2)                # D = 0.2, no token 0.05-proximal
LOW_ATTENTION, HIGH_ATTENTION = 0.01, 0.5  # with 10000 examples the Hoeffding slack is < 0.03


HEADS = 8


def _attention(shares):
    """Attention fields (capture-engine layout) from per-example head-mean shares, equal over heads."""
    var = np.asarray(shares, dtype=float) * HEADS
    return {"visual_attention_ratio": float(var.mean()), "visual_attention_mean_head": float(var.mean()) / HEADS,
            "visual_attention_per_head": [float(var.mean()) / HEADS] * HEADS,
            "visual_attention_examples": var.size, "visual_attention_ratio_variance": float(var.var(ddof=1))}


def _layers(redundant_upto=0, quiet_from=N_LAYERS + 1, overrides=None, examples=10000):
    """Vision redundant in layers 1..redundant_upto, attention low in layers <= redundant_upto
    and >= quiet_from; ``overrides[l]`` replaces fields of layer l."""
    out = []
    for l in range(1, N_LAYERS + 1):
        quiet = l <= redundant_upto or l >= quiet_from
        share = LOW_ATTENTION if quiet else HIGH_ATTENTION
        layer = {"layer": l, "vision": _block(REDUNDANT if l <= redundant_upto else MOVING),
                 "text": _block(MOVING), "cka": {"vision": 0.9, "text": 0.5},
                 **_attention(np.full(examples, share))}
        layer.update((overrides or {}).get(l, {}))
        out.append(layer)
    return out


def _certificate(stats_layers, num_examples=10000, **settings):
    return build_certificate(stats_layers, num_examples=num_examples, settings=DecisionSettings(**settings),
                             model_info={"name": "synthetic", "source": "test"}, data_info={"source": "test"})


# ---------------------------------------------------------------------------- bounds

@pytest.mark.parametrize("seed", [0, 1, 2])
def test_mean_upper_bound_equals_theory_from_samples(seed):
    """The streaming bound (from n, sum, sum of squares) is geometric_redundancy's "best" bound."""
    rng = np.random.default_rng(seed)
    d = np.clip(rng.gamma(0.5, 0.02 * (seed + 1), size=500), 0, 2)
    delta = 0.05 / 36
    block = _block(d)
    var = (block["sum_sq"] - block["sum"] ** 2 / d.size) / (d.size - 1)
    ours = _mean_upper(block["mean_cosine_distance"], var, d.size, delta)
    assert ours == pytest.approx(geometric_redundancy(d, confidence=1 - delta).bound, rel=1e-12)


@pytest.mark.parametrize("k,n", [(0, 50), (1, 50), (49, 50), (50, 50), (900, 1000)])
def test_clopper_pearson_equals_theory(k, n):
    d = np.r_[np.zeros(k), np.ones(n - k)]
    assert _clopper_pearson_lower(k, n, 0.01) == pytest.approx(proximal_probability(d, 0.5, 0.99).bound, abs=1e-14)


def test_hoeffding_upper_bound_formula():
    assert _hoeffding_upper(0.2, 100, 0.05) == pytest.approx(0.2 + math.sqrt(math.log(20) / 200))
    assert _hoeffding_upper(0.99, 10, 0.05) == 1.0


def test_bounds_are_taken_at_the_bonferroni_level():
    """Every bound uses delta = (1 - confidence) / (3 N): 3 tests per layer, N layers."""
    settings = DecisionSettings(confidence=0.9)
    assert settings.delta(N_LAYERS) == pytest.approx(0.1 / 36)
    layers = certificate_layers(_layers(redundant_upto=3), 10000, settings)
    d = REDUNDANT
    delta = 0.1 / 36
    assert layers[0]["vision"]["mean_upper_bound"] == pytest.approx(geometric_redundancy(d, 1 - delta).bound)
    assert layers[0]["vision"]["mean_upper_bound"] != pytest.approx(geometric_redundancy(d, 0.9).bound)
    shares = np.full(10000, LOW_ATTENTION)
    assert layers[0]["visual_attention_upper_bound"] == pytest.approx(
        geometric_redundancy(shares, 1 - delta, rho_max=1.0).bound)


def test_attention_bound_uses_the_variance_of_the_share():
    """Per-example shares 0 or 0.2 (mean 0.1): the bound is geometric_redundancy's on [0, 1];
    without the variance it falls back to Hoeffding, which is larger here."""
    shares = np.r_[np.zeros(300), np.full(300, 0.2)]
    layer = {"layer": 1, "vision": _block(MOVING), "text": _block(MOVING), **_attention(shares)}
    delta = 0.05 / 3
    got = certificate_layers([layer], shares.size, DecisionSettings())[0]["visual_attention_upper_bound"]
    assert got == pytest.approx(geometric_redundancy(shares, 1 - delta, rho_max=1.0).bound, rel=1e-12)
    del layer["visual_attention_ratio_variance"]
    fallback = certificate_layers([layer], shares.size, DecisionSettings())[0]["visual_attention_upper_bound"]
    assert fallback == pytest.approx(_hoeffding_upper(0.1, 600, delta)) and fallback > got


def test_certificate_copies_the_point_estimates():
    stats = _layers(redundant_upto=2)
    cert = _certificate(stats)
    for got, want in zip(cert["layers"], stats):
        for kind in ("vision", "text"):
            assert got[kind]["mean_cosine_distance"] == want[kind]["mean_cosine_distance"]
            assert got[kind]["tokens"] == want[kind]["tokens"]
            assert got[kind]["proximal_probability"] == want[kind]["proximal_probability"]
        assert got["visual_attention_ratio"] == want["visual_attention_ratio"]
        assert got["cka"] == want["cka"]


def test_certificate_schema():
    cert = _certificate(_layers(redundant_upto=2))
    assert cert["schema"] == SCHEMA == "skipit.certificate/1"
    assert set(cert) >= {"schema", "model", "data", "settings", "layers", "late_entry", "early_exit"}
    assert cert["model"]["num_layers"] == N_LAYERS and cert["data"]["num_examples"] == 10000
    assert set(cert["settings"]) >= {"thresholds", "confidence", "eps", "proximal_t", "attention_threshold"}
    layer = cert["layers"][0]
    assert set(layer["vision"]) >= {"mean_cosine_distance", "mean_upper_bound", "proximal_probability",
                                    "proximal_lower_bound", "tokens"}
    assert set(cert["late_entry"]) == {"certified_layers", "max_entry_layer", "reasons"}
    assert set(cert["early_exit"]) == {"certified_layers", "min_exit_layer", "reasons"}
    json.dumps(cert, allow_nan=False)


# ---------------------------------------------------------------------- decision rule

@pytest.mark.parametrize("upto", [0, 1, 3, 7, N_LAYERS - 1])
def test_late_entry_is_certified_exactly_before_the_first_failing_layer(upto):
    """Layers 1..upto pass every test, layer upto+1 fails: vision may enter at layer upto+1."""
    le = _certificate(_layers(redundant_upto=upto))["late_entry"]
    assert le["max_entry_layer"] == upto + 1
    assert le["certified_layers"] == list(range(1, upto + 1))
    assert le["reasons"]["first_failing_layer"] == upto + 1


def test_late_entry_when_every_layer_passes_enters_at_the_last_layer():
    le = _certificate(_layers(redundant_upto=N_LAYERS))["late_entry"]
    assert le["max_entry_layer"] == N_LAYERS
    assert le["certified_layers"] == list(range(1, N_LAYERS))


@pytest.mark.parametrize("failing", ["geometric", "proximal", "attention"])
def test_late_entry_needs_all_three_tests_in_every_earlier_layer(failing):
    """Layers 1..5 redundant and quiet; layer 3 fails one test only: entry stops at layer 3."""
    broken = {
        # mean 0.1075 > eps but 97% of tokens below t = 0.05: only the geometric test fails
        "geometric": {"vision": _block(np.r_[np.full(3880, 0.049), np.full(120, 2.0)])},
        # mean 0.025 < eps but only 60% of tokens below t: only the proximal test fails
        "proximal": {"vision": _block(np.r_[np.full(2400, 0.001), np.full(1600, 0.06)])},
        "attention": _attention(np.full(10000, HIGH_ATTENTION)),
    }[failing]
    le = _certificate(_layers(redundant_upto=5, overrides={3: broken}))["late_entry"]
    assert le["max_entry_layer"] == 3
    assert le["certified_layers"] == [1, 2]
    assert le["reasons"]["failing_tests"] == [failing]
    assert le["reasons"]["layers"]["3"][failing]["pass"] is False


@pytest.mark.parametrize("quiet_from", [2, 5, 9, N_LAYERS])
def test_early_exit_is_certified_exactly_after_the_last_attending_layer(quiet_from):
    """Attention low in layers quiet_from..N, high in layer quiet_from-1: exit after quiet_from-1."""
    ee = _certificate(_layers(redundant_upto=0, quiet_from=quiet_from))["early_exit"]
    assert ee["min_exit_layer"] == quiet_from - 1
    assert ee["certified_layers"] == list(range(quiet_from, N_LAYERS + 1))


def test_early_exit_not_certified_when_the_last_layer_attends():
    ee = _certificate(_layers(redundant_upto=0))["early_exit"]
    assert ee["min_exit_layer"] == N_LAYERS and ee["certified_layers"] == []
    assert ee["reasons"]["last_failing_layer"] == N_LAYERS


def test_early_exit_ignores_redundancy():
    """Early exit needs low attention only: moving vision tokens in late layers do not block it."""
    ee = _certificate(_layers(redundant_upto=0, quiet_from=7))["early_exit"]
    assert ee["certified_layers"] == [7, 8, 9, 10, 11, 12]


def test_decision_uses_upper_bounds_not_point_estimates():
    """D = 0.04 < eps = 0.05 from 20 tokens: the point estimate passes, the bound does not."""
    few = {"vision": _block(np.full(20, 0.04) + np.linspace(-0.01, 0.01, 20))}
    le = _certificate(_layers(redundant_upto=4, overrides={1: few}))["late_entry"]
    geo = le["reasons"]["layers"]["1"]["geometric"]
    assert geo["mean_cosine_distance"] < 0.05 <= geo["upper_bound"]
    assert le["max_entry_layer"] == 1 and le["certified_layers"] == []


def test_attention_test_uses_the_upper_bound():
    """Share 0.01 < tau = 0.1 on 100 examples: the bound (slack about 0.19) blocks early exit;
    on 10000 examples it does not."""
    cert = _certificate(_layers(redundant_upto=0, quiet_from=1, examples=100), num_examples=100,
                        attention_threshold=0.1)
    assert cert["layers"][0]["visual_attention_mean_head"] < 0.1 <= cert["layers"][0]["visual_attention_upper_bound"]
    assert cert["early_exit"]["certified_layers"] == []
    cert = _certificate(_layers(redundant_upto=0, quiet_from=1), num_examples=10000, attention_threshold=0.1)
    assert cert["early_exit"]["certified_layers"] == list(range(2, N_LAYERS + 1))


def test_eps_threshold_moves_the_verdict():
    """Layer 2 with D around 0.03: certified at eps = 0.05, not at eps = 0.02."""
    mid = {"vision": _block(np.full(4000, 0.03))}
    stats = _layers(redundant_upto=4, overrides={2: mid})
    assert _certificate(stats, eps=0.05, proximal_t=0.05)["late_entry"]["max_entry_layer"] == 5
    assert _certificate(stats, eps=0.02, proximal_t=0.05)["late_entry"]["max_entry_layer"] == 2


def test_decide_rejects_misnumbered_layers():
    stats = _layers()
    stats[3]["layer"] = 5
    with pytest.raises(ValueError, match="numbered 1..N"):
        _certificate(stats)


def test_verdicts_cite_theorems_and_numbers():
    cert = _certificate(_layers(redundant_upto=3, quiet_from=10))
    reasons = cert["late_entry"]["reasons"]
    assert "Theorem 6" in reasons["theorem"]
    geo = reasons["layers"]["1"]["geometric"]
    assert "Theorem 1" in geo["cites"] and f"{geo['upper_bound']:.4g}" in geo["cites"]
    assert geo["theorem1_coefficient"] == pytest.approx(4 * geo["upper_bound"])
    prox = reasons["layers"]["1"]["proximal"]
    assert "Proposition 1" in prox["cites"]
    assert prox["proposition1_mean_bound"] == pytest.approx(0.05 + 1.95 * (1 - prox["lower_bound"]))
    assert reasons["theorem6_eps_estimate"] == pytest.approx(
        math.sqrt(2 * max(reasons["layers"][str(l)]["geometric"]["upper_bound"] for l in (1, 2, 3))))
    assert "Section 4" in cert["early_exit"]["reasons"]["theorem"]
    assert prox["theorem3_mi_lower_bound_nats"] is None  # no hidden size given


def test_theorem3_number_uses_the_lower_bound_of_the_proximal_probability():
    from skipit.theory import theorem3_mi_lower_bound

    cert = build_certificate(_layers(redundant_upto=2), num_examples=10000, settings=DecisionSettings(),
                             model_info={"name": "synthetic", "hidden_size": 64}, data_info={"source": "test"})
    prox = cert["late_entry"]["reasons"]["layers"]["1"]["proximal"]
    assert prox["theorem3_mi_lower_bound_nats"] == pytest.approx(
        theorem3_mi_lower_bound(1 - prox["lower_bound"], 0.05, 64))
    assert "Theorem 3 (only if X_l were uniform on S^63, not checked)" in prox["cites"]


@pytest.mark.parametrize("kwargs,match", [
    ({"eps": 0.0}, r"`eps` must be in \(0, 1\), got 0.0"),
    ({"eps": 1.5}, r"`eps` must be in \(0, 1\), got 1.5"),
    ({"confidence": 1.0}, r"`confidence` must be in \(0, 1\), got 1.0"),
    ({"attention_threshold": 0.0}, r"`attention_threshold` must be in \(0, 1\], got 0.0"),
    ({"proximal_t": 0.03}, r"`proximal_t` must be one of the captured `thresholds`"),
    ({"thresholds": (0.05, 2.5)}, r"`thresholds` must be non-empty values in \(0, 2\)"),
])
def test_settings_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DecisionSettings(**kwargs)


# --------------------------------------------------------------------------- the run

@pytest.fixture(scope="module")
def tiny_llava(tmp_path_factory):
    """A saved-and-reloaded tiny LLaVA; torch on one thread meanwhile (tiny matrices: threads only add
    start-up and contention costs), restored afterwards."""
    import torch

    from skipit.empirical.loading import load_model_and_processor
    from skipit.empirical.testing import save_tiny_vlm

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    directory = save_tiny_vlm("llava", tmp_path_factory.mktemp("tiny-llava"), seed=1)
    yield load_model_and_processor(directory, device="cpu")
    torch.set_num_threads(threads)


def _run(tiny_llava, examples, **kwargs):
    from skipit.empirical.certify import certify

    model, processor, info = tiny_llava
    kwargs.setdefault("batch_size", 3)
    return certify(model, processor, examples, progress=False, model_info=info, **kwargs)


def test_certificate_numbers_equal_the_capture_engine(tiny_llava):
    """Per-layer numbers of the certificate are those of capture_statistics run directly."""
    import torch

    from skipit.empirical import capture_statistics
    from skipit.empirical.data import build_inputs
    from tests.empirical.certify_helpers import digit_examples

    model, processor, _ = tiny_llava
    examples = digit_examples(7)
    cert = _run(tiny_llava, examples, batch_size=3)
    with torch.inference_mode(), capture_statistics(model) as cap:
        for start in range(0, 7, 3):
            model(**build_inputs(processor, examples[start:start + 3], model=model))
    stats = cap.statistics
    assert cert["data"]["num_examples"] == stats.num_examples == 7
    assert cert["model"]["num_layers"] == stats.num_layers == 4
    for got, want in zip(cert["layers"], stats.layers(), strict=True):
        assert got["layer"] == want["layer"]
        for kind in ("vision", "text", "answer"):
            for key in ("tokens", "mean_cosine_distance", "variance", "proximal_probability", "proximal_count"):
                assert got[kind][key] == want[kind][key], (got["layer"], kind, key)
        for key in ("visual_attention_ratio", "visual_attention_mean_head", "cka"):
            assert got[key] == want[key], (got["layer"], key)
    assert cert["layers"][0]["vision"]["tokens"] == 7 * 16  # 16 image tokens per example


def test_interrupted_run_resumes_to_the_same_certificate(tiny_llava, tmp_path):
    """Stopped after 2 of 4 batches, then resumed: only the last 2 batches run, and the
    certificate equals that of an uninterrupted run."""
    from tests.empirical.certify_helpers import digit_examples

    model = tiny_llava[0]
    examples = digit_examples(11)
    whole = _run(tiny_llava, examples, checkpoint_dir=tmp_path / "a", checkpoint_every=1)
    assert _run(tiny_llava, examples, checkpoint_dir=tmp_path / "b", checkpoint_every=1, max_batches=2) is None
    state = json.loads((tmp_path / "b" / "checkpoint.json").read_text())
    assert state["done"] == list(range(6))
    forwards = []
    handle = model.register_forward_hook(lambda *a: forwards.append(1))
    try:
        resumed = _run(tiny_llava, examples, checkpoint_dir=tmp_path / "b", checkpoint_every=1)
    finally:
        handle.remove()
    assert len(forwards) == 2
    assert resumed == whole


def _assert_same_certificate(got, want, path="certificate", rel=1e-9):
    """Equal structure, strings, integers and verdicts; floats equal to summation order."""
    assert type(got) is type(want), path
    if isinstance(want, dict):
        assert list(got) == list(want), path
        for key in want:
            _assert_same_certificate(got[key], want[key], f"{path}.{key}", rel)
    elif isinstance(want, list):
        assert len(got) == len(want), path
        for i, (g, w) in enumerate(zip(got, want, strict=True)):
            _assert_same_certificate(g, w, f"{path}[{i}]", rel)
    elif isinstance(want, float):
        assert got == pytest.approx(want, rel=rel, abs=1e-12, nan_ok=True), path
    else:
        assert got == want, path


def test_resume_with_another_batch_size_gives_the_uninterrupted_certificate(tiny_llava, tmp_path):
    """Statistics are sums over examples: 6 examples done in batches of 3, the other 5 resumed
    in batches of 2, give the certificate of one run in batches of 2 (floats up to summation
    order and padding; verdicts exactly)."""
    from tests.empirical.certify_helpers import digit_examples

    model = tiny_llava[0]
    examples = digit_examples(11)
    whole = _run(tiny_llava, examples, batch_size=2)
    assert _run(tiny_llava, examples, batch_size=3, checkpoint_dir=tmp_path, checkpoint_every=1,
                max_batches=2) is None
    forwards = []
    handle = model.register_forward_hook(lambda *a: forwards.append(1))
    try:
        resumed = _run(tiny_llava, examples, batch_size=2, checkpoint_dir=tmp_path, checkpoint_every=1)
    finally:
        handle.remove()
    assert len(forwards) == 3  # examples 6..10 in batches of 2
    assert json.loads((tmp_path / "checkpoint.json").read_text())["done"] == list(range(11))
    assert resumed["settings"]["batch_size"] == 2
    _assert_same_certificate(resumed, whole)


def test_crash_between_statistics_and_state_resumes_exactly(tiny_llava, tmp_path, monkeypatch):
    """Killed after writing the second statistics file but before the state naming it: the
    resume uses the first checkpoint and the certificate equals an uninterrupted run's."""
    import skipit.empirical.certify as certify_module
    from tests.empirical.certify_helpers import digit_examples

    examples = digit_examples(9)
    whole = _run(tiny_llava, examples, checkpoint_dir=tmp_path / "a", checkpoint_every=1)
    real = certify_module.atomic_write_text
    writes = []

    def crash_on_second_state(path, text):
        writes.append(path)
        if len(writes) == 2:
            raise KeyboardInterrupt
        real(path, text)

    monkeypatch.setattr(certify_module, "atomic_write_text", crash_on_second_state)
    with pytest.raises(KeyboardInterrupt):
        _run(tiny_llava, examples, checkpoint_dir=tmp_path / "b", checkpoint_every=1)
    monkeypatch.setattr(certify_module, "atomic_write_text", real)
    assert json.loads((tmp_path / "b" / "checkpoint.json").read_text())["done"] == [0, 1, 2]
    assert _run(tiny_llava, examples, checkpoint_dir=tmp_path / "b", checkpoint_every=1) == whole


def test_resume_on_different_data_is_refused(tiny_llava, tmp_path):
    from skipit.errors import SkipitError
    from tests.empirical.certify_helpers import digit_examples

    _run(tiny_llava, digit_examples(6), checkpoint_dir=tmp_path, max_batches=1, checkpoint_every=1,
         data_info={"source": "a.jsonl"})
    with pytest.raises(SkipitError, match=r"the checkpoint in .* holds statistics of 3 on 6 examples of a\.jsonl "
                                          r"whose content differs from this run's 6 examples of b\.jsonl .*"
                                          r"use another --out directory or --no-resume$"):
        _run(tiny_llava, digit_examples(6, offset=1), checkpoint_dir=tmp_path, data_info={"source": "b.jsonl"})
    # without resuming, the old checkpoint is replaced
    cert = _run(tiny_llava, digit_examples(6, offset=1), checkpoint_dir=tmp_path, resume=False)
    assert cert["data"]["num_examples"] == 6
    assert json.loads((tmp_path / "checkpoint.json").read_text())["done"] == list(range(6))


def test_resume_with_another_model_is_refused(tiny_llava, tmp_path):
    from skipit.empirical.certify import certify
    from skipit.errors import SkipitError
    from tests.empirical.certify_helpers import digit_examples

    model, processor, info = tiny_llava
    _run(tiny_llava, digit_examples(6), checkpoint_dir=tmp_path, max_batches=1, checkpoint_every=1)
    with pytest.raises(SkipitError, match=r"was made with another model: its location was '.*', this run's "
                                          r"is '/elsewhere'; use another --out directory or --no-resume$"):
        certify(model, processor, digit_examples(6), batch_size=3, checkpoint_dir=tmp_path, progress=False,
                model_info=dict(info, location="/elsewhere"))


def test_resume_with_another_number_of_examples_says_so_first(tiny_llava, tmp_path):
    """--samples changed: the counts are named (not two hashes), though the content differs too."""
    from skipit.errors import SkipitError
    from tests.empirical.certify_helpers import digit_examples

    source = {"source": "bundled:digits-test"}
    _run(tiny_llava, digit_examples(6), checkpoint_dir=tmp_path, max_batches=1, checkpoint_every=1,
         data_info=source)
    with pytest.raises(SkipitError, match=r"the checkpoint in .* covers 6 examples of bundled:digits-test; this "
                                          r"run has 4 of bundled:digits-test \(--samples changed\?\); use "
                                          r"another --out directory or --no-resume$"):
        _run(tiny_llava, digit_examples(4), checkpoint_dir=tmp_path, data_info=source)


def test_a_finished_checkpoint_on_other_data_is_refused_not_discarded(tiny_llava, tmp_path):
    from skipit.errors import SkipitError
    from tests.empirical.certify_helpers import digit_examples

    _run(tiny_llava, digit_examples(3), checkpoint_dir=tmp_path)
    before = (tmp_path / "checkpoint.json").read_text()
    with pytest.raises(SkipitError, match="holds a finished run's statistics on 3 examples"):
        _run(tiny_llava, digit_examples(3, offset=1), checkpoint_dir=tmp_path)
    assert (tmp_path / "checkpoint.json").read_text() == before


def test_resume_with_other_thresholds_names_them(tiny_llava, tmp_path):
    from skipit.errors import SkipitError
    from tests.empirical.certify_helpers import digit_examples

    _run(tiny_llava, digit_examples(6), checkpoint_dir=tmp_path, max_batches=1, checkpoint_every=1)
    with pytest.raises(SkipitError, match=r"captured the proximal thresholds \[0\.01, 0\.02, 0\.05, 0\.1\]; this "
                                          r"run asks for \[0\.05, 0\.2\] \(--thresholds changed\?\)"):
        _run(tiny_llava, digit_examples(6), checkpoint_dir=tmp_path, thresholds=(0.05, 0.2))


def test_checkpoint_statistics_are_mergeable_run_statistics(tiny_llava, tmp_path):
    from skipit.empirical import RunStatistics
    from tests.empirical.certify_helpers import digit_examples

    _run(tiny_llava, digit_examples(9), checkpoint_dir=tmp_path, checkpoint_every=1, max_batches=2)
    state = json.loads((tmp_path / "checkpoint.json").read_text())
    stats = RunStatistics.load(tmp_path / state["statistics"])
    assert stats.num_examples == 6 and stats.num_layers == 4 and state["done"] == list(range(6))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.json", state["statistics"]]


def test_certificate_write_is_atomic(tmp_path, monkeypatch):
    """A write that fails midway leaves the previous certificate.json intact and no temp file."""
    from skipit.empirical.certify import write_certificate

    write_certificate({"schema": SCHEMA, "n": 1}, tmp_path)

    real_fdopen = os.fdopen
    seen = []

    def half_write_then_fail(fd, *args, **kwargs):
        fh = real_fdopen(fd, *args, **kwargs)
        real_write = fh.write

        def write(text):
            real_write(text[:len(text) // 2])
            fh.flush()
            seen.extend(p.read_text() for p in tmp_path.glob(".certificate.json.*.tmp"))
            raise OSError("no space left on device")

        fh.write = write
        return fh

    monkeypatch.setattr(os, "fdopen", half_write_then_fail)
    with pytest.raises(OSError, match="no space left"):
        write_certificate({"schema": SCHEMA, "n": 2}, tmp_path)
    monkeypatch.setattr(os, "fdopen", real_fdopen)
    assert len(seen) == 1 and seen[0] and '"n": 2' not in seen[0]  # failed inside the temp file's write
    assert json.loads((tmp_path / "certificate.json").read_text()) == {"schema": SCHEMA, "n": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["certificate.json"]

    real_replace = os.replace

    def failing_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError, match="disk full"):
        write_certificate({"schema": SCHEMA, "n": 2}, tmp_path)
    monkeypatch.setattr(os, "replace", real_replace)
    assert json.loads((tmp_path / "certificate.json").read_text()) == {"schema": SCHEMA, "n": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["certificate.json"]


@pytest.mark.parametrize("umask,mode", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_atomic_write_gives_the_mode_of_a_new_file(tmp_path, umask, mode):
    """Like ``open(path, "w")``: 0o666 less the umask, not the temporary file's 0o600."""
    import stat

    from skipit.empirical.certify import write_certificate
    from skipit.empirical.files import atomic_write_text

    old = os.umask(umask)
    try:
        atomic_write_text(tmp_path / "a.txt", "x")
        path = write_certificate({"schema": SCHEMA}, tmp_path)
        write_certificate({"schema": SCHEMA, "n": 2}, tmp_path)  # replacing an existing certificate
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(tmp_path / "a.txt").st_mode) == mode
    assert stat.S_IMODE(os.stat(path).st_mode) == mode


def test_resume_with_retrained_weights_at_the_same_location_is_refused(tiny_llava, tmp_path):
    """Same path, same architecture, other weights (a retrained model): the old checkpoint
    must not be resumed, or the certificate would mix two models' statistics."""
    import torch

    from skipit.empirical.certify import certify
    from skipit.errors import SkipitError
    from tests.empirical.certify_helpers import digit_examples

    model, processor, info = tiny_llava
    _run(tiny_llava, digit_examples(6), checkpoint_dir=tmp_path, max_batches=1, checkpoint_every=1)
    layer_norm = model.model.language_model.layers[-1].post_attention_layernorm.weight
    saved = layer_norm.detach().clone()
    try:
        with torch.no_grad():
            layer_norm.mul_(1.5)
        with pytest.raises(SkipitError, match=r"was made with other weights: same location, type, layers and "
                                              r"dtype, but the parameters' values differ.*--no-resume$"):
            certify(model, processor, digit_examples(6), batch_size=3, checkpoint_dir=tmp_path,
                    progress=False, model_info=info)
    finally:
        with torch.no_grad():
            layer_norm.copy_(saved)
