"""RunStatistics: exact sufficient statistics, the unbiased HSIC estimator, minibatch CKA, merging."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, strategies as st

from skipit.empirical.stats import (
    DEFAULT_THRESHOLDS, RunStatistics, check_thresholds, cka_from_hsic, hsic1_from_grams, threshold_key,
)

REL = 1e-12  # float64 sums in a different order


def _u_statistic_hsic(K, L):
    """HSIC_1 as the U-statistic over distinct index tuples (Song et al. 2012, Theorem 2)."""
    n = K.shape[0]
    t1 = np.mean([K[i, j] * L[i, j] for i, j in itertools.permutations(range(n), 2)])
    t2 = np.mean([K[i, j] * L[q, r] for i, j, q, r in itertools.permutations(range(n), 4)])
    t3 = np.mean([K[i, j] * L[i, q] for i, j, q in itertools.permutations(range(n), 3)])
    return t1 + t2 - 2.0 * t3


@pytest.mark.parametrize("n", [4, 5, 6])
def test_hsic1_closed_form_equals_the_u_statistic(n):
    rng = np.random.default_rng(n)
    X, Y = rng.normal(size=(n, 3)), rng.normal(size=(n, 2))
    K, L = X @ X.T, Y @ Y.T
    assert hsic1_from_grams(K, L) == pytest.approx(_u_statistic_hsic(K, L), rel=1e-10)


def test_hsic1_needs_four_samples():
    with pytest.raises(ValueError, match=r"HSIC_1 needs n >= 4 samples, got 3"):
        hsic1_from_grams(np.eye(3), np.eye(3))


def test_cka_is_one_for_an_orthogonal_map_times_a_scale():
    """Linear CKA is invariant to Y = c X Q (Kornblith et al. 2019); the unbiased form exactly so."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(7, 5))
    Q, _ = np.linalg.qr(rng.normal(size=(5, 5)))
    Y = 3.0 * X @ Q
    K, L = X @ X.T, Y @ Y.T
    cka = cka_from_hsic(hsic1_from_grams(K, L), hsic1_from_grams(K, K), hsic1_from_grams(L, L))
    assert cka == pytest.approx(1.0, abs=1e-12)


def test_cka_undefined_when_a_self_hsic_is_not_positive():
    assert cka_from_hsic(1.0, 0.0, 2.0) is None
    assert cka_from_hsic(1.0, -1.0, -2.0) is None
    assert cka_from_hsic(1.0, 4.0, 1.0) == 0.5


def test_minibatch_cka_averages_hsic_over_minibatches_before_the_ratio():
    stats = RunStatistics(num_layers=1)
    stats.add_cka(1, "vision", 1.0, 4.0, 1.0)
    stats.add_cka(1, "vision", 3.0, 4.0, 9.0)
    # mean HSIC: xy 2, xx 4, yy 5 -> 2 / sqrt(20); not the mean of per-minibatch CKAs (0.5, 0.5)
    assert stats.cka(1, "vision") == pytest.approx(2.0 / math.sqrt(20.0), rel=REL)
    assert stats.cka(1, "text") is None


def test_group_statistics_are_eqs_1_and_2_with_strict_threshold():
    stats = RunStatistics(num_layers=2, thresholds=(0.05, 0.1))
    rho = np.array([0.0, 0.05, 0.07, 0.1, 0.3])
    stats.add_distances(2, "vision", rho)
    g = stats.group(2, "vision")
    assert g["tokens"] == 5
    assert g["mean_cosine_distance"] == pytest.approx(rho.mean(), rel=REL)
    assert g["variance"] == pytest.approx(rho.var(ddof=1), rel=REL)
    assert g["sum"] == pytest.approx(rho.sum(), rel=REL) and g["sum_sq"] == pytest.approx((rho ** 2).sum(), rel=REL)
    assert g["proximal_count"] == {"0.05": 1, "0.1": 3}  # rho < t, strictly
    assert g["proximal_probability"] == {"0.05": 0.2, "0.1": 0.6}
    empty = stats.group(1, "vision")
    assert empty["tokens"] == 0 and empty["mean_cosine_distance"] is None and empty["variance"] is None


@given(st.lists(st.floats(0.0, 2.0), min_size=2, max_size=40), st.integers(0, 40), st.integers(0, 40))
def test_merging_chunks_equals_one_chunk(values, cut1, cut2):
    rho = np.array(values)
    a, b = sorted((min(cut1, len(rho)), min(cut2, len(rho))))
    whole = RunStatistics(num_layers=1)
    whole.add_distances(1, "text", rho)
    parts = [RunStatistics(num_layers=1) for _ in range(3)]
    for part, chunk in zip(parts, (rho[:a], rho[a:b], rho[b:])):
        part.add_distances(1, "text", chunk)
    merged = parts[0].merge(parts[1]).merge(parts[2])
    g, h = merged.group(1, "text"), whole.group(1, "text")
    assert g["tokens"] == h["tokens"] and g["proximal_count"] == h["proximal_count"]
    for key in ("mean_cosine_distance", "variance", "sum", "sum_sq"):
        assert g[key] == pytest.approx(h[key], rel=1e-9, abs=1e-15)


def test_variance_is_stable_for_tiny_spread_around_a_large_mean():
    """The centred moment keeps digits that sum_sq - sum^2/n would cancel."""
    rho = 1.0 + 1e-9 * np.arange(1000, dtype=np.float64)
    stats = RunStatistics(num_layers=1)
    for chunk in np.split(rho, 10):
        stats.add_distances(1, "vision", chunk)
    assert stats.group(1, "vision")["variance"] == pytest.approx(rho.var(ddof=1), rel=1e-6)


def test_attention_ratio_sums_heads_and_averages_examples():
    stats = RunStatistics(num_layers=3)
    stats.add_attention(2, np.array([[0.1, 0.3], [0.5, 0.7]]))
    stats.add_attention(2, np.array([[0.2, 0.2]]))
    a = stats.attention(2)
    assert a["visual_attention_ratio"] == pytest.approx((0.4 + 1.2 + 0.4) / 3, rel=REL)
    assert a["visual_attention_mean_head"] == pytest.approx((0.4 + 1.2 + 0.4) / 6, rel=REL)
    assert a["visual_attention_per_head"] == pytest.approx([0.8 / 3, 1.2 / 3], rel=REL)
    assert a["visual_attention_ratio_variance"] == pytest.approx(np.var([0.4, 1.2, 0.4], ddof=1), rel=1e-10)
    assert stats.attention(1)["visual_attention_ratio"] is None
    with pytest.raises(ValueError, match=r"`head_mass` has 3 heads, the run has 2"):
        stats.add_attention(1, np.zeros((1, 3)))


def _filled(seed):
    rng = np.random.default_rng(seed)
    stats = RunStatistics(num_layers=2, model_type="llava")
    for layer in (1, 2):
        for group in ("vision", "text", "answer"):
            stats.add_distances(layer, group, rng.uniform(0, 0.2, size=7))
        stats.add_cka(layer, "vision", *rng.uniform(0.1, 1, size=3))
        stats.add_attention(layer, rng.uniform(0, 1, size=(2, 4)))
    stats.num_examples = 2
    return stats


def test_json_round_trip_is_exact(tmp_path):
    stats = _filled(0)
    stats.save(tmp_path / "s.json")
    loaded = RunStatistics.load(tmp_path / "s.json")
    assert loaded == stats
    assert loaded.layers() == stats.layers()
    assert RunStatistics.from_dict(stats.to_dict()).layers() == stats.layers()


def test_merge_adds_examples_and_keeps_operands():
    a, b = _filled(0), _filled(1)
    before = a.to_dict()
    merged = a.merge(b)
    assert a.to_dict() == before
    assert merged.num_examples == 4
    assert merged.layers()[0]["vision"]["tokens"] == 14
    assert merged.attention(1)["visual_attention_examples"] == 4


def test_merge_refuses_incompatible_runs():
    with pytest.raises(ValueError, match=r"cannot merge runs with 2 and 3 layers"):
        RunStatistics(num_layers=2).merge(RunStatistics(num_layers=3))
    with pytest.raises(ValueError, match=r"cannot merge runs with thresholds"):
        RunStatistics(num_layers=2).merge(RunStatistics(num_layers=2, thresholds=(0.1,)))


def test_layers_have_the_contract_keys():
    layer = _filled(0).layers()[0]
    assert layer["layer"] == 1
    assert set(layer["cka"]) == {"vision", "text"}
    assert set(layer["vision"]["proximal_probability"]) == {threshold_key(t) for t in DEFAULT_THRESHOLDS}
    for key in ("visual_attention_ratio", "visual_attention_mean_head", "visual_attention_per_head"):
        assert key in layer


@pytest.mark.parametrize("thresholds, message", [
    ((), "at least one value"),
    ((0.0, 0.1), r"must lie in \(0, 2\] \(cosine distance range\), got 0.0"),
    ((0.1, 2.5), r"got 2.5"),
    ((0.1, 0.05), r"strictly increasing, got \[0.1, 0.05\]"),
])
def test_bad_thresholds_are_refused(thresholds, message):
    with pytest.raises(ValueError, match=message):
        check_thresholds(thresholds)


def test_bad_layer_and_format_are_refused():
    with pytest.raises(ValueError, match=r"`layer` must lie in 1..2, got 0"):
        RunStatistics(num_layers=2).add_distances(0, "vision", [0.1])
    with pytest.raises(ValueError, match=r"`num_layers` must be >= 1, got 0"):
        RunStatistics(num_layers=0)
    with pytest.raises(ValueError, match=r"must have format 'skipit.run_statistics/2'"):
        RunStatistics.from_dict({"format": "other"})


# ------------------------------------------------------------------ examples as the independent units
def test_example_statistics_are_means_and_variances_over_examples():
    """Per example: mean distance m_e and fraction f_e(t); the run reports their mean and unbiased variance."""
    stats = RunStatistics(num_layers=1, thresholds=(0.1, 0.5))
    examples = [np.array([0.0, 0.2]), np.array([0.4]), np.array([0.05, 0.6, 0.7, 0.25])]
    for rho in examples:
        stats.add_distances(1, "vision", rho)
    g = stats.group(1, "vision")
    means = np.array([0.1, 0.4, 0.4])
    below_01 = np.array([0.5, 0.0, 0.25])
    below_05 = np.array([1.0, 1.0, 0.5])
    assert g["examples"] == 3 and g["tokens"] == 7
    assert g["example_mean_cosine_distance"] == pytest.approx(means.mean(), rel=REL)
    assert g["example_mean_variance"] == pytest.approx(means.var(ddof=1), rel=REL)
    assert g["example_proximal_fraction"] == pytest.approx({"0.1": below_01.mean(), "0.5": below_05.mean()}, rel=REL)
    assert g["example_proximal_variance"] == pytest.approx({"0.1": below_01.var(ddof=1), "0.5": below_05.var(ddof=1)},
                                                           rel=REL)
    tokens = np.concatenate(examples)
    # design effect: Var(m_e) / (Var(rho) / mean tokens per example)
    assert g["design_effect"] == pytest.approx(means.var(ddof=1) / (tokens.var(ddof=1) / (7 / 3)), rel=REL)


def test_example_statistics_below_two_examples():
    stats = RunStatistics(num_layers=1, thresholds=(0.1,))
    empty = stats.group(1, "text")
    assert empty["examples"] == 0 and empty["example_mean_cosine_distance"] is None
    assert empty["example_mean_variance"] == 0.0 and empty["example_proximal_fraction"] == {"0.1": None}
    assert empty["example_proximal_variance"] == {"0.1": 0.0} and empty["design_effect"] is None
    stats.add_distances(1, "text", np.array([0.05, 0.3]))
    one = stats.group(1, "text")
    assert one["examples"] == 1 and one["example_mean_cosine_distance"] == pytest.approx(0.175, rel=REL)
    assert one["example_mean_variance"] == 0.0 and one["design_effect"] is None
    stats.add_distances(1, "text", np.array([]))  # an example without tokens of the group is no example
    assert stats.group(1, "text")["examples"] == 1


def test_exact_tie_at_a_threshold_is_not_below_it():
    """p_l(t) counts rho < t strictly: rho == t is not below t, for tokens and for examples."""
    stats = RunStatistics(num_layers=1, thresholds=(0.05, 0.1))
    stats.add_distances(1, "vision", np.array([0.05, 0.05]))
    stats.add_distances(1, "vision", np.array([0.1, 0.02]))
    g = stats.group(1, "vision")
    assert g["proximal_count"] == {"0.05": 1, "0.1": 3}
    assert g["example_proximal_fraction"] == {"0.05": 0.25, "0.1": 0.75}  # (0 + 1/2) / 2, (1 + 1/2) / 2


def test_zero_norm_tokens_are_counted_and_left_out():
    stats = RunStatistics(num_layers=1, thresholds=(0.1,))
    stats.add_distances(1, "vision", np.array([0.2]), zero_norm=3)
    stats.add_distances(1, "vision", np.array([]), zero_norm=2)
    g = stats.group(1, "vision")
    assert g["zero_norm_tokens"] == 5 and g["tokens"] == 1 and g["examples"] == 1
    assert g["mean_cosine_distance"] == pytest.approx(0.2, rel=REL)
    assert stats.merge(stats).group(1, "vision")["zero_norm_tokens"] == 10


@given(st.lists(st.lists(st.floats(0.0, 2.0), min_size=1, max_size=6), min_size=2, max_size=12),
       st.integers(0, 12))
def test_merging_runs_of_examples_equals_one_run(examples, cut):
    """Chan's merge of the per-example moments: two runs merged == one run on all examples."""
    whole, first, second = (RunStatistics(num_layers=1, thresholds=(0.5, 1.0)) for _ in range(3))
    for i, rho in enumerate(examples):
        whole.add_distances(1, "text", np.array(rho))
        (first if i < cut else second).add_distances(1, "text", np.array(rho))
    g, h = first.merge(second).group(1, "text"), whole.group(1, "text")
    assert g["examples"] == h["examples"] == len(examples)
    for key in ("example_mean_cosine_distance", "example_mean_variance"):
        assert g[key] == pytest.approx(h[key], rel=1e-9, abs=1e-15)
    for key in ("example_proximal_fraction", "example_proximal_variance"):
        assert g[key] == pytest.approx(h[key], rel=1e-9, abs=1e-15)


def test_older_statistics_format_is_refused_with_a_clear_message():
    old = _filled(0).to_dict()
    old["format"] = "skipit.run_statistics/1"
    with pytest.raises(ValueError, match=r"older format 'skipit.run_statistics/1' .*capture the run again"):
        RunStatistics.from_dict(old)
