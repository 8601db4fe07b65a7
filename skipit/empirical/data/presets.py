"""Rows of a benchmark read by its preset (``--task``, :mod:`skipit.empirical.tasks`): the preset's
columns, prompt, answer parser and metric, every row checked before any model work."""

from __future__ import annotations

import hashlib
import json
import os

from skipit.empirical.data.columns import _unreadable
from skipit.empirical.data.examples import Example, LoadReport, _bad, _raise_bad
from skipit.empirical.settings import SettingError
from skipit.empirical.data.sources import (
    _image_cells,
    _image_digest,
    _image_file,
    _open_dataset,
    _open_image,
    _verify_image,
)

ANSWER_MODES = ("auto", "generate", "one-token")
"""``--answer``: ``generate`` reads each answer from the greedy generation with the preset's parser;
``one-token`` answers multiple-choice rows by the argmax of the first token (the paper's Sec. 4.2,
cheaper); ``auto`` is ``generate`` with ``--task`` and ``one-token`` for letter rows otherwise."""


def _task_row_problem(task, row, index, image_column, root):
    """Why a preset's row cannot be an example (the image part), or None."""
    cells = _image_cells(row.get(image_column))
    others = [c for c in row if c.startswith("image_") and c != image_column and row[c] is not None]
    if len(cells) + len(others) > 1:
        return (f"has {len(cells) + len(others)} images ({image_column!r}"
                + (f", plus {', '.join(others)}" if others else "") + "); skipit feeds one image per question")
    if not cells:
        return f"no image in column {image_column!r}"
    try:
        _verify_image(_image_file(cells[0], root, f"row {index}, column {image_column!r}"))
    except Exception as err:  # PIL raises many kinds: all mean "unreadable image"
        return _unreadable(err, image_column)
    return None


def load_task_examples(task, source: str, split: str | None, subset: str | None, skip_bad: bool,
                       limit: int | None, prompt_style: str | None = None,
                       answer: str = "auto") -> tuple[list[Example], LoadReport]:
    """Examples of ``source`` read by ``task`` (a :class:`skipit.empirical.tasks.Task`) in ``prompt_style``.

    ``split``/``subset`` default to the preset's (``subset`` only for a hub id). Rows the preset does
    not evaluate (``task.keep``) are left out silently; a row whose image, answer or options the preset
    cannot read is listed by index (or skipped with ``skip_bad``). With ``answer="one-token"``
    multiple-choice rows are scored by the ``letter`` metric on the first token (no parser)."""
    style = task.style(prompt_style)
    if answer not in ANSWER_MODES:
        raise SettingError(f"{{answer}} must be one of {', '.join(ANSWER_MODES)}, got {{got}}", {"got": repr(answer)})
    if subset is None and not os.path.exists(source):
        subset = task.subset
    ds, name, root = _open_dataset(source, split, subset, default_split=task.split)
    if task.image not in ds.features:
        raise SettingError(f"{{task}} {task.name}: {{source}} has no image column {task.image!r} (columns: "
                           "{found})" + (f"; {task.note}" if task.note else ""),
                           {"source": name, "found": ", ".join(ds.features)})
    missing = [c for c in task.columns if c not in ds.features and c not in ("hint", "E")]
    if missing:
        raise SettingError(f"{{task}} {task.name}: {{source}} lacks the column(s) {', '.join(missing)} the preset "
                           "reads (columns: {found})", {"source": name, "found": ", ".join(ds.features)})
    if getattr(ds, "_indices", None) is not None:
        ds = ds.flatten_indices()
    wanted = [c for c in dict.fromkeys([task.image, *task.columns, *(c for c in ds.features if c.startswith("image_"))])
              if c in ds.features]
    table = ds.data.table.select(wanted) if hasattr(ds.data, "table") else ds.data.select(wanted)
    digest = hashlib.sha256(json.dumps([task.name, style.reference]).encode())
    examples, skipped, index = [], [], 0
    for batch in table.to_batches(max_chunksize=256):
        batch = batch.to_pydict()
        for i in range(len(batch[wanted[0]])):
            row = {c: batch[c][i] for c in wanted}
            here, index = index, index + 1
            if task.keep is not None and not task.keep(row):
                continue
            problem = _task_row_problem(task, row, here, task.image, root)
            example = None
            if problem is None:
                try:
                    target = task.read(row)
                    text = style.prompt(row)
                except (ValueError, KeyError, TypeError, SyntaxError) as err:
                    problem = f"--task {task.name} cannot read it: {err}"
                else:
                    one_token = answer == "one-token" and bool(target.letters)
                    example = Example(None, text, target.answer, list(target.letters), source=f"{name}[{here}]",
                                      references=list(target.references) if len(target.references) > 1 else [],
                                      metric="letter" if one_token else (target.metric or style.metric),
                                      parser="" if one_token else (target.parser or style.parser),
                                      options=list(target.options), meta=dict(target.meta))
            digest.update(json.dumps([here, problem, example and [example.question, example.answers,
                                                                   example.metric, example.parser]]).encode())
            for cell in _image_cells(row.get(task.image)):
                digest.update(_image_digest(cell))
            if problem:
                _bad(skipped, here, problem)
            else:
                examples.append((here, example, row.get(task.image)))
    kept = []
    for here, example, cell in examples:
        if limit is not None and len(kept) >= limit:
            break
        try:
            example.image = _open_image(_image_file(_image_cells(cell)[0], root, f"row {here}, column {task.image!r}"))
            kept.append(example)
        except Exception as err:  # PIL raises many kinds: all mean "unreadable image"
            _bad(skipped, here, _unreadable(err, task.image))
    skipped.sort()
    report = LoadReport(name, skipped, digest.hexdigest(), unit="row", columns={"image": task.image},
                        task=task.name, prompt_style=prompt_style or task.default_style)
    if skipped and not skip_bad:
        _raise_bad(skipped, name, "row")
    if not kept:
        raise SettingError(f"no usable examples in {{source}} for {{task}} {task.name}", {"source": name})
    return kept, report
