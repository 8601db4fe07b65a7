"""``skipit skip``: run a model with late entry or early exit of vision tokens.

Prints the accuracy and the forward time of the full model and of the skipped one on the
same examples, and the FLOPs model's predicted speed-up (:mod:`skipit.empirical.flops`).
torch is imported only inside :func:`run`.
"""

from __future__ import annotations

import sys

MODES = ("late-entry", "early-exit")


def add_parser(subparsers):
    from skipit.commands._common import model_options

    p = subparsers.add_parser(
        "skip", parents=[model_options(samples=200, batch_size=32)],
        help="run a model with late entry or early exit of vision tokens",
        description="Accuracy and time of a VLM with the vision tokens entering late (skipping layers "
                    "1..L-1) or exiting early (leaving layers L+1..N), against the full model.")
    p.add_argument("--mode", required=True, choices=MODES)
    p.add_argument("--layer", required=True, type=int, metavar="L", help="layer L (1..N)")
    p.add_argument("--variant", default="embedding", choices=["embedding", "oracle"],
                   help="late entry only: vision tokens enter with their embedding (default) or with the "
                        "layer-(L-1) state of a full pass (oracle; costs a full pass)")
    p.add_argument("--repeats", type=int, default=3, metavar="R", help="timing repeats, median kept (default: 3)")
    return p


def run(args):
    import statistics

    from skipit.commands._common import load_model_and_data
    from skipit.errors import SkipitError

    if args.repeats < 1:
        raise SkipitError(f"--repeats must be >= 1, got {args.repeats}")
    if args.variant != "embedding" and args.mode != "late-entry":
        raise SkipitError("--variant applies to --mode late-entry only")
    model, processor, info, examples, data_report = load_model_and_data(args, "skip")

    import torch

    from skipit.empirical.adapters import get_adapter
    from skipit.empirical.data import build_inputs
    from skipit.empirical.evaluate import predict
    from skipit.empirical.flops import DecoderShape, predicted_speedup, prefill_flops, tokens_per_layer

    adapter = get_adapter(model)
    n = adapter.num_layers(model)
    if not 1 <= args.layer <= n:
        raise SkipitError(f"--layer must be in [1, {n}] for this model, got {args.layer}")
    from skipit.empirical.skipping import early_exit, late_entry

    def context():
        if args.mode == "late-entry":
            return late_entry(model, layer=args.layer, adapter=adapter, variant=args.variant)
        return early_exit(model, layer=args.layer, adapter=adapter)

    runs = {"full": [], args.mode: []}
    results = {}
    for _ in range(args.repeats):
        for name, ctx in (("full", None), (args.mode, context)):
            _, correct, seconds = predict(model, processor, examples, args.batch_size, adapter=adapter,
                                          context=ctx)
            runs[name].append(seconds)
            results[name] = sum(correct) / len(correct)

    shape = DecoderShape.from_config(model.config)
    inputs = build_inputs(processor, examples[:1], model)
    vision = int(adapter.vision_mask(inputs["input_ids"], model.config).sum())
    text = int(inputs["input_ids"].shape[1]) - vision
    full_flops = prefill_flops(shape, tokens_per_layer(n, text, vision))
    skip_flops = prefill_flops(shape, tokens_per_layer(n, text, vision, args.mode, args.layer))
    t_full, t_skip = statistics.median(runs["full"]), statistics.median(runs[args.mode])
    print(f"skipit skip: {info['name']} ({info['model_type']}, {n} layers), {args.mode} at layer {args.layer}, "
          f"{len(examples)} examples of {data_report.source}, {torch.get_num_threads()} threads, "
          f"median of {args.repeats}")
    print(f"{'setting':<24} {'accuracy':>9} {'forward s':>10} {'speed-up':>9} {'FLOPs pred.':>11}")
    print(f"{'full':<24} {results['full']:>9.3f} {t_full:>10.3f} {1.0:>9.2f} {1.0:>11.2f}")
    # the oracle variant adds a full pass per prefill: no speed-up to predict
    pred = "-" if args.variant == "oracle" else f"{predicted_speedup(full_flops, skip_flops):.2f}"
    label = args.mode + " L=" + str(args.layer) + (" oracle" if args.variant == "oracle" else "")
    print(f"{label:<24} {results[args.mode]:>9.3f} {t_skip:>10.3f} "
          f"{t_full / t_skip:>9.2f} {pred:>11}")
    print(f"(per example: {vision} vision + {text} text tokens; FLOPs of the language model, "
          "LM head on every position)", file=sys.stderr)
    return 0
