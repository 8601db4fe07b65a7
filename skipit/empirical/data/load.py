"""The one entry point: :func:`load_examples` picks the source of ``--data`` and resolves the metric."""

from __future__ import annotations

import os

from skipit.empirical.data.columns import _load_dataset_examples, _resolve_metric
from skipit.empirical.data.examples import ColumnMap, Example, LoadReport, _check_limit, data_sha256
from skipit.empirical.data.prompts import MCQ_TEMPLATE, check_mcq_template
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
