"""Theorem 6 quantities measured on a model (skipit.empirical.lipschitz)."""

from __future__ import annotations

import math

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


def test_theorem6_eps_are_the_vision_steps_of_output_hidden_states():
    """eps_l = ||V_l - V_(l-1)||_F over the vision positions, with V_l the model's own
    ``output_hidden_states[l]`` (l = 1..N-1; entry N is taken after the final norm there)."""
    model = tiny_model("llava", seed=0, num_layers=N)
    example = _one_example(model, seed=2)
    out = theorem6_measurements(model, example, layers=[2], iters=1)
    with torch.no_grad():
        states = model(**example, output_hidden_states=True).hidden_states
    vision = get_adapter(model).vision_mask(example["input_ids"], model.config)[0]
    text = ~vision
    for l in range(1, N):
        step = states[l][0] - states[l - 1][0]
        assert out["eps"][l - 1] == pytest.approx(float(step[vision].norm()), rel=1e-5)
        # the text step and the all-position step differ: a swap of the token group is caught
        assert abs(float(step[text].norm()) - out["eps"][l - 1]) > 1e-3 * out["eps"][l - 1]


def _hook_count(model):
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


def test_recorder_hooks_and_grad_flags_are_restored_when_a_forward_raises():
    model = tiny_model("llava", seed=0, num_layers=N)
    example = _one_example(model)
    layer3 = get_adapter(model).decoder_layers(model)[2]
    calls = []

    def fail(module, args, output):
        calls.append(1)
        if len(calls) == 2:  # the second forward: the text-only recording under a TokenSkipper
            raise RuntimeError("layer 3 failed")

    with torch.no_grad():
        model(**example)  # transformers installs its own output-capturing hooks on a first forward
    handle = layer3.register_forward_hook(fail)
    before = _hook_count(model)
    try:
        with pytest.raises(RuntimeError, match="layer 3 failed"):
            theorem6_measurements(model, example, iters=1)
    finally:
        handle.remove()
    assert _hook_count(model) == before - 1
    assert all(p.requires_grad for p in model.parameters())


def test_theorem6_table_takes_one_median_the_mean_of_the_middle_two_for_an_even_count():
    """Every column of the table is the same median: for 4 examples, the mean of the two middle
    values (an upper or lower median for the looseness would differ)."""
    def row(measured, bound_sqrt):
        return {"layer": 2, "eps": measured, "delta": measured, "lam": measured, "mu": measured,
                "measured": measured, "bound": bound_sqrt, "bound_sqrt": bound_sqrt}

    per_example = [{"rows": [row(1.0, b)]} for b in (1.0, 2.0, 4.0, 8.0)]
    (t,) = theorem6_table(per_example)
    assert t["examples"] == 4 and t["measured"] == 1.0
    assert t["bound_sqrt"] == 3.0 and t["looseness_median"] == 3.0
    (t,) = theorem6_table([{"rows": [row(0.0, 1.0)]}])
    assert math.isnan(t["looseness_median"])  # no example with a measured error > 0
