"""Does a layer's score predict its single-layer freeze change rate? (skipit.demo.measure)"""

import json

import pytest
from scipy.stats import spearmanr

from skipit.demo import DEMO_MODELS
from skipit.demo.measure import FIGURES_FILE, LAYER_INDEX, RANKED_SCORES, freeze_rank_correlations

RATES = [0.03, 0.01, 0.05, 0.02, 0.04, 0.0]
"""Single-layer freeze change rates of a 6-layer model; layer 6's is 0, as freezing the last layer is."""
SCORES = [0.3, 0.1, 0.5, 0.2, 0.4, 0.9]
"""Ranked as RATES in layers 1-5; layer 6's score is the largest, so counting layer 6 breaks the order."""


def _figures(**scores):
    return {"layers": len(RATES), "freeze_changed": RATES, **scores}


def test_each_layer_score_is_paired_with_the_same_layer_rate_over_layers_1_to_n_minus_1():
    got = freeze_rank_correlations(_figures(D_vision=SCORES, contribution=[-s for s in SCORES]))
    assert got["layers"] == [1, 2, 3, 4, 5]
    assert got["D_vision"]["spearman"] == pytest.approx(1.0)
    assert got["contribution"]["spearman"] == pytest.approx(-1.0)
    assert got[LAYER_INDEX]["spearman"] == pytest.approx(spearmanr([1, 2, 3, 4, 5], RATES[:5]).statistic)
    # the pairings a bug would make give other values, so the assertions above can fail
    assert spearmanr(SCORES[1:5], RATES[0:4]).statistic < 0.9  # score of l+1 against rate of l
    assert spearmanr(SCORES[0:4], RATES[1:5]).statistic < 0.9  # score of l against rate of l+1
    assert spearmanr(SCORES, RATES).statistic < 0.9  # layer N counted


def test_scores_absent_from_the_figures_are_left_out():
    got = freeze_rank_correlations(_figures(D_text=SCORES))
    assert set(got) == {"layers", LAYER_INDEX, "D_text"}


def test_a_constant_rate_has_no_rank_correlation():
    got = freeze_rank_correlations({"layers": 4, "freeze_changed": [0.01, 0.01, 0.01, 0.0],
                                    "D_vision": [0.1, 0.2, 0.3, 0.4]})
    assert got["D_vision"] == {"spearman": None, "p_value": None}


def test_a_score_list_of_the_wrong_length_is_refused():
    with pytest.raises(ValueError, match=r"`D_vision` must hold one score per layer \(6\), got 5"):
        freeze_rank_correlations(_figures(D_vision=SCORES[:5]))


@pytest.mark.parametrize("name", sorted(DEMO_MODELS))
def test_bundled_correlations_follow_from_the_bundled_figures(name):
    figures = json.loads((DEMO_MODELS[name] / FIGURES_FILE).read_text())
    assert len(figures["contribution"]) == figures["layers"]
    assert figures["contribution_questions"] == figures["questions"]
    assert figures["freeze_rank_correlation"] == freeze_rank_correlations(figures)
    assert set(figures["freeze_rank_correlation"]) == {"layers", LAYER_INDEX, *RANKED_SCORES}


def test_contributions_are_in_layer_order_and_the_last_layer_contributes_nothing():
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from skipit.demo import DEMO_DATA, load_demo_model
    from skipit.demo.measure import contributions
    from skipit.empirical.data import load_examples

    model, processor = load_demo_model(name="demo")
    examples, _ = load_examples(DEMO_DATA["demo"], limit=16)
    got = contributions(model, processor, examples, batch_size=16)
    assert len(got) == model.config.text_config.num_hidden_layers
    assert got[-1] == pytest.approx(0.0, abs=1e-9)  # nothing reads the last layer's vision outputs
    assert min(got[:-1]) > 0.0


@pytest.mark.parametrize("name", sorted(DEMO_MODELS))
def test_cards_state_the_bundled_rank_correlations(name):
    figures = json.loads((DEMO_MODELS[name] / FIGURES_FILE).read_text())
    card = (DEMO_MODELS[name] / "MODEL_CARD.md").read_text()
    section = card[card.index("## Does `D_l` predict"):]
    section = section[:section.index("\n## ")]
    for key, label in ((LAYER_INDEX, "the layer index"), ("D_vision", "D vision"), ("D_text", "D text"),
                       ("attention_share", "attention share"), ("contribution", "contribution")):
        row = next(line for line in section.splitlines() if line.startswith("|") and label in line)
        assert f"{figures['freeze_rank_correlation'][key]['spearman']:+.2f}" in row, (key, row)
