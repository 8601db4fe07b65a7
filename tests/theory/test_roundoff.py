"""Round-off is not bad input: values within ``_validation.ROUNDOFF`` of a closed range end are
accepted and clipped onto it; values beyond are rejected with a one-line message printing a number."""

import math

import numpy as np
import pytest

from skipit.theory import (
    binary_entropy, binary_kl, corollary4_conditional_entropy_upper_bound, exact_proximal_quantities,
    geometric_redundancy, lemma2_mean_squared_distance, log_cap_fraction, proposition1_mean_bound,
    proximal_probability, theorem3_mi_lower_bound, theorem4_mi_lower_bound, theorem4_mi_lower_bound_sharp,
    theorem5_entropy_bound, theorem6_bound, validate_pmf,
)
from skipit.theory._validation import INTEGER_ROUNDOFF, ROUNDOFF

ONE_UP = 1.0 + 2.0**-52  # the next double above 1
FLOAT32_NEG = float(np.float32(1.0) - np.float32(1.0000001))  # 1 - cos, cos one float32 ulp above 1


def test_tolerance_is_eight_float32_ulps_and_covers_float32_distances():
    assert ROUNDOFF == 8 * float(np.finfo(np.float32).eps) == 2.0**-20
    assert -ROUNDOFF < FLOAT32_NEG < 0 and 2**-52 < ROUNDOFF


@pytest.mark.parametrize("call, exact", [
    (lambda p: theorem4_mi_lower_bound(p, 0.1, 0.2), lambda: theorem4_mi_lower_bound(1.0, 0.1, 0.2)),
    (lambda p: theorem4_mi_lower_bound_sharp(0.1, 0.0, p), lambda: theorem4_mi_lower_bound_sharp(0.1, 0.0, 1.0)),
    (lambda p: binary_entropy(p), lambda: binary_entropy(1.0)),
    (lambda p: binary_kl(p, 0.5), lambda: binary_kl(1.0, 0.5)),
    (lambda p: corollary4_conditional_entropy_upper_bound(2.0, p, 0.1, 0.2),
     lambda: corollary4_conditional_entropy_upper_bound(2.0, 1.0, 0.1, 0.2)),
    (lambda p: proposition1_mean_bound(0.1, p), lambda: proposition1_mean_bound(0.1, 1.0)),
    (lambda p: validate_pmf([p, 0.0]), lambda: validate_pmf([1.0, 0.0])),
])
def test_probability_one_ulp_above_1_is_read_as_1(call, exact):
    np.testing.assert_array_equal(call(ONE_UP), exact())
    np.testing.assert_array_equal(call(1.0 + 0.9 * ROUNDOFF), exact())


@pytest.mark.parametrize("value", [-1e-9, FLOAT32_NEG, -0.9 * ROUNDOFF])
def test_cosine_distance_just_below_0_is_read_as_0(value):
    d = np.array([value, 0.1, 0.2, 0.05])
    assert geometric_redundancy(d) == geometric_redundancy(np.clip(d, 0, 2))
    assert proximal_probability(d, 0.0).estimate == 0.0  # clipped to 0: not below t = 0
    assert lemma2_mean_squared_distance(value) == 0.0
    q = exact_proximal_quantities(np.eye(2) / 2, [[value, 2.0 + 1e-9], [2.0, 0.0]], 0.0)
    assert q.p_t == 0.0 and q.p_max == 0.5


def test_cosine_distance_just_above_2_is_read_as_2():
    d = np.array([2.0 + 1e-9, 1.0])
    est = geometric_redundancy(d, method="hoeffding")
    assert est.estimate == 1.5


def test_integer_with_float64_round_off_is_read_as_the_integer():
    L = 0.1 * 3 * 10  # 3.0000000000000004
    assert L != 3 and abs(L - 3) <= INTEGER_ROUNDOFF * 3
    assert theorem6_bound(1.0, 1.2, 0.1, 0.01, L) == theorem6_bound(1.0, 1.2, 0.1, 0.01, 3)
    assert log_cap_fraction(0.3, 4096 * (1 + 2**-52)) == log_cap_fraction(0.3, 4096)


@pytest.mark.parametrize("call, match", [
    (lambda: theorem4_mi_lower_bound(1.0 + 2 * ROUNDOFF, 0.1, 0.2), r"^`p_t` must be a probability in \[0, 1\], got 1.0000019073486328$"),
    (lambda: binary_kl(np.array(1.5), 0.5), r"^`p` must be a probability in \[0, 1\], got 1.5$"),
    (lambda: binary_entropy(np.array([0.5, -1e-5])), r"^`q` must be a probability in \[0, 1\], got -1e-05$"),
    (lambda: geometric_redundancy([0.1, -1e-5]), r"^`d` must be in \[0, 2\], got -1e-05$"),
    (lambda: theorem6_bound(1.0, 1.2, 0.1, 0.01, 3.001), r"^`L` must be >= 1 and an integer, got 3.001$"),
    (lambda: theorem3_mi_lower_bound(0.1, -1e-5, 10), r"^`t` must be a cosine-distance threshold >= 0, got -1e-05$"),
    (lambda: validate_pmf(np.array([[1.5, -0.5]])), r"^`p` must be a pmf with entries in \[0, 1\], got 1.5$"),
])
def test_beyond_the_tolerance_is_rejected_with_a_number_in_one_line(call, match):
    with pytest.raises(ValueError, match=match) as info:
        call()
    assert "\n" not in str(info.value) and "array(" not in str(info.value)


def test_open_ends_get_no_tolerance():
    """eps > 0 and p_max > 0 are strict: -1e-12 is not round-off of an allowed value."""
    with pytest.raises(ValueError, match=r"`p_max` must be a probability in \(0, 1\], got -1e-12$"):
        theorem4_mi_lower_bound(0.1, 0.0, -1e-12)
    with pytest.raises(ValueError, match=r"`confidence` must be in \(0, 1\), got 1.0000000000000002$"):
        geometric_redundancy([0.1, 0.2], confidence=ONE_UP)


def test_nonnegative_sum_within_round_off_is_accepted_and_bound_stays_nonnegative():
    """h_cond + C bounds I >= 0: -1e-12 is round-off, and the bound returned is 0, not negative."""
    assert theorem5_entropy_bound(1.0, 1.0 - 1e-12 - 1.0, 0.0) == 0.0
    assert math.copysign(1.0, theorem5_entropy_bound(1.0, -1e-12, 0.0)) == 1.0
