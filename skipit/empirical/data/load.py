"""The one entry point: :func:`load_examples` picks the source of ``--data`` and resolves the metric."""

from __future__ import annotations

import os

from skipit.empirical.data.columns import _load_dataset_examples, _resolve_metric
from skipit.empirical.data.examples import (
    DEFAULT_MAX_NEW_TOKENS,
    ColumnMap,
    Example,
    LoadReport,
    _check_limit,
    data_sha256,
)
from skipit.empirical.data.presets import ANSWER_MODES, load_task_examples
from skipit.empirical.data.prompts import MCQ_TEMPLATE, check_mcq_template
from skipit.empirical.settings import SettingError
from skipit.empirical.data.sources import (
    _DATASET_FILES,
    _check_subset,
    _from_bundled,
    bundled_names,
    load_jsonl,
)


def load_examples(path_or_name: str | os.PathLike[str], skip_bad: bool = False, limit: int | None = None, *,
                  split: str | None = None, subset: str | None = None, columns: ColumnMap | None = None,
                  metric: str = "auto", mcq_template: str = MCQ_TEMPLATE,
                  max_new_tokens: int | None = None, task: str | None = None, prompt_style: str | None = None,
                  answer: str = "auto") -> tuple[list[Example], LoadReport]:
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

    ``task`` reads the data as a benchmark preset (:mod:`skipit.empirical.tasks`: its columns,
    prompt in ``prompt_style``, parser and metric; ``columns``, ``metric`` and ``mcq_template`` must
    then be left at their defaults); without ``path_or_name`` (empty) its hub dataset id is read.
    ``answer`` (:data:`skipit.empirical.data.presets.ANSWER_MODES`): how answers are read.

    Every line or row is checked; bad ones raise :class:`skipit.empirical.settings.SettingError`
    listing all of them, unless ``skip_bad``. ``limit`` N keeps the first N good examples and decodes
    only their images (the others are verified, not decoded).
    """
    _check_limit(limit)
    if task is not None:
        return _load_task(task, path_or_name, split, subset, skip_bad, limit, prompt_style, answer, columns, metric,
                          mcq_template, max_new_tokens)
    if prompt_style is not None:
        raise SettingError("{prompt_style} {got} needs {task} (a preset with prompt styles)",
                           {"got": str(prompt_style)})
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
            raise SettingError(f"{{path_or_name}} {{got}} is neither a file nor a bundled data set (bundled: {known}) "
                               "nor a hub dataset id (org/name)", {"got": repr(target)})
        examples, report = _load_dataset_examples(target, split, subset, columns, skip_bad, limit, metric,
                                                  mcq_template)
    if answer == "generate":
        for ex in examples:
            if ex.metric in ("", "letter") and ex.choices:
                ex.parser = "mcq-extract"
    elif answer not in ANSWER_MODES:
        raise SettingError(f"{{answer}} must be one of {', '.join(ANSWER_MODES)}, got {{got}}", {"got": repr(answer)})
    _resolve_metric(examples, report, metric, max_new_tokens)
    if any(ex.parser for ex in examples) and max_new_tokens is None:
        report.max_new_tokens = DEFAULT_MAX_NEW_TOKENS
    return examples, report


def _load_task(name, path_or_name, split, subset, skip_bad, limit, prompt_style, answer, columns, metric,
               mcq_template, max_new_tokens):
    from skipit.empirical.tasks import get_task

    task = get_task(name)
    task.style(prompt_style)
    if (columns is not None and any(vars(columns).values())) or metric != "auto" or mcq_template != MCQ_TEMPLATE:
        raise SettingError(f"{{task}} {name} sets the columns, prompt and metric; drop {{columns}}, {{metric}} and "
                           "{mcq_template} (or drop {task})")
    source = os.fspath(path_or_name) if path_or_name else task.dataset
    examples, report = load_task_examples(task, source, split, subset, skip_bad, limit, prompt_style, answer)
    _resolve_metric(examples, report, "auto", max_new_tokens)
    one_token = all(ex.metric == "letter" and not ex.parser for ex in examples)
    report.max_new_tokens = max_new_tokens or (1 if one_token else task.max_new_tokens)
    return examples, report
