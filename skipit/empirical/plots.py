"""PNG figures of a certificate, like the paper's Figures 3 and 4.

* ``redundancy.png`` (Figure 4): per layer, the mean cosine distance ``D_l`` of vision and
  text tokens with its upper confidence bound and the level ``eps``; the proximal
  probability ``p_l(t)`` with its lower confidence bound and the level ``1 - eps``.
* ``attention.png`` (Figure 3): per layer, the visual attention share of the answer
  query (mean over heads) with its upper confidence bound and the attention threshold.

Layers certified for late entry (skippable by vision before the entry layer) and early
exit (after the exit layer) are shaded in every panel. Matplotlib with the Agg backend;
nothing is shown on screen.
"""

from __future__ import annotations

import os

VISION_COLOR = "#1f77b4"
TEXT_COLOR = "#d62728"
ATTENTION_COLOR = "#2ca02c"
LATE_SHADE = "#fdd49e"
EXIT_SHADE = "#c6dbef"


def _title_name(certificate):
    name = str(certificate["model"].get("name", "model"))
    return os.path.basename(name.rstrip("/")) if certificate["model"].get("source") == "local" else name


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _shade_certified(ax, certificate):
    late = certificate["late_entry"]["certified_layers"]
    exit_ = certificate["early_exit"]["certified_layers"]
    handles = []
    if late:
        handles.append(ax.axvspan(min(late) - 0.5, max(late) + 0.5, color=LATE_SHADE, alpha=0.6, lw=0,
                                  label=f"late entry certified (vision enters layer "
                                        f"{certificate['late_entry']['max_entry_layer']})"))
    if exit_:
        handles.append(ax.axvspan(min(exit_) - 0.5, max(exit_) + 0.5, color=EXIT_SHADE, alpha=0.6, lw=0,
                                  label=f"early exit certified (vision leaves after layer "
                                        f"{certificate['early_exit']['min_exit_layer']})"))
    return handles


def _layer_axis(ax, num_layers, label="layer l (compares layer l with layer l-1)"):
    ax.set_xlim(0.5, num_layers + 0.5)
    step = max(1, num_layers // 16)
    ax.set_xticks(range(1, num_layers + 1, step))
    ax.set_xlabel(label)
    ax.grid(True, alpha=0.3)


def plot_redundancy(certificate, path):
    """Figure-4-like PNG: ``D_l`` and ``p_l(t)`` for vision and text with confidence bounds."""
    plt = _pyplot()
    layers = certificate["layers"]
    s = certificate["settings"]
    eps, t = s["eps"], s["proximal_t"]
    t_key = repr(float(t))
    x = [e["layer"] for e in layers]
    fig, (ax_d, ax_p) = plt.subplots(1, 2, figsize=(12, 4.6), constrained_layout=True)
    for ax in (ax_d, ax_p):
        _shade_certified(ax, certificate)
        _layer_axis(ax, len(layers))
    for kind, color in (("vision", VISION_COLOR), ("text", TEXT_COLOR)):
        d = [e[kind]["mean_cosine_distance"] for e in layers]
        du = [e[kind]["mean_upper_bound"] for e in layers]
        ax_d.plot(x, d, "o-", color=color, ms=4, label=f"{kind} D_l")
        ax_d.plot(x, du, "v--", color=color, ms=4, alpha=0.7, label=f"{kind} upper bound")
        p = [e[kind]["proximal_probability"][t_key] for e in layers]
        pl = [e[kind]["proximal_lower_bound"][t_key] for e in layers]
        ax_p.plot(x, p, "o-", color=color, ms=4, label=f"{kind} p_l({t:g})")
        ax_p.plot(x, pl, "^--", color=color, ms=4, alpha=0.7, label=f"{kind} lower bound")
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
    conf = s["confidence"]
    fig.suptitle(f"{_title_name(certificate)}: per-layer redundancy, {certificate['data']['num_examples']} "
                 f"examples, bounds at joint confidence {conf:g}", fontsize=11)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_attention(certificate, path):
    """Figure-3-like PNG: visual attention share of the answer query per layer, with bound and threshold."""
    plt = _pyplot()
    layers = certificate["layers"]
    s = certificate["settings"]
    x = [e["layer"] for e in layers]
    fig, ax = plt.subplots(figsize=(8, 4.4), constrained_layout=True)
    _shade_certified(ax, certificate)
    _layer_axis(ax, len(layers), label="decoder layer l")
    ax.bar(x, [float("nan") if e["visual_attention_mean_head"] is None else e["visual_attention_mean_head"]
               for e in layers], color=ATTENTION_COLOR, alpha=0.8, width=0.6,
           label="visual attention (answer query, mean over heads)")
    ax.plot(x, [e["visual_attention_upper_bound"] for e in layers], "v", color="black", ms=5,
            label="upper confidence bound")
    ax.axhline(s["attention_threshold"], color="black", lw=1, ls=":",
               label=f"threshold = {s['attention_threshold']:g}")
    ax.set_ylim(0, 1.0)
    ax.set_ylabel("share of attention on vision tokens")
    ax.set_title(f"{_title_name(certificate)}: visual attention ratio per layer")
    ax.legend(fontsize=7, loc="upper right")
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_plots(certificate, out_dir):
    """Write ``redundancy.png`` and ``attention.png`` into ``out_dir``; return their paths."""
    os.makedirs(out_dir, exist_ok=True)
    return [plot_redundancy(certificate, os.path.join(out_dir, "redundancy.png")),
            plot_attention(certificate, os.path.join(out_dir, "attention.png"))]
