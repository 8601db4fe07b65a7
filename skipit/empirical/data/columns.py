"""Rows of a Hugging Face dataset to :class:`~skipit.empirical.data.examples.Example` s: which column
holds what (:class:`~skipit.empirical.data.examples.ColumnMap`), how answers and options are read, and
which metric scores each row when ``--metric auto``."""

from __future__ import annotations

import ast
import hashlib
import json
import re
from collections import Counter

from skipit.empirical.data.examples import (
    DEFAULT_MAX_NEW_TOKENS,
    LETTERS,
    METRIC_CHOICES,
    VQA_REFERENCES,
    Example,
    LoadReport,
    _bad,
    _raise_bad,
)
from skipit.empirical.data.prompts import MCQ_INSTRUCTION, render_mcq
from skipit.empirical.metrics import METRICS
from skipit.empirical.settings import SettingError
from skipit.empirical.data.sources import (
    _image_cells,
    _image_digest,
    _image_file,
    _open_dataset,
    _open_image,
    _verify_image,
)

IMAGE_COLUMNS = ("image", "decoded_image", "image_1", "img", "images")
QUESTION_COLUMNS = ("question", "query", "problem")
ANSWER_COLUMNS = ("answers", "answer", "multiple_choice_answer", "label")
CHOICES_COLUMNS = ("options", "choices")
_EXTRA_IMAGE_COLUMN = re.compile(r"^image_\d+$")
_OPTIONS_IN_TEXT = re.compile(r"(?<![A-Za-z])A\s*[.:)].*(?<![A-Za-z])B\s*[.:)]", re.DOTALL)
"""A question that lists lettered options itself (MMStar: ``Options: A: ..., B: ...``)."""


def _is_image_feature(feature):
    import datasets

    if isinstance(feature, datasets.Image):
        return True
    inner = getattr(feature, "feature", None)
    return isinstance(inner, datasets.Image) if inner is not None else (
        isinstance(feature, list) and len(feature) == 1 and isinstance(feature[0], datasets.Image))


def _resolve_columns(features, columns, source):
    """``{"image", "question", "answer", "choices"}`` -> column name (choices may be None)."""
    names = list(features)
    chosen = {}
    for role, given, defaults in (("image", columns.image, IMAGE_COLUMNS),
                                  ("question", columns.question, QUESTION_COLUMNS),
                                  ("answer", columns.answer, ANSWER_COLUMNS),
                                  ("choices", columns.choices, CHOICES_COLUMNS)):
        if given is not None:
            if given not in features:
                raise SettingError(f"{{columns.{role}}} {{given}} is not a column of {{source}} (columns: {{found}})",
                                   {"given": repr(given), "source": source, "found": ", ".join(names)})
            chosen[role] = given
            continue
        if role == "image":
            found = [c for c in defaults if c in features and _is_image_feature(features[c])]
        else:
            found = [c for c in defaults if c in features]
        if not found and role != "choices":
            raise SettingError(f"{{source}} has no {role} column among the defaults ({', '.join(defaults)}); "
                               f"columns: {{found}}; name it with {{columns.{role}}}",
                               {"source": source, "found": ", ".join(names)})
        chosen[role] = found[0] if found else None
    return chosen


def _answer_list(value):
    """The reference answers in a cell: a string, a number, a list of them, or VQAv2's list of
    ``{"answer": ...}`` dicts."""
    if isinstance(value, dict) and "answer" in value:
        value = value["answer"]
    if isinstance(value, (list, tuple)):
        out = []
        for v in value:
            out += _answer_list(v)
        return out
    if value is None or isinstance(value, bool):
        return []
    if isinstance(value, (int, float)):
        return [str(value)]
    return [value] if isinstance(value, str) and value.strip() else []


def _choices_list(value):
    """Options as a list of strings: a list cell, or MMMU's string ``"['a', 'b']"``; None if malformed."""
    if value is None:
        return []
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return []
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            return None
    if not isinstance(value, (list, tuple)):
        return None
    return [str(v) for v in value]


def _is_index(value):
    return not isinstance(value, bool) and str(value).strip().isdigit()


def _answer_kind(rows):
    """How the answers of multiple-choice rows name the right option, decided over all of them:
    ``letter`` (``"B"``, every row), ``index`` (``1`` or ``"1"``, AI2D) or ``text`` (the option itself).

    Answers that are all whole numbers are indices; a row whose index is out of range is a bad row
    (:func:`_mcq_answer` gives None, and the row is named), never a reason to read the other rows as
    option text. Only when some index is out of range AND every row's answer is exactly one of its
    options' texts (numeric options such as ``["10", "20", "30"]``) are the answers read as text."""
    mcq = [(answers[0], choices) for answers, choices in rows if choices]
    if mcq and all(a in LETTERS[:len(c)] for a, c in mcq):
        return "letter"
    if mcq and all(_is_index(a) for a, _ in mcq):
        in_range = all(int(a) < len(c) for a, c in mcq)
        as_text = all(sum(o.strip() == str(a).strip() for o in c) == 1 for a, c in mcq)
        return "text" if (not in_range and as_text) else "index"
    return "text"


def _mcq_answer(answer, choices, kind):
    """The letter of the right option, or None when ``answer`` names none of ``choices``."""
    if kind == "letter":
        return answer
    if kind == "index":
        return LETTERS[int(answer)] if int(answer) < len(choices) else None
    matches = [i for i, c in enumerate(choices) if c.strip() == str(answer).strip()]
    return LETTERS[matches[0]] if len(matches) == 1 else None


def _most_common(answers):
    from skipit.empirical.metrics import normalise_vqa

    counts = Counter(normalise_vqa(a) for a in answers)
    top = counts.most_common(1)[0][0]
    return next(a for a in answers if normalise_vqa(a) == top)


def _load_dataset_examples(source, split, subset, columns, skip_bad, limit, metric, template):
    """Examples of a Hugging Face dataset; every row checked, only the first ``limit`` decoded."""
    from skipit.errors import SkipitError

    ds, name, root = _open_dataset(source, split, subset)
    cols = _resolve_columns(ds.features, columns, name)
    extra_images = [c for c in ds.features if _EXTRA_IMAGE_COLUMN.match(c) and c != cols["image"]]
    if getattr(ds, "_indices", None) is not None:
        ds = ds.flatten_indices()
    wanted_columns = [c for c in dict.fromkeys([*cols.values(), *extra_images]) if c is not None]
    table = ds.data.table.select(wanted_columns) if hasattr(ds.data, "table") else ds.data.select(wanted_columns)
    digest = hashlib.sha256(json.dumps(cols, sort_keys=True).encode())
    rows, skipped = [], []
    index = 0
    for batch in table.to_batches(max_chunksize=256):
        batch = batch.to_pydict()
        for i in range(len(batch[wanted_columns[0]])):
            row = {c: batch[c][i] for c in wanted_columns}
            problem, parsed = _check_row(row, cols, extra_images, root, index)
            digest.update(json.dumps([index, parsed[1:] if parsed else None, problem], default=str).encode())
            for cell in _image_cells(row[cols["image"]]):
                digest.update(_image_digest(cell))
            if problem:
                _bad(skipped, index, problem)
            else:
                rows.append((index, parsed[1:]))  # the image cell is read again when decoded: not kept
            index += 1
    kind = _answer_kind([(p[1], p[2]) for _, p in rows])
    all_letters = bool(rows) and all(len(p[1]) == 1 and p[1][0] in LETTERS and not p[2]
                                     and _OPTIONS_IN_TEXT.search(p[0]) for _, p in rows)
    examples, unmatched = [], []
    for index, (question, answers, choices) in rows:
        if choices:
            letter = _mcq_answer(answers[0], choices, kind)
            if letter is None:
                why = (f"answer index {answers[0]!r} is out of range for {len(choices)} options"
                       if kind == "index" else f"answer {answers[0]!r} is none of the options {choices!r}")
                unmatched.append((index, f"{why} (column {cols['answer']!r})"))
                continue
            row_metric = metric if metric != "auto" else "letter"
            question = render_mcq(question, choices, template)
            answer, references, allowed = letter, [], list(LETTERS[:len(choices)])
        else:
            if metric == "letter" or (metric == "auto" and all_letters):
                row_metric = "letter"
                if MCQ_INSTRUCTION.lower() not in question.lower():
                    question = f"{question}\n{MCQ_INSTRUCTION}"
            elif metric == "auto":
                row_metric = "vqa" if len(answers) >= VQA_REFERENCES else "exact"
            else:
                row_metric = metric
            answer = answers[0] if len(answers) == 1 else _most_common(answers)
            references, allowed = (list(answers) if len(answers) > 1 else []), []
        examples.append((index, Example(None, question, answer, allowed, source=f"{name}[{index}]",
                                        references=references, metric=row_metric)))
    for index, why in unmatched:
        _bad(skipped, index, why)
    skipped.sort()
    kept = []
    image_column = table.column(cols["image"])
    for index, example in examples:
        wanted = limit is None or len(kept) < limit
        if not wanted:
            break  # the rest were verified by _check_row
        try:
            where = f"row {index}, column {cols['image']!r}"
            example.image = _open_image(_image_file(_image_cells(image_column[index].as_py())[0], root, where))
            kept.append(example)
        except Exception as err:  # PIL raises many kinds: all mean "unreadable image"
            _bad(skipped, index, _unreadable(err, cols["image"]))
    skipped.sort()
    report = LoadReport(name, skipped, digest.hexdigest(), unit="row",
                        columns={k: v for k, v in cols.items() if v is not None})
    if skipped and not skip_bad:
        _raise_bad(skipped, name, "row")
    if not kept:
        raise SkipitError(f"no usable examples in {name}")
    return kept, report


def _unreadable(err, column):
    """One line for an image PIL cannot read, naming the column (the row is named by the listing)."""
    detail = str(err).splitlines()[0] if str(err) else ""
    return f"unreadable image in column {column!r} ({type(err).__name__}: {detail})"


def _check_row(row, cols, extra_images, root, index=0):
    """``(problem, None)`` or ``(None, (image cell, question, answers, choices))`` for one dataset row."""
    cells = _image_cells(row[cols["image"]])
    others = [c for c in extra_images if row.get(c) is not None]
    if len(cells) + len(others) > 1:
        where = f"{len(cells)} in {cols['image']!r}" + (f", plus {', '.join(others)}" if others else "")
        return (f"has {len(cells) + len(others)} images ({where}); skipit feeds one image per question, "
                "and no supported family's prompt builder takes several here"), None
    if not cells:
        return f"no image in column {cols['image']!r}", None
    try:
        _verify_image(_image_file(cells[0], root, f"row {index}, column {cols['image']!r}"))
    except Exception as err:  # PIL raises many kinds: all mean "unreadable image"
        return _unreadable(err, cols["image"]), None
    question = row[cols["question"]]
    if not isinstance(question, str) or not question.strip():
        return f"missing question (column {cols['question']!r} holds {question!r})", None
    answers = _answer_list(row[cols["answer"]])
    if not answers:
        return f"missing answer (column {cols['answer']!r} holds {row[cols['answer']]!r})", None
    choices = _choices_list(row[cols["choices"]]) if cols["choices"] else []
    if choices is None:
        return f"choices (column {cols['choices']!r}) must be a list of options, got {row[cols['choices']]!r}", None
    if len(choices) > len(LETTERS):
        return f"has {len(choices)} options; at most {len(LETTERS)} can be lettered", None
    return None, (cells[0], question, answers, choices)


def _resolve_metric(examples, report, metric, max_new_tokens):
    if metric not in METRIC_CHOICES:
        raise SettingError(f"{{metric}} must be one of {', '.join(METRIC_CHOICES)}, got {{got}}", {"got": repr(metric)})
    for ex in examples:
        if not ex.metric:
            ex.metric = "letter" if metric == "auto" else metric
    used = sorted({ex.metric for ex in examples}, key=METRICS.index)
    report.metric = "+".join(used)
    if max_new_tokens is not None and (isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int)
                                       or max_new_tokens < 1):
        raise SettingError("{max_new_tokens} must be an integer >= 1, got {got}", {"got": repr(max_new_tokens)})
    report.max_new_tokens = max_new_tokens or (1 if used == ["letter"] else DEFAULT_MAX_NEW_TOKENS)
