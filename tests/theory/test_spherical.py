"""log_cap_fraction against mpmath, closed forms, and its limits."""

import json
import math
from pathlib import Path

import mpmath as mp
import numpy as np
import pytest

from skipit.theory.spherical import cap_fraction, log_cap_fraction

REF = json.loads((Path(__file__).parent / "data" / "cap_reference.json").read_text())["rows"]
REL_TOL = 2e-13  # the docstring's claim; scipy's betaln alone gives 2.1e-10 at d = 10^6
# log F below this in magnitude is not representable as a double at all (t > 1, large d)
SUBNORMAL = 1e-300


def _reference_errors():
    t = np.array([r["t"] for r in REF])
    d = np.array([r["d"] for r in REF])
    ref = np.array([float(r["log_cap_fraction"]) for r in REF])
    got = log_cap_fraction(t, d)
    representable = np.abs(ref) > SUBNORMAL
    rel = np.full(t.shape, np.nan)
    rel[representable] = np.abs(got[representable] - ref[representable]) / np.abs(ref[representable])
    return t, d, ref, got, rel


def test_log_cap_fraction_matches_mpmath_reference_to_2e13_relative_up_to_d_1e7():
    t, d, ref, got, rel = _reference_errors()
    ok = ~np.isnan(rel)
    assert np.nanmax(rel) < REL_TOL, (t[ok][np.nanargmax(rel[ok])], d[ok][np.nanargmax(rel[ok])], np.nanmax(rel))
    assert np.all(np.abs(got[~ok]) <= SUBNORMAL)


@pytest.mark.parametrize("t, d", [(1.01, 30_000), (1.00215, 10**6), (1.001, 3 * 10**6)])
def test_the_reviewed_points_near_the_hemisphere_are_within_the_claim(t, d):
    """The continued fraction in x = t(2 - t) gave 2.7e-12, 2.9e-11 and 1.6e-10 here."""
    rows = [r for r in REF if r["t"] == t and r["d"] == d]
    assert rows
    want = float(rows[0]["log_cap_fraction"])
    assert abs(log_cap_fraction(t, d) - want) <= REL_TOL * abs(want)


def test_reference_is_dense_around_the_hemisphere_up_to_d_1e7():
    pairs = {(r["t"], r["d"]) for r in REF}
    for d in (30_000, 10**6, 3 * 10**6, 10**7):
        for k in range(1, 7):
            assert (1 - 10.0**-k, d) in pairs and (1 + 10.0**-k, d) in pairs, (k, d)
        a = (d - 1) / 2  # both sides of the old switch point a (1 - t)^2 = 1.5
        assert sum(abs(a * (1 - t) ** 2 - 1.5) < 1e-9 for t, dd in pairs if dd == d) == 2


def _mpmath_log_cap(t, d):
    """log F at the double t exactly, from mpmath's incomplete beta at 50 digits."""
    with mp.workdps(50):
        tt = mp.mpf(float(t))
        i = mp.betainc(mp.mpf(d - 1) / 2, mp.mpf(1) / 2, 0, tt * (2 - tt), regularized=True)
        return float(mp.log(i / 2) if tt <= 1 else mp.log1p(-i / 2))


@pytest.mark.parametrize("d", [30, 31, 32, 4096])
def test_both_sides_of_each_branch_switch_match_mpmath(d):
    """BGRAT where a = (d - 1)/2 >= 15 (d >= 31) and (1 - t)^2 <= 1/2; the continued fraction elsewhere."""
    u = math.sqrt(0.5)
    for t in (1 - u, np.nextafter(1 - u, 0), 1 + u, np.nextafter(1 + u, 3), 0.999, 1.001):
        want = _mpmath_log_cap(t, d)
        assert abs(log_cap_fraction(t, d) - want) <= REL_TOL * abs(want), (t, d)


def test_cap_fraction_closed_forms_on_circle_and_s2():
    # d = 2: arc of half-angle arccos(1 - t) = 2 arcsin(sqrt(t/2)) out of 2 pi;
    # d = 3 (Archimedes): F = t / 2
    t = np.linspace(1e-6, 2.0, 101)
    np.testing.assert_allclose(cap_fraction(t, 2), 2.0 * np.arcsin(np.sqrt(t / 2.0)) / np.pi, rtol=1e-12)
    np.testing.assert_allclose(cap_fraction(t, 3), t / 2.0, rtol=1e-12)


def test_reference_covers_d_1e5_to_1e7():
    assert {100_000, 1_000_000, 3_000_000, 10_000_000} <= {r["d"] for r in REF}


def test_threshold_at_or_beyond_2_is_the_whole_sphere():
    """rho <= 2 always, so the cap of radius t >= 2 is the sphere: log fraction exactly 0."""
    t = np.array([2.0, 2.0 + 1e-12, 2.5, 7.0])
    for d in (2, 4096, 10**6):
        assert np.all(log_cap_fraction(t, d) == 0.0)
    # round-off below 0 is read at the tolerance above 0 (finite); only t = 0 exactly is the point cap
    assert log_cap_fraction(-1e-17, 10) == log_cap_fraction(8 * 2.0**-52, 10) > -np.inf


def test_hemisphere_is_half_and_endpoints_are_exact():
    d = np.array([2, 7, 4096, 16384])
    np.testing.assert_allclose(log_cap_fraction(1.0, d), np.log(0.5), rtol=0, atol=0)
    assert np.all(log_cap_fraction(2.0, d) == 0.0)
    assert np.all(log_cap_fraction(0.0, d) == -np.inf)


def test_no_underflow_to_minus_inf_in_high_dimension():
    t = np.array([1e-12, 1e-6, 0.01, 0.5, 0.99])
    for d in (4096, 5120, 16384, 65536):
        v = log_cap_fraction(t, d)
        assert np.all(np.isfinite(v)), (d, v)
        assert np.all(np.diff(v) > 0)


def test_log_cap_fraction_is_monotone_in_t_and_d():
    t = np.linspace(1e-4, 1.999, 400)
    for d in (2, 50):
        assert np.all(np.diff(log_cap_fraction(t, d)) > 0)
    # for d = 5120, log F rounds to -0.0 for t > ~1.1: non-decreasing, strictly below
    v = log_cap_fraction(t, 5120)
    assert np.all(np.diff(v) >= 0) and np.all(np.diff(v[t < 1.0]) > 0)
    # a cap smaller than a hemisphere shrinks (relatively) as the dimension grows
    assert np.all(np.diff(log_cap_fraction(0.5, np.arange(2, 200))) < 0)
    assert np.all(np.diff(log_cap_fraction(1.5, np.arange(2, 200))) > 0)


def test_symmetry_cap_plus_complementary_cap_is_whole_sphere():
    # {1 - <x,x'> <= t} and {1 - <x,x'> > t} = {1 - <-x,x'> < 2 - t}: F(t) + F(2 - t) = 1
    t = np.linspace(0.01, 1.99, 50)
    for d in (2, 9, 300):
        np.testing.assert_allclose(cap_fraction(t, d) + cap_fraction(2 - t, d), 1.0, rtol=1e-13)


def test_vectorised_broadcasting_shape():
    out = log_cap_fraction(np.linspace(0.1, 1.9, 6)[:, None], np.array([2, 10, 100]))
    assert out.shape == (6, 3)
    assert np.ndim(log_cap_fraction(0.3, 4)) == 0


@pytest.mark.parametrize(
    "t, d, match",
    [(-0.1, 4, r"`t` must be a cosine-distance threshold >= 0, got -0.1$"),
     (-2e-6, 4, r"`t` must be a cosine-distance threshold >= 0, got -2e-06$"),
     (0.5, 1, r"`d` must be >= 2 and an integer, got 1.0$"), (0.5, 3.5, r"`d` must be >= 2 and an integer, got 3.5$"),
     (np.nan, 4, r"`t` must be a cosine-distance threshold >= 0, got nan$"),
     (0.5, np.inf, r"`d` must be >= 2 and an integer, got inf$"),
     (0.5, np.nan, r"`d` must be >= 2 and an integer, got nan$")],
)
def test_invalid_arguments_raise_naming_the_argument(t, d, match):
    with pytest.raises(ValueError, match=match):
        log_cap_fraction(t, d)


@pytest.mark.parametrize("d, t_normal", [(4096, 0.4606), (5120, 0.5096)])
def test_cap_fraction_underflow_threshold_in_vlm_dimensions(d, t_normal):
    """F(t, d) drops below the smallest normal double at t ~ 0.46 (d = 4096), ~ 0.51 (d = 5120)
    (the thresholds ERRATA.md and the module docstring quote); log_cap_fraction stays finite."""
    tiny = np.finfo(float).tiny
    assert cap_fraction(t_normal - 1e-3, d) < tiny < cap_fraction(t_normal + 1e-3, d)
    assert np.isfinite(log_cap_fraction(t_normal - 0.3, d))
