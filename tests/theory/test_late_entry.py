"""Theorem 6 (late entry) on small networks whose trajectories are computed exactly."""

from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from skipit.theory import geometric_sum, theorem6_bound, theorem6_bound_sqrt

SLACK = 1e-9


class Network:
    """n = L + tail layers: f_vis(v, t) = v + s tanh(E v + F t), f_text(v, t) = tanh(C t + D v); linear tail M."""

    def __init__(self, rng, L, dv=3, dt=3, step=0.1, coupling=0.3):
        self.L = L
        self.E = rng.normal(size=(L, dv, dv))
        self.F = rng.normal(size=(L, dv, dt))
        self.C = rng.normal(size=(L, dt, dt)) / np.sqrt(dt)
        self.D = coupling * rng.normal(size=(L, dt, dv))
        self.M = rng.normal(size=(dv + dt, dv + dt)) / np.sqrt(dv + dt)
        self.step = step
        self.v0, self.t0 = rng.normal(size=dv), rng.normal(size=dt)

    def f_vis(self, l, v, t):
        return v + self.step * np.tanh(self.E[l - 1] @ v + self.F[l - 1] @ t)

    def f_text(self, l, v, t):
        return np.tanh(self.C[l - 1] @ t + self.D[l - 1] @ v)

    def phi(self, v, t):
        return self.M @ np.concatenate([v, t])

    def run(self):
        V, T, Tskip = [self.v0], [self.t0], [self.t0]
        for l in range(1, self.L + 1):
            V.append(self.f_vis(l, V[-1], T[-1]))
            T.append(self.f_text(l, V[-2], T[-1]))
            Tskip.append(self.f_text(l, np.zeros_like(self.v0), Tskip[-1]))
        return V, T, Tskip

    def constants(self, V, T, entry):
        """Exact mu and upper bounds lam, eps, delta satisfying the corrected hypotheses."""
        mu = float(np.linalg.norm(self.M, 2))
        lam = max(float(np.linalg.norm(c, 2)) for c in self.C)  # tanh is 1-Lipschitz
        steps = [np.linalg.norm(V[l] - V[l - 1]) for l in range(entry + 1, self.L + 1)]
        eps = float(max(steps, default=0.0))
        delta = max(float(np.linalg.norm(self.f_text(l, V[l - 1], T[l - 1])
                                         - self.f_text(l, np.zeros_like(self.v0), T[l - 1])))
                    for l in range(1, self.L + 1))
        return mu, lam, eps, delta


@given(seed=st.integers(0, 2**32 - 1), L=st.integers(1, 5), data=st.data())
def test_theorem6_late_entry_error_is_bounded(seed, L, data):
    """||Y_true - Y_skip|| <= mu sqrt(((L-k) eps)^2 + (delta S_L)^2) <= mu((L-k) eps + delta S_L), any entry k."""
    net = Network(np.random.default_rng(seed), L)
    V, T, Tskip = net.run()
    entry = data.draw(st.integers(0, L))
    y_true = net.phi(V[L], T[L])
    y_skip = net.phi(V[entry], Tskip[L])
    err = float(np.linalg.norm(y_true - y_skip))
    args = net.constants(V, T, entry) + (L, entry)
    assert err <= theorem6_bound_sqrt(*args) * (1 + SLACK) + 1e-12
    assert theorem6_bound_sqrt(*args) <= theorem6_bound(*args) * (1 + SLACK) + 1e-12


@pytest.mark.parametrize("L, lam", [(1, 0.5), (4, 1.0), (6, 1.3), (3, 0.0)])
def test_theorem6_sqrt_form_is_attained(L, lam):
    """Aligned linear layers: V_l = V_{l-1} + eps, f_text^l(v, t) = lam t + (delta / V_{l-1}) v,
    phi = mu * identity. Then E_L = delta S_L and ||Y_true - Y_skip|| equals the sqrt form."""
    mu, eps, delta = 1.7, 0.05, 0.02
    V, T, Tskip = [1.0], [0.3], [0.3]
    for _ in range(L):
        kappa = delta / V[-1]
        V.append(V[-1] + eps)
        T.append(lam * T[-1] + kappa * V[-2])
        Tskip.append(lam * Tskip[-1])
    err = mu * np.hypot(V[L] - V[1], T[L] - Tskip[L])
    assert err == pytest.approx(theorem6_bound_sqrt(mu, lam, eps, delta, L), rel=1e-12)
    assert abs(T[L] - Tskip[L]) == pytest.approx(delta * sum(lam**j for j in range(L)), rel=1e-12)


def test_theorem6_sum_form_is_attained_when_one_term_vanishes():
    assert theorem6_bound(2.0, 1.5, 0.0, 0.1, 3) == pytest.approx(theorem6_bound_sqrt(2.0, 1.5, 0.0, 0.1, 3))
    assert theorem6_bound(2.0, 1.5, 0.1, 0.0, 3) == pytest.approx(2.0 * 2 * 0.1)


def test_theorem6_matches_the_papers_closed_form_away_from_lam_one():
    mu, lam, eps, delta, L = 1.2, 0.8, 0.03, 0.01, 7
    paper = mu * ((L - 1) * eps + delta * (lam**L - 1) / (lam - 1))
    assert theorem6_bound(mu, lam, eps, delta, L) == pytest.approx(paper, rel=1e-13)
    proof = mu * np.sqrt(((L - 1) * eps) ** 2 + (delta * (lam**L - 1) / (lam - 1)) ** 2)
    assert theorem6_bound_sqrt(mu, lam, eps, delta, L) == pytest.approx(proof, rel=1e-13)


def test_theorem6_at_lam_one_is_the_limit_L_delta():
    assert theorem6_bound(1.0, 1.0, 0.05, 0.01, 4) == pytest.approx(3 * 0.05 + 4 * 0.01, rel=1e-15)
    assert theorem6_bound_sqrt(1.0, 1.0, 0.0, 0.01, 4) == pytest.approx(0.04, rel=1e-15)


@pytest.mark.parametrize("L", [1, 2, 7, 40])
@pytest.mark.parametrize("gap", [0.0, 1e-15, -1e-15, 1e-12, -1e-9, 1e-6, 1e-3, -0.5, 1.0])
def test_geometric_sum_is_accurate_near_lam_one(L, gap):
    lam = 1.0 + gap
    exact = float(sum(Fraction(lam) ** j for j in range(L)))
    assert geometric_sum(lam, L) == pytest.approx(exact, rel=1e-13)


def test_naive_closed_form_loses_accuracy_near_lam_one():
    """Why geometric_sum exists: (lam^L - 1)/(lam - 1) cancels catastrophically near 1."""
    lam, L = 1.0000000014149912, 10
    exact = float(sum(Fraction(lam) ** j for j in range(L)))
    assert abs((lam**L - 1) / (lam - 1) - exact) / exact > 1e-9
    assert geometric_sum(lam, L) == pytest.approx(exact, rel=1e-14)
    with np.errstate(invalid="ignore"):
        assert np.isnan((np.float64(1.0) ** L - 1) / (np.float64(1.0) - 1))


def test_theorem6_is_vectorised_and_returns_floats_for_scalars():
    got = theorem6_bound(1.0, np.array([0.5, 1.0, 2.0]), 0.1, 0.1, np.array([[1], [3]]))
    assert got.shape == (2, 3)
    assert got[1, 1] == pytest.approx(2 * 0.1 + 3 * 0.1)
    assert got[1, 2] == pytest.approx(0.2 + 0.1 * 7)
    assert type(theorem6_bound(1, 1, 0.1, 0.1, 2)) is float


@pytest.mark.parametrize("call, match", [
    (lambda: theorem6_bound(-1.0, 1.0, 0.1, 0.1, 3), r"`mu` must be >= 0, got -1.0"),
    (lambda: theorem6_bound(1.0, -0.5, 0.1, 0.1, 3), r"`lam` must be >= 0, got -0.5"),
    (lambda: theorem6_bound(1.0, 1.0, -0.1, 0.1, 3), r"`eps` must be >= 0, got -0.1"),
    (lambda: theorem6_bound_sqrt(1.0, 1.0, 0.1, np.nan, 3), r"`delta` must be >= 0, got nan"),
    (lambda: theorem6_bound(1.0, 1.0, 0.1, 0.1, 0), r"`L` must be >= 1 and an integer, got 0.0"),
    (lambda: theorem6_bound(1.0, 1.0, 0.1, 0.1, 2.5), r"`L` must be >= 1 and an integer, got 2.5"),
    (lambda: theorem6_bound(1.0, 1.0, 0.1, 0.1, 3, entry=4), r"`entry` must be in \[0, L\]"),
    (lambda: geometric_sum(1.0, [2, 0]), r"`L` must be >= 1 and an integer, got 0.0"),
])
def test_invalid_arguments_raise_naming_argument_range_and_value(call, match):
    with pytest.raises(ValueError, match=match):
        call()
