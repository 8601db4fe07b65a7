"""`skipit evaluate` / `skipit skip` and the certificate validation (skipit.empirical.evaluate)."""

from __future__ import annotations

import dataclasses
import json

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from skipit.cli import main  # noqa: E402
from skipit.empirical.evaluate import (  # noqa: E402
    certificate_verdicts, normalise_answer, parse_layer_grid, validate,
)
from skipit.empirical.evaluate_report import format_table  # noqa: E402

N = 4


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    """A tiny LLaVA saved with its processor, and 8 digit images with yes/no questions."""
    import numpy as np
    from PIL import Image
    from sklearn.datasets import load_digits

    from skipit.empirical.testing import save_tiny_vlm

    root = tmp_path_factory.mktemp("evaluate")
    save_tiny_vlm("llava", root / "model", num_layers=N)
    digits = load_digits()
    (root / "img").mkdir()
    lines = []
    for i in range(8):
        img = Image.fromarray((digits.images[i] * 16).astype(np.uint8)).resize((32, 32)).convert("RGB")
        img.save(root / "img" / f"{i}.png")
        lines.append(json.dumps({"image": f"img/{i}.png", "question": "is the digit even ?",
                                 "answer": "yes" if digits.target[i] % 2 == 0 else "no"}))
    (root / "data.jsonl").write_text("\n".join(lines) + "\n")
    return root


def _group():
    return {"tokens": 16, "examples": 1, "mean_cosine_distance": 0.1, "mean_upper_bound": 2.0,
            "proximal_probability": {"0.05": 0.0}, "proximal_lower_bound": {"0.05": 0.0}}


def _certificate(max_entry, min_exit, n=N, frozen=(), configs=None, model_type="llava", order=None):
    """A schema-valid skipit.certificate/2 with the given verdicts (numbers irrelevant here);
    ``configs``: the verification's configs (None: no verification)."""
    verification = None
    if configs is not None:
        certified = [c for c in configs if c["certified"]]
        verification = {"tolerance": 0.05, "confidence": 0.95, "examples": 8, "configs": configs,
                        "freeze_order": None if order is None else {"by": "test", "layers": order},
                        "recommended": min(certified, key=lambda c: c["flops_fraction"]) if certified else None}
    return {
        "schema": "skipit.certificate/2",
        "model": {"num_layers": n, "model_type": model_type},
        "data": {"num_examples": 8},
        "settings": {"eps": 0.05, "proximal_t": 0.05, "attention_threshold": 0.1, "confidence": 0.95,
                     "thresholds": [0.05], "tolerance": 0.05},
        "run": {"world_size": 1},
        "layers": [{"layer": l, "vision": _group(), "text": _group(), "visual_attention_upper_bound": 0.5}
                   for l in range(1, n + 1)],
        "late_entry": {"certified_layers": list(range(1, max_entry)), "max_entry_layer": max_entry, "reasons": {}},
        "early_exit": {"certified_layers": list(range(min_exit + 1, n + 1)), "min_exit_layer": min_exit,
                       "reasons": {}},
        "freeze": {"certified_layers": list(frozen), "reasons": {}},
        "verification": verification,
    }


def _config(mode, layer, certified, changed=0, flops=0.9):
    c = {"mode": mode, "examples": 8, "changed": changed, "upper_bound": 0.3, "certified": certified,
         "flops_fraction": flops}
    c["layers" if mode == "freeze" else "layer"] = layer
    return c


def test_evaluate_cli_writes_report_table_and_plot(tiny_dir, tmp_path, capsys):
    cert = tmp_path / "certificate.json"
    cert.write_text(json.dumps(_certificate(max_entry=2, min_exit=3)))
    out = tmp_path / "out"
    rc = main(["evaluate", "--model", str(tiny_dir / "model"), "--data", str(tiny_dir / "data.jsonl"),
               "--layers", "1,2,4", "--certificate", str(cert), "--out", str(out), "--batch-size", "3",
               "--theorem6-samples", "1", "--theorem6-iters", "2", "--quiet", "--baselines"])
    assert rc == 0
    report = json.loads((out / "evaluation.json").read_text())
    assert (out / "evaluation.png").stat().st_size > 1000
    assert (out / "evaluation.txt").read_text().startswith("full model accuracy")
    rows = {(r["mode"], r["layer"]): r for r in report["rows"]}
    assert sorted(rows) == sorted((m, l) for m in ("late-entry", "early-exit", "freeze") for l in (1, 2, 4))
    full = report["full"]["accuracy"]
    # late entry at 1 and early exit at N are the full model
    assert rows[("late-entry", 1)]["accuracy"] == full and rows[("early-exit", N)]["accuracy"] == full
    assert [rows[("late-entry", l)]["certified"] for l in (1, 2, 4)] == [True, True, False]
    assert [rows[("early-exit", l)]["certified"] for l in (1, 2, 4)] == [False, False, True]
    # (LE 2, 4), (EE 1, 2) and (freeze 1, 2); freezing only layer N = 4 is trivial
    assert report["validation"]["paper"]["all"]["settings"] == 6
    assert report["validation"]["paper"]["freeze"]["settings"] == 2
    assert [t["layer"] for t in report["theorem6"]] == [2, 4]
    # FastV (after layer 2) matched to every setting that skips something
    fastv = report["baselines"]["fastv"]
    assert {(f["matched_mode"], f["matched_layer"]) for f in fastv} == {
        ("late-entry", 2), ("late-entry", 4), ("early-exit", 1), ("early-exit", 2), ("freeze", 1), ("freeze", 2),
        ("freeze", 4)}  # freezing layer N changes no answer but saves its vision compute
    for f in fastv:
        budget = rows[(f["matched_mode"], f["matched_layer"])]["flops_fraction"]
        assert f["flops_fraction"] <= budget or f["keep_ratio"] == 0.0
    assert 1 <= report["baselines"]["vtw"]["layer"] <= N
    printed = capsys.readouterr().out
    assert "certificate validation" in printed and "Theorem 6" in printed


def test_skip_cli_prints_accuracy_and_speedup(tiny_dir, capsys):
    rc = main(["skip", "--mode", "early-exit", "--layer", "2", "--model", str(tiny_dir / "model"),
               "--data", str(tiny_dir / "data.jsonl"), "--repeats", "1"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "early-exit L=2" in out and "FLOPs pred." in out
    rc = main(["skip", "--mode", "late-entry", "--layer", "3", "--variant", "oracle", "--model",
               str(tiny_dir / "model"), "--data", str(tiny_dir / "data.jsonl"), "--repeats", "1"])
    assert rc == 0 and "late-entry L=3 oracle" in capsys.readouterr().out


def test_skip_cli_variant_is_for_late_entry_only(tiny_dir, capsys):
    rc = main(["skip", "--mode", "early-exit", "--layer", "2", "--variant", "oracle", "--model",
               str(tiny_dir / "model"), "--data", str(tiny_dir / "data.jsonl")])
    assert rc == 2 and "--variant applies to --mode late-entry only" in capsys.readouterr().err


@pytest.mark.parametrize("argv,match", [
    (["--layers", "0-3"], r"--layers must lie in \[1, 4\], got \[0\]"),
    (["--layers", "two"], "--layers must look like"),
    (["--certificate", "/nonexistent/cert.json"], "--certificate /nonexistent/cert.json: cannot read it"),
])
def test_evaluate_cli_errors_are_actionable(tiny_dir, tmp_path, capsys, argv, match):
    rc = main(["evaluate", "--model", str(tiny_dir / "model"), "--data", str(tiny_dir / "data.jsonl"),
               "--out", str(tmp_path), "--theorem6-samples", "0", "--quiet", *argv])
    assert rc == 2
    import re

    assert re.search(match, capsys.readouterr().err)


def test_evaluate_needs_data_with_a_model(capsys):
    assert main(["evaluate", "--model", "some/model"]) == 2
    assert "--data is needed with --model" in capsys.readouterr().err


def test_validation_precision_and_recall_on_a_constructed_case():
    """7 non-trivial settings: certified & kept 2 (tp), certified & dropped 1 (fp), not certified &
    kept 2 (fn), not certified & dropped 2 (tn): precision 2/3, recall 1/2 (fp != fn, so a swap of
    precision and recall fails). The trivial settings (late entry 1, early exit N, freezing only N)
    are not counted."""
    def row(mode, layer, certified, kept):
        return {"mode": mode, "layer": layer, "certified": certified, "within_tolerance": kept}

    rows = [row("late-entry", 1, True, True), row("early-exit", N, True, True), row("freeze", N, True, True),
            row("late-entry", 2, True, True), row("late-entry", 3, True, False), row("late-entry", 4, False, False),
            row("early-exit", 3, True, True), row("early-exit", 2, False, True), row("early-exit", 1, False, False),
            row("freeze", 2, False, True)]
    v = validate(rows, N)
    assert (v["tp"], v["fp"], v["fn"], v["tn"], v["settings"]) == (2, 1, 2, 2, 7)
    assert v["precision"] == pytest.approx(2 / 3) and v["recall"] == pytest.approx(1 / 2)
    assert validate([row("late-entry", 2, False, False)], N)["precision"] is None


def test_validation_of_freeze_sets_leaves_out_only_the_last_layer_alone():
    rows = [{"mode": "freeze", "layers": [N], "certified": True, "ok": True},
            {"mode": "freeze", "layers": [N - 1, N], "certified": True, "ok": False}]
    v = validate(rows, N, truth="ok")
    assert (v["settings"], v["fp"], v["tp"]) == (1, 1, 0)


def test_verified_configurations_are_validated_by_their_change_rate(tiny_dir, tmp_path):
    """Every candidate of the three chains is run; certified flags come from the certificate's
    verification (an untested candidate counts as not certified), the truth from the measured
    change rate against the certificate's tolerance."""
    configs = [_config("late-entry", 2, True), _config("late-entry", 3, False, changed=5),
               _config("early-exit", 3, True), _config("freeze", [3], True), _config("freeze", [1, 3], False)]
    cert = tmp_path / "certificate.json"
    # the freeze chain in the order the certificate recorded (not re-derived from the statistics)
    cert.write_text(json.dumps(_certificate(max_entry=1, min_exit=N, configs=configs, order=[3, 1, 2])))
    out = tmp_path / "out"
    assert main(["evaluate", "--model", str(tiny_dir / "model"), "--data", str(tiny_dir / "data.jsonl"),
                 "--modes", "late-entry", "--layers", "2", "--certificate", str(cert), "--out", str(out),
                 "--theorem6-samples", "0", "--quiet"]) == 0
    report = json.loads((out / "evaluation.json").read_text())
    verified = report["verified_rows"]
    names = [(r["mode"], r.get("layer"), tuple(r.get("layers", ()))) for r in verified]
    # late entry 2..N, early exit N-1..1, freeze chain of N-1 growing sets
    assert len(names) == (N - 1) * 3
    flags = {(r["mode"], r.get("layer")): r["certified"] for r in verified if r["mode"] != "freeze"}
    assert flags[("late-entry", 2)] and not flags[("late-entry", 3)] and not flags[("late-entry", 4)]
    assert flags[("early-exit", 3)] and not flags[("early-exit", 2)]
    freeze = [(r["layers"], r["certified"]) for r in verified if r["mode"] == "freeze"]
    assert freeze == [([3], True), ([1, 3], False), ([1, 2, 3], False)]
    ver = report["validation"]["verified"]
    assert ver["all"]["settings"] == len(verified)
    assert ver["all"]["tp"] + ver["all"]["fp"] == 3
    assert ver["violations"] == sum(1 for r in verified if r["certified"] and r["changed_rate"] > 0.05)
    for r in verified:
        assert r["within_change_tolerance"] == (r["changed_rate"] <= 0.05)


def test_evaluate_refuses_a_certificate_made_for_another_model(tiny_dir, tmp_path, capsys):
    for cert_data, words in ((_certificate(2, 3, n=N + 1), "number of decoder layers"),
                             (_certificate(2, 3, model_type="gemma3"), "model type")):
        cert = tmp_path / "certificate.json"
        cert.write_text(json.dumps(cert_data))
        rc = main(["evaluate", "--model", str(tiny_dir / "model"), "--data", str(tiny_dir / "data.jsonl"),
                   "--certificate", str(cert), "--out", str(tmp_path / "out"), "--theorem6-samples", "0",
                   "--quiet"])
        assert rc == 2  # a usage error: the --certificate given does not fit --model
        assert f"was made for another model: its {words}" in capsys.readouterr().err


def test_rows_without_a_verdict_are_not_validated():
    rows = [{"mode": "late-entry-oracle", "layer": 2, "certified": None, "within_tolerance": True},
            {"mode": "late-entry", "layer": 2, "certified": True, "within_tolerance": True}]
    v = validate(rows, N)
    assert (v["tp"], v["settings"]) == (1, 1)


def test_oracle_mode_is_reported_but_not_validated(tiny_dir, tmp_path):
    cert = tmp_path / "certificate.json"
    cert.write_text(json.dumps(_certificate(max_entry=2, min_exit=3)))
    out = tmp_path / "out"
    assert main(["evaluate", "--model", str(tiny_dir / "model"), "--data", str(tiny_dir / "data.jsonl"),
                 "--modes", "late-entry", "late-entry-oracle", "--layers", "1,3", "--certificate", str(cert),
                 "--out", str(out), "--theorem6-samples", "0", "--quiet"]) == 0
    report = json.loads((out / "evaluation.json").read_text())
    oracle = [r for r in report["rows"] if r["mode"] == "late-entry-oracle"]
    assert [r["layer"] for r in oracle] == [1, 3] and all(r["certified"] is None for r in oracle)
    assert oracle[0]["accuracy"] == report["full"]["accuracy"]
    assert set(report["validation"]["paper"]) == {"late-entry", "all"}


def test_certificate_verdicts_follow_the_certify_rule():
    cert = _certificate(max_entry=3, min_exit=2, n=5, frozen=(2, 4))
    assert certificate_verdicts(cert, "late-entry", [1, 2, 3, 4, 5]) == {1: True, 2: True, 3: True, 4: False, 5: False}
    assert certificate_verdicts(cert, "early-exit", [1, 2, 5]) == {1: False, 2: True, 5: True}
    assert certificate_verdicts(cert, "freeze", [1, 2, 3, 4, 5]) == {1: False, 2: True, 3: False, 4: True, 5: False}
    with pytest.raises(ValueError, match="`mode` must be one of"):
        certificate_verdicts(cert, "sideways", [1])


def test_layer_grid_syntax():
    assert parse_layer_grid("all", 4) == [1, 2, 3, 4]
    assert parse_layer_grid("1,3-4", 4) == [1, 3, 4]
    assert parse_layer_grid("2-12:4", 12) == [2, 6, 10]
    with pytest.raises(ValueError, match=r"`layers` must lie in \[1, 4\], got \[5\]"):
        parse_layer_grid("5", 4)


def test_predict_times_each_forward_between_two_device_synchronisations(tiny_dir, monkeypatch):
    """CUDA forwards return before their kernels finish: the clock is read only after a
    synchronisation, before the forward starts and after it ends (batch_size 3: 3 batches)."""
    import types

    import skipit.empirical.predict as ev
    from skipit.empirical.data import load_examples
    from skipit.empirical.loading import load_model_and_processor

    model, processor, _ = load_model_and_processor(str(tiny_dir / "model"), device="cpu")
    examples, _ = load_examples(tiny_dir / "data.jsonl")
    events = []
    clock = iter(range(100))
    monkeypatch.setattr(ev, "synchronize", lambda device: events.append("sync"))
    monkeypatch.setattr(ev, "time", types.SimpleNamespace(perf_counter=lambda: events.append("clock") or next(clock)))
    pre = model.register_forward_pre_hook(lambda m, a: events.append("forward"))
    try:
        _, _, seconds = ev.predict(model, processor, examples, batch_size=3)
    finally:
        pre.remove()
    assert events == ["sync", "clock", "forward", "sync", "clock"] * 3
    assert seconds == 3  # each forward spans one tick of the fake clock


def test_synchronize_waits_for_cuda_devices_only(monkeypatch):
    from skipit.empirical.predict import synchronize

    waited = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: waited.append(device))
    synchronize(torch.device("cpu"))
    assert waited == []
    synchronize(torch.device("cuda", 1))
    assert waited == [torch.device("cuda", 1)]


def test_answers_are_normalised_before_matching():
    assert normalise_answer(" Yes.") == "yes" and normalise_answer("(B)") == "b"
    assert normalise_answer("Seven") != normalise_answer("7")


def test_change_rate_compares_free_form_answers_as_certify_does():
    """evaluate's answer-change rate is the rate certify's verification bounds: free-form answers
    that differ only in spaces ("a b" vs "ab") changed under vqa, exact and anls; a letter answer
    " Yes" vs "yes." unchanged (letters and digits only)."""
    from PIL import Image

    from skipit.empirical.data import Example
    from skipit.empirical.evaluate import _changed

    img = Image.new("RGB", (8, 8))
    examples = [Example(img, "q", "ab", metric=m) for m in ("vqa", "exact", "anls")]
    examples.append(Example(img, "q", "yes", metric="letter"))
    assert _changed(["a b", "a b", "a b", " Yes"], ["ab", "ab", "ab", "yes."], examples) == 0.75


def test_certify_answers_are_the_comparable_answers_evaluate_compares(tiny_dir):
    """certify's verification answers (one-token letters, and greedy free-form text) equal
    :func:`comparable_answers` of evaluate's predictions on the same examples."""
    from skipit.empirical.answers import comparable_answers
    from skipit.empirical.certificate import CertifySettings
    from skipit.empirical.certify_run import _answers
    from skipit.empirical.data import load_examples
    from skipit.empirical.evaluate import predict
    from skipit.empirical.loading import load_model_and_processor

    model, processor, _ = load_model_and_processor(str(tiny_dir / "model"), device="cpu")
    letters, _ = load_examples(str(tiny_dir / "data.jsonl"), limit=4)
    free = [dataclasses.replace(ex, metric="vqa") for ex in letters]
    for examples, steps in ((letters, 1), (free, 3)):
        settings = CertifySettings(batch_size=2, max_new_tokens=steps)
        preds, _, _ = predict(model, processor, examples, 2, max_new_tokens=steps)
        assert _answers(model, processor, examples, settings, None) == comparable_answers(preds, examples)


def test_format_table_marks_accuracy_drops():
    report = {"num_layers": 2, "num_examples": 10, "full": {"accuracy": 0.9},
              "settings": {"modes": ["late-entry"], "layers": [1, 2], "tolerance": 0.01},
              "rows": [{"mode": "late-entry", "layer": 1, "accuracy": 0.9, "within_tolerance": True,
                        "certified": None},
                       {"mode": "late-entry", "layer": 2, "accuracy": 0.5, "within_tolerance": False,
                        "certified": True}]}
    lines = format_table(report).splitlines()
    assert lines[-2].split()[:2] == ["2", "-"] and "0.500 *" in lines[-2] and "safe" in lines[-2]
    assert lines[-3].split() == ["1", "-", "-", "-", "0.900", "-"]  # within tolerance: no mark, no verdict
    assert lines[-1].startswith("(* accuracy more than the tolerance below the full model")


def test_demo_model_certify_then_evaluate(tmp_path, capsys):
    """The README's validation run, small: certify the 12-layer bundled demo model (demo-dense),
    then evaluate the certificate on the same bundled test examples."""
    from skipit.demo import DEMO_MODELS

    assert (DEMO_MODELS["demo-dense"] / "model.safetensors").exists(), "the bundled demo model is missing"
    assert main(["certify", "--model", "demo-dense", "--out", str(tmp_path / "cert"), "--samples", "32",
                 "--no-progress"]) == 0
    cert = tmp_path / "cert" / "certificate.json"
    out = tmp_path / "eval"
    assert main(["evaluate", "--model", "demo-dense", "--certificate", str(cert), "--samples", "32", "--layers", "1,6,12",
                 "--theorem6-samples", "1", "--theorem6-iters", "2", "--out", str(out), "--quiet"]) == 0
    report = json.loads((out / "evaluation.json").read_text())
    rows = {(r["mode"], r["layer"]): r for r in report["rows"]}
    full = report["full"]["accuracy"]
    assert rows[("late-entry", 1)]["accuracy"] == full and rows[("early-exit", 12)]["accuracy"] == full
    assert full > 0.5  # a trained model: chance is at most 1/2 on every question type
    assert report["validation"]["paper"]["all"]["settings"] == 6  # LE 6, 12; EE 1, 6; freeze 1, 6
    learned = json.loads(cert.read_text())["verification"]["learned"]
    assert [{k: r[k] for k in ("mode", "layer", "layers", "keep_ratio") if k in r} for r in report["verified_rows"]] == [
        {k: c[k] for k in ("mode", "layer", "layers", "keep_ratio") if k in c} for c in learned]  # every learned one
    assert report["model"]["source"] == "demo" and report["num_examples"] == 32
    capsys.readouterr()


def _verified_rows_at(changes, tolerance):
    """``_verified_rows`` of a 2-layer certificate whose three candidates changed ``changes`` of 20
    answers each (predictions given: no model runs)."""
    from PIL import Image

    from skipit.empirical.data import Example
    from skipit.empirical.evaluate import _verified_rows

    img = Image.new("RGB", (8, 8))
    examples = [Example(img, "q", "a", metric="letter") for _ in range(20)]
    full = ["a"] * 20
    keys = ["late-entry:2", "early-exit:1", "freeze:1"]
    done = {key: (["b"] * k + ["a"] * (20 - k), [True] * 20) for key, k in zip(keys, changes)}
    certificate = {"layers": [{"layer": 1}, {"layer": 2}],
                   "verification": {"tolerance": tolerance, "configs": [], "freeze_order": {"layers": [1]}}}
    return _verified_rows(None, None, examples, certificate, full, 4, None, lambda msg: None, done,
                          lambda correct: None)


def test_a_change_rate_exactly_at_the_tolerance_is_within_it():
    """``within_change_tolerance`` is ``rate <= tau``: 1 change in 20 examples at tau = 0.05 is
    within (the exact tie), 2 in 20 is not, 0 in 20 is."""
    rows = _verified_rows_at([1, 2, 0], 0.05)
    assert [r["changed_rate"] for r in rows] == [0.05, 0.1, 0.0]
    assert [r["within_change_tolerance"] for r in rows] == [True, False, True]


def test_evaluate_json_prints_what_evaluation_json_holds(tiny_dir, tmp_path, capsys):
    """``skipit evaluate --json``: stdout is one JSON object with the keys and values of the
    ``evaluation.json`` it writes (and nothing else on stdout)."""
    out = tmp_path / "out"
    rc = main(["evaluate", "--model", str(tiny_dir / "model"), "--data", str(tiny_dir / "data.jsonl"),
               "--layers", "2", "--modes", "late-entry", "--out", str(out), "--batch-size", "4",
               "--theorem6-samples", "0", "--quiet", "--json"])
    assert rc == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == json.loads((out / "evaluation.json").read_text())
    assert printed["rows"][0]["mode"] == "late-entry" and printed["rows"][0]["layer"] == 2


# MME-like rows: images a, b of a perception category, c, d of a cognition one, two questions each,
# interleaved so that a pairing by position rather than by image gives other sums.
MME_ROWS = [("a", "existence", 1), ("c", "code_reasoning", 1), ("b", "existence", 1), ("d", "code_reasoning", 1),
            ("a", "existence", 2), ("c", "code_reasoning", 2), ("b", "existence", 2), ("d", "code_reasoning", 2)]
MME_RIGHT = {  # per setting, the (image, question) pairs answered right
    "full": {(i, q) for i, _, q in MME_ROWS},
    "late-entry:2": {("a", 1), ("a", 2), ("c", 1), ("d", 1)},
    "early-exit:2": {("a", 1), ("b", 1), ("c", 1), ("c", 2)},
    "freeze:2": {("a", 1), ("b", 2), ("c", 1), ("c", 2), ("d", 1), ("d", 2)},
    "freeze:1,2": {("a", 1), ("a", 2), ("b", 1), ("b", 2), ("c", 1)},
}
MME_SUMS = {  # (perception, cognition): per category the mean over its images of acc + acc+, by hand
    "full": (200.0, 200.0),
    "late-entry:2": ((200 + 0) / 2, (50 + 50) / 2),
    "early-exit:2": ((50 + 50) / 2, (200 + 0) / 2),
    "freeze:2": ((50 + 50) / 2, (200 + 200) / 2),
    "freeze:1,2": ((200 + 200) / 2, (50 + 0) / 2),
}


def _mme_folder(root):
    datasets = pytest.importorskip("datasets")
    import io

    from PIL import Image

    def png(name):
        buf = io.BytesIO()
        Image.new("RGB", (32, 32), (40 * "abcd".index(name), 90, 200)).save(buf, format="PNG")
        return {"bytes": buf.getvalue(), "path": None}

    rows = {"image": [png(i) for i, _, _ in MME_ROWS],
            "question": [f"Question {q} on {i}? Please answer yes or no." for i, _, q in MME_ROWS],
            "answer": ["Yes" if q == 1 else "No" for _, _, q in MME_ROWS],
            "category": [c for _, c, _ in MME_ROWS], "question_id": [f"{i}.png" for i, _, _ in MME_ROWS]}
    ds = datasets.Dataset.from_dict(rows).cast_column("image", datasets.Image())
    datasets.DatasetDict({"test": ds}).save_to_disk(root / "mme")
    return root / "mme"


def _scripted_predict(model, processor, examples, batch_size=16, mode=None, layer=None, adapter=None,
                      context=None, **_):
    """predict with each setting's answers from MME_RIGHT, by the example's image and question (the
    one candidate run through a context here is freeze 1,2)."""
    setting = "freeze:1,2" if context is not None else "full" if mode is None else f"{mode}:{layer}"
    answers, correct = [], []
    for ex in examples:
        image, q = ex.meta["question_id"][0], int(ex.question.split()[1])
        right = (image, q) in MME_RIGHT[setting]
        answers.append(ex.answer if right else {"yes": "no", "no": "yes"}[ex.answer])
        correct.append(right)
    return answers, correct, 0.0


def test_evaluate_reports_mme_sums_of_each_setting_on_its_own_answers(tiny_dir, tmp_path, monkeypatch, capsys):
    """``--task mme``: the full model, every row and every verified candidate carry MME's own sums
    of their own per-question scores, paired by image (a sum taken from another setting's answers,
    or pairing questions by position, gives other numbers); the table prints them."""
    import skipit.empirical.evaluate as evaluate_module

    monkeypatch.setattr(evaluate_module, "predict", _scripted_predict)
    cert = _certificate(max_entry=2, min_exit=3, configs=[_config("freeze", [1, 2], True)])
    cert["verification"]["learned"] = [{"mode": "freeze", "layers": layers, "learned_rate": 0.0, "flops_fraction": 0.9}
                                       for layers in ([2], [1, 2])]
    (tmp_path / "certificate.json").write_text(json.dumps(cert))
    out = tmp_path / "out"
    assert main(["evaluate", "--model", str(tiny_dir / "model"), "--data", str(_mme_folder(tmp_path)),
                 "--task", "mme", "--layers", "2", "--certificate", str(tmp_path / "certificate.json"),
                 "--out", str(out), "--theorem6-samples", "0", "--quiet"]) == 0
    report = json.loads((out / "evaluation.json").read_text())
    assert report["benchmark"] == {"task": "mme", "title": "MME"}
    settings = {"full": report["full"], **{f"{r['mode']}:{r['layer']}": r for r in report["rows"]},
                **{"freeze:" + ",".join(map(str, r["layers"])): r for r in report["verified_rows"]}}
    assert set(settings) == set(MME_SUMS)
    for name, entry in settings.items():
        perception, cognition = MME_SUMS[name]
        accuracy = len(MME_RIGHT[name]) / 8
        assert entry["benchmark_score"] == {"accuracy": accuracy, "percent": 100 * accuracy, "perception": perception,
                                            "cognition": cognition, "total": perception + cognition}, name
        assert entry["accuracy"] == accuracy
    lines = capsys.readouterr().out.split("MME's own score per setting (beside the accuracies above):\n")[1].splitlines()
    assert lines[0].split() == ["setting", "perception", "cognition", "total"]
    table = {" ".join(line.split()[:-3]): line.split()[-3:] for line in lines[1:lines.index("")]}
    labels = {"full model": "full", "late-entry L=2": "late-entry:2", "early-exit L=2": "early-exit:2",
              "freeze 2": "freeze:2", "freeze 1,2": "freeze:1,2"}
    assert table == {label: [f"{x:.1f}" for x in (*MME_SUMS[name], sum(MME_SUMS[name]))]
                     for label, name in labels.items()}


def test_mme_sums_are_not_computed_when_a_question_of_an_image_is_missing(tiny_dir, tmp_path, monkeypatch, capsys):
    """Examples holding one question of an image (the other dropped as bad, or part of MME): the
    report says why there is no MME score instead of ending the run, and no setting carries one;
    without a task there is no benchmark entry."""
    import skipit.empirical.evaluate as evaluate_module
    from skipit.empirical.data import load_examples
    from skipit.empirical.evaluate import evaluate
    from skipit.empirical.evaluate_report import format_table
    from skipit.empirical.loading import load_model_and_processor

    monkeypatch.setattr(evaluate_module, "predict", _scripted_predict)
    examples, _ = load_examples(str(_mme_folder(tmp_path)), task="mme", limit=7)
    model, processor, _ = load_model_and_processor(str(tiny_dir / "model"), device="cpu")
    report = evaluate(model, processor, examples, modes=("late-entry",), layers=(2,), theorem6_examples=0,
                      statistics=False, task="mme")
    assert report["benchmark"] == {"task": "mme", "title": "MME", "unavailable": "MME scores image pairs: image "
                                   "'d.png' of 'code_reasoning' has 1 question(s), expected 2"}
    assert "benchmark_score" not in report["full"] and all("benchmark_score" not in r for r in report["rows"])
    assert "MME's own score: not computed (MME scores image pairs" in format_table(report)
    no_task = evaluate(model, processor, examples, modes=("late-entry",), layers=(2,), theorem6_examples=0,
                       statistics=False)
    assert "benchmark" not in no_task and "benchmark_score" not in no_task["full"]
