"""Examples for ``skipit certify`` / ``evaluate`` / ``skip`` / ``data``: JSONL files, bundled sets,
Hugging Face datasets, and benchmark presets (``--task``).

``--data`` is one of

* a JSONL file, one example a line::

      {"image": "images/0001.png", "question": "Which digit is this?", "answer": "7", "choices": ["1", "7"]}

  ``image`` is a path relative to the JSONL file; ``choices`` is optional metadata (the allowed
  answers; a multiple-choice question states its options in its own text, as the bundled sets do);
* a bundled set name (``digits-test`` ...);
* a Hugging Face ``datasets`` dataset (the ``datasets`` extra): a directory written by
  ``save_to_disk``, parquet or arrow files or a folder of them, or a hub dataset id found in
  the local Hugging Face cache (read offline, never downloaded).

A dataset's columns are found by name (:class:`ColumnMap`; ``--image-column`` ... override).
When a row has choices, the question is rendered with its lettered options (:data:`MCQ_TEMPLATE`:
the question, the options one a line as ``A. text``, then the instruction to answer with the
option's letter); the answer becomes the letter and the metric the letter. Rows with several
reference answers (VQAv2, TextVQA: 10) keep them all for the VQA accuracy
(:mod:`skipit.empirical.metrics`). A standard benchmark is read by its preset instead
(``--task``, :mod:`skipit.empirical.tasks`): the reference's columns, prompt, answer parsing and metric.

Every line or row is checked before any model work (required fields and their types, the image
opens, one image per question); each problem is reported with its 1-based line number (JSONL)
or its 0-based row index (datasets), or skipped with ``skip_bad``.

The modules, one job each: :mod:`.examples` (the records, the bad-row listing, the data hash),
:mod:`.sources` (JSONL, bundled sets, opening Hugging Face datasets, images), :mod:`.columns`
(dataset rows to examples), :mod:`.prompts` (the text and inputs the model sees), :mod:`.load`
(the entry point) and :mod:`.cli` (the command-line options).
"""

from skipit.empirical.data.cli import add_data_arguments, examples_from_args
from skipit.empirical.data.columns import ANSWER_COLUMNS, CHOICES_COLUMNS, IMAGE_COLUMNS, QUESTION_COLUMNS
from skipit.empirical.data.examples import (
    DEFAULT_MAX_NEW_TOKENS,
    LETTERS,
    METRIC_CHOICES,
    VQA_REFERENCES,
    ColumnMap,
    Example,
    LoadReport,
    data_sha256,
)
from skipit.empirical.data.load import load_examples
from skipit.empirical.data.prompts import (
    FALLBACK_TEMPLATE,
    MCQ_INSTRUCTION,
    MCQ_TEMPLATE,
    build_inputs,
    build_prompt,
    check_examples_for,
    check_mcq_template,
    question_text,
    render_mcq,
)
from skipit.empirical.data.sources import REQUIRED_FIELDS, bundled_names, load_jsonl, to_rgb

__all__ = [
    "ANSWER_COLUMNS", "CHOICES_COLUMNS", "DEFAULT_MAX_NEW_TOKENS", "FALLBACK_TEMPLATE", "IMAGE_COLUMNS", "LETTERS",
    "MCQ_INSTRUCTION", "MCQ_TEMPLATE", "METRIC_CHOICES", "QUESTION_COLUMNS", "REQUIRED_FIELDS", "VQA_REFERENCES",
    "ColumnMap", "Example", "LoadReport", "add_data_arguments", "build_inputs", "build_prompt", "bundled_names",
    "check_examples_for", "check_mcq_template", "data_sha256", "examples_from_args", "load_examples", "load_jsonl",
    "question_text", "render_mcq", "to_rgb",
]
