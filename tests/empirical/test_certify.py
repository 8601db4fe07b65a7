"""The run of ``skipit certify`` (skipit.empirical.certify) on a tiny saved LLaVA.

Statistics equal the capture engine run directly on the statistics split; an interrupted
run (statistics or verification) resumes to the same certificate, with any batch size; a
resume on other data, model, thresholds, split or weights is refused in one line; writes
are atomic with a new file's mode. Verification counts equal a direct, one-example-at-a-time
comparison of the skipped model's answers with the full model's. The pure half (bounds,
verdicts, verification maths, schema) is tested in ``test_certificate.py``.
"""

from __future__ import annotations

import json
import os

import pytest

from skipit.empirical.certificate import SCHEMA, CertifySettings
from skipit.empirical.settings import flag_of

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


_RUN_ARGUMENTS = ("checkpoint_dir", "data_info", "run_info", "max_batches", "model_info")


def _run(tiny_llava, examples, **kwargs):
    """``certify`` on the tiny LLaVA: keywords of CertifySettings (default batch_size=3,
    verify=False: these tests are about the statistics) or of ``certify`` itself."""
    from skipit.empirical.certify_run import certify

    model, processor, info = tiny_llava
    run = {k: kwargs.pop(k) for k in _RUN_ARGUMENTS if k in kwargs}
    run.setdefault("model_info", info)
    settings = CertifySettings(**{"batch_size": 3, "verify": False, **kwargs})
    return certify(model, processor, examples, settings, progress=False, **run)


_GROUP_FIELDS = ("tokens", "mean_cosine_distance", "variance", "proximal_probability", "proximal_count",
                 "examples", "design_effect", "zero_norm_tokens", "example_mean_cosine_distance",
                 "example_proximal_fraction")


def _assert_numbers_equal_the_capture_engine(cert, model, processor, examples, batch_size):
    """The certificate's per-layer numbers are those of capture_statistics run directly on
    ``examples`` (in batches of ``batch_size``), and its bounds are taken on those."""
    import torch

    from skipit.empirical import capture_statistics
    from skipit.empirical.certificate import certificate_layers
    from skipit.empirical.data import build_inputs

    with torch.inference_mode(), capture_statistics(model) as cap:
        for start in range(0, len(examples), batch_size):
            model(**build_inputs(processor, examples[start:start + batch_size], model=model))
    stats = cap.statistics
    assert cert["data"]["statistics_examples"] == stats.num_examples == len(examples)
    assert cert["model"]["num_layers"] == stats.num_layers == 4
    for got, want in zip(cert["layers"], stats.layers(), strict=True):
        assert got["layer"] == want["layer"]
        for kind in ("vision", "text", "answer"):
            for key in _GROUP_FIELDS:
                if key == "proximal_probability" and not want[kind]["tokens"]:
                    continue  # undefined without tokens: None in the statistics, 0.0 in the certificate
                assert got[kind][key] == want[kind][key], (got["layer"], kind, key)
        for key in ("visual_attention_ratio", "visual_attention_mean_head", "cka"):
            assert got[key] == want[key], (got["layer"], key)
    settings = CertifySettings(**{k: cert["settings"][k] for k in ("eps", "proximal_t", "attention_threshold",
                                                                     "confidence")})
    bounds = certificate_layers(stats.layers(), stats.num_examples, settings)
    for got, want in zip(cert["layers"], bounds, strict=True):
        assert got["vision"]["mean_upper_bound"] == want["vision"]["mean_upper_bound"]
        assert got["visual_attention_upper_bound"] == want["visual_attention_upper_bound"]
    assert cert["layers"][0]["vision"]["tokens"] == len(examples) * 16  # 16 image tokens per example
    assert cert["layers"][0]["vision"]["examples"] == len(examples)


def test_certificate_numbers_equal_the_capture_engine(tiny_llava):
    """Without verification every example is in the statistics."""
    from tests.empirical.certify_helpers import digit_examples

    model, processor, _ = tiny_llava
    examples = digit_examples(7)
    cert = _run(tiny_llava, examples, batch_size=3)
    assert cert["verification"] is None
    assert cert["data"]["statistics_examples"] == 7 and cert["data"]["calibration_examples"] == 0
    _assert_numbers_equal_the_capture_engine(cert, model, processor, examples, 3)


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
    assert resumed["run"]["batch_size"] == 2
    _assert_same_certificate(resumed, whole, rel=1e-6)  # float32 forwards padded differently: ~1e-7 apart


def test_crash_between_statistics_and_state_resumes_exactly(tiny_llava, tmp_path, monkeypatch):
    """Killed after writing the second statistics file but before the state naming it: the
    resume uses the first checkpoint and the certificate equals an uninterrupted run's."""
    import skipit.empirical.certify_run as certify_module
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
                                          r"use another `checkpoint_dir` or `resume=False`$") as refused:
        _run(tiny_llava, digit_examples(6, offset=1), checkpoint_dir=tmp_path, data_info={"source": "b.jsonl"})
    # the command line names its flags instead (skipit.cli maps each parameter to its flag)
    assert refused.value.render(flag_of).endswith("(the data file, its images or --data changed?); use another "
                                                  "--out directory or --no-resume")
    # without resuming, the old checkpoint is replaced
    cert = _run(tiny_llava, digit_examples(6, offset=1), checkpoint_dir=tmp_path, resume=False)
    assert cert["data"]["num_examples"] == 6
    assert json.loads((tmp_path / "checkpoint.json").read_text())["done"] == list(range(6))


def test_resume_with_another_model_is_refused(tiny_llava, tmp_path):
    from skipit.empirical.certify_run import certify
    from skipit.errors import SkipitError
    from tests.empirical.certify_helpers import digit_examples

    model, processor, info = tiny_llava
    _run(tiny_llava, digit_examples(6), checkpoint_dir=tmp_path, max_batches=1, checkpoint_every=1)
    with pytest.raises(SkipitError, match=r"was made with another model: its location was '.*', this run's "
                                          r"is '/elsewhere'; use another `checkpoint_dir` or `resume=False`$"):
        certify(model, processor, digit_examples(6), CertifySettings(batch_size=3, verify=False),
                checkpoint_dir=tmp_path, progress=False, model_info=dict(info, location="/elsewhere"))


def test_resume_with_another_number_of_examples_says_so_first(tiny_llava, tmp_path):
    """--samples changed: the counts are named (not two hashes), though the content differs too."""
    from skipit.errors import SkipitError
    from tests.empirical.certify_helpers import digit_examples

    source = {"source": "bundled:digits-test"}
    _run(tiny_llava, digit_examples(6), checkpoint_dir=tmp_path, max_batches=1, checkpoint_every=1,
         data_info=source)
    with pytest.raises(SkipitError, match=r"the checkpoint in .* covers 6 examples of bundled:digits-test; this "
                                          r"run has 4 of bundled:digits-test \(`num_examples` changed\?\); use "
                                          r"another `checkpoint_dir` or `resume=False`$"):
        _run(tiny_llava, digit_examples(4), checkpoint_dir=tmp_path, data_info=source)



@pytest.mark.parametrize("changed", ["data", "model"])
def test_a_refused_resume_quotes_directories_sources_and_locations_verbatim(tmp_path, changed):
    """A checkpoint folder, data sources and model locations holding ``{parameter}``-like braces
    (``{examples}``, ``{model}``, ``{}``, an unclosed ``{``) are quoted as written; the parameters
    are named by the library and printed as flags by the command line."""
    from skipit.empirical.certify_run import CHECKPOINT_FORMAT, CHECKPOINT_STATE, Checkpoint
    from skipit.empirical.settings import SettingError

    directory = tmp_path / "{checkpoint_dir}{}"
    directory.mkdir()
    saved = {"data": {"source": "{examples}{.jsonl", "num_examples": 6, "sha256": "a"},
             "capture": {"thresholds": [0.1], "split": {}}, "model": {"model": "./{model}{}"}}
    this = json.loads(json.dumps(saved))
    if changed == "data":
        this["data"].update(source="{num_examples}.jsonl", num_examples=4)
        why = "covers 6 examples of {examples}{.jsonl; this run has 4 of {num_examples}.jsonl"
    else:
        this["model"]["model"] = "/{model}"
        why = "was made with another model: its location was './{model}{}', this run's is '/{model}'"
    (directory / CHECKPOINT_STATE).write_text(json.dumps({"format": CHECKPOINT_FORMAT, "identity": saved,
                                                          "done": [], "statistics": "", "verification": {}}))
    with pytest.raises(SettingError) as refused:
        Checkpoint.open(str(directory), this, {})
    assert refused.value.parameter == "checkpoint_dir"
    assert str(refused.value) == (f"the checkpoint in {directory} {why}; use another `checkpoint_dir` or "
                                  "`resume=False`")
    assert refused.value.render(flag_of) == (f"the checkpoint in {directory} {why}; use another --out directory or "
                                             "--no-resume")


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
    with pytest.raises(SkipitError, match=r"captured with thresholds \[0\.01, 0\.02, 0\.05, 0\.1\]; this "
                                          r"run asks for \[0\.05, 0\.2\] \(`thresholds` changed\?\); use "
                                          r"another `checkpoint_dir` or `resume=False`$"):
        _run(tiny_llava, digit_examples(6), checkpoint_dir=tmp_path, thresholds=(0.05, 0.2))


@pytest.mark.parametrize("change", [{"calibration_fraction": 0.3}, {"split_seed": 1}, {"verify": False}])
def test_resume_with_another_split_is_refused(tiny_llava, tmp_path, change):
    """The statistics split depends on --calibration-fraction, --split-seed and --verify: a
    checkpoint of one split must not be continued on another."""
    from skipit.errors import SkipitError
    from tests.empirical.certify_helpers import digit_examples

    _run(tiny_llava, digit_examples(8), checkpoint_dir=tmp_path, max_batches=1, checkpoint_every=1, verify=True,
         calibration_fraction=0.5)
    assert len(json.loads((tmp_path / "checkpoint.json").read_text())["done"]) == 3
    with pytest.raises(SkipitError, match=r"captured with split \[True, 0\.5, 0\]; this run asks for \[.*\] "
                                          r"\(`calibration_fraction`, `split_seed` or `verify` changed\?\)"):
        _run(tiny_llava, digit_examples(8), checkpoint_dir=tmp_path,
             **{"verify": True, "calibration_fraction": 0.5, **change})


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
    from skipit.empirical.certify_run import write_certificate

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

    from skipit.empirical.certify_run import write_certificate
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

    from skipit.empirical.certify_run import certify
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
                                              r"dtype, but the parameters' values differ.*`resume=False`$"):
            certify(model, processor, digit_examples(6), CertifySettings(batch_size=3, verify=False),
                    checkpoint_dir=tmp_path, progress=False, model_info=info)
    finally:
        with torch.no_grad():
            layer_norm.copy_(saved)


# ----------------------------------------------------------------------- verification

@pytest.fixture(scope="module")
def quiet_llava(tiny_llava):
    """The tiny LLaVA with decoder layers 1 and 2 made exact identities (output projection and MLP
    down-projection zero): skipping or freezing them changes no answer, so the chains run past
    their first candidates and certify something."""
    import copy

    import torch

    model, processor, info = tiny_llava
    quiet = copy.deepcopy(model)
    with torch.no_grad():
        for layer in quiet.model.language_model.layers[:2]:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
    return quiet, processor, dict(info, location=info["location"] + "#quiet")


def _direct_answers(model, processor, examples, context=None):
    """One-token answers one example at a time (no padding): argmax of the last position's
    logits, decoded and normalised; independent of the batched path certify takes."""
    import contextlib

    import torch

    from skipit.empirical.data import build_inputs
    from skipit.empirical.evaluate import normalise_answer

    out = []
    for example in examples:
        with torch.inference_mode(), (context() if context else contextlib.nullcontext()):
            logits = model(**build_inputs(processor, [example], model=model)).logits
        out.append(normalise_answer(processor.tokenizer.decode([int(logits[0, -1].argmax())])))
    return out


def _direct_context(model, config):
    """The skipping of ``config`` built from the skipping primitives themselves (not through
    :mod:`skipit.empirical.candidates`)."""
    from skipit.empirical import baselines, skipping

    mode = config["mode"]
    if mode == "freeze":
        return lambda: skipping.freeze(model, layers=config["layers"])
    if mode == "freeze+early-exit":
        return lambda: skipping.skip(model, early_exit=config["layer"], freeze=config["layers"])
    if mode == "fastv":
        return lambda: baselines.fastv_prune(model, config["layer"], config["keep_ratio"])
    fn = skipping.late_entry if mode == "late-entry" else skipping.early_exit
    return lambda: fn(model, layer=config["layer"])


def _direct_token_counts(model, processor, examples):
    from skipit.empirical.adapters import get_adapter
    from skipit.empirical.data import build_inputs

    adapter = get_adapter(model)
    counts = []
    for example in examples:
        ids = build_inputs(processor, [example], model=model)["input_ids"]
        vision = int(adapter.vision_mask(ids, model.config).sum())
        counts.append((ids.shape[1] - vision, vision))
    return counts


VERIFY_SETTINGS = {"tolerance": 0.5, "confidence": 0.7,  # level 0.3: 0 of 6 changed is rejected (p = 0.016)
                   "calibration_fraction": 0.5}


def _split(examples, **settings):
    from skipit.empirical.units import unit_ids
    from skipit.empirical.verification import split_indices

    return split_indices(unit_ids(examples), CertifySettings(**{**VERIFY_SETTINGS, **settings}))


def test_verification_counts_equal_a_direct_comparison_of_answers(quiet_llava):
    """Every tested config's ``changed`` equals a one-example-at-a-time comparison of its answers
    with the full model's on the calibration split, and every learned rate the same on the
    statistics split; ``flops_fraction`` is the FLOPs model on the calibration examples' own
    token counts; the tested configs are the learned chain up to its first config not rejected;
    statistics come from the statistics split alone."""
    from skipit.empirical.candidates import candidate_flops_fraction
    from skipit.empirical.verification import config_key
    from tests.empirical.certify_helpers import digit_examples

    model, processor, _ = quiet_llava
    examples = digit_examples(12)
    cert = _run(quiet_llava, examples, verify=True, **VERIFY_SETTINGS)
    stats_idx, calib_idx = _split(examples)
    calibration = [examples[i] for i in calib_idx]
    statistics = [examples[i] for i in stats_idx]
    _assert_numbers_equal_the_capture_engine(cert, model, processor, statistics, 3)
    data = cert["data"]
    assert (data["statistics_examples"], data["calibration_examples"]) == (6, 6)
    assert (data["statistics_units"], data["calibration_units"], data["num_units"]) == (6, 6, 12)

    verification = cert["verification"]
    assert (verification["examples"], verification["units"]) == (6, 6)
    reference = _direct_answers(model, processor, calibration)
    counts = _direct_token_counts(model, processor, calibration)
    for config in verification["configs"]:
        answers = _direct_answers(model, processor, calibration, _direct_context(model, config))
        assert config["changed"] == sum(a != r for a, r in zip(answers, reference)), config
        assert config["examples"] == 6 and config["units"] == 6
        assert config["flops_fraction"] == pytest.approx(candidate_flops_fraction(model.config, config, counts),
                                                         rel=1e-12)
    learn_reference = _direct_answers(model, processor, statistics)
    for config in verification["learned"]:
        answers = _direct_answers(model, processor, statistics, _direct_context(model, config))
        assert config["learned_rate"] == pytest.approx(
            sum(a != r for a, r in zip(answers, learn_reference)) / 6, abs=1e-12), config
    tested = [config_key(c) for c in verification["configs"]]
    assert tested == verification["chain"][:len(tested)]
    stopped = [not c["certified"] for c in verification["configs"]]
    assert stopped == [False] * (len(tested) - 1) + [True] or (not any(stopped)
                                                              and len(tested) == len(verification["chain"]))
    certified = [c for c in verification["configs"] if c["certified"]]
    assert certified  # the identity layers change no answer
    best = min(certified, key=lambda c: c["flops_fraction"])
    assert verification["recommended"] == dict(best, predicted_speedup=1 / best["flops_fraction"])


def test_interrupted_verification_resumes_to_the_same_certificate(quiet_llava, tmp_path, monkeypatch):
    """Killed during verification after the reference answers and one candidate: the resume
    reuses both from the checkpoint (no statistics forward, two answer passes fewer) and gives
    the uninterrupted certificate."""
    import skipit.empirical.certify_run as certify_module
    from tests.empirical.certify_helpers import digit_examples

    model = quiet_llava[0]
    examples = digit_examples(12)
    real = certify_module._answers
    calls = []

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(certify_module, "_answers", counting)
    whole = _run(quiet_llava, examples, verify=True, checkpoint_dir=tmp_path / "a", **VERIFY_SETTINGS)
    total_calls = len(calls)
    assert total_calls >= 4  # the references (statistics, calibration) and candidates on both splits

    def crash_on_third(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    calls.clear()
    monkeypatch.setattr(certify_module, "_answers", crash_on_third)
    with pytest.raises(KeyboardInterrupt):
        _run(quiet_llava, examples, verify=True, checkpoint_dir=tmp_path / "b", **VERIFY_SETTINGS)
    state = json.loads((tmp_path / "b" / "checkpoint.json").read_text())["verification"]["learn"]
    assert len(state["reference"]) == 6 and list(state["results"]) == ["late-entry:2"]

    calls.clear()
    monkeypatch.setattr(certify_module, "_answers", counting)
    forwards = []
    handle = model.register_forward_hook(lambda *a: forwards.append(1))
    try:
        resumed = _run(quiet_llava, examples, verify=True, checkpoint_dir=tmp_path / "b", **VERIFY_SETTINGS)
    finally:
        handle.remove()
    assert len(calls) == total_calls - 2
    assert len(forwards) == 2 * len(calls)  # 6 examples a split in batches of 3; no statistics or KL forward
    assert resumed == whole


def test_generated_answers_are_compared_when_max_new_tokens_exceeds_one(quiet_llava):
    """Free-form data (metric ``exact``): greedy generations of up to K tokens, normalised for the
    metric, are compared; the counts equal a direct one-example-at-a-time greedy generation under
    the same skipping."""
    import contextlib
    import dataclasses

    import torch

    from skipit.empirical.data import build_inputs
    from skipit.empirical.metrics import normalise_for
    from tests.empirical.certify_helpers import digit_examples

    model, processor, _ = quiet_llava
    examples = [dataclasses.replace(e, metric="exact") for e in digit_examples(8)]
    cert = _run(quiet_llava, examples, verify=True, max_new_tokens=3, **VERIFY_SETTINGS)
    assert cert["verification"]["answer"].startswith("greedy generation of up to 3 tokens")
    calibration = [examples[i] for i in _split(examples)[1]]

    def generated(context=None, tokens=3):
        out = []
        for example in calibration:
            inputs = build_inputs(processor, [example], model=model)
            with torch.inference_mode(), (context() if context else contextlib.nullcontext()):
                ids = model.generate(**inputs, max_new_tokens=tokens, do_sample=False)
            out.append(normalise_for("exact", processor.tokenizer.decode(ids[0, inputs["input_ids"].shape[1]:],
                                                                         skip_special_tokens=True)))
        return out

    reference = generated()
    assert reference != generated(tokens=1)  # the later tokens are part of the answers compared
    for config in cert["verification"]["configs"]:
        answers = generated(_direct_context(model, config))
        assert config["changed"] == sum(a != r for a, r in zip(answers, reference)), config


def test_freeze_order_is_the_learned_rate_with_shortv_kl_breaking_ties(quiet_llava):
    """The freeze order: layers by their one-layer freeze change rate on the statistics split,
    ties by ShortV's contribution (``freeze_order="contribution"``): the mean over the first
    ``order_examples`` statistics examples of KL(full || layer frozen) of the answer-token
    distribution (computed here one example at a time, by hand). Identity layers 1 and 2
    contribute nothing (KL 0); the freeze sets the learn step grows follow the order."""
    import torch

    from skipit.empirical import skipping
    from skipit.empirical.data import build_inputs
    from tests.empirical.certify_helpers import digit_examples

    model, processor, _ = quiet_llava
    examples = digit_examples(12)
    cert = _run(quiet_llava, examples, verify=True, freeze_order="contribution", order_examples=4,
                **VERIFY_SETTINGS)
    ordering = [examples[i] for i in _split(examples)[0][:4]]

    def log_probs(example, frozen=None):
        with torch.inference_mode():
            if frozen is None:
                logits = model(**build_inputs(processor, [example], model=model)).logits
            else:
                with skipping.freeze(model, layers=[frozen]):
                    logits = model(**build_inputs(processor, [example], model=model)).logits
        return torch.log_softmax(logits[0, -1].double(), dim=-1)

    full = [log_probs(e) for e in ordering]
    want = {}
    for layer in range(1, 5):
        kls = [float((p.exp() * (p - log_probs(e, layer))).sum()) for e, p in zip(ordering, full)]
        want[layer] = sum(kls) / len(kls)
    ver = cert["verification"]
    order = ver["freeze_order"]
    assert "contribution" in order["by"] and "4 statistics examples" in order["by"]
    assert {int(k): v for k, v in order["scores"].items()} == pytest.approx(want, rel=1e-6, abs=1e-9)
    assert want[1] == pytest.approx(0.0, abs=1e-9) and want[2] == pytest.approx(0.0, abs=1e-9)
    single = {c["layers"][0]: c["learned_rate"] for c in ver["learned"]
              if c["mode"] == "freeze" and len(c["layers"]) == 1}
    assert sorted(single) == [1, 2, 3]  # layer N = 4 is never a candidate
    assert order["layers"] == sorted(single, key=lambda l: (single[l], want[l], l))
    assert set(order["layers"][:2]) == {1, 2}
    grown = [c["layers"] for c in ver["learned"] if c["mode"] == "freeze" and len(c["layers"]) > 1]
    assert grown == [sorted(order["layers"][:k]) for k in range(2, len(grown) + 2)]


# --------------------------------------------------------------------------- write failures

def test_a_checkpoint_write_failing_midway_is_one_line_and_keeps_the_last_good_checkpoint(tiny_llava, tmp_path,
                                                                                         monkeypatch):
    """The second statistics file cannot be written (a full disk, an --out made unwritable): a
    RunError in one line saying what was kept; the checkpoint still names the first file, which
    holds its examples, and a rerun resumes to the uninterrupted certificate."""
    from skipit.empirical.stats import RunStatistics
    from skipit.errors import RunError
    from tests.empirical.certify_helpers import digit_examples

    examples = digit_examples(9)
    whole = _run(tiny_llava, examples, checkpoint_dir=tmp_path / "a", checkpoint_every=1)
    real = RunStatistics.save
    saves = []

    def full_disk(self, path):
        saves.append(path)
        if len(saves) == 2:
            raise OSError(28, "No space left on device")
        real(self, path)

    monkeypatch.setattr(RunStatistics, "save", full_disk)
    with pytest.raises(RunError) as failed:
        _run(tiny_llava, examples, checkpoint_dir=tmp_path / "b", checkpoint_every=1)
    message = str(failed.value)
    assert "\n" not in message and failed.value.exit_code == 1
    assert message.startswith(f"cannot write the checkpoint in {tmp_path / 'b'} (No space left on device); the "
                              "last good checkpoint (statistics of 3 examples) is kept")
    monkeypatch.setattr(RunStatistics, "save", real)
    state = json.loads((tmp_path / "b" / "checkpoint.json").read_text())
    assert state["done"] == [0, 1, 2] and (tmp_path / "b" / state["statistics"]).exists()
    assert _run(tiny_llava, examples, checkpoint_dir=tmp_path / "b", checkpoint_every=1) == whole


def test_verification_on_one_image_is_refused_before_any_model_work(tiny_llava):
    """The split is by image: four questions of ONE image leave nothing to verify on, so certify
    refuses in one line naming the images (not the questions)."""
    from dataclasses import replace

    from skipit.empirical.settings import SettingError
    from tests.empirical.certify_helpers import digit_examples

    one = digit_examples(1)
    same_image = [replace(one[0], question=q) for q in ("a?", "b?", "c?", "d?")]
    with pytest.raises(SettingError, match=r"at least 2 images .*got 1 in 4 examples"):
        _run(tiny_llava, same_image, verify=True)
