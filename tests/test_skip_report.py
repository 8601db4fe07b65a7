"""``skipit skip`` reports how many answers changed against the full model, with an exact interval."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from scipy import stats

from skipit.commands.skip import changed_answers
from skipit.empirical.data import Example


def _examples(n):
    image = Image.fromarray(np.zeros((4, 4, 3), dtype=np.uint8), mode="RGB")
    return [Example(image, f"q{i}", "yes") for i in range(n)]


def test_changed_answers_count_the_differences_with_a_clopper_pearson_interval():
    examples = _examples(40)
    full = ["yes"] * 40
    skipped = ["no"] * 3 + ["yes"] * 37
    out = changed_answers(full, skipped, examples)
    assert out["changed"] == 3 and out["changed_rate"] == pytest.approx(3 / 40)
    lo, hi = out["changed_ci95"]
    assert lo == pytest.approx(stats.beta.ppf(0.025, 3, 38)) and hi == pytest.approx(stats.beta.ppf(0.975, 4, 37))


def test_an_identity_skip_and_a_harmful_one_read_differently_even_at_equal_accuracy():
    """Both runs may score 0.5 against the labels, yet one changed every answer: the report says so."""
    examples = _examples(10)
    full = ["yes", "no"] * 5
    assert changed_answers(full, list(full), examples)["changed"] == 0
    flipped = ["no", "yes"] * 5
    out = changed_answers(full, flipped, examples)
    assert out["changed"] == 10 and out["changed_ci95"][1] == 1.0


def test_no_change_has_a_zero_lower_end():
    out = changed_answers(["a"] * 5, ["a"] * 5, _examples(5))
    assert out["changed_ci95"][0] == 0.0 and out["changed_ci95"][1] == pytest.approx(1 - 0.025 ** (1 / 5))
