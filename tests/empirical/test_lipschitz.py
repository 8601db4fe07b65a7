"""Theorem 6 quantities measured on a model (skipit.empirical.lipschitz)."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from skipit.empirical.adapters import get_adapter  # noqa: E402
from skipit.empirical.lipschitz import spectral_norm, theorem6_measurements, theorem6_table  # noqa: E402
from skipit.empirical.testing import collate, tiny_examples, tiny_model  # noqa: E402

N = 4


def test_spectral_norm_of_a_linear_map_is_its_largest_singular_value():
    """J = A for x -> A x; A = U diag(s) V^T with known s: power iteration returns max(s)."""
    gen = torch.Generator().manual_seed(0)
    u, _ = torch.linalg.qr(torch.randn(6, 6, generator=gen, dtype=torch.float64))
    v, _ = torch.linalg.qr(torch.randn(5, 5, generator=gen, dtype=torch.float64))
    s = torch.tensor([3.0, 1.0, 0.5, 0.25, 0.1], dtype=torch.float64)
    a = u[:, :5] @ torch.diag(s) @ v.T
    x = torch.randn(5, dtype=torch.float64, generator=gen)
    assert spectral_norm(lambda t: a @ t, x, iters=60) == pytest.approx(3.0, rel=1e-9)


def test_spectral_norm_rejects_zero_iterations():
    with pytest.raises(ValueError, match="`iters` must be >= 1"):
        spectral_norm(lambda t: t, torch.ones(2), iters=0)


def _one_example(model, seed=0):
    return dict(collate(model, tiny_examples(model, 1, seed=seed)))


def test_identity_layers_give_exact_theorem6_quantities():
    """All layers exact identities: eps = delta = 0, every Jacobian is I (lam = mu = 1),
    late entry changes nothing (measured 0) and the bound is exactly 0."""
    model = tiny_model("llava", seed=0, num_layers=N)
    with torch.no_grad():
        for layer in get_adapter(model).decoder_layers(model):
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
    out = theorem6_measurements(model, _one_example(model), iters=3)
    assert out["eps"] == [0.0] * N and out["delta"] == [0.0] * N
    assert out["lam"] == pytest.approx([1.0] * N, abs=1e-5)
    for row in out["rows"]:
        assert row["lam"] == (0.0 if row["layer"] == 2 else pytest.approx(1.0, abs=1e-5))
        assert row["mu"] == pytest.approx(1.0, abs=1e-5)
        assert row["measured"] == 0.0 and row["bound"] == 0.0 and row["bound_sqrt"] == 0.0


def test_theorem6_bound_holds_and_is_reported_per_layer():
    """On a random tiny LLaVA the measured error stays under the sqrt bound (estimated with
    local Lipschitz constants) at every L; eps/delta are maxima over the layers < L, lam over the layers 2..L-1."""
    model = tiny_model("llava", seed=0, num_layers=N)
    out = theorem6_measurements(model, _one_example(model, seed=1), iters=6)
    layers = [r["layer"] for r in out["rows"]]
    assert layers == [2, 3, 4]
    for row in out["rows"]:
        L = row["layer"]
        assert row["eps"] == max(out["eps"][: L - 1]) and row["delta"] == max(out["delta"][: L - 1])
        assert row["lam"] == max(out["lam"][1: L - 1], default=0.0)  # layer 1's constant is never used
        assert 0 < row["measured"] <= row["bound_sqrt"] <= row["bound"]
    table = theorem6_table([out])
    assert [t["violations"] for t in table] == [0, 0, 0]
    assert all(t["looseness_median"] >= 1 for t in table)


def test_theorem6_needs_one_example():
    model = tiny_model("llava", seed=0, num_layers=N)
    batch = dict(collate(model, tiny_examples(model, 2)))
    with pytest.raises(ValueError, match="`inputs` must hold one example, got a batch of 2"):
        theorem6_measurements(model, batch)
