"""Each branch of a min / max / clip in the informational bounds, reached on purpose and checked
against a closed form written here (random draws alone may never reach a branch)."""

import math

import numpy as np
import pytest

from skipit.theory import theorem4_mi_lower_bound, theorem4_mi_lower_bound_sharp
from skipit.theory.informational import _min_paper_form_over_box


def _d(a, q):
    """Binary KL d(a || q), written out."""
    return a * math.log(a / q) + (1 - a) * math.log((1 - a) / (1 - q))


@pytest.mark.parametrize("p_t, p_min, p_max, q_star", [
    (0.1, 0.01, 0.05, 0.05),   # 1 - P_t = 0.9 > p_max: q clipped to p_max
    (0.99, 0.05, 0.3, 0.05),   # 1 - P_t = 0.01 < p_min: q clipped to p_min
    (0.8, 0.05, 0.3, 0.2),     # p_min <= 1 - P_t <= p_max: d = 0, no information certified
])
def test_theorem4_sharp_minimiser_in_each_clip_branch(p_t, p_min, p_max, q_star):
    want = 0.0 if q_star == 1 - p_t else _d(1 - p_t, q_star)
    assert theorem4_mi_lower_bound_sharp(p_t, p_min, p_max) == pytest.approx(want, rel=1e-13, abs=1e-15)


@pytest.mark.parametrize("p_lo, p_hi, where", [
    (0.1, 0.5, "above"),    # the unconstrained minimiser P* = 0.692 lies above the box: minimum at p_hi
    (0.8, 0.95, "below"),   # P* below the box: minimum at p_lo
    (0.5, 0.9, "inside"),   # P* inside: the interior minimum
])
def test_paper_form_minimum_over_the_box_in_each_branch(p_lo, p_hi, where):
    """f(P) = (1-P) log(1/p_max) - P log(1-p_min) - h(P) is convex; f'(P) = 0 at
    P/(1-P) = (1-p_min)/p_max, i.e. P* = 1/(1 + p_max/(1-p_min)) (= 0.692 for p_min = 0.1, p_max = 0.4)."""
    p_min, p_max = 0.1, 0.4
    p_star = 1 / (1 + p_max / (1 - p_min))
    assert (p_star > p_hi, p_star < p_lo, p_lo <= p_star <= p_hi)[("above", "below", "inside").index(where)]
    at = {"above": p_hi, "below": p_lo, "inside": p_star}[where]
    want = (1 - at) * math.log(1 / p_max) - at * math.log(1 - p_min) + at * math.log(at) + (1 - at) * math.log(1 - at)
    assert _min_paper_form_over_box(p_lo, p_hi, p_min, p_max) == pytest.approx(want, rel=1e-12)
    grid = np.linspace(p_lo, p_hi, 10001)
    assert _min_paper_form_over_box(p_lo, p_hi, p_min, p_max) <= theorem4_mi_lower_bound(grid, p_min, p_max).min() + 1e-12
