"""One lifecycle for every temporary change skipit makes to a model, and the layer-range check.

:class:`HookSet` is the base of every hook user (the attention probe, the skippers, the
capture engine, the Lipschitz recorders): a context manager on one
:class:`contextlib.ExitStack` that registers forward and forward-pre hooks (with or
without keyword arguments), temporary attribute values, nested context managers and
clean-up callbacks, and undoes all of them, last first, when the ``with`` block ends,
*also* when the forward inside it raises, and also when registering fails half-way. It is
not re-entrant: entering an active set raises ``RuntimeError``; once exited it may be
entered again.

Attributes go through it too: :class:`Attributes` (a module swapped for another, the
config's ``_attn_implementation``, parameters' ``requires_grad``, the skipper's mark on
the model) and :class:`LeftPadding` (the tokenizer's ``padding_side`` while generating).

>>> class Recorder(HookSet):
...     def _install(self):
...         self.forward_hook(layer, lambda module, args, output: seen.append(output))
>>> with Recorder():
...     model(**batch)
"""

from __future__ import annotations

import contextlib
import numbers
from typing import Any, Callable

__all__ = ["HookSet", "Attributes", "LeftPadding", "check_layer", "check_layers"]

_ABSENT = object()


def check_layer(name: str, value: Any, low: int, high: int) -> int:
    """Return ``value`` if it is an integer in ``[low, high]``, else raise ``ValueError`` (one line).

    Layers are 1-based (decoder layer 1..N). Any integral type (``int``, numpy integers) is
    accepted and returned as ``int``; booleans and floats are refused. The message names
    the argument, the range and the value: ``"`layer` must be an integer in [1, 4], got 7"``.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or not low <= value <= high:
        raise ValueError(f"`{name}` must be an integer in [{low}, {high}], got {value!r}")
    return int(value)


def check_layers(layers: Any, num_layers: int, name: str = "layers") -> list[int]:
    """Distinct 1-based layers from a list/tuple/set of integers in [1, num_layers], sorted (as :func:`check_layer`
    for one layer: any integral type, booleans refused).

    One-line errors name the argument, the allowed range and the value received.
    """
    if isinstance(layers, (str, bytes)) or not hasattr(layers, "__iter__"):
        raise ValueError(f"`{name}` must be a list of integers in [1, {num_layers}], got {layers!r}")
    layers = list(layers)
    for layer in layers:
        if isinstance(layer, bool) or not isinstance(layer, numbers.Integral) or not 1 <= layer <= num_layers:
            raise ValueError(f"`{name}` must be integers in [1, {num_layers}], got {layer!r} in {layers!r}")
    if len(set(layers)) != len(layers):
        raise ValueError(f"`{name}` must not repeat a layer, got {layers!r}")
    return sorted(int(layer) for layer in layers)


class HookSet:
    """Base context manager: hooks registered in :meth:`_install` are removed on exit, always.

    Subclasses override :meth:`_install` and call, inside it (or later, while active),
    :meth:`forward_hook`, :meth:`forward_pre_hook`, :meth:`enter` and :meth:`on_exit`.
    Everything registered is undone in reverse order when the ``with`` block ends, when it
    raises, or when :meth:`_install` itself raises; ``ExitStack`` runs every undo step
    even if an earlier one raises. ``active`` tells whether the set is installed.
    """

    _stack: contextlib.ExitStack | None = None

    @property
    def active(self) -> bool:
        return self._stack is not None

    def _install(self) -> None:
        """Register the hooks (override)."""

    def __enter__(self):
        if self._stack is not None:
            raise RuntimeError(f"{type(self).__name__} is already active; it is not re-entrant")
        self._stack = contextlib.ExitStack()
        try:
            self._install()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc_info) -> bool:
        self.close()
        return False

    def close(self) -> None:
        """Undo everything registered (last first); a no-op when not active."""
        stack, self._stack = self._stack, None
        if stack is not None:
            stack.close()

    def _require_active(self) -> contextlib.ExitStack:
        if self._stack is None:
            raise RuntimeError(f"{type(self).__name__}: hooks can only be added while it is active (inside `with`)")
        return self._stack

    def forward_hook(self, module, hook: Callable, *, with_kwargs: bool = False, prepend: bool = False):
        """``module.register_forward_hook(hook, ...)``, removed on exit; returns the handle."""
        stack = self._require_active()
        handle = module.register_forward_hook(hook, with_kwargs=with_kwargs, prepend=prepend)
        stack.callback(handle.remove)
        return handle

    def forward_pre_hook(self, module, hook: Callable, *, with_kwargs: bool = False, prepend: bool = False):
        """``module.register_forward_pre_hook(hook, ...)``, removed on exit; returns the handle."""
        stack = self._require_active()
        handle = module.register_forward_pre_hook(hook, with_kwargs=with_kwargs, prepend=prepend)
        stack.callback(handle.remove)
        return handle

    def enter(self, context):
        """Enter the context manager ``context`` (another hook set, a probe); exited on exit."""
        return self._require_active().enter_context(context)

    def on_exit(self, function: Callable, *args, **kwargs) -> None:
        """Call ``function(*args, **kwargs)`` on exit (state clean-up)."""
        self._require_active().callback(function, *args, **kwargs)

    def set_attribute(self, obj: Any, name: str, value: Any) -> None:
        """``obj.<name> = value`` until exit, then the old value back (deleted if ``obj`` had none)."""
        stack = self._require_active()
        old = getattr(obj, name, _ABSENT)
        setattr(obj, name, value)
        if old is _ABSENT:
            stack.callback(delattr, obj, name)
        else:
            stack.callback(setattr, obj, name, old)


class Attributes(HookSet):
    """``with Attributes((obj, name, value), ...)``: each ``obj.<name> = value`` inside the block.

    Set in the order given and restored last first on exit (also when the block raises), so
    the object is as before: the same value (the same module object for a swapped submodule,
    in the same place of its parent's ``_modules``), or no attribute where there was none.
    """

    def __init__(self, *changes: tuple[Any, str, Any]):
        self.changes = changes

    def _install(self) -> None:
        for obj, name, value in self.changes:
            self.set_attribute(obj, name, value)


class LeftPadding(HookSet):
    """``with LeftPadding(processor) as tokenizer``: the processor's tokenizer pads on the left.

    Generation appends new tokens after every prompt's last token, so prompts are padded on
    the left while generating. ``tokenizer`` is ``processor.tokenizer`` (or ``processor``
    itself when it has none); its ``padding_side`` is restored on exit. A tokenizer without
    ``padding_side`` is left as it is.
    """

    def __init__(self, processor: Any):
        self.tokenizer = getattr(processor, "tokenizer", processor)

    def _install(self) -> None:
        if getattr(self.tokenizer, "padding_side", None) is not None:
            self.set_attribute(self.tokenizer, "padding_side", "left")

    def __enter__(self) -> Any:
        super().__enter__()
        return self.tokenizer
