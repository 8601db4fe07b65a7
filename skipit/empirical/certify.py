"""The run of ``skipit certify``: capture, verification, checkpoints.

The pure half (settings, bounds, verdicts, verification maths, schema) is
:mod:`skipit.empirical.certificate`; this module runs the model:

1. the examples are split (:func:`~skipit.empirical.certificate.split_indices`) into a
   statistics part and a disjoint calibration part;
2. per-layer statistics of the statistics part are captured with
   :func:`skipit.empirical.capture_statistics` (one forward per batch), checkpointed so a
   run can be killed and resumed;
3. the paper's verdicts follow from them (pure);
4. verification: the full model's answers on the calibration part, then each candidate
   of the three chains (late entry, early exit, freeze) in its fixed order, until a chain
   stops; every candidate's count of changed answers is checkpointed too.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from skipit.empirical.certificate import (
    CERTIFICATE_FILE,
    CertifySettings,
    build_certificate,
    candidate_chains,
    certificate_layers,
    config_arg,
    config_key,
    run_chains,
    split_indices,
    verification_block,
)
from skipit.empirical.data import data_sha256
from skipit.empirical.distributed import (
    SINGLE_PROCESS,
    batch_positions,
    gather_objects,
    merge_statistics,
    other_rank_dirs,
    rank_checkpoint_dir,
    run_everywhere,
    run_on_main,
    shard,
    sum_counts,
)
from skipit.empirical.files import atomic_write_text
from skipit.empirical.weights import weights_fingerprint

if TYPE_CHECKING:
    import torch

    from skipit.empirical.adapters.base import VLMAdapter
    from skipit.empirical.data import Example
    from skipit.empirical.distributed import DistributedContext

__all__ = ["certify", "write_certificate", "CertifySettings", "CHECKPOINT_STATE"]

CHECKPOINT_STATE = "checkpoint.json"


def write_certificate(certificate: Mapping[str, Any], out_dir: str | os.PathLike[str]) -> str:
    """Write ``certificate.json`` atomically into ``out_dir``; returns its path."""
    path = os.path.join(os.fspath(out_dir), CERTIFICATE_FILE)
    atomic_write_text(path, json.dumps(certificate, indent=2, sort_keys=False) + "\n")
    return path


@dataclass
class _CheckpointState:
    data_sha256: str
    num_examples: int
    batch_size: int
    settings_key: str
    model_key: str = ""
    data_source: str = ""  # where the examples came from, for messages (e.g. "bundled:digits-test")
    statistics: str = ""  # file name (in the checkpoint directory) of the statistics of `done`
    done: list = field(default_factory=list)  # example indices already in the statistics
    verification_key: str = ""
    reference: list | None = None  # the full model's answers on the calibration examples
    token_counts: list | None = None  # [text, vision] per calibration example
    order_scores: dict | None = None  # layer -> ShortV contribution (freeze_order="contribution")
    results: dict = field(default_factory=dict)  # config key -> changed answers
    calibration: list | None = None  # positions (in the calibration list) of this rank's reference answers

    def to_json(self):
        return json.dumps(asdict(self), indent=1)


_MODEL_FIELDS = {
    "model": ("location", ""),
    "model_type": ("model type", ""),
    "num_layers": ("number of decoder layers", ""),
    "dtype": ("dtype", " (--dtype or --device changed?)"),
}


def _resume_problem(saved, state):
    """Why the checkpoint state ``saved`` (a dict) cannot be continued by a run with
    ``state`` (a :class:`_CheckpointState`), in words; None if it can."""
    mine = state.data_source or "this run's data"
    theirs = saved.get("data_source") or "its data"
    n_saved, n = saved.get("num_examples"), state.num_examples
    finished = isinstance(n_saved, int) and len(saved.get("done") or ()) >= n_saved
    if n_saved != n:
        hint = " (--samples changed?)" if theirs == mine or not saved.get("data_source") else ""
        return f"covers {n_saved} examples of {theirs}; this run has {n} of {mine}{hint}"
    if saved.get("data_sha256") != state.data_sha256:
        done = "a finished run's statistics" if finished else f"statistics of {len(saved.get('done') or ())}"
        return (f"holds {done} on {n} examples of {theirs} whose content differs from this run's {n} "
                f"examples of {mine} (the data file, its images or --data changed?)")
    if saved.get("settings_key") != state.settings_key:
        old = _json_or_none(saved.get("settings_key")) or {}
        new = _json_or_none(state.settings_key) or {}
        for key, flag in (("thresholds", "--thresholds"), ("split", "--calibration-fraction, --split-seed or "
                                                                     "--verify")):
            if old.get(key) != new.get(key):
                return f"captured with {key} {old.get(key)}; this run asks for {new.get(key)} ({flag} changed?)"
        return "was made with other capture settings"
    if saved.get("model_key") != state.model_key:
        old = _json_or_none(saved.get("model_key")) or {}
        new = _json_or_none(state.model_key) or {}
        for key, (words, hint) in _MODEL_FIELDS.items():
            if old.get(key) != new.get(key):
                return (f"was made with another model: its {words} was {old.get(key)!r}, this run's is "
                        f"{new.get(key)!r}{hint}")
        return ("was made with other weights: same location, type, layers and dtype, but the "
                "parameters' values differ (a retrained or re-saved model?)")
    return None


def _json_or_none(text):
    try:
        return json.loads(text)
    except (TypeError, ValueError):
        return None


def _read_checkpoint(directory, state):
    """The checkpoint state saved in ``directory`` (a dict; None when there is none), after
    checking that ``state`` may continue it (else a SkipitError saying what changed)."""
    from skipit.errors import SkipitError

    path = os.path.join(directory, CHECKPOINT_STATE)
    if not os.path.exists(path):
        return None
    with open(path, encoding="utf-8") as fh:
        saved = json.load(fh)
    problem = _resume_problem(saved, state)
    if problem:
        raise SkipitError(f"the checkpoint in {directory} {problem}; use another --out directory or --no-resume")
    return saved


def _checkpoints_done(own, others, ctx):
    """Every example index done by any checkpoint: this rank's ``own`` list, gathered from every
    rank, and ``others`` (rank 0's view of the directories of ranks beyond the world size).
    An index in two checkpoints is refused: its statistics would count twice."""
    from skipit.errors import SkipitError

    parts = [part for rank_parts in gather_objects([list(own)] + [list(o) for o in others], ctx)
             for part in rank_parts]
    done = set()
    for part in parts:
        twice = done.intersection(part)
        if twice:
            raise SkipitError(f"two rank checkpoints both hold example {min(twice)}; the checkpoint is "
                              "inconsistent: use another --out directory or --no-resume")
        done.update(part)
    return done


def _skip_context(model, config, adapter):
    """A zero-argument factory of the skipping context of a verification candidate."""
    from skipit.empirical.modes import skip_context

    return lambda: skip_context(model, config["mode"], config_arg(config), adapter)


def _answers(model, processor, examples, settings, adapter, context=None, max_batch_tokens=None):
    """Answers of the model (under ``context``) on ``examples``, as :func:`skipit.empirical.evaluate.predict`
    gives them (the one-token argmax for letter-scored examples, the greedy generation of up to
    ``settings.max_new_tokens`` tokens for free-form ones), normalised as ``skipit evaluate``
    compares them too (:func:`skipit.empirical.answers.comparable_answers`)."""
    from skipit.empirical.answers import comparable_answers
    from skipit.empirical.evaluate import predict

    preds, _, _ = predict(model, processor, examples, settings.batch_size, adapter=adapter, context=context,
                          max_new_tokens=settings.max_new_tokens, max_batch_tokens=max_batch_tokens)
    return comparable_answers(preds, examples)


def _flops_fraction(model, config, token_counts):
    """Predicted prefill FLOPs of ``config`` over those of the full model, summed over the
    calibration examples' own token counts (:func:`skipit.empirical.flops.config_flops_fraction`)."""
    from skipit.empirical.flops import config_flops_fraction

    return float(config_flops_fraction(model.config, config["mode"], config_arg(config), token_counts))


def run_versions() -> dict[str, str | None]:
    """Versions of skipit, torch and transformers (None when not importable)."""
    from importlib import metadata

    out: dict[str, str | None] = {}
    for name in ("skipit", "torch", "transformers"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def certify(model: torch.nn.Module, processor: Any, examples: Sequence[Example],
            settings: CertifySettings | None = None, *, checkpoint_dir: str | os.PathLike[str] | None = None,
            progress: bool = True, model_info: Mapping[str, Any] | None = None,
            data_info: Mapping[str, Any] | None = None, run_info: Mapping[str, Any] | None = None,
            max_batches: int | None = None, ctx: DistributedContext | None = None,
            max_batch_tokens: int | None = None) -> dict[str, Any] | None:
    """Measure per-layer statistics of ``model`` on ``examples``, verify the candidates, and
    return the ``skipit.certificate/2`` dict (not written: see :func:`write_certificate`).

    ``examples``: :class:`skipit.empirical.data.Example` list. ``settings``: a
    :class:`~skipit.empirical.certificate.CertifySettings` (default: its defaults). The
    examples are split by :func:`~skipit.empirical.certificate.split_indices`: statistics
    on one part (answer position = last prompt token), verification on the other.

    With ``checkpoint_dir``, the merged statistics, the examples done, the reference answers
    and every verified candidate's count are saved as the run goes; a later call with the
    same directory and ``settings.resume`` continues from there with any batch size. A
    resume is refused, with :class:`skipit.errors.SkipitError` saying what changed, if the
    number of examples, their sha256, the captured thresholds or split, or the model
    (location, type, layers, dtype, weights fingerprint) differ. ``max_batches`` stops
    after that many new statistics batches and returns None (used to test resumption).
    ``model_info`` / ``data_info`` / ``run_info`` are copied into the certificate's
    model, data and run blocks.

    Data-parallel (``ctx``, a :class:`skipit.empirical.distributed.DistributedContext` under
    torchrun): each rank captures a disjoint shard of the statistics examples
    (:func:`~skipit.empirical.distributed.shard` of the batches of those not done yet) and of
    the calibration examples; the statistics are merged exactly in rank order and the changed-answer counts
    summed, so every rank returns the same certificate, ``run.world_size`` = the number of
    ranks. Rank K checkpoints into its own directory
    (:func:`~skipit.empirical.distributed.rank_checkpoint_dir`); a rerun with any world size
    resumes: the examples done by any rank's checkpoint are skipped, and the checkpoints of
    ranks beyond the new world size are merged by rank 0. ``max_batch_tokens`` caps the
    padded prompt tokens of every batch: statistics, layer contributions and one-token answers
    (:func:`~skipit.empirical.distributed.token_budget_batches`).
    """
    import torch

    from skipit.empirical import RunStatistics, capture_statistics
    from skipit.empirical.adapters import get_adapter
    from skipit.empirical.data import build_inputs
    from skipit.empirical.loading import to_model_inputs
    from skipit.errors import SkipitError

    ctx = SINGLE_PROCESS if ctx is None else ctx
    settings = CertifySettings() if settings is None else settings
    if not isinstance(settings, CertifySettings):
        raise TypeError(f"`settings` must be a CertifySettings, got {type(settings).__name__}")
    if not examples:
        raise SkipitError("no examples to certify on")
    if settings.verify and len(examples) < 2:
        raise SkipitError(f"verification needs at least 2 examples (statistics and calibration), got "
                          f"{len(examples)}; add examples or pass --no-verify")
    adapter = get_adapter(model)
    stats_idx, calib_idx = split_indices(len(examples), settings)
    sha = data_sha256(examples)
    weights = weights_fingerprint(model)
    settings_key = json.dumps({"thresholds": list(settings.thresholds),
                               "split": [settings.verify, settings.calibration_fraction, settings.split_seed]})
    model_key = json.dumps({"model": (model_info or {}).get("location") or (model_info or {}).get("name"),
                            "model_type": adapter.model_type, "num_layers": adapter.num_layers(model),
                            "dtype": str(next(model.parameters()).dtype), "weights": weights})
    verification_key = json.dumps({"max_new_tokens": settings.max_new_tokens, "order": settings.freeze_order,
                                   "order_examples": settings.order_examples})
    state = _CheckpointState(sha, len(examples), settings.batch_size, settings_key, model_key,
                             data_source=str((data_info or {}).get("source") or ""),
                             verification_key=verification_key)
    total = None
    state_path = None
    others = []  # checkpoints of ranks beyond this run's world size (rank 0 reads them)
    rank_dir = None
    if checkpoint_dir is not None:
        checkpoint_dir = os.fspath(checkpoint_dir)
        rank_dir = rank_checkpoint_dir(checkpoint_dir, ctx.rank)
        state_path = os.path.join(rank_dir, CHECKPOINT_STATE)

        def read():
            if not settings.resume:
                return None, []
            mine = _read_checkpoint(rank_dir, state)
            found = []
            if ctx.is_main:
                for directory in other_rank_dirs(checkpoint_dir, ctx.world_size):
                    saved = _read_checkpoint(directory, state)
                    if saved is not None and saved.get("statistics"):
                        found.append((saved["done"], RunStatistics.load(os.path.join(directory,
                                                                                     saved["statistics"]))))
            return mine, found

        saved, others = run_everywhere(read, ctx)
        if saved is not None:
            state.done = list(saved["done"])
            state.statistics = saved["statistics"]
            if saved.get("verification_key") == verification_key:
                state.reference = saved.get("reference")
                state.token_counts = saved.get("token_counts")
                state.order_scores = saved.get("order_scores")
                state.results = dict(saved.get("results") or {})
                state.calibration = saved.get("calibration")
            if state.statistics:
                total = RunStatistics.load(os.path.join(rank_dir, state.statistics))

    def save_state():
        if checkpoint_dir is not None:
            os.makedirs(rank_dir, exist_ok=True)
            atomic_write_text(state_path, state.to_json())

    def save_checkpoint():
        # A new statistics file per checkpoint, then the state naming it, written atomically: a crash
        # at any point leaves a state whose statistics file is complete and holds exactly `done`.
        if checkpoint_dir is None or total is None:
            return
        os.makedirs(rank_dir, exist_ok=True)
        old = state.statistics
        state.statistics = f"statistics-{len(state.done):09d}.json"
        total.save(os.path.join(rank_dir, state.statistics))
        save_state()
        if old and old != state.statistics and os.path.exists(os.path.join(rank_dir, old)):
            os.unlink(os.path.join(rank_dir, old))

    done = run_everywhere(lambda: _checkpoints_done(state.done, [d for d, _ in others], ctx), ctx)
    todo = [i for i in stats_idx if i not in done]
    batches = [[todo[p] for p in batch] for batch in batch_positions(
        processor, [examples[i] for i in todo], model, settings.batch_size, max_batch_tokens)]
    # Whole batches are dealt to the ranks, so each example runs in the batch it has in one
    # process (same padding, same float32 arithmetic): the merged sums differ only in order.
    batches = shard(batches, ctx)
    bar = None
    if progress and ctx.is_main:
        from tqdm.auto import tqdm

        if ctx.world_size == 1:
            bar = tqdm(total=len(stats_idx), initial=len(stats_idx) - len(todo), unit="ex", desc="statistics",
                       leave=True)
        else:
            bar = tqdm(total=sum(map(len, batches)), unit="ex", desc=f"statistics (rank 0 of {ctx.world_size})",
                       leave=True)
    every = settings.checkpoint_every
    try:
        for start in range(0, len(batches), every):
            chunk = batches[start:start + every]
            if max_batches is not None:
                chunk = chunk[:max(0, max_batches - start)]
                if not chunk:
                    return None
            with torch.inference_mode(), capture_statistics(model, adapter=adapter, thresholds=settings.thresholds,
                                                            cka=True, attention=True) as cap:
                for idx in chunk:
                    inputs = build_inputs(processor, [examples[i] for i in idx], model=model)
                    inputs = to_model_inputs(inputs, model)
                    model(**inputs, logits_to_keep=1)  # the statistics never read the logits: B x S x vocab saved
                    if bar is not None:
                        bar.update(len(idx))
            part = cap.statistics
            total = part if total is None else total.merge(part)
            state.done.extend(i for idx in chunk for i in idx)
            save_checkpoint()
            if max_batches is not None and start + len(chunk) >= max_batches:
                return None
    finally:
        if bar is not None:
            bar.close()

    total = merge_statistics(total, ctx)
    for part in run_on_main(lambda: [statistics.to_dict() for _, statistics in others], ctx):
        part = RunStatistics.from_dict(part)
        total = part if total is None else total.merge(part)

    model_info = dict(model_info or {})
    model_info.setdefault("model_type", adapter.model_type)
    model_info.setdefault("hidden_size", getattr(adapter.text_config(model.config), "hidden_size", None))
    model_info["weights"] = weights
    data_info = dict(data_info or {}, sha256=sha, num_examples=len(examples), statistics_examples=len(stats_idx),
                     calibration_examples=len(calib_idx),
                     split={"calibration_fraction": settings.calibration_fraction, "seed": settings.split_seed,
                            "rule": "seeded permutation; the first round((1 - f) n) for the statistics, "
                                    "the rest for calibration"})
    run = {"world_size": ctx.world_size, "versions": run_versions(), "revision": model_info.get("revision"),
           "batch_size": settings.batch_size}
    if max_batch_tokens is not None:
        run["max_batch_tokens"] = int(max_batch_tokens)
    run.update(run_info or {})

    verification = None
    if settings.verify:
        layers = certificate_layers(total.layers(), total.num_examples, settings)
        calibration = [examples[i] for i in calib_idx]
        ordering = [examples[i] for i in stats_idx[:settings.order_examples]]
        verification = _verify(model, processor, calibration, ordering, layers, settings, adapter, state,
                               save_state, progress and ctx.is_main, ctx, max_batch_tokens)
    return build_certificate(total.layers(), num_examples=total.num_examples, settings=settings,
                             model_info=model_info, data_info=data_info, run_info=run,
                             verification=verification)


def layer_contributions(model: torch.nn.Module, processor: Any, examples: Sequence[Example], adapter: VLMAdapter,
                        batch_size: int, ctx: DistributedContext = SINGLE_PROCESS,
                        max_batch_tokens: int | None = None) -> dict[int, float]:
    """ShortV's layer contribution: ``{l: mean KL(full || layer l frozen)}`` of the answer
    distribution over ``examples``, for ``l = 1..N``. Under ``ctx`` each rank takes whole
    batches and the per-rank sums (mean x count) are added over ranks before dividing."""
    from skipit.empirical.baselines import answer_kl
    from skipit.empirical.data import build_inputs
    from skipit.empirical.loading import to_model_inputs

    mine = shard(batch_positions(processor, examples, model, batch_size, max_batch_tokens), ctx)
    batches = [to_model_inputs(build_inputs(processor, [examples[i] for i in idx], model=model), model)
               for idx in mine]
    n = adapter.num_layers(model)
    contexts = [_skip_context(model, {"mode": "freeze", "layers": [l]}, adapter) for l in range(1, n + 1)]
    kls = answer_kl(model, batches, contexts) if batches else [0.0] * n
    if ctx.is_distributed:
        count = sum(map(len, mine))
        parts = gather_objects((count, [k * count for k in kls]), ctx)
        total = sum(c for c, _ in parts)
        kls = [sum(p[1][l] for p in parts) / total for l in range(n)]
    return {l: float(k) for l, k in zip(range(1, n + 1), kls)}


def _verify(model, processor, calibration, ordering, layers, settings, adapter, state, save_state, progress,
            ctx=SINGLE_PROCESS, max_batch_tokens=None):
    """Run the three chains on ``calibration`` (fixed-sequence: a chain stops at its first
    candidate not rejected) and return the ``verification`` block. ``ordering``: statistics
    examples for the contribution order of the freeze chain. Under ``ctx`` each rank answers
    its shard of ``calibration`` and of ``ordering``; the changed counts and the contributions'
    sums are added over ranks, so every rank walks the same chains."""
    import torch

    from skipit.empirical.answers import answers_changed
    from skipit.empirical.certificate import freeze_order
    from skipit.empirical.evaluate import token_counts as example_token_counts

    n = len(calibration)
    say = _sayer(progress)
    with torch.inference_mode():
        if settings.freeze_order == "contribution":
            # rank 0's checkpoint decides, so every rank takes the same (collective) path
            if run_on_main(lambda: state.order_scores is None, ctx):
                say(f"verification: layer contributions (ShortV) on {len(ordering)} statistics examples")
                state.order_scores = {str(k): v for k, v in layer_contributions(
                    model, processor, ordering, adapter, settings.batch_size, ctx, max_batch_tokens).items()}
                save_state()
            state.order_scores = run_on_main(lambda: state.order_scores, ctx)
            scores = {int(k): float(v) for k, v in state.order_scores.items()}
        else:
            scores = {e["layer"]: e["vision"]["mean_upper_bound"] for e in layers}
        order = freeze_order(layers, scores)
        mine = [i for batch in shard(batch_positions(processor, calibration, model, settings.batch_size), ctx)
                for i in batch]
        own = [calibration[i] for i in mine]
        if state.reference is None or len(state.reference) != len(mine) or (
                state.calibration is not None and state.calibration != mine):
            say(f"verification: full model on {n} calibration examples")
            state.reference = _answers(model, processor, own, settings, adapter, max_batch_tokens=max_batch_tokens)
            state.token_counts = example_token_counts(model, processor, own, settings.batch_size, adapter)
            state.results = {}
            state.calibration = mine
            save_state()
        token_counts = [c for part in gather_objects(state.token_counts, ctx) for c in part]
        def changed(config):
            key = config_key(config)
            if key not in state.results:  # counted once, checkpointed, reused on resume
                say(f"verification: {key}")
                answers = _answers(model, processor, own, settings, adapter,
                                   context=_skip_context(model, config, adapter), max_batch_tokens=max_batch_tokens)
                state.results[key] = sum(answers_changed(state.reference, answers))
                save_state()
            return sum_counts(int(state.results[key]), ctx)

        chains = run_chains(candidate_chains(layers, order), n, changed,
                            lambda config: _flops_fraction(model, config, token_counts), settings)
    by = ("ShortV layer contribution: mean KL(full || layer frozen) of the answer distribution on "
          f"{len(ordering)} statistics examples" if settings.freeze_order == "contribution"
          else "certified vision redundancy U_l (example-level upper bound on D_l)")
    return verification_block(chains, settings, n, order={"by": by, "scores": {str(k): v for k, v in scores.items()},
                                                          "layers": order})


def _sayer(progress):
    import sys

    if not progress:
        return lambda msg: None
    return lambda msg: print(f"skipit certify: {msg}", file=sys.stderr)
