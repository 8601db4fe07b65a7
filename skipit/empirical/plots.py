"""PNG figures of a certificate, like the paper's Figures 3 and 4.

* ``redundancy.png`` (Figure 4): per layer, the mean cosine distance ``D_l`` of vision and
  text tokens with its upper confidence bound and the level ``eps``; the proximal
  probability ``p_l(t)`` with its lower confidence bound and the level ``1 - eps``.
* ``attention.png`` (Figure 3): per layer, ``VAR_l / H``, the head-mean share of the answer
  query's attention that falls on vision tokens (the paper's visual attention ratio of
  eq. 3 divided by the number of heads, in ``[0, 1]``), with its upper confidence bound and
  the attention threshold.

Layers certified for late entry (skippable by vision before the entry layer), early exit
(after the exit layer) and, in ``skipit.certificate/2``, freeze are shaded in every panel;
the configuration recommended by the verification (``verification.recommended``), when
there is one, is hatched. Certificates of schema 1 (no ``freeze``, no ``verification``)
and 2 are both drawn.

Figures are ``matplotlib.figure.Figure`` objects: no global backend is set and pyplot is
never imported, so plotting changes nothing in a caller's matplotlib state. PNGs are
rendered in memory and written with :func:`skipit.empirical.files.atomic_write_bytes`: a
reader sees the old file or the whole new one.
"""

from __future__ import annotations

import io
import math
import os

from skipit.empirical.files import atomic_write_bytes
from skipit.empirical.stats import threshold_key
from skipit.empirical.verification import layer_list, layer_runs

__all__ = ["redundancy_figure", "attention_figure", "plot_redundancy", "plot_attention", "write_plots",
           "ATTENTION_LABEL"]

VISION_COLOR = "#1f77b4"
TEXT_COLOR = "#d62728"
ATTENTION_COLOR = "#2ca02c"
LATE_SHADE = "#fdd49e"
EXIT_SHADE = "#c6dbef"
FREEZE_SHADE = "#d9d9d9"
VERIFIED_EDGE = "#54278f"
DPI = 110
ATTENTION_HEADROOM = 1.08
"""attention.png's y-axis reaches this factor above its largest value, so no marker touches the edge."""

ATTENTION_LABEL = "VAR_l / H: head-mean share of the answer query's attention on vision tokens"


def _number(value):
    """A plottable float: None (no tokens, no bound) becomes NaN, which matplotlib leaves out."""
    return math.nan if value is None else float(value)


def _title_name(certificate):
    model = certificate.get("model", {})
    name = str(model.get("name", "model"))
    return os.path.basename(name.rstrip("/")) if model.get("source") == "local" else name


def _figure(**kwargs):
    from matplotlib.figure import Figure

    return Figure(layout="constrained", **kwargs)


def _recommended_layers(certificate):
    """``(layers, label)`` of the verified recommended configuration, or None."""
    verification = certificate.get("verification") or {}
    best = verification.get("recommended")
    if not best:
        return None
    num_layers = len(certificate["layers"])
    mode = best.get("mode")
    if mode == "late-entry":
        layers, what = list(range(1, best["layer"])), f"vision enters at layer {best['layer']}"
    elif mode == "early-exit":
        layers, what = list(range(best["layer"] + 1, num_layers + 1)), f"vision leaves after layer {best['layer']}"
    elif mode == "freeze":
        layers = sorted(best.get("layers", []))
        what = ("vision frozen in layer " if len(layers) == 1 else "vision frozen in layers ") + layer_list(layers)
    else:
        return None
    speedup = best.get("predicted_speedup")
    return layers, f"verified recommendation: {what}" + (f" ({speedup:.2f}x predicted)" if speedup else "")


def _span(ax, layers, label, **style):
    for i, (first, last) in enumerate(layer_runs(layers)):
        # one legend entry per kind: labels starting with "_" stay out of the legend
        ax.axvspan(first - 0.5, last + 0.5, lw=0, label=label if i == 0 else "_" + label, **style)


def _shade_certified(ax, certificate):
    late = certificate["late_entry"]
    exit_ = certificate["early_exit"]
    if late["certified_layers"]:
        _span(ax, late["certified_layers"], f"late entry certified (vision enters layer {late['max_entry_layer']})",
              color=LATE_SHADE, alpha=0.6)
    if exit_["certified_layers"]:
        _span(ax, exit_["certified_layers"],
              f"early exit certified (vision leaves after layer {exit_['min_exit_layer']})", color=EXIT_SHADE,
              alpha=0.6)
    freeze = certificate.get("freeze") or {}
    if freeze.get("certified_layers"):
        _span(ax, freeze["certified_layers"], "freeze certified (per layer)", color=FREEZE_SHADE, alpha=0.35)
    recommended = _recommended_layers(certificate)
    if recommended and recommended[0]:
        _span(ax, recommended[0], recommended[1], facecolor="none", edgecolor=VERIFIED_EDGE, hatch="//", alpha=0.8)


def _layer_axis(ax, num_layers, label="layer l (compares layer l with layer l-1)"):
    ax.set_xlim(0.5, num_layers + 0.5)
    step = max(1, num_layers // 16)
    ax.set_xticks(range(1, num_layers + 1, step))
    ax.set_xlabel(label)
    ax.grid(True, alpha=0.3)


def redundancy_figure(certificate):
    """Figure-4-like ``Figure``: ``D_l`` and ``p_l(t)`` for vision and text with confidence bounds."""
    layers = certificate["layers"]
    s = certificate["settings"]
    eps, t = s["eps"], s["proximal_t"]
    t_key = threshold_key(t)
    x = [e["layer"] for e in layers]
    fig = _figure(figsize=(12, 4.6))
    ax_d, ax_p = fig.subplots(1, 2)
    for ax in (ax_d, ax_p):
        _shade_certified(ax, certificate)
        _layer_axis(ax, len(layers))
    for kind, color in (("vision", VISION_COLOR), ("text", TEXT_COLOR)):
        blocks = [e.get(kind, {}) for e in layers]
        ax_d.plot(x, [_number(b.get("mean_cosine_distance")) for b in blocks], "o-", color=color, ms=4,
                  label=f"{kind} D_l")
        ax_d.plot(x, [_number(b.get("mean_upper_bound")) for b in blocks], "v--", color=color, ms=4, alpha=0.7,
                  label=f"{kind} upper bound")
        ax_p.plot(x, [_number(b.get("proximal_probability", {}).get(t_key)) for b in blocks], "o-", color=color,
                  ms=4, label=f"{kind} p_l({t:g})")
        ax_p.plot(x, [_number(b.get("proximal_lower_bound", {}).get(t_key)) for b in blocks], "^--", color=color,
                  ms=4, alpha=0.7, label=f"{kind} lower bound")
    ax_d.axhline(eps, color="black", lw=1, ls=":", label=f"eps = {eps:g}")
    ax_d.set_yscale("log")
    ax_d.set_ylabel("mean cosine distance D_l (log scale)")
    ax_d.set_title("Geometric redundancy: E[rho(X_l, X_(l-1))] < eps")
    ax_p.axhline(1 - eps, color="black", lw=1, ls=":", label=f"1 - eps = {1 - eps:g}")
    ax_p.set_ylim(-0.02, 1.02)
    ax_p.set_ylabel(f"p_l(t) = P[rho < {t:g}]")
    ax_p.set_title(f"Proximal redundancy: P[rho(X_l, X_(l-1)) < {t:g}] > 1 - eps")
    ax_d.legend(fontsize=7, loc="best")
    ax_p.legend(fontsize=7, loc="best")
    fig.suptitle(f"{_title_name(certificate)}: per-layer redundancy, bounds from {behind_bounds(certificate)} "
                 f"at joint confidence {s['confidence']:g}", fontsize=11)
    return fig


def behind_bounds(certificate):
    """The units behind the per-layer bounds, in words: the statistics split's images and
    questions (``data.statistics_units`` / ``statistics_examples``; a ``/2`` certificate: its
    examples), not every example of the run (the calibration ones only verify)."""
    data = certificate["data"]
    units, questions = data.get("statistics_units"), data.get("statistics_examples")
    if units is not None and questions is not None:
        return f"{units} images ({questions} questions)"
    examples = max((e["vision"].get("examples") or 0 for e in certificate["layers"] if "vision" in e), default=0)
    return f"{examples} examples"


def attention_figure(certificate):
    """Figure-3-like ``Figure``: per layer, VAR_l / H of the answer query with its upper bound and threshold."""
    layers = certificate["layers"]
    s = certificate["settings"]
    x = [e["layer"] for e in layers]
    fig = _figure(figsize=(8, 4.4))
    ax = fig.subplots()
    _shade_certified(ax, certificate)
    _layer_axis(ax, len(layers), label="decoder layer l")
    means = [_number(e.get("visual_attention_mean_head")) for e in layers]
    uppers = [_number(e.get("visual_attention_upper_bound")) for e in layers]
    ax.bar(x, means, color=ATTENTION_COLOR, alpha=0.8, width=0.6, label="VAR_l / H (mean over examples)")
    ax.plot(x, uppers, "v", color="black", ms=5, label="upper confidence bound")
    ax.axhline(s["attention_threshold"], color="black", lw=1, ls=":",
               label=f"threshold = {s['attention_threshold']:g}")
    # room above the largest value (a bound of 1.0 is common): a marker on the edge is cut in half
    ax.set_ylim(0, max([1.0, s["attention_threshold"]] + [v for v in means + uppers if math.isfinite(v)])
                * ATTENTION_HEADROOM)
    ax.set_ylabel("VAR_l / H (head-mean vision share)")
    ax.set_title(f"{_title_name(certificate)}: {ATTENTION_LABEL}\nbounds from {behind_bounds(certificate)}",
                 fontsize=9)
    ax.legend(fontsize=7, loc="upper right")
    return fig


def _write_png(fig, path):
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI)
    atomic_write_bytes(path, buffer.getvalue())
    return path


def plot_redundancy(certificate, path):
    """Write :func:`redundancy_figure` to ``path`` (PNG, atomically); return ``path``."""
    return _write_png(redundancy_figure(certificate), path)


def plot_attention(certificate, path):
    """Write :func:`attention_figure` to ``path`` (PNG, atomically); return ``path``."""
    return _write_png(attention_figure(certificate), path)


def write_plots(certificate, out_dir):
    """Write ``redundancy.png`` and ``attention.png`` into ``out_dir``; return their paths."""
    os.makedirs(out_dir, exist_ok=True)
    return [plot_redundancy(certificate, os.path.join(out_dir, "redundancy.png")),
            plot_attention(certificate, os.path.join(out_dir, "attention.png"))]
