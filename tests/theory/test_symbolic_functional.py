"""Each functional-side bound agrees with a hand-written formula, as does its sympy form; with jax, grad of
the sympy form agrees with sympy.diff and with a finite difference of the public numeric function."""

import zlib

import numpy as np
import pytest
import sympy as sp

import skipit.theory as th
from skipit.theory import _registry, functional, late_entry, lemmas, symbolic

MODULES = (lemmas, functional, late_entry)
CASES = [(m, name) for m in MODULES for name in m.SYMBOLIC]
RANGES = {  # interior points of each argument's valid range
    "alpha": (0.0, 3.0), "beta": (0.0, 3.0), "eps": (0.01, 1.0), "t": (0.0, 0.9),
    "rho_max": (1.0, 3.0), "tail_prob": (0.0, 1.0), "eta_l": (0.01, 1.0), "eta_prev": (0.01, 1.0),
    "mu": (0.0, 3.0), "lam": (0.0, 2.0), "delta": (0.0, 1.0), "d_xz": (0.0, 3.0), "d_zy": (0.0, 3.0),
    "mean_rho": (0.0, 2.0), "a_sq": (0.01, 3.0), "b_sq": (0.01, 3.0), "c_sq": (0.01, 3.0),
}
INTEGERS = {"L": (1, 12), "entry": (0, 1)}
TOL = 1e-12
#: central difference step (relative) and tolerance: truncation O(h^2) ~ 1e-12, rounding ~ 1e-16/h ~ 1e-10
FD_STEP = 1e-6
FD_TOL = 1e-7


def _points(args, rng, size):
    out = {}
    for s in args:
        if s.name in INTEGERS:
            out[s.name] = rng.integers(INTEGERS[s.name][0], INTEGERS[s.name][1] + 1, size=size).astype(float)
        else:
            out[s.name] = rng.uniform(*RANGES[s.name], size=size)
    return out


def test_every_bound_has_a_symbolic_form_and_collected_by_symbolic():
    for module, name in CASES:
        assert callable(getattr(th, name))
        assert symbolic.expr(name) is module.SYMBOLIC[name]
        assert set(module.ARGUMENTS[name]) >= module.SYMBOLIC[name].free_symbols


def _geometric_sum(lam, L):
    """sum_{j < L} lam^j term by term (no closed form, so no 0/0 at lam = 1)."""
    return sum(lam**j for j in range(int(L)))


#: Each bound written out by hand from the paper / ERRATA.md, independently of the sympy forms
#: (from which the numeric functions are lambdified), so a wrong sympy expression fails.
REFERENCE = {
    "lemma1_bound": lambda d_xz, d_zy: 2 * d_xz**2 + 2 * d_zy**2,
    "lemma1_bound_sharp": lambda d_xz, d_zy: (d_xz + d_zy) ** 2,
    "lemma2_mean_squared_distance": lambda mean_rho: 2 * mean_rho,
    "lemma3_bound": lambda a_sq, b_sq, c_sq: 3 * (a_sq + b_sq + c_sq),
    "lemma3_bound_sharp": lambda a_sq, b_sq, c_sq: (np.sqrt(a_sq) + np.sqrt(b_sq) + np.sqrt(c_sq)) ** 2,
    "proposition1_tail_threshold": lambda t, eps: (eps - t) / (1 - t),
    "proposition1_tail_threshold_bounded": lambda t, eps, rho_max: (eps - t) / (rho_max - t),
    "proposition1_mean_bound": lambda t, tail_prob, rho_max: t + (rho_max - t) * tail_prob,
    "theorem1_bound": lambda alpha, beta, eps: 2 * (alpha**2 + beta**2) * eps,
    "theorem1_bound_sharp": lambda alpha, beta, eps: (alpha + beta) ** 2 * eps,
    "theorem2_bound": lambda alpha, beta, eps, eta_l, eta_prev: (3 * eta_l + 3 * eta_prev
                                                                 + 6 * (alpha**2 + beta**2) * eps),
    "theorem2_bound_sharp": lambda alpha, beta, eps, eta_l, eta_prev: (np.sqrt(eta_l) + np.sqrt(eta_prev)
                                                                       + (alpha + beta) * np.sqrt(eps)) ** 2,
    "theorem6_bound": lambda mu, lam, eps, delta, L, entry: mu * ((L - entry) * eps + delta * _geometric_sum(lam, L)),
    "theorem6_bound_sqrt": lambda mu, lam, eps, delta, L, entry: mu * np.sqrt(((L - entry) * eps) ** 2
                                                                           + (delta * _geometric_sum(lam, L)) ** 2),
}


def test_every_bound_has_a_hand_written_reference():
    assert set(REFERENCE) == {name for _, name in CASES}


@pytest.mark.parametrize("module, name", CASES, ids=[n for _, n in CASES])
def test_numeric_function_equals_its_hand_written_formula_at_random_points(module, name):
    args = module.ARGUMENTS[name]
    pts = _points(args, np.random.default_rng(zlib.crc32(name.encode())), 200)
    got = getattr(module, name)(**pts)
    want = np.array([REFERENCE[name](**{k: v[i] for k, v in pts.items()}) for i in range(200)])
    assert np.allclose(got, want, rtol=1e-11, atol=TOL)


@pytest.mark.parametrize("module, name", CASES, ids=[n for _, n in CASES])
def test_sympy_form_equals_its_hand_written_formula_at_random_points(module, name):
    args = module.ARGUMENTS[name]
    pts = _points(args, np.random.default_rng(zlib.crc32(name.encode()) + 1), 20)
    for i in range(20):
        point = {k: float(v[i]) for k, v in pts.items()}
        sym = float(module.SYMBOLIC[name].evalf(30, subs={s: point[s.name] for s in args}))
        assert sym == pytest.approx(REFERENCE[name](**point), rel=1e-11, abs=TOL), (name, point)


def test_theorem6_at_lam_one_equals_the_sympy_limit():
    expr = late_entry.SYMBOLIC["theorem6_bound"]
    lam = sp.Symbol("lam", nonnegative=True)
    limit = sp.limit(expr, lam, 1)
    values = {"mu": 1.3, "eps": 0.05, "delta": 0.02, "L": 5, "entry": 1}
    want = float(limit.subs({s: values[s.name] for s in limit.free_symbols}))
    assert th.theorem6_bound(lam=1.0, **values) == pytest.approx(want, rel=TOL)


@pytest.fixture
def jax64():
    """jax in float64 for this test only (other tests may rely on jax's float32 default)."""
    jax = pytest.importorskip("jax")
    before = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    yield jax
    jax.config.update("jax_enable_x64", before)


@pytest.mark.parametrize("module, name", CASES, ids=[n for _, n in CASES])
def test_jax_grad_equals_sympy_diff(module, name, jax64):
    jax = jax64
    args = module.ARGUMENTS[name]
    expr = module.SYMBOLIC[name]
    f = sp.lambdify(args, expr, "jax")
    point = {k: float(v[0]) for k, v in _points(args, np.random.default_rng(7), 1).items()}
    subs = {s: point[s.name] for s in args}
    for i, s in enumerate(args):
        if s.name in INTEGERS:
            continue
        grad = float(jax.grad(f, argnums=i)(*(point[a.name] for a in args)))
        want = float(sp.diff(expr, s).evalf(subs=subs))
        assert grad == pytest.approx(want, rel=1e-10, abs=1e-12), (name, s.name)
        # and against skipit's public numeric function, by a central difference
        h = FD_STEP * max(1.0, abs(point[s.name]))
        up, down = dict(point, **{s.name: point[s.name] + h}), dict(point, **{s.name: point[s.name] - h})
        fd = (getattr(module, name)(**up) - getattr(module, name)(**down)) / (2 * h)
        assert grad == pytest.approx(fd, rel=FD_TOL, abs=FD_TOL), (name, s.name, "finite difference")


def test_every_bound_is_registered_with_a_valid_status_and_a_finite_example():
    entries = {e.name: e for e in _registry.REGISTRY}
    for _, name in CASES:
        entry = entries[name]
        assert entry.status in _registry.STATUSES
        assert np.isfinite(getattr(th, name)(**entry.example))
