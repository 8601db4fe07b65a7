"""Examples for ``skipit certify`` / ``evaluate``: JSONL files, bundled sets, Hugging Face datasets.

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
When a row has choices, the question is rendered as LLaVA and lmms-eval render multiple-choice
questions (:data:`MCQ_TEMPLATE`): the question, the options one a line as ``A. text``, then the
instruction to answer with the option's letter; the answer becomes the letter and the metric
the one-token letter. Rows with several reference answers (VQAv2, TextVQA: 10) keep them all
for the VQA accuracy (:mod:`skipit.empirical.metrics`).

Every line or row is checked before any model work (required fields and their types, the image
opens, one image per question); each problem is reported with its 1-based line number (JSONL)
or its 0-based row index (datasets), or skipped with ``skip_bad``.
"""

from __future__ import annotations

import ast
import hashlib
import io
import json
import os
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import argparse

    import torch
    from PIL import Image

REQUIRED_FIELDS = ("image", "question", "answer")
FALLBACK_TEMPLATE = "USER: <image>\n{question} ASSISTANT:"

MCQ_INSTRUCTION = "Answer with the option's letter from the given choices directly."
MCQ_TEMPLATE = "{question}\n{options}\n" + MCQ_INSTRUCTION
"""How a row with choices is shown to the model (``--mcq-template``; ``{question}`` and
``{options}``, the lettered options one a line as ``A. text``). It is LLaVA-1.5's
multiple-choice prompt (``llava/eval/model_vqa_mmbench.py`` and the ScienceQA evaluation:
options ``A. ...`` one a line, then "Answer with the option's letter from the given choices
directly.") and lmms-eval's default for AI2D, MMStar and MMBench (``post_prompt``)."""
LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
METRIC_CHOICES = ("auto", "letter", "exact", "vqa", "anls")
DEFAULT_MAX_NEW_TOKENS = 16
"""Greedy tokens generated for a free-form answer when ``--max-new-tokens`` is not given
(lmms-eval's ``generation_kwargs.max_new_tokens`` for AI2D and RealWorldQA). The letter metric
reads one token."""
VQA_REFERENCES = 10
"""References per question of VQAv2 and TextVQA: ``auto`` scores rows with this many with the VQA accuracy."""

IMAGE_COLUMNS = ("image", "decoded_image", "image_1", "img", "images")
QUESTION_COLUMNS = ("question", "query", "problem")
ANSWER_COLUMNS = ("answers", "answer", "multiple_choice_answer", "label")
CHOICES_COLUMNS = ("options", "choices")
_EXTRA_IMAGE_COLUMN = re.compile(r"^image_\d+$")
_OPTIONS_IN_TEXT = re.compile(r"(?<![A-Za-z])A\s*[.:)].*(?<![A-Za-z])B\s*[.:)]", re.DOTALL)
"""A question that lists lettered options itself (MMStar: ``Options: A: ..., B: ...``)."""


@dataclass
class Example:
    """One visual question: a PIL RGB image, the question as the model sees it, the answer,
    optional choices (the allowed answers: letters for a multiple-choice row), where it came
    from, the reference answers of a free-form question (empty: ``[answer]``) and the metric
    that scores it (:data:`skipit.empirical.metrics.METRICS`; empty: ``letter``)."""

    image: object
    question: str
    answer: str
    choices: list = field(default_factory=list)
    source: str = ""  # "file.jsonl:12", "bundled:name[12]" or "dataset[12]"
    references: list = field(default_factory=list)
    metric: str = ""

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
    joined by ``+``), the tokens generated per answer, and the dataset columns used."""

    source: str
    skipped: list = field(default_factory=list)
    sha256: str = ""
    unit: str = "line"
    metric: str = "letter"
    max_new_tokens: int = 1
    columns: dict = field(default_factory=dict)


def _bad(skipped, line, reason):
    skipped.append((line, reason))


def to_rgb(img: Image.Image) -> Image.Image:
    """An RGB copy of a PIL image, as the model's image processor would see it.

    Transparency (RGBA, LA, PA, palette or grayscale with a transparent colour) is composited
    on white, as ``transformers.image_transforms.convert_to_rgb`` does; 16- and 32-bit integer
    and float grayscale (``I;16``, ``I``, ``F``) is scaled to 8 bits by its type's range
    (65535 for 16-bit, the image maximum for ``I``/``F`` beyond it), not clipped at 255.
    """
    from PIL import Image

    if img.mode == "RGB":
        return img.copy()
    if img.mode.startswith("I;16") or img.mode in ("I", "F"):
        import numpy as np

        arr = np.asarray(img, dtype=np.float64)
        peak = float(arr.max(initial=0.0))
        if img.mode == "F":
            top = 1.0 if peak <= 1.0 else peak  # floats in [0, 1], else the image's own range
        else:
            top = 65535.0 if peak <= 65535 else peak  # 16-bit data (PNG opens it as I;16 or I)
        scaled = np.clip(np.rint(arr / top * 255.0), 0, 255).astype(np.uint8)
        return Image.fromarray(scaled, mode="L").convert("RGB")
    if "A" in img.getbands() or img.info.get("transparency") is not None:
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")


def _open_image(path_or_file):
    from PIL import Image

    with Image.open(path_or_file) as img:
        img.load()
        return to_rgb(img)


def _verify_image(path_or_file):
    """Check that ``path_or_file`` is an image PIL can read, without decoding its pixels."""
    from PIL import Image

    with Image.open(path_or_file) as img:
        img.verify()


def _check_limit(limit):
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ValueError(f"`limit` must be None or an integer >= 1, got {limit!r}")


def _check_record(record):
    """Why a parsed line is not an example, or None."""
    if not isinstance(record, dict):
        return f"expected a JSON object, got {type(record).__name__}"
    missing = [f for f in REQUIRED_FIELDS if f not in record]
    if missing:
        return "missing field" + ("s " if len(missing) > 1 else " ") + ", ".join(repr(m) for m in missing)
    for name in REQUIRED_FIELDS:
        if not isinstance(record[name], str) or not record[name].strip():
            return f"field {name!r} must be a non-empty string, got {record[name]!r}"
    choices = record.get("choices", [])
    if choices is None:
        choices = []
    if not isinstance(choices, list) or not all(isinstance(c, str) for c in choices):
        return f"field 'choices' must be a list of strings, got {choices!r}"
    return None


def _raise_bad(skipped, source, unit, header=None):
    """Raise one SkipitError listing the first 20 bad ``(where, why)`` of ``skipped``."""
    from skipit.errors import SkipitError

    listing = "\n".join(f"  {unit + ' ' if unit else ''}{n}: {why}" for n, why in skipped[:20])
    more = f"\n  ... and {len(skipped) - 20} more" if len(skipped) > 20 else ""
    header = header or f"{len(skipped)} bad {unit}(s) in {source}"
    raise SkipitError(f"{header}:\n{listing}{more}\nfix them, or pass --skip-bad to skip them")


def load_jsonl(path: str | os.PathLike[str], skip_bad: bool = False,
               limit: int | None = None) -> tuple[list[Example], LoadReport]:
    """Examples of a JSONL file, with a :class:`LoadReport`.

    Every line is checked; bad lines (invalid JSON, missing or mistyped field, image
    that cannot be read) raise :class:`skipit.errors.SkipitError` listing all of them
    with line numbers, unless ``skip_bad`` (then they are skipped and listed in the
    report). Blank lines are ignored. With ``limit`` N, only the first N good lines
    are returned and only their images are decoded; the images of later lines are
    opened and verified (header and structure, ``PIL.Image.verify``), not decoded.
    """
    from skipit.errors import SkipitError

    _check_limit(limit)
    path = os.fspath(path)
    base = os.path.dirname(os.path.abspath(path))
    try:
        with open(path, "rb") as fh:
            raw = fh.read()
    except OSError as err:
        raise SkipitError(f"cannot read data file {path}: {err.strerror or err}") from None
    examples: list[Example] = []
    skipped: list[tuple[int, str]] = []
    for number, line in enumerate(raw.decode("utf-8", errors="replace").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            _bad(skipped, number, f"invalid JSON ({err.msg} at column {err.colno})")
            continue
        problem = _check_record(record)
        if problem:
            _bad(skipped, number, problem)
            continue
        image_path = record["image"] if os.path.isabs(record["image"]) else os.path.join(base, record["image"])
        wanted = limit is None or len(examples) < limit
        try:
            image = _open_image(image_path) if wanted else _verify_image(image_path)
        except Exception as err:  # PIL raises many kinds: all mean "unreadable image"
            _bad(skipped, number, f"unreadable image {record['image']!r} ({type(err).__name__}: {err})")
            continue
        if wanted:
            examples.append(Example(image, record["question"], record["answer"],
                                    list(record.get("choices") or []), source=f"{os.path.basename(path)}:{number}"))
    report = LoadReport(path, skipped, hashlib.sha256(raw).hexdigest())
    if skipped and not skip_bad:
        _raise_bad(skipped, path, "line")
    if not examples:
        raise SkipitError(f"no usable examples in {path}")
    return examples, report


def bundled_names() -> list[str]:
    """Names of the bundled data sets (empty when the demo package is absent)."""
    try:
        from skipit.demo import BUNDLED_DATASETS
    except ImportError:
        return []
    return list(BUNDLED_DATASETS)


def _from_bundled(name, limit=None):
    from skipit.demo import BUNDLED_DATASETS, digit_image, digits_vqa_records

    records = digits_vqa_records(**BUNDLED_DATASETS[name])[:limit]
    return [Example(digit_image(rec["image_index"]).convert("RGB"), str(rec["question"]), str(rec["answer"]),
                    list(rec.get("choices") or []), source=f"bundled:{name}[{i}]")
            for i, rec in enumerate(records)]


# --------------------------------------------------------------------------------------
# Hugging Face datasets
# --------------------------------------------------------------------------------------

_DATASET_FILES = (".parquet", ".arrow")
_SPLIT_ALIASES = {"val": "validation", "valid": "validation", "dev": "validation", "validation": "val"}


def _is_saved_dataset(path):
    return os.path.isdir(path) and any(os.path.isfile(os.path.join(path, name))
                                       for name in ("dataset_dict.json", "state.json"))


def _data_files(path):
    """Parquet / arrow files of a file or a folder (recursively), sorted."""
    if os.path.isfile(path):
        return [path] if path.endswith(_DATASET_FILES) else []
    found = []
    for root, dirs, files in os.walk(path):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found += [os.path.join(root, f) for f in sorted(files) if f.endswith(_DATASET_FILES)]
    return found


def _import_datasets():
    from skipit.errors import SkipitError

    try:
        import datasets
    except ImportError:
        raise SkipitError("reading a Hugging Face dataset needs the `datasets` package: "
                          "pip install 'skipit[datasets]'") from None
    return datasets


def _hub_snapshot(dataset_id):
    """The local snapshot folder of a hub dataset, from the Hugging Face cache only."""
    from huggingface_hub import constants, snapshot_download

    from skipit.empirical.loading import _hub_cli
    from skipit.errors import SkipitError

    try:
        return snapshot_download(dataset_id, repo_type="dataset", local_files_only=True,
                                 cache_dir=constants.HF_HUB_CACHE)
    except Exception as err:  # LocalEntryNotFoundError and its relatives: not cached
        raise SkipitError(
            f"dataset {dataset_id!r} is not in the Hugging Face cache ({constants.HF_HUB_CACHE}); skipit reads "
            "hub datasets from the cache only, offline.\n"
            f"  get it on a machine with network access: {_hub_cli()} download --repo-type dataset {dataset_id}\n"
            f"  then copy the cache there to {constants.HF_HUB_CACHE} here (or set HF_HOME), or save it with "
            "datasets' save_to_disk and pass that directory: --data DIR\n"
            f"  (detail: {str(err).splitlines()[0] if str(err) else type(err).__name__})") from None


def _open_dataset(source, split, subset):
    """``(datasets.Dataset, description, root folder)`` for a saved dataset, data files or a hub id."""
    from skipit.errors import SkipitError

    datasets = _import_datasets()
    bars = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    try:
        if _is_saved_dataset(source):
            loaded, root = datasets.load_from_disk(source), source
        else:
            root = source if os.path.exists(source) else _hub_snapshot(source)
            if not _data_files(root):
                raise SkipitError(f"--data {source}: no parquet or arrow files in {root}")
            try:
                loaded = datasets.load_dataset(root, name=subset) if os.path.isdir(root) else \
                    datasets.load_dataset(root[root.rindex(".") + 1:], data_files=[root], split="train")
            except ValueError as err:
                raise SkipitError(f"--data {source}: {str(err).splitlines()[0]}") from None
    finally:
        if bars:
            datasets.enable_progress_bars()
    if isinstance(loaded, datasets.DatasetDict):
        splits = list(loaded)
        if split is None:
            if len(splits) != 1:
                raise SkipitError(f"--data {source} has splits {', '.join(splits)}; choose one with --split")
            split = splits[0]
        if split not in loaded and _SPLIT_ALIASES.get(split) in loaded:
            split = _SPLIT_ALIASES[split]  # datasets names a "val-*.parquet" split "validation"
        if split not in loaded:
            raise SkipitError(f"--split must be one of {', '.join(splits)} for {source}, got {split!r}")
        loaded = loaded[split]
    elif split is not None:
        raise SkipitError(f"--split {split}: {source} holds a single dataset, not splits; leave --split out")
    name = f"{source}" + (f":{subset}" if subset else "") + (f"[{split}]" if split else "")
    return loaded, name, root if os.path.isdir(root) else os.path.dirname(root)


def _is_image_feature(feature):
    import datasets

    if isinstance(feature, datasets.Image):
        return True
    inner = getattr(feature, "feature", None)
    return isinstance(inner, datasets.Image) if inner is not None else (
        isinstance(feature, list) and len(feature) == 1 and isinstance(feature[0], datasets.Image))


def _resolve_columns(features, columns, source):
    """``{"image", "question", "answer", "choices"}`` -> column name (choices may be None)."""
    from skipit.errors import SkipitError

    names = list(features)
    chosen = {}
    for role, given, defaults in (("image", columns.image, IMAGE_COLUMNS),
                                  ("question", columns.question, QUESTION_COLUMNS),
                                  ("answer", columns.answer, ANSWER_COLUMNS),
                                  ("choices", columns.choices, CHOICES_COLUMNS)):
        if given is not None:
            if given not in features:
                raise SkipitError(f"--{role}-column {given!r} is not a column of {source} "
                                  f"(columns: {', '.join(names)})")
            chosen[role] = given
            continue
        if role == "image":
            found = [c for c in defaults if c in features and _is_image_feature(features[c])]
        else:
            found = [c for c in defaults if c in features]
        if not found and role != "choices":
            raise SkipitError(f"{source} has no {role} column among the defaults ({', '.join(defaults)}); "
                              f"columns: {', '.join(names)}; name it with --{role}-column")
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


def _image_cells(value):
    """The image cells of one row: a list (possibly empty) of raw ``{"bytes", "path"}`` / path values."""
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return [v for v in value if v is not None]
    return [value]


def _image_file(cell, root):
    if isinstance(cell, dict):
        if cell.get("bytes"):
            return io.BytesIO(cell["bytes"])
        cell = cell.get("path")
    if not isinstance(cell, str) or not cell:
        raise ValueError("empty image cell (no bytes, no path)")
    return cell if os.path.isabs(cell) else os.path.join(root, cell)


def _image_digest(cell):
    if isinstance(cell, dict):
        return cell.get("bytes") or str(cell.get("path")).encode()
    return str(cell).encode()


def _answer_kind(rows):
    """How the answers of multiple-choice rows name the right option, decided over all of them:
    ``letter`` (``"B"``), ``index`` (``1`` or ``"1"``, AI2D) or ``text`` (the option itself)."""
    mcq = [(answers[0], choices) for answers, choices in rows if choices]
    if mcq and all(a in LETTERS[:len(c)] for a, c in mcq):
        return "letter"
    if mcq and all(str(a).strip().isdigit() and int(a) < len(c) for a, c in mcq):
        return "index"
    return "text"


def _mcq_answer(answer, choices, kind):
    if kind == "letter":
        return answer
    if kind == "index":
        return LETTERS[int(answer)]
    matches = [i for i, c in enumerate(choices) if c.strip() == str(answer).strip()]
    return LETTERS[matches[0]] if len(matches) == 1 else None


def render_mcq(question: str, choices: Sequence[str], template: str = MCQ_TEMPLATE) -> str:
    """The question with its lettered options, one a line (``A. text``), in ``template``."""
    options = "\n".join(f"{LETTERS[i]}. {c}" for i, c in enumerate(choices))
    return template.format(question=question, options=options)


def check_mcq_template(template: str) -> str:
    """``template`` if it is a format string with exactly the fields ``{question}`` and ``{options}``."""
    from string import Formatter

    from skipit.errors import SkipitError

    try:
        fields = {f for _, f, _, _ in Formatter().parse(template) if f is not None}
    except ValueError as err:
        raise SkipitError(f"--mcq-template must be a format string with {{question}} and {{options}}, got "
                          f"{template!r} ({err})") from None
    if fields != {"question", "options"}:
        raise SkipitError(f"--mcq-template must use exactly the fields {{question}} and {{options}}, got "
                          f"{template!r} (fields: {', '.join(sorted(fields)) or 'none'})")
    return template


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
            problem, parsed = _check_row(row, cols, extra_images, root)
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
                unmatched.append((index, f"answer {answers[0]!r} is none of the options {choices!r}"))
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
            example.image = _open_image(_image_file(_image_cells(image_column[index].as_py())[0], root))
            kept.append(example)
        except Exception as err:  # PIL raises many kinds: all mean "unreadable image"
            _bad(skipped, index, f"unreadable image ({type(err).__name__}: {err})")
    skipped.sort()
    report = LoadReport(name, skipped, digest.hexdigest(), unit="row",
                        columns={k: v for k, v in cols.items() if v is not None})
    if skipped and not skip_bad:
        _raise_bad(skipped, name, "row")
    if not kept:
        raise SkipitError(f"no usable examples in {name}")
    return kept, report


def _check_row(row, cols, extra_images, root):
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
        _verify_image(_image_file(cells[0], root))
    except Exception as err:  # PIL raises many kinds: all mean "unreadable image"
        return f"unreadable image ({type(err).__name__}: {err})", None
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


# --------------------------------------------------------------------------------------
# the entry point and its command-line arguments
# --------------------------------------------------------------------------------------

def _resolve_metric(examples, report, metric, max_new_tokens):
    from skipit.errors import SkipitError

    if metric not in METRIC_CHOICES:
        raise SkipitError(f"--metric must be one of {', '.join(METRIC_CHOICES)}, got {metric!r}")
    for ex in examples:
        if not ex.metric:
            ex.metric = "letter" if metric == "auto" else metric
    used = sorted({ex.metric for ex in examples}, key=("letter", "exact", "vqa", "anls").index)
    report.metric = "+".join(used)
    if max_new_tokens is not None and (isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int)
                                       or max_new_tokens < 1):
        raise SkipitError(f"--max-new-tokens must be an integer >= 1, got {max_new_tokens!r}")
    report.max_new_tokens = max_new_tokens or (1 if used == ["letter"] else DEFAULT_MAX_NEW_TOKENS)


def _check_subset(subset, target):
    """``--subset`` names a dataset configuration: of a hub dataset, or of a folder of data files
    (the configs its README declares, as in a copied hub snapshot). A save_to_disk directory, a
    single parquet / arrow file, a JSONL file or a bundled set has none: refused, not ignored."""
    from skipit.errors import SkipitError

    if subset is None or (os.path.isdir(target) and not _is_saved_dataset(target)):
        return
    if os.path.isdir(target):
        kind = "saved dataset (save_to_disk)"
    elif os.path.isfile(target):
        kind = "data file" if target.endswith(_DATASET_FILES) else "JSONL file"
    elif target in bundled_names():
        kind = "bundled set"
    else:
        return  # a hub dataset id
    raise SkipitError(f"--subset applies to hub dataset ids and folders of data files only, got {subset!r} "
                      f"for the {kind} {target}")


def load_examples(path_or_name: str | os.PathLike[str], skip_bad: bool = False, limit: int | None = None, *,
                  split: str | None = None, subset: str | None = None, columns: ColumnMap | None = None,
                  metric: str = "auto", mcq_template: str = MCQ_TEMPLATE,
                  max_new_tokens: int | None = None) -> tuple[list[Example], LoadReport]:
    """Examples from a JSONL file, a bundled set or a Hugging Face dataset; returns ``(examples, report)``.

    ``path_or_name``: an existing ``.jsonl`` file; a ``save_to_disk`` directory, a parquet /
    arrow file or a folder of them; a bundled set name; or a hub dataset id (``org/name``) read
    from the local Hugging Face cache (offline). ``split`` picks a split (needed when there are
    several), ``subset`` a dataset configuration (of a hub id or a folder of data files; refused for
    other sources), ``columns`` a :class:`ColumnMap`.
    ``metric``: ``auto`` (multiple choice and JSONL / bundled sets: ``letter``; rows with
    :data:`VQA_REFERENCES` references: ``vqa``; other free-form rows: ``exact``; a dataset
    whose answers are all single letters: ``letter``) or one of ``letter``, ``exact``, ``vqa``,
    ``anls``; each example records its metric, the report the set's. ("All single letters"
    also needs each question to list options ``A.``/``A:``/``A)`` and ``B...`` in its text.) ``max_new_tokens``
    (None: 1 for letter-only sets, else :data:`DEFAULT_MAX_NEW_TOKENS`) lands in the report.

    Every line or row is checked; bad ones raise :class:`skipit.errors.SkipitError` listing
    all of them, unless ``skip_bad``. ``limit`` N keeps the first N good examples and decodes
    only their images (the others are verified, not decoded).
    """
    from skipit.errors import SkipitError

    _check_limit(limit)
    columns = columns or ColumnMap()
    check_mcq_template(mcq_template)
    target = os.fspath(path_or_name)
    _check_subset(subset, target)
    if os.path.isfile(target) and not target.endswith(_DATASET_FILES):
        examples, report = load_jsonl(target, skip_bad=skip_bad, limit=limit)
    elif os.path.exists(target):
        examples, report = _load_dataset_examples(target, split, subset, columns, skip_bad, limit, metric,
                                                  mcq_template)
    elif target in bundled_names():
        examples = _from_bundled(target, limit)
        report = LoadReport(f"bundled:{target}", [], data_sha256(examples))
    else:
        from skipit.empirical.loading import _HUB_ID

        if not _HUB_ID.match(target) or target.startswith((".", "/", "~")):
            names = bundled_names()
            known = ", ".join(names) if names else "none installed"
            raise SkipitError(f"--data {target!r} is neither a file nor a bundled data set (bundled: {known}) "
                              "nor a hub dataset id (org/name)")
        examples, report = _load_dataset_examples(target, split, subset, columns, skip_bad, limit, metric,
                                                  mcq_template)
    _resolve_metric(examples, report, metric, max_new_tokens)
    return examples, report


def add_data_arguments(parser: argparse.ArgumentParser,
                       default_data: str = "digits-test") -> argparse._ArgumentGroup:
    """The data options of ``certify``, ``evaluate`` and ``skip`` (``--samples`` stays with each
    command). ``--data`` and ``--skip-bad`` are added only when ``parser`` (or a parent parser)
    does not define them already."""
    group = parser.add_argument_group("data")
    known = set(getattr(parser, "_option_string_actions", {}))
    if "--data" not in known:
        group.add_argument("--data", default=None, metavar="PATH|NAME|HUB_ID",
                           help="JSONL file (image, question, answer[, choices]), bundled set, Hugging Face "
                                "dataset (save_to_disk directory, parquet/arrow files or a folder of them, or a hub "
                                f"dataset id in the local cache, read offline) (default: {default_data})")
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
    return load_examples(get("data") or default_data, skip_bad=bool(get("skip_bad", False)),
                         limit=get("samples", 0) or None, split=get("split"), subset=get("subset"), columns=columns,
                         metric=get("metric", "auto"), mcq_template=get("mcq_template", MCQ_TEMPLATE),
                         max_new_tokens=get("max_new_tokens"))


# --------------------------------------------------------------------------------------
# prompts and batches
# --------------------------------------------------------------------------------------

def question_text(example: Example) -> str:
    """The question as the model sees it: verbatim (a multiple-choice row of a dataset was
    rendered with its lettered options on loading, :func:`render_mcq`). ``choices`` are
    metadata (the allowed answers)."""
    return example.question


def _tokenizer(processor):
    return getattr(processor, "tokenizer", processor)


def build_prompt(processor: Any, example: Example) -> str:
    """The prompt string: the processor's chat template when it has one (one user turn with
    the image then the question, generation prompt added), else ``USER: <image>\\n{question} ASSISTANT:``."""
    template = getattr(processor, "chat_template", None)
    if template is None:
        template = getattr(getattr(processor, "tokenizer", None), "chat_template", None)
    text = question_text(example)
    if template and hasattr(processor, "apply_chat_template"):
        conversation = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": text}]}]
        return processor.apply_chat_template(conversation, add_generation_prompt=True, tokenize=False)
    image_prompt = getattr(processor, "image_prompt", None) or getattr(processor, "image_token", None) or "<image>"
    return FALLBACK_TEMPLATE.replace("<image>", image_prompt).format(question=text)


def _text_kwargs(processor, prompts):
    """``add_special_tokens=False`` when every prompt already begins with the tokenizer's BOS
    (a chat template writing ``{{ bos_token }}``, as Gemma 3's and Llama 3's do): tokenising it
    with special tokens would put a second BOS in front."""
    bos = getattr(_tokenizer(processor), "bos_token", None)
    if bos and all(p.startswith(bos) for p in prompts):
        return {"add_special_tokens": False}
    return {}


def build_inputs(processor: Any, examples: Sequence[Example], model: torch.nn.Module | None = None) -> dict[str, Any]:
    """Model inputs (dict of tensors) for a batch of examples, padded to the longest prompt.

    Prompts end at the last prompt token (the answer position the statistics use). Never a
    second BOS (:func:`_text_kwargs`). ``model`` lets the family adapter shape the call (one
    image list per sample where its processor wants that, ``nested_images``) and add what its
    forward needs (e.g. Qwen2.5-VL ``mm_token_type_ids``, ``extra_forward_kwargs``); a prompt
    longer than the model's context then raises :class:`skipit.errors.SkipitError` naming the example.
    """
    prompts = [build_prompt(processor, ex) for ex in examples]
    images = [ex.image for ex in examples]
    adapter = None
    if model is not None:
        from skipit.empirical.adapters import get_adapter

        adapter = get_adapter(model)
        if adapter.nested_images:
            images = [[im] for im in images]
    inputs = dict(processor(images=images, text=prompts, return_tensors="pt", padding=True,
                            **_text_kwargs(processor, prompts)))
    if adapter is not None:
        _check_context(adapter, model.config, inputs, examples)
        inputs.update(adapter.extra_forward_kwargs(inputs["input_ids"], model.config))
    return inputs


def _prompt_lengths(inputs):
    mask = inputs.get("attention_mask")
    if mask is None:
        return [int(inputs["input_ids"].shape[-1])] * int(inputs["input_ids"].shape[0])
    return [int(n) for n in mask.sum(dim=-1).tolist()]


def _too_long(adapter, config, inputs, examples):
    """``(limit, [(source, prompt tokens), ...])``: the examples longer than the model's context."""
    limit = adapter.context_length(config)
    if limit is None:
        return None, []
    return limit, [(ex.source or f"example {i}", n)
                   for i, (ex, n) in enumerate(zip(examples, _prompt_lengths(inputs))) if n > limit]


def _check_context(adapter, config, inputs, examples):
    from skipit.errors import SkipitError

    limit, long = _too_long(adapter, config, inputs, examples)
    if long:
        listing = ", ".join(f"{src} ({n} tokens)" for src, n in long[:5])
        raise SkipitError(f"prompt longer than the model's context of {limit} tokens: {listing}"
                          + (f" and {len(long) - 5} more" if len(long) > 5 else "")
                          + "; shorten the question or pass --skip-bad to leave such examples out")


def check_examples_for(model: torch.nn.Module, processor: Any, examples: Sequence[Example],
                       skip_bad: bool = False) -> tuple[list[Example], list[tuple[str, str]]]:
    """The examples this model can take, checked one by one before any measurement.

    Each example must pass its family's image check (``adapter.image_problem``, e.g. Qwen2.5-VL's
    aspect-ratio limit of 200), go through the processor alone, and fit the model's context
    (``adapter.context_length``). Returns ``(kept, skipped)`` with ``skipped`` a list of
    ``(source, reason)``; without ``skip_bad`` any problem raises
    :class:`skipit.errors.SkipitError` listing every bad example.
    """
    from skipit.empirical.adapters import get_adapter
    from skipit.errors import SkipitError

    adapter = get_adapter(model)
    kept, skipped = [], []
    for i, ex in enumerate(examples):
        name = ex.source or f"example {i}"
        reason = adapter.image_problem(ex.image, model.config)
        if reason is None:
            try:
                inputs = build_inputs(processor, [ex])  # no model: the context is checked here
            except SkipitError as err:  # a refusal skipit itself words (e.g. split tiles)
                reason = str(err).splitlines()[0]
            except Exception as err:  # the processor's own refusal, whatever its type
                reason = f"the processor refuses it ({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''})"
            else:
                limit, long = _too_long(adapter, model.config, inputs, [ex])
                if long:
                    reason = f"prompt of {long[0][1]} tokens, longer than the model's context of {limit}"
        if reason is None:
            kept.append(ex)
        else:
            skipped.append((name, reason))
    if skipped and not skip_bad:
        _raise_bad(skipped, None, "", header=f"{len(skipped)} example(s) this model cannot take")
    if not kept:
        raise SkipitError("no example left that this model can take")
    return kept, skipped


def data_sha256(examples: Iterable[Example]) -> str:
    """sha256 of the examples' content (question, answer, choices, reference answers when there
    are any, image pixels), order included."""
    h = hashlib.sha256()
    for ex in examples:
        fields = [ex.question, ex.answer, list(ex.choices or [])]
        if ex.references:
            fields.append(list(ex.references))
        h.update(json.dumps(fields).encode())
        h.update(ex.image_bytes())
    return h.hexdigest()
