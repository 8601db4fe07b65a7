"""Accuracy of full vs skipped models, the paper's Tables 1-2, and validation of a certificate.

* Scoring (paper, Sec. 4.2): every question is answered by one token, the argmax of the
  next-token logits at the answer position (the last non-padding prompt position). The
  prediction is correct when its decoded text equals the answer after normalisation
  (lower case, letters and digits only) - exact match for one-word answers, the letter
  or word of a multiple-choice answer.
* Table (like the paper's Tables 1-2): per layer l, the vision tokens' mean cosine distance
  D_l and proximal probability p_l(0.05), the visual attention ratio (eq. 3, summed over
  heads), and the accuracy with late entry at l and with early exit at l.
* Validation of a certificate (``skipit certify``): for each L and mode, the certificate's
  verdict (late entry at L is certified safe iff ``L <= max_entry_layer``; early exit at L
  iff ``L >= min_exit_layer``) against the measurement (accuracy within ``tolerance`` of
  the full model's). Precision = P(accuracy kept | certified), recall = P(certified |
  accuracy kept), over the non-trivial layers (late entry L >= 2, early exit L <= N-1;
  L = 1 and L = N are the full model and would count as free hits).
* Theorem 6 (``skipit.empirical.lipschitz``) on a few examples: its bound beside the
  measured output change for each late-entry layer.
"""

from __future__ import annotations

import contextlib
import json
import math
import re
import time

import torch

from skipit.empirical.skipping import early_exit, late_entry, resolve_adapter

__all__ = [
    "MODES", "ALL_MODES", "DEFAULT_TOLERANCE", "parse_layer_grid", "normalise_answer", "predict", "accuracy",
    "layer_statistics", "certificate_verdicts", "validate", "evaluate", "format_table", "plot_report",
    "load_certificate",
]

MODES = ("late-entry", "early-exit")
ALL_MODES = MODES + ("late-entry-oracle",)
"""``late-entry-oracle``: late entry with the full pass's layer-(L-1) vision states (an
analysis reference, not a speed-up: separates the text's missing vision from the vision
tokens' missing processing); it is never validated against a certificate."""
DEFAULT_TOLERANCE = 0.01
SCHEMA = "skipit.evaluation/1"


def parse_layer_grid(text, num_layers):
    """Layers from a grid string: ``all``, ``1,2,8``, ``2-12``, ``2-12:2`` or a mix (``1,4-6``).

    Returns the sorted distinct layers; each must lie in [1, num_layers].
    """
    if text is None or str(text).strip().lower() == "all":
        return list(range(1, num_layers + 1))
    layers = set()
    for part in str(text).replace(" ", "").split(","):
        m = re.fullmatch(r"(\d+)(?:-(\d+)(?::(\d+))?)?", part)
        if not m:
            raise ValueError(f"`layers` must look like 'all', '1,2,8', '2-12' or '2-12:2', got {text!r}")
        lo = int(m.group(1))
        hi = int(m.group(2)) if m.group(2) else lo
        step = int(m.group(3)) if m.group(3) else 1
        if step < 1 or hi < lo:
            raise ValueError(f"`layers` range {part!r} must have lo <= hi and step >= 1")
        layers.update(range(lo, hi + 1, step))
    bad = sorted(l for l in layers if not 1 <= l <= num_layers)
    if bad:
        raise ValueError(f"`layers` must lie in [1, {num_layers}], got {bad}")
    return sorted(layers)


def normalise_answer(text):
    """Lower case, letters and digits only: ``" Yes."`` -> ``"yes"``, ``"(B)"`` -> ``"b"``."""
    return re.sub(r"[^0-9a-z]", "", str(text).lower())


def _skip_context(model, mode, layer, adapter):
    if mode is None or mode == "full":
        return contextlib.nullcontext()
    if mode == "late-entry":
        return late_entry(model, layer=layer, adapter=adapter)
    if mode == "early-exit":
        return early_exit(model, layer=layer, adapter=adapter)
    if mode == "late-entry-oracle":
        return late_entry(model, layer=layer, adapter=adapter, variant="oracle")
    raise ValueError(f"`mode` must be one of {', '.join(ALL_MODES)}, got {mode!r}")


def _tokenizer(processor):
    return getattr(processor, "tokenizer", processor)


def _answer_positions(mask):
    mask = mask.bool()
    cols = torch.arange(mask.shape[-1], device=mask.device).expand_as(mask)
    return torch.where(mask, cols, torch.full_like(cols, -1)).max(dim=-1).values


def _synchronize(device):
    """Wait for ``device``'s queued kernels: CUDA launches return before the work is done,
    so a forward's wall time is only its time once the queue is drained."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.no_grad()
def predict(model, processor, examples, batch_size=16, mode=None, layer=None, adapter=None, context=None):
    """One-token answers: ``(predictions, correct, seconds)`` for ``examples`` (``data.Example``).

    ``mode`` None/"full", "late-entry" or "early-exit" at ``layer``; or ``context``, a
    callable returning the context manager to run each forward in (e.g. a baseline).
    ``seconds`` is the time spent in the model's forwards (on CUDA, the device is
    synchronised before each forward starts and after it returns).
    """
    from skipit.empirical.data import build_inputs

    if batch_size < 1:
        raise ValueError(f"`batch_size` must be >= 1, got {batch_size}")
    ad = resolve_adapter(model, adapter)
    tok = _tokenizer(processor)
    device = next(model.parameters()).device
    preds, correct, seconds = [], [], 0.0
    for start in range(0, len(examples), batch_size):
        chunk = examples[start:start + batch_size]
        inputs = build_inputs(processor, chunk, model)
        inputs = {k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in inputs.items()}
        if "pixel_values" in inputs and inputs["pixel_values"].is_floating_point():
            inputs["pixel_values"] = inputs["pixel_values"].to(model.dtype)
        mask = inputs.get("attention_mask")
        with (context() if context is not None else _skip_context(model, mode, layer, ad)):
            _synchronize(device)
            t0 = time.perf_counter()
            logits = model(**inputs).logits
            _synchronize(device)
            seconds += time.perf_counter() - t0
        pos = (_answer_positions(mask) if mask is not None
               else torch.full((logits.shape[0],), logits.shape[1] - 1, device=logits.device))
        ids = logits[torch.arange(logits.shape[0], device=logits.device), pos].argmax(-1).tolist()
        for example, token_id in zip(chunk, ids):
            text = tok.decode([token_id])
            preds.append(text)
            correct.append(normalise_answer(text) == normalise_answer(example.answer)
                           and normalise_answer(example.answer) != "")
    return preds, correct, seconds


def accuracy(model, processor, examples, batch_size=16, mode=None, layer=None, adapter=None):
    """Fraction of ``examples`` answered correctly (see ``predict``)."""
    _, correct, _ = predict(model, processor, examples, batch_size, mode, layer, adapter)
    return sum(correct) / len(correct) if correct else math.nan


def _threshold_value(mapping, t=0.05):
    for key, value in (mapping or {}).items():
        try:
            if abs(float(key) - t) < 1e-12:
                return value
        except ValueError:
            continue
    return None


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
def layer_statistics(model, processor, examples, batch_size=16, adapter=None):
    """Per-layer D_l, p_l(0.05) (vision and text) and the visual attention ratio, measured
    by ``skipit.empirical.capture_statistics`` over ``examples``."""
    from skipit.empirical.capture import capture_statistics
    from skipit.empirical.data import build_inputs

    device = next(model.parameters()).device
    with capture_statistics(model, adapter=adapter, thresholds=(0.05,), cka=False, attention=True) as cap:
        for start in range(0, len(examples), batch_size):
            inputs = build_inputs(processor, examples[start:start + batch_size], model)
            inputs = {k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in inputs.items()}
            model(**inputs)
    return [_layer_row(e) for e in cap.statistics.layers()]


def load_certificate(path, num_layers=None):
    """Read a ``skipit certify`` certificate (``certificate.json``) and check its shape."""
    from skipit.errors import SkipitError

    try:
        with open(path) as fh:
            cert = json.load(fh)
    except OSError as err:
        raise SkipitError(f"--certificate {path}: cannot read it ({err.strerror})") from None
    except json.JSONDecodeError as err:
        raise SkipitError(f"--certificate {path}: not JSON ({err})") from None
    for key in ("late_entry", "early_exit", "layers"):
        if key not in cert:
            raise SkipitError(f"--certificate {path}: no {key!r} block; pass a certificate.json written by "
                              "`skipit certify`")
    n = cert.get("model", {}).get("num_layers", len(cert["layers"]))
    if num_layers is not None and n != num_layers:
        raise SkipitError(f"--certificate {path} is for a model with {n} layers, this model has {num_layers}")
    return cert


def certificate_verdicts(certificate, mode, layers):
    """``{L: True/False}``: does the certificate call ``mode`` at layer L safe?

    Late entry at L is safe iff ``L <= late_entry.max_entry_layer``; early exit at L iff
    ``L >= early_exit.min_exit_layer`` (``skipit certify``'s decision rule).
    """
    if mode == "late-entry":
        limit = certificate["late_entry"]["max_entry_layer"]
        return {L: L <= limit for L in layers}
    if mode == "early-exit":
        limit = certificate["early_exit"]["min_exit_layer"]
        return {L: L >= limit for L in layers}
    raise ValueError(f"`mode` must be one of {', '.join(MODES)}, got {mode!r}")


def validate(rows, num_layers):
    """Precision and recall of certified verdicts against measured accuracy.

    ``rows``: dicts with ``mode``, ``layer``, ``certified`` (bool, or None: no verdict, left
    out) and ``within_tolerance`` (bool). Trivial settings (late entry at 1, early exit at N)
    are left out. Returns
    ``{"tp", "fp", "fn", "tn", "precision", "recall", "settings"}``; precision is None
    when nothing is certified, recall None when no setting keeps the accuracy.
    """
    counts = {"tp": 0, "fp": 0, "fn": 0, "tn": 0}
    used = 0
    for r in rows:
        if r["certified"] is None:
            continue
        if (r["mode"] == "late-entry" and r["layer"] == 1) or (r["mode"] == "early-exit" and r["layer"] == num_layers):
            continue
        used += 1
        key = ("t" if r["certified"] == r["within_tolerance"] else "f") + ("p" if r["certified"] else "n")
        counts[key] += 1
    tp, fp, fn = counts["tp"], counts["fp"], counts["fn"]
    return {**counts, "settings": used,
            "precision": tp / (tp + fp) if tp + fp else None,
            "recall": tp / (tp + fn) if tp + fn else None}


def evaluate(model, processor, examples, modes=MODES, layers=None, certificate=None,
             tolerance=DEFAULT_TOLERANCE, batch_size=16, theorem6_examples=4, theorem6_iters=8,
             statistics=True, adapter=None, progress=None, baselines=False, fastv_layer=2,
             vtw_kl_threshold=0.01):
    """Full vs skipped accuracy for every layer of ``layers`` in each mode, the per-layer
    statistics, Theorem 6 on ``theorem6_examples`` examples, and the validation of
    ``certificate`` (a dict from ``load_certificate``). With ``baselines``: FastV at
    ``fastv_layer`` with the keep ratio matched to each skipping setting's prefill FLOPs,
    and VTW at the layer of the output-KL rule (``vtw_kl_threshold``). Returns the report."""
    ad = resolve_adapter(model, adapter)
    n = ad.num_layers(model)
    layers = list(range(1, n + 1)) if layers is None else list(layers)
    for mode in modes:
        if mode not in ALL_MODES:
            raise ValueError(f"`modes` must be among {', '.join(ALL_MODES)}, got {mode!r}")
    if not 0 <= tolerance <= 1:
        raise ValueError(f"`tolerance` must be in [0, 1] (a fraction of examples), got {tolerance}")
    say = progress or (lambda msg: None)
    if not examples:
        raise ValueError("`examples` must not be empty")

    say(f"full model on {len(examples)} examples")
    _, full_correct, full_seconds = predict(model, processor, examples, batch_size, adapter=ad)
    full_acc = sum(full_correct) / len(full_correct)
    rows = []
    for mode in modes:
        verdicts = certificate_verdicts(certificate, mode, layers) if certificate and mode in MODES else {}
        for L in layers:
            say(f"{mode} at layer {L}")
            _, correct, seconds = predict(model, processor, examples, batch_size, mode, L, ad)
            acc = sum(correct) / len(correct)
            rows.append({
                "mode": mode, "layer": L, "accuracy": acc, "change": acc - full_acc,
                "within_tolerance": acc >= full_acc - tolerance - 1e-12,
                "certified": verdicts.get(L), "seconds": seconds,
            })

    report = {
        "schema": SCHEMA, "num_layers": n, "num_examples": len(examples),
        "settings": {"modes": list(modes), "layers": layers, "tolerance": tolerance,
                     "batch_size": batch_size, "theorem6_examples": theorem6_examples},
        "full": {"accuracy": full_acc, "seconds": full_seconds},
        "rows": rows,
    }
    if certificate is not None:
        report["layer_statistics"] = [_layer_row(e) for e in certificate["layers"]]
        report["layer_statistics_source"] = "certificate"
        report["validation"] = {mode: validate([r for r in rows if r["mode"] == mode], n)
                                for mode in modes if mode in MODES}
        report["validation"]["all"] = validate(rows, n)
    elif statistics:
        say("per-layer statistics")
        report["layer_statistics"] = layer_statistics(model, processor, examples, batch_size, ad)
        report["layer_statistics_source"] = "measured"
    if baselines:
        say("baselines at matched FLOPs")
        report["baselines"] = _baselines(model, processor, examples, rows, full_acc, tolerance, batch_size, ad,
                                         fastv_layer, vtw_kl_threshold)
    if theorem6_examples and "late-entry" in modes:
        report["theorem6"] = _theorem6(model, processor, examples[:theorem6_examples], layers, ad,
                                       theorem6_iters, say)
    return report


def _baselines(model, processor, examples, rows, full_acc, tolerance, batch_size, adapter, fastv_layer,
               kl_threshold):
    """FastV at matched prefill FLOPs for every skipping row, and VTW by the KL rule."""
    from skipit.empirical.baselines import choose_vtw_layer, fastv_prune, matched_fastv_ratio
    from skipit.empirical.data import build_inputs
    from skipit.empirical.flops import DecoderShape, prefill_flops, tokens_per_layer

    n = adapter.num_layers(model)
    shape = DecoderShape.from_config(model.config)
    first = build_inputs(processor, examples[:1], model)
    vision = int(adapter.vision_mask(first["input_ids"], model.config).sum())
    text = int(first["input_ids"].shape[1]) - vision
    full_flops = prefill_flops(shape, tokens_per_layer(n, text, vision))
    out = {"fastv_layer": fastv_layer, "text_tokens": text, "vision_tokens": vision, "fastv": [], "vtw": None}
    done = {}
    for r in rows:
        if r["mode"] not in MODES:
            continue
        budget = prefill_flops(shape, tokens_per_layer(n, text, vision, r["mode"], r["layer"]))
        r["flops_fraction"] = budget / full_flops
        if budget >= full_flops:
            continue
        ratio = matched_fastv_ratio(shape, text, vision, fastv_layer, budget)
        if ratio not in done:
            _, correct, _ = predict(model, processor, examples, batch_size, adapter=adapter,
                                    context=lambda ratio=ratio: fastv_prune(model, fastv_layer, ratio, adapter))
            done[ratio] = sum(correct) / len(correct)
        fastv_flops = prefill_flops(shape, tokens_per_layer(n, text, vision, "fastv", fastv_layer, keep_ratio=ratio))
        out["fastv"].append({"matched_mode": r["mode"], "matched_layer": r["layer"], "keep_ratio": ratio,
                             "flops_fraction": fastv_flops / full_flops, "accuracy": done[ratio],
                             "skipping_accuracy": r["accuracy"]})
    device = next(model.parameters()).device
    batches = []
    for start in range(0, len(examples), batch_size):
        inputs = build_inputs(processor, examples[start:start + batch_size], model)
        batches.append({k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in inputs.items()})
    layer, kls = choose_vtw_layer(model, batches, kl_threshold, adapter)
    _, correct, _ = predict(model, processor, examples, batch_size, "early-exit", layer, adapter)
    acc = sum(correct) / len(correct)
    out["vtw"] = {"layer": layer, "kl_threshold": kl_threshold, "kl_per_layer": kls, "accuracy": acc,
                  "within_tolerance": acc >= full_acc - tolerance - 1e-12,
                  "flops_fraction": prefill_flops(shape, tokens_per_layer(n, text, vision, "vtw", layer)) / full_flops}
    return out


def _theorem6(model, processor, examples, layers, adapter, iters, say):
    from skipit.empirical.data import build_inputs
    from skipit.empirical.lipschitz import theorem6_measurements, theorem6_table

    grid = [L for L in layers if L >= 2]
    if not grid:
        return []
    device = next(model.parameters()).device
    per_example = []
    for i, example in enumerate(examples):
        say(f"Theorem 6 on example {i + 1}/{len(examples)}")
        inputs = build_inputs(processor, [example], model)
        inputs = {k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in inputs.items()}
        per_example.append(theorem6_measurements(model, inputs, grid, adapter, iters=iters))
    return theorem6_table(per_example)


def _fmt(x, spec=".3f"):
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return format(x, spec)


def format_table(report):
    """The report as text: the per-layer table, validation and Theorem 6 sections."""
    stats = {r["layer"]: r for r in report.get("layer_statistics", [])}
    by = {(r["mode"], r["layer"]): r for r in report["rows"]}
    modes = report["settings"]["modes"]
    lines = [f"full model accuracy {report['full']['accuracy']:.3f} on {report['num_examples']} examples "
             f"(tolerance {100 * report['settings']['tolerance']:.1f} points)", ""]
    head = f"{'L':>3} {'D_l(V)':>8} {'p_l(.05)V':>9} {'VAR':>7}"
    width = {mode: max(17, len(mode) + 4) for mode in modes}
    for mode in modes:
        head += f" {('acc ' + mode):>{width[mode]}} {'cert':>5}"
    lines.append(head)
    for L in report["settings"]["layers"]:
        s = stats.get(L, {})
        line = (f"{L:>3} {_fmt(s.get('D_vision'), '.4f'):>8} {_fmt(s.get('p005_vision')):>9} "
                f"{_fmt(s.get('visual_attention_ratio')):>7}")
        for mode in modes:
            r = by.get((mode, L))
            if r is None:
                line += f" {'':>{width[mode]}} {'':>5}"
                continue
            mark = "" if r["within_tolerance"] else " *"
            cert = {True: "safe", False: "no", None: "-"}[r["certified"]]
            line += f" {_fmt(r['accuracy']) + mark:>{width[mode]}} {cert:>5}"
        lines.append(line)
    lines.append("(* accuracy more than the tolerance below the full model; VAR summed over heads, eq. 3)")
    if "validation" in report:
        lines += ["", "certificate validation (trivial L=1 late entry / L=N early exit left out):"]
        for key, v in report["validation"].items():
            lines.append(f"  {key:<11} settings {v['settings']:>3}  tp {v['tp']:>3} fp {v['fp']:>3} "
                         f"fn {v['fn']:>3} tn {v['tn']:>3}  precision {_fmt(v['precision'])}  "
                         f"recall {_fmt(v['recall'])}")
    if report.get("baselines"):
        b = report["baselines"]
        lines += ["", f"baselines at matched prefill FLOPs ({b['text_tokens']} text + {b['vision_tokens']} vision "
                      f"tokens; FastV prunes after layer {b['fastv_layer']}):",
                  f"{'setting':<16} {'FLOPs':>6} {'acc':>6}   {'FastV keep':>10} {'FLOPs':>6} {'acc':>6}"]
        for f in b["fastv"]:
            lines.append(f"{f['matched_mode'] + ' ' + str(f['matched_layer']):<16} "
                         f"{_fmt(by[(f['matched_mode'], f['matched_layer'])]['flops_fraction'], '.2f'):>6} "
                         f"{_fmt(f['skipping_accuracy']):>6}   {_fmt(f['keep_ratio'], '.2f'):>10} "
                         f"{_fmt(f['flops_fraction'], '.2f'):>6} {_fmt(f['accuracy']):>6}")
        v = b["vtw"]
        lines.append(f"VTW (KL <= {v['kl_threshold']} from layer {v['layer']} on): exit at {v['layer']}, "
                     f"FLOPs {v['flops_fraction']:.2f}, accuracy {v['accuracy']:.3f}")
    if report.get("theorem6"):
        lines += ["", f"Theorem 6, late entry (median over {report['theorem6'][0]['examples']} examples; "
                      "local Lipschitz estimates; lambda over layers 2..L-1, unused at L = 2; "
                      "loose = bound sqrt / measured):",
                  f"{'L':>3} {'eps':>8} {'delta':>8} {'lambda':>7} {'mu':>7} {'measured':>9} "
                  f"{'bound':>10} {'bound sqrt':>10} {'loose':>7} {'viol.':>5}"]
        for t in report["theorem6"]:
            lines.append(f"{t['layer']:>3} {_fmt(t['eps']):>8} {_fmt(t['delta']):>8} {_fmt(t['lam'], '.2f'):>7} "
                         f"{_fmt(t['mu'], '.2f'):>7} {_fmt(t['measured']):>9} {_fmt(t['bound'], '.3g'):>10} "
                         f"{_fmt(t['bound_sqrt'], '.3g'):>10} {_fmt(t['looseness_median'], '.3g'):>7} "
                         f"{t['violations']:>5}")
    return "\n".join(lines)


def plot_report(report, path):
    """PNG: accuracy per layer for each mode (full model as a line), certified layers shaded,
    and the vision D_l / p_l(0.05) / VAR per layer below."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    layers = report["settings"]["layers"]
    fig, axes = plt.subplots(2, 1, figsize=(10, 6.5), sharex=True)
    ax = axes[0]
    ax.axhline(report["full"]["accuracy"], color="k", lw=1, ls="--", label="full model")
    tol = report["settings"]["tolerance"]
    ax.axhspan(report["full"]["accuracy"] - tol, report["full"]["accuracy"], color="k", alpha=0.07)
    for mode, colour in zip(report["settings"]["modes"], ("tab:blue", "tab:orange", "tab:purple")):
        rows = [r for r in report["rows"] if r["mode"] == mode]
        ax.plot([r["layer"] for r in rows], [r["accuracy"] for r in rows], "o-", color=colour, label=mode)
        cert = [r["layer"] for r in rows if r["certified"]]
        if cert:
            ax.scatter(cert, [r["accuracy"] for r in rows if r["certified"]], s=120, facecolors="none",
                       edgecolors=colour, lw=1.5, label=f"{mode}: certified safe")
    ax.set_ylabel("accuracy")
    ax.set_title("accuracy with vision tokens entering late / exiting early at layer L")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax = axes[1]
    stats = [s for s in report.get("layer_statistics", []) if s["layer"] in layers]
    if stats:
        xs = [s["layer"] for s in stats]
        ax.plot(xs, [s["D_vision"] for s in stats], "s-", label="D_l vision")
        ax.plot(xs, [s["p005_vision"] for s in stats], "^-", label="p_l(0.05) vision")
        ax2 = ax.twinx()
        ax2.plot(xs, [s["visual_attention_ratio"] for s in stats], "d--", color="tab:green", label="VAR")
        ax2.set_ylabel("visual attention ratio")
        ax2.legend(fontsize=8, loc="lower left", bbox_to_anchor=(1.09, 0.0))
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.09, 1.0))
    ax.set_xlabel("layer L")
    ax.set_xticks(layers)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
