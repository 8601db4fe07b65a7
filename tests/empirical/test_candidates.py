"""Candidates as FLOPs (skipit.empirical.candidates): one layout per candidate, the same numbers
as the FLOPs model's own modes, and compositions counted per layer."""

from __future__ import annotations

import pytest

from skipit.empirical.candidates import candidate_flops_fraction, candidate_layout
from skipit.empirical.flops import DecoderShape, config_flops_fraction

SHAPE = DecoderShape(num_layers=6, hidden=64, intermediate=128, heads=4, kv_heads=2, head_dim=16, vocab=50)
COUNTS = [(10, 16), (14, 16), (9, 32)]


@pytest.mark.parametrize("config", [
    {"mode": "late-entry", "layer": 3}, {"mode": "early-exit", "layer": 4}, {"mode": "freeze", "layers": [2, 5]},
    {"mode": "fastv", "layer": 2, "keep_ratio": 0.5}])
def test_single_actions_cost_what_the_flops_model_says(config):
    layer = config.get("layers", config.get("layer"))
    expected = config_flops_fraction(SHAPE, config["mode"], layer, COUNTS, keep_ratio=config.get("keep_ratio"))
    assert candidate_flops_fraction(SHAPE, config, COUNTS) == pytest.approx(expected, rel=1e-12)


def test_a_composition_takes_the_fewer_queries_and_the_early_exits_keys():
    queries, keys = candidate_layout(6, 10, 16, {"mode": "freeze+early-exit", "layers": [2, 3], "layer": 4})
    assert queries == [26, 10, 10, 26, 10, 10]
    assert keys == [26, 26, 26, 26, 10, 10]


def test_a_composition_saves_more_than_either_of_its_parts():
    both = candidate_flops_fraction(SHAPE, {"mode": "freeze+early-exit", "layers": [2], "layer": 4}, COUNTS)
    freeze = candidate_flops_fraction(SHAPE, {"mode": "freeze", "layers": [2]}, COUNTS)
    leave = candidate_flops_fraction(SHAPE, {"mode": "early-exit", "layer": 4}, COUNTS)
    assert both < min(freeze, leave)
    assert both == pytest.approx(freeze + leave - 1.0, rel=1e-12)  # disjoint layers: savings add


def test_flops_need_at_least_one_example():
    with pytest.raises(ValueError, match=r"^`token_counts` must hold at least one \(text, vision\) pair, got none$"):
        candidate_flops_fraction(SHAPE, {"mode": "late-entry", "layer": 2}, [])
