"""The data options of ``certify``, ``evaluate`` and ``skip``, and the examples they name."""

from __future__ import annotations

import argparse

from skipit.empirical.data.columns import ANSWER_COLUMNS, CHOICES_COLUMNS, IMAGE_COLUMNS, QUESTION_COLUMNS
from skipit.empirical.data.examples import DEFAULT_MAX_NEW_TOKENS, METRIC_CHOICES, ColumnMap, Example, LoadReport
from skipit.empirical.data.load import load_examples
from skipit.empirical.data.presets import ANSWER_MODES
from skipit.empirical.tasks import PROMPT_STYLES, TASKS
from skipit.empirical.data.prompts import MCQ_INSTRUCTION, MCQ_TEMPLATE


def add_data_arguments(parser: argparse.ArgumentParser,
                       default_data: str = "digits-test") -> argparse._ArgumentGroup:
    """The data options of ``certify``, ``evaluate`` and ``skip`` (``--samples`` stays with each
    command). ``--data`` and ``--skip-bad`` are added only when ``parser`` (or a parent parser)
    does not define them already."""
    group = parser.add_argument_group("data")
    known = set(getattr(parser, "_option_string_actions", {}))
    known |= {f"--{a.dest.replace('_', '-')}" for a in parser._actions}  # a positional DATA counts as --data
    if "--data" not in known:
        group.add_argument("--data", default=None, metavar="PATH|NAME|HUB_ID",
                           help="JSONL file (image, question, answer[, choices]), bundled set, Hugging Face "
                                "dataset (save_to_disk directory, parquet/arrow files or a folder of them, or a hub "
                                f"dataset id in the local cache, read offline) (default: {default_data})")
    group.add_argument("--task", default=None, choices=list(TASKS), metavar="NAME",
                       help="read --data as a benchmark preset: columns, prompt, answer parsing and metric as its "
                            "reference (lmms-eval or LLaVA-1.5) does; without --data, the preset's hub dataset id "
                            f"(from the local cache). Presets: {', '.join(TASKS)}")
    group.add_argument("--prompt-style", default=None, choices=PROMPT_STYLES,
                       help="with --task: whose prompt and parsing to follow where lmms-eval and LLaVA-1.5 differ "
                            "(default: lmms-eval)")
    group.add_argument("--answer", default="auto", choices=ANSWER_MODES,
                       help="how an answer is read: generate (the greedy text, parsed as the reference parses it), "
                            "one-token (the argmax of the first token for multiple choice, the paper's; cheaper); "
                            "auto: generate with --task, else one-token for letter answers")
    group.add_argument("--split", default=None, help="dataset split (needed when the dataset has several)")
    group.add_argument("--subset", default=None, metavar="NAME",
                       help="dataset configuration (subset) of a hub dataset or of a folder of data files")
    for role, defaults in (("image", IMAGE_COLUMNS), ("question", QUESTION_COLUMNS), ("answer", ANSWER_COLUMNS),
                           ("choices", CHOICES_COLUMNS)):
        group.add_argument(f"--{role}-column", default=None, metavar="NAME",
                           help=f"dataset column of the {role} (default: the first of {', '.join(defaults)})")
    group.add_argument("--mcq-template", default=MCQ_TEMPLATE, metavar="FORMAT",
                       help="how a row with choices is shown: a format string with {question} and {options} "
                            "(lettered options 'A. text' one a line); default: LLaVA / lmms-eval's, the options "
                            "then \"" + MCQ_INSTRUCTION.replace("%", "%%") + "\"")
    group.add_argument("--metric", default="auto", choices=METRIC_CHOICES,
                       help="answer scoring: letter (one token, the paper's), exact (normalised exact match of the "
                            "greedy answer), vqa (VQA accuracy over the references), anls (text/document "
                            "questions); auto: letter for multiple choice and JSONL/bundled sets, vqa with 10 "
                            "references, else exact")
    group.add_argument("--max-new-tokens", type=int, default=None, metavar="N",
                       help=f"greedy tokens per free-form answer (default: 1 for letter, else {DEFAULT_MAX_NEW_TOKENS})")
    if "--skip-bad" not in known:
        group.add_argument("--skip-bad", action="store_true",
                           help="skip (and report) bad data lines or rows instead of stopping")
    return group


def examples_from_args(args: argparse.Namespace,
                       default_data: str = "digits-test") -> tuple[list[Example], LoadReport]:
    """``(examples, report)`` for the options of :func:`add_data_arguments` and ``--samples`` (0 = all);
    an option the command does not define takes its default."""
    def get(name, default=None):
        return getattr(args, name, default)

    columns = ColumnMap(get("image_column"), get("question_column"), get("answer_column"), get("choices_column"))
    task = get("task")
    return load_examples(get("data") or ("" if task else default_data), skip_bad=bool(get("skip_bad", False)),
                         limit=get("samples", 0) or None, split=get("split"), subset=get("subset"), columns=columns,
                         metric=get("metric", "auto"), mcq_template=get("mcq_template", MCQ_TEMPLATE),
                         max_new_tokens=get("max_new_tokens"), task=task, prompt_style=get("prompt_style"),
                         answer=get("answer", "auto"))
