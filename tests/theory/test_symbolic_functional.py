"""Each functional-side bound agrees with its sympy form; with jax, grad agrees with sympy.diff."""

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


@pytest.mark.parametrize("module, name", CASES, ids=[n for _, n in CASES])
def test_numeric_function_equals_its_sympy_form_at_random_points(module, name):
    args = module.ARGUMENTS[name]
    pts = _points(args, np.random.default_rng(zlib.crc32(name.encode())), 200)
    reference = sp.lambdify(args, module.SYMBOLIC[name], "numpy")(*(pts[s.name] for s in args))
    got = getattr(module, name)(**pts)
    assert np.allclose(got, reference, rtol=TOL, atol=TOL)


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


def test_every_bound_is_registered_with_a_valid_status_and_a_finite_example():
    entries = {e.name: e for e in _registry.REGISTRY}
    for _, name in CASES:
        entry = entries[name]
        assert entry.status in _registry.STATUSES
        assert np.isfinite(getattr(th, name)(**entry.example))
