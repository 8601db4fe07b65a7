"""The records every data source fills: :class:`Example`, :class:`ColumnMap`, :class:`LoadReport`;
the shared checks and the listing of bad lines or rows; the sha256 of a loaded set."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field

from skipit.empirical.metrics import METRICS

LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
METRIC_CHOICES = ("auto", *METRICS)
DEFAULT_MAX_NEW_TOKENS = 16
"""Greedy tokens generated for a free-form answer when ``--max-new-tokens`` is not given
(lmms-eval's ``generation_kwargs.max_new_tokens`` for AI2D and RealWorldQA). The letter metric
reads one token."""
VQA_REFERENCES = 10
"""References per question of VQAv2 and TextVQA: ``auto`` scores rows with this many with the VQA accuracy."""


@dataclass
class Example:
    """One visual question: a PIL RGB image, the question as the model sees it, the answer,
    optional choices (the allowed answers: letters for a multiple-choice row), where it came
    from, the reference answers of a free-form question (empty: ``[answer]``) and the metric
    that scores it (:data:`skipit.empirical.metrics.METRICS`; empty: ``letter``). ``parser``
    (:data:`skipit.empirical.parsing.PARSERS`) says how the answer is read from the greedy
    generation; empty: a ``letter`` example reads its first token only (the paper's one-token
    answer), any other example its generated text. ``options`` are the texts of the options
    lettered by ``choices`` (for parsers matching option text), ``meta`` what a benchmark-level
    score needs (MME's category and image)."""

    image: object
    question: str
    answer: str
    choices: list = field(default_factory=list)
    source: str = ""  # "file.jsonl:12", "bundled:name[12]" or "dataset[12]"
    references: list = field(default_factory=list)
    metric: str = ""
    parser: str = ""
    options: list = field(default_factory=list)
    meta: dict = field(default_factory=dict)

    def image_bytes(self):
        """Mode, size and raw pixels: what the sha256 of a data set covers."""
        img = self.image
        return f"{img.mode}{img.size}".encode() + img.tobytes()

    @property
    def answers(self):
        """The reference answers scored against: ``references``, or ``[answer]``."""
        return list(self.references) if self.references else [self.answer]


@dataclass
class ColumnMap:
    """Which dataset columns hold the image, question, answer and choices (None: the first
    present of the defaults :data:`IMAGE_COLUMNS`, :data:`QUESTION_COLUMNS`,
    :data:`ANSWER_COLUMNS`, :data:`CHOICES_COLUMNS`; the image column must hold images)."""

    image: str | None = None
    question: str | None = None
    answer: str | None = None
    choices: str | None = None


@dataclass
class LoadReport:
    """What :func:`load_examples` read: the source, the skipped ``(line or row, reason)``
    pairs (``unit`` says which: 1-based JSONL lines, 0-based dataset rows), the sha256 of the
    whole source, the metric(s) scoring it (``letter``, ``exact``, ``vqa``, ``anls``, or several
    joined by ``+``), the tokens generated per answer, the dataset columns used, and the
    preset and prompt style (``--task``, ``--prompt-style``) when one was used."""

    source: str
    skipped: list = field(default_factory=list)
    sha256: str = ""
    unit: str = "line"
    metric: str = "letter"
    max_new_tokens: int = 1
    columns: dict = field(default_factory=dict)
    task: str = ""
    prompt_style: str = ""


def _bad(skipped, line, reason):
    skipped.append((line, reason))


def _check_limit(limit):
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ValueError(f"`limit` must be None or an integer >= 1, got {limit!r}")


def _raise_bad(skipped, source, unit, header=None):
    """Raise one :class:`~skipit.empirical.settings.SettingError` listing the first 20 bad
    ``(where, why)`` of ``skipped`` verbatim (row contents may hold braces) and naming ``skip_bad``."""
    from skipit.empirical.settings import SettingError

    listing = "\n".join(f"  {unit + ' ' if unit else ''}{n}: {why}" for n, why in skipped[:20])
    more = f"\n  ... and {len(skipped) - 20} more" if len(skipped) > 20 else ""
    header = header or f"{len(skipped)} bad {unit}(s) in {source}"
    raise SettingError("{bad}\nfix them, or pass {skip_bad=True} to skip them",
                       verbatim={"bad": f"{header}:\n{listing}{more}"})


def data_sha256(examples: Iterable[Example]) -> str:
    """sha256 of the examples' content (question, answer, choices, reference answers when there
    are any, the parser and metric when a parser reads the answers, image pixels), order included."""
    h = hashlib.sha256()
    for ex in examples:
        fields = [ex.question, ex.answer, list(ex.choices or [])]
        if ex.references:
            fields.append(list(ex.references))
        if ex.parser:  # how answers are read and scored changes what a run measures
            fields.append(["parser", ex.parser, ex.metric])
        h.update(json.dumps(fields).encode())
        h.update(ex.image_bytes())
    return h.hexdigest()
