"""Verification with power (skipit.empirical.verification): the test of one candidate with
images as the units, the learn step, the one chain, and the guarantee by simulation.

Synthetic populations with known change rates stand in for a model, so the learn step and
the chain run exactly as ``skipit certify`` runs them (pure arithmetic on indicators).
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from skipit.empirical.verification import (
    COMPOSITION,
    candidate_families,
    candidate_pool,
    change_p_value,
    change_upper_bound,
    choose_chain,
    config_key,
    config_label,
    learn_candidates,
    learn_then_test,
    run_chain,
)

RUNS = 1500
FWER_SLACK = 0.017  # 3 binomial standard errors of a 0.05 rate over RUNS simulated calibrations


# ------------------------------------------------------------------ candidates

def test_families_run_from_the_mildest_action_to_the_strongest():
    families = candidate_families(4, fastv_ratios=(0.5,))
    assert [config_key(c) for c in families[0]] == ["late-entry:2", "late-entry:3", "late-entry:4"]
    assert [config_key(c) for c in families[1]] == ["early-exit:3", "early-exit:2", "early-exit:1"]
    assert [config_key(c) for c in families[2]] == ["fastv:3@0.5", "fastv:2@0.5", "fastv:1@0.5"]
    assert [config_key(c) for c in families[3]] == ["freeze:1", "freeze:2", "freeze:3"]  # layer N left out
    assert len(candidate_pool(4, (0.25, 0.5))) == 3 + 3 + 6 + 3


@pytest.mark.parametrize("ratios", [(0.0,), (1.0,), (0.5, 1.5)])
def test_families_refuse_a_keep_ratio_outside_the_open_unit_interval(ratios):
    with pytest.raises(ValueError, match=r"^`fastv_ratios` must lie in \(0, 1\), got "):
        candidate_families(4, ratios)


def test_keys_and_labels_name_every_mode():
    both = {"mode": COMPOSITION, "layers": [2, 5], "layer": 8}
    assert config_key(both) == "freeze:2,5+early-exit:8"
    assert config_label(both) == "freeze 2,5 + early-exit L=8"
    assert config_key({"mode": "fastv", "layer": 3, "keep_ratio": 0.5}) == "fastv:3@0.5"
    assert config_label({"mode": "fastv", "layer": 3, "keep_ratio": 0.25}) == "FastV K=3 R=0.25"


# ------------------------------------------------------------------ the test of one candidate

@pytest.mark.parametrize("k,n,tau", [(0, 40, 0.05), (3, 100, 0.05), (10, 100, 0.1), (5, 5, 0.5)])
def test_single_question_units_take_the_exact_binomial_p_value(k, n, tau):
    fractions = np.r_[np.ones(k), np.zeros(n - k)]
    assert change_p_value(fractions, tau, 0.05, single=True) == pytest.approx(stats.binom.cdf(k, n, tau), rel=1e-12)


def test_without_units_nothing_is_rejected():
    assert change_p_value([], 0.05, 0.05) == 1.0 and change_upper_bound([], 0.05) == 1.0


@pytest.mark.parametrize("single", [True, False])
def test_p_value_rejects_exactly_when_the_bound_is_within_the_tolerance(single):
    """``p <= level`` iff ``tau >= upper bound``: the chain's verdict and the reported bound agree."""
    rng = np.random.default_rng(0)
    for _ in range(40):
        n = int(rng.integers(20, 200))
        f = (rng.random(n) < rng.uniform(0, 0.1)).astype(float) if single else rng.choice(
            [0.0, 0.25, 0.5], n, p=[0.9, 0.08, 0.02])
        bound = change_upper_bound(f, 0.05, single)
        for tau in (bound - 1e-6, bound + 1e-6):
            if 0 < tau < 1:
                assert (change_p_value(f, tau, 0.05, single) <= 0.05) == (tau >= bound)


def test_fractional_units_are_bounded_more_sharply_than_a_binary_unit_of_the_same_mean():
    """Four questions per image that change independently: the per-image fractions vary less
    than whole images changing together, and the bound uses it."""
    spread = np.zeros(200)
    spread[:16] = 0.25
    clustered = np.zeros(200)
    clustered[:4] = 1.0
    assert spread.mean() == clustered.mean()
    assert change_upper_bound(spread, 0.05) < change_upper_bound(clustered, 0.05)


# ------------------------------------------------------------------ learn and choose

def _learned(*rows):
    return [{"mode": "late-entry", "layer": i + 2, "learned_rate": r, "flops_fraction": f}
            for i, (r, f) in enumerate(rows)]


def test_chain_keeps_undominated_candidates_well_below_tau_safest_first():
    learned = _learned((0.0, 0.9), (0.001, 0.95), (0.01, 0.7), (0.02, 0.5), (0.03, 0.4), (0.02, 0.6))
    chain = choose_chain(learned, tolerance=0.05, margin=0.5)  # keep rates <= 0.025
    assert [(c["learned_rate"], c["flops_fraction"]) for c in chain] == [(0.0, 0.9), (0.01, 0.7), (0.02, 0.5)]


def test_chain_keeps_one_of_exact_duplicates_and_takes_the_margin_inclusively():
    learned = _learned((0.025, 0.5), (0.025, 0.5))
    assert len(choose_chain(learned, tolerance=0.05, margin=0.5)) == 1
    assert choose_chain(learned, tolerance=0.05, margin=0.49) == []


def _population_rates(num_layers):
    """A made-up model: harm grows with each action's strength; freeze harm by layer."""
    single = {1: 0.004, 2: 0.0, 3: 0.001, 4: 0.03, 5: 0.002}

    def rate(c):
        if c["mode"] == "late-entry":
            return 0.05 * (c["layer"] - 1)
        if c["mode"] == "early-exit":
            return 0.003 * (num_layers - c["layer"]) ** 2
        if c["mode"] == "fastv":
            return 0.004 * (num_layers - c["layer"]) * (1 - c["keep_ratio"])
        if c["mode"] == "freeze":
            return sum(single[l] for l in c["layers"]) * (1 + 0.1 * len(c["layers"]))
        return rate({"mode": "freeze", "layers": c["layers"]}) + rate({"mode": "early-exit", "layer": c["layer"]})

    return rate


def _flops(num_layers):
    def flops(c):
        if c["mode"] == "late-entry":
            return 1 - 0.04 * (c["layer"] - 1)
        if c["mode"] in ("early-exit", "fastv"):
            keep = c.get("keep_ratio", 0.0)
            return 1 - 0.04 * (num_layers - c["layer"]) * (1 - keep)
        if c["mode"] == "freeze":
            return 1 - 0.03 * len(c["layers"])
        return flops({"mode": "freeze", "layers": c["layers"]}) + flops({"mode": "early-exit", "layer": c["layer"]}) - 1

    return flops


def test_learn_stops_each_family_after_its_first_candidate_above_the_limit():
    n = 6
    asked = []
    rate = _population_rates(n)

    def spy(c):
        asked.append(config_key(c))
        return rate(c)

    learned, order = learn_candidates(n, spy, _flops(n), tolerance=0.05, margin=0.5, fastv_ratios=(0.5,))
    assert [k for k in asked if k.startswith("late-entry")] == ["late-entry:2"]  # 0.05 > 0.025: stop
    assert [k for k in asked if k.startswith("early-exit")] == ["early-exit:5", "early-exit:4", "early-exit:3"]
    assert sum(k.startswith("freeze:") and "," not in k and "+" not in k for k in asked) == 5  # every layer
    assert order == [2, 3, 5, 1, 4]  # by the one-layer rates
    sets = [k for k in asked if k.startswith("freeze:") and "," in k and "+" not in k]
    assert sets == ["freeze:2,3", "freeze:2,3,5", "freeze:1,2,3,5", "freeze:1,2,3,4,5"]
    comps = [k for k in asked if "+" in k]
    assert comps == ["freeze:1,2,3,5+early-exit:5", "freeze:1,2,3+early-exit:4"]  # cut to layers <= L
    assert len(learned) == len(asked)


def test_learn_orders_tied_layers_by_the_tie_scores():
    n = 4
    _, order = learn_candidates(n, lambda c: 0.0, _flops(n), 0.05, 0.5, (0.5,), tie_scores={1: 0.3, 2: 0.1, 3: 0.2})
    assert order == [2, 3, 1]


# ------------------------------------------------------------------ the chain on calibration

def _indicators(rate_of, units, rng):
    """Per question, a change drawn independently with the candidate's rate."""
    return lambda c: rng.random(units.size) < rate_of(c)


def test_chain_measures_only_until_its_first_candidate_not_rejected():
    units = np.repeat(np.arange(100), 2)
    chain = [{"mode": "late-entry", "layer": L} for L in (2, 3, 4)]
    asked = []

    def changed(c):
        asked.append(c["layer"])
        return np.zeros(units.size, bool) if c["layer"] == 2 else np.ones(units.size, bool)

    out = run_chain(chain, changed, units, lambda c: 0.5, tolerance=0.05, level=0.05)
    assert asked == [2, 3] and [c["certified"] for c in out] == [True, False]
    assert out[0]["examples"] == 200 and out[0]["units"] == 100 and out[1]["changed"] == 200


def test_learn_then_test_reads_the_calibration_split_only_along_the_chain():
    n = 6
    units = np.repeat(np.arange(150), 4)
    rng = np.random.default_rng(0)
    rate = _population_rates(n)
    read = []

    def changed(c):
        read.append(config_key(c))
        return rng.random(units.size) < rate(c)

    out = learn_then_test(n, learn_rate=rate, learn_flops=_flops(n), changed=changed, units=units, flops=_flops(n),
                          tolerance=0.05, confidence=0.95, margin=0.5, fastv_ratios=(0.5,))
    assert read == [config_key(c) for c in out["tested"]]
    assert read == [config_key(c) for c in out["chain"]][:len(read)]
    certified = [c for c in out["tested"] if c["certified"]]
    assert out["recommended"] == min(certified, key=lambda c: c["flops_fraction"])


def test_every_certified_candidate_is_within_tau_with_the_stated_confidence():
    """The guarantee by simulation, images as the units, in the hard case: the learn step put
    a candidate first whose true rate is just above tau, and the questions of one image change
    together half of the time. A chain certifies something only if its first candidate is
    rejected, so over RUNS calibrations the share in which it is stays at most 1 - confidence
    (+ FWER_SLACK); the exact binomial on single-question units is checked the same way."""
    tau, level, images, per_image = 0.05, 0.05, 200, 4
    rng = np.random.default_rng(7)
    p = tau + 0.002
    for per, single in ((per_image, False), (1, True)):
        bad = 0
        for _ in range(RUNS):
            together = rng.random(images) < 0.5
            whole = np.repeat(rng.random(images) < p, per)
            each = rng.random(images * per) < p
            flags = np.where(np.repeat(together, per), whole, each)
            fractions = flags.reshape(images, per).mean(axis=1)
            bad += change_p_value(fractions, tau, level, single) <= level
        assert bad / RUNS <= level + FWER_SLACK


# ------------------------------------------------------------------ ties at the level

def test_a_p_value_exactly_at_the_level_is_rejected_and_the_chain_goes_on():
    """Fixed-sequence testing rejects H0 at ``p <= level``: 0 of 2 single-question images
    changed at tau = 0.5 has p = P[Bin(2, 0.5) <= 0] = 0.25 exactly, the level of confidence
    0.75. The candidate is certified and the chain measures the next one."""
    chain = [{"mode": "late-entry", "layer": 2}, {"mode": "late-entry", "layer": 3}]
    measured = []

    def changed(config):
        measured.append(config["layer"])
        return [False, False] if config["layer"] == 2 else [True, True]

    out = run_chain(chain, changed, [0, 1], lambda c: 0.5, tolerance=0.5, level=0.25)
    assert measured == [2, 3]  # p == level does not stop the chain
    assert [r["certified"] for r in out] == [True, False] and out[0]["p_value"] == 0.25


def test_a_p_value_just_above_the_level_stops_the_chain():
    """The other side of the tie: 1 of 2 changed has p = 0.75 > 0.25, the chain stops there."""
    chain = [{"mode": "early-exit", "layer": 3}, {"mode": "early-exit", "layer": 2}]
    out = run_chain(chain, lambda c: [True, False], [0, 1], lambda c: 0.5, tolerance=0.5, level=0.25)
    assert [r["layer"] for r in out] == [3] and [r["certified"] for r in out] == [False]


def test_learn_sample_takes_whole_images_of_the_statistics_split_only():
    units = [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]
    statistics = [0, 1, 4, 5, 6, 7, 8, 9]  # images 0, 2, 3, 4
    from skipit.empirical.verification import learn_indices

    assert learn_indices(statistics, units, 0, seed=1) == statistics
    picked = learn_indices(statistics, units, 3, seed=1)
    assert set(picked) <= set(statistics) and len(picked) == 4  # two whole images reach 3 questions
    assert all((i ^ 1) in picked for i in picked)  # both questions of each picked image


def test_a_freeze_label_writes_runs_of_three_or_more_layers_as_ranges():
    """A 16-layer freeze set reads as ``freeze 1,3-15``; two neighbours stay a list, and the key
    (checkpoints, caches) keeps every layer."""
    from skipit.empirical.verification import config_key, config_label, layer_list, layer_runs

    layers = [1] + list(range(3, 16))
    assert config_label({"mode": "freeze", "layers": layers}) == "freeze 1,3-15"
    assert config_key({"mode": "freeze", "layers": layers}) == "freeze:" + ",".join(map(str, layers))
    assert layer_list([10, 9, 5, 1, 2, 3]) == "1-3,5,9,10"
    assert layer_runs([5, 1, 2]) == [(1, 2), (5, 5)]
    assert config_label({"mode": "freeze+early-exit", "layers": [1, 2, 3, 4], "layer": 9}) == \
        "freeze 1-4 + early-exit L=9"


def test_config_from_key_inverts_config_key_for_every_kind_of_candidate():
    from skipit.empirical.verification import config_from_key

    configs = [*candidate_pool(5), {"mode": "freeze", "layers": [1, 3, 4]},
               {"mode": "freeze+early-exit", "layers": [2, 5], "layer": 8}]
    for config in configs:
        assert config_from_key(config_key(config)) == config
    with pytest.raises(ValueError, match="not a candidate key"):
        config_from_key("skip:3")
