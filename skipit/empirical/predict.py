"""The model's answers: the one prediction engine of ``certify``, ``evaluate`` and ``skip``.

Every answer goes through :func:`predict`, which applies the batching rules once:

* **batches**: consecutive examples, at most ``batch_size`` per batch and, with
  ``max_batch_tokens``, at most that many padded prompt tokens
  (:func:`skipit.empirical.distributed.batch_positions`);
* **ranks**: under torchrun each rank answers whole batches
  (:func:`~skipit.empirical.distributed.shard`) and every rank returns every answer, in the
  order of the examples;
* **one token or a generation**: a batch whose examples all read one token (a ``letter``
  example without a parser, the paper's Sec. 4.2 scoring:
  :func:`skipit.empirical.parsing.reads_one_token`) is answered by one forward, the argmax at
  each answer position; any other batch by greedy generation (``do_sample=False``, as
  lmms-eval) of up to ``max_new_tokens`` tokens with left padding, image placeholder tokens
  suppressed (generated as text they would be taken for vision tokens by the skipping
  hooks), each letter example of the batch still reading its first token only;
* **the answer**: each generation is read by :func:`skipit.empirical.parsing.read_answer`
  (the example's parser, then its metric's normalisation): what is scored and what
  certify's verification and evaluate's change rate compare.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

import torch

from skipit.empirical.distributed import SINGLE_PROCESS, batch_positions, gather_objects, shard
from skipit.empirical.loading import input_device, to_model_inputs
from skipit.empirical.metrics import check_metric, score_one
from skipit.empirical.modes import EVALUATE_MODES, MODES, skip_context
from skipit.empirical.parsing import read_answer, reads_one_token
from skipit.empirical.settings import RunSettings, SettingError, check_setting, field_check
from skipit.empirical.skipping import resolve_adapter

if TYPE_CHECKING:
    from contextlib import AbstractContextManager

    from skipit.empirical.adapters.base import VLMAdapter
    from skipit.empirical.data import Example
    from skipit.empirical.distributed import DistributedContext

__all__ = ["predict", "predict_answers", "predict_answers_timed", "token_counts", "synchronize", "mode_context",
           "mode_layer"]


def synchronize(device: torch.device) -> None:
    """Wait for ``device``'s queued kernels: CUDA launches return before the work is done,
    so a forward's wall time is only its time once the queue is drained."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def mode_context(model: torch.nn.Module, mode: str | None, layer: int | Iterable[int] | None,
                 adapter: VLMAdapter | None = None) -> AbstractContextManager[Any]:
    """The context of ``mode`` (None / ``"full"``: nothing skipped; else one of
    :data:`skipit.empirical.modes.EVALUATE_MODES`) at ``layer``; freezing "at L" (an int) freezes
    layer L alone."""
    if mode is not None and mode != "full" and mode not in EVALUATE_MODES:
        raise SettingError(f"{{mode}} must be one of {', '.join(EVALUATE_MODES)}, got {{got}}", {"got": repr(mode)})
    return skip_context(model, mode, mode_layer(mode, layer), adapter)


def mode_layer(mode: str | None, layer: int | Iterable[int] | None) -> int | list[int] | None:
    """The layer argument of ``mode``: freezing "at L" in a layer grid (an int) freezes layer L alone."""
    if mode in MODES and MODES[mode].takes == "layers" and isinstance(layer, int):
        return [layer]
    return layer


def _check_run(batch_size, max_batch_tokens, max_new_tokens):
    for name, value in (("batch_size", batch_size), ("max_batch_tokens", max_batch_tokens),
                        ("max_new_tokens", max_new_tokens)):
        check_setting(name, value, field_check(RunSettings, name))


def _placeholders(model):
    """The image placeholder token ids, which an answer never holds: generated as text they would be
    taken for vision tokens by the skipping hooks."""
    from skipit.empirical.adapters import get_adapter

    return list(get_adapter(model).vision_token_ids(model.config))


def _one_token(model, processor, chunk, run_in):
    """Texts of the argmax token at each example's answer position (one forward), and its seconds."""
    from skipit.empirical.capture import answer_positions
    from skipit.empirical.data import build_inputs

    tok = getattr(processor, "tokenizer", processor)
    device = input_device(model)
    inputs = to_model_inputs(build_inputs(processor, chunk, model), model)
    mask = inputs.get("attention_mask")
    with run_in():
        synchronize(device)
        t0 = time.perf_counter()
        logits = model(**inputs).logits
        synchronize(device)
        seconds = time.perf_counter() - t0
    pos = (answer_positions(mask) if mask is not None
           else torch.full((logits.shape[0],), logits.shape[1] - 1, device=logits.device))
    last = logits[torch.arange(logits.shape[0], device=logits.device), pos]
    last[:, _placeholders(model)] = -torch.inf  # as generation suppresses them
    ids = last.argmax(-1).tolist()
    return [tok.decode([i], skip_special_tokens=True) for i in ids], seconds


def _generated(model, processor, chunk, run_in, first_only, max_new_tokens):
    """Texts of the greedy generation of each example (its first token alone where ``first_only``),
    and the seconds of the ``generate`` call."""
    from skipit.empirical.data import DEFAULT_MAX_NEW_TOKENS, build_inputs
    from skipit.empirical.hooks import LeftPadding

    device = input_device(model)
    placeholders = _placeholders(model)
    steps = max_new_tokens or DEFAULT_MAX_NEW_TOKENS
    with LeftPadding(processor) as tok:
        inputs = to_model_inputs(build_inputs(processor, chunk, model), model)
        prompt_length = inputs["input_ids"].shape[1]
        with run_in():
            synchronize(device)
            t0 = time.perf_counter()
            out = model.generate(**inputs, max_new_tokens=steps, do_sample=False, num_beams=1,
                                 pad_token_id=tok.pad_token_id, suppress_tokens=placeholders)
            synchronize(device)
            seconds = time.perf_counter() - t0
        new = out[:, prompt_length:] if out.shape[1] > prompt_length else out[:, -1:]
        texts = [tok.decode(row[:1] if first else row, skip_special_tokens=True)
                 for row, first in zip(new.tolist(), first_only)]
    return texts, seconds


@torch.no_grad()
def predict(model: torch.nn.Module, processor: Any, examples: Sequence[Example], batch_size: int = 16,
            mode: str | None = None, layer: int | Iterable[int] | None = None, adapter: VLMAdapter | None = None,
            context: Callable[[], AbstractContextManager[Any]] | None = None, ctx: DistributedContext | None = None,
            max_batch_tokens: int | None = None, max_new_tokens: int | None = None,
            metric: str | None = None) -> tuple[list[str], list[bool] | list[float], float]:
    """``(answers, correct, seconds)`` for ``examples`` (``data.Example``), by the rules of the
    module docstring.

    ``mode`` None/"full" or a mode of :data:`skipit.empirical.modes.EVALUATE_MODES` at
    ``layer`` (:func:`mode_context`); or ``context``, a zero-argument callable returning the
    context manager each batch runs in (a skipping context, a baseline). ``answers``: each
    generation read by :func:`~skipit.empirical.parsing.read_answer`; ``correct``: its score
    (:func:`skipit.empirical.metrics.score_one`; a bool for ``letter``); ``metric``
    overrides each example's own. ``seconds``: the time in the model's calls (on CUDA the
    device is synchronised before and after each), summed over ranks. ``max_new_tokens``:
    the greedy tokens of a generation (None: ``data.DEFAULT_MAX_NEW_TOKENS``).
    """
    _check_run(batch_size, max_batch_tokens, max_new_tokens)
    ctx = SINGLE_PROCESS if ctx is None else ctx
    if context is None:
        ad = resolve_adapter(model, adapter)
        mode_context(model, mode, layer, ad)  # a bad mode is refused before any work

        def context():
            return mode_context(model, mode, layer, ad)

    answers, correct, seconds = {}, {}, 0.0
    for positions in shard(batch_positions(processor, examples, model, batch_size, max_batch_tokens), ctx):
        chunk = [examples[i] for i in positions]
        metrics = [check_metric(metric or ex.metric or "letter") for ex in chunk]
        first_only = [reads_one_token(ex, m) for ex, m in zip(chunk, metrics)]
        if all(first_only):
            texts, took = _one_token(model, processor, chunk, context)
        else:
            texts, took = _generated(model, processor, chunk, context, first_only, max_new_tokens)
        seconds += took
        for i, example, text, m in zip(positions, chunk, texts, metrics):
            answers[i] = read_answer(example, text, m)
            score = score_one(answers[i], example.answers, m)
            correct[i] = bool(score) if m == "letter" else score
    if ctx.is_distributed:
        parts = gather_objects((answers, correct, seconds), ctx)
        answers = {i: a for part in parts for i, a in part[0].items()}
        correct = {i: c for part in parts for i, c in part[1].items()}
        seconds = sum(part[2] for part in parts)
    order = range(len(examples))
    return [answers[i] for i in order], [correct[i] for i in order], seconds


def predict_answers_timed(model: torch.nn.Module, processor: Any, examples: Sequence[Example], *,
                          batch_size: int = 16, context: Callable[[], AbstractContextManager[Any]] | None = None,
                          max_new_tokens: int | None = None, metric: str | None = None,
                          max_batch_tokens: int | None = None,
                          ctx: DistributedContext | None = None) -> tuple[list[str], float]:
    """``(answers, seconds)`` of :func:`predict` (without the scores)."""
    answers, _, seconds = predict(model, processor, examples, batch_size, context=context or contextlib.nullcontext,
                                  ctx=ctx, max_batch_tokens=max_batch_tokens, max_new_tokens=max_new_tokens,
                                  metric=metric)
    return answers, seconds


def predict_answers(model: torch.nn.Module, processor: Any, examples: Sequence[Example], *, batch_size: int = 16,
                    context: Callable[[], AbstractContextManager[Any]] | None = None, max_new_tokens: int | None = None,
                    metric: str | None = None, max_batch_tokens: int | None = None,
                    ctx: DistributedContext | None = None) -> list[str]:
    """The answers of ``model`` to ``examples`` (``data.Example``), in order, as :func:`predict`
    reads them. ``context``: None, or a zero-argument callable returning the context manager
    each batch runs in (``lambda: late_entry(model, layer=L)``). ``metric`` overrides each
    example's own metric."""
    return predict_answers_timed(model, processor, examples, batch_size=batch_size, context=context,
                                 max_new_tokens=max_new_tokens, metric=metric, max_batch_tokens=max_batch_tokens,
                                 ctx=ctx)[0]


def token_counts(model: torch.nn.Module, processor: Any, examples: Sequence[Example], batch_size: int,
                 adapter: VLMAdapter, max_batch_tokens: int | None = None) -> list[tuple[int, int]]:
    """``[(text, vision), ...]``: each example's own prompt token counts (padding excluded), in
    the batches of :func:`predict`."""
    from skipit.empirical.data import build_inputs
    from skipit.empirical.flops import example_token_counts

    _check_run(batch_size, max_batch_tokens, None)
    counts: list[tuple[int, int]] = [(0, 0)] * len(examples)
    for positions in batch_positions(processor, examples, model, batch_size, max_batch_tokens):
        inputs = build_inputs(processor, [examples[i] for i in positions], model)
        found = example_token_counts(adapter.vision_mask(inputs["input_ids"], model.config),
                                     inputs.get("attention_mask"))
        for i, c in zip(positions, found):
            counts[i] = c
    return counts
