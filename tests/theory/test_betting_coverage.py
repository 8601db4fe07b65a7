"""The betting bounds cover at their stated level: simulation on exact finite laws.

Each law has finite support, so its mean is known exactly and a miss is a real miss. For
every law the bound is drawn ``REPEATS`` times from ``UNITS`` i.i.d. units (all repeats at
once: the leading axis is vectorised), at a level ``DELTA`` large enough that a broken bound
shows up. A coverage is accepted when the one-sided Clopper-Pearson upper bound on it, at
level ``MC_ERROR``, still reaches ``1 - DELTA``: a bound whose true coverage is at least
nominal fails this with probability ``<= MC_ERROR``. Negative controls show the check can
fail: a normal-approximation bound on a heavy-tailed law, and a bound that counts the
questions of one image as independent units.
"""

from fractions import Fraction

import numpy as np
import pytest

from skipit.theory import clopper_pearson_upper, mean_upper_bound
from skipit.theory.confidence import betting_lower_bound, betting_p_value, betting_upper_bound

REPEATS = 2000
UNITS = 40
DELTA = 0.1
MC_ERROR = 1e-3


def _coverage_ok(covered):
    """Coverage not shown to be below ``1 - DELTA`` (Clopper-Pearson at ``MC_ERROR``)."""
    k = int(np.sum(covered))
    return clopper_pearson_upper(k, REPEATS, MC_ERROR) >= 1.0 - DELTA


def _draw(support, probabilities, shape, seed):
    """Draws of a finite law and its exact mean (as a float of the exact rational)."""
    p = [Fraction(q) for q in probabilities]
    assert sum(p) == 1
    mean = float(sum(Fraction(s) * q for s, q in zip(support, p)))
    rng = np.random.default_rng(seed)
    x = rng.choice(np.asarray([float(Fraction(s)) for s in support]), size=shape, p=[float(q) for q in p])
    return x, mean


#: name: (support, probabilities, (lo, hi)); strings keep the support exact
LAWS = {
    "heavy_tail_on_0_2": (("0", "1/20", "2"), ("9/10", "2/25", "1/50"), (0.0, 2.0)),
    "near_zero_variance": (("3/100", "30001/1000000"), ("1/2", "1/2"), (0.0, 2.0)),
    "skewed_bernoulli": (("0", "1"), ("3/100", "97/100"), (0.0, 1.0)),
    "three_points": (("0", "1/2", "1"), ("1/3", "1/3", "1/3"), (0.0, 1.0)),
}


@pytest.mark.parametrize("law", sorted(LAWS))
def test_betting_bounds_cover_at_the_stated_level(law):
    support, probabilities, (lo, hi) = LAWS[law]
    x, mean = _draw(support, probabilities, (REPEATS, UNITS), seed=sorted(LAWS).index(law))
    assert _coverage_ok(mean <= betting_upper_bound(x, DELTA, lo, hi))
    assert _coverage_ok(betting_lower_bound(x, DELTA, lo, hi) <= mean)


@pytest.mark.parametrize("value, lo, hi", [(0.0, 0.0, 1.0), (1.0, 0.0, 1.0), (2.0, 0.0, 2.0), (0.0, 0.0, 2.0)])
def test_point_masses_at_the_ends_are_always_covered(value, lo, hi):
    """All units at one end: both bounds contain the value exactly (no rounding past it)."""
    x = np.full((3, UNITS), value)
    assert np.all(betting_upper_bound(x, DELTA, lo, hi) >= value)
    assert np.all(betting_lower_bound(x, DELTA, lo, hi) <= value)


def test_normal_approximation_fails_the_same_check_on_a_heavy_tail():
    """Negative control: mean + z s / sqrt(n) misses the heavy-tailed mean far too often."""
    support, probabilities, _ = LAWS["heavy_tail_on_0_2"]
    x, mean = _draw(support, probabilities, (REPEATS, UNITS), seed=7)
    normal = x.mean(-1) + 1.2816 * x.std(-1, ddof=1) / np.sqrt(UNITS)  # z at 0.9
    assert not _coverage_ok(mean <= normal)


def test_clustered_questions_counted_as_units_fail_and_images_cover():
    """Four questions per image share the image's value (the vision statistics of one image).
    The image values are the units; counting the 4 copies as 4 units overstates n and fails."""
    questions = 4
    support, probabilities, (lo, hi) = LAWS["heavy_tail_on_0_2"]
    images, mean = _draw(support, probabilities, (REPEATS, UNITS), seed=11)
    per_question = np.repeat(images, questions, axis=-1)
    assert _coverage_ok(mean <= betting_upper_bound(images, DELTA, lo, hi))
    assert not _coverage_ok(mean <= betting_upper_bound(per_question, DELTA, lo, hi))


def test_betting_is_sharper_than_maurer_pontil_and_near_the_floor():
    """Demo-like distances (mean 0.03, spread 0.01 on [0, 2]), 256 images, level 0.05/3: the
    betting bound is within 0.07 of the mean, less than half of Maurer-Pontil's excess, and
    not below the floor ``2 log(1/delta) / n`` that a hidden mass at 2 imposes on any valid bound."""
    n, delta = 256, 0.05 / 3
    x = np.clip(0.03 + 0.01 * np.random.default_rng(3).standard_normal((50, n)), 0.0, 2.0)
    mean = x.mean(-1)
    excess = betting_upper_bound(x, delta, 0.0, 2.0) - mean
    maurer_pontil = mean_upper_bound(mean, x.var(-1, ddof=1), n, delta, 2.0) - mean
    assert np.all(excess <= 0.07)
    assert np.all(excess < 0.5 * maurer_pontil)
    assert np.all(excess >= 2.0 * np.log(1.0 / delta) / n * 0.5)


def test_p_value_rejects_exactly_where_the_bound_excludes_the_null():
    x = np.random.default_rng(4).beta(1.0, 20.0, size=(200, 60))
    delta = 0.05
    upper = betting_upper_bound(x, delta)
    for null in (0.05, 0.08, 0.12):
        p = betting_p_value(x, null, alternative="less", delta=delta)
        assert np.array_equal(p <= delta, upper < null) or np.all(np.abs(upper - null) < 1e-9)
    lower = betting_lower_bound(1.0 - x, delta)
    p = betting_p_value(1.0 - x, 0.9, alternative="greater", delta=delta)
    assert np.array_equal(p <= delta, lower > 0.9)


def _reference_upper(x, delta, truncation=0.9):
    """The module docstring's bound written as loops over the given order (no permutation)."""
    n, log_level = len(x), np.log(1.0 / delta)

    def rejected(m):
        log_k, s_prev, mu_sum, sq_sum = 0.0, 0.25, 0.5, 0.25
        for i, y in enumerate(x, start=1):
            lam = np.sqrt(2.0 * log_level / (n * s_prev))
            if m < 1.0:
                lam = min(lam, truncation / (1.0 - m))
            log_k += np.log1p(-lam * (y - m))
            if log_k >= log_level:
                return True
            mu_sum += y
            sq_sum += (y - mu_sum / (i + 1)) ** 2
            s_prev = sq_sum / (i + 1)
        return False

    low, high = 0.0, 1.0
    if not rejected(1.0):
        return 1.0
    for _ in range(52):
        mid = 0.5 * (low + high)
        low, high = (low, mid) if rejected(mid) else (mid, high)
    return high


def test_bound_is_the_capital_process_on_the_seeded_permutation():
    """Units placed so that the seed's permutation restores their order: the bound equals
    the loop-by-loop reference on that order (the seeded permutation is the only reordering)."""
    x = np.random.default_rng(5).beta(0.5, 4.0, size=80)
    placed = np.empty_like(x)
    placed[np.random.default_rng(3).permutation(len(x))] = x
    assert betting_upper_bound(placed, 0.05, seed=3) == pytest.approx(_reference_upper(x, 0.05), abs=1e-12)
    assert betting_upper_bound(x, 0.05, seed=1) != betting_upper_bound(x, 0.05, seed=0)


def test_rows_are_independent_problems():
    x = np.random.default_rng(6).random((3, 50))
    delta = np.array([0.01, 0.05, 0.2])
    whole = betting_upper_bound(x, delta)
    assert whole.shape == (3,)
    assert [betting_upper_bound(x[i], delta[i]) for i in range(3)] == list(whole)


def test_no_units_give_the_trivial_bounds():
    assert betting_upper_bound(np.zeros(0), 0.05, 0.0, 2.0) == 2.0
    assert betting_lower_bound(np.zeros(0), 0.05, 0.0, 2.0) == 0.0
    assert betting_p_value(np.zeros(0), 0.5) == 1.0


@pytest.mark.parametrize("kwargs, match", [
    ({"values": [0.5, 1.5], "delta": 0.05}, r"`values` must be in \[0, 1\], got 1.5"),
    ({"values": [0.5], "delta": 0.0}, r"`delta` must be in \(0, 1\), got 0.0"),
    ({"values": [0.5], "delta": 0.05, "lo": 1.0, "hi": 1.0}, r"`hi` must be > lo = 1.0, got 1.0"),
    ({"values": 0.5, "delta": 0.05}, r"`values` must hold the units along its last axis"),
    ({"values": [0.5], "delta": 0.05, "truncation": 1.0}, r"`truncation` must be in \(0, 1\), got 1.0"),
])
def test_bad_arguments_name_the_parameter(kwargs, match):
    with pytest.raises(ValueError, match=match):
        betting_upper_bound(**kwargs)


def test_round_off_outside_the_range_is_clipped_in_the_values_dtype():
    """float32 distances a few ulps outside [0, 1] are round-off; in float64 they are errors."""
    assert betting_upper_bound(np.array([-1e-7, 0.0, 1.0 + 1e-7], dtype=np.float32), 0.1) <= 1.0
    with pytest.raises(ValueError, match="`values` must be in"):
        betting_upper_bound(np.array([-1e-7, 0.0, 1.0]), 0.1)
