"""The run of ``skipit certify``: :func:`certify`, step by step, and its :class:`Checkpoint`.

The pure half (bounds, verdicts, verification maths, schema) is
:mod:`skipit.empirical.certificate`; the settings are
:class:`skipit.empirical.settings.CertifySettings`. :func:`certify` runs the method's steps:

1. **split** the examples by image into a statistics part and a disjoint calibration part
   (:func:`~skipit.empirical.verification.split_indices`; images identified by their pixels,
   :mod:`skipit.empirical.units`);
2. **statistics**: per-layer statistics of the statistics part, one forward per batch
   (:func:`skipit.empirical.capture_statistics`), checkpointed so that a killed run resumes;
3. **learn**: every candidate's change rate on the statistics part, and from them ONE chain
   of candidates worth testing (:func:`learn`);
4. **verify**: the full model's answers on the calibration part, then each candidate of the
   chain in its fixed order until the first not rejected; every answer change is checkpointed;
5. **decide**: the paper's verdicts and the verified configurations
   (:func:`~skipit.empirical.certificate.build_certificate`);
6. **write**: :func:`write_certificate` (the command writes what :func:`certify` returns).

This module is ``certify_run`` and not ``certify`` so that ``skipit.empirical.certify`` is the
function, whatever was imported before.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from skipit.empirical.certificate import CERTIFICATE_FILE, build_certificate, certificate_layers
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
)
from skipit.empirical.files import atomic_write_text
from skipit.empirical.settings import CertifySettings, SettingError
from skipit.empirical.units import unit_ids
from skipit.empirical.verification import (
    config_key,
    learn_chain,
    learn_indices,
    split_indices,
    test_chain,
    verification_block,
)
from skipit.empirical.weights import weights_fingerprint
from skipit.errors import RunError

if TYPE_CHECKING:
    import numpy as np
    import torch

    from skipit.empirical.adapters.base import VLMAdapter
    from skipit.empirical.data import Example
    from skipit.empirical.distributed import DistributedContext
    from skipit.empirical.stats import RunStatistics

__all__ = ["certify", "learn", "write_certificate", "layer_contributions", "layer_contribution_rows", "run_versions",
           "Checkpoint", "CertifySettings", "CHECKPOINT_STATE"]

CHECKPOINT_STATE = "checkpoint.json"
CHECKPOINT_FORMAT = "skipit.checkpoint/2"


def write_certificate(certificate: Mapping[str, Any], out_dir: str | os.PathLike[str]) -> str:
    """Write ``certificate.json`` atomically into ``out_dir``; returns its path."""
    path = os.path.join(os.fspath(out_dir), CERTIFICATE_FILE)
    atomic_write_text(path, json.dumps(certificate, indent=2, sort_keys=False) + "\n")
    return path


# --------------------------------------------------------------------------------------
# the checkpoint
# --------------------------------------------------------------------------------------

_MODEL_FIELDS = {
    "model": ("location", ""),
    "model_type": ("model type", ""),
    "num_layers": ("number of decoder layers", ""),
    "dtype": ("dtype", " ({dtype} or {device} changed?)"),
}


@dataclass
class Checkpoint:
    """One rank's checkpoint: ``checkpoint.json`` and the statistics file it names, in ``directory``.

    ``identity`` is what a resume must match (``data``: sha256, count and source of the
    examples; ``capture``: thresholds and split; ``model``: location, type, layers, dtype,
    weights fingerprint); ``done`` the example indices in ``statistics``;
    ``verification`` the learned order, the reference answers and every candidate's count,
    kept while ``verification["key"]`` (answer length, freeze order) is unchanged. With
    ``directory`` None nothing is saved. :meth:`save` writes a new statistics file, then the
    state naming it (atomically), then removes the old file: a crash at any point leaves a
    state whose statistics file is complete and holds exactly ``done``.
    """

    directory: str | None
    identity: dict[str, Any]
    verification_key: dict[str, Any]
    done: list[int] = field(default_factory=list)
    statistics: RunStatistics | None = None
    statistics_file: str = ""
    verification: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def open(cls, directory: str | None, identity: Mapping[str, Any], verification_key: Mapping[str, Any],
             resume: bool = True) -> Checkpoint:
        """The checkpoint in ``directory``, loaded when ``resume`` and there is one (else empty).
        A checkpoint this run may not continue is refused (:class:`SettingError` saying what
        changed)."""
        from skipit.empirical.stats import RunStatistics

        out = cls(directory, dict(identity), dict(verification_key))
        saved = out._read() if resume else None
        if saved is not None:
            out.done = list(saved["done"])
            out.statistics_file = saved["statistics"]
            if out.statistics_file:
                out.statistics = RunStatistics.load(os.path.join(directory, out.statistics_file))
            if saved["verification"].get("key") == out.verification_key:
                out.verification = {k: v for k, v in saved["verification"].items() if k != "key"}
        return out

    def _read(self):
        path = os.path.join(self.directory, CHECKPOINT_STATE) if self.directory else None
        if path is None or not os.path.exists(path):
            return None
        with open(path, encoding="utf-8") as fh:
            saved = json.load(fh)
        problem = self._resume_problem(saved)
        if problem:
            why, shown = problem
            raise SettingError(f"the checkpoint in {{directory}} {why}; use another {{checkpoint_dir}} or "
                               "{resume=False}", {"directory": str(self.directory), **shown})
        return saved

    def _resume_problem(self, saved):
        """Why the saved state ``saved`` (a dict) cannot be continued by this run: ``(words, verbatim)``, the
        words a :class:`SettingError` template that names parameters (``{examples}``) and the user text it
        quotes (data sources, model locations) in ``verbatim``; None if it can be continued."""
        if not isinstance(saved, dict) or saved.get("format") != CHECKPOINT_FORMAT:
            return "was written by another version of skipit", {}
        old, new = saved["identity"], self.identity
        mine = new["data"]["source"] or "this run's data"
        theirs = old["data"]["source"] or "its data"
        sources = {"theirs": str(theirs), "mine": str(mine)}
        n_saved, n = old["data"]["num_examples"], new["data"]["num_examples"]
        if n_saved != n:
            hint = " ({num_examples} changed?)" if theirs == mine or not old["data"]["source"] else ""
            return f"covers {n_saved} examples of {{theirs}}; this run has {n} of {{mine}}{hint}", sources
        if old["data"]["sha256"] != new["data"]["sha256"]:
            finished = len(saved["done"]) >= n_saved
            done = "a finished run's statistics" if finished else f"statistics of {len(saved['done'])}"
            return (f"holds {done} on {n} examples of {{theirs}} whose content differs from this run's {n} "
                    f"examples of {{mine}} (the data file, its images or {{examples}} changed?)", sources)
        for key, names in (("thresholds", "{thresholds}"),
                           ("split", "{calibration_fraction}, {split_seed} or {verify}")):
            if old["capture"][key] != new["capture"][key]:
                return (f"captured with {key} {{old}}; this run asks for {{new}} ({names} changed?)",
                        {"old": str(old["capture"][key]), "new": str(new["capture"][key])})
        if old["model"] != new["model"]:
            for key, (words, hint) in _MODEL_FIELDS.items():
                if old["model"].get(key) != new["model"].get(key):
                    return (f"was made with another model: its {words} was {{old}}, this run's is {{new}}{hint}",
                            {"old": repr(old["model"].get(key)), "new": repr(new["model"].get(key))})
            return ("was made with other weights: same location, type, layers and dtype, but the "
                    "parameters' values differ (a retrained or re-saved model?)", {})
        return None

    def state(self) -> dict[str, Any]:
        """The content of ``checkpoint.json``."""
        return {"format": CHECKPOINT_FORMAT, "identity": self.identity, "statistics": self.statistics_file,
                "done": self.done, "verification": dict(self.verification, key=self.verification_key)}

    def add(self, indices: Sequence[int], part: RunStatistics) -> None:
        """Merge the statistics ``part`` of the examples ``indices`` (in capture order) into the
        checkpoint (not saved); its per-example rows are labelled with ``indices``."""
        part.label_examples(indices)
        self.statistics = part if self.statistics is None else self.statistics.merge(part)
        self.done.extend(indices)

    def save(self) -> None:
        """Save the statistics and the state (see the class docstring for the order)."""
        if self.directory is None or self.statistics is None:
            return
        old, new = self.statistics_file, f"statistics-{len(self.done):09d}.json"
        self._write(lambda: self.statistics.save(os.path.join(self.directory, new)))
        self.statistics_file = new
        self.save_state()
        if old and old != new and os.path.exists(os.path.join(self.directory, old)):
            os.unlink(os.path.join(self.directory, old))

    def save_state(self) -> None:
        """Save the state alone (the verification's progress)."""
        if self.directory is not None:
            self._write(lambda: atomic_write_text(os.path.join(self.directory, CHECKPOINT_STATE),
                                                  json.dumps(self.state(), indent=1)))

    def _write(self, write: Callable[[], None]) -> None:
        try:
            os.makedirs(self.directory, exist_ok=True)
            write()
        except OSError as err:
            what = err.strerror or type(err).__name__
            raise RunError(f"cannot write the checkpoint in {self.directory} ({what}); the last good checkpoint "
                           f"({self._last_good()}) is kept: free space or fix the permissions, then rerun the "
                           "same command to resume") from None

    def _last_good(self):
        path = os.path.join(self.directory, CHECKPOINT_STATE)
        try:
            with open(path, encoding="utf-8") as fh:
                return f"statistics of {len(json.load(fh)['done'])} examples"
        except (OSError, ValueError, KeyError, TypeError):
            return "none yet"

    def saved_examples(self) -> int | None:
        """How many examples the checkpoint on disk holds (None: no checkpoint written)."""
        if self.directory is None:
            return None
        try:
            with open(os.path.join(self.directory, CHECKPOINT_STATE), encoding="utf-8") as fh:
                return len(json.load(fh)["done"])
        except (OSError, ValueError, KeyError, TypeError):
            return None


def _other_ranks(checkpoint_dir, identity, verification_key, ctx, resume):
    """Rank 0's view of the checkpoints of ranks beyond this run's world size (left by a run with
    more processes): ``[(done, statistics), ...]`` in rank order; the other ranks get ``[]``."""
    if checkpoint_dir is None or not resume or not ctx.is_main:
        return []
    found = []
    for directory in other_rank_dirs(checkpoint_dir, ctx.world_size):
        other = Checkpoint.open(directory, identity, verification_key)
        if other.statistics is not None:
            found.append((other.done, other.statistics))
    return found


def _done_by_any_rank(own, others, ctx):
    """Every example index done by any checkpoint: this rank's ``own`` list, gathered from every
    rank, and ``others`` (rank 0's view of the directories of ranks beyond the world size).
    An index in two checkpoints is refused: its statistics would count twice."""
    parts = [part for rank_parts in gather_objects([list(own)] + [list(o) for o in others], ctx)
             for part in rank_parts]
    done: set[int] = set()
    for part in parts:
        twice = done.intersection(part)
        if twice:
            raise SettingError(f"two rank checkpoints both hold example {min(twice)}; the checkpoint is "
                               "inconsistent: use another {checkpoint_dir} or {resume=False}")
        done.update(part)
    return done


# --------------------------------------------------------------------------------------
# the steps
# --------------------------------------------------------------------------------------

def _identity(model, adapter, examples, settings, model_info, data_info):
    """What a checkpoint must match to be continued (see :class:`Checkpoint`)."""
    info = model_info or {}
    return {
        "data": {"sha256": data_sha256(examples), "num_examples": len(examples),
                 "source": str((data_info or {}).get("source") or "")},
        "capture": {"thresholds": list(settings.thresholds),
                    "split": [settings.verify, settings.calibration_fraction, settings.split_seed]},
        "model": {"model": info.get("location") or info.get("name"), "model_type": adapter.model_type,
                  "num_layers": adapter.num_layers(model), "dtype": str(next(model.parameters()).dtype),
                  "weights": weights_fingerprint(model)},
    }


def _statistics(model, processor, examples, indices, settings, adapter, checkpoint, others, ctx, progress,
                max_batches):
    """Step 2: the merged statistics of ``examples[indices]`` over every rank and every
    checkpoint, capturing only the examples no checkpoint holds; None when ``max_batches``
    stopped the run first."""
    import torch

    from skipit.empirical.capture import capture_statistics
    from skipit.empirical.data import build_inputs
    from skipit.empirical.loading import to_model_inputs
    from skipit.empirical.stats import RunStatistics

    done = run_everywhere(lambda: _done_by_any_rank(checkpoint.done, [d for d, _ in others], ctx), ctx)
    todo = [i for i in indices if i not in done]
    batches = [[todo[p] for p in batch] for batch in batch_positions(
        processor, [examples[i] for i in todo], model, settings.batch_size, settings.max_batch_tokens)]
    # Whole batches are dealt to the ranks, so each example runs in the batch it has in one
    # process (same padding, same float32 arithmetic): the merged sums differ only in order.
    batches = shard(batches, ctx)
    bar = _progress_bar(progress and ctx.is_main, ctx, len(indices), len(indices) - len(todo),
                        sum(map(len, batches)))
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
                    inputs = to_model_inputs(build_inputs(processor, [examples[i] for i in idx], model=model), model)
                    model(**inputs, logits_to_keep=1)  # the statistics never read the logits: B x S x vocab saved
                    if bar is not None:
                        bar.update(len(idx))
            checkpoint.add([i for idx in chunk for i in idx], cap.statistics)
            checkpoint.save()
            if max_batches is not None and start + len(chunk) >= max_batches:
                return None
    finally:
        if bar is not None:
            bar.close()

    total = merge_statistics(checkpoint.statistics, ctx)
    for part in run_on_main(lambda: [statistics.to_dict() for _, statistics in others], ctx):
        part = RunStatistics.from_dict(part)
        total = part if total is None else total.merge(part)
    return total


def _progress_bar(show, ctx, total, initial, mine):
    if not show:
        return None
    from tqdm.auto import tqdm

    if ctx.world_size == 1:
        return tqdm(total=total, initial=initial, unit="ex", desc="statistics", leave=True)
    return tqdm(total=mine, unit="ex", desc=f"statistics (rank 0 of {ctx.world_size})", leave=True)


def _flags_everywhere(mine, flags, n, ctx):
    """Per-question flags in the order of all ``n`` questions, from every rank's positions
    ``mine`` and its ``flags`` there."""
    out = [False] * n
    for positions, part in gather_objects((list(mine), [bool(f) for f in flags]), ctx):
        for p, f in zip(positions, part):
            out[p] = f
    return out


class _Answers:
    """A split's questions as the verification measures them: each rank answers its shard
    (whole batches), the full model's answers and every candidate's changed flags are kept
    in ``state`` (a dict of the checkpoint, saved by ``save``) and gathered over ranks."""

    def __init__(self, name, model, processor, examples, settings, adapter, state, save, ctx, say):
        from skipit.empirical.evaluate import token_counts as example_token_counts

        self.name, self.model, self.processor, self.settings, self.adapter = name, model, processor, settings, adapter
        self.state, self.save, self.ctx, self.say, self.n = state, save, ctx, say, len(examples)
        self.mine = [i for batch in shard(batch_positions(processor, examples, model, settings.batch_size,
                                                          settings.max_batch_tokens), ctx) for i in batch]
        self.own = [examples[i] for i in self.mine]
        if state.get("reference") is None or state.get("positions") != self.mine:
            say(f"verification: full model on {self.n} {name} examples")
            state.update(reference=self._answers(None), positions=self.mine, results={},
                         token_counts=example_token_counts(model, processor, self.own, settings.batch_size, adapter))
            save()
        counts = gather_objects((self.mine, state["token_counts"]), ctx)
        self.token_counts = [None] * self.n
        for positions, part in counts:
            for p, c in zip(positions, part):
                self.token_counts[p] = tuple(c)

    def _answers(self, config):
        from skipit.empirical.candidates import candidate_context

        context = None if config is None else (lambda: candidate_context(self.model, config, self.adapter))
        return _answers(self.model, self.processor, self.own, self.settings, self.adapter, context=context)

    def changed(self, config: Mapping[str, Any]) -> list[bool]:
        """Per question (all ranks, in order), whether ``config`` changed its answer; run once, checkpointed."""
        from skipit.empirical.answers import answers_changed

        results = self.state.setdefault("results", {})
        key = config_key(config)
        if key not in results:
            self.say(f"verification: {key} on the {self.name} split")
            results[key] = answers_changed(self.state["reference"], self._answers(config))
            self.save()
        return _flags_everywhere(self.mine, results[key], self.n, self.ctx)

    def flops(self, config: Mapping[str, Any]) -> float:
        """Predicted FLOPs of ``config`` over the full model's on these questions' own token counts."""
        from skipit.empirical.candidates import candidate_flops_fraction

        return float(candidate_flops_fraction(self.model.config, config, self.token_counts))


def learn(model: torch.nn.Module, processor: Any, examples: Sequence[Example], units: Sequence[int],
          layers: Sequence[Mapping[str, Any]], settings: CertifySettings, adapter: VLMAdapter,
          checkpoint: Checkpoint, ctx: DistributedContext = SINGLE_PROCESS,
          say: Callable[[str], None] = lambda msg: None) -> dict[str, Any]:
    """Step 3 (Learn-then-Test's *learn*), on the statistics split alone (``examples``: its
    ``settings.learn_examples`` questions drawn by image, :func:`~skipit.empirical.verification.learn_indices`;
    ``units`` their images), so that fixed-sequence testing on the calibration split stays valid.

    Each candidate's change rate against the full model (the mean over images of the fraction
    of their questions whose answer changed) and predicted FLOPs feed
    :func:`skipit.empirical.verification.learn_chain`, which measures the candidate families,
    grows freeze sets and compositions, and chooses ONE chain. Ties in the freeze order are
    broken by ``settings.freeze_order``: ShortV's layer contribution on the first
    ``order_examples`` of ``examples`` (checkpointed), or the certified redundancy ``U_l``.
    Returns the learn result with ``order_by``, ``order_scores`` and ``statistics`` (the
    units and examples read) for the certificate."""
    from skipit.empirical.units import unit_means

    state = checkpoint.verification
    if settings.freeze_order == "contribution":
        ordering = examples[:settings.order_examples]
        # rank 0's checkpoint decides, so every rank takes the same (collective) path
        if run_on_main(lambda: state.get("order_scores") is None, ctx):
            say(f"verification: layer contributions (ShortV) on {len(ordering)} statistics examples")
            state["order_scores"] = {str(k): v for k, v in layer_contributions(
                model, processor, ordering, adapter, settings.batch_size, ctx, settings.max_batch_tokens).items()}
            checkpoint.save_state()
        scores = {int(k): float(v) for k, v in run_on_main(lambda: state["order_scores"], ctx).items()}
        by = (f"ShortV layer contribution (mean KL(full || layer frozen) of the answer distribution on {len(ordering)} "
              "statistics examples)")
    else:
        scores = {e["layer"]: e["vision"]["mean_upper_bound"] for e in layers}
        by = "certified vision redundancy U_l"
    answers = _Answers("statistics", model, processor, examples, settings, adapter, state.setdefault("learn", {}),
                       checkpoint.save_state, ctx, say)

    def rate(config):
        return float(unit_means(answers.changed(config), units).mean())

    out = learn_chain(adapter.num_layers(model), rate, answers.flops, settings.tolerance, settings.learn_margin,
                      settings.fastv_ratios, scores)
    return dict(out, order_by=by, order_scores=scores,
                statistics={"units": len(set(units)), "examples": len(examples)})


def _verify(model, processor, calibration, units, learned, settings, adapter, checkpoint, ctx, say):
    """Step 4: the full model's answers on ``calibration`` (images ``units``), then the one chain
    of ``learned`` tested in its fixed order (:func:`skipit.empirical.verification.test_chain`);
    returns the ``verification`` block. Under ``ctx`` each rank answers its shard of
    ``calibration``; the changed flags are gathered, so every rank walks the same chain."""
    answers = _Answers("calibration", model, processor, calibration, settings, adapter,
                       checkpoint.verification.setdefault("calibration", {}), checkpoint.save_state, ctx, say)
    result = test_chain(learned, answers.changed, units, answers.flops, settings.tolerance, settings.confidence)
    return verification_block(result, settings, calibration={"units": len(set(units)), "examples": len(calibration)},
                              statistics=learned["statistics"], order_by=learned["order_by"],
                              order_scores=learned["order_scores"])


def certify(model: torch.nn.Module, processor: Any, examples: Sequence[Example],
            settings: CertifySettings | None = None, *, checkpoint_dir: str | os.PathLike[str] | None = None,
            progress: bool = True, model_info: Mapping[str, Any] | None = None,
            data_info: Mapping[str, Any] | None = None, run_info: Mapping[str, Any] | None = None,
            max_batches: int | None = None, ctx: DistributedContext | None = None) -> dict[str, Any] | None:
    """Measure per-layer statistics of ``model`` on ``examples``, verify the candidates, and
    return the ``skipit.certificate/2`` dict (not written: see :func:`write_certificate`).

    ``examples``: :class:`skipit.empirical.data.Example` list. ``settings``: a
    :class:`~skipit.empirical.settings.CertifySettings` (default: its defaults). The steps are
    those of the module docstring: split, statistics, learn, verify, decide.

    With ``checkpoint_dir``, a :class:`Checkpoint` keeps the merged statistics, the examples
    done, the reference answers and every verified candidate's count as the run goes; a later
    call with the same directory and ``settings.resume`` continues from there with any batch
    size. A resume is refused (:class:`~skipit.empirical.settings.SettingError` saying what
    changed) if the number of examples, their sha256, the captured thresholds or split, or
    the model (location, type, layers, dtype, weights fingerprint) differ. A checkpoint that
    cannot be written is a :class:`skipit.errors.RunError` (the last good one is kept).
    ``max_batches`` stops after that many new statistics batches and returns None (used to
    test resumption). ``model_info`` / ``data_info`` / ``run_info`` are copied into the
    certificate's model, data and run blocks.

    Data-parallel (``ctx``, a :class:`skipit.empirical.distributed.DistributedContext` under
    torchrun): each rank captures a disjoint shard of the statistics examples (whole batches)
    and answers one of the calibration examples; the statistics are merged exactly in rank
    order and the changed-answer counts summed, so every rank returns the same certificate,
    ``run.world_size`` = the number of ranks. Rank K checkpoints into its own directory
    (:func:`~skipit.empirical.distributed.rank_checkpoint_dir`); a rerun with any world size
    resumes: the examples done by any rank's checkpoint are skipped, and the checkpoints of
    ranks beyond the new world size are merged by rank 0. ``settings.max_batch_tokens`` caps
    the padded prompt tokens of every batch (:func:`~skipit.empirical.distributed.token_budget_batches`).
    """
    from skipit.empirical.adapters import get_adapter

    ctx = SINGLE_PROCESS if ctx is None else ctx
    settings = CertifySettings() if settings is None else settings
    if not isinstance(settings, CertifySettings):
        raise TypeError(f"`settings` must be a CertifySettings, got {type(settings).__name__}")
    if not examples:
        raise SettingError("{examples} must not be empty: no examples to certify on")
    units = unit_ids(examples)
    if settings.verify and len(set(units)) < 2:
        raise SettingError(f"verification needs at least 2 images (one for the statistics, one to verify), got "
                           f"{len(set(units))} in {len(examples)} examples; add {{examples}} or set {{verify=False}}")
    adapter = get_adapter(model)
    say = _sayer(progress and ctx.is_main)

    # 1. split, by image
    stats_idx, calib_idx = split_indices(units, settings)
    identity = _identity(model, adapter, examples, settings, model_info, data_info)
    verification_key = {"max_new_tokens": settings.max_new_tokens, "order": settings.freeze_order,
                        "order_examples": settings.order_examples, "answers": "per-question flags"}
    rank_dir = None if checkpoint_dir is None else rank_checkpoint_dir(os.fspath(checkpoint_dir), ctx.rank)
    checkpoint, others = run_everywhere(lambda: (
        Checkpoint.open(rank_dir, identity, verification_key, settings.resume),
        _other_ranks(None if checkpoint_dir is None else os.fspath(checkpoint_dir), identity, verification_key,
                     ctx, settings.resume)), ctx)

    # 2. statistics
    total = _statistics(model, processor, examples, stats_idx, settings, adapter, checkpoint, others, ctx,
                        progress, max_batches)
    if total is None:
        return None
    layers = certificate_layers(total.layers(), total.num_examples, settings, units=units)

    verification = None
    if settings.verify:
        import torch

        with torch.inference_mode():
            # 3. learn
            learn_idx = learn_indices(stats_idx, units, settings.learn_examples, settings.split_seed)
            learned = learn(model, processor, [examples[i] for i in learn_idx], [units[i] for i in learn_idx],
                            layers, settings, adapter, checkpoint, ctx, say)
            # 4. verify
            verification = _verify(model, processor, [examples[i] for i in calib_idx], [units[i] for i in calib_idx],
                                   learned, settings, adapter, checkpoint, ctx, say)

    # 5. decide
    return build_certificate(total.layers(), num_examples=total.num_examples, settings=settings,
                             model_info=_model_block(model, adapter, model_info, identity),
                             data_info=_data_block(data_info, identity, units, stats_idx, calib_idx, settings),
                             run_info=_run_block(run_info, model_info, settings, ctx), verification=verification,
                             units=units)


def _model_block(model, adapter, model_info, identity):
    out = dict(model_info or {})
    out.setdefault("model_type", adapter.model_type)
    out.setdefault("hidden_size", getattr(adapter.text_config(model.config), "hidden_size", None))
    out["weights"] = identity["model"]["weights"]
    return out


def _data_block(data_info, identity, units, stats_idx, calib_idx, settings):
    from skipit.empirical.units import UNIT_RULE

    def count(indices):
        return len({units[i] for i in indices})

    return dict(data_info or {}, sha256=identity["data"]["sha256"], num_examples=identity["data"]["num_examples"],
                num_units=count(range(len(units))), unit=UNIT_RULE,
                statistics_examples=len(stats_idx), calibration_examples=len(calib_idx),
                statistics_units=count(stats_idx), calibration_units=count(calib_idx),
                split={"calibration_fraction": settings.calibration_fraction, "seed": settings.split_seed,
                       "rule": "by image: the distinct images in a seeded random order, the first round((1 - f) U) "
                               "with all their questions for the statistics, the rest for calibration"})


def _run_block(run_info, model_info, settings, ctx):
    run = {"world_size": ctx.world_size, "versions": run_versions(), "revision": (model_info or {}).get("revision"),
           "batch_size": settings.batch_size}
    if settings.max_batch_tokens is not None:
        run["max_batch_tokens"] = int(settings.max_batch_tokens)
    run.update(run_info or {})
    return run


# --------------------------------------------------------------------------------------
# helpers of the steps
# --------------------------------------------------------------------------------------

def _answers(model, processor, examples, settings, adapter, context=None):
    """Answers of the model (under ``context``) on ``examples``, as :func:`skipit.empirical.predict.predict`
    reads them (the one-token argmax for letter-scored examples, the greedy generation of up to
    ``settings.max_new_tokens`` tokens for free-form ones), compared as ``skipit evaluate``
    compares them too (:func:`skipit.empirical.answers.comparable_answers`)."""
    from skipit.empirical.answers import comparable_answers
    from skipit.empirical.predict import predict

    preds, _, _ = predict(model, processor, examples, settings.batch_size, adapter=adapter, context=context,
                          max_new_tokens=settings.max_new_tokens, max_batch_tokens=settings.max_batch_tokens)
    return comparable_answers(preds, examples)


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


def _contribution_rows(model, processor, examples, adapter, positions):
    """``KL(full || layer l frozen)`` of the answer distribution: a float64 tensor
    ``(N, questions)`` for the batches ``positions`` (lists of indices into ``examples``),
    columns in the order of the flattened ``positions``, rows ``l = 1..N``."""
    from skipit.empirical.baselines import answer_kl_rows
    from skipit.empirical.candidates import candidate_context
    from skipit.empirical.data import build_inputs
    from skipit.empirical.loading import to_model_inputs

    batches = [to_model_inputs(build_inputs(processor, [examples[i] for i in idx], model=model), model)
               for idx in positions]
    contexts = [lambda l=l: candidate_context(model, {"mode": "freeze", "layers": [l]}, adapter)
                for l in range(1, adapter.num_layers(model) + 1)]
    return answer_kl_rows(model, batches, contexts)


def layer_contribution_rows(model: torch.nn.Module, processor: Any, examples: Sequence[Example], adapter: VLMAdapter,
                            batch_size: int, max_batch_tokens: int | None = None) -> np.ndarray:
    """ShortV's layer contribution per question: an array ``(N, len(examples))`` whose row
    ``l - 1``, column ``i`` is ``KL(full || layer l frozen)`` of the answer distribution of
    ``examples[i]``; :func:`layer_contributions` is the mean of a prefix of its columns
    (``benchmarks/study_verification.py`` caches it for the population)."""
    import numpy as np

    positions = batch_positions(processor, examples, model, batch_size, max_batch_tokens)
    rows = _contribution_rows(model, processor, examples, adapter, positions).numpy()
    out = np.empty_like(rows)
    out[:, [i for idx in positions for i in idx]] = rows
    return out


def layer_contributions(model: torch.nn.Module, processor: Any, examples: Sequence[Example], adapter: VLMAdapter,
                        batch_size: int, ctx: DistributedContext = SINGLE_PROCESS,
                        max_batch_tokens: int | None = None) -> dict[int, float]:
    """ShortV's layer contribution: ``{l: mean KL(full || layer l frozen)}`` of the answer
    distribution over ``examples``, for ``l = 1..N``. Under ``ctx`` each rank takes whole
    batches and the per-rank sums (mean x count) are added over ranks before dividing."""
    mine = shard(batch_positions(processor, examples, model, batch_size, max_batch_tokens), ctx)
    n = adapter.num_layers(model)
    kls = _contribution_rows(model, processor, examples, adapter, mine).mean(dim=1).tolist() if mine else [0.0] * n
    if ctx.is_distributed:
        count = sum(map(len, mine))
        parts = gather_objects((count, [k * count for k in kls]), ctx)
        total = sum(c for c, _ in parts)
        kls = [sum(p[1][l] for p in parts) / total for l in range(n)]
    return {l: float(k) for l, k in zip(range(1, n + 1), kls)}


def _sayer(show):
    import sys

    if not show:
        return lambda msg: None
    return lambda msg: print(f"skipit certify: {msg}", file=sys.stderr)
