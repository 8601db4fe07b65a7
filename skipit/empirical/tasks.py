"""Benchmark presets (``--task NAME``): columns, prompt, answer parsing and metric exactly as the reference does.

Each preset is a :class:`Task` record: the dataset id (as of 2026-12: lmms-eval moved its
``lmms-lab/*`` copies to ``lmms-lab-encoder/*`` in July 2026), split and configuration, the columns a
row needs, :attr:`Task.read` (a row's gold answer, reference answers, option letters and texts, and
any per-row metric or parser), and one :class:`Style` per reference whose prompt differs
(``--prompt-style lmms-eval|llava``; :attr:`Task.default_style` when not given).

References, as read in the stored copies:

* lmms-eval: ``EvolvingLMMs-Lab/lmms-eval`` at ``75571cfe`` (2026-08-06), ``lmms_eval/tasks/<task>/``
  (``utils.py`` and the task YAML's ``lmms_eval_specific_kwargs.default``);
* LLaVA-1.5: ``haotian-liu/LLaVA`` at ``c121f04``: ``llava/eval/model_vqa_mmbench.py``,
  ``eval_science_qa.py``, ``eval_pope.py``, ``m4c_evaluator.py``, ``scripts/convert_*``, and
  ``docs/Evaluation.md`` for the short-answer and option prompt formats. LLaVA's own question files
  (``llava_pope_test.jsonl``, ``llava_mme.jsonl``, ``llava_test_CQM-A.json``,
  ``llava_textvqa_val_v051_ocr.jsonl``, VizWiz's ``llava_test.jsonl`` ...) ship in its ``eval.zip`` and
  are NOT in the stored copy: where a ``llava`` style depends on them it follows ``docs/Evaluation.md``
  and says so in its ``reference``.

:func:`get_task` looks a preset up; :data:`TASKS` lists them.
"""

from __future__ import annotations

import ast
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Task", "Style", "Target", "TASKS", "PROMPT_STYLES", "get_task", "benchmark_score", "ACCURACY_KEYS",
           "SHORT_ANSWER", "OPTION_LETTER"]

SHORT_ANSWER = "Answer the question using a single word or phrase."
"""The short-answer instruction of LLaVA-1.5 (``docs/Evaluation.md``) and lmms-eval's free-form tasks."""
OPTION_LETTER = "Answer with the option's letter from the given choices directly."
"""The multiple-choice instruction of LLaVA-1.5 and lmms-eval (MMStar's lacks the final period)."""
PROMPT_STYLES = ("lmms-eval", "llava")


@dataclass
class Target:
    """What a row asks for: the gold ``answer``, all ``references`` (empty: ``[answer]``), the option
    ``letters`` and ``options`` texts of a multiple-choice row, and a per-row ``metric`` / ``parser``
    overriding the style's (RealWorldQA, MMMU and OCRBench mix kinds of rows); ``meta`` is kept on the
    example (MME's category and image id)."""

    answer: str
    references: list = field(default_factory=list)
    letters: list = field(default_factory=list)
    options: list = field(default_factory=list)
    metric: str = ""
    parser: str = ""
    meta: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Style:
    """One reference's way: the prompt text of a row (handed to the chat template with the image),
    the answer parser (:data:`skipit.empirical.parsing.PARSERS`), the metric
    (:data:`skipit.empirical.metrics.METRICS`) and the citation."""

    prompt: Callable[[Mapping[str, Any]], str]
    parser: str
    metric: str
    reference: str


@dataclass(frozen=True)
class Task:
    """A benchmark preset: see the module docstring. ``columns`` are the columns :attr:`read` and the
    prompts use (the image column apart); ``keep`` selects the rows the reference evaluates (SEED-Bench's
    image questions); ``aggregate`` names a benchmark-level score beyond the mean (``mme``:
    :func:`skipit.empirical.metrics.mme_score`); ``max_new_tokens`` is the reference's generation cap
    (the task YAML's ``generation_kwargs.max_new_tokens``; where it sets none, lmms-eval's model
    default of 1024, ``models/simple/llava_hf.py``). Greedy generation stops at the end-of-sequence
    token, so the cap costs only where an answer runs on; ``--max-new-tokens`` overrides it."""

    name: str
    title: str
    dataset: str
    split: str
    columns: tuple
    read: Callable[[Mapping[str, Any]], Target]
    styles: Mapping[str, Style]
    default_style: str = "lmms-eval"
    subset: str | None = None
    image: str = "image"
    max_new_tokens: int = 16
    keep: Callable[[Mapping[str, Any]], bool] | None = None
    aggregate: str = ""
    note: str = ""

    def style(self, name: str | None = None) -> Style:
        """The :class:`Style` called ``name`` (None: the default); a
        :class:`~skipit.empirical.settings.SettingError` (a ``ValueError``) naming the offered ones."""
        from skipit.empirical.settings import SettingError

        name = name or self.default_style
        if name not in self.styles:
            raise SettingError(f"{{prompt_style}} must be one of {', '.join(self.styles)} for task {self.name!r}, "
                               "got {got}", {"got": repr(name)})
        return self.styles[name]


def _missing(value) -> bool:
    """LLaVA's ``is_none``: None, NaN, or a string ``nan`` / ``none`` in any case (not stripped)."""
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return isinstance(value, str) and value.lower() in ("nan", "none")


def _lettered(options) -> str:
    return "\n".join(f"{chr(65 + i)}. {o}" for i, o in enumerate(options))


def _letter_of(index, options) -> str:
    """The letter of option ``index`` (an int or a digit string); ``ValueError`` when it is none."""
    text = str(index).strip()
    if not text.isdigit() or int(text) >= len(options):
        raise ValueError(f"answer index {index!r} is not an option index 0-{len(options) - 1}")
    return chr(65 + int(text))


def _gold_letter(value, letters) -> str:
    letter = str(value).strip()
    if letter not in letters:
        raise ValueError(f"answer {value!r} is none of the option letters {', '.join(letters)}")
    return letter


# --- MMBench -----------------------------------------------------------------------------------------

def _mmbench_options_lmms(row):
    """lmms-eval ``create_options_prompt``: columns A-E whose value is truthy, not NaN and not ``"nan"``."""
    def present(v):
        return bool(v) and not (isinstance(v, float) and math.isnan(v)) and v != "nan"
    return [(c, row[c]) for c in "ABCDE" if c in row and present(row[c])]


def _mmbench_options_llava(row):
    """LLaVA ``get_options``: columns A-D in order, stopping at the first missing one."""
    out = []
    for c in "ABCD":
        if c not in row or _missing(row[c]):
            break
        out.append((c, row[c]))
    return out


def _mmbench_lmms(row):
    opts = ("There are several options:\n" + "".join(f"{c}. {o}\n" for c, o in _mmbench_options_lmms(row))).rstrip("\n")
    hint = row.get("hint")
    has_hint = not (hint is None or (isinstance(hint, float) and math.isnan(hint)) or hint == "nan")
    body = f"{hint} {row['question']} {opts}" if has_hint else f"{row['question']} {opts}"
    return f"{body}\n\n{OPTION_LETTER}"


def _mmbench_llava(row):
    question = row["question"]
    if not _missing(row.get("hint")):
        question = f"{row['hint']}\n{question}"
    for c, o in _mmbench_options_llava(row):
        question += f"\n{c}. {o}"
    return f"{question}\n{OPTION_LETTER}"


def _mmbench_read(row):
    options = _mmbench_options_lmms(row)
    letters = [c for c, _ in options]
    return Target(_gold_letter(row["answer"], letters), letters=letters, options=[str(o) for _, o in options])


# --- multiple choice with an options list ----------------------------------------------------------

def _options_list(value) -> list:
    """Options as a list: a list cell, or MMMU's string ``"['a', 'b']"``."""
    if isinstance(value, str):
        value = ast.literal_eval(value)
    if not isinstance(value, (list, tuple)) or not value:
        raise ValueError(f"options must be a non-empty list, got {value!r}")
    return [str(v) for v in value]


def _index_read(options_column):
    def read(row):
        options = _options_list(row[options_column])
        letter = _letter_of(row["answer"], options)
        return Target(letter, letters=[chr(65 + i) for i in range(len(options))], options=options)
    return read


def _ai2d(row):
    return f"{row['question']}\n{_lettered(_options_list(row['options']))}\n{OPTION_LETTER}"


def _scienceqa(row):
    context = f"Context: {row['hint']}\n" if row.get("hint") else ""
    return f"{context}{row['question']}\n{_lettered(_options_list(row['choices']))}\n{OPTION_LETTER}"


def _mmstar(row):
    return row["question"].strip().replace(" Please answer yes or no.", "") + "\n" + OPTION_LETTER[:-1]


def _letter_read(row):
    return Target(_gold_letter(row["answer"], list("ABCD")), letters=list("ABCD"))


_SEED_COLUMNS = ("choice_a", "choice_b", "choice_c", "choice_d")


def _seed(row):
    return f"{row['question']}\n{_lettered([row[c] for c in _SEED_COLUMNS])}\n{OPTION_LETTER}"


def _seed_read(row):
    return Target(_gold_letter(row["answer"], list("ABCD")), letters=list("ABCD"),
                  options=[str(row[c]) for c in _SEED_COLUMNS])


# --- yes / no --------------------------------------------------------------------------------------

def _short(row):
    return f"{row['question'].strip()}\n{SHORT_ANSWER}"


def _mme(row):
    return f"{row['question'].strip().replace(' Please answer yes or no.', '')}\n{SHORT_ANSWER}"


def _yes_no_read(row):
    gold = str(row["answer"]).strip().lower().replace(".", "")
    if gold not in ("yes", "no"):
        raise ValueError(f"answer {row['answer']!r} is neither yes nor no")
    return Target(gold, meta={k: row[k] for k in ("category", "question_id") if k in row})


# --- RealWorldQA, MMMU -----------------------------------------------------------------------------

def _realworldqa(row):
    return row["question"].strip()


def _realworldqa_read(row):
    gold = str(row["answer"]).strip()
    if gold.upper() in ("A", "B", "C", "D"):
        return Target(gold.upper(), letters=list("ABCD"), metric="letter", parser="mcq-extract")
    return Target(gold, metric="match", parser="lower-no-period")


def _mmmu(row):
    if row["question_type"] == "multiple-choice":
        return f"{row['question']}\n{_lettered(_options_list(row['options']))}\n\n{OPTION_LETTER}"
    return f"{row['question']}\n\n{SHORT_ANSWER}"


def _mmmu_read(row):
    if row["question_type"] == "multiple-choice":
        options = _options_list(row["options"])
        letters = [chr(65 + i) for i in range(len(options))]
        return Target(_gold_letter(row["answer"], letters), letters=letters, options=options, metric="letter",
                      parser="mmmu-choice")
    return Target(str(row["answer"]), metric="mmmu-open", parser="text")


# --- free-form -------------------------------------------------------------------------------------

def _plain(suffix):
    return lambda row: f"{row['question']}{suffix}"


def _capitalised(suffix):
    return lambda row: f"{row['question'].capitalize()}{suffix}"


def _answers_read(column, key=None):
    def read(row):
        refs = [str(a[key] if key else a) for a in (row[column] or [])]
        if not refs:
            raise ValueError(f"no reference answers in column {column!r}")
        return Target(refs[0], references=refs)
    return read


def _single_read(row):
    gold = row["answer"]
    if not isinstance(gold, str) or not gold.strip():
        raise ValueError(f"answer {gold!r} is not a non-empty string")
    return Target(gold)


def _ocrbench_read(row):
    refs = row["answer"] if isinstance(row["answer"], list) else [row["answer"]]
    refs = [str(r) for r in refs]
    if not refs:
        raise ValueError("no reference answers in column 'answer'")
    metric = "contains-nospace" if row.get("dataset") == "HME100k" else "contains"
    return Target(refs[0], references=refs, metric=metric)


_LMMS = "lmms-eval {} (EvolvingLMMs-Lab/lmms-eval 75571cfe, lmms_eval/tasks/{})"


def _lmms(task, where):
    return _LMMS.format(task, where)


_FREE = f"\n{SHORT_ANSWER}"
_VIZWIZ = "\nWhen the provided information is insufficient, respond with 'Unanswerable'." + _FREE

TASKS: dict[str, Task] = {t.name: t for t in (
    Task("mmbench", "MMBench (en, dev)", "lmms-lab-encoder/MMBench", "dev",
         ("question", "hint", "answer", "A", "B", "C", "D", "E"), _mmbench_read, {
             "lmms-eval": Style(_mmbench_lmms, "mmbench", "letter",
                                _lmms("mmbench_en_dev", "mmbench/en_utils.py mmbench_doc_to_text; matching: "
                                      "mmbench_evals.py can_infer without the GPT fallback")),
             "llava": Style(_mmbench_llava, "mmbench", "letter",
                            "LLaVA-1.5 llava/eval/model_vqa_mmbench.py --single-pred-prompt (options A-D); scored by "
                            "the MMBench evaluator's rule matching (as lmms-eval's)")},
         subset="en", max_new_tokens=1024,
         note="Single pass: the reference's circular evaluation (every rotation of the options) is not run."),
    Task("mmstar", "MMStar", "Lin-Chen/MMStar", "val", ("question", "answer"), _letter_read, {
        "lmms-eval": Style(_mmstar, "mcq-extract", "letter", _lmms("mmstar", "mmstar/utils.py mmstar_doc_to_text, "
                                                                    "exact_match via _task_utils/mcq_extract.py"))},
         max_new_tokens=1024,
         note="lmms-eval's post-prompt has no final period; LLaVA-1.5 did not evaluate MMStar."),
    Task("ai2d", "AI2D", "lmms-lab-encoder/ai2d", "test", ("question", "options", "answer"), _index_read("options"), {
        "lmms-eval": Style(_ai2d, "ai2d", "em-nopunct",
                           _lmms("ai2d", "ai2d/utils.py ai2d_doc_to_text (mcq), MultiChoiceRegexFilter, "
                                 "exact_match ignore case/punct"))}),
    Task("scienceqa", "ScienceQA-IMG", "lmms-lab-encoder/ScienceQA", "test", ("question", "hint", "choices", "answer"),
         _index_read("choices"), {
             "lmms-eval": Style(_scienceqa, "scienceqa", "letter",
                                _lmms("scienceqa_img", "scienceqa/utils.py sqa_doc_to_text, sqa_process_results")),
             "llava": Style(_scienceqa, "scienceqa-llava", "letter",
                            "prompt as lmms-eval (LLaVA's llava_test_CQM-A.json is not in the stored copy); parsing: "
                            "LLaVA-1.5 llava/eval/eval_science_qa.py")},
         subset="ScienceQA-IMG"),
    Task("seedbench", "SEED-Bench (image)", "lmms-lab-encoder/SEED-Bench", "test", ("question", "answer", "data_type")
         + _SEED_COLUMNS, _seed_read, {
             "lmms-eval": Style(_seed, "first-char", "match", _lmms("seedbench", "seedbench/utils.py seed_doc_to_text, "
                                                                    "seed_process_result (first character)"))},
         keep=lambda row: row.get("data_type") == "image", max_new_tokens=1024,
         note="Image questions only (data_type == 'image'); LLaVA-1.5's option format (docs/Evaluation.md) is the "
              "same text."),
    Task("pope", "POPE", "lmms-lab-encoder/POPE", "test", ("question", "answer"), _yes_no_read, {
        "lmms-eval": Style(_short, "pope", "match",
                           _lmms("pope", "pope/utils.py pope_doc_to_text, pope_process_results")),
        "llava": Style(_short, "pope-llava", "match", "prompt: LLaVA-1.5 docs/Evaluation.md short-answer format "
                       "(llava_pope_test.jsonl is not in the stored copy); parsing: llava/eval/eval_pope.py")},
         max_new_tokens=128),
    Task("mme", "MME", "lmms-lab-encoder/MME", "test", ("question", "answer", "category", "question_id"),
         _yes_no_read, {
        "lmms-eval": Style(_mme, "mme", "match", _lmms("mme", "mme/utils.py mme_doc_to_text, parse_pred_ans, "
                                                        "mme_aggregate_results"))},
         aggregate="mme",
         note="MME's score is its own sum (metrics.mme_score: acc + acc+ per category, summed); LLaVA's "
              "llava_mme.jsonl is not in the stored copy."),
    Task("realworldqa", "RealWorldQA", "lmms-lab-encoder/RealWorldQA", "test", ("question", "answer"),
         _realworldqa_read, {
             "lmms-eval": Style(_realworldqa, "mcq-extract", "letter",
                                _lmms("realworldqa", "realworldqa/utils.py realworldqa_doc_to_text (empty default "
                                      "post-prompt), realworldqa_process_results"))}),
    Task("mmmu", "MMMU (val)", "lmms-lab-encoder/MMMU", "validation",
         ("question", "options", "answer", "question_type"), _mmmu_read, {
             "lmms-eval": Style(_mmmu, "mmmu-choice", "letter",
                                _lmms("mmmu_val", "mmmu/utils.py construct_prompt, mmmu_process_results; "
                                      "_task_utils/mmmu_mcq_utils.py"))},
         image="image_1", max_new_tokens=128,
         note="Questions with several images are refused (skipit feeds one image); '<image 1>' stays in the text "
              "(interleaved_format: false)."),
    Task("vqav2", "VQAv2 (val)", "lmms-lab-encoder/VQAv2", "validation", ("question", "answers"),
         _answers_read("answers", "answer"), {
             "lmms-eval": Style(_plain(_FREE), "text", "vqa-lmms", _lmms("vqav2_val", "vqav2/utils.py")),
             "llava": Style(_plain(_FREE), "evalai", "vqa",
                            "LLaVA-1.5 docs/Evaluation.md short-answer prompt; scripts/convert_vqav2_for_submission.py "
                            "(EvalAI processor) then the official VQA script")}),
    Task("gqa", "GQA (testdev balanced)", "lmms-lab-encoder/GQA", "testdev", ("question", "answer"), _single_read, {
        "lmms-eval": Style(_plain(_FREE), "raw", "em-nopunct", _lmms("gqa", "gqa/utils.py gqa_doc_to_text, "
                                                                     "exact_match ignore case/punct")),
        "llava": Style(_plain(_FREE), "gqa-llava", "match", "LLaVA-1.5 scripts/convert_gqa_for_eval.py then GQA's "
                       "eval.py (exact match)")},
         subset="testdev_balanced_instructions",
         note="lmms-eval joins the images of 'testdev_balanced_images' by imageId; skipit reads one table, so pass a "
              "dataset with the image column joined (save_to_disk) as --data."),
    Task("textvqa", "TextVQA (val)", "lmms-lab-encoder/textvqa", "validation", ("question", "answers"),
         _answers_read("answers"), {
             "lmms-eval": Style(_capitalised(_FREE), "text", "vqa-evalai",
                                _lmms("textvqa_val", "textvqa/utils.py (ocr: false)")),
             "llava": Style(_plain(_FREE), "text", "vqa-evalai",
                            "LLaVA-1.5 docs/Evaluation.md short-answer prompt without the OCR tokens "
                            "(llava_textvqa_val_v051_ocr.jsonl is not in the stored copy); "
                            "llava/eval/m4c_evaluator.py")},
         max_new_tokens=1024),
    Task("vizwiz", "VizWiz-VQA (val)", "lmms-lab-encoder/VizWiz-VQA", "val", ("question", "answers"),
         _answers_read("answers"), {
             "lmms-eval": Style(_capitalised(_VIZWIZ), "text", "vqa-evalai",
                                _lmms("vizwiz_vqa_val", "vizwiz_vqa/utils.py"))},
         max_new_tokens=1024,
         note="LLaVA-1.5 scored VizWiz on the test server (llava_test.jsonl not in the stored copy)."),
    Task("docvqa", "DocVQA (val)", "lmms-lab-encoder/DocVQA", "validation", ("question", "answers"),
         _answers_read("answers"), {
             "lmms-eval": Style(_plain(_FREE), "raw", "anls",
                                _lmms("docvqa_val", "docvqa/utils.py; api/metrics.py anls"))},
         subset="DocVQA", max_new_tokens=32),
    Task("chartqa", "ChartQA (test)", "lmms-lab-encoder/ChartQA", "test", ("question", "answer"), _single_read, {
        "lmms-eval": Style(_plain("\nAnswer the question with a single word."), "raw", "relaxed",
                           _lmms("chartqa", "chartqa/utils.py relaxed_correctness"))}),
    Task("ocrbench", "OCRBench", "echo840/OCRBench", "test", ("question", "answer", "dataset"), _ocrbench_read, {
        "lmms-eval": Style(_realworldqa, "text", "contains", _lmms("ocrbench", "ocrbench/utils.py"))},
         max_new_tokens=128),
)}


def get_task(name: str) -> Task:
    """The preset called ``name``; a :class:`~skipit.empirical.settings.SettingError` (a
    ``ValueError``) naming every preset otherwise."""
    from skipit.empirical.settings import SettingError

    if name not in TASKS:
        raise SettingError(f"{{task}} must be one of {', '.join(TASKS)}, got {{got}}", {"got": repr(name)})
    return TASKS[name]


ACCURACY_KEYS = ("accuracy", "percent")
"""The keys of :func:`benchmark_score` every preset has (the mean score); the others are the
preset's own aggregate (MME's ``perception``, ``cognition``, ``total``)."""


def benchmark_score(task: Task, examples, scores) -> dict[str, float]:
    """The preset's headline numbers from per-example ``scores`` (in [0, 1], one per example, in order):
    ``{"accuracy": mean}`` (times 100 as ``percent``), and for ``aggregate == "mme"`` MME's own sums
    (:func:`skipit.empirical.metrics.mme_score` over each example's ``meta`` category and image)."""
    from skipit.empirical.metrics import mme_score

    scores = [float(s) for s in scores]
    if len(scores) != len(examples) or not scores:
        raise ValueError(f"`scores` must have one value per example ({len(examples)}), got {len(scores)}")
    out = {"accuracy": sum(scores) / len(scores)}
    out["percent"] = 100 * out["accuracy"]
    if task.aggregate == "mme":
        out.update(mme_score(scores, [ex.meta["category"] for ex in examples],
                             [ex.meta["question_id"] for ex in examples]))
    return out
