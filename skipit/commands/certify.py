"""``skipit certify``: per-layer statistics of a VLM on a data set -> certificate of skippable layers.

With no ``--model`` it certifies the bundled demo model on its bundled test questions
(the README's main command). Writes ``certificate.json``, ``redundancy.png`` and
``attention.png`` into ``--out`` and prints a per-layer table. torch is imported only
inside :func:`run`.
"""

from __future__ import annotations

import argparse
import os
import sys

DEFAULT_OUT = "skipit-certify-output"
CHECKPOINT_SUBDIR = "checkpoint"


def add_parser(subparsers):
    from skipit.commands._common import model_options

    p = subparsers.add_parser(
        "certify", parents=[model_options(samples=512, batch_size=16)],
        help="measure a VLM's per-layer statistics, certify skippable layers and verify answer changes",
        description="Measure per-layer redundancy and visual attention of a VLM on a data set, give the "
                    "paper's verdicts (late entry, early exit, freeze of vision tokens) with examples as the "
                    "independent units, then verify candidates on held-out calibration examples "
                    "(Learn-then-Test): each certified configuration changes at most --tolerance of the "
                    "answers, all together with probability >= --confidence. "
                    "Without --model: the bundled demo model on its bundled test data.")
    p.add_argument("--out", default=DEFAULT_OUT, metavar="DIR", help=f"output directory (default: {DEFAULT_OUT})")
    p.add_argument("--thresholds", type=float, nargs="+", default=[0.01, 0.02, 0.05, 0.1], metavar="T",
                   help="proximal thresholds t captured for p_l(t) (default: 0.01 0.02 0.05 0.1)")
    p.add_argument("--confidence", type=float, default=0.95, metavar="C",
                   help="joint confidence of all bounds used by the verdicts, and of all verified "
                        "configurations (default: 0.95)")
    p.add_argument("--eps", type=float, default=0.05,
                   help="redundancy level: U_l < eps and P_l(t) > 1 - eps (default: 0.05)")
    p.add_argument("--proximal-t", type=float, default=0.05, metavar="T",
                   help="the t of the proximal test, one of --thresholds (default: 0.05)")
    p.add_argument("--attention-threshold", type=float, default=0.1, metavar="TAU",
                   help="largest allowed visual attention share (mean over heads) of the answer query "
                        "(default: 0.1)")
    v = p.add_argument_group("verification (Learn-then-Test on held-out calibration examples)")
    v.add_argument("--verify", action=argparse.BooleanOptionalAction, default=True,
                   help="verify candidates by their answer-change rate (default: on; --no-verify: every "
                        "example goes to the statistics and only the paper's verdicts are given)")
    v.add_argument("--tolerance", type=float, default=0.05, metavar="TAU",
                   help="largest allowed fraction of changed answers (default: 0.05)")
    v.add_argument("--calibration-fraction", type=float, default=0.5, metavar="F",
                   help="fraction of the examples held out for verification (default: 0.5)")
    v.add_argument("--split-seed", type=int, default=0, metavar="S",
                   help="seed of the statistics/calibration split (default: 0)")
    v.add_argument("--freeze-order", default="contribution", choices=["redundancy", "contribution"],
                   help="order of the freeze chain: the certified vision redundancy U_l (the paper's statistic) or "
                        "ShortV's layer contribution (output KL when the layer's vision update is removed, on "
                        "--order-samples statistics examples); either is computed on the statistics split only "
                        "(default: contribution, which predicts harm far better on the demo model; see README)")
    v.add_argument("--order-samples", type=int, default=64, metavar="K",
                   help="statistics examples used by --freeze-order contribution (default: 64)")
    p.add_argument("--resume", action=argparse.BooleanOptionalAction, default=True,
                   help="resume from the checkpoint in --out when there is one (default: on)")
    p.add_argument("--checkpoint-every", type=int, default=8, metavar="K",
                   help="save the statistics every K batches (default: 8)")
    p.add_argument("--max-batch-tokens", type=int, default=None, metavar="N",
                   help="at most N padded prompt tokens (batch size x longest prompt) per statistics batch, "
                        "so long image sequences (LLaVA-NeXT, Qwen2.5-VL) fit in memory; a longer example runs "
                        "alone (default: no cap, --batch-size examples per batch)")
    return p


_FLAGS = {"eps": "--eps", "proximal_t": "--proximal-t", "attention_threshold": "--attention-threshold",
          "confidence": "--confidence", "thresholds": "--thresholds", "tolerance": "--tolerance",
          "calibration_fraction": "--calibration-fraction", "max_new_tokens": "--max-new-tokens",
          "batch_size": "--batch-size", "checkpoint_every": "--checkpoint-every",
          "freeze_order": "--freeze-order", "order_examples": "--order-samples"}


def settings_from_args(args):
    """The :class:`CertifySettings` of the command line; a bad value is a one-line SkipitError
    naming the option."""
    from skipit.empirical.certificate import CertifySettings
    from skipit.errors import SkipitError

    try:
        return CertifySettings(eps=args.eps, proximal_t=args.proximal_t,
                               attention_threshold=args.attention_threshold, confidence=args.confidence,
                               thresholds=tuple(args.thresholds), verify=args.verify, tolerance=args.tolerance,
                               calibration_fraction=args.calibration_fraction, split_seed=args.split_seed,
                               freeze_order=args.freeze_order,
                               order_examples=args.order_samples, batch_size=args.batch_size,
                               checkpoint_every=args.checkpoint_every, resume=args.resume)
    except ValueError as err:
        text = str(err)
        for name, flag in _FLAGS.items():
            text = text.replace(f"`{name}`", flag)
        raise SkipitError(text) from None


def _num(value):
    return float("nan") if value is None else value


def format_table(certificate):
    """The per-layer table, the paper's three verdicts and the verified configurations, as printed."""
    from skipit.empirical.certificate import config_label
    from skipit.empirical.stats import threshold_key

    s = certificate["settings"]
    t_key = threshold_key(s["proximal_t"])
    late = set(certificate["late_entry"]["certified_layers"])
    exit_ = set(certificate["early_exit"]["certified_layers"])
    frozen = set(certificate["freeze"]["certified_layers"])
    head = (f"{'layer':>5} | {'D vision':>9} {'<= U':>9} {'deff':>5} | {'p vision':>8} {'>= P':>8} | "
            f"{'D text':>9} {'p text':>7} | {'attn':>6} {'<= A':>6} | late exit frz")
    first = certificate["layers"][0]["vision"]
    lines = [f"eps = {s['eps']:g}, t = {s['proximal_t']:g}, attention threshold = {s['attention_threshold']:g}, "
             f"joint confidence = {s['confidence']:g} (Bonferroni over {s['bonferroni_tests']} tests; "
             f"{first['examples']} examples as the independent units)",
             head, "-" * len(head)]
    for e in certificate["layers"]:
        v, t = e["vision"], e["text"]
        deff = v.get("design_effect")
        lines.append(
            f"{e['layer']:>5} | {_num(v['mean_cosine_distance']):9.2e} {v['mean_upper_bound']:9.2e} "
            f"{_num(deff):5.1f} | {_num(v['proximal_probability'][t_key]):8.4f} {v['proximal_lower_bound'][t_key]:8.4f} | "
            f"{_num(t['mean_cosine_distance']):9.2e} {_num(t['proximal_probability'][t_key]):7.4f} | "
            f"{_num(e['visual_attention_mean_head']):6.3f} {e['visual_attention_upper_bound']:6.3f} | "
            f"{'skip' if e['layer'] in late else '  - '} {'skip' if e['layer'] in exit_ else '  - '} "
            f"{' yes' if e['layer'] in frozen else '  - '}")
    zero = {g: sum(e[g].get("zero_norm_tokens", 0) for e in certificate["layers"] if g in e) for g in ("vision", "text")}
    if any(zero.values()):
        lines.append(f"warning: hidden states of norm 0 (left out of every distance): {zero['vision']} vision and "
                     f"{zero['text']} text token-layers (a zero-initialised projector?)")
    le, ee, fr = certificate["late_entry"], certificate["early_exit"], certificate["freeze"]
    n = certificate["model"]["num_layers"]
    lines.append("paper's verdicts (statistics alone):")
    if le["certified_layers"]:
        lines.append(f"  late entry: certified at layer {le['max_entry_layer']} (vision may skip layers "
                     f"1..{le['max_entry_layer'] - 1}; Theorem 6)")
    else:
        why = ", ".join(le["reasons"]["failing_tests"])
        lines.append(f"  late entry: not certified (layer {le['reasons']['first_failing_layer']} fails: {why})")
    if ee["certified_layers"]:
        lines.append(f"  early exit: certified after layer {ee['min_exit_layer']} (vision may leave layers "
                     f"{ee['min_exit_layer'] + 1}..{n}; Section 4, visual attention)")
    else:
        lines.append(f"  early exit: not certified (layer {n} attention bound "
                     f"{certificate['layers'][-1]['visual_attention_upper_bound']:.3f} >= "
                     f"{s['attention_threshold']:g})")
    lines.append("  freeze: " + (("each of layers " + ",".join(map(str, fr["certified_layers"])) +
                                  " on its own (Definitions 1-2)") if fr["certified_layers"] else "no layer"))
    ver = certificate.get("verification")
    if ver is None:
        lines.append("verification: off (--no-verify)")
        return "\n".join(lines)
    lines.append(f"verified on {ver['examples']} calibration examples (tolerance {ver['tolerance']:g} of answers "
                 f"changed, joint confidence {ver['confidence']:g}):")
    lines.append(f"  {'configuration':<28} {'changed':>9} {'upper':>7} {'FLOPs':>6}  verdict")
    for c in ver["configs"]:
        lines.append(f"  {config_label(c):<28} {c['changed']:>4}/{c['examples']:<4} {c['upper_bound']:7.4f} "
                     f"{c['flops_fraction']:6.3f}  {'certified' if c['certified'] else 'stop'}")
    rec = ver["recommended"]
    if rec is None:
        lines.append("recommended: none (no candidate keeps the change rate under the tolerance)")
    else:
        lines.append(f"recommended: {config_label(rec)}: at most {ver['tolerance']:g} of answers change "
                     f"(upper bound {rec['upper_bound']:.4f}, {rec['changed']}/{rec['examples']} changed), "
                     f"predicted speed-up {rec['predicted_speedup']:.2f}x (prefill FLOPs)")
    return "\n".join(lines)


def run(args):
    from skipit.commands._common import offload_folder, parse_threads, placement_from_args
    from skipit.errors import SkipitError

    settings = settings_from_args(args)
    if args.samples < 0:
        raise SkipitError(f"--samples must be >= 0 (0 = all), got {args.samples}")
    if args.max_batch_tokens is not None and args.max_batch_tokens < 1:
        raise SkipitError(f"--max-batch-tokens must be >= 1, got {args.max_batch_tokens}")
    parse_threads(args.threads)  # checked before any work

    import dataclasses

    from skipit.commands._common import load_data, load_model
    from skipit.empirical.distributed import context_from_environment, distributed, run_on_main

    placement_from_args(args, context_from_environment())  # --device, --device-map, --max-memory: before any work
    examples, report = load_data(args, "certify")
    # answers compared by the verification: one token, or the greedy generation free-form data need
    settings = dataclasses.replace(settings, max_new_tokens=int(report.max_new_tokens or 1))

    import contextlib

    from skipit.empirical.files import output_directory

    # Under torchrun every rank runs this; rank 0 alone locks --out and writes the results.
    with distributed(args.device) as ctx, contextlib.ExitStack() as stack:
        out_dir = run_on_main(lambda: stack.enter_context(
            output_directory(args.out, what="--out", command="skipit certify")), ctx)
        offload = stack.enter_context(offload_folder(out_dir, ctx))
        import torch  # only now: the data and --out are checked before any model work

        from skipit.empirical.certify import certify, write_certificate
        from skipit.empirical.loading import input_device
        from skipit.empirical.plots import write_plots

        model, processor, info, examples = load_model(args, "certify", examples, ctx, offload)
        if not args.no_progress and ctx.is_main:
            ranks = f", {ctx.world_size} processes" if ctx.world_size > 1 else ""
            print(f"certifying {info['name']} ({info['model_type']}, {info['source']}) on {report.source}: "
                  f"{len(examples)} examples, batch size {args.batch_size}{ranks}", file=sys.stderr)
        checkpoint_dir = os.path.join(out_dir, CHECKPOINT_SUBDIR)
        run_info = {"device": str(input_device(model)), "dtype": str(model.dtype).replace("torch.", ""),
                    "samples": len(examples), "threads": torch.get_num_threads()}
        if args.device_map is not None:
            run_info["device_map"] = args.device_map
        try:
            certificate = certify(
                model, processor, examples, settings, checkpoint_dir=checkpoint_dir, progress=not args.no_progress,
                model_info=info,
                data_info={"source": report.source, "file_sha256": report.sha256,
                           "skipped_lines": [n for n, _ in report.skipped], "metric": report.metric,
                           "columns": report.columns},
                run_info=run_info, ctx=ctx, max_batch_tokens=args.max_batch_tokens)
        except KeyboardInterrupt:
            if ctx.is_main:
                print(f"skipit certify: the statistics up to the last checkpoint are in {checkpoint_dir}; "
                      "rerun the same command to resume", file=sys.stderr)
            raise
        path, pngs = run_on_main(lambda: (write_certificate(certificate, out_dir),
                                          write_plots(certificate, out_dir)), ctx)
    if ctx.is_main:
        print(format_table(certificate))
        print(f"wrote {path}, {', '.join(pngs)}")
    return 0
