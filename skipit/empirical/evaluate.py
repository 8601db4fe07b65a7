"""Accuracy of full vs skipped models, the paper's Tables 1-2, and validation of a certificate.

Scoring lives here; the text table and the figure are in :mod:`skipit.empirical.evaluate_report`.

* Scoring (paper, Sec. 4.2): a letter-scored question (the default for JSONL and bundled
  sets, and every multiple-choice row) is answered by one token, the argmax of the
  next-token logits at the answer position (the last non-padding prompt position); it is
  correct when its decoded text equals the answer after normalisation (lower case, letters
  and digits only). A free-form question (metric ``exact``, ``vqa`` or ``anls``) is answered
  by greedy generation and scored in [0, 1] by its metric (:mod:`skipit.empirical.metrics`). Each row also records the fraction of answers that
  differ from the full model's (the quantity ``skipit certify`` verifies).
* Table (like the paper's Tables 1-2): per layer l, the vision tokens' mean cosine distance
  D_l and proximal probability p_l(0.05), the visual attention ratio (eq. 3, summed over
  heads), and the accuracy with late entry at l, early exit at l and freezing layer l alone.
* Validation of a certificate (``skipit certify``), both kinds of verdicts:

  - **paper's verdicts** (statistics alone): late entry at L is certified iff
    ``L <= max_entry_layer``, early exit at L iff ``L >= min_exit_layer``, freezing layer L
    alone iff L is in ``freeze.certified_layers``; the truth is "accuracy within
    ``tolerance`` of the full model's";
  - **verified configurations** (Learn-then-Test): every candidate of the certificate's
    three chains (:func:`skipit.empirical.certificate.candidate_chains`), certified or
    not, with the truth "at most the certificate's ``tolerance`` of the answers change"
    on these (held-out) examples.

  Precision = P(truly safe | certified), recall = P(certified | truly safe), over the
  non-trivial settings (late entry L = 1, early exit L = N and freezing only layer N change
  nothing and would count as free hits).
* Theorem 6 (``skipit.empirical.lipschitz``) on a few examples: its bound beside the
  measured output change for each late-entry layer.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import torch

from skipit.empirical.certificate import candidate_chains, load_certificate
from skipit.empirical.distributed import batch_positions
from skipit.empirical.loading import to_model_inputs
from skipit.empirical.metrics import normalise_answer
from skipit.empirical.modes import EVALUATE_MODES, SKIP_MODES, VERIFY_MODES
from skipit.empirical.predict import mode_layer, predict, token_counts
from skipit.empirical.settings import EvaluateSettings, SettingError, parse_layer_grid
from skipit.empirical.skipping import resolve_adapter
from skipit.empirical.stats import threshold_key
from skipit.empirical.verification import config_key

if TYPE_CHECKING:
    from skipit.empirical.adapters.base import VLMAdapter
    from skipit.empirical.data import Example
    from skipit.empirical.distributed import DistributedContext
    from skipit.empirical.tasks import Task

__all__ = [
    "MODES", "ALL_MODES", "DEFAULT_TOLERANCE", "parse_layer_grid", "normalise_answer", "predict", "accuracy",
    "layer_statistics", "certificate_verdicts", "validate", "evaluate", "load_certificate", "token_counts",
]

MODES = SKIP_MODES
ALL_MODES = EVALUATE_MODES
"""``late-entry-oracle``: late entry with the full pass's layer-(L-1) vision states (an
analysis reference, not a speed-up: separates the text's missing vision from the vision
tokens' missing processing); it is never validated against a certificate."""
DEFAULT_TOLERANCE = EvaluateSettings.tolerance  # the one default: EvaluateSettings
SCHEMA = "skipit.evaluation/2"


def accuracy(model: torch.nn.Module, processor: Any, examples: Sequence[Example], batch_size: int = 16,
             mode: str | None = None, layer: int | Iterable[int] | None = None,
             adapter: VLMAdapter | None = None) -> float:
    """Fraction of ``examples`` answered correctly (see ``predict``)."""
    _, correct, _ = predict(model, processor, examples, batch_size, mode, layer, adapter)
    return sum(correct) / len(correct) if correct else math.nan


def _threshold_value(mapping, t=0.05):
    return (mapping or {}).get(threshold_key(t))


def _layer_row(entry):
    vis, txt = entry.get("vision", {}), entry.get("text", {})
    return {
        "layer": int(entry["layer"]),
        "D_vision": vis.get("mean_cosine_distance"),
        "p005_vision": _threshold_value(vis.get("proximal_probability")),
        "D_text": txt.get("mean_cosine_distance"),
        "p005_text": _threshold_value(txt.get("proximal_probability")),
        "visual_attention_ratio": entry.get("visual_attention_ratio"),
    }


@torch.no_grad()
def layer_statistics(model: torch.nn.Module, processor: Any, examples: Sequence[Example], batch_size: int = 16,
                     adapter: VLMAdapter | None = None, ctx: DistributedContext | None = None,
                     max_batch_tokens: int | None = None) -> list[dict[str, Any]]:
    """Per-layer D_l, p_l(0.05) (vision and text) and the visual attention ratio, measured
    by ``skipit.empirical.capture_statistics`` over ``examples`` (under torchrun: each rank
    its batches, the statistics merged exactly)."""
    from skipit.empirical.capture import capture_statistics
    from skipit.empirical.data import build_inputs
    from skipit.empirical.distributed import SINGLE_PROCESS, merge_statistics, shard

    ctx = SINGLE_PROCESS if ctx is None else ctx
    with capture_statistics(model, adapter=adapter, thresholds=(0.05,), cka=False, attention=True) as cap:
        for positions in shard(batch_positions(processor, examples, model, batch_size, max_batch_tokens), ctx):
            inputs = to_model_inputs(build_inputs(processor, [examples[i] for i in positions], model), model)
            model(**inputs, logits_to_keep=1)
    return [_layer_row(e) for e in merge_statistics(cap.statistics, ctx).layers()]


def certificate_verdicts(certificate: Mapping[str, Any], mode: str, layers: Iterable[int]) -> dict[int, bool]:
    """``{L: True/False}``: do the paper's verdicts of the certificate call ``mode`` at L safe?

    Late entry at L iff ``L <= late_entry.max_entry_layer``; early exit at L iff
    ``L >= early_exit.min_exit_layer``; freezing layer L alone iff L is in
    ``freeze.certified_layers`` (``skipit certify``'s decision rule).
    """
    if mode == "late-entry":
        limit = certificate["late_entry"]["max_entry_layer"]
        return {L: L <= limit for L in layers}
    if mode == "early-exit":
        limit = certificate["early_exit"]["min_exit_layer"]
        return {L: L >= limit for L in layers}
    if mode == "freeze":
        frozen = set(certificate["freeze"]["certified_layers"])
        return {L: L in frozen for L in layers}
    raise ValueError(f"`mode` must be one of {', '.join(MODES)}, got {mode!r}")


def _trivial(row, num_layers):
    """Late entry at 1, early exit at N and freezing only layer N change nothing."""
    mode, layer = row["mode"], row.get("layer")
    if mode == "freeze":
        layer = row.get("layers", [layer])
        return list(layer) == [num_layers]
    return (mode == "late-entry" and layer == 1) or (mode == "early-exit" and layer == num_layers)


def validate(rows: Iterable[Mapping[str, Any]], num_layers: int, truth: str = "within_tolerance") -> dict[str, Any]:
    """Precision and recall of certified verdicts against a measured truth.

    ``rows``: dicts with ``mode``, ``layer`` (or ``layers`` for freeze sets), ``certified``
    (bool, or None: no verdict, left out) and the boolean column ``truth``. Trivial settings
    (late entry at 1, early exit at N, freezing only layer N) are left out. Returns
    ``{"tp", "fp", "fn", "tn", "precision", "recall", "settings"}``; precision is None when
    nothing is certified, recall None when no setting is truly safe.
    """
    counts = {"tp": 0, "fp": 0, "fn": 0, "tn": 0}
    used = 0
    for r in rows:
        if r["certified"] is None or _trivial(r, num_layers):
            continue
        used += 1
        key = ("t" if r["certified"] == r[truth] else "f") + ("p" if r["certified"] else "n")
        counts[key] += 1
    tp, fp, fn = counts["tp"], counts["fp"], counts["fn"]
    return {**counts, "settings": used, "truth": truth,
            "precision": tp / (tp + fp) if tp + fp else None,
            "recall": tp / (tp + fn) if tp + fn else None}


def _changed(preds, reference, examples):
    """The fraction of ``examples`` whose answer differs from ``reference``'s, compared as certify's
    verification compares them (:func:`skipit.empirical.answers.comparable_answers`)."""
    from skipit.empirical.answers import answers_changed, comparable_answers

    changed = answers_changed(comparable_answers(reference, examples), comparable_answers(preds, examples))
    return sum(changed) / len(changed)


def _benchmark_scorer(task, examples):
    """``(score, header)`` for the preset ``task`` (a name, a :class:`~skipit.empirical.tasks.Task` or
    None): ``score(correct)`` is :func:`skipit.empirical.tasks.benchmark_score` of one setting's
    per-example scores on ``examples`` (None without a preset, or when ``examples`` cannot give
    it); ``header`` the report's ``benchmark`` entry (the preset, and why no score when it has none:
    MME's sums need both questions of every image, and a row dropped as bad may leave one). Checked
    before any model work."""
    from skipit.empirical.tasks import Task, benchmark_score, get_task

    if task is None or task == "":
        return (lambda correct: None), None
    task = task if isinstance(task, Task) else get_task(task)
    header = {"task": task.name, "title": task.title}
    try:
        benchmark_score(task, examples, [0.0] * len(examples))
    except (ValueError, KeyError) as err:
        reason = f"an example has no {err} in its meta" if isinstance(err, KeyError) else str(err)
        return (lambda correct: None), dict(header, unavailable=reason)
    return (lambda correct: benchmark_score(task, examples, correct)), header


def _verified_rows(model, processor, examples, certificate, full_preds, batch_size, adapter, say, done, score,
                   **run):
    """Every candidate the certificate's verification measured (its learn step's candidates; a
    ``/2`` certificate: its three chains), run on ``examples``: its measured answer-change rate
    against the full model, and whether the certificate verified it. ``done``:
    ``{config_key: (predictions, correct)}`` of settings already run (the layer grid's rows),
    which are not run again. ``score``: the benchmark's own score of a setting (:func:`_benchmark_scorer`)."""
    from skipit.empirical.candidates import candidate_context

    ver = certificate["verification"]
    tau = ver["tolerance"]
    verified = {config_key(c): bool(c["certified"]) for c in ver["configs"]}
    if ver.get("learned") is not None:
        candidates = [{k: c[k] for k in ("mode", "layer", "layers", "keep_ratio") if k in c} for c in ver["learned"]]
    else:
        order = (ver.get("freeze_order") or {}).get("layers")  # the freeze chain as the certificate ordered it
        candidates = [c for chain in candidate_chains(certificate["layers"], order).values() for c in chain]
    rows = []
    for config in candidates:
        key = config_key(config)
        if key in done:
            preds, correct = done[key]
        else:
            say(f"verified candidate {key}")
            preds, correct, _ = predict(model, processor, examples, batch_size, adapter=adapter,
                                        context=lambda config=config: candidate_context(model, config, adapter), **run)
        rate = _changed(preds, full_preds, examples)
        rows.append(dict(config, changed_rate=rate, accuracy=sum(correct) / len(correct),
                         certified=verified.get(key, False), within_change_tolerance=rate <= tau))
        _add_benchmark_score(rows[-1], score(correct))
    return rows


def _add_benchmark_score(entry, numbers):
    if numbers is not None:
        entry["benchmark_score"] = numbers


def evaluate(model: torch.nn.Module, processor: Any, examples: Sequence[Example],
             settings: EvaluateSettings | None = None, *, certificate: Mapping[str, Any] | None = None,
             statistics: bool = True, adapter: VLMAdapter | None = None,
             progress: Callable[[str], object] | None = None, ctx: DistributedContext | None = None,
             task: str | Task | None = None, **changes: Any) -> dict[str, Any]:
    """Full vs skipped accuracy for every layer of ``settings.layers`` in each of ``settings.modes``,
    the per-layer statistics, Theorem 6 on ``settings.theorem6_examples`` examples, and the
    validation of ``certificate`` (a dict from ``load_certificate``): precision and recall of the
    paper's verdicts (truth: accuracy within ``settings.tolerance``) and of the verified
    configurations (truth: answer-change rate within the certificate's tolerance). With
    ``settings.baselines``: FastV at ``fastv_layer`` with the keep ratio matched to each
    skipping setting's prefill FLOPs, and VTW at the layer of the output-KL rule (``vtw_kl``).
    Returns the report.

    ``task``: the benchmark preset ``examples`` were loaded with (:mod:`skipit.empirical.tasks`;
    None: none). With one, the report's ``benchmark`` names it, and the full model, every row,
    verified row and baseline carry ``benchmark_score``: the preset's own headline numbers
    (:func:`skipit.empirical.tasks.benchmark_score`: accuracy and percent; MME adds its
    perception, cognition and total sums), from that setting's per-example scores on the same
    examples. When the examples cannot give them (MME's sums need both questions of each image),
    ``benchmark["unavailable"]`` says why and no setting has them.

    ``settings``: an :class:`~skipit.empirical.settings.EvaluateSettings` (default: its
    defaults); keyword ``changes`` replace its fields (``evaluate(..., layers=[2, 3],
    batch_size=4)``) and are checked as the settings check them.

    Under torchrun (``ctx``): every prediction and the statistics are split by whole batches
    over the ranks and gathered (:func:`predict`), so every rank returns the report of one
    process; Theorem 6 and VTW's layer choice run on rank 0 and are shared."""
    from skipit.empirical.distributed import SINGLE_PROCESS, run_on_main

    settings = (EvaluateSettings() if settings is None else settings).replace(**changes)
    ctx = SINGLE_PROCESS if ctx is None else ctx
    batch_size, tolerance, modes = settings.batch_size, settings.tolerance, settings.modes
    theorem6_examples = settings.theorem6_examples
    run: dict[str, Any] = {"ctx": ctx, "max_batch_tokens": settings.max_batch_tokens}
    answering = dict(run, max_new_tokens=settings.max_new_tokens)
    ad = resolve_adapter(model, adapter)
    n = ad.num_layers(model)
    layers = settings.layer_list(n)
    say = progress or (lambda msg: None)
    if not examples:
        raise SettingError("{examples} must not be empty")
    score, benchmark = _benchmark_scorer(task, examples)

    say(f"full model on {len(examples)} examples")
    full_preds, full_correct, full_seconds = predict(model, processor, examples, batch_size, adapter=ad,
                                                     **answering)
    full_acc = sum(full_correct) / len(full_correct)
    full = {"accuracy": full_acc, "seconds": full_seconds}
    _add_benchmark_score(full, score(full_correct))
    rows = []
    done = {}  # config_key -> (predictions, correct) of the skipping settings run, reused by the verified rows
    for mode in modes:
        verdicts = certificate_verdicts(certificate, mode, layers) if certificate and mode in MODES else {}
        for L in layers:
            say(f"{mode} at layer {L}")
            preds, correct, seconds = predict(model, processor, examples, batch_size, mode, L, ad, **answering)
            if mode in MODES:
                done[config_key({"mode": mode, "layer": L, "layers": [L]})] = (preds, correct)
            acc = sum(correct) / len(correct)
            rows.append({
                "mode": mode, "layer": L, "accuracy": acc, "change": acc - full_acc,
                "within_tolerance": acc >= full_acc - tolerance - 1e-12,
                "changed_rate": _changed(preds, full_preds, examples),
                "certified": verdicts.get(L), "seconds": seconds,
            })
            _add_benchmark_score(rows[-1], score(correct))

    report: dict[str, Any] = {
        "schema": SCHEMA, "num_layers": n, "num_examples": len(examples),
        "settings": {"modes": list(modes), "layers": layers, "tolerance": tolerance,
                     "batch_size": batch_size, "theorem6_examples": theorem6_examples},
        "full": full,
        "rows": rows,
    }
    if benchmark is not None:
        report["benchmark"] = benchmark
    if certificate is not None:
        report["layer_statistics"] = [_layer_row(e) for e in certificate["layers"]]
        report["layer_statistics_source"] = "certificate"
        paper = {mode: validate([r for r in rows if r["mode"] == mode], n) for mode in modes if mode in MODES}
        paper["all"] = validate([r for r in rows if r["mode"] in MODES], n)
        report["validation"] = {"paper": paper}
        if certificate.get("verification"):
            verified_rows = _verified_rows(model, processor, examples, certificate, full_preds, batch_size, ad, say,
                                           done, score, **answering)
            report["verified_rows"] = verified_rows
            truth = "within_change_tolerance"
            ver: dict[str, Any] = {mode: validate([r for r in verified_rows if r["mode"] == mode], n, truth)
                   for mode in VERIFY_MODES}
            ver["all"] = validate(verified_rows, n, truth)
            ver["violations"] = sum(1 for r in verified_rows if r["certified"] and not r[truth])
            report["validation"]["verified"] = ver
    elif statistics:
        say("per-layer statistics")
        report["layer_statistics"] = layer_statistics(model, processor, examples, batch_size, ad, **run)
        report["layer_statistics_source"] = "measured"
    if settings.baselines:
        say("baselines at matched FLOPs")
        report["baselines"] = _baselines(model, processor, examples, rows, full_acc, tolerance, batch_size, ad,
                                         settings.fastv_layer, settings.vtw_kl, score, **answering)
    if theorem6_examples and "late-entry" in modes:
        report["theorem6"] = run_on_main(lambda: _theorem6(model, processor, examples[:theorem6_examples], layers,
                                                           ad, settings.theorem6_iters, say), ctx)
    return report


def _matched_keep_ratio(config, fastv_layer, counts, target):
    """FastV's keep ratio whose predicted FLOPs fraction (over every example's counts) is the
    largest not above ``target`` (bisection; the fraction increases with the ratio)."""
    from skipit.empirical.flops import config_flops_fraction

    lo, hi = 0.0, 1.0
    if config_flops_fraction(config, "fastv", fastv_layer, counts, keep_ratio=0.0) > target:
        return 0.0
    for _ in range(40):
        mid = (lo + hi) / 2
        if config_flops_fraction(config, "fastv", fastv_layer, counts, keep_ratio=mid) <= target:
            lo = mid
        else:
            hi = mid
    return lo


def _baselines(model, processor, examples, rows, full_acc, tolerance, batch_size, adapter, fastv_layer,
               kl_threshold, score, ctx=None, max_batch_tokens=None, max_new_tokens=None):
    """FastV at matched prefill FLOPs for every skipping row, and VTW by the KL rule; ``score``:
    the benchmark's own score of a setting (:func:`_benchmark_scorer`).

    FLOPs fractions sum over every example's own text and vision token counts."""
    from skipit.empirical.baselines import choose_vtw_layer, fastv_prune
    from skipit.empirical.data import build_inputs
    from skipit.empirical.distributed import SINGLE_PROCESS, run_on_main
    from skipit.empirical.flops import config_flops_fraction

    ctx = SINGLE_PROCESS if ctx is None else ctx
    run = {"ctx": ctx, "max_batch_tokens": max_batch_tokens, "max_new_tokens": max_new_tokens}

    counts = token_counts(model, processor, examples, batch_size, adapter)
    out = {"fastv_layer": fastv_layer, "text_tokens": sum(c[0] for c in counts) / len(counts),
           "vision_tokens": sum(c[1] for c in counts) / len(counts), "fastv": [], "vtw": None}
    done = {}
    for r in rows:
        if r["mode"] not in MODES:
            continue
        fraction = config_flops_fraction(model.config, r["mode"], mode_layer(r["mode"], r["layer"]), counts)
        r["flops_fraction"] = fraction
        if fraction >= 1.0:
            continue
        ratio = _matched_keep_ratio(model.config, fastv_layer, counts, fraction)
        if ratio not in done:
            _, correct, _ = predict(model, processor, examples, batch_size, adapter=adapter,
                                    context=lambda ratio=ratio: fastv_prune(model, fastv_layer, ratio, adapter), **run)
            done[ratio] = (sum(correct) / len(correct), score(correct))
        out["fastv"].append({"matched_mode": r["mode"], "matched_layer": r["layer"], "keep_ratio": ratio,
                             "flops_fraction": config_flops_fraction(model.config, "fastv", fastv_layer, counts,
                                                                     keep_ratio=ratio),
                             "accuracy": done[ratio][0], "skipping_accuracy": r["accuracy"]})
        _add_benchmark_score(out["fastv"][-1], done[ratio][1])
    def vtw_layer():  # on rank 0 alone: every rank must exit at the same layer
        batches = []
        for positions in batch_positions(processor, examples, model, batch_size, max_batch_tokens):
            batches.append(to_model_inputs(build_inputs(processor, [examples[i] for i in positions], model), model))
        return choose_vtw_layer(model, batches, kl_threshold, adapter)

    layer, kls = run_on_main(vtw_layer, ctx)
    _, correct, _ = predict(model, processor, examples, batch_size, "early-exit", layer, adapter, **run)
    acc = sum(correct) / len(correct)
    out["vtw"] = {"layer": layer, "kl_threshold": kl_threshold, "kl_per_layer": kls, "accuracy": acc,
                  "within_tolerance": acc >= full_acc - tolerance - 1e-12,
                  "flops_fraction": config_flops_fraction(model.config, "vtw", layer, counts)}
    _add_benchmark_score(out["vtw"], score(correct))
    return out


def _theorem6(model, processor, examples, layers, adapter, iters, say):
    from skipit.empirical.data import build_inputs
    from skipit.empirical.lipschitz import theorem6_measurements, theorem6_table

    grid = [L for L in layers if L >= 2]
    if not grid:
        return []
    per_example = []
    for i, example in enumerate(examples):
        say(f"Theorem 6 on example {i + 1}/{len(examples)}")
        inputs = to_model_inputs(build_inputs(processor, [example], model), model)
        per_example.append(theorem6_measurements(model, inputs, grid, adapter, iters=iters))
    return theorem6_table(per_example)


