"""Theorem 6 on a real model: its quantities measured, its bound beside the true error.

Late entry at layer L (``skipit.empirical.skipping.late_entry``, embedding variant) is
Theorem 6 (``skipit.theory.late_entry``) with ``L - 1`` text-only layers and the raw
vision input inserted (``entry = 0``): the text runs alone through layers 1..L-1, then
``phi`` = layers L..N gets ``(V_0, T~_{L-1})``. For one example (batch of one, vision
block ``V`` and text block ``T`` of the hidden states, Frobenius norms) we measure on the
full model's trajectory ``(V_l, T_l)``:

* ``eps_l = ||V_l - V_{l-1}||`` (l = 1..N); the theorem's eps for L is ``max_{l<L} eps_l``;
* ``delta_l = ||f_text^l(V_{l-1}, T_{l-1}) - f_text^l(0, T_{l-1})||``: text output of layer
  l with and without the vision tokens, on the true input ``T_{l-1}``; delta = ``max_{l<L}``;
* ``lam_l``: spectral norm of the Jacobian of ``T -> f_text^l(0, T)`` at ``T_{l-1}``;
  lambda = ``max_{2<=l<L}`` (the theorem needs it for l = 2..L only: the text error
  recursion ``E_l <= delta + lam E_{l-1}`` starts at ``E_0 = 0``);
* ``mu_L``: spectral norm of the Jacobian of ``phi`` (layers L..N, raw output of layer N)
  at the true ``(V_{L-1}, T_{L-1})``;
* the measured ``||Y_true - Y_skip||`` with Y the raw output of layer N (all positions).

Spectral norms come from power iteration on ``J^T J`` with ``torch.func.jvp`` and
``torch.func.vjp`` (``spectral_norm``). They are *local* Lipschitz constants at one point
of the trajectory, so lower estimates of the global constants the theorem assumes: the
bound computed from them is an estimate, and a "violation" (measured > bound) means the
local constants under-estimate the global ones along the path, not that the theorem is
false. The report says how often that happens and how loose the bound is otherwise.
"""

from __future__ import annotations

import contextlib
import math
import statistics

import torch

from skipit.empirical.hooks import Attributes, HookSet, check_layer
from skipit.empirical.skipping import TokenSkipper, late_entry, resolve_adapter

__all__ = ["spectral_norm", "theorem6_measurements", "theorem6_table"]


def spectral_norm(fn, x, iters=20, seed=0):
    """Largest singular value of the Jacobian of ``fn`` at ``x`` (power iteration on J^T J).

    Each iteration is one ``torch.func.jvp`` (J v) and one vector-Jacobian product
    (J^T J v). Returns ``||J v||`` for the last unit ``v``: a lower estimate that increases
    to sigma_max (exact for a rank-one or well-separated top singular value).
    """
    if iters < 1:
        raise ValueError(f"`iters` must be >= 1, got {iters}")
    gen = torch.Generator(device="cpu").manual_seed(seed)
    v = torch.randn(x.shape, generator=gen, dtype=x.dtype).to(x.device)
    v = v / v.norm()
    _, vjp_fn = torch.func.vjp(fn, x)
    sigma = 0.0
    for _ in range(iters):
        _, jv = torch.func.jvp(fn, (x,), (v,))
        sigma = float(jv.norm())
        (jtjv,) = vjp_fn(jv)
        norm = jtjv.norm()
        if float(norm) == 0.0:
            return 0.0
        v = jtjv / norm
    return sigma


class _LayerRecorder(HookSet):
    """Records what decoder layers receive (hidden input, keyword arguments) and return.

    ``inputs[i] = (hidden, kwargs)`` and ``outputs[i] = hidden`` for 0-based layer ``i`` of
    ``layers`` (all of them, or those in ``only``); the kwargs are made reusable for a
    standalone call (no cache). Hooks follow :class:`~skipit.empirical.hooks.HookSet`.
    """

    def __init__(self, layers, only=None):
        self.layers = list(layers)
        self.only = None if only is None else set(only)
        self.inputs, self.outputs = {}, {}

    def _install(self):
        for i, layer in enumerate(self.layers):
            if self.only is None or i in self.only:
                self.forward_pre_hook(layer, self._pre(i), with_kwargs=True)
                self.forward_hook(layer, self._post(i))

    def _pre(self, i):
        def hook(module, args, kwargs):
            h = args[0] if args else kwargs["hidden_states"]
            kw = {k: v for k, v in kwargs.items() if k != "hidden_states"}
            kw["cache"] = None
            kw.pop("past_key_values", None)
            kw["use_cache"] = False
            self.inputs[i] = (h.detach(), kw)
        return hook

    def _post(self, i):
        def hook(module, args, output):
            self.outputs[i] = (output[0] if isinstance(output, tuple) else output).detach()
        return hook


def _record_layer_inputs(model, inputs, adapter, keep=None):
    """(hidden input, kwargs) each decoder layer receives in one forward (optionally skipped), and outputs."""
    recorder = _LayerRecorder(adapter.decoder_layers(model))
    with contextlib.ExitStack() as stack:
        if keep is not None:  # entered first: the recorder then sees the packed tokens the layer gets
            stack.enter_context(TokenSkipper(model, keep, adapter))
        stack.enter_context(recorder)
        with torch.no_grad():
            model(**inputs, use_cache=False)
    return recorder.inputs, recorder.outputs


def _call(layer, h, kw):
    out = layer(h, **kw)
    return out[0] if isinstance(out, tuple) else out


def _additive(kw, seq, dtype):
    """kwargs with the attention mask as an additive float mask (what eager attention adds)."""
    mask = kw.get("attention_mask")
    if mask is None:
        allowed = torch.ones(seq, seq, dtype=torch.bool).tril()[None, None]
    elif mask.dtype == torch.bool:
        allowed = mask
    else:
        return kw
    additive = torch.zeros(allowed.shape, dtype=dtype).masked_fill(~allowed.cpu(), torch.finfo(dtype).min)
    return dict(kw, attention_mask=additive.to(allowed.device))


def theorem6_measurements(model, inputs, layers=None, adapter=None, iters=10):
    """Theorem 6's quantities and the measured error for one example (batch of one).

    ``layers``: the late-entry layers L to evaluate (default 2..N). Returns a dict with
    per-layer lists ``eps``, ``delta``, ``lam`` (index l-1 for layer l) and ``rows``: for
    each L, ``{"layer", "eps", "delta", "lam", "mu", "measured", "bound", "bound_sqrt"}``
    with the theory bounds of ``skipit.theory.theorem6_bound`` (sum form) and
    ``theorem6_bound_sqrt`` at ``L - 1`` text-only layers and ``entry = 0``.
    """
    # Jacobians w.r.t. the hidden states only: no graph through the weights
    with Attributes(*((p, "requires_grad", False) for p in model.parameters() if p.requires_grad)):
        return _theorem6_measurements(model, inputs, layers, adapter, iters)


def _theorem6_measurements(model, inputs, layers, adapter, iters):
    from skipit.theory import theorem6_bound, theorem6_bound_sqrt

    ad = resolve_adapter(model, adapter)
    if inputs["input_ids"].shape[0] != 1:
        raise ValueError(f"`inputs` must hold one example, got a batch of {inputs['input_ids'].shape[0]}")
    n = ad.num_layers(model)
    layers = list(range(2, n + 1)) if layers is None else [check_layer("layers", l, 1, n) for l in layers]
    vision = ad.vision_mask(inputs["input_ids"], model.config)[0]
    if not bool(vision.any()):
        raise ValueError("the example has no vision tokens")
    dec = ad.decoder_layers(model)
    # the decoder's attention through the eager path (sdpa on CPU has no forward-mode AD)
    eager = Attributes((ad.self_attention(dec[0]).config, "_attn_implementation", "eager"))
    full_in, full_out = _record_layer_inputs(model, inputs, ad)
    text_in, _ = _record_layer_inputs(model, inputs, ad, keep=lambda l, v: ~v)

    states = [full_in[0][0][0]] + [full_out[i][0] for i in range(n)]  # hidden state l, [S, D]
    eps = [float((states[l][vision] - states[l - 1][vision]).norm()) for l in range(1, n + 1)]
    delta, lam = [], []
    for i in range(n):
        kw = text_in[i][1]
        t_prev = states[i][~vision][None]
        with torch.no_grad():
            alone = _call(dec[i], t_prev, kw)[0]
        delta.append(float((states[i + 1][~vision] - alone).norm()))
        kw_eager = _additive(kw, t_prev.shape[1], t_prev.dtype)
        with eager:
            lam.append(spectral_norm(lambda t, i=i, kw=kw_eager: _call(dec[i], t, kw), t_prev, iters=iters))

    y_true = states[n]
    rows = []
    for L in layers:
        last = _LayerRecorder(dec, only=[n - 1])
        with torch.no_grad(), late_entry(model, layer=L, adapter=ad), last:
            model(**inputs, use_cache=False)
        measured = float((last.outputs[n - 1][0] - y_true).norm())
        if L == 1:
            rows.append({"layer": 1, "eps": 0.0, "delta": 0.0, "lam": 0.0, "mu": float("nan"),
                         "measured": measured, "bound": 0.0, "bound_sqrt": 0.0})
            continue
        seq = states[0].shape[0]
        kws = [_additive(full_in[i][1], seq, y_true.dtype) for i in range(L - 1, n)]

        def tail(h, kws=kws, start=L - 1):
            for j, kw in enumerate(kws):
                h = _call(dec[start + j], h, kw)
            return h

        with eager:
            mu = spectral_norm(tail, states[L - 1][None], iters=iters)
        # the recursion E_l <= delta + lam E_{l-1} starts from E_0 = 0: layer 1's constant is not used
        e, d, lm = max(eps[: L - 1]), max(delta[: L - 1]), max(lam[1: L - 1], default=0.0)
        rows.append({
            "layer": L, "eps": e, "delta": d, "lam": lm, "mu": mu, "measured": measured,
            "bound": float(theorem6_bound(mu, lm, e, d, L - 1, entry=0)),
            "bound_sqrt": float(theorem6_bound_sqrt(mu, lm, e, d, L - 1, entry=0)),
        })
    return {"eps": eps, "delta": delta, "lam": lam, "rows": rows}


def _median(values):
    """The median of ``values``: the middle one, the mean of the two middle ones for an even
    count (``statistics.median``); nan for none."""
    values = list(values)
    return statistics.median(values) if values else math.nan


def theorem6_table(per_example):
    """Aggregate ``theorem6_measurements`` of several examples, per layer L.

    For each L: the median measured error, the median bound (sum and sqrt forms), the
    median looseness ``bound / measured`` (over the examples with a measured error > 0; nan
    if none), and the number of examples where the measured error exceeds the sqrt bound
    (``violations``; see the module docstring). Every median is :func:`_median`'s.
    """
    by_layer = {}
    for m in per_example:
        for row in m["rows"]:
            by_layer.setdefault(row["layer"], []).append(row)
    table = []
    for L in sorted(by_layer):
        rows = by_layer[L]

        def med(key, rows=rows):
            return _median(r[key] for r in rows)

        loose = [r["bound_sqrt"] / r["measured"] for r in rows if r["measured"] > 0]
        table.append({
            "layer": L, "examples": len(rows),
            "eps": med("eps"), "delta": med("delta"), "lam": med("lam"), "mu": med("mu"),
            "measured": med("measured"), "bound": med("bound"), "bound_sqrt": med("bound_sqrt"),
            "looseness_median": _median(loose),
            "violations": sum(r["measured"] > r["bound_sqrt"] * (1 + 1e-9) + 1e-6 for r in rows),
            "violations_sum_form": sum(r["measured"] > r["bound"] * (1 + 1e-9) + 1e-6 for r in rows),
        })
    return table
