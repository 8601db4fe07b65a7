"""Verification with power (Learn-then-Test): learn on the statistics split, test one chain on calibration.

Pure (numpy + scipy): :mod:`skipit.empirical.certify` and ``benchmarks/study_verification.py``
run the model and call these functions, so the study exercises the code ``skipit certify`` runs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from scipy import stats as _scipy_stats

from skipit.empirical.settings import FASTV_RATIOS

__all__ = ["COMPOSITION", "FASTV_RATIOS", "candidate_pool", "config_key", "config_label"]

COMPOSITION = "freeze+early-exit"
"""The mode name of a composition: a freeze set plus early exit after layer L, in one forward."""



def candidate_families(num_layers: int, fastv_ratios: Sequence[float] = FASTV_RATIOS) -> list[list[dict[str, Any]]]:
    """The single-action candidates of a model with ``num_layers`` decoder layers, before any
    data, as families each ordered from the mildest action to the strongest: late entry at
    ``L = 2..N``; early exit at ``L = N-1..1`` (which is also visual token withdrawal at
    ``K = L``); FastV at ``K = N-1..1`` for each keep ratio of ``fastv_ratios``; and, last,
    freezing one layer ``l = 1..N-1`` (freezing layer N changes no answer: only text
    positions of the last layer are read). The trivial settings (late entry at 1, early exit
    at N) are left out."""
    n = int(num_layers)
    if n < 1:
        raise ValueError(f"`num_layers` must be >= 1, got {num_layers}")
    ratios = [float(r) for r in fastv_ratios]
    if any(not 0.0 < r < 1.0 for r in ratios):
        raise ValueError(f"`fastv_ratios` must lie in (0, 1), got {list(fastv_ratios)}")
    return ([[{"mode": "late-entry", "layer": L} for L in range(2, n + 1)],
             [{"mode": "early-exit", "layer": L} for L in range(n - 1, 0, -1)]]
            + [[{"mode": "fastv", "layer": K, "keep_ratio": r} for K in range(n - 1, 0, -1)] for r in ratios]
            + [[{"mode": "freeze", "layers": [l]} for l in range(1, n)]])


def candidate_pool(num_layers: int, fastv_ratios: Sequence[float] = FASTV_RATIOS) -> list[dict[str, Any]]:
    """Every candidate of :func:`candidate_families`, in one list."""
    return [c for family in candidate_families(num_layers, fastv_ratios) for c in family]


def config_key(config: Mapping[str, Any]) -> str:
    """A candidate's key (checkpoints, caches, matching verified configs): ``late-entry:3``,
    ``freeze:2,5``, ``fastv:3@0.5``, ``freeze:2,5+early-exit:8``."""
    mode = config["mode"]
    if mode == "freeze":
        return "freeze:" + ",".join(str(l) for l in config["layers"])
    if mode == "fastv":
        return f"fastv:{config['layer']}@{float(config['keep_ratio']):g}"
    if mode == COMPOSITION:
        return (config_key({"mode": "freeze", "layers": config["layers"]}) + "+"
                + config_key({"mode": "early-exit", "layer": config["layer"]}))
    return f"{mode}:{config['layer']}"


def config_from_key(key: str) -> dict[str, Any]:
    """The candidate a :func:`config_key` names (its inverse): ``"freeze:2,5+early-exit:8"`` ->
    ``{"mode": "freeze+early-exit", "layers": [2, 5], "layer": 8}``."""
    if "+" in key:
        frozen, exit_ = key.split("+", 1)
        return {"mode": COMPOSITION, "layers": config_from_key(frozen)["layers"],
                "layer": config_from_key(exit_)["layer"]}
    mode, _, rest = key.partition(":")
    if mode == "freeze":
        return {"mode": "freeze", "layers": [int(l) for l in rest.split(",")]}
    if mode == "fastv":
        layer, _, ratio = rest.partition("@")
        return {"mode": "fastv", "layer": int(layer), "keep_ratio": float(ratio)}
    if mode in ("late-entry", "early-exit"):
        return {"mode": mode, "layer": int(rest)}
    raise ValueError(f"not a candidate key: {key!r}")


def layer_runs(layers: Sequence[int]) -> list[tuple[int, int]]:
    """Consecutive runs of layer numbers, sorted: ``[5, 1, 2] -> [(1, 2), (5, 5)]``."""
    runs: list[list[int]] = []
    for layer in sorted(int(l) for l in layers):
        if runs and layer == runs[-1][1] + 1:
            runs[-1][1] = layer
        else:
            runs.append([layer, layer])
    return [(first, last) for first, last in runs]


def layer_list(layers: Sequence[int]) -> str:
    """A layer set as people read it, runs of three or more as ranges: ``[1, 3, 4, 5, 9, 10]`` ->
    ``1,3-5,9,10``."""
    parts = []
    for first, last in layer_runs(layers):
        parts += [f"{first}-{last}"] if last - first >= 2 else [str(l) for l in range(first, last + 1)]
    return ",".join(parts)


def config_label(config: Mapping[str, Any]) -> str:
    """A candidate as people read it: ``late-entry L=3``, ``freeze 2,5``, ``freeze 1,3-15``,
    ``FastV K=3 R=0.5``, ``freeze 2,5 + early-exit L=8`` (:func:`layer_list`)."""
    mode = config["mode"]
    if mode == "freeze":
        return "freeze " + layer_list(config["layers"])
    if mode == "fastv":
        return f"FastV K={config['layer']} R={float(config['keep_ratio']):g}"
    if mode == COMPOSITION:
        return (config_label({"mode": "freeze", "layers": config["layers"]}) + " + "
                + config_label({"mode": "early-exit", "layer": config["layer"]}))
    return f"{mode} L={config['layer']}"


# --------------------------------------------------------------------------------------
# the test of one candidate: images as the units
# --------------------------------------------------------------------------------------

def _fractions(changed, units):
    from skipit.empirical.units import unit_means

    return unit_means(np.asarray(changed, dtype=np.float64), units)


def change_p_value(fractions: Sequence[float], tolerance: float, level: float, single: bool = False) -> float:
    """p-value of ``H_0``: the mean change rate of a unit is at least ``tolerance``.

    ``fractions``: per unit (image), the fraction of its questions whose answer changed, for
    ``n`` i.i.d. units. ``single`` (every unit has one question, so each fraction is 0 or 1):
    the exact binomial ``P[Bin(n, tau) <= k]``. Otherwise the betting p-value on the ``[0, 1]``
    per-unit fractions (:func:`skipit.theory.confidence.betting_p_value`, bets tuned for
    ``level``), valid whatever the questions of one image share. ``n = 0``: 1.
    """
    from skipit.theory.confidence import betting_p_value

    f = np.asarray(fractions, dtype=np.float64).reshape(-1)
    if f.size == 0:
        return 1.0
    if single:
        return float(_scipy_stats.binom.cdf(int(round(f.sum())), f.size, float(tolerance)))
    return float(betting_p_value(f, float(tolerance), alternative="less", delta=float(level)))


def change_upper_bound(fractions: Sequence[float], level: float, single: bool = False) -> float:
    """Upper confidence bound, at ``level``, on the mean change rate of a unit, matching
    :func:`change_p_value` (``p <= level`` exactly when ``tolerance >= bound``, up to
    round-off): Clopper-Pearson when ``single``, else the betting bound
    (:func:`skipit.theory.confidence.betting_upper_bound`). ``n = 0``: 1."""
    from skipit.theory.confidence import betting_upper_bound

    f = np.asarray(fractions, dtype=np.float64).reshape(-1)
    if f.size == 0:
        return 1.0
    if single:
        from skipit.theory import clopper_pearson_upper

        return float(clopper_pearson_upper(int(round(f.sum())), f.size, float(level)))
    return float(betting_upper_bound(f, float(level)))


# --------------------------------------------------------------------------------------
# learn on the statistics split, choose one chain, test it on calibration
# --------------------------------------------------------------------------------------

def learn_candidates(num_layers: int, rate: Callable[[Mapping[str, Any]], float],
                     flops: Callable[[Mapping[str, Any]], float], tolerance: float, margin: float,
                     fastv_ratios: Sequence[float] = FASTV_RATIOS,
                     tie_scores: Mapping[int, float] | None = None) -> tuple[list[dict[str, Any]], list[int]]:
    """The learn step, on the statistics split only: ``(learned, freeze_order)``.

    ``rate(config)``: the candidate's change rate on the statistics split (the mean over its
    images of the fraction of their questions whose answer changed against the full model);
    ``flops(config)``: its predicted FLOPs over the full model's. Each family of
    :func:`candidate_families` is measured from its mildest candidate up to and including
    the first whose rate exceeds ``margin * tolerance`` (stronger ones are taken to harm
    more), except the one-layer freezes, which are all measured; then

    * the freeze order: layers ``1..N-1`` by their one-layer freeze rate ascending, ties by
      ``tie_scores`` (e.g. ShortV's contribution; default none) then by layer;
    * freeze sets: the first ``k = 2, 3, ...`` layers of that order, until the first set
      whose rate exceeds ``margin * tolerance`` (larger sets only add harm);
    * compositions: for every early exit at ``L`` whose rate is at most ``margin * tolerance``,
      the largest freeze set so measured whose rate is at most ``margin * tolerance``, cut to
      layers ``<= L``, plus that early exit (when the cut set is not empty).

    ``learned``: every measured config with ``learned_rate`` and ``flops_fraction``, in the
    order measured. Nothing here reads the calibration split.
    """
    limit = float(margin) * float(tolerance)
    learned = []

    def measure(config):
        entry = dict(config, learned_rate=float(rate(config)), flops_fraction=float(flops(config)))
        learned.append(entry)
        return entry

    for family in candidate_families(num_layers, fastv_ratios):
        everyone = family[0]["mode"] == "freeze"
        for config in family:
            if measure(config)["learned_rate"] > limit and not everyone:
                break
    single = {e["layers"][0]: e["learned_rate"] for e in learned if e["mode"] == "freeze"}
    ties = dict(tie_scores or {})
    order = sorted(single, key=lambda l: (single[l], float(ties.get(l, 0.0)), l))
    safe_sets = [[order[0]]] if order and single[order[0]] <= limit else []
    for k in range(2, len(order) + 1):
        if not safe_sets or len(safe_sets[-1]) != k - 1:
            break
        entry = measure({"mode": "freeze", "layers": sorted(order[:k])})
        if entry["learned_rate"] > limit:
            break
        safe_sets.append(order[:k])
    exits = [e for e in learned if e["mode"] == "early-exit" and e["learned_rate"] <= limit]
    for e in exits:
        cut = sorted(l for l in (safe_sets[-1] if safe_sets else []) if l <= e["layer"])
        if cut:
            measure({"mode": COMPOSITION, "layers": cut, "layer": e["layer"]})
    return learned, order


def choose_chain(learned: Sequence[Mapping[str, Any]], tolerance: float, margin: float) -> list[dict[str, Any]]:
    """The one chain to test, from the learn step alone.

    Worth testing: a candidate whose learned rate is at most ``margin * tolerance`` and that
    no other such candidate dominates (at most its FLOPs and at most its rate, one of them
    smaller; exact duplicates keep the first). Ordered by predicted FLOPs descending (the
    smallest saving, hence the smallest learned rate, first), so fixed-sequence testing walks
    from the safest to the largest saving and stops at the first candidate not rejected.
    """
    limit = float(margin) * float(tolerance)
    pool = [dict(c) for c in learned if c["learned_rate"] <= limit]
    front = []
    for i, c in enumerate(pool):
        dominated = any(
            (d["flops_fraction"] <= c["flops_fraction"] and d["learned_rate"] <= c["learned_rate"])
            and (d["flops_fraction"] < c["flops_fraction"] or d["learned_rate"] < c["learned_rate"] or j < i)
            for j, d in enumerate(pool) if j != i)
        if not dominated:
            front.append(c)
    return sorted(front, key=lambda c: (-c["flops_fraction"], c["learned_rate"]))


def run_chain(chain: Sequence[Mapping[str, Any]], changed: Callable[[Mapping[str, Any]], Sequence[bool]],
              units: Sequence[int], flops: Callable[[Mapping[str, Any]], float], tolerance: float,
              level: float) -> list[dict[str, Any]]:
    """Fixed-sequence testing of one chain on the calibration split.

    ``changed(config)``: per calibration question, whether its answer changed against the
    full model (called only for candidates the chain reaches); ``units``: the image of each
    calibration question. Each candidate's per-image change fractions are tested by
    :func:`change_p_value` at ``level``; the chain stops after its first candidate not
    rejected. Returns the tested candidates, each with ``examples`` (questions), ``changed``
    (answers changed), ``units`` (images), ``unit_change_rate`` (mean per-image fraction),
    ``flops_fraction``, ``p_value``, ``upper_bound`` (:func:`change_upper_bound` at
    ``level``) and ``certified``: true for every candidate before the first not rejected.
    """
    from skipit.empirical.units import unit_sizes

    sizes = unit_sizes(units)
    single = bool(np.all(sizes[sizes > 0] == 1))
    out = []
    for config in chain:
        flags = np.asarray(changed(config), dtype=bool).reshape(-1)
        fractions = _fractions(flags, units)
        p = change_p_value(fractions, tolerance, level, single)
        out.append(dict(config, examples=int(flags.size), changed=int(flags.sum()), units=int(fractions.size),
                        unit_change_rate=float(fractions.mean()) if fractions.size else None,
                        flops_fraction=float(flops(config)), p_value=p,
                        upper_bound=change_upper_bound(fractions, level, single), certified=bool(p <= level)))
        if not out[-1]["certified"]:
            break
    return out


def learn_chain(num_layers: int, rate: Callable[[Mapping[str, Any]], float],
                flops: Callable[[Mapping[str, Any]], float], tolerance: float, margin: float,
                fastv_ratios: Sequence[float] = FASTV_RATIOS,
                tie_scores: Mapping[int, float] | None = None) -> dict[str, Any]:
    """Learn-then-Test's *learn*, on the statistics split alone: :func:`learn_candidates` then
    :func:`choose_chain`. Returns ``{"learned", "freeze_order", "chain"}``."""
    learned, order = learn_candidates(num_layers, rate, flops, tolerance, margin, fastv_ratios, tie_scores)
    return {"learned": learned, "freeze_order": order, "chain": choose_chain(learned, tolerance, margin)}


def test_chain(learned: Mapping[str, Any], changed: Callable[[Mapping[str, Any]], Sequence[bool]],
               units: Sequence[int], flops: Callable[[Mapping[str, Any]], float], tolerance: float,
               confidence: float) -> dict[str, Any]:
    """Learn-then-Test's *test*: :func:`run_chain` of ``learned["chain"]`` (from
    :func:`learn_chain`) on the calibration split (``changed``, ``units``, ``flops``) at level
    ``1 - confidence``.

    **Guarantee.** The chain is fixed before any calibration answer is read, and
    fixed-sequence testing controls the family-wise error at the level of one test: with
    probability ``>= confidence`` over the calibration images, every certified candidate's
    mean per-image change rate on the population the images are drawn from is at most
    ``tolerance`` (Learn-then-Test, Angelopoulos et al. 2021; fixed-sequence testing as in
    CALM, Schuster et al. 2022). Returns ``learned`` with ``tested`` and ``recommended`` (the
    certified candidate with the fewest predicted FLOPs; None when none is certified).
    """
    tested = run_chain(learned["chain"], changed, units, flops, tolerance, 1.0 - float(confidence))
    certified = [c for c in tested if c["certified"]]
    best = min(certified, key=lambda c: c["flops_fraction"]) if certified else None
    return dict(learned, tested=tested, recommended=best)


def learn_then_test(num_layers: int, *, learn_rate: Callable[[Mapping[str, Any]], float],
                    learn_flops: Callable[[Mapping[str, Any]], float],
                    changed: Callable[[Mapping[str, Any]], Sequence[bool]], units: Sequence[int],
                    flops: Callable[[Mapping[str, Any]], float], tolerance: float, confidence: float,
                    margin: float, fastv_ratios: Sequence[float] = FASTV_RATIOS,
                    tie_scores: Mapping[int, float] | None = None) -> dict[str, Any]:
    """The whole verification: :func:`learn_chain` on the statistics split (``learn_rate``,
    ``learn_flops``), then :func:`test_chain` on the calibration split (``changed``,
    ``units``, ``flops``); ``skipit certify`` runs the same two steps."""
    learned = learn_chain(num_layers, learn_rate, learn_flops, tolerance, margin, fastv_ratios, tie_scores)
    return test_chain(learned, changed, units, flops, tolerance, confidence)


# --------------------------------------------------------------------------------------
# the split and the certificate's block
# --------------------------------------------------------------------------------------

def split_indices(units: Sequence[int], settings: Any) -> tuple[list[int], list[int]]:
    """``(statistics, calibration)`` example indices, disjoint by image: ``units`` gives each
    example's image (:func:`skipit.empirical.units.unit_ids`), split by
    :func:`skipit.empirical.units.split_units` at ``settings.calibration_fraction`` and
    ``settings.split_seed``. Without verification (``settings.verify`` false) every example
    goes to the statistics."""
    from skipit.empirical.units import split_units

    if not settings.verify:
        return list(range(len(units))), []
    return split_units(units, settings.calibration_fraction, settings.split_seed)


def learn_indices(statistics: Sequence[int], units: Sequence[int], questions: int, seed: int) -> list[int]:
    """The statistics examples the learn step measures every candidate on: all of ``statistics``
    (``questions == 0``), or a seeded random sample of its images with at least ``questions``
    questions (:func:`skipit.empirical.units.sample_units`), in their order in ``statistics``.
    ``units``: the image of every example (indexed like the data)."""
    from skipit.empirical.units import sample_units

    statistics = list(statistics)
    if not questions:
        return statistics
    return [statistics[i] for i in sample_units([units[j] for j in statistics], int(questions), int(seed))]


UNIT_STATEMENT = ("images: the questions of one image (same decoded pixels) are one unit; a candidate's change "
                  "rate is the mean over images of the fraction of their questions whose answer changed")


def verification_block(result: Mapping[str, Any], settings: Any, *, calibration: Mapping[str, int],
                       statistics: Mapping[str, int], order_by: str,
                       order_scores: Mapping[int, float] | None = None) -> dict[str, Any]:
    """The certificate's ``verification`` dict from :func:`learn_then_test`'s ``result``.

    ``calibration`` / ``statistics``: ``{"units", "examples"}`` of the calibration split and of
    the statistics examples the learn step read; ``order_by`` how ties in the freeze order
    were broken, ``order_scores`` their scores. ``configs`` are the tested candidates in chain
    order (each with ``learned_rate`` too); ``recommended`` the certified one with the fewest
    predicted FLOPs, with ``predicted_speedup``, or None.
    """
    from skipit.empirical.units import UNIT_RULE

    level = 1.0 - float(settings.confidence)
    learned = {config_key(c): c for c in result["learned"]}
    configs = [dict(c, key=config_key(c), learned_rate=learned[config_key(c)]["learned_rate"])
               for c in result["tested"]]
    best = result["recommended"]
    n_units, n_examples = int(calibration["units"]), int(calibration["examples"])
    return {
        "tolerance": float(settings.tolerance), "confidence": float(settings.confidence),
        "examples": n_examples, "units": n_units, "level_per_chain": level, "chains": 1,
        "margin": float(settings.learn_margin),
        "unit": UNIT_STATEMENT, "unit_rule": UNIT_RULE,
        "procedure": ("Learn-then-Test: on the statistics split, every candidate family is measured (change rate "
                      "against the full model) from its mildest member until the first above margin x tolerance; "
                      "freeze sets grow in the learned order; compositions join a safe freeze set to a safe early "
                      "exit; the candidates at most margin x tolerance and not dominated in (FLOPs, rate) form ONE "
                      "chain, smallest saving first. On the calibration split the chain is tested in that fixed "
                      f"order at level {level:g} (fixed-sequence testing), stopping at the first candidate not "
                      "rejected; test of H0: change rate >= tolerance on the per-image change fractions: the "
                      "betting p-value (Waudby-Smith & Ramdas 2024), or the exact binomial when every image has "
                      "one question"),
        "statement": (f"with probability >= {settings.confidence:g}, on images like the {n_units} calibration images "
                      f"({n_examples} questions), every certified configuration changes at most "
                      f"{settings.tolerance:g} of the answers (per image, compared with the full model's)"),
        "answer": ("one-token argmax at the answer position" if (settings.max_new_tokens or 1) <= 1 else
                   f"greedy generation of up to {settings.max_new_tokens} tokens, normalised (the one-token "
                   "argmax for letter-scored multiple-choice examples)"),
        "cost": {"learn_passes": len(result["learned"]), "learn_units": int(statistics["units"]),
                 "learn_examples": int(statistics["examples"]), "calibration_passes": len(configs) + 1},
        "freeze_order": {"by": "one-layer freeze change rate on the statistics split, ties by " + order_by,
                         "scores": {str(k): float(v) for k, v in (order_scores or {}).items()},
                         "layers": list(result["freeze_order"])},
        "learned": [dict(c, key=config_key(c)) for c in result["learned"]],
        "chain": [config_key(c) for c in result["chain"]],
        "configs": configs,
        "recommended": None if best is None else dict(best, key=config_key(best),
                                                      learned_rate=learned[config_key(best)]["learned_rate"],
                                                      predicted_speedup=1.0 / best["flops_fraction"]),
    }
