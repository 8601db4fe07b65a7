"""``skipit skip``: run a model with late entry, early exit or freeze of the vision tokens.

Prints the accuracy and the forward time of the full model and of the skipped one on the
same examples, and the FLOPs model's predicted speed-up (:mod:`skipit.empirical.flops`,
from every example's own text and vision token counts); ``--json`` prints the same as one
JSON object. The modes come from the registry :mod:`skipit.empirical.modes`. torch is
imported only inside :func:`run`.
"""

from __future__ import annotations

import sys

SHARED = ("batch_size", "max_batch_tokens")  # added by model_options


def add_parser(subparsers):
    from skipit.commands._common import model_options
    from skipit.empirical.settings import SkipSettings, add_setting_options

    p = subparsers.add_parser(
        "skip", parents=[model_options(samples=200, settings=SkipSettings)],
        help="run a model with late entry, early exit or freeze of the vision tokens",
        description="Accuracy and time of a VLM with the vision tokens entering late (skipping layers "
                    "1..L-1), exiting early (leaving layers L+1..N) or frozen in chosen layers (keeping "
                    "their state there; the text still attends to them), against the full model.")
    add_setting_options(p, SkipSettings, skip=SHARED)
    p.add_argument("--json", action="store_true", help="print the results as one JSON object")
    return p


def run(args):
    import tempfile

    from skipit.commands._common import offload_folder

    # skip writes no --out: the layers a --device-map sends to "disk" go to a folder removed after the run
    with tempfile.TemporaryDirectory(prefix="skipit-skip-") as scratch, offload_folder(scratch) as offload:
        return _run(args, offload)


def _run(args, offload):
    import json
    import statistics

    from skipit.commands._common import load_model_and_data
    from skipit.empirical.modes import get_mode
    from skipit.empirical.settings import SkipSettings, settings_from_args

    settings = settings_from_args(SkipSettings, args)
    takes = get_mode(settings.mode).takes
    settings.target(None)  # the mode got the layer argument it takes: checked before any work
    model, processor, info, examples, data_report = load_model_and_data(args, "skip", offload=offload)
    settings = settings.replace(max_new_tokens=data_report.max_new_tokens)

    import torch

    from skipit.empirical.adapters import get_adapter
    from skipit.empirical.predict import predict, token_counts
    from skipit.empirical.flops import config_flops_fraction

    adapter = get_adapter(model)
    n = adapter.num_layers(model)
    layer = settings.target(n)
    if takes == "layers":
        label = f"{settings.mode} {_layer_list(layer)}"
    else:
        label = f"{settings.mode} L={layer}" + (" oracle" if settings.variant == "oracle" else "")
    mode = get_mode("late-entry-oracle" if settings.variant == "oracle" else settings.mode)

    runs = {"full": [], "skipped": []}
    results, answers = {}, {}
    for _ in range(settings.repeats):
        for name, ctx in (("full", None), ("skipped", lambda: mode.context(model, layer, adapter=adapter))):
            preds, correct, seconds = predict(model, processor, examples, settings.batch_size, adapter=adapter,
                                              context=ctx, max_new_tokens=settings.max_new_tokens,
                                              max_batch_tokens=settings.max_batch_tokens)
            runs[name].append(seconds)
            results[name] = sum(correct) / len(correct)
            answers[name] = preds
    changed = changed_answers(answers["full"], answers["skipped"], examples)

    counts = token_counts(model, processor, examples, settings.batch_size, adapter)
    # the oracle variant adds a full pass per prefill: no speed-up to predict
    fraction = None if mode.flops is None else config_flops_fraction(model.config, mode.flops, layer, counts)
    t_full, t_skip = statistics.median(runs["full"]), statistics.median(runs["skipped"])
    text = [t for t, _ in counts]
    vision = [v for _, v in counts]
    if args.json:
        print(json.dumps({
            "model": info["name"], "model_type": info["model_type"], "num_layers": n, "mode": settings.mode,
            "variant": settings.variant, "layer" if takes == "layer" else "layers": layer,
            "examples": len(examples), "data": str(data_report.source), "metric": data_report.metric,
            "threads": torch.get_num_threads(),
            "repeats": settings.repeats,
            "full": {"accuracy": results["full"], "forward_s": t_full},
            "skipped": {"accuracy": results["skipped"], "forward_s": t_skip, "speedup": t_full / t_skip,
                        **changed, "flops_fraction": fraction,
                        "predicted_speedup": None if fraction is None else 1.0 / fraction},
            "tokens": {"text_min": min(text), "text_max": max(text), "vision_min": min(vision),
                       "vision_max": max(vision), "mean": (sum(text) + sum(vision)) / len(counts)},
        }, indent=2))
        return 0
    print(f"skipit skip: {info['name']} ({info['model_type']}, {n} layers), {label}, "
          f"{len(examples)} examples of {data_report.source}, {torch.get_num_threads()} threads, "
          f"median of {settings.repeats}")
    print(f"{'setting':<24} {'accuracy':>9} {'changed':>11} {'forward s':>10} {'speed-up':>9} {'FLOPs pred.':>11}")
    print(f"{'full':<24} {results['full']:>9.3f} {'-':>11} {t_full:>10.3f} {1.0:>9.2f} {1.0:>11.2f}")
    pred = "-" if fraction is None else f"{1.0 / fraction:.2f}"
    moved = f"{changed['changed']}/{len(examples)}"
    print(f"{label:<24} {results['skipped']:>9.3f} {moved:>11} {t_skip:>10.3f} {t_full / t_skip:>9.2f} {pred:>11}")
    lo, hi = changed["changed_ci95"]
    print(f"answers changed against the full model: {changed['changed']} of {len(examples)} "
          f"({changed['changed_rate']:.1%}; exact 95% interval {lo:.1%} to {hi:.1%}, Clopper-Pearson, the "
          f"{len(examples)} questions as independent draws)")
    print(f"(per example: {_span(vision)} vision + {_span(text)} text tokens, each example's own counts; "
          "FLOPs of the language model, LM head on every position)", file=sys.stderr)
    return 0


def changed_answers(full: list, skipped: list, examples: list) -> dict:
    """How many answers the skipped run changed against the full run (compared as the
    verification compares them, :func:`skipit.empirical.answers.comparable_answers`), their
    rate, and its exact two-sided 95% (Clopper-Pearson) interval, the questions taken as
    independent draws: ``{"changed", "changed_rate", "changed_ci95": [low, high]}``."""
    from skipit.empirical.answers import answers_changed, comparable_answers
    from skipit.theory import clopper_pearson_lower, clopper_pearson_upper

    k = sum(answers_changed(comparable_answers(full, examples), comparable_answers(skipped, examples)))
    n = len(examples)
    return {"changed": k, "changed_rate": k / n if n else 0.0,
            "changed_ci95": [float(clopper_pearson_lower(k, n, 0.025)), float(clopper_pearson_upper(k, n, 0.025))]}


def _span(values):
    lo, hi = min(values), max(values)
    return str(lo) if lo == hi else f"{lo}-{hi}"


def _layer_list(layers):
    return "{" + ",".join(str(l) for l in layers) + "}"
