"""The pure certificate (skipit.empirical.certificate): bounds, verdicts, verification maths, schema.

Every test builds per-layer statistics in the capture engine's layout from per-example
arrays of cosine distances and attention shares whose answers are known exactly, so a
failing test is a counterexample, not noise. The one simulation (family-wise error of the
fixed-sequence chains) is seeded and states its slack.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from skipit.empirical.certificate import (
    SCHEMA,
    CertifySettings,
    binomial_p_value,
    build_certificate,
    candidate_chains,
    certificate_layers,
    certificate_schema,
    check_certificate_model,
    decide,
    fixed_sequence,
    freeze_order,
    load_certificate,
    split_indices,
    verification_block,
)
from skipit.empirical.stats import RunStatistics, threshold_key
from skipit.errors import SkipitError
from skipit.theory import betting_lower_bound, betting_p_value, betting_upper_bound

THRESHOLDS = (0.01, 0.02, 0.05, 0.1)
N_LAYERS = 6
EXAMPLES = 1000  # examples behind every synthetic layer (the independent units)
HEAD_WEIGHTS = np.array([0.5, 1.5, 1.0, 1.0])  # heads share an example's attention unequally; mean 1
T_KEY = threshold_key(0.05)  # the default proximal_t


# ------------------------------------------------------------------ synthetic statistics

def group_block(distances, thresholds=THRESHOLDS):
    """A group's block in the capture-engine layout (``RunStatistics.group``) from a list of
    per-example 1-D arrays of cosine distances: token sums and per-example sums of the same
    draws, so the token-level and example-level fields agree as in a real run."""
    lengths = np.array([len(d) for d in distances])
    flat = np.concatenate(distances).astype(np.float64)
    starts = np.r_[0, np.cumsum(lengths)[:-1]]
    below = flat[:, None] < np.asarray(thresholds)[None, :]
    means = np.add.reduceat(flat, starts) / lengths
    fractions = np.add.reduceat(below.astype(np.float64), starts, axis=0) / lengths[:, None]
    stats = RunStatistics(num_layers=1, thresholds=thresholds)
    stats.add_distance_sums(1, "vision", flat.size, flat.sum(), (flat * flat).sum(),
                            ((flat - flat.mean()) ** 2).sum(), below.sum(0))
    stats.add_example_sums(1, "vision", len(distances), means.sum(), ((means - means.mean()) ** 2).sum(),
                           fractions.sum(0), ((fractions - fractions.mean(0)) ** 2).sum(0))
    stats.add_example_values({"vision": np.c_[means, fractions][:, None, :]}, ids=range(len(distances)))
    return stats.group(1, "vision")


def attention_fields(shares):
    """Attention fields in the capture-engine layout (``RunStatistics.attention``) from per-example
    head-mean shares ``VAR_e / H`` (spread unequally over the heads)."""
    shares = np.asarray(shares, dtype=np.float64)
    stats = RunStatistics(num_layers=1, thresholds=THRESHOLDS, num_heads=len(HEAD_WEIGHTS))
    stats.add_attention(1, shares[:, None] * HEAD_WEIGHTS[None, :])
    stats.add_example_values({}, attention=shares[:, None], ids=range(len(shares)))
    return stats.attention(1)


def _examples(*parts, tokens=4):
    """Per-example distance arrays: ``parts`` are (count, distance) pairs, every token of such an
    example at that distance (up to a tiny spread, inside [0, 2], that keeps variances positive)."""
    out = []
    for count, value in parts:
        for i in range(count):
            out.append(np.full(tokens, value) + (1e-5 if value < 1 else -1e-5) * (i % 3))
    return out


# Named per-example distributions at confidence 0.95: betting bounds at a = 0.05 / 3 per test.
REDUNDANT = _examples((EXAMPLES, 0.001))              # U ~ 0.010 < 0.05, P ~ 0.995 > 0.95
MOVING = _examples((EXAMPLES, 0.2))                   # U > 0.2, no token below 0.05
# point estimate 0.021 < eps, upper bound ~ 0.058 > eps; 99% below t: only the geometric test fails
GEOMETRIC_BOUND_FAILS = _examples((990, 0.001), (10, 2.0))
# 96% of the tokens below t (> 1 - eps), lower bound ~ 0.938 < 1 - eps; U ~ 0.01: only the proximal test fails
PROXIMAL_BOUND_FAILS = _examples((960, 0.001), (40, 0.06))
MID = _examples((EXAMPLES, 0.045))                    # U ~ 0.054: fails at eps = 0.05, passes at 0.1
# U ~ 0.049 at a, ~ 0.053 at a / 6: geometric p-value ~ 0.64 a, between Holm's a / 2 and a
HOLM_EDGE = _examples((EXAMPLES, 0.04))
QUIET, LOUD = np.full(EXAMPLES, 0.01), np.full(EXAMPLES, 0.5)
# head-mean share 0.095 < 0.1, upper bound ~ 0.103 > 0.1: only the attention test fails
ATTENTION_BOUND_FAILS = np.r_[np.zeros(EXAMPLES // 2), np.full(EXAMPLES // 2, 0.19)]

_BLOCKS = {}


def _block(name):
    if name not in _BLOCKS:
        _BLOCKS[name] = group_block(globals()[name])
    return _BLOCKS[name]


def stats_layer(layer, vision="MOVING", text="MOVING", shares=LOUD):
    """One layer of ``RunStatistics.layers()``: vision and text blocks by name, attention shares."""
    return {"layer": layer, "vision": _block(vision), "text": _block(text), "cka": {"vision": 0.9, "text": 0.5},
            **attention_fields(shares)}


def stats_layers(redundant_upto=0, quiet_from=N_LAYERS + 1, overrides=None):
    """Vision redundant and attention quiet in layers 1..redundant_upto, attention quiet in layers
    >= quiet_from; ``overrides[l]``: keyword arguments of :func:`stats_layer` for layer l."""
    out = []
    for l in range(1, N_LAYERS + 1):
        kwargs = {"vision": "REDUNDANT" if l <= redundant_upto else "MOVING",
                  "shares": QUIET if l <= redundant_upto or l >= quiet_from else LOUD}
        kwargs.update((overrides or {}).get(l, {}))
        out.append(stats_layer(l, **kwargs))
    return out


def _certificate(stats, verification=None, **settings):
    return build_certificate(stats, num_examples=EXAMPLES, settings=CertifySettings(**settings),
                             model_info={"name": "synthetic", "model_type": "llava", "weights": "abc"},
                             data_info={"source": "test"}, verification=verification)


def test_synthetic_block_is_the_capture_engine_layout():
    """The vectorised helper equals RunStatistics.add_distances, one example at a time."""
    rng = np.random.default_rng(0)
    distances = [rng.uniform(0, 0.2, size=k) for k in (1, 3, 7, 2, 5)]
    one_at_a_time = RunStatistics(num_layers=1, thresholds=THRESHOLDS)
    for d in distances:
        one_at_a_time.add_distances(1, "vision", d)
    want = one_at_a_time.group(1, "vision")
    got = group_block(distances)
    assert list(got) == list(want)
    for key, value in want.items():
        if key not in ("example_values", "example_fraction_values", "example_value_ids"):  # add_distances keeps sums
            assert got[key] == pytest.approx(value, rel=1e-12, abs=1e-15), key


# ------------------------------------------------------------------ example-level bounds

def _clustered_examples(seed, examples=60):
    """Ragged examples (2..30 tokens) whose tokens share an example-level distance: the token
    mean, token variance and token count differ from the example-level ones."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(examples):
        k = int(rng.integers(2, 31))
        level = rng.gamma(0.6, 0.02 * (1 + k / 10))  # longer examples move more: token mean != example mean
        out.append(np.clip(level + rng.normal(0, 0.002, size=k), 0, 2))
    return out


@pytest.mark.parametrize("confidence", [0.95, 0.8])
def test_every_bound_is_the_betting_bound_on_examples_at_the_family_level(confidence):
    """U_l, P_l (every threshold, every group) and A_l equal skipit.theory.betting_upper_bound /
    betting_lower_bound on the per-example values, n = examples, at a = (1 - c) / 3 (the family's
    level: fixed-sequence testing, not Bonferroni over the 3 N tests)."""
    n_layers = 3
    level = (1.0 - confidence) / 3
    settings = CertifySettings(confidence=confidence)
    stats, raw = [], []
    for l in range(1, n_layers + 1):
        vision, text = _clustered_examples(10 * l), _clustered_examples(10 * l + 1, examples=45)
        shares = np.random.default_rng(l).beta(1, 12, size=60)
        stats.append({"layer": l, "vision": group_block(vision), "text": group_block(text),
                      **attention_fields(shares)})
        raw.append({"vision": vision, "text": text, "shares": shares})
    layers = certificate_layers(stats, 60, settings)
    for entry, r in zip(layers, raw, strict=True):
        assert entry["bound_level"] == pytest.approx(level, rel=1e-15)
        for group in ("vision", "text"):
            d = r[group]
            means = np.array([x.mean() for x in d])
            got = entry[group]["mean_upper_bound"]
            assert entry[group]["examples"] == entry[group]["units"] == len(d)
            assert got == pytest.approx(betting_upper_bound(means, level, 0.0, 2.0), rel=1e-12)
            # the wrong level or the tokens as units give another number
            assert got != pytest.approx(betting_upper_bound(means, level / (3 * n_layers), 0.0, 2.0), rel=1e-3)
            assert got != pytest.approx(betting_upper_bound(np.concatenate(d), level, 0.0, 2.0), rel=1e-3)
            for t in THRESHOLDS:
                fractions = np.array([(x < t).mean() for x in d])
                assert entry[group]["proximal_lower_bound"][threshold_key(t)] == pytest.approx(
                    betting_lower_bound(fractions, level), rel=1e-12, abs=1e-12), (group, t)
        assert entry["visual_attention_upper_bound"] == pytest.approx(betting_upper_bound(r["shares"], level),
                                                                      rel=1e-12)
        assert entry["visual_attention_units"] == 60


def test_questions_of_one_image_are_one_unit():
    """Four questions per image with identical vision values (the image comes first): with
    ``units`` mapping each question to its image, the bound has one draw per image, the
    same as the images alone, and a wider bound than the questions counted as units."""
    images = _clustered_examples(5, examples=40)
    questions = [x for x in images for _ in range(4)]
    image_of = [i // 4 for i in range(len(questions))]
    stats = [{"layer": 1, "vision": group_block(questions), "text": group_block(questions),
              **attention_fields(np.repeat(np.linspace(0.0, 0.2, 40), 4))}]
    by_image = certificate_layers(stats, len(questions), CertifySettings(), units=image_of)[0]
    by_question = certificate_layers(stats, len(questions), CertifySettings())[0]
    means = np.array([x.mean() for x in images])
    assert by_image["vision"]["units"] == 40 and by_question["vision"]["units"] == 160
    assert by_image["vision"]["examples"] == 160
    assert by_image["vision"]["mean_upper_bound"] == pytest.approx(betting_upper_bound(means, 0.05 / 3, 0.0, 2.0),
                                                                   rel=1e-12)
    assert by_image["vision"]["mean_upper_bound"] > by_question["vision"]["mean_upper_bound"]
    assert by_image["visual_attention_units"] == 40
    assert by_image["visual_attention_upper_bound"] == pytest.approx(
        betting_upper_bound(np.linspace(0.0, 0.2, 40), 0.05 / 3), rel=1e-12)


def test_certificate_records_examples_and_design_effect_beside_the_point_estimates():
    """Token-level point estimates are copied unchanged; examples and the design effect are recorded."""
    vision = _clustered_examples(3)
    stats = [{"layer": 1, "vision": group_block(vision), "text": _block("MOVING"), "cka": {"vision": 0.7},
              **attention_fields(QUIET[:60])}]
    entry = certificate_layers(stats, 60, CertifySettings())[0]
    block = stats[0]["vision"]
    for key in ("tokens", "mean_cosine_distance", "variance", "proximal_probability", "proximal_count",
                "examples", "design_effect", "example_mean_cosine_distance", "example_proximal_fraction"):
        assert entry["vision"][key] == block[key], key
    means = np.array([x.mean() for x in vision])
    flat = np.concatenate(vision)
    assert entry["vision"]["examples"] == 60 and entry["vision"]["tokens"] == flat.size
    assert entry["vision"]["example_mean_cosine_distance"] == pytest.approx(means.mean(), rel=1e-12)
    assert entry["vision"]["design_effect"] == pytest.approx(
        means.var(ddof=1) / (flat.var(ddof=1) * 60 / flat.size), rel=1e-9)
    assert entry["vision"]["design_effect"] > 5  # strongly clustered: tokens are far from independent
    assert entry["cka"] == {"vision": 0.7}
    assert entry["visual_attention_mean_head"] == stats[0]["visual_attention_mean_head"]


def test_no_attention_statistics_fail_the_attention_test():
    fields = attention_fields(QUIET)
    fields.update(visual_attention_mean_head=None, visual_attention_ratio=None)
    stats = [{"layer": 1, "vision": _block("REDUNDANT"), "text": _block("MOVING"), **fields}]
    assert certificate_layers(stats, EXAMPLES, CertifySettings())[0]["visual_attention_upper_bound"] == 1.0


def test_sums_without_per_example_values_give_the_trivial_bounds():
    """Statistics with sums but no per-example values (an older checkpoint): no units, so U = 2,
    P = 0 and A = 1 (the betting bound needs every unit's value; nothing is certified)."""
    vision = dict(_block("REDUNDANT"), example_values=[], example_fraction_values=[], example_value_ids=[])
    fields = dict(attention_fields(QUIET), visual_attention_example_values=[], visual_attention_example_ids=[])
    entry = certificate_layers([{"layer": 1, "vision": vision, "text": _block("MOVING"), **fields}], EXAMPLES,
                               CertifySettings())[0]
    assert entry["vision"]["units"] == 0 and entry["vision"]["examples"] == EXAMPLES
    assert entry["vision"]["mean_upper_bound"] == 2.0
    assert set(entry["vision"]["proximal_lower_bound"].values()) == {0.0}
    assert entry["visual_attention_upper_bound"] == 1.0 and entry["vision"]["p_values"]["geometric"] == 1.0


def test_a_group_without_examples_gets_the_trivial_bounds():
    """No example of the group: U = 2 and P = 0 (nothing is certified), not an error."""
    empty = RunStatistics(num_layers=1, thresholds=THRESHOLDS).group(1, "vision")
    stats = [{"layer": 1, "vision": empty, "text": _block("MOVING"), **attention_fields(QUIET)}]
    entry = certificate_layers(stats, EXAMPLES, CertifySettings())[0]
    assert entry["vision"]["mean_upper_bound"] == 2.0
    assert set(entry["vision"]["proximal_lower_bound"].values()) == {0.0}


# ------------------------------------------------------------------ the paper's verdicts

@pytest.mark.parametrize("upto", [0, 1, 3, N_LAYERS - 1, N_LAYERS])
def test_late_entry_is_certified_exactly_before_the_first_failing_layer(upto):
    """Layers 1..upto pass every test, layer upto+1 fails: vision may enter at layer upto+1
    (at most N: entering after the last layer is no model)."""
    le = _certificate(stats_layers(redundant_upto=upto))["late_entry"]
    assert le["max_entry_layer"] == min(upto + 1, N_LAYERS)
    assert le["certified_layers"] == list(range(1, min(upto + 1, N_LAYERS)))
    assert le["reasons"]["first_failing_layer"] == (upto + 1 if upto < N_LAYERS else None)


BOUND_ONLY_FAILURES = {
    "geometric": {"vision": "GEOMETRIC_BOUND_FAILS", "shares": QUIET},
    "proximal": {"vision": "PROXIMAL_BOUND_FAILS", "shares": QUIET},
    "attention": {"vision": "REDUNDANT", "shares": ATTENTION_BOUND_FAILS},
}


@pytest.mark.parametrize("failing", list(BOUND_ONLY_FAILURES))
def test_each_test_uses_its_confidence_bound_not_the_point_estimate(failing):
    """A layer whose point estimate passes the test but whose bound does not, and which passes the
    other two tests: this test alone fails (issue 11: a test holding for the wrong reason)."""
    stats = stats_layers(redundant_upto=N_LAYERS, overrides={3: BOUND_ONLY_FAILURES[failing]})
    cert = _certificate(stats)
    tests = cert["late_entry"]["reasons"]["layers"]["3"]
    assert [k for k, v in tests.items() if not v["pass"]] == [failing]
    geo, prox, att = tests["geometric"], tests["proximal"], tests["attention"]
    if failing == "geometric":
        assert geo["mean_cosine_distance"] < geo["eps"] <= geo["upper_bound"]
    elif failing == "proximal":
        assert prox["lower_bound"] <= prox["required"] < prox["probability"]
    else:
        assert att["visual_attention_mean_head"] < att["threshold"] <= att["upper_bound"]
    assert cert["late_entry"]["max_entry_layer"] == 3
    assert cert["late_entry"]["reasons"]["failing_tests"] == [failing]


@pytest.mark.parametrize("failing", list(BOUND_ONLY_FAILURES))
def test_late_entry_needs_all_three_tests_in_every_earlier_layer(failing):
    """Layers 1..5 pass everything except one test of layer 3: entry stops at layer 3."""
    le = _certificate(stats_layers(redundant_upto=5, overrides={3: BOUND_ONLY_FAILURES[failing]}))["late_entry"]
    assert le["max_entry_layer"] == 3 and le["certified_layers"] == [1, 2]
    assert le["reasons"]["first_failing_layer"] == 3
    assert le["reasons"]["layers"]["3"][failing]["pass"] is False


@pytest.mark.parametrize("quiet_from,want_exit", [(1, 1), (2, 1), (4, 3), (N_LAYERS, N_LAYERS - 1),
                                                  (N_LAYERS + 1, N_LAYERS)])
def test_early_exit_is_certified_exactly_after_the_last_attending_layer(quiet_from, want_exit):
    """Attention low in layers quiet_from..N, high before: exit after quiet_from - 1 (at least
    after layer 1, whatever layer 1 does: exiting after layer 0 is no model)."""
    ee = _certificate(stats_layers(quiet_from=quiet_from))["early_exit"]
    assert ee["min_exit_layer"] == want_exit
    assert ee["certified_layers"] == list(range(want_exit + 1, N_LAYERS + 1))
    assert ee["reasons"]["last_failing_layer"] == (quiet_from - 1 if quiet_from > 1 else None)


def test_early_exit_stops_at_the_last_attending_layer_not_the_first():
    """Quiet everywhere except layers 2 and 4: exit after 4, not after 2; redundancy is ignored."""
    ee = _certificate(stats_layers(quiet_from=1, overrides={2: {"shares": LOUD},
                                                            4: {"shares": ATTENTION_BOUND_FAILS}}))["early_exit"]
    assert ee["min_exit_layer"] == 4 and ee["certified_layers"] == [5, 6]
    assert ee["reasons"]["last_failing_layer"] == 4


def test_freeze_certifies_the_layers_passing_geometric_and_proximal_each_alone():
    """Freeze of layer l iff its *vision* passes the geometric and the proximal test; attention is
    irrelevant, redundant text does not count, and every layer is judged alone (layer N included)."""
    overrides = {
        1: {"vision": "REDUNDANT", "shares": LOUD},                      # passes: attention does not matter
        2: {"vision": "GEOMETRIC_BOUND_FAILS", "shares": QUIET},         # proximal only
        3: {"vision": "PROXIMAL_BOUND_FAILS", "shares": QUIET},          # geometric only
        4: {"vision": "MOVING", "text": "REDUNDANT", "shares": QUIET},   # swapped groups
        5: {"vision": "REDUNDANT", "shares": LOUD},
        6: {"vision": "REDUNDANT", "shares": QUIET},
    }
    freeze = _certificate(stats_layers(overrides=overrides))["freeze"]
    assert freeze["certified_layers"] == [1, 5, 6]
    reasons = freeze["reasons"]["layers"]
    assert [reasons[str(l)]["geometric"]["pass"] for l in range(1, 7)] == [True, False, True, False, True, True]
    assert [reasons[str(l)]["proximal"]["pass"] for l in range(1, 7)] == [True, True, False, False, True, True]


def test_freeze_family_uses_holm_on_the_betting_p_values():
    """Layer 3's geometric p-value is ~0.64 a (a = 0.05 / 3): Holm rejects it at its last step
    (level a) when the five other layers are rejected first, and not when one of them fails
    (its step is then at a / 2). Layer 1 attends (LOUD), so the late-entry chain adds nothing."""
    base = {1: {"vision": "REDUNDANT", "shares": LOUD}, 3: {"vision": "HOLM_EDGE", "shares": QUIET}}
    everything = _certificate(stats_layers(redundant_upto=N_LAYERS, overrides=base))["freeze"]
    holm = everything["reasons"]["holm"]
    assert 0.5 * 0.05 / 3 < holm["3"]["p_value"] <= 0.05 / 3
    assert everything["certified_layers"] == [1, 2, 3, 4, 5, 6] and holm["3"]["threshold"] == pytest.approx(0.05 / 3)
    one_fails = _certificate(stats_layers(redundant_upto=N_LAYERS, overrides={**base, 5: {"vision": "MOVING"}}))
    assert one_fails["freeze"]["certified_layers"] == [1, 2, 4, 6]
    assert one_fails["freeze"]["reasons"]["holm"]["3"]["threshold"] == pytest.approx(0.05 / 3 / 2)


def test_late_entry_chain_layers_are_freezable_at_no_extra_cost():
    """A layer certified by the late-entry chain is also certified freezable, even where Holm
    alone would not reach it (layer 3 at the edge, layer 5 moving so Holm stops before it)."""
    overrides = {3: {"vision": "HOLM_EDGE", "shares": QUIET}, 5: {"vision": "MOVING"}}
    cert = _certificate(stats_layers(redundant_upto=4, overrides=overrides))
    assert cert["late_entry"]["certified_layers"] == [1, 2, 3, 4]
    assert cert["freeze"]["reasons"]["holm"]["3"]["rejected"] is False
    assert cert["freeze"]["certified_layers"] == [1, 2, 3, 4]


def test_eps_moves_the_verdicts():
    """Layer 2 with per-example distance 0.045 (U ~ 0.054 at 1000 examples): not certified at eps = 0.05
    (the bound, not the point estimate), certified at eps = 0.1."""
    stats = stats_layers(redundant_upto=4, overrides={2: {"vision": "MID", "shares": QUIET}})
    strict, loose = _certificate(stats, eps=0.05), _certificate(stats, eps=0.1, proximal_t=0.05)
    assert strict["late_entry"]["max_entry_layer"] == 2 and 2 not in strict["freeze"]["certified_layers"]
    assert loose["late_entry"]["max_entry_layer"] == 5 and 2 in loose["freeze"]["certified_layers"]


def test_decide_rejects_misnumbered_layers():
    stats = stats_layers()
    stats[3] = dict(stats[3], layer=5)
    with pytest.raises(ValueError, match=r"numbered 1\.\.N in order, got layer 5 at position 4"):
        _certificate(stats)


def test_verdicts_cite_theorems_and_numbers():
    cert = _certificate(stats_layers(redundant_upto=3, quiet_from=5))
    reasons = cert["late_entry"]["reasons"]
    assert "Theorem 6" in reasons["theorem"]
    geo = reasons["layers"]["1"]["geometric"]
    assert "Theorem 1" in geo["cites"] and f"{geo['upper_bound']:.4g}" in geo["cites"]
    assert geo["theorem1_coefficient"] == pytest.approx(4 * geo["upper_bound"])
    prox = reasons["layers"]["1"]["proximal"]
    assert "Proposition 1" in prox["cites"]
    assert prox["proposition1_mean_bound"] == pytest.approx(0.05 + 1.95 * (1 - prox["lower_bound"]))
    assert reasons["theorem6_eps_estimate"] == pytest.approx(
        math.sqrt(2 * max(reasons["layers"][str(l)]["geometric"]["upper_bound"] for l in (1, 2, 3))))
    assert "Section 4" in cert["early_exit"]["reasons"]["theorem"]
    assert "Theorem 1" in cert["freeze"]["reasons"]["theorem"]
    assert prox["theorem3_mi_lower_bound_nats"] is None  # no hidden size given


def test_theorem3_number_uses_the_lower_bound_of_the_proximal_probability():
    from skipit.theory import theorem3_mi_lower_bound

    layers = certificate_layers(stats_layers(redundant_upto=2), EXAMPLES, CertifySettings())
    prox = decide(layers, CertifySettings(), hidden_size=64)[0]["reasons"]["layers"]["1"]["proximal"]
    assert prox["theorem3_mi_lower_bound_nats"] == pytest.approx(
        theorem3_mi_lower_bound(1 - prox["lower_bound"], 0.05, 64))
    assert "Theorem 3 (only if X_l were uniform on S^63, not checked)" in prox["cites"]


# ------------------------------------------------------------------ split and candidates

@pytest.mark.parametrize("n,fraction", [(10, 0.5), (11, 0.5), (40, 0.3), (7, 0.25), (100, 0.9)])
def test_split_is_disjoint_covering_seeded_and_of_the_stated_sizes(n, fraction):
    settings = CertifySettings(calibration_fraction=fraction, split_seed=3)
    stats, calib = split_indices(n, settings)
    assert sorted(stats + calib) == list(range(n)) and not set(stats) & set(calib)
    assert stats == sorted(stats) and calib == sorted(calib)
    assert len(stats) == round((1 - fraction) * n)
    assert split_indices(n, settings) == (stats, calib)
    others = [split_indices(n, CertifySettings(calibration_fraction=fraction, split_seed=s))[0] for s in range(4, 9)]
    assert any(o != stats for o in others)  # the seed matters


def test_split_gives_each_part_at_least_one_example():
    assert [len(p) for p in split_indices(10, CertifySettings(calibration_fraction=0.99))] == [1, 9]
    assert [len(p) for p in split_indices(10, CertifySettings(calibration_fraction=0.01))] == [9, 1]


def test_split_without_verification_uses_every_example_for_the_statistics():
    assert split_indices(9, CertifySettings(verify=False)) == (list(range(9)), [])


def _cert_layers(upper_bounds):
    return [{"layer": l, "vision": {"mean_upper_bound": u}} for l, u in enumerate(upper_bounds, start=1)]


def test_candidate_chains_are_ordered_from_the_statistics():
    """Late entry L = 2..N ascending; early exit L = N-1..1 descending; freeze grown by U_l
    ascending (ties by l), layer N left out even when it is the most redundant."""
    layers = _cert_layers([0.3, 0.1, 0.2, 0.1, 0.05, 0.01])
    assert freeze_order(layers) == [5, 2, 4, 3, 1]
    chains = candidate_chains(layers)
    assert [c["layer"] for c in chains["late-entry"]] == [2, 3, 4, 5, 6]
    assert [c["layer"] for c in chains["early-exit"]] == [5, 4, 3, 2, 1]
    assert [c["layers"] for c in chains["freeze"]] == [[5], [2, 5], [2, 4, 5], [2, 3, 4, 5], [1, 2, 3, 4, 5]]
    assert {c["mode"] for m, cs in chains.items() for c in cs if c["mode"] == m} == set(chains)
    assert [c["layers"] for c in candidate_chains(layers, order=[3, 1])["freeze"]] == [[3], [1, 3]]


def test_freeze_order_by_other_scores_is_ascending_without_the_last_layer():
    """Any score computed on the statistics split (e.g. ShortV's contribution) orders the chain the
    same way: ascending, ties by l, layer N left out."""
    layers = _cert_layers([0.3, 0.1, 0.2, 0.1, 0.05, 0.01])
    scores = {1: 0.0, 2: 0.5, 3: 0.2, 4: 0.2, 5: 0.9, 6: -1.0}
    assert freeze_order(layers, scores) == [1, 3, 4, 2, 5]


@pytest.mark.parametrize("order", [[0, 2], [7], [2, 2]])
def test_candidate_chains_refuse_a_bad_order(order):
    with pytest.raises(ValueError, match=r"`order` must list distinct layers in \[1, 6\], got \["):
        candidate_chains(_cert_layers([0.1] * 6), order=order)


# ------------------------------------------------------------------ verification maths

def _binomial_cdf(k, n, p):
    """P[Bin(n, p) <= k] by its definition (math.comb), in exact rationals where p is one."""
    from fractions import Fraction

    q = Fraction(p).limit_denominator(10**9)
    return float(sum(math.comb(n, i) * q ** i * (1 - q) ** (n - i) for i in range(k + 1)))


@pytest.mark.parametrize("k,n,tau", [(0, 1, 0.1), (0, 10, 0.05), (1, 10, 0.05), (3, 20, 0.1), (7, 30, 0.2),
                                     (12, 12, 0.3)])
def test_binomial_p_value_is_the_binomial_sum(k, n, tau):
    assert binomial_p_value(k, n, tau) == pytest.approx(_binomial_cdf(k, n, tau), rel=1e-12)


def test_binomial_p_value_without_examples_rejects_nothing():
    assert binomial_p_value(0, 0, 0.05) == 1.0


def _result(changed, examples=100, flops=0.5, **config):
    return dict(config or {"mode": "late-entry", "layer": 2}, examples=examples, changed=changed,
                flops_fraction=flops)


def test_fixed_sequence_stops_at_the_first_candidate_not_rejected():
    """n = 100, tau = 0.1, level 1/30: 0 and 4 changes are rejected (p = 2.7e-5, 0.024), 8 is not
    (p = 0.32) and stops the chain; the 1 change after it stays uncertified."""
    level = 1 / 30
    out = fixed_sequence([_result(k) for k in (0, 4, 8, 1)], 0.1, level)
    assert [r["p_value"] for r in out] == pytest.approx([_binomial_cdf(k, 100, 0.1) for k in (0, 4, 8, 1)],
                                                        rel=1e-10)
    assert out[1]["p_value"] <= level < out[2]["p_value"] and out[3]["p_value"] <= level
    assert [r["certified"] for r in out] == [True, True, False, False]
    assert [r["changed"] for r in out] == [0, 4, 8, 1]  # copies of the inputs, in order
    assert fixed_sequence([_result(9), _result(0)], 0.1, level)[1]["certified"] is False


@pytest.mark.parametrize("confidence", [0.95, 0.7])
def test_upper_bound_is_clopper_pearson_at_the_chain_level(confidence):
    """u solves P[Bin(n, u) <= k] = (1 - c) / 3 (k < n); u = 1 when k = n."""
    settings = CertifySettings(confidence=confidence, tolerance=0.1)
    level = (1 - confidence) / 3
    assert settings.chain_level() == pytest.approx(level, rel=1e-15)
    block = verification_block({"late-entry": [_result(k, examples=40) for k in (0, 1, 5, 39, 40)]}, settings, 40)
    assert block["level_per_chain"] == pytest.approx(level, rel=1e-15)
    for r in block["configs"]:
        if r["changed"] < 40:
            assert _binomial_cdf(r["changed"], 40, r["upper_bound"]) == pytest.approx(level, rel=1e-6)
        else:
            assert r["upper_bound"] == 1.0


def test_certified_iff_upper_bound_at_most_tolerance_while_the_chain_runs():
    """For a one-candidate chain, p <= level exactly when the Clopper-Pearson bound is <= tau
    (for every k of n = 120); a stopped chain certifies nothing after it whatever its bound."""
    settings = CertifySettings(confidence=0.9, tolerance=0.1)
    flips = 0
    for k in range(0, 121):
        r = verification_block({"freeze": [_result(k, examples=120, mode="freeze", layers=[2])]}, settings,
                               120)["configs"][0]
        assert r["certified"] == (r["upper_bound"] <= settings.tolerance), k
        flips += r["certified"]
    assert 0 < flips < 121  # both verdicts occur on the grid
    block = verification_block({"late-entry": [_result(60, examples=120), _result(0, examples=120)]}, settings, 120)
    assert block["configs"][1]["upper_bound"] <= 0.1 and block["configs"][1]["certified"] is False


def test_recommended_is_the_certified_config_with_the_fewest_flops():
    """Uncertified configs (however cheap) are never recommended; None when nothing is certified."""
    settings = CertifySettings(confidence=0.9, tolerance=0.1)
    chains = {
        "late-entry": [_result(0, flops=0.9, mode="late-entry", layer=2),
                       _result(1, flops=0.8, mode="late-entry", layer=3),
                       _result(30, flops=0.4, mode="late-entry", layer=4)],
        "early-exit": [_result(0, flops=0.85, mode="early-exit", layer=5)],
        "freeze": [_result(0, flops=0.95, mode="freeze", layers=[2]),
                   _result(2, flops=0.75, mode="freeze", layers=[2, 3])],
    }
    block = verification_block(chains, settings, 100)
    assert [c["certified"] for c in block["configs"]] == [True, True, False, True, True, True]
    assert [c["mode"] for c in block["configs"]] == ["late-entry"] * 3 + ["early-exit"] + ["freeze"] * 2
    rec = block["recommended"]
    assert rec["mode"] == "freeze" and rec["layers"] == [2, 3] and rec["flops_fraction"] == 0.75
    assert rec["predicted_speedup"] == pytest.approx(1 / 0.75)
    assert block["tolerance"] == 0.1 and block["confidence"] == 0.9 and block["examples"] == 100
    none = verification_block({m: [dict(c, changed=50) for c in cs] for m, cs in chains.items()}, settings, 100)
    assert none["recommended"] is None and not any(c["certified"] for c in none["configs"])


def _violations(chains_rates, counts, tolerance, settings):
    """Whether some certified config of the chains (true change rates ``chains_rates``, observed
    ``counts``) has a true rate above ``tolerance``."""
    chains, truth = {}, {}
    for (mode, rates), ks in zip(chains_rates.items(), counts):
        chains[mode] = []
        for i, (rate, k) in enumerate(zip(rates, ks)):
            cfg = {"mode": mode, "layers": [i + 1]} if mode == "freeze" else {"mode": mode, "layer": i + 1}
            chains[mode].append(dict(cfg, examples=N_CALIBRATION, changed=int(k), flops_fraction=0.5))
            truth[(mode, i + 1)] = rate
    block = verification_block(chains, settings, N_CALIBRATION)
    return any(c["certified"] and truth[(c["mode"], (c.get("layers") or [c.get("layer")])[0])] > tolerance
               for c in block["configs"])


N_CALIBRATION = 200
REPETITIONS = 400


def test_fixed_sequence_chains_keep_the_family_wise_error_below_one_minus_confidence():
    """Three chains whose first candidate changes 5.1% of answers (just above tau = 5%, the worst
    case), then 2% and 8%: over 400 seeded repetitions of 200 calibration examples (each example a
    Bernoulli draw of the true rate), the fraction of repetitions certifying a config whose true
    rate exceeds tau is at most 1 - c = 0.3, up to 3 binomial standard errors (0.069); these draws
    give 0.17. Testing each chain at 1 - c instead of (1 - c) / 3 gives 0.53 on the same draws."""
    settings = CertifySettings(confidence=0.7, tolerance=0.05)
    rates = {"late-entry": [0.051, 0.02, 0.08], "early-exit": [0.051, 0.02, 0.08], "freeze": [0.051, 0.02, 0.08]}
    rng = np.random.default_rng(2024)
    hits = 0
    for _ in range(REPETITIONS):
        counts = [(rng.random((len(r), N_CALIBRATION)) < np.asarray(r)[:, None]).sum(1) for r in rates.values()]
        hits += _violations(rates, counts, 0.05, settings)
    slack = 3 * math.sqrt(0.3 * 0.7 / REPETITIONS)
    assert hits / REPETITIONS <= 0.3 + slack
    assert hits > 0  # the worst case is reached: the chains do certify above tau at about the level


def test_testing_every_candidate_without_the_fixed_sequence_breaks_the_guarantee():
    """A chain whose first candidate is clearly harmful (30% changes) and ten later ones at 6% > tau:
    certifying every candidate with p <= 1 - c certifies a harmful one in most repetitions; the
    fixed sequence stops at the first and certifies none."""
    settings = CertifySettings(confidence=0.7, tolerance=0.05)
    rates = np.r_[0.3, np.full(10, 0.06)]
    rng = np.random.default_rng(7)
    naive = fixed = 0
    for _ in range(REPETITIONS // 4):
        counts = (rng.random((rates.size, N_CALIBRATION)) < rates[:, None]).sum(1)
        naive += any(binomial_p_value(k, N_CALIBRATION, 0.05) <= 0.3 for k in counts)
        fixed += _violations({"late-entry": list(rates)}, [counts], 0.05, settings)
    assert naive / (REPETITIONS // 4) > 0.3 + 3 * math.sqrt(0.3 * 0.7 / (REPETITIONS // 4))
    assert fixed == 0


# ------------------------------------------------------------------ schema, loading, model check

def _verified_certificate():
    settings = CertifySettings()
    layers = certificate_layers(stats_layers(redundant_upto=2, quiet_from=5), EXAMPLES, settings)
    tested = {mode: [dict(c, examples=200, changed=i, flops_fraction=0.9 - 0.1 * i) for i, c in enumerate(cs[:3])]
              for mode, cs in candidate_chains(layers).items()}
    return _certificate(stats_layers(redundant_upto=2, quiet_from=5),
                        verification=verification_block(tested, settings, 200))


@pytest.mark.parametrize("verified", [True, False])
def test_certificate_validates_against_the_shipped_schema_and_is_strict_json(verified):
    import jsonschema

    cert = _verified_certificate() if verified else _certificate(stats_layers(redundant_upto=2))
    assert cert["schema"] == SCHEMA == "skipit.certificate/3"
    jsonschema.Draft202012Validator(certificate_schema()).validate(cert)
    text = json.dumps(cert, allow_nan=False)
    assert json.loads(text) == cert
    assert cert["model"]["num_layers"] == N_LAYERS and cert["data"]["num_examples"] == EXAMPLES
    assert cert["settings"]["bonferroni_tests"] == 3  # three families: late entry, early exit, freeze
    assert cert["settings"]["delta_per_test"] == pytest.approx(0.05 / 3)
    assert cert["run"]["world_size"] == 1
    assert (cert["verification"] is None) != verified
    if verified:
        assert cert["verification"]["recommended"] is not None


def test_schema_rejects_a_broken_certificate():
    import jsonschema

    cert = _verified_certificate()
    cert["verification"]["configs"][0]["mode"] = "skip-everything"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft202012Validator(certificate_schema()).validate(cert)


def _write(tmp_path, content):
    path = tmp_path / "certificate.json"
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return path


def test_load_certificate_returns_a_valid_certificate(tmp_path):
    cert = _verified_certificate()
    path = _write(tmp_path, cert)
    assert load_certificate(path, model_info={"model_type": "llava", "num_layers": N_LAYERS, "weights": "abc"}) == cert


def test_load_certificate_still_reads_schema_2(tmp_path):
    """A /2 certificate (written before the betting bounds; /3 only adds fields) still loads."""
    cert = _verified_certificate()
    cert["schema"] = "skipit.certificate/2"
    for layer in cert["layers"]:
        for key in ("bound_level", "visual_attention_units"):
            del layer[key]
        del layer["vision"]["units"], layer["vision"]["p_values"]
    assert load_certificate(_write(tmp_path, cert)) == cert


def _missing_freeze():
    cert = _verified_certificate()
    del cert["freeze"]
    return cert


@pytest.mark.parametrize("content,match", [
    ("{not json", r"^--certificate .*certificate\.json: not JSON \(Expecting property name"),
    ({"schema": "skipit.certificate/1", "layers": []},
     r"^--certificate .*: schema 'skipit\.certificate/1' is not 'skipit\.certificate/3' \(or "
     r"'skipit\.certificate/2'\); rerun `skipit certify`"),
    ("[1, 2]", r"^--certificate .*: schema 'list' is not 'skipit\.certificate/3'"),
    (_missing_freeze, r"^--certificate .*: not a valid skipit\.certificate/3 certificate \(at \(top level\): "
                      r"'freeze' is a required property\)$"),
])
def test_load_certificate_refuses_in_one_line(tmp_path, content, match):
    path = _write(tmp_path, content() if callable(content) else content)
    with pytest.raises(SkipitError, match=match) as err:
        load_certificate(path)
    assert "\n" not in str(err.value)


def test_load_certificate_refuses_a_missing_file(tmp_path):
    with pytest.raises(SkipitError, match=r"^--data-cert .*nope\.json: cannot read it \(No such file"):
        load_certificate(tmp_path / "nope.json", what="--data-cert")


@pytest.mark.parametrize("key,value,words", [("model_type", "qwen2_5_vl", "model type"),
                                             ("num_layers", 32, "number of decoder layers"),
                                             ("weights", "def", "weights fingerprint")])
def test_a_certificate_for_another_model_is_refused(tmp_path, key, value, words):
    cert = _verified_certificate()
    mine = {"model_type": "llava", "num_layers": N_LAYERS, "weights": "abc"}
    check_certificate_model(cert, mine)  # its own model passes
    other = dict(mine, **{key: value})
    theirs = {"model_type": "'llava'", "num_layers": str(N_LAYERS), "weights": "'abc'"}[key]
    match = rf"was made for another model: its {words} is {theirs}, this model's is {value!r}$"
    with pytest.raises(SkipitError, match=r"^the certificate " + match):
        check_certificate_model(cert, other)
    path = _write(tmp_path, cert)
    with pytest.raises(SkipitError, match=r"^--certificate .*certificate\.json " + match) as err:
        load_certificate(path, model_info=other)
    assert "\n" not in str(err.value)
    check_certificate_model(cert, {key: None})  # a field missing on one side is not compared


# ------------------------------------------------------------------ settings

@pytest.mark.parametrize("kwargs,match", [
    ({"eps": 0.0}, r"^`eps` must be in \(0, 1\), got 0\.0$"),
    ({"eps": 1.5}, r"^`eps` must be in \(0, 1\), got 1\.5$"),
    ({"eps": float("nan")}, r"^`eps` must be in \(0, 1\), got nan$"),
    ({"proximal_t": 2.0}, r"^`proximal_t` must be in \(0, 2\), got 2\.0$"),
    ({"attention_threshold": 0.0}, r"^`attention_threshold` must be in \(0, 1\], got 0\.0$"),
    ({"attention_threshold": 1.1}, r"^`attention_threshold` must be in \(0, 1\], got 1\.1$"),
    ({"confidence": 1.0}, r"^`confidence` must be in \(0, 1\), got 1\.0$"),
    ({"tolerance": 0.0}, r"^`tolerance` must be in \(0, 1\), got 0\.0$"),
    ({"calibration_fraction": 1.0}, r"^`calibration_fraction` must be in \(0, 1\), got 1\.0$"),
    ({"batch_size": 0}, r"^`batch_size` must be in the integers >= 1, got 0$"),
    ({"batch_size": 2.0}, r"^`batch_size` must be in the integers >= 1, got 2\.0$"),
    ({"checkpoint_every": True}, r"^`checkpoint_every` must be in the integers >= 1, got True$"),
    ({"max_new_tokens": -1}, r"^`max_new_tokens` must be in the integers >= 1, got -1$"),
    ({"order_examples": 0}, r"^`order_examples` must be in the integers >= 1, got 0$"),
    ({"freeze_order": "random"}, r"^`freeze_order` must be in \{redundancy, contribution\}, got 'random'$"),
    ({"thresholds": (0.05, 2.5)}, r"^`thresholds` must be non-empty values in \(0, 2\], got \[0\.05, 2\.5\]$"),
    ({"thresholds": ()}, r"^`thresholds` must be non-empty values in \(0, 2\], got \[\]$"),
    ({"proximal_t": 0.03}, r"^`proximal_t` must be one of the captured `thresholds` \[0\.01, 0\.02, 0\.05, 0\.1\], "
                           r"got 0\.03$"),
])
def test_settings_errors_name_the_argument_range_and_value(kwargs, match):
    with pytest.raises(ValueError, match=match):
        CertifySettings(**kwargs)


def test_settings_sort_and_deduplicate_the_thresholds():
    settings = CertifySettings(thresholds=[0.1, 0.05, 0.05], proximal_t=0.05)
    assert settings.thresholds == (0.05, 0.1)
    assert settings.decision_dict()["thresholds"] == [0.05, 0.1]
    assert "batch_size" not in settings.decision_dict() and "resume" not in settings.decision_dict()


def test_the_certificate_module_is_pure_numpy_and_scipy():
    """Settings, bounds, decisions, verification maths and schema import neither torch nor transformers."""
    import subprocess
    import sys

    code = ("import sys, skipit.empirical.certificate; "
            "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_run_chains_measures_a_candidate_only_while_its_chain_runs():
    """A chain stops after its first candidate not rejected: later candidates are never measured
    (their answers are never computed), and every other chain runs on its own."""
    from skipit.empirical.certificate import config_key, run_chains

    chains = {"late-entry": [{"mode": "late-entry", "layer": L} for L in (2, 3, 4)],
              "freeze": [{"mode": "freeze", "layers": [3]}, {"mode": "freeze", "layers": [2, 3]}]}
    changes = {"late-entry:2": 0, "late-entry:3": 40, "late-entry:4": 0, "freeze:3": 0, "freeze:2,3": 1}
    asked = []

    def changed(config):
        asked.append(config_key(config))
        return changes[config_key(config)]

    out = run_chains(chains, 400, changed, lambda config: 0.5, CertifySettings())
    assert asked == ["late-entry:2", "late-entry:3", "freeze:3", "freeze:2,3"]  # late-entry:4 never run
    assert [c["changed"] for c in out["late-entry"]] == [0, 40] and len(out["freeze"]) == 2
    assert all(c["examples"] == 400 and c["flops_fraction"] == 0.5 for c in out["late-entry"] + out["freeze"])
