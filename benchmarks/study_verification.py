"""Does the verified guarantee hold for the population, and how much does it certify?

Run by hand (minutes on 2 CPU cores; the first run fills a cache); its figures go into
``benchmarks/README.md`` and the top-level README. The population is every bundled test
question of ``--data`` (default: the bundled set of the demo model ``--model`` names,
``skipit.demo.default_data_for``: ``digits-reason-test`` for ``demo``, ``digits-test`` for ``demo-dense``). The study:

1. computes, once, the full model's answer and every pool candidate's answer on every
   question of the population, and caches the per-question change indicators per candidate
   (``--cache``), with ShortV's per-question layer contribution (certify's tie-break of the
   freeze order); a candidate first asked for by a split (a freeze set or composition the
   learn step builds) is run on the questions that split reads (its learn sample, and its
   calibration split if the candidate is in the chain) and, once it is in some chain, on the
   whole population;
2. for each of ``--splits`` random splits (``split_seed = 0, 1, ...``) of the population's
   images into a statistics and a calibration part at the default calibration fraction,
   runs the real learn / choose / verify steps of ``skipit certify``
   (:func:`skipit.empirical.verification.verify_splits` with the cached indicators: pure
   arithmetic), for each ``tau`` of ``--taus``;
3. judges every certified configuration against the **population**: a split *violates*
   the guarantee when some certified configuration's population change rate exceeds
   ``tau``. It reports the violation rate with its exact (Clopper-Pearson) two-sided 95%
   interval, the share of splits with no recommendation, and the oracle ratio: the mean
   FLOPs saved by the recommendation over those saved by the hindsight oracle (the
   candidate with the fewest FLOPs whose population change rate is at most ``tau``, among
   those whose population rate the run computed: the pool, the freeze sets and compositions
   the learn step builds on the population itself, every candidate some split's chain held,
   and any whose questions the learn samples covered entirely);
4. a hard case: ``tau`` just below the population rate of the configuration recommended
   most often at the middle ``tau`` (so testing it is a true null), where the violation
   rate must stay at most the chain's level;
5. ``--judge DATA`` (e.g. ``digits-reason-val``): the certified configurations of a report
   judged on images outside the population (its calibration images are 60% of it).

Usage: ``python benchmarks/study_verification.py [--model DIR] [--splits 200] [--taus 0.02 0.05 0.1]``
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np


def population(args, say):
    """``(model, processor, examples, units, counts, changed_of)``: the population and a
    function giving a candidate's per-question change indicators (bool array, cached)."""
    import torch

    from skipit.empirical.adapters import get_adapter
    from skipit.empirical.answers import answers_changed, comparable_answers
    from skipit.empirical.candidates import candidate_context
    from skipit.empirical.certify_run import layer_contribution_rows
    from skipit.empirical.data import data_sha256, load_examples
    from skipit.empirical.evaluate import predict, token_counts
    from skipit.empirical.loading import load_model_and_processor
    from skipit.empirical.units import unit_ids
    from skipit.empirical.verification import config_key
    from skipit.empirical.weights import weights_fingerprint

    torch.set_num_threads(args.threads)
    model, processor, info = load_model_and_processor(args.model, device="cpu")
    adapter = get_adapter(model)
    from skipit.demo import default_data_for

    data = args.data or default_data_for(args.model)
    if data is None:
        raise SystemExit(f"--data is needed for --model {args.model} (only the bundled demo models have a default)")
    examples, _ = load_examples(data)
    units = np.array(unit_ids(examples))
    tag = json.dumps({"weights": weights_fingerprint(model), "data": data_sha256(examples)})
    cache = {}
    if os.path.exists(args.cache):
        with np.load(args.cache, allow_pickle=False) as saved:
            if str(saved["__tag__"]) == tag:
                cache = {k: saved[k].astype(np.float64) if saved[k].dtype == bool else saved[k]
                         for k in saved.files if k != "__tag__"}
    say(f"{info['name']}: {len(examples)} questions on {units.max() + 1} images, "
        f"{sum(not k.startswith('__') for k in cache)} candidates cached")

    def answers(context=None, idx=None):
        chosen = examples if idx is None else [examples[i] for i in idx]
        with torch.inference_mode():
            preds, _, _ = predict(model, processor, chosen, args.batch_size, adapter=adapter, context=context)
        return np.array(comparable_answers(preds, chosen))

    def save():
        os.makedirs(os.path.dirname(args.cache) or ".", exist_ok=True)
        tmp = f"{args.cache}.{os.getpid()}.tmp.npz"
        np.savez(tmp, __tag__=np.array(tag), **cache)
        os.replace(tmp, args.cache)

    if "__full__" not in cache:
        say("full model on the population")
        cache["__full__"] = answers()
        cache["__counts__"] = np.array(token_counts(model, processor, examples, args.batch_size, adapter))
        save()
    if "__kl__" not in cache:
        say("ShortV's layer contribution of every question (certify's freeze-order tie-break)")
        with torch.inference_mode():
            cache["__kl__"] = layer_contribution_rows(model, processor, examples, adapter, args.batch_size)
        save()
    full = cache["__full__"]

    last_save = [time.perf_counter()]

    def changed_of(config, idx=None):
        """``config``'s change indicators (bool) on the questions ``idx`` (default: all), run
        on the questions not yet cached (NaN in the cached row) and cached."""
        key = config_key(config)
        row = cache.get(key)
        if row is None:
            row = cache[key] = np.full(len(examples), np.nan)
        want = np.arange(len(examples)) if idx is None else np.asarray(idx, dtype=np.int64)
        todo = want[np.isnan(row[want])]
        if todo.size:
            t = time.perf_counter()
            got = answers(lambda: candidate_context(model, config, adapter), todo)
            row[todo] = answers_changed(list(full[todo]), list(got))
            if idx is None:
                say(f"{key}: population rate {row.mean():.4f} ({time.perf_counter() - t:.0f} s)")
            if idx is None or time.perf_counter() - last_save[0] > 120:
                save()
                last_save[0] = time.perf_counter()
        return row[want].astype(bool)

    changed_of.complete = lambda config: not np.isnan(cache.get(config_key(config), np.nan)).any()

    return model, examples, units, [tuple(c) for c in cache["__counts__"]], changed_of, cache["__kl__"]


def clopper_pearson(k, n, level=0.95):
    """Exact two-sided ``level`` interval of a binomial proportion ``k / n``."""
    from skipit.theory import clopper_pearson_lower, clopper_pearson_upper

    a = (1.0 - level) / 2.0
    return float(clopper_pearson_lower(k, n, a)), float(clopper_pearson_upper(k, n, a))


def study(units, counts, changed_of, kl, num_layers, model_config, tau, args, splits, say, margin=None):
    """Rows of ``splits`` random splits at ``tau``: each runs the learn / choose / verify steps
    on the cached indicators and judges them against the population. ``kl``: ShortV's
    per-question layer contribution (layers x questions); as in certify, the freeze order's
    ties are broken by its mean over the first ``--order-samples`` learn questions."""
    from skipit.empirical.candidates import candidate_flops_fraction
    from skipit.empirical.units import sample_units, split_units, unit_means
    from skipit.empirical.verification import config_key, learn_candidates, learn_indices, learn_then_test

    margin = args.margin if margin is None else margin
    population_rate = {}

    def pop_rate(config):
        key = config_key(config)
        if key not in population_rate:
            population_rate[key] = float(unit_means(changed_of(config), units).mean())
        return population_rate[key]

    flops_cache = {}

    def saved(config):
        key = config_key(config)
        if key not in flops_cache:
            flops_cache[key] = 1.0 - candidate_flops_fraction(model_config, config, counts)
        return flops_cache[key]

    # the hindsight candidates: the learn step run on the population itself (no margin)
    learn_candidates(num_layers, pop_rate, lambda c: 1.0 - saved(c), tau, 1.0,
                     tie_scores={l + 1: float(v) for l, v in enumerate(kl.mean(axis=1))})
    rows = []
    everyone = np.arange(units.size)
    for seed in range(splits):
        # as `skipit certify --samples N --sample-seed S --split-seed S` draws and splits the population
        drawn = np.asarray(sample_units(units, args.samples, seed)) if args.samples else everyone
        stats_local, calib_local = split_units(units[drawn], args.calibration_fraction, seed)
        stats_idx, calib_idx = drawn[stats_local], drawn[calib_local]
        learn_idx = np.asarray(learn_indices(stats_idx, units, args.learn_samples, seed))
        stats_counts = [counts[i] for i in learn_idx]
        calib_counts = [counts[i] for i in calib_idx]
        ties = kl[:, learn_idx[:args.order_samples]].mean(axis=1)
        out = learn_then_test(
            num_layers, tie_scores={l + 1: float(v) for l, v in enumerate(ties)},
            learn_rate=lambda c: float(unit_means(changed_of(c, learn_idx), units[learn_idx]).mean()),
            learn_flops=lambda c: candidate_flops_fraction(model_config, c, stats_counts),
            changed=lambda c: changed_of(c, calib_idx), units=units[calib_idx],
            flops=lambda c: candidate_flops_fraction(model_config, c, calib_counts),
            tolerance=tau, confidence=args.confidence, margin=margin)
        certified = [c for c in out["tested"] if c["certified"]]
        for c in out["chain"]:  # every chain candidate joins the oracle's candidates
            pop_rate(c)
        rec = out["recommended"]
        rows.append({"seed": seed, "statistics_units": len(set(units[stats_idx])), "calibration_units":
                     len(set(units[calib_idx])), "chain": [config_key(c) for c in out["chain"]],
                     "certified": [config_key(c) for c in certified],
                     "violation": any(pop_rate(c) > tau for c in certified),
                     "recommended": None if rec is None else config_key(rec),
                     "saved": 0.0 if rec is None else saved(rec)})
        if (seed + 1) % 25 == 0:
            say(f"tau {tau:g}: {seed + 1}/{splits} splits")
    return rows, pop_rate, saved


def summarise(rows, tau, candidates, pop_rate, saved):
    """Violation rate (with its exact 95% interval), oracle ratio, share without a recommendation."""
    ok = [c for c in candidates if pop_rate(c) <= tau]
    oracle = max(ok, key=saved) if ok else None
    oracle_saved = saved(oracle) if oracle else 0.0
    v = sum(r["violation"] for r in rows)
    lo, hi = clopper_pearson(v, len(rows))
    mean_saved = float(np.mean([r["saved"] for r in rows]))
    from skipit.empirical.verification import config_key

    return {"tau": tau, "splits": len(rows), "violations": v, "violation_rate": v / len(rows),
            "violation_ci95": [lo, hi], "mean_saved_recommended": mean_saved,
            "oracle": None if oracle is None else config_key(oracle), "oracle_saved": oracle_saved,
            "oracle_ratio": mean_saved / oracle_saved if oracle_saved > 0 else None,
            "no_recommendation": float(np.mean([r["recommended"] is None for r in rows])),
            "mean_certified": float(np.mean([len(r["certified"]) for r in rows])),
            "mean_chain": float(np.mean([len(r["chain"]) for r in rows]))}


def print_report(report):
    """The report's table: one row per tau and per hard case."""
    print(f"{report['model']}: population {report['questions']} questions on {report['images']} images; per split "
          f"--samples {report['samples'] or 'all'} drawn by image; calibration fraction "
          f"{report['calibration_fraction']:g}, margin {report['margin']:g}, learn sample "
          f"{report['learn_samples'] or 'all'}, confidence {report['confidence']:g}")
    print(f"{'tau':>6} {'violations':>10} {'95% CI':>15} {'saved':>7} {'oracle':>7} {'ratio':>6} {'none':>6}")
    for s in report["taus"] + report["hard"]:
        ratio = "-" if s["oracle_ratio"] is None else f"{s['oracle_ratio']:.2f}"
        print(f"{s['tau']:6.4f} {s['violations']:>4}/{s['splits']:<5} [{s['violation_ci95'][0]:.3f}, "
              f"{s['violation_ci95'][1]:.3f}] {s['mean_saved_recommended']:7.3f} {s['oracle_saved']:7.3f} "
              f"{ratio:>6} {s['no_recommendation']:6.2f}" + (f"  hard ({s['candidate']}, margin {s['margin']:g})"
                                                            if "candidate" in s else ""))


SETTINGS_KEYS = ("model", "questions", "images", "samples", "calibration_fraction", "margin", "learn_samples",
                 "order_samples", "confidence")


def merge_reports(paths, out):
    """One report from several runs of the same settings (e.g. one ``--taus`` value per process,
    run side by side): their taus (sorted) and hard cases; each keeps the oracle of its own run."""
    reports = []
    for path in paths:
        with open(path) as fh:
            reports.append(json.load(fh))
    first = reports[0]
    for path, r in zip(paths, reports):
        differ = [k for k in SETTINGS_KEYS if r.get(k) != first.get(k)]
        differ += ["splits"] * any(t["splits"] != first["taus"][0]["splits"] for t in r["taus"] + r["hard"])
        if differ:
            raise SystemExit(f"--merge: {path} differs from {paths[0]} in {', '.join(differ)}")
    taus = [t["tau"] for r in reports for t in r["taus"]]
    if len(set(taus)) != len(taus):
        raise SystemExit(f"--merge: a tau appears in more than one report: {sorted(taus)}")
    merged = {k: first.get(k) for k in SETTINGS_KEYS}
    merged["taus"] = sorted((t for r in reports for t in r["taus"]), key=lambda t: t["tau"])
    merged["hard"] = [h for r in reports for h in r["hard"]]
    merged["seconds"] = [r.get("seconds") for r in reports]
    merged["merged_from"] = [os.path.basename(p) for p in paths]
    with open(out, "w") as fh:
        json.dump(merged, fh, indent=1)
    print_report(merged)
    print(f"wrote {out}")
    return 0


def judge_report(args, say):
    """Judge the certified configurations of the report ``args.out`` on an independent data set
    ``args.judge`` (e.g. ``digits-reason-val``: images the splits never saw): per tau, the splits
    where some certified configuration changes more than tau of that set's answers (per-image
    rates), with the exact 95% interval. The population study's calibration images are 60% of
    its population, which makes a violation there harder than on new images; this judges the
    same certificates against images outside the population. Writes ``heldout`` into the report."""
    import torch

    from skipit.empirical.adapters import get_adapter
    from skipit.empirical.answers import answers_changed, comparable_answers
    from skipit.empirical.candidates import candidate_context
    from skipit.empirical.data import data_sha256, load_examples
    from skipit.empirical.evaluate import predict
    from skipit.empirical.loading import load_model_and_processor
    from skipit.empirical.units import unit_ids, unit_means
    from skipit.empirical.verification import config_from_key
    from skipit.empirical.weights import weights_fingerprint

    with open(args.out) as fh:
        report = json.load(fh)
    torch.set_num_threads(args.threads)
    model, processor, _ = load_model_and_processor(args.model, device="cpu")
    adapter = get_adapter(model)
    examples, _ = load_examples(args.judge)
    units = np.array(unit_ids(examples))
    tag = json.dumps({"weights": weights_fingerprint(model), "data": data_sha256(examples)})
    path = args.cache.replace(".npz", f"-judge-{os.path.basename(str(args.judge))}.npz")
    cache = {}
    if os.path.exists(path):
        with np.load(path, allow_pickle=False) as saved:
            if str(saved["__tag__"]) == tag:
                cache = {k: saved[k] for k in saved.files if k != "__tag__"}

    def answers(context=None):
        with torch.inference_mode():
            preds, _, _ = predict(model, processor, examples, args.batch_size, adapter=adapter, context=context)
        return np.array(comparable_answers(preds, examples))

    def save():
        tmp = f"{path}.{os.getpid()}.tmp.npz"
        np.savez(tmp, __tag__=np.array(tag), **cache)
        os.replace(tmp, path)

    if "__full__" not in cache:
        cache["__full__"] = answers()
    keys = sorted({k for t in report["taus"] + report["hard"] for r in t["rows"] for k in r["certified"]})
    say(f"{args.judge}: {len(examples)} questions on {units.max() + 1} images; {len(keys)} certified configurations")
    for i, key in enumerate(keys):
        if key not in cache:
            got = answers(lambda: candidate_context(model, config_from_key(key), adapter))
            cache[key] = np.array(answers_changed(list(cache["__full__"]), list(got)))
            save()
            say(f"{i + 1}/{len(keys)} {key}: rate {unit_means(cache[key].astype(float), units).mean():.4f}")
    rate = {k: float(unit_means(cache[k].astype(float), units).mean()) for k in keys}
    report["heldout"] = {"data": str(args.judge), "questions": len(examples), "images": int(units.max()) + 1,
                         "taus": []}
    for t in report["taus"] + report["hard"]:
        v = sum(any(rate[k] > t["tau"] for k in r["certified"]) for r in t["rows"])
        lo, hi = clopper_pearson(v, len(t["rows"]))
        report["heldout"]["taus"].append({"tau": t["tau"], "splits": len(t["rows"]), "violations": v,
                                          "violation_ci95": [lo, hi], "hard": "candidate" in t})
        print(f"held out ({args.judge}): tau {t['tau']:.4f}{' (hard)' if 'candidate' in t else ''}: "
              f"{v}/{len(t['rows'])} splits violate, 95% CI [{lo:.3f}, {hi:.3f}]")
    with open(args.out, "w") as fh:
        json.dump(report, fh, indent=1)
    return 0


def certify_defaults():
    """``skipit certify``'s defaults for ``--samples``, the calibration fraction, the learn margin and
    the learn step's sample."""
    from skipit.commands import certify
    from skipit.empirical.settings import CertifySettings

    parser = argparse.ArgumentParser()
    certify.add_parser(parser.add_subparsers())
    settings = CertifySettings()
    assert settings.freeze_order == "contribution", "the study breaks freeze-order ties as --freeze-order contribution"
    return {"samples": parser.parse_args(["certify"]).samples, "calibration_fraction": settings.calibration_fraction,
            "learn_margin": settings.learn_margin, "learn_examples": settings.learn_examples,
            "order_examples": settings.order_examples}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=None, help="model directory or hub id (default: the bundled demo model)")
    p.add_argument("--data", default=None, help="data set (default: the demo model's own bundled test set)")
    p.add_argument("--splits", type=int, default=200)
    p.add_argument("--taus", type=float, nargs="+", default=[0.02, 0.05, 0.10])
    p.add_argument("--confidence", type=float, default=0.95)
    defaults = certify_defaults()
    p.add_argument("--samples", type=int, default=defaults["samples"],
                   help="questions drawn by image per split, as certify's --samples (default: certify's)")
    p.add_argument("--calibration-fraction", type=float, default=defaults["calibration_fraction"])
    p.add_argument("--margin", type=float, default=defaults["learn_margin"])
    p.add_argument("--learn-samples", type=int, default=defaults["learn_examples"])
    p.add_argument("--order-samples", type=int, default=defaults["order_examples"])
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--cache", default=None, help="per-question change indicators (default: benchmarks/results/"
                                                 "study_verification_cache-<model>.npz)")
    p.add_argument("--pool-only", action="store_true", help="only fill the cache with the candidate pool")
    p.add_argument("--out", default=None)
    p.add_argument("--no-hard", action="store_true", help="leave out the hard case")
    p.add_argument("--judge", metavar="DATA", default=None,
                   help="only judge the certified configurations of the report --out on another data set DATA "
                        "(e.g. digits-reason-val): the violation rate on images outside the population")
    p.add_argument("--merge", nargs="+", metavar="REPORT", default=None,
                   help="only merge these reports (runs of the same settings, e.g. one --taus value each, run "
                        "side by side) into --out")
    args = p.parse_args(argv)
    name = os.path.basename(os.path.normpath(args.model)) if args.model else "demo"
    args.cache = args.cache or f"benchmarks/results/study_verification_cache-{name}.npz"
    args.out = args.out or f"benchmarks/results/study_verification-{name}.json"
    if args.merge:
        return merge_reports(args.merge, args.out)
    if args.judge:
        t0 = time.perf_counter()
        return judge_report(args, lambda msg: print(f"[{time.perf_counter() - t0:6.0f} s] {msg}", file=sys.stderr,
                                                    flush=True))

    from skipit.empirical.verification import candidate_pool

    t0 = time.perf_counter()

    def say(msg):
        print(f"[{time.perf_counter() - t0:6.0f} s] {msg}", file=sys.stderr, flush=True)

    model, examples, units, counts, changed_of, kl = population(args, say)
    from skipit.empirical.adapters import get_adapter

    num_layers = get_adapter(model).num_layers(model)
    for config in candidate_pool(num_layers):
        changed_of(config)
    if args.pool_only:
        return 0
    from collections import Counter

    from skipit.empirical.verification import config_key

    known = {}

    def remember(config, idx=None):
        known.setdefault(config_key(config), config)
        return changed_of(config, idx)

    def oracle_candidates():
        """The candidates whose population rate is known: the pool, the learn step run on the
        population itself, and every candidate some split put in its chain."""
        return [c for c in known.values() if changed_of.complete(c)]

    for config in candidate_pool(num_layers):
        remember(config)
    report = {"model": name, "questions": len(examples), "images": int(units.max()) + 1, "samples": args.samples,
              "calibration_fraction": args.calibration_fraction, "margin": args.margin,
              "learn_samples": args.learn_samples, "order_samples": args.order_samples,
              "confidence": args.confidence, "taus": [], "hard": []}
    for tau in args.taus:
        rows, pop_rate, saved = study(units, counts, remember, kl, num_layers, model.config, tau, args, args.splits, say)
        summary = summarise(rows, tau, oracle_candidates(), pop_rate, saved)
        report["taus"].append(dict(summary, rows=rows))
        say(json.dumps(summary))
    # hard case: tau just below the population rate of the candidate most often recommended at the middle tau
    middle = report["taus"][len(report["taus"]) // 2]["rows"]
    common = [] if args.no_hard else Counter(r["recommended"] for r in middle if r["recommended"]).most_common(1)
    if common:
        key = common[0][0]
        from skipit.empirical.units import unit_means

        rate = float(unit_means(changed_of(known[key]).astype(float), units).mean())
        tau_h = rate - 0.5 / len(examples)
        for margin in sorted({args.margin, 1.0}):
            rows, pop_rate, saved = study(units, counts, remember, kl, num_layers, model.config, tau_h, args,
                                          args.splits, say, margin=margin)
            summary = summarise(rows, tau_h, oracle_candidates(), pop_rate, saved)
            summary.update(candidate=key, candidate_rate=rate, margin=margin,
                           tested_share=float(np.mean([key in r["chain"] for r in rows])))
            report["hard"].append(dict(summary, rows=rows))
            say("hard: " + json.dumps(summary))
    report["seconds"] = time.perf_counter() - t0
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    with open(args.out, "w") as fh:
        json.dump(report, fh, indent=1)
    print_report(report)
    print(f"wrote {args.out} in {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
