"""What a bundled demo model does with its vision tokens, measured with skipit's own instruments.

``python -m skipit.demo.measure --model demo`` (or ``demo-dense``) runs the model over its whole
bundled test set (:data:`skipit.demo.DEMO_DATA`) and writes ``measurements.json`` beside the
weights (``--out FILE`` elsewhere). Per decoder layer ``l = 1..N``:

* ``attention_share``: the answer query's head-mean attention share on the vision tokens
  (:class:`skipit.empirical.attention.AttentionProbe`, through :func:`capture_statistics`),
  the mean over examples;
* ``D_vision`` / ``D_text``: the mean cosine distance between the layer's input and output
  (eq. 1), over tokens; ``p_vision`` / ``p_text``: the share of tokens that moved less than
  each threshold ``t`` (eq. 2);
* ``freeze_changed``: the share of answers that change when the vision tokens are frozen in
  layer ``l`` alone (:func:`skipit.empirical.skipping.freeze`);
* ``late_entry_changed`` / ``early_exit_changed``: the share of answers that change under late
  entry at ``L = l`` and early exit at ``L = l``;

* ``contribution``: ShortV's layer contribution, the mean ``KL(full || layer l frozen)`` of the
  answer-token distribution (:func:`skipit.empirical.certify_run.layer_contributions`, the
  score ``skipit certify --freeze-order contribution`` orders by), over all test questions;

plus ``freeze_last_half_changed`` (layers ``N/2+1..N`` frozen together), the accuracy per
question type, and ``freeze_rank_correlation`` (:func:`freeze_rank_correlations`: does a
layer's score predict how many answers freezing it alone changes?). Answers are read as the bundled sets score them (:mod:`skipit.empirical.answers`:
one token for ``letter`` examples, greedy generation for ``exact`` ones) and compared after the
metric's normalisation. The unit of every share is the question.

``--correlations-only`` reads an existing ``measurements.json`` and adds only ``contribution``
and ``freeze_rank_correlation`` (about a minute instead of the whole measurement).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

FIGURES_FILE = "measurements.json"
THRESHOLDS = (0.01, 0.05, 0.1)
RANKED_SCORES = ("D_vision", "D_text", "attention_share", "contribution")
"""Per-layer scores :func:`freeze_rank_correlations` ranks against ``freeze_changed``."""
LAYER_INDEX = "layer_index"
"""The baseline score: the layer's position ``l`` itself (does a score rank better than depth?)."""


def _batches(examples, size):
    for start in range(0, len(examples), size):
        yield examples[start:start + size]


def freeze_rank_correlations(figures: dict) -> dict:
    """Spearman's rank correlation (:func:`scipy.stats.spearmanr`, ties at their mean rank)
    between each per-layer score of :data:`RANKED_SCORES` in ``figures`` (and
    :data:`LAYER_INDEX`, ``l`` itself) and ``freeze_changed``, pairing layer ``l``'s score with
    layer ``l``'s rate, over the layers ``l = 1..N-1``.

    Layer ``N`` is left out: freezing the vision tokens in the last layer changes no answer by
    construction (no later layer reads their output, and in layer ``N`` the other tokens read
    them through keys and values made from its input), so its rate is 0 whatever its score. The unit is the layer (``N - 1``
    pairs); ``p_value`` is scipy's two-sided test of no correlation, which treats the layers as
    independent (they are not: one model, one question set). A constant score or rate has no
    rank correlation: ``None``. Returns ``{"layers": [1..N-1], score: {"spearman", "p_value"}}``
    for the layer index and the scores present."""
    from scipy.stats import spearmanr

    n = figures["layers"]
    if len(figures["freeze_changed"]) != n:
        raise ValueError(f"`freeze_changed` must hold one rate per layer ({n}), got {len(figures['freeze_changed'])}")
    layers = list(range(1, n))
    rates = [figures["freeze_changed"][l - 1] for l in layers]
    out: dict = {"layers": layers}
    per_layer = {LAYER_INDEX: list(range(1, n + 1)), **{k: figures[k] for k in RANKED_SCORES if k in figures}}
    for key, values in per_layer.items():
        if len(values) != n:
            raise ValueError(f"`{key}` must hold one score per layer ({n}), got {len(values)}")
        scores = [values[l - 1] for l in layers]
        if len(set(scores)) < 2 or len(set(rates)) < 2:
            out[key] = {"spearman": None, "p_value": None}
            continue
        result = spearmanr(scores, rates)
        out[key] = {"spearman": float(result.statistic), "p_value": float(result.pvalue)}
    return out


def contributions(model, processor, examples, batch_size: int = 128) -> list[float]:
    """ShortV's layer contribution of layers ``1..N`` over ``examples``, in layer order
    (:func:`skipit.empirical.certify_run.layer_contributions`)."""
    import torch

    from skipit.empirical.certify_run import layer_contributions
    from skipit.empirical.skipping import resolve_adapter

    with torch.inference_mode():
        by_layer = layer_contributions(model, processor, examples, resolve_adapter(model), batch_size)
    return [by_layer[l] for l in sorted(by_layer)]


def add_correlations(figures: dict, batch_size: int = 128, log=print) -> dict:
    """``figures`` (a ``measurements.json`` of :func:`measure`) with ``contribution`` measured
    on the same questions (its first ``figures["questions"]`` test questions) and
    ``freeze_rank_correlation`` added; every other key is kept as it is."""
    from skipit.demo import load_demo_model
    from skipit.empirical.data import load_examples

    t0 = time.perf_counter()
    model, processor = load_demo_model(name=figures["model"])
    examples, _ = load_examples(figures["data"], limit=figures["questions"])
    out = dict(figures)
    out["contribution"] = contributions(model, processor, examples, batch_size)
    out["contribution_questions"] = len(examples)
    out["freeze_rank_correlation"] = freeze_rank_correlations(out)
    log(f"contribution: {time.perf_counter() - t0:.0f} s")
    return out


def measure(name: str = "demo", limit: int | None = None, batch_size: int = 128, log=print) -> dict:
    """The figures listed in the module docstring for the bundled demo model ``name`` on its
    bundled test set (the first ``limit`` questions; None: all)."""
    import torch

    from skipit.demo import BUNDLED_DATASETS, DEMO_DATA, digits_vqa_records, load_demo_model
    from skipit.empirical.answers import answers_changed, comparable_answers, predict_answers
    from skipit.empirical.capture import capture_statistics
    from skipit.empirical.data import build_inputs, load_examples
    from skipit.empirical.loading import to_model_inputs
    from skipit.empirical.metrics import score_one
    from skipit.empirical.skipping import early_exit, freeze, late_entry

    t0 = time.perf_counter()
    model, processor = load_demo_model(name=name)
    data = DEMO_DATA[name]
    examples, _ = load_examples(data, limit=limit)
    records = digits_vqa_records(**BUNDLED_DATASETS[data])[:len(examples)]
    types = [r["type"] for r in records]
    n_layers = model.config.text_config.num_hidden_layers

    with torch.inference_mode(), capture_statistics(model, thresholds=THRESHOLDS, cka=False) as cap:
        for chunk in _batches(examples, batch_size):
            model(**to_model_inputs(build_inputs(processor, chunk, model), model))
    layers = cap.statistics.layers()
    log(f"statistics: {time.perf_counter() - t0:.0f} s")

    # one-token (letter) questions apart from generated ones: a batch of letters needs one forward
    order = sorted(range(len(examples)), key=lambda i: examples[i].metric != "letter")
    ordered = [examples[i] for i in order]

    def answers(context=None):
        with torch.inference_mode():
            got = predict_answers(model, processor, ordered, batch_size=batch_size, context=context)
        back = [""] * len(examples)
        for i, a in zip(order, got):
            back[i] = a
        return comparable_answers(back, examples)

    full = answers()

    def changed(context):
        return sum(answers_changed(full, answers(context))) / len(examples)

    correct = {}
    for ex, t, a in zip(examples, types, full):
        correct.setdefault(t, []).append(score_one(a, ex.answers, ex.metric or "letter"))
    accuracy = {t: sum(v) / len(v) for t, v in correct.items()}
    accuracy["all"] = sum(sum(v) for v in correct.values()) / len(examples)

    freeze_changed = [changed(lambda l=l: freeze(model, [l])) for l in range(1, n_layers + 1)]
    log(f"freeze: {time.perf_counter() - t0:.0f} s")
    half = list(range(n_layers // 2 + 1, n_layers + 1))
    last_half = changed(lambda: freeze(model, half))
    late = [changed(lambda l=l: late_entry(model, l)) for l in range(1, n_layers + 1)]
    early = [changed(lambda l=l: early_exit(model, l)) for l in range(1, n_layers + 1)]
    log(f"skips: {time.perf_counter() - t0:.0f} s")
    contribution = contributions(model, processor, examples, batch_size)

    def per_layer(key, group=None, sub=None):
        out = []
        for entry in layers:
            value = entry[group][key] if group else entry[key]
            out.append(value[sub] if sub is not None else value)
        return out

    keys = [k for k in layers[0]["vision"]["proximal_probability"]]
    figures = {
        "model": name, "data": data, "questions": len(examples),
        "images": len({r["image_index"] for r in records}),
        "layers": n_layers, "accuracy": accuracy,
        "attention_share": per_layer("visual_attention_mean_head"),
        "D_vision": per_layer("mean_cosine_distance", "vision"),
        "D_text": per_layer("mean_cosine_distance", "text"),
        "p_vision": {k: per_layer("proximal_probability", "vision", k) for k in keys},
        "p_text": {k: per_layer("proximal_probability", "text", k) for k in keys},
        "freeze_changed": freeze_changed,
        "freeze_last_half": half, "freeze_last_half_changed": last_half,
        "late_entry_changed": late, "early_exit_changed": early,
        "contribution": contribution, "contribution_questions": len(examples),
        "seconds": round(time.perf_counter() - t0, 1),
    }
    figures["freeze_rank_correlation"] = freeze_rank_correlations(figures)
    return figures


def table(figures: dict) -> str:
    """The per-layer figures as a Markdown table (the model cards quote it)."""
    keys = list(figures["p_vision"])
    head = ("| layer | attention share | D vision | D text | " + " | ".join(f"p vision {k}" for k in keys)
            + " | " + " | ".join(f"p text {k}" for k in keys) + " | freeze | late entry | early exit |")
    rows = [head, "|" + "---|" * (head.count("|") - 1)]
    for i in range(figures["layers"]):
        cells = [str(i + 1), f"{figures['attention_share'][i]:.3f}", f"{figures['D_vision'][i]:.3f}",
                 f"{figures['D_text'][i]:.3f}", *(f"{figures['p_vision'][k][i]:.2f}" for k in keys),
                 *(f"{figures['p_text'][k][i]:.2f}" for k in keys), f"{figures['freeze_changed'][i]:.3f}",
                 f"{figures['late_entry_changed'][i]:.3f}", f"{figures['early_exit_changed'][i]:.3f}"]
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


def correlation_summary(correlations: dict) -> str:
    """One line: each score's Spearman against the single-layer freeze change rate."""
    layers = correlations["layers"]
    parts = [f"{k} {v['spearman']:+.2f}" if v["spearman"] is not None else f"{k} undefined"
             for k, v in correlations.items() if k != "layers"]
    return f"Spearman against the freeze change rate, layers {layers[0]}-{layers[-1]}: " + ", ".join(parts)


def main(argv=None) -> int:
    from skipit.demo import DEMO_MODELS, demo_model_dir

    parser = argparse.ArgumentParser(prog="python -m skipit.demo.measure", description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="demo", choices=tuple(DEMO_MODELS))
    parser.add_argument("--limit", type=int, default=None, help="first N test questions (default: all)")
    parser.add_argument("--out", default=None, help=f"JSON file (default: {FIGURES_FILE} beside the weights)")
    parser.add_argument("--correlations-only", action="store_true",
                        help="read the existing JSON file and add only ShortV's contribution and the freeze rank "
                             "correlations (keeps every other figure)")
    args = parser.parse_args(argv)
    say = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
    out = Path(args.out) if args.out else demo_model_dir(args.model) / FIGURES_FILE
    if args.correlations_only:
        if args.limit is not None:
            parser.error("--limit does not apply with --correlations-only (the file's own questions are used)")
        figures = json.loads(out.read_text())
        if figures["model"] != args.model:
            parser.error(f"--model is {args.model!r} but {out} measures {figures['model']!r}")
        figures = add_correlations(figures, log=say)
    else:
        figures = measure(args.model, args.limit, log=say)
    out.write_text(json.dumps(figures, indent=1) + "\n")
    print(table(figures))
    print(f"accuracy: {figures['accuracy']}")
    print(f"freeze layers {figures['freeze_last_half']}: {figures['freeze_last_half_changed']:.4f} changed")
    print(correlation_summary(figures["freeze_rank_correlation"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
