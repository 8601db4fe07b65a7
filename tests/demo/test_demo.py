"""The bundled demo VLMs and their digits VQA data (skipit.demo)."""

import hashlib
import json
import math

import numpy as np
import pytest

from skipit.demo import (
    BUNDLED_DATASETS,
    CHOICE_LETTERS,
    DEMO_DATA,
    DEMO_MODELS,
    QUESTION_TYPES,
    digits_vqa_records,
    export_jsonl,
    load_digits_vqa,
    split_indices,
)

DENSE_DIR = DEMO_MODELS["demo-dense"]
N_DIGITS = 1797
STD_ERRORS = 3.0
"""Margin, in binomial standard errors on the subset, below the card's test accuracy."""


def _digit_labels():
    from sklearn.datasets import load_digits

    return load_digits().target


def test_split_is_disjoint_and_covers_every_image_once():
    splits = split_indices()
    together = np.concatenate([splits["train"], splits["val"], splits["test"]])
    assert len(together) == N_DIGITS
    assert np.array_equal(np.sort(together), np.arange(N_DIGITS))
    assert (len(splits["train"]), len(splits["val"]), len(splits["test"])) == (1258, 180, 359)


def test_test_examples_use_only_test_images():
    test_images = {r["image_index"] for r in digits_vqa_records("test")}
    train_images = {r["image_index"] for r in digits_vqa_records("train")}
    val_images = {r["image_index"] for r in digits_vqa_records("val")}
    assert test_images == set(split_indices()["test"].tolist())
    assert not test_images & train_images and not test_images & val_images and not train_images & val_images


def test_answers_follow_from_the_digit_label():
    labels = _digit_labels()
    for r in digits_vqa_records("val"):
        label = int(labels[r["image_index"]])
        if r["type"] == "digit":
            assert r["answer"] == str(label)
        elif r["type"] == "even":
            assert r["answer"] == ("yes" if label % 2 == 0 else "no")
        elif r["type"] == "greater":
            k = int(r["question"].split("than ")[1].rstrip("?"))
            assert 0 <= k <= 8
            assert r["answer"] == ("yes" if label > k else "no")
        else:
            options = r["question"].split("? ")[1].split()[1::2]  # "A) 3 B) 7 C) 1 D) 9"
            assert len(set(options)) == 4 and r["choices"] == list(CHOICE_LETTERS)
            assert options[CHOICE_LETTERS.index(r["answer"])] == str(label)


def test_load_digits_vqa_is_deterministic_and_seed_only_changes_questions():
    a = load_digits_vqa("val", seed=0)
    b = load_digits_vqa("val", seed=0)
    c = load_digits_vqa("val", seed=1)
    assert [(e["question"], e["answer"], e["type"]) for e in a] == [(e["question"], e["answer"], e["type"]) for e in b]
    assert all(np.array_equal(np.asarray(x["image"]), np.asarray(y["image"])) for x, y in zip(a, b))
    assert [e["question"] for e in a] != [e["question"] for e in c]
    assert all(np.array_equal(np.asarray(x["image"]), np.asarray(y["image"])) for x, y in zip(a, c))
    assert [e["type"] for e in a[:4]] == list(QUESTION_TYPES)


def test_question_types_filter_and_bad_arguments_raise():
    only = load_digits_vqa("val", question_types=["even"])
    assert len(only) == 180 and {e["type"] for e in only} == {"even"}
    with pytest.raises(ValueError, match="`split` must be one of"):
        load_digits_vqa("dev")
    with pytest.raises(ValueError, match="`question_types` must be among"):
        load_digits_vqa("test", question_types=["odd"])


def test_bundled_datasets_name_the_held_out_splits_of_each_model():
    from skipit.demo.questions import VISUAL_TYPES

    assert set(BUNDLED_DATASETS) == {"digits-test", "digits-val", "digits-reason-test", "digits-reason-val"}
    assert len(load_digits_vqa(**BUNDLED_DATASETS["digits-test"])) == 359 * len(QUESTION_TYPES)
    assert len(digits_vqa_records(**BUNDLED_DATASETS["digits-reason-val"])) == 180 * len(VISUAL_TYPES)
    assert set(DEMO_DATA) == set(DEMO_MODELS)
    for model, data in DEMO_DATA.items():
        assert BUNDLED_DATASETS[data]["model"] == model and BUNDLED_DATASETS[data]["split"] == "test"


def test_export_jsonl_round_trips(tmp_path):
    from PIL import Image

    examples = load_digits_vqa("test")[:8]
    path = export_jsonl(examples, tmp_path / "out")
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(lines) == 8
    for ex, line in zip(examples, lines):
        assert (line["question"], line["answer"], line["choices"]) == (ex["question"], ex["answer"], ex["choices"])
        back = Image.open(path.parent / line["image"])
        assert np.array_equal(np.asarray(back), np.asarray(ex["image"]))


def test_export_jsonl_rejects_an_example_without_answer(tmp_path):
    ex = dict(load_digits_vqa("test")[0])
    del ex["answer"]
    with pytest.raises(ValueError, match="example 0 lacks the field 'answer'"):
        export_jsonl([ex], tmp_path)


@pytest.fixture(scope="module")
def demo():
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from skipit.demo import load_demo_model

    model, processor = load_demo_model(name="demo-dense")
    metrics = json.loads((DENSE_DIR / "metrics.json").read_text())
    return model, processor, metrics


def test_dense_model_is_a_llava_with_12_decoder_layers_under_20_mb(demo):
    from transformers import LlavaForConditionalGeneration

    model, processor, _ = demo
    assert isinstance(model, LlavaForConditionalGeneration)
    assert len(model.model.language_model.layers) == 12
    assert (DENSE_DIR / "model.safetensors").stat().st_size <= 20 * 2**20
    tok = processor.tokenizer
    for answer in [*map(str, range(10)), "yes", "no", *CHOICE_LETTERS]:
        assert len(tok(answer, add_special_tokens=False)["input_ids"]) == 1, answer


def test_dense_model_reaches_its_card_accuracy_on_the_fixed_test_subset(demo):
    from skipit.demo.train_dense import TEST_SUBSET, deterministic, evaluate_examples

    model, processor, metrics = demo
    examples = load_digits_vqa("test", seed=0)[:TEST_SUBSET]
    with deterministic(seed=0, threads=1):
        acc = evaluate_examples(model, processor, examples)
    recorded = metrics["test_subset"]
    for qtype in QUESTION_TYPES:
        n = sum(e["type"] == qtype for e in examples)
        card = metrics["test"][qtype]
        margin = STD_ERRORS * math.sqrt(max(card * (1 - card), 1 / n) / n)
        assert acc[qtype] >= card - margin, (qtype, acc[qtype], card)
        # the same numbers as when the weights were written, up to one borderline example
        assert abs(acc[qtype] - recorded[qtype]) <= 1 / n + 1e-12, (qtype, acc[qtype], recorded[qtype])
    assert metrics["test"]["digit"] >= 0.9


def _weights_sha(directory):
    return hashlib.sha256((directory / "model.safetensors").read_bytes()).hexdigest()


def test_short_dense_training_run_is_bit_identical(tmp_path):
    pytest.importorskip("torch")
    from skipit.demo.train_dense import main

    tiny = ["--no-eval", "--max-steps", "2", "--set", "text_layers=2", "--set", "text_hidden=32", "--set", "text_intermediate=64",
            "--set", "vision_layers=1", "--set", "vision_hidden=32", "--set", "vision_intermediate=64",
            "--set", "batch_size=8", "--set", "warmup=1", "--set", "augment=false",
            "--set", "finetune_steps=1", "--set", "finetune_warmup=1"]
    main(["--out", str(tmp_path / "a"), *tiny])
    main(["--out", str(tmp_path / "b"), *tiny])
    main(["--out", str(tmp_path / "c"), *tiny, "--set", "seed=1"])
    assert _weights_sha(tmp_path / "a") == _weights_sha(tmp_path / "b")
    assert _weights_sha(tmp_path / "a") != _weights_sha(tmp_path / "c")


def test_train_rejects_unknown_config_keys_and_bad_type_weights(tmp_path):
    pytest.importorskip("torch")
    from skipit.demo.train_dense import train

    with pytest.raises(ValueError, match=r"unknown config keys \['text_depth'\]"):
        train({"text_depth": 3})
    with pytest.raises(ValueError, match=r"`type_weights` must be 4 non-negative weights for \('digit'"):
        train({"type_weights": [1.0, -1.0, 0.0, 0.0]})
    with pytest.raises(ValueError, match=r"`finetune_type_weights` must be 5 non-negative weights .*'choice_text'"):
        train({"finetune_type_weights": [1.0, 0.0, 0.0, 0.0]})


def test_deterministic_restores_the_callers_torch_settings():
    torch = pytest.importorskip("torch")
    from skipit.demo.train_dense import deterministic

    threads, flag = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    state = torch.get_rng_state()
    with deterministic(seed=0, threads=1):
        assert torch.get_num_threads() == 1 and torch.are_deterministic_algorithms_enabled()
        inside = torch.rand(3)
    with deterministic(seed=0, threads=1):
        assert torch.equal(torch.rand(3), inside)
    assert (torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()) == (threads, flag)
    assert torch.equal(torch.get_rng_state(), state)


def test_dense_model_card_states_the_accuracy_in_metrics_json():
    metrics = json.loads((DENSE_DIR / "metrics.json").read_text())
    card = (DENSE_DIR / "MODEL_CARD.md").read_text()
    test_row = next(line for line in card.splitlines() if line.startswith("| test (1436)"))
    for qtype in QUESTION_TYPES:
        assert f"**{metrics['test'][qtype]:.3f}**" in test_row, qtype
    figures = json.loads((DENSE_DIR / "measurements.json").read_text())
    assert f"{figures['freeze_last_half_changed']:.1%}" in card
    assert figures["questions"] == 1436 and figures["layers"] == 12


def test_load_demo_model_errors_name_the_fix(tmp_path):
    pytest.importorskip("torch")
    from skipit.demo import load_demo_model

    with pytest.raises(FileNotFoundError, match=r"no demo model in .*python -m skipit.demo.train --model demo-dense --out"):
        load_demo_model(model_dir=tmp_path, name="demo-dense")
    with pytest.raises(ValueError, match=r"`name` must be one of \('demo', 'demo-dense'\), got 'demo-x'"):
        load_demo_model(name="demo-x")
    with pytest.raises(ValueError, match=r"`dtype` must name a torch dtype such as 'float32', got 'float33'"):
        load_demo_model(dtype="float33")


def test_load_demo_model_in_bfloat16_keeps_the_digit_answers(demo):
    import torch

    from skipit.demo import load_demo_model
    from skipit.demo.train_dense import deterministic, evaluate_examples

    model16, processor = load_demo_model(dtype="bfloat16", name="demo-dense")
    assert next(model16.parameters()).dtype == torch.bfloat16
    examples = load_digits_vqa("test", question_types=["digit"])[:40]
    with deterministic(seed=0, threads=1):
        acc16 = evaluate_examples(model16, processor, examples)["digit"]
        acc32 = evaluate_examples(demo[0], processor, examples)["digit"]
    assert acc16 >= acc32 - 0.1


def test_reasoning_answers_follow_from_the_digit_label():
    from skipit.demo.questions import NUMBER_WORDS, number

    labels = _digit_labels()
    value = {w: i for i, w in enumerate(NUMBER_WORDS)}

    def read(text):
        words = text.split()
        return -value[words[1]] if words[0] == "minus" else value[" ".join(words)]

    for r in digits_vqa_records(**BUNDLED_DATASETS["digits-reason-val"]):
        d, q, a = int(labels[r["image_index"]]), r["question"].rstrip("?"), r["answer"]
        words = q.split()
        if r["type"] == "digit":
            assert a == number(d)
        elif r["type"] == "even":
            assert a == ("yes" if d % 2 == 0 else "no")
        elif r["type"] == "greater":
            assert a == ("yes" if d > value[words[-1]] else "no")
        elif r["type"] == "choice":
            options = q.split("? ")[1].split()[1::2]  # "A) three B) seven ..."
            assert len(set(options)) == 4 and options[CHOICE_LETTERS.index(a)] == number(d)
        elif r["type"] == "plus":
            assert read(a) == d + value[words[-1]]
        elif r["type"] == "minus":
            assert read(a) == d - value[words[-1]]
            assert (r["metric"] == "exact") and (len(a.split()) == 2) == (d < value[words[-1]])
        elif r["type"] == "larger":
            k = value[words[-1]]
            assert k != d and a == ("the digit" if d > k else number(k))
        else:  # sum_greater: "is the digit plus k greater than m"
            assert a == ("yes" if d + value[words[4]] > value[words[-1]] else "no")
        assert r["metric"] == ("exact" if r["type"] in ("minus", "larger") else "letter")


def test_number_words_cover_every_answer_and_reject_the_rest():
    from skipit.demo.questions import number

    assert number(0) == "zero" and number(18) == "eighteen" and number(-9) == "minus nine"
    with pytest.raises(ValueError, match=r"`value` must be in -18..18, got 19"):
        number(19)


def _tiny_demo_args(out, *extra):
    steps = [f"--set={k}_steps=2" for k in ("vision", "lm", "align", "tune")]
    warm = [f"--set={k}_warmup=1" for k in ("vision", "lm", "align", "tune")]
    size = ["--set=text_layers=2", "--set=text_hidden=32", "--set=text_intermediate=64", "--set=vision_layers=1",
            "--set=vision_hidden=32", "--set=vision_intermediate=64", "--set=batch_size=8", "--set=augment=false"]
    return ["--out", str(out), "--no-eval", *steps, *warm, *size, *extra]


def test_short_demo_training_run_is_bit_identical(tmp_path):
    pytest.importorskip("torch")
    from skipit.demo.train import main

    main(_tiny_demo_args(tmp_path / "a"))
    main(_tiny_demo_args(tmp_path / "b"))
    main(_tiny_demo_args(tmp_path / "c", "--set=seed=1"))
    assert _weights_sha(tmp_path / "a") == _weights_sha(tmp_path / "b")
    assert _weights_sha(tmp_path / "a") != _weights_sha(tmp_path / "c")


def test_demo_alignment_changes_only_the_projector(tmp_path):
    """Phase 2 trains the projector alone: with every other phase at 0 steps, only the projector's
    weights differ from a run that skips alignment too."""
    pytest.importorskip("torch")
    from skipit.demo.train import train

    base = {"vision_steps": 0, "lm_steps": 0, "tune_steps": 0, "align_warmup": 1, "batch_size": 4,
            "text_layers": 2, "text_hidden": 32, "text_intermediate": 64, "augment": False}
    before, _, _ = train({**base, "align_steps": 0}, evaluate=False, log=lambda m: None)
    after, _, _ = train({**base, "align_steps": 2}, evaluate=False, log=lambda m: None)
    import torch

    moved = {n for (n, p), q in zip(before.named_parameters(), after.parameters()) if not torch.equal(p, q)}
    assert moved and all(n.startswith("model.multi_modal_projector") for n in moved), sorted(moved)


def test_demo_train_rejects_unknown_keys_and_bad_weights():
    pytest.importorskip("torch")
    from skipit.demo.train import train

    with pytest.raises(ValueError, match=r"unknown config keys \['text_depth'\]"):
        train({"text_depth": 3})
    with pytest.raises(ValueError, match=r"`tune_type_weights` must be 8 non-negative weights"):
        train({"tune_type_weights": [1.0]})
    with pytest.raises(ValueError, match=r"`tune_text_fraction` must be in \[0, 1\), got 1.0"):
        train({"tune_text_fraction": 1.0})


DEMO_DIR = DEMO_MODELS["demo"]
DEMO_SAMPLE_IMAGES = 40
"""Held-out test images scored by the accuracy test (8 questions each)."""


@pytest.fixture(scope="module")
def reasoner():
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from skipit.demo import load_demo_model

    model, processor = load_demo_model(name="demo")
    metrics = json.loads((DEMO_DIR / "metrics.json").read_text())
    return model, processor, metrics


def test_demo_is_the_default_and_a_llava_with_16_decoder_layers_under_20_mb(reasoner):
    from transformers import LlavaForConditionalGeneration

    from skipit.demo import DEFAULT_DEMO, DEMO_MODEL_DIR
    from skipit.demo.questions import NUMBER_WORDS
    from skipit.empirical.loading import resolve_model

    model, processor, _ = reasoner
    assert DEFAULT_DEMO == "demo" and DEMO_MODEL_DIR == DEMO_DIR
    assert resolve_model(None) == resolve_model("demo") and resolve_model(None).location == str(DEMO_DIR)
    assert resolve_model("demo-dense").location == str(DENSE_DIR)
    assert isinstance(model, LlavaForConditionalGeneration)
    assert len(model.model.language_model.layers) >= 16
    assert (DEMO_DIR / "model.safetensors").stat().st_size <= 20 * 2**20
    tok = processor.tokenizer
    for word in [*NUMBER_WORDS, "yes", "no", *CHOICE_LETTERS]:
        assert len(tok(word, add_special_tokens=False)["input_ids"]) == 1, word
    assert tok("is the digit even?")["input_ids"][0] == tok.bos_token_id
    assert model.generation_config.eos_token_id == tok.eos_token_id


def test_demo_reaches_its_card_accuracy_on_held_out_images(reasoner):
    """Scored as skipit scores the bundled set (one token for letter questions, greedy generation
    to </s> for the others), on the first DEMO_SAMPLE_IMAGES test images."""
    from skipit.demo.questions import VISUAL_TYPES
    from skipit.demo.train_dense import deterministic
    from skipit.empirical.answers import predict_answers
    from skipit.empirical.data import load_examples
    from skipit.empirical.metrics import score_one

    model, processor, metrics = reasoner
    n = DEMO_SAMPLE_IMAGES * len(VISUAL_TYPES)
    examples, _ = load_examples("digits-reason-test", limit=n)
    types = [r["type"] for r in digits_vqa_records(**BUNDLED_DATASETS["digits-reason-test"])[:n]]
    with deterministic(seed=0, threads=1):
        answers = predict_answers(model, processor, examples, batch_size=64)
    scores = [score_one(a, ex.answers, ex.metric) for a, ex in zip(answers, examples)]
    for qtype in VISUAL_TYPES:
        got = [s for s, t in zip(scores, types) if t == qtype]
        card = metrics["test"][qtype]
        margin = STD_ERRORS * math.sqrt(max(card * (1 - card), 1 / len(got)) / len(got))
        assert sum(got) / len(got) >= card - margin, (qtype, sum(got) / len(got), card)
    assert metrics["test"]["all"] >= 0.9
    assert sum(scores) / n >= metrics["test"]["all"] - STD_ERRORS * math.sqrt(0.1 * 0.9 / DEMO_SAMPLE_IMAGES)


def test_demo_card_states_its_accuracy_and_measurements():
    from skipit.demo.measure import FIGURES_FILE
    from skipit.demo.questions import VISUAL_TYPES

    metrics = json.loads((DEMO_DIR / "metrics.json").read_text())
    figures = json.loads((DEMO_DIR / FIGURES_FILE).read_text())
    card = (DEMO_DIR / "MODEL_CARD.md").read_text()
    row = next(line for line in card.splitlines() if line.startswith("| test (2872)"))
    for qtype in VISUAL_TYPES:
        assert f"{metrics['test'][qtype]:.3f}" in row, qtype
    assert f"{figures['freeze_last_half_changed']:.1%}" in card
    assert figures["questions"] == 2872 and figures["layers"] == 16
