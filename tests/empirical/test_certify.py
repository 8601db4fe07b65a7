"""The run of ``skipit certify`` (skipit.empirical.certify) on a tiny saved LLaVA.

Statistics equal the capture engine run directly on the statistics split; an interrupted
run (statistics or verification) resumes to the same certificate, with any batch size; a
resume on other data, model, thresholds, split or weights is refused in one line; writes
are atomic with a new file's mode. Verification counts equal a direct, one-example-at-a-time
comparison of the skipped model's answers with the full model's. The pure half (bounds,
verdicts, verification maths, schema) is tested in ``test_certificate.py``.
"""

from __future__ import annotations

import importlib
import json
import os

import pytest

from skipit.empirical.certificate import SCHEMA, CertifySettings

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
    from skipit.empirical.certify import certify

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
    assert cert["data"]["num_examples"] == stats.num_examples == len(examples)
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
    with pytest.raises(SkipitError, match=r"captured with thresholds \[0\.01, 0\.02, 0\.05, 0\.1\]; this "
                                          r"run asks for \[0\.05, 0\.2\] \(--thresholds changed\?\); use "
                                          r"another --out directory or --no-resume$"):
        _run(tiny_llava, digit_examples(6), checkpoint_dir=tmp_path, thresholds=(0.05, 0.2))


@pytest.mark.parametrize("change", [{"calibration_fraction": 0.3}, {"split_seed": 1}, {"verify": False}])
def test_resume_with_another_split_is_refused(tiny_llava, tmp_path, change):
    """The statistics split depends on --calibration-fraction, --split-seed and --verify: a
    checkpoint of one split must not be continued on another."""
    from skipit.errors import SkipitError
    from tests.empirical.certify_helpers import digit_examples

    _run(tiny_llava, digit_examples(8), checkpoint_dir=tmp_path, max_batches=1, checkpoint_every=1, verify=True)
    assert len(json.loads((tmp_path / "checkpoint.json").read_text())["done"]) == 3
    with pytest.raises(SkipitError, match=r"captured with split \[True, 0\.5, 0\]; this run asks for \[.*\] "
                                          r"\(--calibration-fraction, --split-seed or --verify changed\?\)"):
        _run(tiny_llava, digit_examples(8), checkpoint_dir=tmp_path, **{"verify": True, **change})


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
            certify(model, processor, digit_examples(6), CertifySettings(batch_size=3, verify=False),
                    checkpoint_dir=tmp_path, progress=False, model_info=info)
    finally:
        with torch.no_grad():
            layer_norm.copy_(saved)
