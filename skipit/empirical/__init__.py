"""skipit.empirical: torch + transformers. Activations in, certified layers out.

Public names are resolved lazily so that ``import skipit.empirical`` stays cheap.
"""
