"""skipit: theoretical conditions for layer skipping in vision-language models.

``skipit.theory`` is pure maths (numpy, scipy, sympy) and never imports torch.
``skipit.empirical`` instruments Hugging Face ``transformers`` VLMs. Nothing heavy is
imported here: the skipping context managers are resolved lazily on first use.
"""

__version__ = "0.1.0"

_LAZY = {
    "late_entry": "skipit.empirical.skipping",
    "early_exit": "skipit.empirical.skipping",
}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'skipit' has no attribute {name!r}")


__all__ = ["__version__", *_LAZY]
