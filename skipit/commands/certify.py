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

DEFAULT_DATA = "digits-test"
DEFAULT_OUT = "skipit-certify-output"
CHECKPOINT_SUBDIR = "checkpoint"


def add_parser(subparsers):
    p = subparsers.add_parser(
        "certify", help="measure a VLM's per-layer statistics and certify skippable layers",
        description="Measure per-layer redundancy and visual attention of a VLM on a data set and certify "
                    "which layers the vision tokens may skip (late entry) or leave early (early exit). "
                    "Without --model: the bundled demo model on its bundled test data.")
    p.add_argument("--model", default=None, metavar="NAME|HUB_ID|PATH",
                   help="alias (e.g. llava-1.5-7b), hub id, or directory saved with save_pretrained "
                        "(default: the bundled demo model)")
    p.add_argument("--data", default=None, metavar="PATH|NAME",
                   help=f"JSONL file (image, question, answer[, choices]) or bundled set (default: {DEFAULT_DATA})")
    p.add_argument("--out", default=DEFAULT_OUT, metavar="DIR", help=f"output directory (default: {DEFAULT_OUT})")
    p.add_argument("--samples", type=int, default=512, metavar="N",
                   help="use the first N examples (default: 512; 0 = all)")
    p.add_argument("--batch-size", type=int, default=16, metavar="B", help="examples per forward (default: 16)")
    p.add_argument("--thresholds", type=float, nargs="+", default=[0.01, 0.02, 0.05, 0.1], metavar="T",
                   help="proximal thresholds t captured for p_l(t) (default: 0.01 0.02 0.05 0.1)")
    p.add_argument("--confidence", type=float, default=0.95, metavar="C",
                   help="joint confidence of all bounds used by the decision (default: 0.95)")
    p.add_argument("--eps", type=float, default=0.05,
                   help="redundancy level: U_l < eps and P_l(t) > 1 - eps (default: 0.05)")
    p.add_argument("--proximal-t", type=float, default=0.05, metavar="T",
                   help="the t of the proximal test, one of --thresholds (default: 0.05)")
    p.add_argument("--attention-threshold", type=float, default=0.1, metavar="TAU",
                   help="largest allowed visual attention share (mean over heads) of the answer query "
                        "(default: 0.1)")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:0 ... (default: auto)")
    p.add_argument("--dtype", default="auto", choices=["auto", "float32", "float16", "bfloat16"],
                   help="model dtype (default: auto = float32 on CPU, bfloat16 on CUDA)")
    p.add_argument("--skip-bad", action="store_true", help="skip (and report) bad data lines instead of stopping")
    p.add_argument("--resume", action=argparse.BooleanOptionalAction, default=True,
                   help="resume from the checkpoint in --out when there is one (default: on)")
    p.add_argument("--checkpoint-every", type=int, default=8, metavar="K",
                   help="save the statistics every K batches (default: 8)")
    p.add_argument("--threads", default="auto", metavar="N",
                   help="CPU threads for torch (default: auto = 1 for models under 50M parameters, whose "
                        "small matrix products only lose time to thread start-up and contention, else "
                        "torch's default)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def _settings(args):
    from skipit.empirical.certify import DecisionSettings
    from skipit.errors import SkipitError

    try:
        return DecisionSettings(eps=args.eps, proximal_t=args.proximal_t,
                                attention_threshold=args.attention_threshold, confidence=args.confidence,
                                thresholds=tuple(args.thresholds))
    except ValueError as err:
        text = str(err)
        for name in ("eps", "proximal_t", "attention_threshold", "confidence", "thresholds"):
            text = text.replace(f"`{name}`", "--" + name.replace("_", "-"))
        raise SkipitError(text) from None


def _num(value):
    return float("nan") if value is None else value


def format_table(certificate):
    """The per-layer table and the two verdicts, as printed on the terminal."""
    s = certificate["settings"]
    t_key = repr(float(s["proximal_t"]))
    late = set(certificate["late_entry"]["certified_layers"])
    exit_ = set(certificate["early_exit"]["certified_layers"])
    head = (f"{'layer':>5} | {'D vision':>9} {'<= U':>9} | {'p vision':>8} {'>= P':>8} | "
            f"{'D text':>9} {'p text':>7} | {'attn':>6} {'<= A':>6} | late exit")
    lines = [f"eps = {s['eps']:g}, t = {s['proximal_t']:g}, attention threshold = {s['attention_threshold']:g}, "
             f"joint confidence = {s['confidence']:g} (Bonferroni over {s['bonferroni_tests']} tests)",
             head, "-" * len(head)]
    for e in certificate["layers"]:
        v, t = e["vision"], e["text"]
        lines.append(
            f"{e['layer']:>5} | {v['mean_cosine_distance']:9.2e} {v['mean_upper_bound']:9.2e} | "
            f"{v['proximal_probability'][t_key]:8.4f} {v['proximal_lower_bound'][t_key]:8.4f} | "
            f"{t['mean_cosine_distance']:9.2e} {t['proximal_probability'][t_key]:7.4f} | "
            f"{_num(e['visual_attention_mean_head']):6.3f} {e['visual_attention_upper_bound']:6.3f} | "
            f"{'skip' if e['layer'] in late else '  - '} {'skip' if e['layer'] in exit_ else '  - '}")
    le, ee = certificate["late_entry"], certificate["early_exit"]
    n = certificate["model"]["num_layers"]
    if le["certified_layers"]:
        lines.append(f"late entry: certified at layer {le['max_entry_layer']} (vision may skip layers "
                     f"1..{le['max_entry_layer'] - 1}; Theorem 6)")
    else:
        why = ", ".join(le["reasons"]["failing_tests"])
        lines.append(f"late entry: not certified (layer {le['reasons']['first_failing_layer']} fails: {why})")
    if ee["certified_layers"]:
        lines.append(f"early exit: certified after layer {ee['min_exit_layer']} (vision may leave layers "
                     f"{ee['min_exit_layer'] + 1}..{n}; Section 4, visual attention)")
    else:
        lines.append(f"early exit: not certified (layer {n} attention bound "
                     f"{certificate['layers'][-1]['visual_attention_upper_bound']:.3f} >= "
                     f"{s['attention_threshold']:g})")
    return "\n".join(lines)


def run(args):
    from skipit.errors import SkipitError

    settings = _settings(args)
    if args.samples < 0:
        raise SkipitError(f"--samples must be >= 0 (0 = all), got {args.samples}")
    if args.batch_size < 1:
        raise SkipitError(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.checkpoint_every < 1:
        raise SkipitError(f"--checkpoint-every must be >= 1, got {args.checkpoint_every}")
    threads = _parse_threads(args.threads)

    from skipit.empirical.data import load_examples

    data = args.data or DEFAULT_DATA
    examples, report = load_examples(data, skip_bad=args.skip_bad, limit=args.samples or None)
    for line, why in report.skipped:
        print(f"skipit certify: skipped line {line} of {report.source}: {why}", file=sys.stderr)

    import torch  # only now: the data are checked before any model work

    from skipit.empirical.certify import certify, write_certificate
    from skipit.empirical.loading import load_model_and_processor
    from skipit.empirical.plots import write_plots

    model, processor, info = load_model_and_processor(args.model, device=args.device, dtype=args.dtype)
    _set_threads(threads, model)
    print(f"certifying {info['name']} ({info['model_type']}, {info['source']}) on {report.source}: "
          f"{len(examples)} examples, batch size {args.batch_size}", file=sys.stderr)
    out_dir = args.out
    os.makedirs(out_dir, exist_ok=True)
    checkpoint_dir = os.path.join(out_dir, CHECKPOINT_SUBDIR)
    try:
        certificate = _certify(certify, model, processor, examples, settings, args, checkpoint_dir, info, report)
    except KeyboardInterrupt:
        print(f"skipit certify: the statistics up to the last checkpoint are in {checkpoint_dir}; "
              "rerun the same command to resume", file=sys.stderr)
        raise
    path = write_certificate(certificate, out_dir)
    pngs = write_plots(certificate, out_dir)
    print(format_table(certificate))
    print(f"wrote {path}, {', '.join(pngs)}")
    return 0


SMALL_MODEL_PARAMETERS = 50_000_000


def _parse_threads(value):
    """``--threads``: None for auto, else an integer >= 1."""
    from skipit.errors import SkipitError

    if value == "auto":
        return None
    try:
        n = int(value)
    except ValueError:
        n = 0
    if n < 1:
        raise SkipitError(f"--threads must be 'auto' or an integer >= 1, got {value!r}")
    return n


def _set_threads(threads, model):
    """Apply ``--threads`` (None = auto: one thread for a small model on the CPU)."""
    import torch

    if threads is None:
        on_cpu = next(model.parameters()).device.type == "cpu"
        if on_cpu and sum(p.numel() for p in model.parameters()) < SMALL_MODEL_PARAMETERS:
            torch.set_num_threads(1)
    else:
        torch.set_num_threads(threads)


def _certify(certify, model, processor, examples, settings, args, checkpoint_dir, info, report):
    import torch

    return certify(
        model, processor, examples, thresholds=settings.thresholds, confidence=settings.confidence,
        eps=settings.eps, proximal_t=settings.proximal_t, attention_threshold=settings.attention_threshold,
        batch_size=args.batch_size, checkpoint_dir=checkpoint_dir,
        checkpoint_every=args.checkpoint_every, resume=args.resume, progress=not args.no_progress,
        model_info=info,
        data_info={"source": report.source, "file_sha256": report.sha256,
                   "skipped_lines": [n for n, _ in report.skipped]},
        run_info={"device": str(next(model.parameters()).device), "dtype": str(model.dtype).replace("torch.", ""),
                  "samples": len(examples), "threads": torch.get_num_threads()},
    )
