"""Benchmark presets: the exact prompt strings of rows shaped like each dataset, written from the
references (lmms-eval task utils, LLaVA-1.5's evaluation scripts), and what each row is scored by."""

from __future__ import annotations

import io

import pytest

from skipit.empirical.metrics import METRICS
from skipit.empirical.parsing import PARSERS
from skipit.empirical.tasks import TASKS, get_task

MC = "Answer with the option's letter from the given choices directly."
SHORT = "Answer the question using a single word or phrase."

MMBENCH = {"question": "What is shown?", "hint": "Look closely.", "answer": "B", "A": "cat", "B": "dog", "C": "cow",
           "D": "nan", "E": None}

PROMPTS = [
    ("mmbench", "lmms-eval", MMBENCH,
     f"Look closely. What is shown? There are several options:\nA. cat\nB. dog\nC. cow\n\n{MC}"),
    ("mmbench", "lmms-eval", {**MMBENCH, "hint": None},
     f"What is shown? There are several options:\nA. cat\nB. dog\nC. cow\n\n{MC}"),
    ("mmbench", "llava", MMBENCH, f"Look closely.\nWhat is shown?\nA. cat\nB. dog\nC. cow\n{MC}"),
    ("mmbench", "llava", {**MMBENCH, "hint": "nan", "B": None}, f"What is shown?\nA. cat\n{MC}"),  # stops at B
    ("mmbench", "llava", {**MMBENCH, "hint": "None"}, f"What is shown?\nA. cat\nB. dog\nC. cow\n{MC}"),  # is_none
    ("mmbench", "lmms-eval", {**MMBENCH, "hint": ""},                       # an empty hint still takes its space
     f" What is shown? There are several options:\nA. cat\nB. dog\nC. cow\n\n{MC}"),
    ("mmstar", "lmms-eval", {"question": "  Which one?\nOptions: A: x, B: y  ", "answer": "A"},
     f"Which one?\nOptions: A: x, B: y\n{MC[:-1]}"),                                       # no final period
    ("ai2d", "lmms-eval", {"question": "Which stage?", "options": ["egg", "larva"], "answer": "1"},
     f"Which stage?\nA. egg\nB. larva\n{MC}"),
    ("scienceqa", "lmms-eval", {"question": "Which is a mammal?", "hint": "Mammals have fur.",
                                "choices": ["frog", "dog"], "answer": 1},
     f"Context: Mammals have fur.\nWhich is a mammal?\nA. frog\nB. dog\n{MC}"),
    ("scienceqa", "lmms-eval", {"question": "Which is a mammal?", "hint": "", "choices": ["frog", "dog"], "answer": 1},
     f"Which is a mammal?\nA. frog\nB. dog\n{MC}"),
    ("seedbench", "lmms-eval", {"question": "How many?", "answer": "C", "data_type": "image", "choice_a": "1",
                                "choice_b": "2", "choice_c": "3", "choice_d": "4"},
     f"How many?\nA. 1\nB. 2\nC. 3\nD. 4\n{MC}"),
    ("pope", "lmms-eval", {"question": "Is there a dog in the image? ", "answer": "yes"},
     f"Is there a dog in the image?\n{SHORT}"),
    ("pope", "llava", {"question": "Is there a dog in the image?", "answer": "no"},
     f"Is there a dog in the image?\n{SHORT}"),
    ("mme", "lmms-eval", {"question": "Is this a cat? Please answer yes or no.", "answer": "Yes",
                          "category": "existence", "question_id": "1.png"},
     f"Is this a cat?\n{SHORT}"),
    ("realworldqa", "lmms-eval", {"question": "Which way?\nA. left\nB. right\nPlease answer directly with only the "
                                              "letter of the correct option and nothing else.", "answer": "B"},
     "Which way?\nA. left\nB. right\nPlease answer directly with only the letter of the correct option and nothing "
     "else."),
    ("mmmu", "lmms-eval", {"question": "<image 1> What is it?", "options": "['a', 'b']", "answer": "A",
                           "question_type": "multiple-choice"},
     f"<image 1> What is it?\nA. a\nB. b\n\n{MC}"),
    ("mmmu", "lmms-eval", {"question": "<image 1> How many?", "options": "[]", "answer": "3",
                           "question_type": "open"}, f"<image 1> How many?\n\n{SHORT}"),
    ("vqav2", "lmms-eval", {"question": "What color is the Bus?", "answers": [{"answer": "red"}] * 10},
     f"What color is the Bus?\n{SHORT}"),
    ("gqa", "lmms-eval", {"question": "Is the cup on the left?", "answer": "yes"}, f"Is the cup on the left?\n{SHORT}"),
    ("textvqa", "lmms-eval", {"question": "what is the Brand name?", "answers": ["nokia"] * 10},
     f"What is the brand name?\n{SHORT}"),  # str.capitalize lowers the rest
    ("textvqa", "llava", {"question": "what is the Brand name?", "answers": ["nokia"] * 10},
     f"what is the Brand name?\n{SHORT}"),
    ("vizwiz", "lmms-eval", {"question": "what is this?", "answers": ["unanswerable"] * 10},
     "What is this?\nWhen the provided information is insufficient, respond with 'Unanswerable'.\n" + SHORT),
    ("docvqa", "lmms-eval", {"question": "What is the date?", "answers": ["1/2/98"]}, f"What is the date?\n{SHORT}"),
    ("chartqa", "lmms-eval", {"question": "What is the peak?", "answer": "42"},
     "What is the peak?\nAnswer the question with a single word."),
    ("ocrbench", "lmms-eval", {"question": " what is written in the image? ", "answer": ["STOP"], "dataset": "IIIT5K"},
     "what is written in the image?"),
]


@pytest.mark.parametrize("name,style,row,expected", PROMPTS, ids=[f"{p[0]}-{p[1]}-{i}" for i, p in enumerate(PROMPTS)])
def test_prompts_match_the_references_character_for_character(name, style, row, expected):
    assert get_task(name).style(style).prompt(row) == expected


@pytest.mark.parametrize("name,row,answer,letters,metric,parser", [
    ("mmbench", MMBENCH, "B", ["A", "B", "C"], "", ""),
    ("ai2d", {"question": "q", "options": ["1", "2", "3"], "answer": "2"}, "C", ["A", "B", "C"], "", ""),
    ("scienceqa", {"question": "q", "hint": "", "choices": ["x", "y"], "answer": 0}, "A", ["A", "B"], "", ""),
    ("realworldqa", {"question": "q", "answer": "b"}, "B", ABCD := ["A", "B", "C", "D"], "letter", "mcq-extract"),
    ("realworldqa", {"question": "q", "answer": " Downhill "}, "Downhill", [], "match", "lower-no-period"),
    ("mmmu", {"question": "q", "options": "[]", "answer": "12", "question_type": "open"}, "12", [], "mmmu-open",
     "text"),
    ("ocrbench", {"question": "q", "answer": ["x^2"], "dataset": "HME100k"}, "x^2", [], "contains-nospace", ""),
    ("mme", {"question": "q", "answer": "No.", "category": "count", "question_id": "a.png"}, "no", [], "", ""),
])
def test_each_row_says_its_gold_answer_and_how_it_is_scored(name, row, answer, letters, metric, parser):
    target = get_task(name).read(row)
    assert (target.answer, target.letters, target.metric, target.parser) == (answer, letters, metric, parser)


@pytest.mark.parametrize("name,row,match", [
    ("ai2d", {"question": "q", "options": ["1", "2"], "answer": "7"}, r"answer index '7' is not an option index 0-1"),
    ("mmbench", {**MMBENCH, "answer": "E"}, r"answer 'E' is none of the option letters A, B, C"),
    ("pope", {"question": "q", "answer": "maybe"}, r"answer 'maybe' is neither yes nor no"),
])
def test_a_row_the_preset_cannot_read_says_why(name, row, match):
    with pytest.raises(ValueError, match=match):
        get_task(name).read(row)


def test_every_preset_names_a_known_parser_metric_and_a_reference_with_lmms_eval_the_default():
    for task in TASKS.values():
        assert task.default_style == "lmms-eval" and task.dataset
        for style in task.styles.values():
            assert style.parser in PARSERS and style.metric in METRICS and style.reference
    wanted = {"mmbench", "mmstar", "ai2d", "scienceqa", "seedbench", "pope", "mme", "realworldqa", "mmmu", "vqav2",
              "gqa", "textvqa", "vizwiz", "docvqa", "chartqa", "ocrbench"}
    assert wanted <= set(TASKS)
    assert all(not t.dataset.startswith("lmms-lab/") for t in TASKS.values())  # moved to lmms-lab-encoder/*
    with pytest.raises(ValueError, match=r"`prompt_style` must be one of lmms-eval for task 'ai2d', got 'llava'"):
        get_task("ai2d").style("llava")
    with pytest.raises(ValueError, match=r"`task` must be one of mmbench, .*, got 'nope'"):
        get_task("nope")


def _png(value):
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (value, value, value)).save(buf, format="PNG")
    return {"bytes": buf.getvalue(), "path": None}


def test_a_saved_mmbench_layout_loads_with_the_preset_prompt_and_one_token_on_request(tmp_path):
    datasets = pytest.importorskip("datasets")
    from skipit.empirical.data import load_examples

    rows = {k: [MMBENCH[k], MMBENCH[k]] for k in MMBENCH}
    rows["image"] = [_png(1), _png(2)]
    ds = datasets.Dataset.from_dict(rows).cast_column("image", datasets.Image())
    datasets.DatasetDict({"dev": ds, "test": ds}).save_to_disk(tmp_path / "mmb")
    examples, report = load_examples(str(tmp_path / "mmb"), task="mmbench")
    assert examples[0].question == PROMPTS[0][3] and examples[0].answer == "B"
    assert (report.task, report.prompt_style, report.metric, report.max_new_tokens) == ("mmbench", "lmms-eval",
                                                                                         "letter", 1024)
    assert examples[0].parser == "mmbench" and examples[0].options == ["cat", "dog", "cow"]
    cheap, report = load_examples(str(tmp_path / "mmb"), task="mmbench", answer="one-token")
    assert cheap[0].parser == "" and report.max_new_tokens == 1
    from skipit.empirical.data import data_sha256

    assert data_sha256(cheap) != data_sha256(examples)  # a resumed run cannot mix the two answer readings


def test_mme_reports_its_own_sum_beside_the_accuracy():
    from types import SimpleNamespace

    from skipit.empirical.tasks import benchmark_score

    examples = [SimpleNamespace(meta={"category": c, "question_id": q})
                for c, q in [("existence", "a"), ("existence", "a"), ("OCR", "b"), ("OCR", "b")]]
    got = benchmark_score(get_task("mme"), examples, [1, 1, 1, 0])
    assert got["accuracy"] == 0.75 and got["perception"] == 200 + 50 and got["cognition"] == 0
    assert benchmark_score(get_task("pope"), examples, [1, 0, 0, 0]) == {"accuracy": 0.25, "percent": 25.0}
