"""Hugging Face datasets as ``--data``: saved, parquet, arrow, a cached hub id; MCQ and free-form rows."""

from __future__ import annotations

import argparse
import io
import os

import pytest

datasets = pytest.importorskip("datasets")

from skipit.empirical.data import (  # noqa: E402
    MCQ_INSTRUCTION,
    ColumnMap,
    add_data_arguments,
    data_sha256,
    examples_from_args,
    load_examples,
)
from skipit.errors import SkipitError  # noqa: E402
from tests.empirical.hf_helpers import WORDS, digits, fake_hub_cache, free_form_dataset, mcq_dataset  # noqa: E402


def test_multiple_choice_rows_get_lettered_options_and_the_letter_as_answer(tmp_path):
    mcq_dataset().save_to_disk(tmp_path / "mcq")
    examples, report = load_examples(str(tmp_path / "mcq"))
    _, labels = digits(6)
    first = examples[0]
    opts = [WORDS[(labels[0] + k) % 10] for k in (2, 0, 5, 7)]
    assert first.question == ("which digit is shown?\n" + "\n".join(f"{l}. {o}" for l, o in zip("ABCD", opts))
                              + "\n" + MCQ_INSTRUCTION)
    assert MCQ_INSTRUCTION == "Answer with the option's letter from the given choices directly."
    assert [e.answer for e in examples] == ["B"] * 6 and first.choices == ["A", "B", "C", "D"]
    assert first.metric == "letter" and report.metric == "letter" and report.max_new_tokens == 1
    assert report.unit == "row" and report.columns == {"image": "image", "question": "question",
                                                       "answer": "answer", "choices": "options"}
    assert first.image.mode == "RGB" and first.image.size == (16, 16)
    assert first.source.endswith("mcq[0]")


@pytest.mark.parametrize("answers,expected", [
    (["C", "A", "D", "B", "A", "C"], ["C", "A", "D", "B", "A", "C"]),                  # letters (MMStar)
    (["two", "zero", "five", "seven", "two", "zero"], ["A", "B", "C", "D", "A", "B"]),  # option texts (Visual7W)
])
def test_answers_given_as_letters_or_option_texts(tmp_path, answers, expected):
    images, _ = digits(6)
    ds = datasets.Dataset.from_dict({"image": images, "question": ["q?"] * 6,
                                     "choices": [["two", "zero", "five", "seven"]] * 6, "answer": answers},
                                    features=datasets.Features({"image": datasets.Image(),
                                                                "question": datasets.Value("string"),
                                                                "choices": datasets.List(datasets.Value("string")),
                                                                "answer": datasets.Value("string")}))
    ds.to_parquet(str(tmp_path / "set.parquet"))
    examples, _ = load_examples(str(tmp_path / "set.parquet"))
    assert [e.answer for e in examples] == expected


def test_mmmu_options_written_as_a_python_list_string(tmp_path):
    images, _ = digits(2)
    ds = datasets.Dataset.from_dict({"image_1": images, "question": ["q?", "r?"],
                                     "options": ["['cat', 'dog']", "[]"], "answer": ["B", "42"]},
                                    features=datasets.Features({"image_1": datasets.Image(),
                                                                "question": datasets.Value("string"),
                                                                "options": datasets.Value("string"),
                                                                "answer": datasets.Value("string")}))
    ds.save_to_disk(tmp_path / "mmmu")
    examples, report = load_examples(str(tmp_path / "mmmu"))
    assert examples[0].question.startswith("q?\nA. cat\nB. dog\n") and examples[0].answer == "B"
    assert examples[1].question == "r?" and examples[1].metric == "exact"  # an open question in the same set
    assert report.metric == "letter+exact" and report.max_new_tokens == 16


def test_free_form_rows_keep_their_ten_references_for_the_vqa_accuracy(tmp_path):
    free_form_dataset().save_to_disk(tmp_path / "ff")
    examples, report = load_examples(str(tmp_path / "ff"))
    _, labels = digits(4)
    assert examples[0].references == [WORDS[labels[0]]] * 6 + [str(labels[0])] * 2 + ["a digit", "unsure"]
    assert examples[0].answer == WORDS[labels[0]]  # the most common reference after normalisation
    assert examples[0].choices == [] and examples[0].question == "what is written?"
    assert report.metric == "vqa" and report.max_new_tokens == 16
    _, anls = load_examples(str(tmp_path / "ff"), metric="anls", max_new_tokens=8)
    assert anls.metric == "anls" and anls.max_new_tokens == 8


def test_saved_parquet_and_arrow_forms_give_the_same_examples(tmp_path):
    ds = mcq_dataset()
    ds.save_to_disk(tmp_path / "saved")
    (tmp_path / "pq" / "data").mkdir(parents=True)
    ds.to_parquet(str(tmp_path / "pq" / "data" / "test-00000-of-00001.parquet"))
    ref, ref_report = load_examples(str(tmp_path / "saved"))
    arrow = [f for f in os.listdir(tmp_path / "saved") if f.endswith(".arrow")]
    for form in (tmp_path / "pq", tmp_path / "pq" / "data" / "test-00000-of-00001.parquet",
                 tmp_path / "saved" / arrow[0]):
        got, report = load_examples(str(form))
        assert data_sha256(got) == data_sha256(ref), form
        assert report.sha256 == ref_report.sha256  # the rows' raw content, wherever they are stored


def test_fingerprint_changes_with_any_row_and_covers_references(tmp_path):
    ds = free_form_dataset()
    ds.save_to_disk(tmp_path / "a")
    changed = ds.map(lambda row, i: {"answers": row["answers"][:-1] + ["other"]} if i == 3 else {},
                     with_indices=True)
    changed.save_to_disk(tmp_path / "b")
    a, ra = load_examples(str(tmp_path / "a"), limit=2)
    b, rb = load_examples(str(tmp_path / "b"), limit=2)
    assert ra.sha256 != rb.sha256  # row 3 is beyond the limit, yet it counts
    assert data_sha256(a) == data_sha256(b)  # the two examples used are the same
    a_all, _ = load_examples(str(tmp_path / "a"))
    b_all, _ = load_examples(str(tmp_path / "b"))
    assert data_sha256(a_all) != data_sha256(b_all)  # only a reference answer differs


def _with_bad_rows(tmp_path):
    images, _ = digits(5)
    png = io.BytesIO()
    images[0].save(png, format="PNG")
    rows = {"image": [{"bytes": png.getvalue(), "path": None}, None, {"bytes": b"not an image", "path": None},
                      {"bytes": png.getvalue(), "path": None}, {"bytes": png.getvalue(), "path": None}],
            "question": ["q?", "q?", "q?", "", "q?"], "answer": ["a", "b", "c", "d", "e"]}
    ds = datasets.Dataset.from_dict(rows, features=datasets.Features({"image": datasets.Image(),
                                                                      "question": datasets.Value("string"),
                                                                      "answer": datasets.Value("string")}))
    ds.save_to_disk(tmp_path / "bad")
    return str(tmp_path / "bad")


def test_bad_rows_are_reported_with_their_index(tmp_path):
    path = _with_bad_rows(tmp_path)
    with pytest.raises(SkipitError) as info:
        load_examples(path)
    text = str(info.value)
    assert "3 bad row(s)" in text and "`skip_bad=True`" in text
    assert "row 1: no image in column 'image'" in text
    assert ("row 2: unreadable image in column 'image' (UnidentifiedImageError: cannot identify image file "
            "row 2, column 'image')") in text
    assert "BytesIO" not in text  # the row and the column, not <_io.BytesIO object at 0x...>
    assert "row 3: missing question" in text
    assert "row 0:" not in text and "row 4:" not in text


def test_skip_bad_skips_bad_rows_and_limit_still_checks_every_row(tmp_path):
    path = _with_bad_rows(tmp_path)
    examples, report = load_examples(path, skip_bad=True)
    assert [e.answer for e in examples] == ["a", "e"]
    assert [i for i, _ in report.skipped] == [1, 2, 3]
    with pytest.raises(SkipitError, match="3 bad row"):
        load_examples(path, limit=1)


def test_several_images_in_a_row_are_refused(tmp_path):
    images, _ = digits(3)
    ds = datasets.Dataset.from_dict({"images": [[images[0], images[1]], [images[2]]], "question": ["q", "r"],
                                     "answer": ["a", "b"]},
                                    features=datasets.Features({"images": datasets.List(datasets.Image()),
                                                                "question": datasets.Value("string"),
                                                                "answer": datasets.Value("string")}))
    ds.save_to_disk(tmp_path / "multi")
    with pytest.raises(SkipitError, match=r"row 0: has 2 images \(2 in 'images'\); skipit feeds one image"):
        load_examples(str(tmp_path / "multi"))
    examples, _ = load_examples(str(tmp_path / "multi"), skip_bad=True)
    assert [e.answer for e in examples] == ["b"]


def test_column_mapping_and_its_errors(tmp_path):
    images, _ = digits(2)
    ds = datasets.Dataset.from_dict({"picture": images, "prompt": ["q", "r"], "gt": ["a", "b"],
                                     "path": ["x.png", "y.png"]})
    ds.save_to_disk(tmp_path / "odd")
    with pytest.raises(SkipitError, match=r"has no image column among the defaults .*columns: picture, prompt, gt, "
                                          r"path; name it with `columns.image`"):
        load_examples(str(tmp_path / "odd"))
    with pytest.raises(SkipitError, match=r"`columns.answer` 'nope' is not a column of"):
        load_examples(str(tmp_path / "odd"), columns=ColumnMap(image="picture", question="prompt", answer="nope"))
    examples, report = load_examples(str(tmp_path / "odd"),
                                     columns=ColumnMap(image="picture", question="prompt", answer="gt"))
    assert [(e.question, e.answer) for e in examples] == [("q", "a"), ("r", "b")]
    assert report.columns == {"image": "picture", "question": "prompt", "answer": "gt"}


def test_a_string_column_named_image_is_not_taken_for_the_image(tmp_path):
    """MathVision: ``image`` holds a file name, ``decoded_image`` the picture."""
    images, _ = digits(1)
    ds = datasets.Dataset.from_dict({"image": ["images/1.jpg"], "decoded_image": images, "question": ["q"],
                                     "answer": ["3"], "options": [[]]})
    ds.save_to_disk(tmp_path / "mv")
    _, report = load_examples(str(tmp_path / "mv"))
    assert report.columns["image"] == "decoded_image"


def test_splits_must_be_chosen_when_there_are_several(tmp_path):
    ds = mcq_dataset(4)
    datasets.DatasetDict({"train": ds.select([0, 1]), "test": ds.select([2, 3])}).save_to_disk(tmp_path / "dd")
    with pytest.raises(SkipitError, match=r"has splits train, test; choose one with `split`"):
        load_examples(str(tmp_path / "dd"))
    with pytest.raises(SkipitError, match=r"`split` must be one of train, test .* got 'val'"):
        load_examples(str(tmp_path / "dd"), split="val")
    test, _ = load_examples(str(tmp_path / "dd"), split="test")
    whole, _ = load_examples(str(tmp_path / "dd"), split="train")
    assert len(test) == len(whole) == 2 and test[0].source.endswith("[test][0]")


def test_a_dataset_path_and_split_holding_braces_are_named_verbatim(tmp_path, capsys):
    """A folder called ``{split}{}`` and a split ``{subset}``: the messages quote both as given
    and name the parameters (library) or the flags (command line)."""
    from skipit.cli import main

    path = str(tmp_path / "{split}{}")
    ds = mcq_dataset(4)
    datasets.DatasetDict({"train": ds.select([0, 1]), "test": ds.select([2, 3])}).save_to_disk(path)
    capsys.readouterr()
    for split, message in ((None, "{} {path} has splits train, test; choose one with {}"),
                           ("{subset}", "{} must be one of train, test for {path}, got '{{subset}}'")):
        with pytest.raises(SkipitError) as info:
            load_examples(path, split=split)
        assert str(info.value) == message.format("`path_or_name`" if split is None else "`split`", "`split`",
                                                 path=path)
        assert main(["data", path, *(["--split", split] if split else [])]) == 2
        flags = ("--data", "--split") if split is None else ("--split",)
        assert capsys.readouterr().err == f"skipit data: error: {message.format(*flags, path=path)}\n"


def test_mcq_template_is_overridable_and_checked(tmp_path):
    mcq_dataset(2).save_to_disk(tmp_path / "mcq")
    examples, _ = load_examples(str(tmp_path / "mcq"), mcq_template="Q: {question}\n{options}\nLetter:")
    assert examples[0].question.startswith("Q: which digit is shown?\nA. ") and examples[0].question.endswith(
        "\nLetter:")
    with pytest.raises(SkipitError, match=r"`mcq_template` must use exactly the fields \{question\} and "
                                          r"\{options\}, got 'Q: \{question\}' \(fields: \{question\}\)"):
        load_examples(str(tmp_path / "mcq"), mcq_template="Q: {question}")


def test_hub_dataset_id_is_read_from_the_cache_offline(tmp_path, monkeypatch):
    fake_hub_cache(tmp_path, monkeypatch, {"org/digits-mcq": mcq_dataset(3)})
    examples, report = load_examples("org/digits-mcq")
    assert len(examples) == 3 and examples[0].answer == "B" and report.source == "org/digits-mcq[test]"


def test_uncached_hub_dataset_says_which_id_where_and_how(tmp_path, monkeypatch):
    cache = fake_hub_cache(tmp_path, monkeypatch, {"org/digits-mcq": mcq_dataset(3)})
    with pytest.raises(SkipitError) as info:
        load_examples("lmms-lab/MMStar")
    text = str(info.value)
    assert "dataset 'lmms-lab/MMStar' is not in the Hugging Face cache" in text and str(cache) in text
    assert "download --repo-type dataset lmms-lab/MMStar" in text


def test_command_line_arguments_reach_the_loader(tmp_path):
    free_form_dataset().save_to_disk(tmp_path / "ff")
    parser = argparse.ArgumentParser()
    add_data_arguments(parser)
    parser.add_argument("--samples", type=int, default=0)
    args = parser.parse_args(["--data", str(tmp_path / "ff"), "--metric", "exact", "--max-new-tokens", "5",
                              "--question-column", "question", "--samples", "2"])
    examples, report = examples_from_args(args)
    assert len(examples) == 2 and report.metric == "exact" and report.max_new_tokens == 5
    assert all(e.metric == "exact" for e in examples)
    with pytest.raises(SystemExit):
        parser.parse_args(["--metric", "bleu"])


def test_jsonl_and_bundled_sets_keep_the_one_token_letter_metric(tmp_path):
    import skipit.demo  # noqa: F401  (the bundled set must ship)
    examples, report = load_examples("digits-test", limit=3)
    assert report.metric == "letter" and report.max_new_tokens == 1
    assert all(e.metric == "letter" and e.references == [] for e in examples)


def test_the_readme_mmstar_command_reads_a_cached_mmstar_layout(tmp_path, monkeypatch):
    """MMStar's layout (options inside the question, a letter as answer, split ``val``) under the
    README's arguments: scored by the letter, with LLaVA's instruction appended to the question."""
    import datasets.config
    import huggingface_hub.constants as hub_constants

    images, _ = digits(3)
    questions = [f"Which digit? Options: A: {a}, B: {b}" for a, b in (("1", "2"), ("3", "4"), ("5", "6"))]
    cache = tmp_path / "hub"
    snapshot = cache / "datasets--lmms-lab--MMStar" / "snapshots" / "feedbeef"
    (snapshot / "mmstar").mkdir(parents=True)
    datasets.Dataset.from_dict({"index": [0, 1, 2], "question": questions, "image": images, "answer": ["A", "B", "A"],
                                "category": ["x"] * 3},
                               features=datasets.Features({"index": datasets.Value("int64"),
                                                           "question": datasets.Value("string"),
                                                           "image": datasets.Image(),
                                                           "answer": datasets.Value("string"),
                                                           "category": datasets.Value("string")})
                               ).to_parquet(str(snapshot / "mmstar" / "val-00000-of-00001.parquet"))
    (cache / "datasets--lmms-lab--MMStar" / "refs").mkdir()
    (cache / "datasets--lmms-lab--MMStar" / "refs" / "main").write_text("feedbeef")
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "datasets")
    parser = argparse.ArgumentParser()
    add_data_arguments(parser)
    args = parser.parse_args(["--data", "lmms-lab/MMStar", "--split", "val", "--image-column", "image",
                              "--question-column", "question", "--answer-column", "answer", "--metric", "letter"])
    examples, report = examples_from_args(args)
    assert [e.answer for e in examples] == ["A", "B", "A"] and report.metric == "letter"
    assert examples[1].question == questions[1] + "\n" + MCQ_INSTRUCTION
    assert report.source == "lmms-lab/MMStar[validation]" and report.max_new_tokens == 1  # datasets' name for val


def test_single_letter_answers_without_listed_options_stay_free_form(tmp_path):
    """A set answering with one letter ("which letter is shown?") is not taken for multiple choice:
    only questions that list options ``A.``/``A:``/``A)`` and ``B...`` themselves are."""
    images, _ = digits(2)
    features = datasets.Features({"image": datasets.Image(), "question": datasets.Value("string"),
                                  "answer": datasets.Value("string")})
    datasets.Dataset.from_dict({"image": images, "question": ["which letter is shown?"] * 2, "answer": ["A", "B"]},
                               features=features).save_to_disk(tmp_path / "ocr")
    examples, report = load_examples(str(tmp_path / "ocr"))
    assert report.metric == "exact" and examples[0].question == "which letter is shown?"
    datasets.Dataset.from_dict({"image": images, "question": ["which? (A) cat (B) dog"] * 2, "answer": ["A", "B"]},
                               features=features).save_to_disk(tmp_path / "listed")
    examples, report = load_examples(str(tmp_path / "listed"))
    assert report.metric == "letter" and examples[0].question.endswith("\n" + MCQ_INSTRUCTION)


def test_data_arguments_join_a_parent_parser_that_has_data_and_skip_bad():
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument("--data")
    parent.add_argument("--skip-bad", action="store_true")
    parser = argparse.ArgumentParser(parents=[parent])
    add_data_arguments(parser)  # no "conflicting option string" error
    args = parser.parse_args(["--data", "x", "--skip-bad", "--split", "test", "--choices-column", "opts"])
    assert (args.data, args.skip_bad, args.split, args.choices_column) == ("x", True, "test", "opts")
    assert "--mcq-template" in parser.format_help() and "--max-new-tokens" in parser.format_help()


def test_a_single_file_or_dataset_has_no_splits_to_choose(tmp_path):
    ds = mcq_dataset(2)
    ds.to_parquet(str(tmp_path / "one.parquet"))
    ds.save_to_disk(tmp_path / "saved")
    for form in (tmp_path / "one.parquet", tmp_path / "saved"):
        examples, report = load_examples(str(form))
        assert len(examples) == 2 and report.source == str(form)
        with pytest.raises(SkipitError, match=r"`split` test: .* holds a single dataset, not splits; leave `split` "
                                              r"out"):
            load_examples(str(form), split="test")


def test_examples_from_args_takes_defaults_for_options_a_command_lacks():
    import skipit.demo  # noqa: F401  (the bundled set must ship)
    examples, report = examples_from_args(argparse.Namespace(data=None, samples=3))
    assert len(examples) == 3 and report.source == "bundled:digits-test" and report.metric == "letter"


def test_subset_of_a_source_without_configurations_is_refused(tmp_path):
    """``--subset`` names a configuration of a hub dataset or of a folder of data files; a saved
    dataset, a single data file or a JSONL file has none, and the option is refused in one line
    instead of being ignored."""
    from tests.empirical.certify_helpers import write_digit_jsonl

    ds = mcq_dataset(2)
    ds.save_to_disk(tmp_path / "saved")
    ds.to_parquet(str(tmp_path / "one.parquet"))
    (tmp_path / "pq" / "data").mkdir(parents=True)
    ds.to_parquet(str(tmp_path / "pq" / "data" / "test-00000-of-00001.parquet"))
    jsonl = write_digit_jsonl(str(tmp_path / "jsonl"), 2)
    for form, kind in ((tmp_path / "saved", "saved dataset"), (tmp_path / "one.parquet", "data file"),
                       (jsonl, "JSONL file")):
        with pytest.raises(SkipitError, match=r"`subset` applies to hub dataset ids and folders of data files "
                                              rf"only, got 'first' for the {kind}") as info:
            load_examples(str(form), subset="first")
        assert "\n" not in str(info.value)
    examples, report = load_examples(str(tmp_path / "pq"), subset="default")  # the folder's one configuration
    assert len(examples) == 2 and report.source.endswith(":default[test]")
    with pytest.raises(SkipitError, match="BuilderConfig 'first' not found"):
        load_examples(str(tmp_path / "pq"), subset="first")


def _numeric_options_dataset(answers):
    from PIL import Image

    def png(v):
        buf = io.BytesIO()
        Image.new("RGB", (8, 8), (v, v, v)).save(buf, format="PNG")
        return {"bytes": buf.getvalue(), "path": None}

    n = len(answers)
    return datasets.Dataset.from_dict({
        "image": [png(i) for i in range(n)], "question": [f"How many? {i}" for i in range(n)],
        "options": [["1", "2", "3", "4"]] * n, "answer": answers}).cast_column("image", datasets.Image())


def test_one_out_of_range_index_is_named_and_never_flips_the_other_rows_to_option_text(tmp_path):
    """AI2D-style: numeric options, answers as indices, row 9 out of range. The other rows stay
    indices (were all refused, or lettered by text with --skip-bad)."""
    answers = ["0", "1", "2", "3", "1", "2", "0", "3", "2", "7", "1"]
    _numeric_options_dataset(answers).save_to_disk(tmp_path / "num")
    with pytest.raises(SkipitError, match=r"1 bad row.*\n  row 9: answer index '7' is out of range for 4 options"):
        load_examples(str(tmp_path / "num"))
    examples, report = load_examples(str(tmp_path / "num"), skip_bad=True)
    assert [ex.answer for ex in examples] == ["ABCDBCADCB"[i] for i in range(10)]
    assert [n for n, _ in report.skipped] == [9]


def test_answers_that_are_all_option_texts_are_read_as_text_even_when_numeric(tmp_path):
    """Options 10, 20, 30: answers "20" (out of range as an index, exactly one option's text) are texts."""
    ds = _numeric_options_dataset(["1"] * 3)
    ds = ds.remove_columns(["options", "answer"]).add_column("options", [["10", "20", "30"]] * 3)
    ds.add_column("answer", ["20", "30", "10"]).save_to_disk(tmp_path / "text")
    examples, _ = load_examples(str(tmp_path / "text"))
    assert [ex.answer for ex in examples] == ["B", "C", "A"]
