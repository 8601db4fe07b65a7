"""The model's answers, normalised, and their score: one token for a letter, greedy text otherwise.

* An example scored by ``letter`` (the paper's Sec. 4.2 scoring: multiple choice, one-word
  answers) is answered by ONE token, the greedy first token.
* Any other example (``exact``, ``vqa``, ``anls``) is answered by the greedy generation of up to
  ``max_new_tokens`` tokens (stopping at the end-of-sequence token), as lmms-eval generates
  (``do_sample=False``).
* Image placeholder tokens are never generated (``suppress_tokens``): in the answer they would be
  taken for vision tokens by the skipping hooks.

Answers are returned normalised for their example's metric (:func:`skipit.empirical.metrics.normalise_for`),
so two runs (the full model and a skipped one) gave the same answer exactly when their
normalised strings are equal: what ``skipit certify``'s verification compares.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import torch

from skipit.empirical.hooks import LeftPadding
from skipit.empirical.metrics import check_metric, normalise_for, score_one
from skipit.empirical.parsing import read_answer, reads_one_token

if TYPE_CHECKING:
    from contextlib import AbstractContextManager

    from skipit.empirical.data import Example

__all__ = ["predict_answers", "predict_answers_timed", "score", "comparable_answers", "answers_changed"]


def _metric(example, metric=None):
    return check_metric(metric or example.metric or "letter")


@torch.no_grad()
def predict_answers_timed(model: torch.nn.Module, processor: Any, examples: Sequence[Example], *, batch_size: int = 16,
                          context: Callable[[], AbstractContextManager[Any]] | None = None,
                          max_new_tokens: int | None = None, metric: str | None = None) -> tuple[list[str], float]:
    """``(answers, seconds)``: :func:`predict_answers` and the wall time of the model's calls
    (on CUDA the device is synchronised before and after each)."""
    from skipit.empirical.adapters import get_adapter
    from skipit.empirical.data import DEFAULT_MAX_NEW_TOKENS, build_inputs
    from skipit.empirical.evaluate import _synchronize
    from skipit.empirical.loading import input_device, to_model_inputs

    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"`batch_size` must be an integer >= 1, got {batch_size!r}")
    if max_new_tokens is not None and (isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int)
                                       or max_new_tokens < 1):
        raise ValueError(f"`max_new_tokens` must be None or an integer >= 1, got {max_new_tokens!r}")
    device = input_device(model)
    # an answer never holds an image placeholder; generated as text it would count as a vision token
    placeholders = list(get_adapter(model).vision_token_ids(model.config))
    answers, seconds = [], 0.0
    with LeftPadding(processor) as tok:
        for start in range(0, len(examples), batch_size):
            chunk = examples[start:start + batch_size]
            metrics = [_metric(ex, metric) for ex in chunk]
            one = [reads_one_token(ex, m) for ex, m in zip(chunk, metrics)]
            steps = 1 if all(one) else (max_new_tokens or DEFAULT_MAX_NEW_TOKENS)
            inputs = to_model_inputs(build_inputs(processor, chunk, model), model)
            prompt_length = inputs["input_ids"].shape[1]
            with (context() if context is not None else contextlib.nullcontext()):
                _synchronize(device)
                t0 = time.perf_counter()
                out = model.generate(**inputs, max_new_tokens=steps, do_sample=False, num_beams=1,
                                     pad_token_id=tok.pad_token_id, suppress_tokens=placeholders)
                _synchronize(device)
                seconds += time.perf_counter() - t0
            new = out[:, prompt_length:] if out.shape[1] > prompt_length else out[:, -1:]
            for row, m, first, ex in zip(new.tolist(), metrics, one, chunk):
                answers.append(read_answer(ex, tok.decode(row[:1] if first else row, skip_special_tokens=True), m))
    return answers, seconds


def predict_answers(model: torch.nn.Module, processor: Any, examples: Sequence[Example], *, batch_size: int = 16,
                    context: Callable[[], AbstractContextManager[Any]] | None = None, max_new_tokens: int | None = None,
                    metric: str | None = None) -> list[str]:
    """The normalised answers of ``model`` to ``examples`` (``data.Example``), in order.

    ``context``: None, or a zero-argument callable returning the context manager each batch
    runs in (a skipping context: ``lambda: late_entry(model, layer=L)``). ``max_new_tokens``:
    the greedy tokens of a free-form answer (None: ``data.DEFAULT_MAX_NEW_TOKENS``; a batch of
    letter examples reads one token). ``metric`` overrides each example's own metric.
    """
    return predict_answers_timed(model, processor, examples, batch_size=batch_size, context=context,
                                 max_new_tokens=max_new_tokens, metric=metric)[0]


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

    Raw texts (the one-token answers of :func:`skipit.empirical.evaluate.predict`) and the
    already normalised answers of :func:`predict_answers` give the same result: normalising
    twice changes nothing."""
    if len(predictions) != len(examples):
        raise ValueError(f"`predictions` must have one answer per example ({len(examples)}), got {len(predictions)}")
    return [normalise_for(_metric(ex), p) for p, ex in zip(predictions, examples)]


def answers_changed(before: Sequence[str], after: Sequence[str]) -> list[bool]:
    """Per example, whether the normalised answer changed between two runs (certify's verification)."""
    if len(before) != len(after):
        raise ValueError(f"`after` must have as many answers as `before` ({len(before)}), got {len(after)}")
    return [a != b for a, b in zip(before, after)]
