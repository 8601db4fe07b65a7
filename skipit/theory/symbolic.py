"""The sympy form of every bound, gathered from the modules that define them.

Each theory module keeps its expressions next to its numeric functions in a dict
``SYMBOLIC = {name: sympy.Expr}`` (the numeric function is lambdified from it or
tested against it). ``EXPRESSIONS`` merges them; ``expr(name)`` returns one.

Every form lambdifies, ``sp.lambdify(args, expr(name), "numpy")`` with ``args`` the module's
``ARGUMENTS[name]``, and evaluates to its numeric function at the ends of its arguments' ranges
and inside, for Python numbers, numpy scalars and arrays
(``tests/theory/test_symbolic_lambdify.py``). numpy's ``select`` evaluates every branch of a
Piecewise, so no branch divides by a Python zero where it is not taken; the cap measure enters
as :class:`skipit.theory.spherical.LogCapFraction`, which lambdifies to ``log_cap_fraction``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import sympy as sp

_MODULES = ("lemmas", "functional", "late_entry", "spherical", "informational", "entropy", "pid")


def _collect():
    out = {}
    for m in _MODULES:
        mod = importlib.import_module(f"skipit.theory.{m}")
        out.update(getattr(mod, "SYMBOLIC", {}))
    return out


EXPRESSIONS = _collect()


def expr(name: str) -> sp.Expr:
    """The sympy expression of bound ``name`` (e.g. ``"theorem1_bound"``)."""
    try:
        return EXPRESSIONS[name]
    except KeyError:
        raise KeyError(f"no symbolic form named {name!r}; known: {sorted(EXPRESSIONS)}") from None
