"""benchmarks/gpu_suite.py runs end to end at its ``--tiny`` size on the CPU, so it cannot rot."""

from __future__ import annotations

import importlib.util
import json
import math
import os

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

SUITE = os.path.join(os.path.dirname(__file__), os.pardir, "benchmarks", "gpu_suite.py")


@pytest.fixture(scope="module")
def suite():
    spec = importlib.util.spec_from_file_location("gpu_suite", SUITE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def tiny_run(suite, tmp_path_factory):
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    path = tmp_path_factory.mktemp("gpu-suite") / "rows.json"
    try:
        rows = suite.main(["--tiny", "--repeats", "1", "--new-tokens", "2", "--batch-sizes", "1", "2",
                           "--json", str(path)])
    finally:
        torch.set_num_threads(threads)
    return rows, json.loads(path.read_text())


def test_tiny_suite_has_every_row(suite, tiny_run):
    """One capture row and one row per setting (freeze included, measured) for each batch size."""
    rows, written = tiny_run
    assert [(r["batch"], r["setting"]) for r in rows] == [
        (b, s) for b in (1, 2) for s in ("capture / plain",) + suite.SETTINGS]
    assert written["rows"] == json.loads(json.dumps(rows))
    freeze_rows = [r for r in rows if r["setting"] == "freeze 9-24"]
    assert freeze_rows and all(r["prefill_s"] > 0 for r in freeze_rows)


def test_tiny_suite_figures_are_sane(tiny_run):
    """Measured figures are positive and finite; the full model's speed-up is 1 by definition;
    every skipping setting is predicted faster than the full model in the prefill, and in decoding
    except freeze (its layers keep every token's keys and values in the cache)."""
    rows, _ = tiny_run
    for r in rows:
        assert r["prefill_s"] > 0 and math.isfinite(r["prefill_measured"]) and r["prefill_measured"] > 0
        if r["setting"] == "full":
            assert r["prefill_measured"] == 1.0 and r["prefill_predicted"] == 1.0 and r["decode_predicted"] == 1.0
        elif r["setting"] != "capture / plain":
            assert r["prefill_predicted"] > 1.0
            assert r["decode_predicted"] == 1.0 if r["setting"].startswith("freeze") else r["decode_predicted"] > 1.0
        assert r["peak_gib"] is None  # no memory figure on the CPU


def test_predicted_prefill_speedup_matches_the_flops_module(suite, tiny_run):
    """The suite's late-entry prefill prediction is the FLOPs ratio of skipit.empirical.flops,
    tower included, recomputed here from the layer counts."""
    from skipit.empirical.flops import DecoderShape, VisionShape, prefill_flops, tokens_per_layer, vision_flops

    rows, _ = tiny_run
    model, _ = suite.build("tiny", "cpu", __import__("torch").float32, batch_size=1)
    shape = DecoderShape.from_config(model.config)
    tower = vision_flops(VisionShape.from_llava_config(model.config), images=2)
    text, vision = suite.SIZES["tiny"]["text_tokens"], model.config.image_seq_length
    full = tower + prefill_flops(shape, tokens_per_layer(32, text, vision), logits_positions=1, batch=2)
    late = tower + prefill_flops(shape, tokens_per_layer(32, text, vision, "late-entry", 8), logits_positions=1,
                                 batch=2)
    row = next(r for r in rows if r["batch"] == 2 and r["setting"] == "late entry L=8")
    assert row["prefill_predicted"] == pytest.approx(full / late, rel=1e-12)


def test_suite_refuses_cuda_without_a_gpu(suite, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(SystemExit):
        suite.main(["--device", "cuda"])
    assert "no CUDA device here" in capsys.readouterr().err


def test_device_map_check_finds_no_difference(tiny_run):
    """On the CPU the check spreads the layers over CPU and disk offload: statistics, attention and
    every skipping mode's logits equal one device's (to 1e-5 relative)."""
    _, written = tiny_run
    check = written["device_map_check"]
    assert {"statistics", "attention", "full", "late entry L=8", "early exit L=24"} <= set(check)
    assert all(0.0 <= value <= 1e-5 for value in check.values())


def test_split_map_alternates_decoder_layers(suite):
    import torch

    model, _ = suite.build("tiny", "cpu", torch.float32, batch_size=1)
    mapping = suite._split_map(model, "cpu")
    assert [mapping[f"model.language_model.layers.{i}"] for i in range(4)] == ["cpu", "disk", "cpu", "disk"]
    assert mapping["lm_head"] == mapping["model.vision_tower"] == mapping["model.language_model.embed_tokens"] == "cpu"
    assert suite._split_map(model, "cuda")["model.language_model.layers.1"] == 0
