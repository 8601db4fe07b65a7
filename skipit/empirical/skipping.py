"""Late entry and early exit of vision tokens, as hooks (paper Sec. 4.2, Theorem 6).

Layers are numbered l = 1..N (hidden state 0 is the embedding output).

* **Late entry at L** (``late_entry``): the vision tokens do not pass through decoder
  layers 1..L-1; the text tokens do, attending to text only. At layer L the vision
  tokens enter with their embedding-layer representation (``variant="embedding"``, the
  paper's setting of Theorem 6) or with the layer-(L-1) representation of a full pass
  (``variant="oracle"``, an analysis tool that costs a full pass). L = 1 is the full model.
* **Early exit at L** (``early_exit``): the vision tokens pass through layers 1..L and
  are dropped from layers L+1..N, keys and values included; the text continues. L = N is
  the full model. The exited vision positions of the final hidden state hold their
  layer-L representation (only text positions are read by the answer).
* **Freeze at a set of layers** (``freeze``, after ShortV, Yuan et al. 2025): in each listed
  layer the vision tokens keep their input state (no query or output projection, no
  attention as queries, no MLP); the text tokens run the layer as usual and still attend
  to the vision tokens, whose keys and values that layer computes from the frozen states
  (input norm, key/value projections, their own rotary positions).

The skipped tokens really leave the computation: a decoder layer is called on the packed
sequence of the tokens it processes, so its projections, MLP and attention cost what the
shorter sequence costs (see ``skipit.empirical.flops``). No modeling code is copied:

* a forward pre-hook on the model reads ``input_ids`` (which positions are vision tokens);
* a forward pre-hook on the language model fixes ``position_ids`` and, after the first
  forward of a cache, the 4-D attention mask over the *full* sequence (the cache of
  different layers holds different numbers of tokens, so the model's own mask sizing,
  taken from layer 0 of the cache, would be wrong);
* a forward pre-hook on every decoder layer packs the tokens that layer processes
  (per example, in their original order, so causality and each token's original rotary
  position, including Qwen2.5-VL's 3-D positions, are kept), and gathers the rotary
  ``(cos, sin)``, the position ids and the attention mask (rows: the packed queries;
  columns: the tokens that layer's cache holds);
* at a frozen layer, the vision keys and values come from the layer's own attention module
  run on the vision states up to its cache update, with a zero-cost stand-in for the query
  projection; the text call's cache update then receives the keys and values of the
  whole chunk in the original token order (so the cache and the mask see a full layer);
* a forward hook on the last decoder layer scatters the packed stream back to the full
  sequence, so the final norm and the LM head see the usual shape.

Batches with padding (left or right) work: padding stays masked, and examples whose
packed lengths differ are padded inside the packed sequence (masked keys; those query
rows attend everywhere so nothing becomes NaN, and they are never scattered back).

With ``generate`` (``DynamicCache``; greedy, sampling or beam search): early exit stores
no vision keys/values in the cache of layers > L; late entry stores none in layers < L.
Every layer's cache is tracked by the original positions it holds, and the attention mask
of each decode step is gathered per layer. Beam search reorders the cache only among the
beams of one example, which share one token layout, so the tracking stays valid. A cache
filled under a skipping context must be used under the same context.

Skipping contexts do not nest: a second one opened on a model that already runs one
refuses (combine late entry, early exit and freeze in one ``skip(...)``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch

from skipit.empirical.hooks import Attributes, HookSet, check_layer, check_layers

if TYPE_CHECKING:
    from skipit.empirical.adapters.base import VLMAdapter

__all__ = ["late_entry", "early_exit", "freeze", "skip", "TokenSkipper", "resolve_adapter"]


def resolve_adapter(model: torch.nn.Module, adapter: VLMAdapter | None = None) -> VLMAdapter:
    """The family adapter of ``model`` (``skipit.empirical.adapters.get_adapter``)."""
    if adapter is not None:
        return adapter
    from skipit.empirical.adapters import get_adapter

    return get_adapter(model)


def _pack(keep):
    """Pack the True positions of ``keep`` [B, q] to the front, in order.

    Returns ``(idx [B, n], valid [B, n])`` with n the largest count; slots beyond an
    example's count hold (finite) positions that are not kept and are marked invalid.
    """
    counts = keep.sum(dim=1)
    n = int(counts.max()) if keep.numel() else 0
    order = torch.argsort((~keep).to(torch.int8), dim=1, stable=True)[:, :n]
    valid = torch.arange(n, device=keep.device)[None, :] < counts[:, None]
    return order, valid


@dataclass(eq=False)
class _Packing:
    idx: torch.Tensor | None   # [B, n] positions in the chunk, None = the whole chunk
    valid: torch.Tensor | None  # [B, n]
    key: tuple = ()

    @property
    def full(self):
        return self.idx is None


_FULL = _Packing(None, None, ("full",))


@dataclass
class _Step:
    """What one forward of the language model needs across its layer hooks."""

    vision: torch.Tensor          # [B, q] bool: vision positions of this chunk
    past: int                     # full-sequence length before this chunk
    q: int
    cache: object = None
    buf: torch.Tensor | None = None
    packing: _Packing = field(default_factory=lambda: _FULL)
    packings: dict = field(default_factory=dict)
    memo: dict = field(default_factory=dict)
    oracle: torch.Tensor | None = None


class _KeysCaptured(Exception):
    """Raised by ``_KeyCapture.update``: the attention module has computed its keys/values."""


class _KeyCapture:
    """A stand-in cache that records the keys and values an attention module stores, then
    stops the module before its attention and output projection run."""

    def update(self, key_states, value_states, layer_idx, *args, **kwargs):
        self.keys, self.values = key_states, value_states
        raise _KeysCaptured


class _NoQuery(torch.nn.Module):
    """Zero-cost stand-in for a query projection: zeros of the projection's output width."""

    def __init__(self, width):
        super().__init__()
        self.width = width

    def forward(self, x):
        return x.new_zeros(*x.shape[:-1], self.width)


def _merge(full, packed, packing):
    """Write ``packed`` [B, heads, n, e] at the chunk positions of ``packing`` in ``full``."""
    idx = packing.idx.to(full.device)[:, None, :, None].expand(-1, full.shape[1], -1, full.shape[-1])
    current = full.gather(2, idx)
    valid = packing.valid.to(full.device)[:, None, :, None]
    return full.scatter(2, idx, torch.where(valid, packed.to(full.device, full.dtype), current))


def _execution_device(module, default):
    """Where ``module`` computes: accelerate's execution device when a device map placed it
    (offloaded weights sit on ``meta`` until then), else its first parameter's device."""
    hook = getattr(module, "_hf_hook", None)
    for h in getattr(hook, "hooks", None) or ([hook] if hook is not None else []):
        device = getattr(h, "execution_device", None)
        if device is not None:
            return torch.device(f"cuda:{device}" if isinstance(device, int) else device)
    param = next(module.parameters(), None)
    return param.device if param is not None and param.device.type != "meta" else default


class _WithFrozenKeys:
    """The cache a frozen layer's text call sees: its update receives the text keys/values
    (packed) and stores those of the whole chunk, vision keys/values from the frozen states
    at their original positions, in the order of the chunk (as a full layer would)."""

    def __init__(self, inner, text, vision, keys, values, q):
        self.inner, self.text, self.vision = inner, text, vision
        self.keys, self.values, self.q = keys, values, q

    def update(self, key_states, value_states, layer_idx, *args, **kwargs):
        shape = key_states.shape[:2] + (self.q, key_states.shape[-1])
        k = _merge(_merge(key_states.new_zeros(shape), key_states, self.text), self.keys, self.vision)
        v = _merge(_merge(value_states.new_zeros(shape), value_states, self.text), self.values, self.vision)
        if self.inner is None:
            return k, v
        return self.inner.update(k, v, layer_idx, *args, **kwargs)

    def __getattr__(self, name):
        if self.inner is None:
            raise AttributeError(name)
        return getattr(self.inner, name)


class TokenSkipper(HookSet):
    """Context manager: decoder layer l (1-based) runs on the tokens ``keep(l, vision)`` selects.

    ``keep(layer, vision)`` gets the vision mask of the current forward's positions
    (BoolTensor[B, q]) and returns a bool [B, q] tensor (True = the layer processes the
    token) or None (all tokens). A token dropped at some layer and taken back later
    re-enters with the last representation it had (its embedding if it never ran);
    ``on_transition(layer, step, full_states)`` may replace those states where the token
    set changes. ``keys_only(layer, vision)`` (optional) returns the tokens (bool [B, q],
    disjoint from ``keep``'s, or None) that the layer does not process but whose keys and
    values, computed from their current states, its queries attend to (freeze).
    ``late_entry``, ``early_exit``, ``freeze`` and the baselines are built on it;
    ``layer_tokens`` maps each layer to the tokens it processed in the last forward.
    """

    oracle_layer: int  # set by late_entry(variant="oracle") only

    def __init__(self, model, keep, adapter=None, on_transition=None, keys_only=None):
        self.model = model
        self.adapter = resolve_adapter(model, adapter)
        self.keep = keep
        self.keys_only = keys_only
        self.on_transition = on_transition
        self.lm = self.adapter.language_model(model)
        self.layers = self.adapter.decoder_layers(model)
        self.num_layers = len(self.layers)
        self.config = model.config
        self._input_ids = None
        self._attention_mask2d = None
        self._step = None
        self._bypass = False
        self._caches = {}  # id(cache) -> {"full": int, "kv": {layer: (index, valid)}, "ref": cache}
        self.layer_tokens = {}  # layer (1-based) -> tokens it processed in the last forward

    # -- hook management (the shared HookSet lifecycle) --------------------------------
    def _install(self):
        active = getattr(self.model, "_skipit_skipper", None)
        if active is not None:
            raise ValueError(
                f"skipping contexts do not nest: a {type(active).__name__} is already active on this model; "
                "combine late entry, early exit and freeze in one skipit.skip(model, late_entry=..., "
                "early_exit=..., freeze=[...])"
            )
        self.set_attribute(self.model, "_skipit_skipper", self)
        self.on_exit(self._release)
        self.forward_pre_hook(self.model, self._model_pre, with_kwargs=True)
        self.forward_pre_hook(self.lm, self._lm_pre, with_kwargs=True)
        self.forward_hook(self.lm, self._lm_post)
        for i, layer in enumerate(self.layers):
            self.forward_pre_hook(layer, self._make_layer_pre(i), with_kwargs=True)
        self.forward_hook(self.layers[-1], self._last_post)

    def _release(self):
        self._step = None

    # -- hooks -----------------------------------------------------------------------
    def _model_pre(self, module, args, kwargs):
        if self._bypass:
            return None
        input_ids = kwargs.get("input_ids", args[0] if args else None)
        if input_ids is None:
            raise ValueError(
                "skipping needs `input_ids` (to find the vision tokens); got `inputs_embeds` only"
            )
        self._input_ids = input_ids
        mask = kwargs.get("attention_mask")
        self._attention_mask2d = mask if isinstance(mask, torch.Tensor) and mask.ndim == 2 else None
        cache = kwargs.get("cache", kwargs.get("past_key_values"))
        state = self._caches.get(id(cache)) if cache is not None else None
        if mask is None and state is not None and state["full"] > 0:
            # Models that derive positions from the cache length (Qwen2.5-VL) read layer 0,
            # which may hold fewer tokens; an explicit all-ones mask makes them count the
            # full sequence instead.
            kwargs = dict(kwargs)
            kwargs["attention_mask"] = torch.ones(
                input_ids.shape[0], state["full"] + input_ids.shape[1],
                dtype=torch.long, device=input_ids.device,
            )
            self._attention_mask2d = kwargs["attention_mask"]
            return args, kwargs
        return None

    def _lm_pre(self, module, args, kwargs):
        if self._bypass:
            return None
        kwargs = dict(kwargs)
        embeds = kwargs.get("inputs_embeds")
        if embeds is None:
            ids = kwargs.get("input_ids", args[0] if args else None)
            embeds = module.get_input_embeddings()(ids)
            kwargs["inputs_embeds"] = embeds
            kwargs.pop("input_ids", None)
            args = ()
        bsz, q = embeds.shape[:2]
        input_ids = self._input_ids
        if input_ids is None or input_ids.shape[-1] != q:
            raise ValueError(
                f"the language model got {q} positions but the model call had input_ids of shape "
                f"{None if input_ids is None else tuple(input_ids.shape)}; skipping needs one "
                "input id per language-model position"
            )
        vision = self.adapter.vision_mask(input_ids, self.config).to(embeds.device).bool()

        cache_key = "cache" if "cache" in kwargs else ("past_key_values" if "past_key_values" in kwargs else "cache")
        cache = kwargs.get(cache_key)
        use_cache = kwargs.get("use_cache")
        if use_cache is None:
            use_cache = bool(getattr(module.config, "use_cache", False))
        if cache is None and use_cache:
            from transformers import DynamicCache

            cache = DynamicCache(config=module.config)
            kwargs[cache_key] = cache
        past = 0
        if cache is not None:
            state = self._caches.get(id(cache))
            if cache.get_seq_length() == 0 or state is None or state["ref"] is not cache:
                if cache.get_seq_length() != 0:
                    raise ValueError(
                        "a cache filled outside this skipping context cannot be continued under it"
                    )
                state = {"full": 0, "kv": {}, "ref": cache}
                self._caches = {id(cache): state}
            past = state["full"]

        if kwargs.get("position_ids") is None:
            kwargs["position_ids"] = (torch.arange(q, device=embeds.device) + past)[None, :]
        if past > 0:
            full2d = self._attention_mask2d
            if full2d is None or full2d.shape[-1] != past + q:
                full2d = torch.ones(bsz, past + q, dtype=torch.bool, device=embeds.device)
            keys_ok = full2d.to(embeds.device).bool()[:, None, None, :]
            causal = torch.arange(past + q, device=embeds.device)[None, :] <= (
                torch.arange(q, device=embeds.device)[:, None] + past
            )
            kwargs["attention_mask"] = keys_ok & causal[None, None]
        self._step = _Step(vision=vision, past=past, q=q, cache=cache)
        if getattr(self, "oracle_layer", None) and past == 0:
            self._step.oracle = self._oracle_states(module, args, kwargs)
        self.layer_tokens = {}
        return args, kwargs

    def _oracle_states(self, module, args, kwargs):
        """Output of layer ``oracle_layer - 1`` (1-based) in an unhooked full pass."""
        target = self.oracle_layer - 1
        if target < 1:
            return None
        captured = {}

        def grab(_m, _a, out):
            captured["h"] = out[0] if isinstance(out, tuple) else out

        kw = dict(kwargs)
        kw.pop("cache", None)
        kw.pop("past_key_values", None)
        kw["use_cache"] = False
        handle = self.layers[target - 1].register_forward_hook(grab)
        self._bypass = True
        try:
            with torch.no_grad():
                module(*args, **kw)
        finally:
            self._bypass = False
            handle.remove()
        return captured["h"]

    def _lm_post(self, module, args, output):
        if self._bypass or self._step is None:
            return None
        step = self._step
        if step.cache is not None:
            self._caches[id(step.cache)]["full"] = step.past + step.q
        self._step = None
        return None

    def _last_post(self, module, args, output):
        if self._bypass or self._step is None:
            return None
        step = self._step
        if step.packing.full:
            return None
        h = output[0] if isinstance(output, tuple) else output
        buf = self._scatter(step, h)
        step.packing = _FULL
        return (buf,) + tuple(output[1:]) if isinstance(output, tuple) else buf

    def _scatter(self, step, h):
        p = step.packing
        buf = step.buf.clone()
        # under a device map the layer's output may sit on another device than the stream
        idx = p.idx.to(buf.device)[..., None].expand(-1, -1, h.shape[-1])
        current = buf.gather(1, idx)
        valid = p.valid.to(buf.device)[..., None]
        buf.scatter_(1, idx, torch.where(valid, h.to(device=buf.device, dtype=buf.dtype), current))
        return buf

    def _packing_for(self, step, keep):
        if keep is None or bool(keep.all()):
            return _FULL
        # layers with the same token set share one packing (no re-gather between them)
        for seen, packing in step.packings.values():
            if seen is keep or torch.equal(seen, keep):
                return packing
        idx, valid = _pack(keep)
        packing = _Packing(idx, valid, ("pack", len(step.packings)))
        step.packings[len(step.packings)] = (keep, packing)
        return packing

    def _make_layer_pre(self, i):
        def hook(module, args, kwargs):
            if self._bypass or self._step is None:
                return None
            return self._layer_pre(i, args, kwargs)

        return hook

    def _layer_pre(self, i, args, kwargs):
        step = self._step
        layer = i + 1
        h = args[0] if args else kwargs["hidden_states"]
        if i == 0:
            step.buf = h
            step.packing = _FULL
        keep = self.keep(layer, step.vision)
        packing = self._packing_for(step, keep)
        if packing.key != step.packing.key:
            if not step.packing.full:
                step.buf = self._scatter(step, h)
            elif i > 0:
                step.buf = h
            if self.on_transition is not None:
                step.buf = self.on_transition(layer, step, step.buf)
            if packing.full:
                h = step.buf
            else:
                h = step.buf.gather(1, packing.idx.to(step.buf.device)[..., None].expand(-1, -1, step.buf.shape[-1]))
            step.packing = packing
        self.layer_tokens[layer] = (
            step.q * h.shape[0] if packing.full else int(packing.valid.sum())
        )
        frozen = self.keys_only(layer, step.vision) if self.keys_only is not None else None
        frozen = None if frozen is None or packing.full or not bool(frozen.any()) else frozen
        kwargs = dict(kwargs)
        if args:
            args = (h,) + tuple(args[1:])
        else:
            kwargs["hidden_states"] = h
        if frozen is not None:
            # computed from the full-sequence rotary / positions, before they are gathered
            keys, values, vision = self._frozen_keys(i, step, frozen, kwargs)
        kwargs.update(self._layer_kwargs(i, step, packing, kwargs, keys_full=frozen is not None))
        if frozen is not None:
            cache_key = "cache" if "cache" in kwargs else ("past_key_values" if "past_key_values" in kwargs else "cache")
            kwargs[cache_key] = _WithFrozenKeys(kwargs.get(cache_key), packing, vision, keys, values, step.q)
        return args, kwargs

    def _frozen_keys(self, i, step, frozen, kwargs):
        """Keys and values of the ``frozen`` tokens at layer i (0-based), from their current
        states in ``step.buf``: the layer's input norm, then its own attention module (key and
        value projections, key norm, rotary at their positions) up to its cache update."""
        vision = self._packing_for(step, frozen)
        layer = self.layers[i]
        attn = getattr(layer, "self_attn", None)
        norm = getattr(layer, "input_layernorm", None)
        if attn is None or norm is None or not hasattr(attn, "q_proj"):
            raise ValueError(
                f"freeze needs decoder layers with `input_layernorm` and `self_attn.q_proj`; "
                f"{type(layer).__name__} has not"
            )
        x = step.buf.gather(1, vision.idx.to(step.buf.device)[..., None].expand(-1, -1, step.buf.shape[-1]))
        # this runs before accelerate's hook of the layer moves its inputs: move them here
        device = _execution_device(layer, x.device)
        x = x.to(device)
        kw = {k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in kwargs.items()
              if k not in ("hidden_states", "attention_mask", "cache", "past_key_values", "position_embeddings",
                           "position_ids")}
        pe = kwargs.get("position_embeddings")
        if pe is not None:
            kw["position_embeddings"] = tuple(self._gather_seq(t, vision.idx.to(t.device)).to(device) for t in pe)
        pid = kwargs.get("position_ids")
        if isinstance(pid, torch.Tensor) and pid.shape[-1] == step.q:
            kw["position_ids"] = self._gather_pos(pid, vision.idx.to(pid.device)).to(device)
        capture = _KeyCapture()
        with Attributes((attn, "q_proj", _NoQuery(attn.q_proj.out_features))):
            try:
                attn(hidden_states=norm(x), attention_mask=None, cache=capture, **kw)
            except _KeysCaptured:
                pass
        if not hasattr(capture, "keys"):
            raise ValueError(f"freeze: the attention of decoder layer {i + 1} never updated its cache")
        return capture.keys, capture.values, vision

    # -- per-layer positions and masks ------------------------------------------------
    def _layer_kwargs(self, i, step, packing, kwargs, keys_full=False):
        """Rotary, positions and mask of the packed queries; ``keys_full``: the keys are the
        whole chunk (a frozen layer), not only the packed tokens."""
        out = {}
        if not packing.full:
            pe = kwargs.get("position_embeddings")
            if pe is not None:
                memo_key = ("pe", packing.key, id(pe[0]))
                if memo_key not in step.memo:
                    step.memo[memo_key] = tuple(self._gather_seq(t, packing.idx) for t in pe)
                out["position_embeddings"] = step.memo[memo_key]
            pid = kwargs.get("position_ids")
            if isinstance(pid, torch.Tensor) and pid.shape[-1] == step.q:
                memo_key = ("pid", packing.key, id(pid))
                if memo_key not in step.memo:
                    step.memo[memo_key] = self._gather_pos(pid, packing.idx)
                out["position_ids"] = step.memo[memo_key]

        # keys this layer attends to: its cached positions, then this chunk's packed ones
        device = step.vision.device
        bsz = step.vision.shape[0]
        if packing.full or keys_full:
            new_index = torch.arange(step.q, device=device)[None, :].expand(bsz, -1) + step.past
            new_valid = torch.ones(bsz, step.q, dtype=torch.bool, device=device)
        else:
            new_index, new_valid = packing.idx + step.past, packing.valid
        past_index = past_valid = None
        if step.cache is not None:
            kv = self._caches[id(step.cache)]["kv"]
            if step.past > 0:
                past_index, past_valid = kv[i]
            memo_key = ("kv", packing.key, keys_full, id(past_index))
            if memo_key not in step.memo:
                if past_index is None:
                    step.memo[memo_key] = (new_index, new_valid)
                else:
                    step.memo[memo_key] = (
                        torch.cat([past_index, new_index], dim=1),
                        torch.cat([past_valid, new_valid], dim=1),
                    )
            key_index, key_valid = step.memo[memo_key]
            kv[i] = (key_index, key_valid)
            window = self._sliding_window(step.cache, i)
            if window is not None:
                # the sliding cache keeps its last window-1 slots; in-window keys are among them
                kv[i] = (key_index[:, -(window - 1):], key_valid[:, -(window - 1):])
        else:
            key_index, key_valid = new_index, new_valid

        mask = kwargs.get("attention_mask")
        if isinstance(mask, dict):
            raise ValueError("a per-layer-type mask dict reached a decoder layer; unsupported family")
        simple = (
            mask is None and packing.full is False and bool(packing.valid.all()) and not keys_full
        ) or (mask is None and packing.full)
        if simple and step.past == 0:
            out["attention_mask"] = None
            return out
        window = self._sliding_window(step.cache, i) if step.past > 0 else None
        memo_key = ("mask", packing.key, keys_full, id(mask), id(key_index), window)
        if memo_key not in step.memo:
            step.memo[memo_key] = self._layer_mask(step, packing, mask, key_index, key_valid, window)
        out["attention_mask"] = step.memo[memo_key]
        return out

    @staticmethod
    def _gather_seq(t, idx):
        """Gather positions ``idx`` [B, n] along dim -2 of ``t`` [..., B|1, S, d]."""
        bsz, n = idx.shape
        shape = list(t.shape)
        shape[-3] = bsz
        t = t.expand(*shape)
        index = idx[..., None].expand(bsz, n, t.shape[-1])
        index = index.expand(*t.shape[:-3], bsz, n, t.shape[-1])
        return t.gather(-2, index)

    @staticmethod
    def _gather_pos(pid, idx):
        """Gather positions ``idx`` [B, n] along the last dim of ``pid`` [..., B|1, S]."""
        bsz, n = idx.shape
        shape = list(pid.shape)
        shape[-2] = bsz
        pid = pid.expand(*shape)
        return pid.gather(-1, idx.expand(*pid.shape[:-2], bsz, n))

    @staticmethod
    def _sliding_window(cache, i):
        layers = getattr(cache, "layers", None)
        if layers is None or i >= len(layers):
            return None
        layer = layers[i]
        if getattr(layer, "is_sliding", False) and not getattr(layer, "record_past", False):
            return int(layer.sliding_window)
        return None

    def _layer_mask(self, step, packing, mask, key_index, key_valid, window=None):
        bsz = step.vision.shape[0]
        device = step.vision.device
        total = step.past + step.q
        if mask is None:
            full = torch.arange(total, device=device)[None, :] <= (
                torch.arange(step.q, device=device)[:, None] + step.past
            )
            full = full[None, None].expand(bsz, 1, -1, -1)
            dtype = None
        else:
            dtype = mask.dtype
            full = mask if mask.dtype == torch.bool else mask == 0
            full = full.expand(bsz, full.shape[1], full.shape[2], full.shape[3])
        if not packing.full:
            rows = packing.idx[:, None, :, None].expand(-1, full.shape[1], -1, full.shape[-1])
            full = full.gather(2, rows)
        cols = key_index.clamp(max=full.shape[-1] - 1)[:, None, None, :].expand(
            -1, full.shape[1], full.shape[2], -1
        )
        m = full.gather(3, cols) & key_valid[:, None, None, :]
        if window is not None:
            # decode-step masks are built here over the full sequence without the window
            q_pos = step.past + (
                packing.idx if not packing.full
                else torch.arange(step.q, device=device)[None, :].expand(bsz, -1)
            )
            m = m & (key_index[:, None, None, :] > q_pos[:, None, :, None] - window)
        if not packing.full:
            m = m | ~packing.valid[:, None, :, None]
        impl = getattr(self.lm.config, "_attn_implementation", "sdpa")
        if impl == "eager" or (dtype is not None and dtype != torch.bool):
            fdtype = dtype if dtype is not None and dtype.is_floating_point else self.lm.dtype
            return torch.zeros(m.shape, dtype=fdtype, device=device).masked_fill(
                ~m, torch.finfo(fdtype).min
            )
        if m.shape[2] == 1 and bool(m.all()):
            return None
        return m


@contextlib.contextmanager
def late_entry(model: torch.nn.Module, layer: int, adapter: VLMAdapter | None = None,
               variant: str = "embedding") -> Iterator[TokenSkipper]:
    """Vision tokens skip decoder layers 1..layer-1 and enter at ``layer`` (Theorem 6 setting).

    ``variant="embedding"``: they enter with their embedding-layer representation (the
    paper's late entry); ``"oracle"``: with the layer-(layer-1) output of a full pass
    (costs an extra full pass per prefill; an upper reference, not a speed-up).
    ``layer=1`` is the full model. Yields the ``TokenSkipper`` (``.layer_tokens`` holds the
    tokens each layer processed in the last forward).
    """
    if variant not in ("embedding", "oracle"):
        raise ValueError(f"`variant` must be 'embedding' or 'oracle', got {variant!r}")
    ad = resolve_adapter(model, adapter)
    layer = check_layer("layer", layer, 1, ad.num_layers(model))

    def keep(l, vision):
        return ~vision if l < layer else None

    skipper = TokenSkipper(model, keep, ad)
    if variant == "oracle":
        skipper.oracle_layer = layer

        def swap(l, step, buf):
            if l == layer and step.oracle is not None:
                return torch.where(step.vision.to(buf.device)[..., None], step.oracle.to(buf.device, buf.dtype), buf)
            return buf

        skipper.on_transition = swap
    with skipper:
        yield skipper


@contextlib.contextmanager
def early_exit(model: torch.nn.Module, layer: int, adapter: VLMAdapter | None = None) -> Iterator[TokenSkipper]:
    """Vision tokens run through decoder layers 1..layer and leave layers layer+1..N.

    Their keys and values are absent from those layers (also from their cache in
    ``generate``). ``layer=N`` is the full model. Yields the ``TokenSkipper``.
    """
    ad = resolve_adapter(model, adapter)
    layer = check_layer("layer", layer, 1, ad.num_layers(model))

    def keep(l, vision):
        return ~vision if l > layer else None

    with TokenSkipper(model, keep, ad) as skipper:
        yield skipper


@contextlib.contextmanager
def skip(model: torch.nn.Module, late_entry: int | None = None, early_exit: int | None = None,
         freeze: Iterable[int] = (), adapter: VLMAdapter | None = None) -> Iterator[TokenSkipper]:
    """Late entry at ``late_entry``, early exit at ``early_exit`` and freezing of the layers
    ``freeze``, together in one forward (one ``TokenSkipper``).

    The vision tokens are processed by layer l iff ``late_entry <= l <= early_exit`` and l is
    not frozen; at a frozen layer the text attends to their keys/values from their frozen
    states; outside [late_entry, early_exit] they are absent (keys and values included).
    Frozen layers must lie in that range (outside it the vision tokens are absent anyway).
    Defaults: late entry at 1 and early exit at N (the full model). Yields the skipper.
    """
    ad = resolve_adapter(model, adapter)
    n = ad.num_layers(model)
    enter = 1 if late_entry is None else check_layer("late_entry", late_entry, 1, n)
    leave = n if early_exit is None else check_layer("early_exit", early_exit, 1, n)
    if enter > leave:
        raise ValueError(f"`late_entry` must be <= `early_exit`, got late_entry={enter}, early_exit={leave}")
    frozen = set(check_layers(freeze, n, "freeze"))
    outside = sorted(l for l in frozen if not enter <= l <= leave)
    if outside:
        raise ValueError(
            f"`freeze` layers must lie in [late_entry, early_exit] = [{enter}, {leave}], got {outside}"
        )

    def keep(l, vision):
        return None if enter <= l <= leave and l not in frozen else ~vision

    def keys_only(l, vision):
        return vision if l in frozen else None

    with TokenSkipper(model, keep, ad, keys_only=keys_only if frozen else None) as skipper:
        yield skipper


@contextlib.contextmanager
def freeze(model: torch.nn.Module, layers: Iterable[int], adapter: VLMAdapter | None = None) -> Iterator[TokenSkipper]:
    """Freeze the vision tokens in decoder layers ``layers`` (1-based; after ShortV).

    In each listed layer the vision tokens' output is their input: no query or output
    projection, no attention as queries, no MLP for them. The text tokens run the layer as
    usual and attend to the vision tokens, whose keys and values the layer computes from
    the frozen states (input norm, key/value projections, rotary at their own positions);
    in ``generate`` those keys/values are in that layer's cache. ``layers=[]`` is the full
    model. Yields the ``TokenSkipper``.
    """
    with skip(model, freeze=layers, adapter=adapter) as skipper:
        yield skipper
