"""``skipit certify``: per-layer statistics of a VLM on a data set -> certificate of skippable layers.

With no ``--model`` it certifies the bundled demo model on its bundled test questions
(the README's main command). Writes ``certificate.json``, ``redundancy.png`` and
``attention.png`` into ``--out`` and prints a per-layer table. torch is imported only
inside :func:`run`.
"""

from __future__ import annotations

import json
import os
import sys

DEFAULT_OUT = "skipit-certify-output"
CHECKPOINT_SUBDIR = "checkpoint"


SHARED = ("batch_size", "max_batch_tokens")  # added by model_options


def add_parser(subparsers):
    from skipit.commands._common import model_options
    from skipit.empirical.settings import CertifySettings, add_setting_options

    p = subparsers.add_parser(
        "certify", parents=[model_options(samples=4096, settings=CertifySettings)],
        help="measure a VLM's per-layer statistics, certify skippable layers and verify answer changes",
        description="Measure per-layer redundancy and visual attention of a VLM on a data set, give the "
                    "paper's verdicts (late entry, early exit, freeze of vision tokens) with examples as the "
                    "independent units, then verify candidates on held-out calibration examples "
                    "(Learn-then-Test): each certified configuration changes at most --tolerance of the "
                    "answers, all together with probability >= --confidence. "
                    "Without --model: the bundled demo model on its bundled test data.")
    p.add_argument("--out", default=DEFAULT_OUT, metavar="DIR", help=f"output directory (default: {DEFAULT_OUT})")
    p.add_argument("--json", action="store_true",
                   help="print the certificate as JSON (the content of certificate.json) instead of the table")
    add_setting_options(p, CertifySettings, skip=SHARED,
                        groups={"verification": "verification (Learn-then-Test on held-out calibration examples)"})
    return p


def settings_from_args(args):
    """The :class:`~skipit.empirical.settings.CertifySettings` of the command line (a bad value is a
    :class:`~skipit.empirical.settings.SettingError` naming the parameter; the CLI prints its flag)."""
    from skipit.empirical.settings import CertifySettings
    from skipit.empirical.settings import settings_from_args as from_args

    return from_args(CertifySettings, args)


def _num(value):
    return float("nan") if value is None else value


def units_note(layers):
    """The independent units behind the table's vision bounds: the most examples any layer measured,
    and the layers that measured none, with the reason (their vision states all zero, norm 0, as
    from a zero-initialised projector; or no vision token), instead of a count of 0."""
    counts = {e["layer"]: e["vision"]["examples"] for e in layers}
    images = [e["vision"].get("units") for e in layers]
    empty = [e for e in layers if not e["vision"]["examples"]]
    if not empty and all(u is not None for u in images):
        return (f"{max(images)} images ({max(counts.values())} questions) as the independent units, each image's "
                "questions averaged")
    if not empty:
        return f"{max(counts.values())} examples as the independent units"
    why = ("vision states all zero (norm 0)" if all(e["vision"].get("zero_norm_tokens") for e in empty)
           else "no vision tokens")
    if len(empty) == len(layers):
        return f"no vision statistics in any layer: {why}"
    which = ", ".join(str(e["layer"]) for e in empty)
    return (f"{max(counts.values())} examples as the independent units; layer{'s' if len(empty) > 1 else ''} "
            f"{which}: none, {why}")


def format_table(certificate):
    """The per-layer table, the paper's three verdicts and the verified configurations, as printed."""
    from skipit.empirical.stats import threshold_key
    from skipit.empirical.verification import config_label

    s = certificate["settings"]
    t_key = threshold_key(s["proximal_t"])
    late = set(certificate["late_entry"]["certified_layers"])
    exit_ = set(certificate["early_exit"]["certified_layers"])
    frozen = set(certificate["freeze"]["certified_layers"])
    head = (f"{'layer':>5} | {'D vision':>9} {'<= U':>9} {'deff':>5} | {'p vision':>8} {'>= P':>8} | "
            f"{'D text':>9} {'p text':>7} | {'attn':>6} {'<= A':>6} | late exit frz")
    lines = [f"eps = {s['eps']:g}, t = {s['proximal_t']:g}, attention threshold = {s['attention_threshold']:g}, "
             f"joint confidence = {s['confidence']:g} ({s['bonferroni_tests']} families at {s['delta_per_test']:.3g} each: "
             f"late entry and early exit by fixed sequence along the layers, freeze by Holm; "
             f"{units_note(certificate['layers'])})",
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
    units = ver.get("units")
    cost = ver.get("cost") or {}
    where = (f"{units} calibration images ({ver['examples']} questions; images as the units)" if units is not None
             else f"{ver['examples']} calibration examples")
    lines.append(f"verified on {where}, tolerance {ver['tolerance']:g} of answers changed, joint confidence "
                 f"{ver['confidence']:g}:")
    if cost:
        lines.append(f"  learned on {cost['learn_units']} statistics images ({cost['learn_examples']} questions, "
                     f"{cost['learn_passes']} candidates measured); one chain of {len(ver.get('chain') or [])} "
                     "candidates worth testing, smallest saving first")
    lines.append(f"  {'configuration':<32} {'learned':>7} {'changed':>9} {'upper':>7} {'FLOPs':>6}  verdict")
    for c in ver["configs"]:
        learned = "" if c.get("learned_rate") is None else f"{c['learned_rate']:.4f}"
        lines.append(f"  {config_label(c):<32} {learned:>7} {c['changed']:>4}/{c['examples']:<4} "
                     f"{c['upper_bound']:7.4f} {c['flops_fraction']:6.3f}  {'certified' if c['certified'] else 'stop'}")
    rec = ver["recommended"]
    if rec is None:
        lines.append("recommended: none (no candidate worth testing, or the first one tested kept the change rate "
                     "above the tolerance)")
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
    parse_threads(args.threads)  # checked before any work

    from skipit.commands._common import load_data, load_model
    from skipit.empirical.distributed import context_from_environment, distributed, run_on_main

    placement_from_args(args, context_from_environment())  # --device, --device-map, --max-memory: before any work
    examples, report = load_data(args, "certify")
    # answers compared by the verification: one token, or the greedy generation free-form data need
    settings = settings.replace(max_new_tokens=int(report.max_new_tokens or 1))

    import contextlib

    from skipit.empirical.files import output_directory

    # Under torchrun every rank runs this; rank 0 alone locks --out and writes the results.
    with distributed(args.device) as ctx, contextlib.ExitStack() as stack:
        out_dir = run_on_main(lambda: stack.enter_context(
            output_directory(args.out, what="--out", command="skipit certify")), ctx)
        offload = stack.enter_context(offload_folder(out_dir, ctx))
        import torch  # only now: the data and --out are checked before any model work

        from skipit.empirical.certify_run import certify
        from skipit.empirical.loading import input_device

        model, processor, info, examples = load_model(args, "certify", examples, ctx, offload)
        if not args.no_progress and ctx.is_main:
            ranks = f", {ctx.world_size} processes" if ctx.world_size > 1 else ""
            print(f"certifying {info['name']} ({info['model_type']}, {info['source']}) on {report.source}: "
                  f"{len(examples)} examples, batch size {settings.batch_size}{ranks}", file=sys.stderr)
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
                           "columns": report.columns,
                           "sample": {"questions": args.samples, "seed": args.sample_seed,
                                      "rule": "all" if not args.samples else
                                      "seeded random sample of whole images (all their questions) with at least "
                                      "`questions` questions"}},
                run_info=run_info, ctx=ctx)
        except KeyboardInterrupt:
            if ctx.is_main:
                print(f"skipit certify: {interrupted_message(checkpoint_dir, settings)}", file=sys.stderr)
            raise
        path, pngs = run_on_main(lambda: write_outputs(certificate, out_dir), ctx)
    if ctx.is_main:
        if args.json:
            print(json.dumps(certificate, indent=2))
        else:
            print(format_table(certificate))
        print(f"wrote {path}, {', '.join(pngs)}", file=sys.stderr if args.json else sys.stdout)
    return 0


def interrupted_message(checkpoint_dir, settings):
    """What an interrupted run leaves, truly: the examples in the checkpoint (and how to resume),
    or that no checkpoint was written yet."""
    from skipit.empirical.certify_run import CHECKPOINT_STATE

    try:
        with open(os.path.join(checkpoint_dir, CHECKPOINT_STATE), encoding="utf-8") as fh:
            done = len(json.load(fh)["done"])
    except (OSError, ValueError, KeyError, TypeError):
        return (f"interrupted before the first checkpoint (one is saved every {settings.checkpoint_every} "
                "batches of statistics): nothing was saved; rerun the same command to start again")
    return (f"the statistics of {done} examples (up to the last checkpoint) are in {checkpoint_dir}; rerun the "
            "same command to resume")


def write_outputs(certificate, out_dir):
    """Write ``certificate.json`` and the plots into ``out_dir``: ``(path, [png paths])``. A write
    that fails (a full disk, an --out made unwritable) is a one-line :class:`skipit.errors.RunError`."""
    from skipit.empirical.certify_run import write_certificate
    from skipit.empirical.plots import write_plots
    from skipit.errors import RunError

    try:
        return write_certificate(certificate, out_dir), write_plots(certificate, out_dir)
    except OSError as err:
        raise RunError(f"cannot write the results into --out {out_dir} ({err.strerror or type(err).__name__}); "
                       "the checkpoint in it is kept: fix the directory and rerun the same command "
                       "(it resumes from the checkpoint)") from None
