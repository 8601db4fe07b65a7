"""The certificate, pure: settings, confidence bounds, decisions, verification maths, schema.

numpy + scipy only (no torch): :mod:`skipit.empirical.certify` runs the model and calls
these functions. Certificate schema ``skipit.certificate/3`` (``/2`` still read).

**The independent unit.** Tokens of one image are dependent (the design effect recorded
per layer is the ratio of the variance of per-example means to what independent tokens
would give), and the questions of one image share its vision statistics, so every bound
below takes one value per **unit** as its i.i.d. draw (:func:`certificate_layers`:
``units`` maps each example to its unit, its image; a unit's value is the mean over its
examples): the mean cosine distance ``rho_e = mean over the vision tokens of
rho(h_l, h_{l-1})`` in ``[0, 2]``, the fraction ``f_e(t)`` of vision tokens with
``rho < t`` in ``[0, 1]`` and the head-mean attention share in ``[0, 1]``. The distribution
the certificate speaks about is "draw a unit like these, then a token of it uniformly".

**The paper's verdicts** (statistics alone). Every bound is the betting bound of
Waudby-Smith & Ramdas (:func:`skipit.theory.betting_upper_bound`; it needs every unit's
value, which the capture engine keeps) at level ``a = (1 - c) / 3``
(:func:`paper_test_level`): three families of claims (late-entry chain, early-exit chain,
freeze) share ``1 - c``, and within a family fixed-sequence testing (the chains) or Holm's
rule (freeze) keeps its error at ``a`` (:func:`decide` states the argument):

* geometric test of layer ``l``: ``U_l < eps``, ``U_l`` the upper bound on ``E[rho_e]``
  on ``[0, 2]`` (Definition 1);
* proximal test: ``P_l > 1 - eps``, ``P_l`` the lower bound on ``E[f_e(t)]`` on ``[0, 1]``
  (Definition 2);
* attention test: ``A_l < tau_att``, ``A_l`` the upper bound on the mean head-averaged share
  of the answer query's attention on vision tokens (on ``[0, 1]``).

Late entry at ``L`` iff every ``l < L`` passes all three (Theorem 6's hypotheses). Early
exit after ``L`` iff every ``l > L`` passes the attention test (Section 4). Freeze of layer
``l`` (the vision tokens keep their input state in that one layer, ShortV-style) iff layer
``l`` passes the geometric and the proximal test: ``D_l`` is exactly the vision change the
freeze removes. Each freeze verdict is about one layer alone; effects of several frozen
layers add up, which only the verification below measures.

**Verification** (Learn-then-Test: :mod:`skipit.empirical.verification`). The statistics
and calibration examples are disjoint by image. Candidates are measured on the statistics
split (their change rate against the full model), ONE chain of candidates worth testing is
chosen from those rates alone, and the chain is tested on the calibration split by
fixed-sequence testing at level ``1 - c`` on per-image change fractions: with probability
``>= c`` **every** certified configuration changes at most ``tau`` of the answers (per image)
on images drawn like the calibration images. This module only writes the block into the
certificate (:func:`build_certificate`).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np
from scipy import stats as _scipy_stats

from skipit.empirical.modes import VERIFY_MODES
from skipit.empirical.settings import COSINE_DISTANCE_RANGE, FREEZE_ORDERS, CertifySettings
from skipit.empirical.stats import DEFAULT_THRESHOLDS, threshold_key
from skipit.empirical.units import UNIT_RULE
from skipit.empirical.verification import config_key, config_label  # one home; re-exported for /2 readers
from skipit.theory import betting_lower_bound, betting_p_value, betting_upper_bound, clopper_pearson_upper

__all__ = [
    "SCHEMA", "CertifySettings", "DEFAULT_THRESHOLDS", "COSINE_DISTANCE_RANGE", "VERIFY_MODES",
    "certificate_layers", "decide", "build_certificate", "split_indices", "candidate_chains",
    "binomial_p_value", "run_chains", "fixed_sequence", "verification_block",
    "config_key", "config_arg", "config_label",
    "load_certificate", "check_certificate_model", "certificate_schema",
]

SCHEMA = "skipit.certificate/3"
SCHEMAS_READ = ("skipit.certificate/2", SCHEMA)
"""Schemas :func:`load_certificate` reads: /3 adds fields to /2 (units and levels of the betting
bounds, p-values, Holm steps) and renames none, so a /2 certificate still reads."""
PAPER_FAMILIES = ("late-entry", "early-exit", "freeze")
"""The families of the paper's verdicts; each gets ``(1 - confidence) / 3`` of the error budget."""
CERTIFICATE_FILE = "certificate.json"
SCHEMA_FILE = os.path.join(os.path.dirname(__file__), "certificate.schema.json")


def _lookup(mapping, t):
    """``mapping[threshold_key(t)]``, tolerating a key written from a float that differs by round-off."""
    key = threshold_key(t)
    if key in mapping:
        return mapping[key]
    for k, v in mapping.items():
        if math.isclose(float(k), float(t), rel_tol=0, abs_tol=1e-12):
            return v
    raise KeyError(f"threshold {t} not in the captured statistics (have {sorted(mapping)})")


# --------------------------------------------------------------------------------------
# certificate layers (example-level bounds) and the paper's verdicts
# --------------------------------------------------------------------------------------

def paper_test_level(settings: CertifySettings) -> float:
    """Level of each of the paper's tests: ``(1 - confidence) / 3``, the share of one of the
    three families (late-entry chain, early-exit chain, freeze family) of the error budget."""
    return (1.0 - settings.confidence) / len(PAPER_FAMILIES)


def _unit_rows(values, labels, units):
    """Per-unit means of per-example ``values`` (``(E,)`` or ``(E, T)``): examples whose labels map
    to the same unit (``units[label]``) are one unit; unlabelled examples (label < 0) or
    ``units=None``: each example is its own unit. Returns ``(U,)`` or ``(U, T)``."""
    v = np.asarray(values, dtype=np.float64)
    lab = np.asarray(labels, dtype=np.int64).reshape(-1)
    if v.shape[0] != lab.size:
        raise ValueError(f"per-example values ({v.shape[0]}) and their labels ({lab.size}) must match")
    if units is None or not v.shape[0]:
        return v
    table = np.asarray(units, dtype=np.int64).reshape(-1) if not isinstance(units, Mapping) else None
    if table is not None and lab.size and lab.max() >= table.size:
        raise ValueError(f"`units` must name the unit of every example label, got {table.size} for label "
                         f"{int(lab.max())}")
    key = np.array([(table[l] if table is not None else units[int(l)]) if l >= 0 else -1 - i
                    for i, l in enumerate(lab)], dtype=np.int64)
    from skipit.empirical.units import unit_means

    ids = np.unique(key, return_inverse=True)[1].reshape(-1)
    if v.ndim == 1:
        return unit_means(v, ids)
    return np.stack([unit_means(v[:, j], ids) for j in range(v.shape[1])], axis=1).reshape(-1, v.shape[1])


class _Bounds:
    """Betting bounds requested one by one and computed in batches (rows of equal ``n`` and
    kind stacked: many layers in one call of :func:`skipit.theory.betting_upper_bound`)."""

    def __init__(self, level):
        self.level = level
        self.requests = {}
        self.results = {}

    def ask(self, key, kind, values, lo, hi, null=None):
        """``kind``: ``upper`` / ``lower`` bound, or ``p_less`` / ``p_greater`` at ``null``."""
        self.requests[key] = (kind, np.asarray(values, dtype=np.float64), lo, hi, null)

    def run(self):
        buckets = {}
        for key, (kind, values, lo, hi, null) in self.requests.items():
            buckets.setdefault((kind, values.size, lo, hi), []).append((key, values, null))
        for (kind, n, lo, hi), items in buckets.items():
            rows = np.stack([v for _, v, _ in items]) if n else np.zeros((len(items), 0))
            if kind == "upper":
                got = betting_upper_bound(rows, self.level, lo, hi)
            elif kind == "lower":
                got = betting_lower_bound(rows, self.level, lo, hi)
            else:
                nulls = np.array([m for _, _, m in items], dtype=np.float64)
                got = betting_p_value(rows, nulls, lo, hi, alternative=kind[2:], delta=self.level)
            for (key, _, _), value in zip(items, np.atleast_1d(got)):
                self.results[key] = float(value)
        return self.results


def _ask_group(bounds, where, block, thresholds, units):
    """Request the bounds of one group's block: ``U`` on the unit means of ``m_e`` on ``[0, 2]``
    and ``P(t)`` on the unit means of ``f_e(t)`` on ``[0, 1]``; returns the number of units."""
    means = _unit_rows(block.get("example_values") or [], block.get("example_value_ids") or [], units)
    fractions = np.asarray(block.get("example_fraction_values") or np.zeros((0, len(thresholds))), dtype=np.float64)
    fractions = _unit_rows(fractions.reshape(-1, len(thresholds)), block.get("example_value_ids") or [], units)
    bounds.ask(where + ("mean",), "upper", means, 0.0, COSINE_DISTANCE_RANGE)
    for j, t in enumerate(thresholds):
        bounds.ask(where + ("fraction", threshold_key(t)), "lower", fractions[:, j], 0.0, 1.0)
    return int(means.size), means, fractions


def _token_block(block, bound_of, thresholds, units):
    """One group's entry: token-level point estimates, unit-level betting bounds (``bound_of(name)``)."""
    tokens = int(block["tokens"])
    n = int(block.get("examples") or 0)
    ex_mean = block.get("example_mean_cosine_distance")
    ex_var = block.get("example_mean_variance")
    fractions = block.get("example_proximal_fraction") or {}
    keys = [threshold_key(t) for t in thresholds]
    return {
        "tokens": tokens,
        "examples": n,
        "units": units,
        "design_effect": block.get("design_effect"),
        "zero_norm_tokens": int(block.get("zero_norm_tokens") or 0),
        "mean_cosine_distance": float(block["mean_cosine_distance"]) if tokens else None,
        "variance": None if block.get("variance") is None else float(block["variance"]),
        "proximal_probability": {k: (float(_lookup(block["proximal_probability"], t)) if tokens else None)
                                 for k, t in zip(keys, thresholds)},
        "proximal_count": {k: int(_lookup(block["proximal_count"], t)) for k, t in zip(keys, thresholds)},
        "example_mean_cosine_distance": None if ex_mean is None or not n else float(ex_mean),
        "example_variance": None if ex_var is None or not n else float(ex_var),
        "example_proximal_fraction": {k: (float(_lookup(fractions, t)) if n else None)
                                      for k, t in zip(keys, thresholds)},
        "mean_upper_bound": bound_of(("mean",)),
        "proximal_lower_bound": {k: bound_of(("fraction", k)) for k in keys},
    }


def _attention_upper(layer, bounds, units):
    """Request the upper bound on the mean head-averaged visual attention share (values in [0, 1]).

    Per example the share is ``VAR / H`` (eq. 3 divided by the number of heads); a unit's value
    is the mean over its examples; the bound is :func:`skipit.theory.betting_upper_bound` on
    ``[0, 1]``. No per-example shares: 1 (no units, the test fails). Returns the number of units.
    """
    shares = _unit_rows(layer.get("visual_attention_example_values") or [],
                        layer.get("visual_attention_example_ids") or [], units)
    if layer.get("visual_attention_mean_head") is None:
        shares = np.zeros(0)
    bounds.ask((int(layer["layer"]), "attention"), "upper", shares, 0.0, 1.0)
    return int(shares.size)


def certificate_layers(stats_layers: Sequence[Mapping[str, Any]], num_examples: int,
                       settings: CertifySettings,
                       units: Sequence[int] | Mapping[int, int] | None = None) -> list[dict[str, Any]]:
    """Per-layer certificate entries from ``RunStatistics.layers()`` (l = 1..N).

    Point estimates are copied unchanged from the capture engine. Each gets a one-sided
    confidence bound at level :func:`paper_test_level` by betting
    (:func:`skipit.theory.betting_upper_bound` / ``betting_lower_bound``), whose i.i.d. draws
    are the **units**: ``units[label]`` is the unit of the example labelled ``label`` (the
    statistics' ``example_value_ids``; :func:`skipit.empirical.certify` labels examples by
    their index in the data), and a unit's value is the mean of its examples' values; with
    ``units=None`` each example is its own unit. The bounds need per-example values
    (``example_values``, ``example_fraction_values``, ``visual_attention_example_values``):
    without them a group has no units and gets the trivial bounds (2, 0, 1). The vision
    block also carries the p-values of the geometric and proximal tests at ``eps``
    (``p_values``, :func:`skipit.theory.betting_p_value`), which the freeze family combines
    by Holm's rule (:func:`decide`). ``num_examples``: the examples of the run (recorded by
    :func:`build_certificate`; the bounds count units).
    """
    level = paper_test_level(settings)
    t_key = threshold_key(settings.proximal_t)
    bounds = _Bounds(level)
    counts = {}
    for expected, layer in enumerate(stats_layers, start=1):
        if int(layer["layer"]) != expected:
            raise ValueError(f"statistics layers must be numbered 1..N in order, got layer {layer['layer']} "
                             f"at position {expected}")
        for group in ("vision", "text", "answer"):
            if group in layer:
                n, means, fractions = _ask_group(bounds, (expected, group), layer[group], settings.thresholds, units)
                counts[(expected, group)] = n
                if group == "vision":
                    j = [threshold_key(t) for t in settings.thresholds].index(t_key)
                    bounds.ask((expected, "p", "geometric"), "p_less", means, 0.0, COSINE_DISTANCE_RANGE,
                               settings.eps)
                    bounds.ask((expected, "p", "proximal"), "p_greater", fractions[:, j], 0.0, 1.0,
                               1.0 - settings.eps)
        counts[(expected, "attention")] = _attention_upper(layer, bounds, units)
    results = bounds.run()
    out = []
    for expected, layer in enumerate(stats_layers, start=1):
        entry: dict[str, Any] = {"layer": expected}
        for group in ("vision", "text", "answer"):
            if group in layer:
                entry[group] = _token_block(layer[group], lambda name, g=group: results[(expected, g) + name],
                                            settings.thresholds, counts[(expected, group)])
        entry["vision"]["p_values"] = {"geometric": results[(expected, "p", "geometric")],
                                       "proximal": results[(expected, "p", "proximal")]}
        ratio = layer.get("visual_attention_ratio")
        attention = layer.get("visual_attention_mean_head")
        entry.update({
            "visual_attention_ratio": None if ratio is None else float(ratio),
            "visual_attention_mean_head": None if attention is None else float(attention),
            "visual_attention_upper_bound": results[(expected, "attention")],
            "visual_attention_units": counts[(expected, "attention")],
            "bound_level": level,
            "cka": {k: (None if v is None else float(v)) for k, v in layer.get("cka", {}).items()},
        })
        out.append(entry)
    return out


def _layer_tests(entry, settings, hidden_size=None):
    from skipit.theory import proposition1_mean_bound, theorem1_bound, theorem1_bound_sharp, theorem3_mi_lower_bound

    t_key = threshold_key(settings.proximal_t)
    vision = entry["vision"]
    upper = vision["mean_upper_bound"]
    lower = vision["proximal_lower_bound"][t_key]
    attention = entry["visual_attention_upper_bound"]
    # Theorem 1 with its eps = 2 U (hypothesis E[rho] <= eps/2): coefficients of (alpha^2 + beta^2), (alpha + beta)^2
    functional = float(theorem1_bound(1.0, 0.0, 2.0 * upper)) if upper > 0 else 0.0
    functional_sharp = float(theorem1_bound_sharp(1.0, 0.0, 2.0 * upper)) if upper > 0 else 0.0
    # Proposition 1 (range [0, 2]): E[rho] <= t + (2 - t) P[rho > t] <= t + (2 - t)(1 - P_l)
    prop1 = float(proposition1_mean_bound(settings.proximal_t, 1.0 - lower, COSINE_DISTANCE_RANGE))
    informational = ""
    mi = None
    if hidden_size:
        # Theorem 3 decreases in P_t, so P_t <= 1 - P_l gives a valid lower bound
        mi = float(theorem3_mi_lower_bound(1.0 - lower, settings.proximal_t, int(hidden_size)))
        informational = (f"; Theorem 3 (only if X_l were uniform on S^{int(hidden_size) - 1}, not checked): "
                         f"I(X_l; X_(l-1)) >= {mi:.4g} nats")
    return {
        "geometric": {
            "pass": bool(upper < settings.eps),
            "mean_cosine_distance": vision["example_mean_cosine_distance"],
            "upper_bound": upper, "eps": settings.eps, "examples": vision["examples"],
            "units": vision.get("units"), "level": entry.get("bound_level"),
            "p_value": (vision.get("p_values") or {}).get("geometric"),
            "cites": f"Definition 1 (E[rho] <= {upper:.4g}, {vision.get('units')} units); "
                     f"Theorem 1 with eps = 2U: E||E[Z|X_l] - E[Z|X_(l-1)]||^2 <= {functional:.4g} "
                     f"(alpha^2 + beta^2), sharp form {functional_sharp:.4g} (alpha + beta)^2",
            "theorem1_coefficient": functional,
        },
        "proximal": {
            "pass": bool(lower > 1.0 - settings.eps),
            "probability": vision["example_proximal_fraction"][t_key],
            "lower_bound": lower, "t": settings.proximal_t, "required": 1.0 - settings.eps,
            "units": vision.get("units"), "level": entry.get("bound_level"),
            "p_value": (vision.get("p_values") or {}).get("proximal"),
            "cites": f"Definition 2 (P[rho < {settings.proximal_t:g}] >= {lower:.4g}); Proposition 1 on [0, 2]: "
                     f"E[rho] <= {prop1:.4g}; Theorem 4 / Corollary 4: proximal implies informational "
                     "redundancy" + informational,
            "proposition1_mean_bound": prop1,
            "theorem3_mi_lower_bound_nats": mi,
        },
        "attention": {
            "pass": bool(attention < settings.attention_threshold),
            "visual_attention_mean_head": entry["visual_attention_mean_head"],
            "upper_bound": attention, "threshold": settings.attention_threshold,
            "units": entry.get("visual_attention_units"), "level": entry.get("bound_level"),
            "cites": "Theorem 6 hypothesis ||f_text(V, T) - f_text(0, T)|| <= delta: vision barely moves the "
                     "text when the text barely attends to it",
        },
    }


def _p(test):
    """A test's p-value (1 when it has none: nothing is rejected)."""
    p = test.get("p_value")
    return 1.0 if p is None else float(p)


def _holm(p_values, level):
    """Holm's step-down rule at family-wise level ``level``: ``{key: {"p_value", "threshold",
    "rejected"}}``; sorted ascending (ties by key), the ``j``-th is rejected at
    ``level / (m - j + 1)`` while every smaller one was rejected."""
    order = sorted(p_values, key=lambda k: (p_values[k], k))
    out, going = {}, True
    for j, key in enumerate(order):
        threshold = level / (len(order) - j)
        going = going and p_values[key] <= threshold
        out[key] = {"p_value": p_values[key], "threshold": threshold, "rejected": bool(going)}
    return out


def decide(layers: Sequence[Mapping[str, Any]], settings: CertifySettings,
           hidden_size: int | None = None) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """The paper's late-entry, early-exit and freeze verdicts from certificate layers.

    See the module docstring for the rule. ``hidden_size`` (the decoder's width d), when
    given, adds Theorem 3's mutual-information lower bound to each proximal test, under
    that theorem's hypothesis (X_l uniform on the sphere), which is not checked.

    Returns ``(late_entry, early_exit, freeze)``. ``late_entry["max_entry_layer"]``: the
    largest ``L`` in ``1..N`` such that every ``l < L`` passes all three tests (``L = 1``:
    nothing skipped); its ``certified_layers`` are ``1..L-1``.
    ``early_exit["min_exit_layer"]``: the smallest ``L`` such that every ``l > L`` passes
    the attention test (``L = N``: nothing skipped); ``certified_layers`` are ``L+1..N``.
    ``freeze["certified_layers"]``: the layers ``1..L-1`` of the late-entry chain, and the
    layers whose geometric and proximal tests Holm's rule rejects.

    **Error budget (why each test may use ``(1 - c) / 3``).** The verdicts are three families
    of claims, each at level ``a = (1 - c) / 3`` (:func:`paper_test_level`), so that all claims
    hold together with probability ``>= c`` (a union bound over the three):

    * *late entry*: the claim "layer ``l`` satisfies Definitions 1-2 and the attention bound"
      has the null ``H_l`` = "one of the three fails"; it is rejected only when all three tests
      reject at level ``a`` (an intersection-union test, level ``a``). The claims are tested in
      the fixed order ``l = 1, 2, ...`` and the walk stops at the first not rejected.
      Fixed-sequence testing (Maurer, Hothorn & Lehmacher 1995; as Learn-then-Test's chains
      below): a false claim is made only if the first true null in the order is rejected,
      which has probability ``<= a``; so each test takes the whole ``a``, not ``a / N``;
    * *early exit*: the attention claims in the order ``l = N, N-1, ...``, the same argument;
    * *freeze*: each layer is its own claim, with no order; Holm's step-down rule (Holm 1979)
      on the p-values ``p_l = max(p_geometric, p_proximal)`` (the intersection-union p-value;
      betting p-values, :func:`skipit.theory.betting_p_value`) controls the family-wise error
      at ``a`` under any dependence: sorted ascending, the ``j``-th smallest is rejected at
      ``a / (N - j + 1)`` while all before it were. The layers ``1..L-1`` of the late-entry
      chain are certified freezable as well: their claims are implied by the late-entry
      claims, whose error that family already counts.
    """
    num_layers = len(layers)
    tests = {e["layer"]: _layer_tests(e, settings, hidden_size) for e in layers}

    late_ok = {l: all(x["pass"] for x in tests[l].values()) for l in tests}
    max_entry = 1
    while max_entry <= num_layers and late_ok[max_entry]:
        max_entry += 1
    max_entry = min(max_entry, num_layers)  # entering after the last layer is no model at all
    late_failure = next((l for l in range(1, num_layers + 1) if not late_ok[l]), None)
    late_certified = list(range(1, max_entry))
    steps = [tests[l]["geometric"]["upper_bound"] for l in late_certified]
    late_entry = {
        "certified_layers": late_certified,
        "max_entry_layer": max_entry,
        "reasons": {
            "rule": "late entry at L iff every layer l < L has U_l < eps (geometric), P_l > 1 - eps "
                    "(proximal, t = proximal_t) and A_l < attention_threshold; fixed-sequence testing in "
                    "the order l = 1, 2, ... at (1 - confidence)/3 per test (betting bounds, units as "
                    "the independent draws)",
            "level_per_test": paper_test_level(settings),
            "theorem": "Theorem 6 (App. A.2): ||Y_true - Y_skip|| <= mu((L-1) eps_6 + delta_6 "
                       "(lambda^L - 1)/(lambda - 1)) under Lipschitz hypotheses (mu, lambda not measured)",
            "theorem6_eps_estimate": (math.sqrt(2 * max(steps)) if steps else 0.0),
            "theorem6_eps_note": "largest mean per-token step E||v_l - v_{l-1}|| <= sqrt(2 U_l) over the "
                                 "skipped layers (unit-normalised states, Jensen); Theorem 6 asks for a "
                                 "worst-case step, which a finite sample cannot certify",
            "first_failing_layer": late_failure,
            "failing_tests": ([k for k, v in tests[late_failure].items() if not v["pass"]]
                              if late_failure is not None else []),
            "layers": {str(l): tests[l] for l in range(1, num_layers + 1)},
        },
    }

    attention_ok = {l: tests[l]["attention"]["pass"] for l in tests}
    min_exit = num_layers
    while min_exit > 1 and attention_ok[min_exit]:
        min_exit -= 1
    exit_failure = min_exit if not attention_ok[min_exit] else None
    early_exit = {
        "certified_layers": list(range(min_exit + 1, num_layers + 1)),
        "min_exit_layer": min_exit,
        "reasons": {
            "rule": "early exit after L iff every layer l > L has A_l < attention_threshold "
                    "(upper confidence bound of the head-mean visual attention share); fixed-sequence "
                    "testing in the order l = N, N-1, ... at (1 - confidence)/3 per test",
            "level_per_test": paper_test_level(settings),
            "theorem": "Section 4 (Visual Attention Ratio, Jiang et al. 2025): the output is text, so "
                       "vision tokens the text does not attend to can leave; the paper states no error "
                       "bound for early exit",
            "last_failing_layer": exit_failure,
            "layers": {str(l): {"attention": tests[l]["attention"]} for l in range(1, num_layers + 1)},
        },
    }

    level = paper_test_level(settings)
    holm = _holm({l: max(_p(tests[l]["geometric"]), _p(tests[l]["proximal"])) for l in tests}, level)
    freeze = {
        "certified_layers": sorted(set(late_certified) | {l for l, h in holm.items() if h["rejected"]}),
        "reasons": {
            "rule": "freeze layer l (vision tokens keep their input state in layer l; text still attends "
                    "to them) iff E[rho] < eps and P[rho < t] > 1 - eps are certified: by Holm's rule at "
                    "(1 - confidence)/3 on p_l = max(p_geometric, p_proximal) (betting p-values), or by the "
                    "late-entry chain (layers 1..L-1); the vision change the freeze removes is D_l",
            "level": level,
            "holm": {str(l): holm[l] for l in range(1, num_layers + 1)},
            "theorem": "Definitions 1-2 with Theorem 1: a layer whose vision update is eps-redundant changes "
                       "what the rest of the model can compute from it by at most Theorem 1's bound "
                       "(Lipschitz constants not measured); per layer only: effects of several frozen "
                       "layers add up (see `verification`)",
            "layers": {str(l): {"geometric": tests[l]["geometric"], "proximal": tests[l]["proximal"]}
                       for l in range(1, num_layers + 1)},
        },
    }
    return late_entry, early_exit, freeze


# --------------------------------------------------------------------------------------
# verification: split, candidates, fixed-sequence testing (Learn-then-Test)
# --------------------------------------------------------------------------------------

def split_indices(num_examples: int, settings: CertifySettings) -> tuple[list[int], list[int]]:
    """``(statistics, calibration)`` index lists: a seeded permutation of ``0..n-1``, the first
    ``round((1 - calibration_fraction) n)`` for the statistics, the rest for calibration, each
    sorted. Without verification every example is used for the statistics."""
    if not settings.verify:
        return list(range(num_examples)), []
    order = np.random.default_rng(settings.split_seed).permutation(num_examples)
    n_stats = int(round((1.0 - settings.calibration_fraction) * num_examples))
    n_stats = min(max(n_stats, 1), num_examples - 1) if num_examples >= 2 else num_examples
    return sorted(int(i) for i in order[:n_stats]), sorted(int(i) for i in order[n_stats:])


def freeze_order(layers: Sequence[Mapping[str, Any]], scores: Mapping[int, float] | None = None) -> list[int]:
    """Layers ``1..N-1`` by ``scores`` ascending (``{layer: score}``; default: the certified
    vision redundancy ``U_l`` of ``layers``), ties by ``l``. Layer ``N`` is left out: freezing
    it cannot change an answer (only text positions of the last layer are read), so it is a
    trivial candidate."""
    num_layers = len(layers)
    if scores is None:
        scores = {l: layers[l - 1]["vision"]["mean_upper_bound"] for l in range(1, num_layers + 1)}
    return sorted(range(1, num_layers), key=lambda l: (float(scores[l]), l))


def candidate_chains(layers: Sequence[Mapping[str, Any]],
                     order: Iterable[int] | None = None) -> dict[str, list[dict[str, Any]]]:
    """The three ordered candidate chains, from the statistics split alone.

    ``late-entry``: ``L = 2, 3, ..., N`` (ascending: each skips one layer more);
    ``early-exit``: ``L = N-1, ..., 1`` (descending); ``freeze``: the first ``k`` layers of
    ``order`` (default :func:`freeze_order`) for ``k = 1, 2, ...``. The trivial settings
    (late entry at 1, early exit at N, freezing only layer N) are not candidates.
    Returns ``{mode: [config, ...]}`` with configs ``{"mode", "layer"}`` or ``{"mode", "layers"}``.
    """
    n = len(layers)
    order = freeze_order(layers) if order is None else [int(l) for l in order]
    bad = [l for l in order if not 1 <= l <= n]
    if bad or len(set(order)) != len(order):
        raise ValueError(f"`order` must list distinct layers in [1, {n}], got {order}")
    return {
        "late-entry": [{"mode": "late-entry", "layer": L} for L in range(2, n + 1)],
        "early-exit": [{"mode": "early-exit", "layer": L} for L in range(n - 1, 0, -1)],
        "freeze": [{"mode": "freeze", "layers": sorted(order[:k])} for k in range(1, len(order) + 1)],
    }


def config_arg(config: Mapping[str, Any]) -> int | list[int]:
    """The layer argument of a candidate's skipping mode: ``layers`` for freeze, else ``layer``."""
    return list(config["layers"]) if config["mode"] == "freeze" else int(config["layer"])


def binomial_p_value(changed: int, examples: int, tolerance: float) -> float:
    """Exact p-value of ``H_0: change rate > tolerance`` after ``changed`` of ``examples`` changed:
    ``P[Bin(examples, tolerance) <= changed]`` (the largest over the null, attained at its
    boundary since the binomial CDF decreases in the rate)."""
    if examples < 1:
        return 1.0
    return float(_scipy_stats.binom.cdf(int(changed), int(examples), float(tolerance)))


def run_chains(chains: Mapping[str, Sequence[Mapping[str, Any]]], examples: int,
               changed: Callable[[Mapping[str, Any]], int], flops_fraction: Callable[[Mapping[str, Any]], float],
               settings: CertifySettings) -> dict[str, list[dict[str, Any]]]:
    """Walk each chain of :func:`candidate_chains` in order, measuring a candidate only while the
    chain runs: ``changed(config)`` (answers changed out of ``examples``) and
    ``flops_fraction(config)`` are called per candidate, and a chain stops after its first
    candidate whose p-value exceeds ``settings.chain_level()`` (later ones are never run).
    Returns ``{mode: [config with examples, changed, flops_fraction], ...}`` for
    :func:`verification_block`."""
    level = settings.chain_level()
    out = {}
    for mode, candidates in chains.items():
        tested = []
        for config in candidates:
            k = int(changed(config))
            tested.append(dict(config, examples=int(examples), changed=k, flops_fraction=float(flops_fraction(config))))
            if binomial_p_value(k, examples, settings.tolerance) > level:
                break
        out[mode] = tested
    return out


def fixed_sequence(results: Iterable[Mapping[str, Any]], tolerance: float, level: float) -> list[dict[str, Any]]:
    """Fixed-sequence testing of one chain: ``results`` in the chain's order, each with
    ``examples`` and ``changed``. Returns copies with ``p_value``, ``upper_bound``
    (Clopper-Pearson at ``level``) and ``certified``: true for every candidate before the
    first whose p-value exceeds ``level`` (that one and all after it are false)."""
    out, going = [], True
    for r in results:
        p = binomial_p_value(r["changed"], r["examples"], tolerance)
        going = going and p <= level
        out.append(dict(r, p_value=p, upper_bound=float(clopper_pearson_upper(r["changed"], r["examples"], level)),
                        certified=bool(going)))
    return out


def verification_block(chains: Mapping[str, Sequence[Mapping[str, Any]]], settings: CertifySettings, examples: int,
                       order: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The certificate's ``verification`` dict from tested chains (``{mode: [result, ...]}``,
    each result a config with ``examples``, ``changed`` and ``flops_fraction``; a chain may
    stop early: untested candidates are not listed). ``order``: how the freeze chain was
    ordered (``{"by", "scores", "layers"}``). ``recommended``: the certified config
    with the smallest ``flops_fraction`` (ties: the first in mode order), or None."""
    level = settings.chain_level()
    configs = []
    for mode in VERIFY_MODES:
        configs.extend(fixed_sequence(chains.get(mode, []), settings.tolerance, level))
    certified = [c for c in configs if c["certified"]]
    best = min(certified, key=lambda c: c["flops_fraction"]) if certified else None
    return {
        "tolerance": settings.tolerance, "confidence": settings.confidence, "examples": int(examples),
        "level_per_chain": level,
        "procedure": "Learn-then-Test, fixed-sequence testing per chain at (1 - confidence)/3; exact binomial "
                     "p-value P[Bin(n, tau) <= k] of H0: change rate > tau; examples as the independent units",
        "statement": (f"with probability >= {settings.confidence:g}, on data like the {int(examples)} calibration "
                      f"examples, every certified configuration changes at most {settings.tolerance:g} of the "
                      "answers (compared with the full model's)"),
        "answer": ("one-token argmax at the answer position" if settings.max_new_tokens <= 1 else
                   f"greedy generation of up to {settings.max_new_tokens} tokens, normalised (the one-token "
                   "argmax for letter-scored multiple-choice examples)"),
        "freeze_order": order,
        "configs": configs,
        "recommended": None if best is None else dict(best, predicted_speedup=1.0 / best["flops_fraction"]),
    }


# --------------------------------------------------------------------------------------
# the whole certificate
# --------------------------------------------------------------------------------------

def build_certificate(stats_layers: Sequence[Mapping[str, Any]], *, num_examples: int, settings: CertifySettings,
                      model_info: Mapping[str, Any], data_info: Mapping[str, Any],
                      run_info: Mapping[str, Any] | None = None,
                      verification: Mapping[str, Any] | None = None,
                      units: Sequence[int] | Mapping[int, int] | None = None) -> dict[str, Any]:
    """The ``skipit.certificate/3`` dict from per-layer statistics (pure; no torch).

    ``num_examples``: the examples behind the statistics (the attention bound's ``n`` when
    the statistics do not say); ``data.num_examples`` is ``data_info``'s when given (all the
    examples of the run, statistics and calibration), else this. ``verification``: the block of :func:`verification_block`, or None (``--no-verify``).
    ``units``: the unit of each example label (:func:`certificate_layers`).
    """
    layers = certificate_layers(stats_layers, num_examples, settings, units=units)
    late_entry, early_exit, freeze = decide(layers, settings, hidden_size=model_info.get("hidden_size"))
    num_layers = len(layers)
    settings_out = dict(settings.decision_dict(), **{
        "attention_statistic": "visual_attention_mean_head",
        "bonferroni_tests": len(PAPER_FAMILIES),
        "delta_per_test": paper_test_level(settings),
        "paper_procedure": "three families at (1 - confidence)/3 each (union bound): the late-entry chain "
                           "(l = 1, 2, ...) and the early-exit chain (l = N, N-1, ...) by fixed-sequence "
                           "testing, each test at the family's full level; the freeze family by Holm's rule "
                           "on betting p-values, plus the layers of the late-entry chain",
        "independent_unit": UNIT_RULE if units is not None else "example (one image with its question)",
        "bounds": {
            "mean_upper_bound": "betting upper bound (Waudby-Smith & Ramdas 2024, predictable plug-in bets, "
                                "one-sided; skipit.theory.betting_upper_bound) at delta_per_test on the "
                                "per-unit mean cosine distance, units as i.i.d. draws in [0, 2] in a seeded order",
            "proximal_lower_bound": "betting lower bound on the per-unit fraction of vision tokens with "
                                    "rho < t, units as i.i.d. draws in [0, 1]",
            "visual_attention_upper_bound": "betting upper bound on the per-unit head-mean share VAR/H, "
                                            "units as i.i.d. draws in [0, 1]",
        },
    })
    run = dict(run_info or {})
    run.setdefault("world_size", 1)
    data = dict(data_info)
    data.setdefault("num_examples", int(num_examples))
    return {
        "schema": SCHEMA,
        "model": dict(model_info, num_layers=num_layers),
        "data": data,
        "settings": settings_out,
        "run": run,
        "hypotheses": [
            "units (images, with all their questions; see settings.independent_unit) are i.i.d. draws from the "
            "distribution the certificate speaks about; the tokens and the questions of one image may be "
            "dependent in any way",
            "Theorem 1 additionally needs E[Z | X_l, X_{l-1}] Lipschitz; Theorem 6 needs the tail of the "
            "model mu-Lipschitz and each text update lambda-Lipschitz; neither constant is measured, so "
            "the paper's verdicts are backed by `verification`, which measures answer changes directly",
        ],
        "layers": layers,
        "late_entry": late_entry,
        "early_exit": early_exit,
        "freeze": freeze,
        "verification": verification,
    }


# --------------------------------------------------------------------------------------
# schema, loading, model check
# --------------------------------------------------------------------------------------

def certificate_schema() -> dict[str, Any]:
    """The JSON Schema of ``skipit.certificate/3`` and ``/2`` (shipped as ``certificate.schema.json``)."""
    with open(SCHEMA_FILE, encoding="utf-8") as fh:
        return json.load(fh)


def _schema_problem(cert):
    """The first schema violation of ``cert`` in words, or None."""
    import jsonschema

    validator = jsonschema.Draft202012Validator(certificate_schema())
    errors = sorted(validator.iter_errors(cert), key=lambda e: list(e.absolute_path))
    if not errors:
        return None
    e = errors[0]
    where = "/".join(str(p) for p in e.absolute_path) or "(top level)"
    return f"at {where}: {e.message}"


def load_certificate(path: str | os.PathLike[str], model_info: Mapping[str, Any] | None = None,
                     what: str = "--certificate") -> dict[str, Any]:
    """Read and validate a ``certificate.json`` written by ``skipit certify``.

    The file must be JSON, of a schema in :data:`SCHEMAS_READ` (``skipit.certificate/3`` or ``/2``) and valid against
    :func:`certificate_schema`. With ``model_info`` (``model_type``, ``num_layers``,
    ``weights`` fingerprint; any subset), a certificate made for another model is refused
    (:func:`check_certificate_model`). Errors are :class:`skipit.errors.SkipitError` with one
    line naming ``what`` and ``path``.
    """
    from skipit.errors import SkipitError

    try:
        with open(path, encoding="utf-8") as fh:
            cert = json.load(fh)
    except OSError as err:
        raise SkipitError(f"{what} {path}: cannot read it ({err.strerror})") from None
    except json.JSONDecodeError as err:
        raise SkipitError(f"{what} {path}: not JSON ({err})") from None
    if not isinstance(cert, dict) or cert.get("schema") not in SCHEMAS_READ:
        found = cert.get("schema") if isinstance(cert, dict) else type(cert).__name__
        raise SkipitError(f"{what} {path}: schema {found!r} is not {SCHEMA!r} (or {SCHEMAS_READ[0]!r}); rerun "
                          "`skipit certify` with this version")
    problem = _schema_problem(cert)
    if problem:
        raise SkipitError(f"{what} {path}: not a valid {cert['schema']} certificate ({problem})")
    if model_info:
        check_certificate_model(cert, model_info, what=f"{what} {path}")
    return cert


_MODEL_CHECKS = (("model_type", "model type"), ("num_layers", "number of decoder layers"),
                 ("weights", "weights fingerprint"))


def check_certificate_model(cert: Mapping[str, Any], model_info: Mapping[str, Any],
                            what: str = "the certificate") -> None:
    """Refuse (``SkipitError``) a certificate whose model differs from ``model_info`` in model
    type, layer count or weights fingerprint (fields missing on either side are not compared)."""
    from skipit.errors import SkipitError

    mine = cert.get("model", {})
    for key, words in _MODEL_CHECKS:
        a, b = mine.get(key), model_info.get(key)
        if a is not None and b is not None and a != b:
            raise SkipitError(f"{what} was made for another model: its {words} is {a!r}, this model's is {b!r}")
