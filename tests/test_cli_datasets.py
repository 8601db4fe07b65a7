"""``skipit certify``, ``evaluate`` and ``skip`` end to end on Hugging Face datasets (issue 13's "Done means").

Each of the three forms (a ``save_to_disk`` directory, a parquet file, a hub id in a fake cache)
holds the same six digit rows in two layouts: multiple choice (an ``options`` column, scored by
the one-token letter) and free form (10 reference answers a row, the VQA accuracy of a greedy
3-token generation). The models are tiny saved LLaVAs: ``plain`` (random weights, seed 0) for
free-form data, and ``letter`` (the same weights, its LM head answering "a" wherever ``plain``
answers its usual word) so that letter scoring has a nonzero, known accuracy. The free-form
references are written from ``plain``'s own 3-token answers, so each row's VQA accuracy is known
exactly (:data:`MATCHES`, :data:`FREE_FORM_ACCURACY`).
"""

from __future__ import annotations

import json
import os

import pytest

datasets = pytest.importorskip("datasets")

from skipit.cli import main  # noqa: E402
from tests.empirical.hf_helpers import (  # noqa: E402
    WORDS,
    digits,
    fake_hub_cache,
    free_form_dataset,
    mcq_dataset,
)
from tests.test_cli import _restore_torch_threads  # noqa: E402, F401 (autouse: torch threads restored)

ROWS = 6
FORMS = ("saved", "parquet", "hub")
KINDS = ("mcq", "free")
MCQ_ANSWERS = ("0", "1", "0", "1", "2", "3")
"""Option indices of the MCQ rows: letters A B A B C D; a model answering "a" gets 2 of 6."""
LETTER_ACCURACY = 2 / 6
MATCHES = (4, 3, 2, 1, 0, 0)
"""References (of 10) equal to the row's own 3-token answer: VQA accuracy 1, 0.9, 0.6, 0.3, 0, 0."""
FREE_FORM_ACCURACY = (1.0 + 0.9 + 0.6 + 0.3) / ROWS
MAX_NEW_TOKENS = "3"
QUIET = ["-q", "--batch-size", "3"]
EVALUATE_FAST = ["--layers", "2", "--theorem6-samples", "0"]


def _load(model_dir):
    from skipit.empirical.loading import load_model_and_processor

    model, processor, _ = load_model_and_processor(model_dir, device="cpu")
    return model, processor


def _answers(model_dir, data, context=None):
    """The examples of ``data`` and ``model_dir``'s normalised answers to them (3 tokens for free form)."""
    from skipit.empirical.answers import predict_answers
    from skipit.empirical.data import load_examples

    model, processor = _load(model_dir)
    examples, _ = load_examples(data)
    ctx = None if context is None else (lambda: context(model))
    return examples, predict_answers(model, processor, examples, max_new_tokens=int(MAX_NEW_TOKENS), context=ctx)


def _letter_model(plain_dir, mcq_data, directory):
    """``plain`` with the LM-head row of "a" set to 10 x the row of the word ``plain`` answers the
    MCQ rows with: where that word had the largest (positive) logit, "a" now has."""
    import torch

    from skipit.empirical.data import load_examples
    from skipit.empirical.evaluate import predict
    from skipit.empirical.testing import save_tiny_vlm, tiny_vocab

    model, processor = _load(plain_dir)
    examples, _ = load_examples(mcq_data)
    words, _, _ = predict(model, processor, examples)
    vocab = tiny_vocab()
    with torch.no_grad():
        head = model.get_output_embeddings().weight
        head[vocab["a"]] = 10 * head[vocab[max(set(words), key=words.count)]]
    return save_tiny_vlm("llava", directory, model=model)


def _free_form_references(answers, labels):
    """Row i: its own answer ``MATCHES[i]`` times, then other texts up to 10 references."""
    refs = []
    for answer, label, k in zip(answers, labels, MATCHES):
        others = [WORDS[label], str(label), "a digit", "unsure", "seven cats"] * 2
        refs.append([answer] * k + others[:10 - k])
    return refs


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """The two models and, for each layout, the dataset in the saved and parquet forms."""
    from skipit.empirical.testing import save_tiny_vlm

    root = tmp_path_factory.mktemp("cli-datasets")
    plain = save_tiny_vlm("llava", root / "plain", seed=0)
    mcq = mcq_dataset(ROWS, answers=MCQ_ANSWERS)
    mcq.to_parquet(str(root / "mcq.parquet"))
    mcq.save_to_disk(root / "saved-mcq")
    letter = _letter_model(plain, str(root / "mcq.parquet"), root / "letter")
    draft = free_form_dataset(ROWS)
    draft.to_parquet(str(root / "draft.parquet"))
    _, answers = _answers(plain, str(root / "draft.parquet"))
    free = free_form_dataset(ROWS, answers=_free_form_references(answers, digits(ROWS)[1]))
    free.to_parquet(str(root / "free.parquet"))
    free.save_to_disk(root / "saved-free")
    return {"root": root, "models": {"mcq": letter, "free": plain}, "datasets": {"mcq": mcq, "free": free},
            "answers": answers}


def _data_argument(world, form, kind):
    root = world["root"]
    return {"saved": str(root / f"saved-{kind}"), "parquet": str(root / f"{kind}.parquet"),
            "hub": f"org/digits-{kind}"}[form]


def _read(path):
    with open(path) as fh:
        return json.load(fh)


@pytest.fixture(scope="module")
def runs(world):
    """``{(form, kind): (certificate, evaluation)}`` of ``skipit certify`` and ``skipit evaluate``
    on every form and layout (the hub forms inside the fake cache); torch's thread count is restored after."""
    import torch

    out, threads = {}, torch.get_num_threads()
    try:
        with pytest.MonkeyPatch.context() as mp:
            fake_hub_cache(world["root"], mp, {f"org/digits-{kind}": world["datasets"][kind] for kind in KINDS})
            for form in FORMS:
                for kind in KINDS:
                    base = ["--model", world["models"][kind], "--data", _data_argument(world, form, kind), *QUIET]
                    if kind == "free":
                        base += ["--max-new-tokens", MAX_NEW_TOKENS]
                    cert_dir, eval_dir = (world["root"] / f"cert-{form}-{kind}",
                                          world["root"] / f"eval-{form}-{kind}")
                    assert main(["certify", *base, "--out", str(cert_dir)]) == 0, (form, kind)
                    assert main(["evaluate", *base, *EVALUATE_FAST, "--out", str(eval_dir)]) == 0, (form, kind)
                    out[form, kind] = (_read(cert_dir / "certificate.json"), _read(eval_dir / "evaluation.json"))
    finally:
        torch.set_num_threads(threads)
    return out


@pytest.mark.parametrize("form", FORMS)
def test_mcq_data_in_every_form_is_certified_and_evaluated_by_the_one_token_letter(runs, form):
    certificate, evaluation = runs[form, "mcq"]
    assert certificate["data"]["num_examples"] == ROWS and evaluation["data"]["num_examples"] == ROWS
    assert certificate["data"]["metric"] == "letter" and evaluation["data"]["metric"] == "letter"
    assert certificate["data"]["columns"]["choices"] == "options"
    assert certificate["verification"]["answer"] == "one-token argmax at the answer position"
    assert evaluation["full"]["accuracy"] == pytest.approx(LETTER_ACCURACY)  # "a" is right on the two A rows


@pytest.mark.parametrize("form", FORMS)
def test_free_form_data_in_every_form_is_scored_by_the_vqa_accuracy_of_3_generated_tokens(runs, form):
    certificate, evaluation = runs[form, "free"]
    assert certificate["data"]["num_examples"] == ROWS and evaluation["data"]["num_examples"] == ROWS
    assert certificate["data"]["metric"] == "vqa" and evaluation["data"]["metric"] == "vqa"
    assert certificate["settings"]["max_new_tokens"] == 3 and evaluation["data"]["max_new_tokens"] == 3
    assert certificate["verification"]["answer"].startswith("greedy generation of up to 3 tokens")
    assert evaluation["full"]["accuracy"] == pytest.approx(FREE_FORM_ACCURACY)


def test_evaluate_accuracy_is_the_score_of_the_models_own_answers(world, runs):
    """The reported full-model accuracy equals ``answers.score`` of the answers computed here."""
    from skipit.empirical.answers import score

    for kind in KINDS:
        examples, answers = _answers(world["models"][kind], _data_argument(world, "parquet", kind))
        assert runs["parquet", kind][1]["full"]["accuracy"] == pytest.approx(score(answers, examples)), kind
    assert set(answers) != {""} and answers == world["answers"]


def test_the_fingerprint_follows_the_rows_not_the_form(runs):
    """data.sha256 is the same for the same rows saved, as parquet or in the cache, and differs
    between the MCQ and the free-form rows; so does the source's own sha256."""
    for key in ("sha256", "file_sha256"):
        for kind in KINDS:
            assert len({runs[form, kind][0]["data"][key] for form in FORMS}) == 1, (key, kind)
        assert runs["saved", "mcq"][0]["data"][key] != runs["saved", "free"][0]["data"][key], key


def test_the_hub_id_is_read_from_the_fake_cache(runs):
    assert runs["hub", "mcq"][0]["data"]["source"] == "org/digits-mcq[test]"
    assert runs["hub", "free"][1]["data"]["source"] == "org/digits-free[test]"


def test_a_row_without_question_is_named_by_index_and_skipped_with_skip_bad(world, tmp_path, capsys):
    bad = world["datasets"]["free"].map(lambda row, i: {"question": ""} if i == 2 else {}, with_indices=True)
    bad.to_parquet(str(tmp_path / "bad.parquet"))
    argv = ["evaluate", "--model", world["models"]["free"], "--data", str(tmp_path / "bad.parquet"),
            "--max-new-tokens", MAX_NEW_TOKENS, *QUIET, *EVALUATE_FAST]
    assert main([*argv, "--out", str(tmp_path / "stop")]) == 2
    err = capsys.readouterr().err
    assert "1 bad row(s)" in err and "row 2: missing question" in err and "--skip-bad" in err
    assert not os.path.exists(tmp_path / "stop" / "evaluation.json")
    assert main([*argv, "--out", str(tmp_path / "go"), "--skip-bad"]) == 0
    assert "skipped row 2 of" in capsys.readouterr().err
    evaluation = _read(tmp_path / "go" / "evaluation.json")
    assert evaluation["data"]["num_examples"] == ROWS - 1
    assert evaluation["full"]["accuracy"] == pytest.approx((1.0 + 0.9 + 0.3) / (ROWS - 1))  # row 2 (0.6) left out


def test_split_and_question_column_options_reach_the_loader(world, tmp_path, capsys):
    renamed = free_form_dataset(ROWS, answers=world["datasets"]["free"]["answers"], question_column="prompt")
    datasets.DatasetDict({"train": renamed.select([0, 1]), "test": renamed.select(range(2, ROWS))}).save_to_disk(
        tmp_path / "splits")
    argv = ["certify", "--model", world["models"]["free"], "--data", str(tmp_path / "splits"),
            "--max-new-tokens", MAX_NEW_TOKENS, *QUIET]
    assert main([*argv, "--out", str(tmp_path / "a")]) == 2
    assert "has splits train, test; choose one with --split" in capsys.readouterr().err
    assert main([*argv, "--out", str(tmp_path / "b"), "--split", "test"]) == 2
    assert "--question-column" in capsys.readouterr().err
    assert main([*argv, "--out", str(tmp_path / "c"), "--split", "test", "--question-column", "prompt"]) == 0
    data = _read(tmp_path / "c" / "certificate.json")["data"]
    assert data["source"].endswith("[test]") and data["num_examples"] == ROWS - 2
    assert data["columns"]["question"] == "prompt" and data["metric"] == "vqa"


def test_an_uncached_hub_id_is_a_one_line_error_naming_the_id_and_the_cache(world, tmp_path, monkeypatch, capsys):
    cache = fake_hub_cache(tmp_path, monkeypatch, {})
    argv = ["certify", "--model", world["models"]["free"], "--data", "lmms-lab/MMStar", "--out", str(tmp_path / "o"),
            *QUIET]
    assert main(argv) == 2
    captured = capsys.readouterr()
    first = captured.err.splitlines()[0]
    assert first.startswith("skipit certify: error: dataset 'lmms-lab/MMStar' is not in the Hugging Face cache")
    assert f"({cache})" in first
    assert "Traceback" not in captured.err and captured.out == ""


def test_skip_early_exit_on_free_form_parquet_scores_generated_answers(world, capsys):
    from skipit.empirical.answers import score
    from skipit.empirical.modes import skip_context

    data = _data_argument(world, "parquet", "free")
    assert main(["skip", "--mode", "early-exit", "--layer", "2", "--model", world["models"]["free"], "--data", data,
                 "--max-new-tokens", MAX_NEW_TOKENS, "--repeats", "1", "--json", *QUIET]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["examples"] == ROWS and result["layer"] == 2 and result["metric"] == "vqa"
    assert result["full"]["accuracy"] == pytest.approx(FREE_FORM_ACCURACY)
    examples, exited = _answers(world["models"]["free"], data,
                                context=lambda model: skip_context(model, "early-exit", 2, None))
    assert result["skipped"]["accuracy"] == pytest.approx(score(exited, examples))


AI2D_PROMPT = ("which digit is shown?\nA. {}\nB. {}\nC. {}\nD. {}\n"
               "Answer with the option's letter from the given choices directly.")


def test_skipit_data_shows_the_ai2d_preset_prompt_target_and_metric(world, capsys):
    """The AI2D-layout rows read by ``--task ai2d``: lmms-eval's prompt, the letter target, its
    parser and metric, with the demo processor's chat template around the text."""
    from tests.empirical.hf_helpers import OPTION_SHIFTS

    data = _data_argument(world, "saved", "mcq")
    assert main(["data", data, "--task", "ai2d", "--limit", "2", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    labels = digits(ROWS)[1]
    assert (shown["task"], shown["prompt_style"], shown["metric"]) == ("ai2d", "lmms-eval", "em-nopunct")
    first = shown["examples"][0]
    assert first["text"] == AI2D_PROMPT.format(*(WORDS[(labels[0] + k) % 10] for k in OPTION_SHIFTS))
    assert first["text"] in first["prompt"] and first["target"] == "A" and first["parser"] == "ai2d"
    assert [ex["target"] for ex in shown["examples"]] == ["A", "B"]
    assert main(["data", data, "--task", "ai2d", "--prompt-style", "llava"]) == 2
    assert "--prompt-style must be one of lmms-eval for task 'ai2d', got 'llava'" in capsys.readouterr().err


def test_evaluate_with_a_task_scores_the_parsed_generation(world, tmp_path):
    """``--task ai2d`` on the letter model: one generated token "a" read by AI2D's filter and scored
    with case and punctuation ignored is right on the two A rows, as the one-token letter is."""
    argv = ["evaluate", "--model", world["models"]["mcq"], "--data", _data_argument(world, "saved", "mcq"),
            "--task", "ai2d", "--max-new-tokens", "1", *QUIET, *EVALUATE_FAST]
    assert main([*argv, "--out", str(tmp_path / "ev")]) == 0
    evaluation = _read(tmp_path / "ev" / "evaluation.json")
    assert evaluation["data"]["metric"] == "em-nopunct"
    assert evaluation["full"]["accuracy"] == pytest.approx(LETTER_ACCURACY)


def test_a_parsed_multiple_choice_task_reads_the_generation_not_the_first_token(world, tmp_path):
    """MMBench's matcher finds no option in a lower-case "a" (it reads upper-case letters standing
    alone, then option texts), so the letter model that scores 2 of 6 by the one-token letter scores
    0 under ``--task mmbench``, and 2 of 6 again with ``--answer one-token``."""
    from tests.empirical.hf_helpers import OPTION_SHIFTS

    images, labels = digits(ROWS)
    rows = {"image": images, "question": ["which digit is shown?"] * ROWS, "hint": [None] * ROWS,
            "answer": ["ABABCD"[i] for i in range(ROWS)]}
    for k, letter in zip(OPTION_SHIFTS, "ABCD"):
        rows[letter] = [WORDS[(label + k) % 10] for label in labels]
    datasets.Dataset.from_dict(rows).cast_column("image", datasets.Image()).save_to_disk(tmp_path / "mmb")
    base = ["evaluate", "--model", world["models"]["mcq"], "--data", str(tmp_path / "mmb"), "--task", "mmbench",
            "--max-new-tokens", "1", *QUIET, *EVALUATE_FAST]
    assert main([*base, "--out", str(tmp_path / "gen")]) == 0
    assert main([*base, "--answer", "one-token", "--out", str(tmp_path / "one")]) == 0
    assert _read(tmp_path / "gen" / "evaluation.json")["full"]["accuracy"] == 0.0
    assert _read(tmp_path / "one" / "evaluation.json")["full"]["accuracy"] == pytest.approx(LETTER_ACCURACY)
