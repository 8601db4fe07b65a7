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


SHARED = ("batch_size", "max_batch_tokens")  # added by model_options


def add_parser(subparsers):
    from skipit.commands._common import model_options
    from skipit.empirical.settings import EvaluateSettings, add_setting_options

    p = subparsers.add_parser(
        "evaluate", parents=[model_options(samples=200, settings=EvaluateSettings)],
        help="accuracy of full versus skipped models; precision and recall of a certificate",
        description="Accuracy of a VLM with late entry / early exit / freezing of vision tokens at every layer "
                    "of a grid, against the full model; per-layer statistics; Theorem 6 on real numbers; and, "
                    "with --certificate, precision and recall of the certificate's paper verdicts and of its "
                    "verified configurations, on these (held-out) examples.")
    p.add_argument("--certificate", default=None, metavar="PATH",
                   help="certificate.json from `skipit certify` to validate (refused if made for another model)")
    p.add_argument("--out", default=DEFAULT_OUT, metavar="DIR", help=f"output directory (default: {DEFAULT_OUT})")
    p.add_argument("--json", action="store_true",
                   help="print the report as JSON (the content of evaluation.json) instead of the table")
    add_setting_options(p, EvaluateSettings, skip=SHARED)
    return p


def run(args):
    import contextlib

    from skipit.commands._common import load_model_and_data, offload_folder, placement_from_args
    from skipit.empirical.distributed import context_from_environment, distributed, run_on_main
    from skipit.empirical.settings import EvaluateSettings, SettingError, settings_from_args

    settings = settings_from_args(EvaluateSettings, args)
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
        settings = settings.replace(max_new_tokens=data_report.max_new_tokens)

        from skipit.empirical.adapters import get_adapter
        from skipit.empirical.certificate import check_certificate_model
        from skipit.empirical.evaluate import evaluate
        from skipit.empirical.evaluate_report import format_table, plot_report
        from skipit.empirical.weights import weights_fingerprint

        adapter = get_adapter(model)
        n = adapter.num_layers(model)
        if certificate is not None:
            check_certificate_model(certificate, {"model_type": adapter.model_type, "num_layers": n,
                                                  "weights": weights_fingerprint(model)},
                                    what=f"--certificate {args.certificate}")
        settings.layer_list(n)  # checked against the model before any work
        if settings.baselines and not 1 <= settings.fastv_layer <= n:
            raise SettingError(f"{{fastv_layer}} must be in [1, {n}], got {settings.fastv_layer}")
        quiet = args.no_progress or not ctx.is_main
        say = (lambda msg: None) if quiet else (lambda msg: print(f"skipit evaluate: {msg}", file=sys.stderr))
        report = evaluate(model, processor, examples, settings, certificate=certificate, adapter=adapter,
                          progress=say, ctx=ctx, task=data_report.task or None)
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
            try:
                atomic_write_text(paths["evaluation.json"], json.dumps(report, indent=2, allow_nan=True) + "\n")
                atomic_write_text(paths["evaluation.txt"], text + "\n")
                plot_report(report, paths["evaluation.png"])
            except OSError as err:
                from skipit.errors import RunError

                raise RunError(f"cannot write the results into --out {out_dir} "
                               f"({err.strerror or type(err).__name__})") from None

        run_on_main(write, ctx)
    if not ctx.is_main:
        return 0
    if args.json:
        print(json.dumps(report, indent=2, allow_nan=True))
        print(f"wrote {', '.join(paths.values())}", file=sys.stderr)
        return 0
    print(f"skipit evaluate: {info['name']} ({info['model_type']}, {n} layers) on {data_report.source}")
    print(text)
    print(f"\nwrote {', '.join(paths.values())}")
    return 0
