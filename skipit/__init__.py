"""skipit: theoretical conditions for layer skipping in vision-language models.

``skipit.theory`` is pure maths (numpy, scipy, sympy) and never imports torch.
``skipit.empirical`` instruments Hugging Face ``transformers`` VLMs. Nothing heavy is
imported here: the skipping context managers are resolved lazily on first use.
"""

from importlib import metadata as _metadata
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # type checkers see the real signatures; at run time they load lazily (no torch here)
    from skipit.empirical.skipping import early_exit, freeze, late_entry, skip

try:
    __version__: str = _metadata.version("skipit")  # pyproject.toml's `version`, the one source of truth
except _metadata.PackageNotFoundError:  # a source tree on sys.path that was never installed
    __version__ = "0+unknown"

_LAZY = {
    "late_entry": "skipit.empirical.skipping",
    "early_exit": "skipit.empirical.skipping",
    "freeze": "skipit.empirical.skipping",
    "skip": "skipit.empirical.skipping",
}


def __getattr__(name: str) -> object:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'skipit' has no attribute {name!r}")


__all__ = ["__version__", *_LAZY]
