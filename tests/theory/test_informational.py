"""Theorems 3-5, Corollary 4, Lemma 4 against exact finite laws and closed-form spherical laws."""

import math

import mpmath as mp
import numpy as np
import pytest
import sympy as sp
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from scipy.special import betainc

from skipit.theory import informational as inf
from skipit.theory.entropy import (
    binary_kl, conditional_entropy, conditional_mutual_information, entropy, mutual_information,
)
from skipit.theory.informational import (
    conditional_mean_gap, corollary4_conditional_entropy_upper_bound, exact_proximal_quantities,
    informational_bounds_from_samples, lemma4_expected_kl, lemma4_gap, theorem3_mi_lower_bound,
    theorem3_mi_lower_bound_sharp, theorem4_mi_lower_bound, theorem4_mi_lower_bound_sharp, theorem5_bound,
    theorem5_entropy_bound,
)
from skipit.theory.spherical import cap_fraction
from skipit.theory.testing import bounded_points, finite_sphere_laws, markov_chains

TOL = 1e-10


def _laws_and_thresholds():
    # t either at an atom of rho (where '>' versus '>=' matters) or anywhere in [0, 2]
    return finite_sphere_laws().flatmap(
        lambda law: st.tuples(st.just(law), st.one_of(st.sampled_from(sorted(set(np.round(law.rho.ravel(), 12)))),
                                                       st.floats(0.0, 2.0))))


# ----------------------------------------------------------------------------- Theorem 4 / Cor. 4
@given(_laws_and_thresholds())
def test_theorem4_lower_bounds_exact_mutual_information(law_t):
    law, t = law_t
    pq = exact_proximal_quantities(law.p, law.rho, t)
    if pq.p_min >= 1:  # every pair within t: P_t = 0 and the bound is the trivial 0 <= I
        assert pq.p_t == 0
        return
    assume(pq.p_max > 0)  # the bound's hypothesis (else q_t = 0 = 1 - P_t: nothing to bound)
    mi = mutual_information(law.p, 0, 1)
    paper = theorem4_mi_lower_bound(pq.p_t, pq.p_min, pq.p_max)
    sharp = theorem4_mi_lower_bound_sharp(pq.p_t, pq.p_min, pq.p_max)
    exact_q = binary_kl(1 - pq.p_t, pq.q_t)
    assert paper <= sharp + TOL
    assert sharp <= exact_q + TOL
    assert exact_q <= mi + TOL


@given(_laws_and_thresholds())
def test_corollary4_upper_bounds_exact_conditional_entropy(law_t):
    law, t = law_t
    pq = exact_proximal_quantities(law.p, law.rho, t)
    assume(pq.p_min < 1 and pq.p_max > 0)
    h_x = entropy(law.p, 0)
    bound = corollary4_conditional_entropy_upper_bound(h_x, pq.p_t, pq.p_min, pq.p_max)
    assert conditional_entropy(law.p, 0, 1) <= bound + TOL
    # in bits: same inequality, every term converted
    bound_bits = corollary4_conditional_entropy_upper_bound(h_x / math.log(2), pq.p_t, pq.p_min, pq.p_max, base=2)
    assert bound_bits == pytest.approx(bound / math.log(2), abs=1e-12)


def test_theorem4_needs_no_p_min_plus_p_max_below_one():
    # two antipodal points, t = 1: each ball holds only its centre, of X_prev-probability 1/2,
    # so p_min = p_max = 1/2 and p_min + p_max = 1 (the paper asks for < 1)
    rho = np.array([[0.0, 2.0], [2.0, 0.0]])
    p = np.array([[0.4, 0.1], [0.1, 0.4]])
    pq = exact_proximal_quantities(p, rho, 1.0)
    assert pq.p_min + pq.p_max >= 1
    assert theorem4_mi_lower_bound(pq.p_t, pq.p_min, pq.p_max) <= mutual_information(p, 0, 1) + TOL


def test_theorem4_is_attained_by_a_noiseless_uniform_channel():
    # X_l = X_prev uniform on k orthogonal points, t < 1: P_t = 0, p_min = p_max = 1/k, I = log k
    for k in (2, 5, 50):
        assert theorem4_mi_lower_bound(0.0, 1 / k, 1 / k) == pytest.approx(math.log(k), abs=1e-12)


# ----------------------------------------------------------------------------- Theorem 3
def _circle_quantizer(k, t):
    """X_l uniform on the circle, X_prev = centre of its arc among k equal arcs: I = log k."""
    half = math.pi / k
    p_t = max(0.0, 1.0 - math.acos(1.0 - t) / half) if t < 1.0 - math.cos(half) else 0.0
    return math.log(k), p_t


@pytest.mark.parametrize("k", [2, 3, 8, 64])
def test_theorem3_holds_for_circle_quantizers(k):
    for t in np.linspace(1e-4, 1.99, 60):
        mi, p_t = _circle_quantizer(k, t)
        assert theorem3_mi_lower_bound(p_t, t, 2) <= theorem3_mi_lower_bound_sharp(p_t, t, 2) + TOL
        assert theorem3_mi_lower_bound_sharp(p_t, t, 2) <= mi + TOL


@pytest.mark.parametrize("k", [4, 16, 256])
def test_theorem3_sharp_form_is_attained_and_paper_form_is_log2_short(k):
    t = 1.0 - math.cos(math.pi / k)  # the arc radius: P_t = 0, F = 1/k
    mi, p_t = _circle_quantizer(k, t)
    assert p_t == 0.0
    assert theorem3_mi_lower_bound_sharp(p_t, t, 2) == pytest.approx(mi, rel=1e-9)
    assert theorem3_mi_lower_bound(p_t, t, 2) == pytest.approx(mi - math.log(2), rel=1e-9)


@pytest.mark.parametrize("d", [3, 10, 100, 4096])
def test_theorem3_holds_for_the_hemisphere_quantizer_in_high_dimension(d):
    # X_prev = sign(x_1) e_1; rho = 1 - |x_1|, x_1^2 ~ Beta(1/2, (d-1)/2); I = log 2
    for t in np.linspace(1e-3, 1.999, 40):
        p_t = float(betainc(0.5, (d - 1) / 2, (1 - t) ** 2)) if t < 1 else 0.0
        assert theorem3_mi_lower_bound(p_t, t, d) <= theorem3_mi_lower_bound_sharp(p_t, t, d) + TOL
        assert theorem3_mi_lower_bound_sharp(p_t, t, d) <= math.log(2) + TOL


def test_theorem3_in_high_dimension_is_finite_and_large():
    v = theorem3_mi_lower_bound(0.1, 0.3, 5120)
    assert np.isfinite(v) and v > 1000
    assert theorem3_mi_lower_bound(1.0, 0.3, 5120) == pytest.approx(-math.log(2))


# ----------------------------------------------------------------------------- Theorem 5, Lemma 4
@given(markov_chains(), st.data())
def test_theorem5_conditional_mean_gap_below_2B2_cmi(p, data):
    z = data.draw(bounded_points(p.shape[2], dim=2, bound=1.5))
    b = float(np.max(np.linalg.norm(z, axis=1)))
    lhs = conditional_mean_gap(p, z)
    cmi = conditional_mutual_information(p, 2, 1, 0)
    assert lhs <= theorem5_bound(b, cmi) + TOL
    # discrete X_l: C = 0, and I(Z; X_l | X_prev) <= H(X_l | X_prev)
    assert lhs <= theorem5_entropy_bound(b, conditional_entropy(p, 1, 0)) + TOL


@pytest.mark.parametrize("delta", [0.1, 0.01, 0.001])
def test_theorem5_constant_two_is_sharp(delta):
    # X_prev constant, X_l a fair bit, Z = +-B with P(Z = B | X_l = x) = 1/2 +- delta
    b = 3.0
    p = np.zeros((1, 2, 2))
    p[0, 0] = [0.5 * (0.5 + delta), 0.5 * (0.5 - delta)]
    p[0, 1] = [0.5 * (0.5 - delta), 0.5 * (0.5 + delta)]
    lhs = conditional_mean_gap(p, np.array([[b], [-b]]))
    assert lhs == pytest.approx(4 * b**2 * delta**2, rel=1e-12)
    ratio = lhs / theorem5_bound(b, conditional_mutual_information(p, 2, 1, 0))
    assert ratio <= 1.0
    assert ratio > 1.0 - 2 * delta**2 - 1e-9  # -> 1: no constant below 2 works


@given(markov_chains())
def test_lemma4_expected_kl_equals_conditional_mutual_information(p):
    assert abs(lemma4_gap(p)) < 1e-12
    assert lemma4_expected_kl(p, base=2) == pytest.approx(conditional_mutual_information(p, 2, 1, 0, base=2),
                                                          abs=1e-12)


def test_lemma4_needs_the_markov_chain():
    # Z = X_prev XOR X_l with fair independent bits: not Markov X_prev - X_l - Z
    p = np.zeros((2, 2, 2))
    for a in range(2):
        for b in range(2):
            p[a, b, a ^ b] = 0.25
    with pytest.raises(ValueError, match=r"`p` must be a Markov chain"):
        lemma4_expected_kl(p)
    assert lemma4_expected_kl(p, require_markov=False) == 0.0
    assert conditional_mutual_information(p, 2, 1, 0) == pytest.approx(math.log(2))


# ----------------------------------------------------------------------------- symbolic agreement
@settings(max_examples=30)
@given(st.floats(0.01, 0.99), st.floats(0.0, 0.4), st.floats(0.41, 0.99), st.floats(-2, 8), st.floats(0, 5))
def test_numeric_functions_equal_their_sympy_expressions(p_t, p_min, p_max, h, b):
    s = inf.SYMBOLIC
    a = inf.ARGUMENTS
    ev = lambda name, vals: float(s[name].subs(dict(zip(a[name], vals))).evalf(30))  # noqa: E731
    assert theorem4_mi_lower_bound(p_t, p_min, p_max) == pytest.approx(
        ev("theorem4_mi_lower_bound", (p_t, p_min, p_max)), abs=1e-12)
    assert corollary4_conditional_entropy_upper_bound(h, p_t, p_min, p_max) == pytest.approx(
        ev("corollary4_conditional_entropy_upper_bound", (h, p_t, p_min, p_max)), abs=1e-12)
    # Theorem 5's numeric functions are lambdified from the sympy forms: compare both with the
    # statement written out by hand, 2 B^2 I and 2 B^2 (H + C)
    cmi, c = p_min, 2.0
    assert theorem5_bound(b, cmi) == pytest.approx(2.0 * b**2 * cmi, rel=1e-12, abs=1e-12)
    assert ev("theorem5_bound", (b, cmi)) == pytest.approx(2.0 * b**2 * cmi, rel=1e-12, abs=1e-12)
    assert theorem5_entropy_bound(b, h, c) == pytest.approx(2.0 * b**2 * (h + c), rel=1e-12, abs=1e-12)
    assert ev("theorem5_entropy_bound", (b, h, c)) == pytest.approx(2.0 * b**2 * (h + c), rel=1e-12, abs=1e-12)
    # and Theorem 4 / Corollary 4 with the paper's expression written out
    h2 = -p_t * math.log(p_t) - (1 - p_t) * math.log(1 - p_t)
    t4 = (1 - p_t) * math.log(1 / p_max) - p_t * math.log(1 - p_min) - h2
    assert theorem4_mi_lower_bound(p_t, p_min, p_max) == pytest.approx(t4, abs=1e-12)
    assert corollary4_conditional_entropy_upper_bound(h, p_t, p_min, p_max) == pytest.approx(h - t4, abs=1e-12)


@pytest.mark.parametrize("p_t, t, d", [(0.1, 0.3, 5), (0.5, 0.9, 17), (0.2, 1.4, 40), (0.0, 0.05, 64)])
def test_theorem3_equals_its_sympy_expression(p_t, t, d):
    expr = inf.SYMBOLIC["theorem3_mi_lower_bound"]
    vals = dict(zip(inf.ARGUMENTS["theorem3_mi_lower_bound"], (sp.Float(p_t, 30), sp.Float(t, 30), d)))
    with mp.workdps(40):
        ref = float(expr.subs(vals).evalf(30))
    assert theorem3_mi_lower_bound(p_t, t, d) == pytest.approx(ref, rel=1e-12)


# ----------------------------------------------------------------------------- units, validation
def test_bits_are_nats_over_log2():
    assert theorem4_mi_lower_bound(0.2, 0.01, 0.1, base=2) == pytest.approx(
        theorem4_mi_lower_bound(0.2, 0.01, 0.1) / math.log(2), rel=1e-14)
    assert theorem3_mi_lower_bound(0.2, 0.5, 30, base=2) == pytest.approx(
        theorem3_mi_lower_bound(0.2, 0.5, 30) / math.log(2), rel=1e-14)
    # theorem 5: the same information in bits gives the same bound on a squared distance
    assert theorem5_bound(2.0, 1.0, base=2) == pytest.approx(theorem5_bound(2.0, math.log(2)), rel=1e-14)


def test_bounds_are_vectorised():
    out = theorem4_mi_lower_bound(np.array([0.0, 0.1, 0.5]), 0.01, np.array([[0.05], [0.2]]))
    assert out.shape == (2, 3)
    assert theorem3_mi_lower_bound(np.array([0.1, 0.2]), np.array([0.3, 0.3]), 4096).shape == (2,)


@pytest.mark.parametrize(
    "call, match",
    [(lambda: theorem4_mi_lower_bound(1.2, 0.1, 0.2), r"`p_t` must be a probability in \[0, 1\], got 1.2"),
     (lambda: theorem4_mi_lower_bound(0.1, 0.3, 0.2), r"`p_min` must be <= `p_max`, got p_min=0.3 > p_max=0.2"),
     (lambda: theorem4_mi_lower_bound(0.1, 0.0, 0.0), r"`p_max` must be a probability in \(0, 1\], got 0.0"),
     (lambda: theorem4_mi_lower_bound(0.1, 1.0, 1.0), r"`p_min` must be a probability in \[0, 1\), got 1.0"),
     (lambda: theorem4_mi_lower_bound(np.nan, 0.1, 0.2), r"`p_t` must be a probability in \[0, 1\], got nan$"),
     (lambda: theorem3_mi_lower_bound(0.1, 2.5, 10), r"`p_t` must be 0 when `t` >= 2.*got p_t=0.1 with t=2.5$"),
     (lambda: theorem3_mi_lower_bound(0.1, 0.5, 1), r"`d` must be >= 2 and an integer, got 1.0$"),
     (lambda: theorem5_bound(-1.0, 0.1), r"`B` must be >= 0, got -1.0$"),
     (lambda: theorem5_bound(1.0, -0.1), r"`cmi` must be >= 0, got -0.1$"),
     (lambda: theorem5_bound(0.0, np.inf), r"`cmi` must be >= 0, got inf$"),
     (lambda: theorem5_bound(np.inf, 0.0), r"`B` must be >= 0, got inf$"),
     (lambda: theorem5_entropy_bound(np.inf, 0.1), r"`B` must be >= 0, got inf$"),
     (lambda: theorem5_bound(1.0, 0.1, base=np.inf), r"`base` must be a finite number > 0 and != 1, got inf"),
     (lambda: theorem4_mi_lower_bound(0.1, 0.1, 0.2, base=1.0), r"`base` must be a finite number > 0 and != 1, got 1.0"),
     (lambda: theorem3_mi_lower_bound(0.1, 0.5, np.inf), r"`d` must be >= 2 and an integer, got inf$"),
     (lambda: theorem3_mi_lower_bound(0.3, 2.0, 5), r"`p_t` must be 0 when `t` >= 2.*got p_t=0.3 with t=2.0$"),
     (lambda: theorem3_mi_lower_bound_sharp(0.3, 2.0, 5), r"`p_t` must be 0 when `t` >= 2.*got p_t=0.3 with t=2.0$"),
     (lambda: theorem3_mi_lower_bound_sharp([0.0, 0.1], [2.0, 2.0], 5),
      r"`p_t` must be 0 when `t` >= 2.*got p_t=0.1 with t=2.0$"),
     (lambda: exact_proximal_quantities(np.eye(2) / 2, np.zeros((2, 2)), np.nan), r"`t` must be a cosine-distance threshold >= 0, got nan$"),
     (lambda: exact_proximal_quantities(np.eye(2) / 2, np.zeros((2, 2)), -0.1), r"`t` must be a cosine-distance threshold >= 0, got -0.1$"),
     (lambda: exact_proximal_quantities(np.eye(2) / 2, [[0.0, np.nan], [1.0, 0.0]], 0.5),
      r"`rho` must be cosine distances in \[0, 2\], got nan$"),
     (lambda: exact_proximal_quantities(np.eye(2) / 2, [[0.0, 2.5], [1.0, 0.0]], 0.5),
      r"`rho` must be cosine distances in \[0, 2\], got 2.5$"),
     (lambda: exact_proximal_quantities(np.eye(2) / 2, [[0.0, -1.0], [1.0, 0.0]], 0.5),
      r"`rho` must be cosine distances in \[0, 2\], got -1.0$"),
     (lambda: exact_proximal_quantities(np.eye(2) / 2, np.zeros((2, 3)), 0.5),
      r"`rho` must have the shape of `p` \(2, 2\), got \(2, 3\)"),
     (lambda: theorem5_entropy_bound(1.0, np.nan), r"`h_cond` must be finite, got nan$"),
     (lambda: theorem5_entropy_bound(1.0, -2.0, 1.0), r"`h_cond \+ C` must be >= 0.*-1.0"),
     (lambda: corollary4_conditional_entropy_upper_bound(np.inf, 0.1, 0.1, 0.2), r"`h_x` must be finite, got inf$"),
     (lambda: informational_bounds_from_samples(np.ones((5, 3)), np.ones((5, 3)), -1.0), r"`t` must be a cosine-distance threshold >= 0, got -1.0$"),
     (lambda: informational_bounds_from_samples(np.ones((5, 3)), np.ones((4, 3)), 0.1), r"same shape n x d")],
)
def test_invalid_arguments_raise_naming_the_argument(call, match):
    with pytest.raises(ValueError, match=match):
        call()


# ----------------------------------------------------------------------------- from samples
def test_sample_bounds_cover_the_exact_law_with_the_stated_confidence():
    """Finite law on 3 points of S^2: over 60 samples of n = 300 pairs, the confidence
    intervals for P_t and q_t cover the exact values (expected failure rate <= 5%) and
    mi_lower never exceeds the exact I(X_l; X_prev)."""
    pts = np.eye(3)
    p = np.array([[0.25, 0.05, 0.02], [0.04, 0.3, 0.02], [0.02, 0.05, 0.25]])
    rho = 1.0 - pts @ pts.T
    t = 0.5
    exact = exact_proximal_quantities(p, rho, t)
    mi = mutual_information(p, 0, 1)
    rng = np.random.default_rng(7)
    misses = 0
    for _ in range(60):
        cells = rng.choice(9, size=300, p=p.ravel())
        xl, xp = pts[cells // 3], pts[cells % 3]
        r = informational_bounds_from_samples(xl, xp, t, delta=0.05, h_x=entropy(p, 0))
        covered = r.p_t_lower <= exact.p_t <= r.p_t_upper and r.q_t_lower <= exact.q_t <= r.q_t_upper
        misses += not covered
        if covered:
            assert r.mi_lower <= mi + TOL
            assert r.mi_lower_paper_form <= r.mi_lower + TOL
            assert r.h_cond_upper >= conditional_entropy(p, 0, 1) - TOL
        assert abs(r.p_max_sample - exact.p_max) <= r.sample_point_error or r.p_max_sample <= exact.p_max
    assert misses <= 6
    assert r.mi_lower > 0.1  # informative at this sample size


@settings(max_examples=20)
@given(st.floats(0.01, 0.99), st.floats(0.0, 0.4), st.floats(0.41, 0.99))
def test_sharp_forms_equal_their_sympy_expressions(p_t, p_min, p_max):
    s, a = inf.SYMBOLIC, inf.ARGUMENTS
    name = "theorem4_mi_lower_bound_sharp"
    want = float(s[name].subs(dict(zip(a[name], (p_t, p_min, p_max)))).evalf(30))
    assert theorem4_mi_lower_bound_sharp(p_t, p_min, p_max) == pytest.approx(want, abs=1e-12)


@pytest.mark.parametrize("p_t, t, d", [(0.1, 0.3, 5), (0.4, 1.2, 12)])
def test_theorem3_sharp_equals_its_sympy_expression(p_t, t, d):
    name = "theorem3_mi_lower_bound_sharp"
    vals = dict(zip(inf.ARGUMENTS[name], (sp.Float(p_t, 30), sp.Float(t, 30), d)))
    assert theorem3_mi_lower_bound_sharp(p_t, t, d) == pytest.approx(float(inf.SYMBOLIC[name].subs(vals).evalf(30)),
                                                                      rel=1e-12)


@pytest.mark.parametrize("name", ["theorem4_mi_lower_bound", "corollary4_conditional_entropy_upper_bound",
                                  "theorem5_bound", "theorem5_entropy_bound"])
def test_jax_grad_equals_sympy_diff(name):
    jax = pytest.importorskip("jax")
    jnp = pytest.importorskip("jax.numpy")
    args = inf.ARGUMENTS[name]
    point = {"p_t": 0.2, "p_min": 0.05, "p_max": 0.3, "h_x": 2.0, "B": 1.5, "cmi": 0.1, "h_cond": 0.4, "C": 0.2}
    vals = [point[s.name] for s in args]
    before = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)  # float64 for this test only
    try:
        f = sp.lambdify(args, inf.SYMBOLIC[name], "jax")
        grads = jax.grad(f, argnums=tuple(range(len(args))))(*(jnp.asarray(v, dtype=jnp.float64) for v in vals))
    finally:
        jax.config.update("jax_enable_x64", before)
    numeric = getattr(inf, name)
    for i, (sym, g) in enumerate(zip(args, grads)):
        want = float(sp.diff(inf.SYMBOLIC[name], sym).subs(dict(zip(args, vals))))
        assert float(g) == pytest.approx(want, rel=1e-10, abs=1e-12)
        # and against skipit's public numeric function, by a central difference (step 1e-6:
        # truncation ~1e-12, rounding ~1e-10)
        h = 1e-6
        up, down = list(vals), list(vals)
        up[i] += h
        down[i] -= h
        fd = (float(numeric(*up)) - float(numeric(*down))) / (2 * h)
        assert float(g) == pytest.approx(fd, rel=1e-7, abs=1e-7), (name, sym.name, "finite difference")
