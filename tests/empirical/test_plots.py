"""Certificate figures: Figure objects (no global matplotlib state), atomic PNGs, schemas 1 and 2."""

import os
import sys

import pytest

pytest.importorskip("matplotlib")

from matplotlib.colors import to_hex  # noqa: E402

import skipit.empirical.plots as plots  # noqa: E402
from skipit.empirical.plots import ATTENTION_LABEL, attention_figure, redundancy_figure, write_plots  # noqa: E402

N = 6
T = 0.05


def _block(d, p):
    return {"tokens": 10, "mean_cosine_distance": d, "mean_upper_bound": d + 0.01,
            "proximal_probability": {repr(T): p}, "proximal_lower_bound": {repr(T): p - 0.1}}


def _certificate(schema=2, recommended=None):
    layers = []
    for l in range(1, N + 1):
        layers.append({"layer": l, "vision": _block(0.01 * l, 1 - 0.05 * l), "text": _block(0.02 * l, 0.9),
                       # the head sum (VAR) and the head mean (VAR/H) differ: a swap shows in the bars
                       "visual_attention_ratio": 0.4 * l / N * 4, "visual_attention_mean_head": 0.1 * l,
                       "visual_attention_upper_bound": None if l == 3 else 0.1 * l + 0.05})
    layers[4]["text"]["mean_cosine_distance"] = None  # a group without tokens
    cert = {"schema": f"skipit.certificate/{schema}", "model": {"name": "/x/tiny-model/", "source": "local"},
            "data": {"num_examples": 7}, "layers": layers,
            "settings": {"eps": 0.05, "proximal_t": T, "confidence": 0.95, "attention_threshold": 0.25},
            "late_entry": {"certified_layers": [1, 2], "max_entry_layer": 3},
            "early_exit": {"certified_layers": [6], "min_exit_layer": 5}}
    if schema == 2:
        cert["freeze"] = {"certified_layers": [1, 2, 4]}
        cert["verification"] = {"recommended": recommended, "configs": []}
    return cert


def _spans(ax):
    """(label, facecolor hex or 'none', hatch) of the shaded layer spans of an axes."""
    out = []
    for patch in ax.patches:
        if patch.get_hatch() or patch.get_label().lstrip("_").startswith(("late", "early", "freeze", "verified")):
            face = "none" if patch.get_facecolor()[3] == 0 else to_hex(patch.get_facecolor(), keep_alpha=False)
            out.append((patch.get_label(), face, patch.get_hatch()))
    return out


def test_attention_figure_names_what_it_shows_and_plots_the_head_mean_not_the_head_sum():
    fig = attention_figure(_certificate())
    ax = fig.axes[0]
    assert "head-mean share of the answer query's attention on vision tokens" in ATTENTION_LABEL
    assert ATTENTION_LABEL in ax.get_title() and "VAR_l / H" in ax.get_ylabel()
    (bars,) = ax.containers
    assert bars.get_label() == "VAR_l / H (mean over examples)"
    assert [round(b.get_height(), 12) for b in bars] == [round(0.1 * l, 12) for l in range(1, N + 1)]
    bound = [line for line in ax.lines if line.get_label() == "upper confidence bound"][0]
    y = list(bound.get_ydata())
    assert y[2] != y[2] and y[:2] == pytest.approx([0.15, 0.25])  # a missing bound is left out (NaN)


def test_schema_1_certificate_is_drawn_without_freeze_or_verification():
    cert = _certificate(schema=1)
    for fig in (redundancy_figure(cert), attention_figure(cert)):
        labels = [label for label, _, _ in _spans(fig.axes[0])]
        assert labels == ["late entry certified (vision enters layer 3)",
                          "early exit certified (vision leaves after layer 5)"]


def test_schema_2_shades_freeze_runs_and_hatches_the_verified_recommendation():
    recommended = {"mode": "late-entry", "layer": 3, "certified": True, "flops_fraction": 0.8,
                   "predicted_speedup": 1.25}
    fig = attention_figure(_certificate(recommended=recommended))
    spans = _spans(fig.axes[0])
    freeze = [s for s in spans if s[0].lstrip("_") == "freeze certified (per layer)"]
    # the runs [1, 2] and [4] are two spans, one of them in the legend
    assert freeze == [("freeze certified (per layer)", plots.FREEZE_SHADE, None),
                      ("_freeze certified (per layer)", plots.FREEZE_SHADE, None)]
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()].count("freeze certified (per layer)") == 1
    hatched = [s for s in spans if s[2]]
    assert hatched == [("verified recommendation: vision enters at layer 3 (1.25x predicted)", "none", "//")]


@pytest.mark.parametrize("best, label", [
    ({"mode": "early-exit", "layer": 4}, "vision leaves after layer 4"),
    ({"mode": "freeze", "layers": [4, 2]}, "vision frozen in layers 2,4"),
])
def test_recommended_modes_name_their_layers(best, label):
    layers, text = plots._recommended_layers(_certificate(recommended=best))
    assert layers == ([5, 6] if best["mode"] == "early-exit" else [2, 4]) and label in text


def test_redundancy_figure_reads_the_proximal_threshold_key_and_tolerates_missing_points():
    fig = redundancy_figure(_certificate())
    ax_d, ax_p = fig.axes
    vision_p = [line for line in ax_p.lines if line.get_label() == f"vision p_l({T:g})"][0]
    assert list(vision_p.get_ydata()) == pytest.approx([1 - 0.05 * l for l in range(1, N + 1)])
    text_d = [line for line in ax_d.lines if line.get_label() == "text D_l"][0]
    assert text_d.get_ydata()[4] != text_d.get_ydata()[4]


def test_pngs_are_written_through_atomic_write_bytes(tmp_path, monkeypatch):
    written = {}

    def record(path, data):
        written[os.path.basename(path)] = data

    monkeypatch.setattr(plots, "atomic_write_bytes", record)
    paths = write_plots(_certificate(), tmp_path)
    assert [os.path.basename(p) for p in paths] == ["redundancy.png", "attention.png"]
    assert sorted(written) == ["attention.png", "redundancy.png"]
    assert all(data.startswith(b"\x89PNG\r\n\x1a\n") for data in written.values())
    assert os.listdir(tmp_path) == []  # nothing written beside the atomic writer


def test_plotting_sets_no_global_backend_and_never_imports_pyplot(tmp_path, monkeypatch):
    """With ``matplotlib.use`` and ``import matplotlib.pyplot`` made to fail, both PNGs are still written."""
    import matplotlib

    def no_use(*args, **kwargs):
        raise AssertionError("plots set a global matplotlib backend")

    monkeypatch.setattr(matplotlib, "use", no_use)
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)  # any import of pyplot raises ImportError
    write_plots(_certificate(), tmp_path)
    assert sorted(os.listdir(tmp_path)) == ["attention.png", "redundancy.png"]


def _marker_tops_px(fig, ax, line):
    """Display-space top of every finite marker of ``line`` (its centre plus half its size)."""
    fig.draw_without_rendering()
    half = line.get_markersize() / 2 * fig.dpi / 72
    return [ax.transData.transform((x, y))[1] + half for x, y in zip(line.get_xdata(), line.get_ydata()) if y == y]


@pytest.mark.parametrize("top", [1.0, 1.1])
def test_attention_upper_bound_markers_are_not_cut_off_at_the_top(top):
    """An upper bound of 1.0 (the common saturated case) or above draws its whole marker:
    the y-axis ends above the largest marker, not at 1.0."""
    cert = _certificate()
    cert["layers"][-1]["visual_attention_upper_bound"] = top
    fig = attention_figure(cert)
    ax = fig.axes[0]
    bound = [line for line in ax.lines if line.get_label() == "upper confidence bound"][0]
    assert ax.get_ylim()[0] == 0 and ax.get_ylim()[1] > top
    assert max(_marker_tops_px(fig, ax, bound)) <= ax.get_window_extent().y1


def test_evaluation_figure_labels_both_y_axes_of_its_lower_panel(tmp_path, monkeypatch):
    from matplotlib.figure import Figure

    from skipit.empirical.evaluate_report import plot_report

    drawn = []
    monkeypatch.setattr(Figure, "savefig", lambda self, *a, **k: drawn.append(self))
    monkeypatch.setattr("skipit.empirical.evaluate_report.atomic_write_bytes", lambda path, data: None)
    rows = [{"mode": "late-entry", "layer": l, "accuracy": 0.9, "certified": l == 1} for l in (1, 2)]
    stats = [{"layer": l, "D_vision": 0.01 * l, "p005_vision": 0.9, "visual_attention_ratio": 0.2} for l in (1, 2)]
    report = {"settings": {"layers": [1, 2], "tolerance": 0.05, "modes": ["late-entry"]},
              "full": {"accuracy": 0.9}, "rows": rows, "layer_statistics": stats}
    plot_report(report, str(tmp_path / "evaluation.png"))
    (fig,) = drawn
    upper, lower, right = fig.axes
    assert upper.get_ylabel() == "accuracy" and right.get_ylabel() == "visual attention ratio"
    assert "D_l" in lower.get_ylabel() and "p_l(0.05)" in lower.get_ylabel()
