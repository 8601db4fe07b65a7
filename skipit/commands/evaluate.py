"""``skipit evaluate``: accuracy of full vs skipped models per layer; validates a certificate.

Without ``--model``: the bundled demo model on its bundled test set. Writes
``evaluation.json``, ``evaluation.txt`` and ``evaluation.png`` into ``--out`` and prints
the table (see :mod:`skipit.empirical.evaluate`). torch is imported only inside :func:`run`.
"""

from __future__ import annotations

import json
import os
import sys

DEFAULT_DATA = "digits-test"
DEFAULT_OUT = "skipit-evaluate-output"
MODES = ("late-entry", "early-exit")
ALL_MODES = MODES + ("late-entry-oracle",)


def add_parser(subparsers):
    p = subparsers.add_parser(
        "evaluate", help="accuracy of full versus skipped models; validates a certificate",
        description="Accuracy of a VLM with late entry / early exit of vision tokens at every layer of a grid, "
                    "against the full model; per-layer statistics; Theorem 6 on real numbers; and, with "
                    "--certificate, precision and recall of the certificate's verdicts.")
    p.add_argument("--model", default=None, metavar="NAME|HUB_ID|PATH",
                   help="alias, hub id, or directory saved with save_pretrained (default: the demo model)")
    p.add_argument("--data", default=None, metavar="PATH|NAME",
                   help=f"JSONL file or bundled set (default: {DEFAULT_DATA})")
    p.add_argument("--modes", nargs="+", default=list(MODES), choices=ALL_MODES,
                   help="skipping modes (default: late-entry early-exit; late-entry-oracle: vision enters "
                        "with the full pass's layer-(L-1) state, an analysis reference)")
    p.add_argument("--layers", default="all", metavar="GRID",
                   help="layers L to try: all, 1,2,8, 2-12 or 2-12:2 (default: all)")
    p.add_argument("--certificate", default=None, metavar="PATH",
                   help="certificate.json from `skipit certify` to validate")
    p.add_argument("--tolerance", type=float, default=1.0, metavar="POINTS",
                   help="accuracy drop (in points) still counted as kept (default: 1)")
    p.add_argument("--out", default=DEFAULT_OUT, metavar="DIR", help=f"output directory (default: {DEFAULT_OUT})")
    p.add_argument("--samples", type=int, default=200, metavar="N",
                   help="use the first N examples (default: 200; 0 = all)")
    p.add_argument("--batch-size", type=int, default=32, metavar="B", help="examples per forward (default: 32)")
    p.add_argument("--theorem6-samples", type=int, default=4, metavar="K",
                   help="examples for Theorem 6's bound vs the measured error (default: 4; 0 = skip)")
    p.add_argument("--theorem6-iters", type=int, default=8, metavar="I",
                   help="power iterations per Lipschitz constant (default: 8)")
    p.add_argument("--baselines", action="store_true",
                   help="also FastV at matched FLOPs and visual token withdrawal by the KL rule")
    p.add_argument("--fastv-layer", type=int, default=2, metavar="K", help="FastV's pruning layer (default: 2)")
    p.add_argument("--vtw-kl", type=float, default=0.01, metavar="KL",
                   help="VTW's output-KL threshold (default: 0.01)")
    p.add_argument("--device", default="auto", help="cpu, cuda, ... (default: auto)")
    p.add_argument("--dtype", default="auto", choices=["auto", "float32", "float16", "bfloat16"])
    p.add_argument("--skip-bad", action="store_true", help="skip (and report) bad data lines")
    add_threads_argument(p)
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    return p


def add_threads_argument(p):
    p.add_argument("--threads", default="auto", metavar="N",
                   help="CPU threads for torch (default: auto = 1 for small models, as `skipit certify`)")


def _load(args):
    from skipit.empirical.data import load_examples
    from skipit.errors import SkipitError

    if args.samples < 0:
        raise SkipitError(f"--samples must be >= 0 (0 = all), got {args.samples}")
    if args.batch_size < 1:
        raise SkipitError(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.data is None and args.model is not None:
        raise SkipitError("--data is needed with --model (the bundled data set fits the demo model only)")
    examples, report = load_examples(args.data or DEFAULT_DATA, skip_bad=args.skip_bad,
                                     limit=args.samples or None)
    for line, why in report.skipped:
        print(f"skipit: skipped line {line} of {report.source}: {why}", file=sys.stderr)

    from skipit.empirical.loading import load_model_and_processor

    from skipit.commands._common import parse_threads as _parse_threads, set_threads as _set_threads

    threads = _parse_threads(getattr(args, "threads", "auto"))
    model, processor, info = load_model_and_processor(args.model, device=args.device, dtype=args.dtype)
    _set_threads(threads, model)
    return model, processor, info, examples, report


def run(args):
    from skipit.errors import SkipitError

    if not 0 <= args.tolerance <= 100:
        raise SkipitError(f"--tolerance must be in [0, 100] points, got {args.tolerance}")
    if args.theorem6_samples < 0 or args.theorem6_iters < 1:
        raise SkipitError("--theorem6-samples must be >= 0 and --theorem6-iters >= 1")
    model, processor, info, examples, data_report = _load(args)

    from skipit.empirical.adapters import get_adapter
    from skipit.empirical.evaluate import (
        evaluate, format_table, load_certificate, parse_layer_grid, plot_report,
    )

    adapter = get_adapter(model)
    n = adapter.num_layers(model)
    try:
        layers = parse_layer_grid(args.layers, n)
    except ValueError as err:
        raise SkipitError(str(err).replace("`layers`", "--layers")) from None
    if args.baselines and not 1 <= args.fastv_layer <= n:
        raise SkipitError(f"--fastv-layer must be in [1, {n}], got {args.fastv_layer}")
    if args.vtw_kl < 0:
        raise SkipitError(f"--vtw-kl must be >= 0, got {args.vtw_kl}")
    certificate = load_certificate(args.certificate, n) if args.certificate else None
    say = (lambda msg: None) if args.quiet else (lambda msg: print(f"skipit evaluate: {msg}", file=sys.stderr))
    report = evaluate(model, processor, examples, modes=args.modes, layers=layers, certificate=certificate,
                      tolerance=args.tolerance / 100.0, batch_size=args.batch_size,
                      theorem6_examples=args.theorem6_samples, theorem6_iters=args.theorem6_iters,
                      adapter=adapter, progress=say, baselines=args.baselines,
                      fastv_layer=args.fastv_layer, vtw_kl_threshold=args.vtw_kl)
    report["model"] = info
    report["data"] = {"source": data_report.source, "num_examples": len(examples), "sha256": data_report.sha256}
    if args.certificate:
        report["certificate"] = os.path.abspath(args.certificate)
    os.makedirs(args.out, exist_ok=True)
    text = format_table(report)
    paths = {name: os.path.join(args.out, name) for name in ("evaluation.json", "evaluation.txt", "evaluation.png")}
    tmp = paths["evaluation.json"] + ".tmp"
    with open(tmp, "w") as fh:
        json.dump(report, fh, indent=2, allow_nan=True)
    os.replace(tmp, paths["evaluation.json"])
    with open(paths["evaluation.txt"], "w") as fh:
        fh.write(text + "\n")
    plot_report(report, paths["evaluation.png"])
    print(f"skipit evaluate: {info['name']} ({info['model_type']}, {n} layers) on {data_report.source}")
    print(text)
    print(f"\nwrote {', '.join(paths.values())}")
    return 0
