"""Every module of ``skipit.theory`` is reachable under its own name, and the public API stays flat."""

import importlib
import pkgutil
import types

import skipit.theory as th

SUBMODULES = sorted(m.name for m in pkgutil.iter_modules(th.__path__) if not m.name.startswith("_"))


def test_import_submodule_as_name_gives_the_module():
    """``import skipit.theory.X as m`` binds ``getattr(skipit.theory, "X")``: it must be the module."""
    import skipit.theory.entropy as m_entropy
    import skipit.theory.pid as m_pid
    import skipit.theory.redundancy as m_redundancy

    for m, name in ((m_redundancy, "redundancy"), (m_pid, "pid"), (m_entropy, "entropy")):
        assert isinstance(m, types.ModuleType) and m.__name__ == f"skipit.theory.{name}"
    for name in SUBMODULES:
        importlib.import_module(f"skipit.theory.{name}")
        assert getattr(th, name) is importlib.import_module(f"skipit.theory.{name}"), name


def test_no_exported_name_shadows_a_submodule():
    """The class of the bug, not only its instance: no ``__all__`` of any submodule uses a module name."""
    for name in SUBMODULES:
        exported = set(getattr(importlib.import_module(f"skipit.theory.{name}"), "__all__", ()))
        assert not exported & set(SUBMODULES), (name, exported & set(SUBMODULES))


def test_renamed_exports_are_the_functions_and_the_flat_api_still_works():
    from skipit.theory.entropy import entropy
    from skipit.theory.pid import GATES, pid, redundancy

    p_and = GATES["AND"][0]
    assert th.pid_decomposition is pid and th.pid_redundancy is redundancy and th.shannon_entropy is entropy
    assert th.pid_decomposition(p_and).synergy == pid(p_and).synergy
    assert th.theorem1_bound(1.0, 0.5, 0.1) == 2 * (1.0 + 0.25) * 0.1
    assert abs(th.shannon_entropy([0.5, 0.5], base=2) - 1.0) < 1e-15
