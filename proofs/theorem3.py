"""Theorem 3 (paper App. A.2; continuous Fano, Duchi & Wainwright 2013, Prop. 2), corrected.

Statement (corrected). Let X_l be uniform on the unit sphere S^{d-1} (normalised surface
measure sigma), X_prev any random vector jointly distributed with X_l, rho the cosine
distance, t in [0, 2], P_t = P[rho(X_l, X_prev) > t], and F(t, d) = sigma(C(x, t)) the
normalised measure of the cap C(x, t) = {x' : 1 - <x, x'> <= t} (the same for all x). Then

    I(X_l; X_prev) >= d(1 - P_t || F(t, d))  >=  (1 - P_t) log(1/F(t, d)) - log 2.

Erratum. The paper states the ratio mu(X) / sup_x mu(B_rho(t) cap X) with mu the
Lebesgue measure of R^d; for X = S^{d-1} both are 0. "Lebesgue measure over their
respective dimensions" must mean the (d-1)-dimensional surface measure, and with it the
boundary-finiteness hypotheses are not needed. The paper's P[rho >= t] gives a smaller,
still valid bound (Step 5).

Proof.
Step 1 (caps have one measure). sigma is rotation invariant, so sigma(C(x, t)) = F(t, d)
        for every x (checked on S^2 around random centres by quadrature in a fixed frame); with u = <x, X_l> of density proportional to (1 - u^2)^((d-3)/2),
        F(t, d) = int_{1-t}^1 (1-u^2)^((d-3)/2) du / int_{-1}^1 (1-u^2)^((d-3)/2) du
        = I_{t(2-t)}((d-1)/2, 1/2)/2 for t <= 1 and 1 - I_{t(2-t)}((d-1)/2, 1/2)/2 for t > 1.
Step 2 (q_t = F exactly). q_t = E_{X_prev}[sigma(C(X_prev, t))] = F(t, d), so Theorem 4's
        first inequality (proofs/theorem4.py, Steps 1-3) gives I >= d(1 - P_t || F).
Step 3 (to the paper's form). d(a || F) = a log(1/F) + (1 - a) log(1/(1 - F)) - h(a) with
        (1 - a) log(1/(1 - F)) >= 0 and h(a) <= log 2.
Step 4 (exactness on the circle). X_prev = centre of X_l's arc among k equal arcs: I = log k;
        at t = 1 - cos(pi/k), P_t = 0 and F = 1/k, so the sharp form equals I.
Step 5 (P_t with >=). P[rho >= t] >= P[rho > t] and log(1/F) >= 0, so the paper's version is
        smaller than the corrected one; both hold.

Code: ``theorem3_mi_lower_bound``, ``theorem3_mi_lower_bound_sharp``, ``log_cap_fraction``.
"""

import math

import numpy as np
import sympy as sp
from hypothesis import given
from hypothesis import strategies as st
from scipy import integrate
from scipy.special import betainc

from skipit.theory.entropy import binary_entropy
from skipit.theory.informational import theorem3_mi_lower_bound, theorem3_mi_lower_bound_sharp
from skipit.theory.spherical import cap_fraction

TOL = 1e-10


def test_step_1_cap_measure_by_integrating_the_density_of_the_inner_product():
    for d in (3, 4, 7, 20):
        w = lambda u: (1 - u * u) ** ((d - 3) / 2)  # noqa: E731
        total = integrate.quad(w, -1, 1)[0]
        for t in (0.05, 0.5, 1.0, 1.3, 1.95):
            num = integrate.quad(w, 1 - t, 1, epsabs=1e-13, epsrel=1e-13)[0]
            assert abs(num / total - cap_fraction(t, d)) < 1e-9


def _cap_area_fraction_on_s2(centre, t):
    """sigma({x in S^2 : 1 - <centre, x> <= t}) by quadrature in the fixed (z-axis) frame.

    With x = (sin th cos ph, sin th sin ph, cos th) and centre at polar angle th_c, azimuth
    ph_c: <centre, x> = cos th_c cos th + sin th_c sin th cos(ph - ph_c), so at each th
    the cap is an azimuth interval of length 2 arccos(clip(r, -1, 1)),
    r = (1 - t - cos th_c cos th) / (sin th_c sin th). The area fraction is
    int_0^pi sin th * 2 arccos(clip(r)) dth / (4 pi), integrated with the kinks (where
    |r| = 1: th = th_c +- a, a - th_c, 2 pi - a - th_c with a = arccos(1 - t)) as breakpoints.
    """
    c = np.asarray(centre, dtype=float)
    c = c / np.linalg.norm(c)
    th_c = math.acos(c[2])
    s_c, z_c = math.sin(th_c), c[2]
    a = math.acos(1 - t)

    def width(th):
        den = s_c * math.sin(th)
        if den == 0.0:
            return 2 * math.pi if z_c * math.cos(th) >= 1 - t else 0.0
        return 2 * math.acos(min(1.0, max(-1.0, (1 - t - z_c * math.cos(th)) / den)))

    kinks = sorted({k for k in (th_c - a, th_c + a, a - th_c, 2 * math.pi - a - th_c) if 0 < k < math.pi})
    val = integrate.quad(lambda th: math.sin(th) * width(th), 0, math.pi, points=kinks or None,
                         epsabs=1e-13, epsrel=1e-13, limit=200)[0]
    return val / (4 * math.pi)


def test_step_1_cap_measure_is_the_same_around_random_centres_on_s2():
    """Rotation invariance, checked: caps around 6 random centres (not the pole the closed
    form uses), integrated in a fixed frame, all have measure F(t, 3) = t/2 (Archimedes)."""
    rng = np.random.default_rng(3)
    centres = rng.normal(size=(6, 3))
    for t in (0.05, 0.4, 1.0, 1.3, 1.9):
        for centre in centres:
            got = _cap_area_fraction_on_s2(centre, t)
            assert abs(got - cap_fraction(t, 3)) < 1e-9, (centre, t, got)
            assert abs(got - t / 2) < 1e-9


@given(st.floats(0, 1), st.floats(1e-6, 1.99), st.integers(2, 5000))
def test_step_2_and_3_sharp_form_dominates_the_paper_form(p_t, t, d):
    assert theorem3_mi_lower_bound_sharp(p_t, t, d) >= theorem3_mi_lower_bound(p_t, t, d) - TOL * (1 + abs(
        theorem3_mi_lower_bound(p_t, t, d)))


@given(st.floats(0, 1))
def test_step_3_binary_entropy_at_most_log2(a):
    assert binary_entropy(a) <= math.log(2) + 1e-15


def _exact_max(expr, x, lo, hi):
    """max of a smooth expr(x) on [lo, hi]: at an end point or where the derivative vanishes."""
    critical = sp.solveset(sp.diff(expr, x), x, sp.Interval(lo, hi))
    return max((expr.subs(x, c) for c in [lo, hi, *critical]), key=lambda v: float(v))


def _exact_measure(expr, x, lo, hi):
    """Length of {x in [lo, hi) : expr(x) <= 0}: expr keeps its sign between consecutive roots."""
    roots = sorted(sp.solveset(expr, x, sp.Interval.Ropen(lo, hi)), key=float)
    cuts = [lo, *roots, hi]
    return sum((b - a) for a, b in zip(cuts, cuts[1:]) if expr.subs(x, (a + b) / 2) <= 0)


def _circle_quantizer(k):
    """Step 4's law in sympy: X_l uniform on the circle (angle theta, measure dtheta / 2 pi),
    X_prev the centre of X_l's arc among k equal arcs. Returns the pmf of X_prev (the arcs'
    measures) and sup rho(X_l, X_prev) = max over arcs of max_theta 1 - cos(theta - centre)."""
    phi = sp.Symbol("phi", real=True)  # theta - centre: rho = 1 - cos(phi) on the arc shifted to its centre
    arcs = [(2 * sp.pi * j / k, 2 * sp.pi * (j + 1) / k) for j in range(k)]
    pmf = [(b - a) / (2 * sp.pi) for a, b in arcs]
    shifted = {(a - (a + b) / 2, b - (a + b) / 2) for a, b in arcs}  # one interval per distinct shape
    sup_rho = max((_exact_max(1 - sp.cos(phi), phi, lo, hi) for lo, hi in shifted), key=float)
    return pmf, sup_rho


def _circle_cap_measure(t):
    """sigma({theta : 1 - cos theta <= t}) on the circle, theta in [0, 2 pi)."""
    th = sp.Symbol("theta", real=True)
    return _exact_measure(1 - sp.cos(th) - t, th, 0, 2 * sp.pi) / (2 * sp.pi)


def test_step_4_circle_quantizer_attains_the_sharp_form():
    """X_prev is a function of X_l, so I = H(X_prev), computed from the arcs' measures; at
    t = 1 - cos(pi/k) no point is farther than t from its centre (P_t = 0) and the cap has measure
    1/k, so the sharp form d(1 - P_t || F) = log(1/F) equals I: the bound is attained."""
    for k in (3, 10):
        pmf, sup_rho = _circle_quantizer(k)
        info = sp.simplify(sp.expand_log(-sum(q * sp.log(q) for q in pmf), force=True))
        t = 1 - sp.cos(sp.pi / k)
        assert sp.simplify(sup_rho - t) == 0  # rho <= t everywhere: P[rho > t] = 0
        p_t = 0
        cap = _circle_cap_measure(t)
        sharp = (1 - p_t) * sp.log((1 - p_t) / cap)  # d(1 - P_t || F) at P_t = 0
        assert sp.simplify(sharp - info) == 0 and sp.simplify(info - sp.log(k)) == 0
        assert abs(cap_fraction(float(t), 2) - float(cap)) < 1e-12
        assert abs(theorem3_mi_lower_bound_sharp(float(p_t), float(t), 2) - float(info)) < 1e-9


def _hemisphere_law(d):
    """X_l uniform on S^{d-1}, X_prev = sign(<X_l, e>) e: u = <X_l, e> has density proportional to
    (1 - u^2)^((d-3)/2) on [-1, 1] and rho(X_l, X_prev) = 1 - |u|. Returns the mass of u >= 0 and
    t -> P_t = P[1 - |u| > t] = P[|u| < 1 - t], both by quadrature of that density."""
    def dens(u):
        return math.exp((d - 3) / 2 * math.log1p(-u * u)) if abs(u) < 1 else 0.0

    def mass(a, b):
        pts = [c for c in (-0.05, 0.0, 0.05) if a < c < b]
        return integrate.quad(dens, a, b, points=pts or None, epsabs=0, epsrel=1e-12, limit=200)[0]

    total = mass(-1, 1)
    return mass(0, 1) / total, (lambda t: mass(-(1 - t), 1 - t) / total)


def test_step_4_hemisphere_quantizer_respects_the_bound_in_high_dimension():
    """I = H(X_prev) = log 2 (the hemispheres' masses are 1/2 each) and the sharp form with the
    law's own P_t stays below it for every t."""
    d = 5120
    upper, p_t_of = _hemisphere_law(d)
    assert abs(upper - 0.5) < 1e-12
    info = -2 * upper * math.log(upper)
    for t in np.linspace(0.01, 0.999, 25):
        p_t = p_t_of(t)
        assert abs(p_t - float(betainc(0.5, (d - 1) / 2, (1 - t) ** 2))) < 1e-9  # u^2 ~ Beta(1/2, (d-1)/2)
        assert theorem3_mi_lower_bound_sharp(p_t, t, d) <= info + TOL


@given(st.floats(0, 1), st.floats(0, 1), st.floats(1e-6, 1.99), st.integers(2, 1000))
def test_step_5_larger_p_t_gives_a_smaller_bound(p1, p2, t, d):
    lo, hi = sorted((p1, p2))
    assert theorem3_mi_lower_bound(hi, t, d) <= theorem3_mi_lower_bound(lo, t, d) + TOL
