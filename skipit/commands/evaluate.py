"""``skipit evaluate``: accuracy of full vs skipped models per layer; validates a certificate.

Without ``--model``: the bundled demo model on its bundled test set. Writes
``evaluation.json``, ``evaluation.txt`` and ``evaluation.png`` into ``--out`` and prints
the table (see :mod:`skipit.empirical.evaluate`). torch is imported only inside :func:`run`.
"""

from __future__ import annotations

import json
import os
import sys

DEFAULT_OUT = "skipit-evaluate-output"


def add_parser(subparsers):
    from skipit.commands._common import model_options
    from skipit.empirical.modes import EVALUATE_MODES as all_modes
    from skipit.empirical.modes import SKIP_MODES as skip_modes
    p = subparsers.add_parser(
        "evaluate", parents=[model_options(samples=200, batch_size=32)],
        help="accuracy of full versus skipped models; precision and recall of a certificate",
        description="Accuracy of a VLM with late entry / early exit / freezing of vision tokens at every layer "
                    "of a grid, against the full model; per-layer statistics; Theorem 6 on real numbers; and, "
                    "with --certificate, precision and recall of the certificate's paper verdicts and of its "
                    "verified configurations, on these (held-out) examples.")
    p.add_argument("--modes", nargs="+", default=list(skip_modes), choices=all_modes,
                   help=f"skipping modes (default: {' '.join(skip_modes)}; freeze at L freezes layer L alone; "
                        "late-entry-oracle: vision enters with the full pass's layer-(L-1) state, an analysis "
                        "reference)")
    p.add_argument("--layers", default="all", metavar="GRID",
                   help="layers L to try: all, 1,2,8, 2-12 or 2-12:2 (default: all)")
    p.add_argument("--certificate", default=None, metavar="PATH",
                   help="certificate.json from `skipit certify` to validate (refused if made for another model)")
    p.add_argument("--tolerance", type=float, default=1.0, metavar="POINTS",
                   help="accuracy drop (in points) still counted as kept (default: 1)")
    p.add_argument("--out", default=DEFAULT_OUT, metavar="DIR", help=f"output directory (default: {DEFAULT_OUT})")
    p.add_argument("--theorem6-samples", type=int, default=4, metavar="K",
                   help="examples for Theorem 6's bound vs the measured error (default: 4; 0 = skip)")
    p.add_argument("--theorem6-iters", type=int, default=8, metavar="I",
                   help="power iterations per Lipschitz constant (default: 8)")
    p.add_argument("--baselines", action="store_true",
                   help="also FastV at matched FLOPs and visual token withdrawal by the KL rule")
    p.add_argument("--fastv-layer", type=int, default=2, metavar="K", help="FastV's pruning layer (default: 2)")
    p.add_argument("--vtw-kl", type=float, default=0.01, metavar="KL",
                   help="VTW's output-KL threshold (default: 0.01)")
    p.add_argument("--max-batch-tokens", type=int, default=None, metavar="N",
                   help="at most N padded prompt tokens (batch size x longest prompt) per batch; a longer "
                        "example runs alone (default: no cap)")
    return p


def run(args):
    import contextlib

    from skipit.commands._common import load_model_and_data, offload_folder, placement_from_args
    from skipit.empirical.distributed import context_from_environment, distributed, run_on_main
    from skipit.errors import SkipitError

    if not 0 <= args.tolerance <= 100:
        raise SkipitError(f"--tolerance must be in [0, 100] points, got {args.tolerance}")
    if args.theorem6_samples < 0 or args.theorem6_iters < 1:
        raise SkipitError("--theorem6-samples must be >= 0 and --theorem6-iters >= 1")
    if args.vtw_kl < 0:
        raise SkipitError(f"--vtw-kl must be >= 0, got {args.vtw_kl}")
    if args.max_batch_tokens is not None and args.max_batch_tokens < 1:
        raise SkipitError(f"--max-batch-tokens must be >= 1, got {args.max_batch_tokens}")
    placement_from_args(args, context_from_environment())  # --device, --device-map, --max-memory: before any work
    from skipit.empirical.certificate import load_certificate

    certificate = load_certificate(args.certificate) if args.certificate else None

    from skipit.empirical.files import atomic_write_text, output_directory

    # Under torchrun every rank runs this; rank 0 alone locks --out and writes the results.
    with distributed(args.device) as ctx, contextlib.ExitStack() as stack:
        out_dir = run_on_main(lambda: stack.enter_context(
            output_directory(args.out, what="--out", command="skipit evaluate")), ctx)
        offload = stack.enter_context(offload_folder(out_dir, ctx))
        model, processor, info, examples, data_report = load_model_and_data(args, "evaluate", ctx, offload)

        from skipit.empirical.adapters import get_adapter
        from skipit.empirical.certificate import check_certificate_model
        from skipit.empirical.evaluate import evaluate, parse_layer_grid
        from skipit.empirical.evaluate_report import format_table, plot_report
        from skipit.empirical.weights import weights_fingerprint

        adapter = get_adapter(model)
        n = adapter.num_layers(model)
        if certificate is not None:
            check_certificate_model(certificate, {"model_type": adapter.model_type, "num_layers": n,
                                                  "weights": weights_fingerprint(model)},
                                    what=f"--certificate {args.certificate}")
        try:
            layers = parse_layer_grid(args.layers, n)
        except ValueError as err:
            raise SkipitError(str(err).replace("`layers`", "--layers")) from None
        if args.baselines and not 1 <= args.fastv_layer <= n:
            raise SkipitError(f"--fastv-layer must be in [1, {n}], got {args.fastv_layer}")
        quiet = args.no_progress or not ctx.is_main
        say = (lambda msg: None) if quiet else (lambda msg: print(f"skipit evaluate: {msg}", file=sys.stderr))
        report = evaluate(model, processor, examples, modes=args.modes, layers=layers, certificate=certificate,
                          tolerance=args.tolerance / 100.0, batch_size=args.batch_size,
                          theorem6_examples=args.theorem6_samples, theorem6_iters=args.theorem6_iters,
                          adapter=adapter, progress=say, baselines=args.baselines,
                          fastv_layer=args.fastv_layer, vtw_kl_threshold=args.vtw_kl, ctx=ctx,
                          max_batch_tokens=args.max_batch_tokens, max_new_tokens=data_report.max_new_tokens)
        report["model"] = info
        report["run"] = {"world_size": ctx.world_size}
        report["data"] = {"source": data_report.source, "num_examples": len(examples),
                          "sha256": data_report.sha256, "metric": data_report.metric,
                          "max_new_tokens": data_report.max_new_tokens}
        if args.certificate:
            report["certificate"] = os.path.abspath(args.certificate)
        text = format_table(report)
        paths = {name: os.path.join(out_dir, name) for name in ("evaluation.json", "evaluation.txt",
                                                                 "evaluation.png")}

        def write():
            atomic_write_text(paths["evaluation.json"], json.dumps(report, indent=2, allow_nan=True) + "\n")
            atomic_write_text(paths["evaluation.txt"], text + "\n")
            plot_report(report, paths["evaluation.png"])

        run_on_main(write, ctx)
    if not ctx.is_main:
        return 0
    print(f"skipit evaluate: {info['name']} ({info['model_type']}, {n} layers) on {data_report.source}")
    print(text)
    print(f"\nwrote {', '.join(paths.values())}")
    return 0
