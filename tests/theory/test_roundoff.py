"""Round-off is not bad input, and a bug is not round-off: values within 8 ulps *of the input's own dtype*
(read before any cast) of a closed range end are accepted and clipped onto it; values beyond are rejected
with a one-line message printing a number; nothing returns an infinity from finite inputs in that band."""

import math

import ml_dtypes
import numpy as np
import pytest

from skipit.theory import (
    binary_entropy, binary_kl, corollary4_conditional_entropy_upper_bound, exact_proximal_quantities,
    geometric_redundancy, kl_divergence, lemma2_mean_squared_distance, log_cap_fraction, proposition1_mean_bound,
    proximal_probability, theorem3_mi_lower_bound, theorem3_mi_lower_bound_sharp, theorem4_mi_lower_bound,
    theorem4_mi_lower_bound_sharp, theorem5_entropy_bound, theorem6_bound, validate_pmf,
)
from skipit.theory._validation import PMF_ATOL, ROUNDOFF_ULPS, pmf_total_tolerance, tolerance

BF16 = ml_dtypes.bfloat16
ONE_UP = 1.0 + 2.0**-52  # the next double above 1
OFF_BY_ONE = (2**21 + 1) / 2**21  # an off-by-one count over two million tokens: 1 + 4.8e-7
FLOAT32_NEG = np.float32(1.0) - np.float32(1.0000001)  # 1 - cos, cos one float32 ulp above 1


class _TensorLike:
    """A duck-typed tensor (torch is never imported by the theory): numpy cannot read bfloat16 from it."""

    dtype = "torch.bfloat16"

    def __init__(self, values):
        self._values = np.asarray(values, dtype=np.float32)
        self.shape = self._values.shape
        self.ndim = self._values.ndim

    def __array__(self, dtype=None, copy=None):
        raise TypeError("Got unsupported ScalarType BFloat16")

    def float(self):
        return self._values


@pytest.mark.parametrize("value, eps", [
    (1.0, 2.0**-52), (3, 2.0**-52), ([0.5, 0.25], 2.0**-52), (np.arange(3), 2.0**-52),
    (np.float64(1.0), 2.0**-52), (np.float32(1.0), 2.0**-23), (np.ones(2, np.float16), 2.0**-10),
    (np.ones(2, BF16), 2.0**-7), ([np.float32(0.5)], 2.0**-23), (_TensorLike([1.0]), 2.0**-7),
])
def test_tolerance_is_eight_ulps_of_the_inputs_own_dtype(value, eps):
    assert ROUNDOFF_ULPS == 8
    assert tolerance(value) == 8 * eps and tolerance(value, -4.0) == 32 * eps


@pytest.mark.parametrize("call", [
    lambda p: theorem4_mi_lower_bound(p, 0.1, 0.2),
    lambda p: theorem4_mi_lower_bound_sharp(0.1, 0.0, p),
    lambda p: binary_entropy(p),
    lambda p: binary_kl(p, 0.5),
    lambda p: proposition1_mean_bound(0.1, p),
    lambda p: validate_pmf([p, 0.0]),
])
def test_off_by_one_probability_is_refused_in_float64(call):
    """(n + 1)/n with n = 2^21 is 2^31 float64 ulps above 1: a counting bug, not round-off."""
    with pytest.raises(ValueError, match=r"^`\w+` must be (a probability |a pmf with entries )?in [\[(]0, 1\], got 1.00000047683"):
        call(OFF_BY_ONE)


@pytest.mark.parametrize("call, exact", [
    (lambda p: theorem4_mi_lower_bound(p, 0.1, 0.2), lambda: theorem4_mi_lower_bound(1.0, 0.1, 0.2)),
    (lambda p: theorem4_mi_lower_bound_sharp(0.1, 0.0, p), lambda: theorem4_mi_lower_bound_sharp(0.1, 0.0, 1.0)),
    (lambda p: binary_entropy(p), lambda: binary_entropy(1.0)),
    (lambda p: binary_kl(p, 0.5), lambda: binary_kl(1.0, 0.5)),
    (lambda p: corollary4_conditional_entropy_upper_bound(2.0, p, 0.1, 0.2),
     lambda: corollary4_conditional_entropy_upper_bound(2.0, 1.0, 0.1, 0.2)),
    (lambda p: proposition1_mean_bound(0.1, p), lambda: proposition1_mean_bound(0.1, 1.0)),
    (lambda p: validate_pmf(np.array([p, 0.0], dtype=np.asarray(p).dtype)), lambda: validate_pmf([1.0, 0.0])),
])
@pytest.mark.parametrize("twin", [ONE_UP, 1.0 + 7 * 2.0**-52, np.float32(1.0 + 2.0**-22), np.float16(1.0 + 2.0**-8),
                                  BF16(1.0 + 2.0**-6)])
def test_probability_ulps_above_1_in_its_own_dtype_is_read_as_1(call, exact, twin):
    assert float(twin) > 1.0
    np.testing.assert_array_equal(call(twin), exact())


@pytest.mark.parametrize("twin", [np.float32(1.0 + 2.0**-22), np.float16(1.0 + 2.0**-8), BF16(1.0 + 2.0**-6)])
def test_the_same_number_cast_to_float64_first_is_refused(twin):
    """The dtype is read before the cast: the float32 twin accepted above is 32 float64 ulps x 2^20 off."""
    with pytest.raises(ValueError, match=r"^`p_t` must be a probability in \[0, 1\]"):
        theorem4_mi_lower_bound(float(twin), 0.1, 0.2)


@pytest.mark.parametrize("value", [-1e-15, FLOAT32_NEG, np.float32(-0.9 * 2.0**-20), np.float16(-2.0**-9),
                                   BF16(-2.0**-9)])
def test_cosine_distance_just_below_0_is_read_as_0(value):
    d = np.array([value, 0.1, 0.2, 0.05], dtype=np.asarray(value).dtype)
    assert geometric_redundancy(d) == geometric_redundancy(np.clip(d.astype(float), 0, 2))
    assert proximal_probability(d, 0.0).estimate == 0.0  # clipped to 0: not below t = 0
    assert lemma2_mean_squared_distance(value) == 0.0
    rho = np.array([[value, 2.0], [2.0, 0.0]], dtype=np.asarray(value).dtype)
    q = exact_proximal_quantities(np.eye(2) / 2, rho, 0.0)
    assert q.p_t == 0.0 and q.p_max == 0.5


def test_bfloat16_cosine_distance_from_a_tensor_like_object_is_accepted():
    q = exact_proximal_quantities(np.eye(2) / 2, _TensorLike([[-2.0**-9, 2.0], [2.0, 0.0]]), 0.0)
    assert q.p_t == 0.0 and q.p_max == 0.5
    with pytest.raises(ValueError, match=r"^`rho` must be cosine distances in \[0, 2\], got -0.001953125$"):
        exact_proximal_quantities(np.eye(2) / 2, [[-2.0**-9, 2.0], [2.0, 0.0]], 0.0)  # the same value in float64


def test_bfloat16_torch_tensor_is_read_by_its_dtype_name():
    """The theory never imports torch; a tensor's dtype is read by name and its values through float()."""
    torch = pytest.importorskip("torch")
    rho = torch.tensor([[-2.0**-9, 2.0], [2.0, 0.0]], dtype=torch.bfloat16)
    assert tolerance(rho) == 2.0**-4
    q = exact_proximal_quantities(np.eye(2) / 2, rho, 0.0)
    assert q.p_t == 0.0 and q.p_max == 0.5


def test_cosine_distance_just_above_2_is_read_as_2():
    d = np.array([2.0 + 2e-15, 1.0])
    est = geometric_redundancy(d, method="hoeffding")
    assert est.estimate == 1.5


def test_binary_entropy_at_and_beyond_the_ends_is_positive_zero():
    for q in (0.0, 1.0, ONE_UP, -1e-17, np.float32(1.0 + 2.0**-22)):
        h = binary_entropy(q)
        assert h == 0.0 and math.copysign(1.0, h) == 1.0, q


def test_binary_kl_of_a_slightly_negative_q_is_refused_in_float64_and_finite_in_float32():
    with pytest.raises(ValueError, match=r"^`q` must be a probability in \[0, 1\], got -5e-07$"):
        binary_kl(0.5, -5e-7)
    got = binary_kl(0.5, np.float32(-5e-7))  # within 8 float32 ulps of 0: read at the tolerance above 0
    assert math.isfinite(got) and got == binary_kl(0.5, 2.0**-20)
    assert binary_kl(0.5, 0.0) == math.inf  # an exact 0 keeps its meaning


POLES = [  # (call, the closed end where the function is infinite, the dtype of the argument)
    (lambda x: binary_kl(0.5, x), 0.0), (lambda x: binary_kl(0.5, x), 1.0),
    (lambda x: log_cap_fraction(x, 4096), 0.0),
    (lambda x: theorem3_mi_lower_bound(0.5, x, 4096), 0.0),
    (lambda x: theorem3_mi_lower_bound_sharp(0.5, x, 4096), 0.0),
    (lambda x: kl_divergence([0.5, 0.5], np.array([x, 1.0 - x], dtype=np.asarray(x).dtype)), 0.0),
]


@pytest.mark.parametrize("call, end", POLES)
@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.float16, BF16])
def test_nothing_returns_an_infinity_from_finite_inputs_inside_the_tolerance(call, end, dtype):
    assert call(dtype(end)) in (math.inf, -math.inf)  # on the end itself: the exact, infinite value
    tol = float(tolerance(np.ones(1, dtype)))
    outside = dtype(end - 0.5 * tol if end == 0.0 else end + 0.5 * tol)
    assert float(outside) != end
    assert math.isfinite(call(outside))


def test_integer_with_round_off_of_its_dtype_is_read_as_the_integer():
    L = 0.1 * 3 * 10  # 3.0000000000000004
    assert L != 3 and abs(L - 3) <= 8 * 2.0**-52 * 3
    assert theorem6_bound(1.0, 1.2, 0.1, 0.01, L) == theorem6_bound(1.0, 1.2, 0.1, 0.01, 3)
    L32 = np.sum(np.full(30, 0.1, np.float32), dtype=np.float32)  # 2.9999995 in float32
    assert float(L32) != 3.0 and theorem6_bound(1.0, 1.2, 0.1, 0.01, L32) == theorem6_bound(1.0, 1.2, 0.1, 0.01, 3)
    assert log_cap_fraction(0.3, 4096 * (1 + 2**-52)) == log_cap_fraction(0.3, 4096)
    with pytest.raises(ValueError, match=r"^`L` must be >= 1 and an integer, got 2.99999\d*$"):
        theorem6_bound(1.0, 1.2, 0.1, 0.01, float(L32))


@pytest.mark.parametrize("call, match", [
    (lambda: theorem4_mi_lower_bound(1.0 + 2 * 2.0**-20, 0.1, 0.2), r"^`p_t` must be a probability in \[0, 1\], got 1.0000019073486328$"),
    (lambda: binary_kl(np.array(1.5), 0.5), r"^`p` must be a probability in \[0, 1\], got 1.5$"),
    (lambda: binary_entropy(np.array([0.5, -1e-14])), r"^`q` must be a probability in \[0, 1\], got -1e-14$"),
    (lambda: binary_entropy(np.array([0.5, -1e-5], np.float32)), r"^`q` must be a probability in \[0, 1\], got -9.99999974737\d*e-06$"),
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


def test_pmf_total_tolerance_is_separate_and_grows_only_for_low_precision():
    """1e-9 on the total of a float64 pmf; a float32 pmf normalised in float32 (total off by ~1e-7) passes."""
    assert pmf_total_tolerance(np.full(10**6, 1e-6)) == PMF_ATOL == 1e-9
    with pytest.raises(ValueError, match=r"^`p` must be a pmf summing to 1 \(tolerance 1e-09\), got sum 1.00000000200\d*$"):
        validate_pmf([0.5, 0.500000002])
    p32 = np.full(3, 1 / 3, np.float32)  # each 0.33333334: total 1 + 3e-8
    assert abs(float(p32.astype(float).sum()) - 1.0) > PMF_ATOL
    assert validate_pmf(p32).dtype == np.float64
    assert pmf_total_tolerance(p32) == 8 * 2.0**-23 * math.log2(3)
    with pytest.raises(ValueError, match=r"summing to 1 \(tolerance 1e-09\), got sum 1.0000000298"):
        validate_pmf(p32.astype(float))  # the same numbers, cast first: float64's tolerance


def test_nonnegative_sum_within_round_off_is_accepted_and_bound_stays_nonnegative():
    """h_cond + C bounds I >= 0: -1e-16 is round-off, and the bound returned is 0, not negative."""
    assert theorem5_entropy_bound(1.0, 1.0 - 1e-16 - 1.0, 0.0) == 0.0
    assert math.copysign(1.0, theorem5_entropy_bound(1.0, -1e-16, 0.0)) == 1.0
