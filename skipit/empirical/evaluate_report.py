"""The evaluation report as text and as a figure (scoring is in :mod:`skipit.empirical.evaluate`)."""

from __future__ import annotations

import io
import math

from skipit.empirical.certificate import config_label
from skipit.empirical.files import atomic_write_bytes
from skipit.empirical.tasks import ACCURACY_KEYS

__all__ = ["format_table", "plot_report"]


def _fmt(x, spec=".3f"):
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return format(x, spec)


def _validation_lines(block):
    return [f"    {key:<11} settings {v['settings']:>3}  tp {v['tp']:>3} fp {v['fp']:>3} fn {v['fn']:>3} "
            f"tn {v['tn']:>3}  precision {_fmt(v['precision'])}  recall {_fmt(v['recall'])}"
            for key, v in block.items()]


def _benchmark_lines(report):
    """The benchmark's own score (MME's sums) of every setting that has one, one line each; nothing
    when the preset's score is its accuracy."""
    bench = report["benchmark"]
    if "unavailable" in bench:
        return ["", f"{bench['title']}'s own score: not computed ({bench['unavailable']})"]
    settings = [("full model", report["full"])]
    settings += [(config_label(dict(r, layers=[r["layer"]])), r) for r in report["rows"]]
    settings += [(config_label(r), r) for r in report.get("verified_rows", [])]
    baselines = report.get("baselines") or {}
    settings += [(config_label({"mode": "fastv", "layer": baselines["fastv_layer"], "keep_ratio": f["keep_ratio"]}), f)
                 for f in baselines.get("fastv", [])]
    if baselines.get("vtw"):
        settings.append((f"VTW early-exit L={baselines['vtw']['layer']}", baselines["vtw"]))
    keys = [k for k in report["full"].get("benchmark_score", {}) if k not in ACCURACY_KEYS]
    if not keys:
        return []
    lines = ["", f"{bench['title']}'s own score per setting (beside the accuracies above):",
             f"  {'setting':<28}" + "".join(f" {k:>11}" for k in keys)]
    seen = set()
    for label, entry in settings:
        if label in seen or "benchmark_score" not in entry:  # a verified candidate the grid ran already
            continue
        seen.add(label)
        lines.append(f"  {label:<28}" + "".join(f" {_fmt(entry['benchmark_score'][k], '.1f'):>11}" for k in keys))
    return lines


def format_table(report):
    """The report as text: the per-layer table, validation, baselines, the benchmark's own score
    (with a preset that has one, e.g. MME's sums) and Theorem 6 sections."""
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
        lines += ["", "certificate validation (trivial settings left out: late entry L=1, early exit L=N, "
                      "freezing only layer N):",
                  "  paper's verdicts (truth: accuracy within the tolerance):"]
        lines += _validation_lines(report["validation"]["paper"])
        verified = report["validation"].get("verified")
        if verified:
            lines.append(f"  verified configurations (truth: answer-change rate within the certificate's "
                         f"tolerance; {verified['violations']} certified configuration(s) violate it here):")
            lines += _validation_lines({k: v for k, v in verified.items() if k != "violations"})
            lines.append(f"  {'candidate':<24} {'changed':>8} {'accuracy':>9} {'certified':>9}")
            for r in report.get("verified_rows", []):
                lines.append(f"  {config_label(r):<24} {r['changed_rate']:8.3f} {r['accuracy']:9.3f} "
                             f"{'yes' if r['certified'] else 'no':>9}")
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
    if report.get("benchmark"):
        lines += _benchmark_lines(report)
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
    from matplotlib.figure import Figure

    layers = report["settings"]["layers"]
    fig = Figure(figsize=(10, 6.5))
    axes = fig.subplots(2, 1, sharex=True)
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
    ax.set_title("accuracy with vision tokens entering late / exiting early / frozen at layer L")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax = axes[1]
    stats = [s for s in report.get("layer_statistics", []) if s["layer"] in layers]
    if stats:
        xs = [s["layer"] for s in stats]
        ax.plot(xs, [s["D_vision"] for s in stats], "s-", label="D_l vision")
        ax.plot(xs, [s["p005_vision"] for s in stats], "^-", label="p_l(0.05) vision")
        ax.set_ylabel("D_l and p_l(0.05), vision")
        ax2 = ax.twinx()
        ax2.plot(xs, [s["visual_attention_ratio"] for s in stats], "d--", color="tab:green", label="VAR")
        ax2.set_ylabel("visual attention ratio")
        ax2.legend(fontsize=8, loc="lower left", bbox_to_anchor=(1.09, 0.0))
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.09, 1.0))
    ax.set_xlabel("layer L")
    ax.set_xticks(layers)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    atomic_write_bytes(path, buffer.getvalue())
    return path
