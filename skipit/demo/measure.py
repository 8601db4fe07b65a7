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

plus ``freeze_last_half_changed`` (layers ``N/2+1..N`` frozen together) and the accuracy per
question type. Answers are read as the bundled sets score them (:mod:`skipit.empirical.answers`:
one token for ``letter`` examples, greedy generation for ``exact`` ones) and compared after the
metric's normalisation. The unit of every share is the question.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

FIGURES_FILE = "measurements.json"
THRESHOLDS = (0.01, 0.05, 0.1)


def _batches(examples, size):
    for start in range(0, len(examples), size):
        yield examples[start:start + size]


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

    def per_layer(key, group=None, sub=None):
        out = []
        for entry in layers:
            value = entry[group][key] if group else entry[key]
            out.append(value[sub] if sub is not None else value)
        return out

    keys = [k for k in layers[0]["vision"]["proximal_probability"]]
    return {
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
        "seconds": round(time.perf_counter() - t0, 1),
    }


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


def main(argv=None) -> int:
    from skipit.demo import DEMO_MODELS, demo_model_dir

    parser = argparse.ArgumentParser(prog="python -m skipit.demo.measure", description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="demo", choices=tuple(DEMO_MODELS))
    parser.add_argument("--limit", type=int, default=None, help="first N test questions (default: all)")
    parser.add_argument("--out", default=None, help=f"JSON file (default: {FIGURES_FILE} beside the weights)")
    args = parser.parse_args(argv)
    figures = measure(args.model, args.limit, log=lambda msg: print(msg, file=sys.stderr, flush=True))
    out = Path(args.out) if args.out else demo_model_dir(args.model) / FIGURES_FILE
    out.write_text(json.dumps(figures, indent=1) + "\n")
    print(table(figures))
    print(f"accuracy: {figures['accuracy']}")
    print(f"freeze layers {figures['freeze_last_half']}: {figures['freeze_last_half_changed']:.4f} changed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
