"""``skipit skip``: run a model with late entry, early exit or freeze of the vision tokens.

Prints the accuracy and the forward time of the full model and of the skipped one on the
same examples, and the FLOPs model's predicted speed-up (:mod:`skipit.empirical.flops`,
from every example's own text and vision token counts); ``--json`` prints the same as one
JSON object. The modes come from the registry :mod:`skipit.empirical.modes`. torch is
imported only inside :func:`run`.
"""

from __future__ import annotations

import sys

from skipit.empirical.modes import SKIP_MODES as MODES


def add_parser(subparsers):
    from skipit.commands._common import model_options

    p = subparsers.add_parser(
        "skip", parents=[model_options(samples=200, batch_size=32)],
        help="run a model with late entry, early exit or freeze of the vision tokens",
        description="Accuracy and time of a VLM with the vision tokens entering late (skipping layers "
                    "1..L-1), exiting early (leaving layers L+1..N) or frozen in chosen layers (keeping "
                    "their state there; the text still attends to them), against the full model.")
    p.add_argument("--mode", required=True, choices=MODES)
    p.add_argument("--layer", type=int, default=None, metavar="L",
                   help="late-entry / early-exit: layer L (1..N)")
    p.add_argument("--layers", default=None, metavar="LIST",
                   help="freeze: the layers, e.g. 6,8,10 or 17-32 or 2-32:2 (1..N)")
    p.add_argument("--json", action="store_true", help="print the results as one JSON object")
    p.add_argument("--variant", default="embedding", choices=["embedding", "oracle"],
                   help="late entry only: vision tokens enter with their embedding (default) or with the "
                        "layer-(L-1) state of a full pass (oracle; costs a full pass)")
    p.add_argument("--repeats", type=int, default=3, metavar="R", help="timing repeats, median kept (default: 3)")
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
    from skipit.errors import SkipitError

    if args.repeats < 1:
        raise SkipitError(f"--repeats must be >= 1, got {args.repeats}")
    if args.variant != "embedding" and args.mode != "late-entry":
        raise SkipitError("--variant applies to --mode late-entry only")
    takes = get_mode(args.mode).takes
    if takes == "layers" and (args.layers is None or args.layer is not None):
        raise SkipitError(f"--mode {args.mode} takes --layers LIST (e.g. 6,8,10), not --layer; "
                          f"got --layer {args.layer} --layers {args.layers}")
    if takes == "layer" and (args.layer is None or args.layers is not None):
        raise SkipitError(f"--mode {args.mode} takes --layer L, not --layers; "
                          f"got --layer {args.layer} --layers {args.layers}")
    model, processor, info, examples, data_report = load_model_and_data(args, "skip", offload=offload)

    import torch

    from skipit.empirical.adapters import get_adapter
    from skipit.empirical.evaluate import predict, token_counts
    from skipit.empirical.flops import config_flops_fraction

    adapter = get_adapter(model)
    n = adapter.num_layers(model)
    if takes == "layers":
        from skipit.empirical.evaluate import parse_layer_grid

        try:
            layer = parse_layer_grid(args.layers, n)
        except ValueError as err:
            raise SkipitError(str(err).replace("`layers`", "--layers")) from None
        label = f"{args.mode} {_layer_list(layer)}"
    else:
        if not 1 <= args.layer <= n:
            raise SkipitError(f"--layer must be in [1, {n}] for this model, got {args.layer}")
        layer = args.layer
        label = f"{args.mode} L={layer}" + (" oracle" if args.variant == "oracle" else "")
    mode = get_mode("late-entry-oracle" if args.variant == "oracle" else args.mode)

    runs = {"full": [], "skipped": []}
    results = {}
    for _ in range(args.repeats):
        for name, ctx in (("full", None), ("skipped", lambda: mode.context(model, layer, adapter=adapter))):
            _, correct, seconds = predict(model, processor, examples, args.batch_size, adapter=adapter,
                                          context=ctx, max_new_tokens=data_report.max_new_tokens)
            runs[name].append(seconds)
            results[name] = sum(correct) / len(correct)

    counts = token_counts(model, processor, examples, args.batch_size, adapter)
    # the oracle variant adds a full pass per prefill: no speed-up to predict
    fraction = None if mode.flops is None else config_flops_fraction(model.config, mode.flops, layer, counts)
    t_full, t_skip = statistics.median(runs["full"]), statistics.median(runs["skipped"])
    text = [t for t, _ in counts]
    vision = [v for _, v in counts]
    if args.json:
        print(json.dumps({
            "model": info["name"], "model_type": info["model_type"], "num_layers": n, "mode": args.mode,
            "variant": args.variant, "layer" if takes == "layer" else "layers": layer,
            "examples": len(examples), "data": str(data_report.source), "metric": data_report.metric,
            "threads": torch.get_num_threads(),
            "repeats": args.repeats,
            "full": {"accuracy": results["full"], "forward_s": t_full},
            "skipped": {"accuracy": results["skipped"], "forward_s": t_skip, "speedup": t_full / t_skip,
                        "flops_fraction": fraction,
                        "predicted_speedup": None if fraction is None else 1.0 / fraction},
            "tokens": {"text_min": min(text), "text_max": max(text), "vision_min": min(vision),
                       "vision_max": max(vision), "mean": (sum(text) + sum(vision)) / len(counts)},
        }, indent=2))
        return 0
    print(f"skipit skip: {info['name']} ({info['model_type']}, {n} layers), {label}, "
          f"{len(examples)} examples of {data_report.source}, {torch.get_num_threads()} threads, "
          f"median of {args.repeats}")
    print(f"{'setting':<24} {'accuracy':>9} {'forward s':>10} {'speed-up':>9} {'FLOPs pred.':>11}")
    print(f"{'full':<24} {results['full']:>9.3f} {t_full:>10.3f} {1.0:>9.2f} {1.0:>11.2f}")
    pred = "-" if fraction is None else f"{1.0 / fraction:.2f}"
    print(f"{label:<24} {results['skipped']:>9.3f} {t_skip:>10.3f} {t_full / t_skip:>9.2f} {pred:>11}")
    print(f"(per example: {_span(vision)} vision + {_span(text)} text tokens, each example's own counts; "
          "FLOPs of the language model, LM head on every position)", file=sys.stderr)
    return 0


def _span(values):
    lo, hi = min(values), max(values)
    return str(lo) if lo == hi else f"{lo}-{hi}"


def _layer_list(layers):
    return "{" + ",".join(str(l) for l in layers) + "}"
