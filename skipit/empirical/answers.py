"""Answers compared and scored: one reading of a generation, one comparison rule.

* :func:`skipit.empirical.parsing.read_answer` is the one function that maps a generation to
  the answer that is scored and compared (the example's parser, then its metric's
  normalisation); :func:`skipit.empirical.predict.predict` applies it to every answer.
* :func:`comparable_answers` and :func:`answers_changed`: two runs (the full model and a
  skipped one) gave the same answer exactly when their normalised strings are equal: what
  ``skipit certify``'s verification and ``skipit evaluate``'s change rate compare.
* :func:`score`: the mean score of answers under each example's metric.

:func:`predict_answers` and :func:`predict_answers_timed` live in
:mod:`skipit.empirical.predict` (the prediction engine) and are re-exported here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from skipit.empirical.metrics import check_metric, normalise_for, score_one
from skipit.empirical.predict import predict_answers, predict_answers_timed

if TYPE_CHECKING:
    from skipit.empirical.data import Example

__all__ = ["predict_answers", "predict_answers_timed", "score", "comparable_answers", "answers_changed"]


def _metric(example, metric=None):
    return check_metric(metric or example.metric or "letter")


def score(predictions: Sequence[str], examples: Sequence[Example], metric: str | None = None) -> float:
    """The mean score of ``predictions`` against each example's reference answers (``Example.answers``),
    under ``metric`` (None: each example's own metric)."""
    if len(predictions) != len(examples):
        raise ValueError(f"`predictions` must have one answer per example ({len(examples)}), got {len(predictions)}")
    if not examples:
        raise ValueError("`examples` must not be empty")
    return sum(score_one(p, ex.answers, _metric(ex, metric)) for p, ex in zip(predictions, examples)) / len(examples)


def comparable_answers(predictions: Sequence[str], examples: Sequence[Example]) -> list[str]:
    """``predictions`` as every answer comparison normalises them (certify's verification and
    evaluate's change rate): each as its example's metric normalises it
    (:func:`skipit.empirical.metrics.normalise_for`): a ``letter`` answer to letters and digits,
    a free-form one by its metric, so ``"a b"`` and ``"ab"`` differ under ``vqa`` and ``exact``.

    Raw texts and the already normalised answers of :func:`skipit.empirical.predict.predict`
    give the same result: normalising twice changes nothing."""
    if len(predictions) != len(examples):
        raise ValueError(f"`predictions` must have one answer per example ({len(examples)}), got {len(predictions)}")
    return [normalise_for(_metric(ex), p) for p, ex in zip(predictions, examples)]


def answers_changed(before: Sequence[str], after: Sequence[str]) -> list[bool]:
    """Per example, whether the normalised answer changed between two runs (certify's verification)."""
    if len(before) != len(after):
        raise ValueError(f"`after` must have as many answers as `before` ({len(before)}), got {len(after)}")
    return [a != b for a, b in zip(before, after)]
