"""Does a verified "yes" hold on new data?  Certify + verify on many random splits of the demo data.

Run by hand (minutes on 2 CPU cores); its figures go into the README ("Validation of the
verified guarantee"). For each of ``--splits`` random splits of the bundled test questions
into a certify part (statistics + calibration, exactly as ``skipit certify`` splits it) and a
held-out part, it:

1. builds the certificate's layers from the statistics examples (the capture engine's
   per-example statistics, merged exactly), orders the freeze chain, and runs the three
   fixed-sequence chains on the calibration examples with the same pure functions
   ``skipit certify`` uses (:mod:`skipit.empirical.certificate`);
2. measures, on the held-out examples, the answer-change rate of every certified
   configuration; a split *violates* the guarantee when some certified configuration
   changes more than ``tau`` of the held-out answers;
3. compares the FLOPs saved by the recommended configuration with those of the oracle:
   the candidate with the fewest FLOPs whose held-out change rate is within ``tau``.

Answers of every candidate on every example are computed once (the model is
deterministic), so the splits only re-count. It also reports how well each freeze order
predicts harm: Spearman's rank correlation between a layer's score (``U_l``, or ShortV's
contribution) and the change rate of freezing that layer alone, over all examples.

Usage: ``python benchmarks/study_verification.py [--splits 20] [--holdout 0.5] [--freeze-order redundancy]``
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--splits", type=int, default=20)
    p.add_argument("--holdout", type=float, default=0.5, help="fraction of the questions held out")
    p.add_argument("--tolerance", type=float, default=0.05)
    p.add_argument("--confidence", type=float, default=0.95)
    p.add_argument("--freeze-order", default="contribution", choices=["redundancy", "contribution"])
    p.add_argument("--samples", type=int, default=0, help="first N bundled test questions (0 = all)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--out", default="benchmarks/results/study_verification.json")
    args = p.parse_args(argv)

    import torch
    from scipy import stats as sps

    from skipit.empirical import capture_statistics
    from skipit.empirical.certificate import (
        CertifySettings, candidate_chains, certificate_layers, freeze_order, split_indices,
        run_chains, verification_block,
    )
    from skipit.empirical.certify import layer_contributions
    from skipit.empirical.data import build_inputs, load_examples
    from skipit.empirical.evaluate import normalise_answer, predict, token_counts
    from skipit.empirical.flops import config_flops_fraction
    from skipit.empirical.loading import load_model_and_processor
    from skipit.empirical.modes import skip_context

    torch.set_num_threads(1)
    t0 = time.perf_counter()
    model, processor, info = load_model_and_processor(None, device="cpu")
    examples, _ = load_examples("digits-test", limit=args.samples or None)
    n_all = len(examples)
    from skipit.empirical.adapters import get_adapter

    adapter = get_adapter(model)
    N = adapter.num_layers(model)
    settings = CertifySettings(tolerance=args.tolerance, confidence=args.confidence, freeze_order=args.freeze_order)

    def say(msg):
        print(f"[{time.perf_counter() - t0:6.0f} s] {msg}", file=sys.stderr, flush=True)

    # per-example statistics (merged exactly for any subset) and per-example layer contributions
    say(f"per-example statistics of {n_all} examples")
    per_example = []
    with torch.inference_mode():
        for i, ex in enumerate(examples):
            with capture_statistics(model, adapter=adapter, thresholds=settings.thresholds, cka=False,
                                    attention=True) as cap:
                model(**build_inputs(processor, [ex], model=model))
            per_example.append(cap.statistics)
    contributions = {}

    def contribution(i):
        """ShortV layer contributions of example i (KL(full || layer l frozen), l = 1..N), cached."""
        if i not in contributions:
            with torch.inference_mode():
                scores = layer_contributions(model, processor, [examples[i]], adapter, 1)
            contributions[i] = np.array([scores[l] for l in range(1, N + 1)])
        return contributions[i]

    def merged(indices):
        total = per_example[indices[0]]
        for i in indices[1:]:
            total = total.merge(per_example[i])
        return total

    answers = {}

    def answers_of(mode, arg):
        key = (mode, tuple(arg) if isinstance(arg, list) else arg)
        if key not in answers:
            say(f"answers of {mode} {arg} on {n_all} examples")
            preds, _, _ = predict(model, processor, examples, args.batch_size, adapter=adapter,
                                  context=(None if mode == "full" else (lambda: skip_context(model, mode, arg, adapter))))
            answers[key] = np.array([normalise_answer(p) for p in preds])
        return answers[key]

    full = answers_of("full", None)
    counts = token_counts(model, processor, examples, args.batch_size, adapter)

    def changed(config, idx):
        arg = config.get("layers", config.get("layer"))
        return int((answers_of(config["mode"], arg)[idx] != full[idx]).sum())

    def flops(config, idx):
        arg = config.get("layers", config.get("layer"))
        return config_flops_fraction(model.config, config["mode"], arg, [counts[i] for i in idx])

    # how well each order predicts harm: single-layer freeze change rate over all examples
    everything = list(range(n_all))
    single = {l: changed({"mode": "freeze", "layers": [l]}, everything) / n_all for l in range(1, N)}
    layers_all = certificate_layers(merged(everything).layers(), n_all, settings)
    u_all = {l: layers_all[l - 1]["vision"]["mean_upper_bound"] for l in range(1, N)}
    d_all = {l: layers_all[l - 1]["vision"]["example_mean_cosine_distance"] for l in range(1, N)}
    ranks = {"U_l": sps.spearmanr([u_all[l] for l in range(1, N)], [single[l] for l in range(1, N)]).statistic,
             "D_l": sps.spearmanr([d_all[l] for l in range(1, N)], [single[l] for l in range(1, N)]).statistic}
    if args.freeze_order == "contribution":
        say("layer contributions (ShortV) of every example")
        c_all = np.mean([contribution(i) for i in everything], axis=0)
        ranks["contribution"] = sps.spearmanr([c_all[l - 1] for l in range(1, N)],
                                              [single[l] for l in range(1, N)]).statistic

    rng = np.random.default_rng(12345)
    rows = []
    for s in range(args.splits):
        perm = rng.permutation(n_all)
        n_hold = int(round(args.holdout * n_all))
        held = np.sort(perm[:n_hold])
        certify_part = np.sort(perm[n_hold:])
        stats_local, calib_local = split_indices(len(certify_part), settings)
        stats_idx, calib_idx = certify_part[stats_local], certify_part[calib_local]
        layers = certificate_layers(merged(list(stats_idx)).layers(), len(stats_idx), settings)
        if args.freeze_order == "contribution":
            mean = np.mean([contribution(i) for i in stats_idx[:settings.order_examples]], axis=0)
            scores = {l: float(mean[l - 1]) for l in range(1, N + 1)}
        else:
            scores = {e["layer"]: e["vision"]["mean_upper_bound"] for e in layers}
        order = freeze_order(layers, scores)
        chains = run_chains(candidate_chains(layers, order), len(calib_idx), lambda c: changed(c, calib_idx),
                            lambda c: flops(c, calib_idx), settings)
        block = verification_block(chains, settings, len(calib_idx))
        certified = [c for c in block["configs"] if c["certified"]]
        held_rates = [changed(c, held) / len(held) for c in certified]
        violation = any(r > settings.tolerance for r in held_rates)
        # oracle with hindsight: every candidate of the three chains, held-out rate within tau
        all_cands = [c for cands in candidate_chains(layers, order).values() for c in cands]
        ok = [c for c in all_cands if changed(c, held) / len(held) <= settings.tolerance]
        oracle = min((flops(c, held) for c in ok), default=1.0)
        rec = block["recommended"]
        rec_f = flops(rec, held) if rec else 1.0
        rows.append({"split": s, "certified": len(certified), "violation": violation,
                     "max_held_rate": max(held_rates, default=None),
                     "recommended": None if rec is None else {k: rec.get(k) for k in ("mode", "layer", "layers")},
                     "saved_recommended": 1.0 - rec_f, "saved_oracle": 1.0 - oracle})
        say(f"split {s}: {len(certified)} certified, violation {violation}, saved {1 - rec_f:.3f} "
            f"(oracle {1 - oracle:.3f}), recommended {rows[-1]['recommended']}")

    violations = sum(r["violation"] for r in rows)
    saved_rec = float(np.mean([r["saved_recommended"] for r in rows]))
    saved_orc = float(np.mean([r["saved_oracle"] for r in rows]))
    # a one-sided 95% upper bound on the violation probability from the splits (they overlap, so this
    # treats them as independent draws, which they are not quite)
    upper = float(sps.beta.ppf(0.95, violations + 1, len(rows) - violations)) if violations < len(rows) else 1.0
    summary = {
        "examples": n_all, "splits": len(rows), "holdout": args.holdout, "tolerance": settings.tolerance,
        "confidence": settings.confidence, "freeze_order": args.freeze_order,
        "violation_rate": violations / len(rows), "violation_rate_upper95": upper,
        "mean_flops_saved_recommended": saved_rec, "mean_flops_saved_oracle": saved_orc,
        "oracle_ratio": saved_rec / saved_orc if saved_orc > 0 else None,
        "single_layer_freeze_change_rate": single, "spearman_order_vs_harm": ranks,
        "seconds": time.perf_counter() - t0, "rows": rows,
    }
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    with open(args.out, "w") as fh:
        json.dump(summary, fh, indent=1, default=float)
    print(f"{len(rows)} splits of {n_all} bundled test questions ({args.holdout:.0%} held out), tau = "
          f"{settings.tolerance:g}, confidence {settings.confidence:g}, freeze order {args.freeze_order}")
    print(f"realized violation rate: {violations}/{len(rows)} = {violations / len(rows):.3f} "
          f"(target <= {1 - settings.confidence:.3f}; 95% upper bound {upper:.3f})")
    print(f"mean FLOPs saved: recommended {saved_rec:.3f}, oracle with hindsight {saved_orc:.3f}"
          + (f" (ratio {saved_rec / saved_orc:.2f})" if saved_orc > 0 else ""))
    print("Spearman rank correlation of a layer's score with its single-layer freeze change rate: "
          + ", ".join(f"{k} {v:+.2f}" for k, v in ranks.items()))
    print(f"wrote {args.out} in {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
