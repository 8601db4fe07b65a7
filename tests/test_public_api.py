"""Every public name the package advertises resolves, and importing it stays cheap."""

import subprocess
import sys

import pytest

import skipit


def test_every_lazy_name_of_skipit_empirical_resolves():
    pytest.importorskip("torch")
    import skipit.empirical as empirical

    for name in empirical.__all__:
        assert getattr(empirical, name) is not None, name


def test_skipit_late_entry_and_early_exit_are_the_context_managers():
    pytest.importorskip("torch")
    from skipit.empirical import skipping

    assert skipit.late_entry is skipping.late_entry
    assert skipit.early_exit is skipping.early_exit


def test_unknown_attribute_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'nonexistent'"):
        skipit.nonexistent  # noqa: B018


def test_import_skipit_and_skipit_empirical_import_no_torch():
    code = "import skipit, skipit.empirical, sys; print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
