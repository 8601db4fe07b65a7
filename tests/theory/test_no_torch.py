"""`import skipit.theory` (and the CLI's theory report) must not drag in torch or transformers."""

import subprocess
import sys

FORBIDDEN = ("torch", "transformers")


def _imported_after(code):
    probe = code + "\nimport sys\nprint('MODULES:' + ','.join(m for m in sys.modules if m.split('.')[0] in %r))" % (FORBIDDEN,)
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    last = out.stdout.strip().splitlines()[-1]
    assert last.startswith("MODULES:"), out.stdout
    return [m for m in last[len("MODULES:"):].split(",") if m]


def test_import_theory_imports_neither_torch_nor_transformers():
    assert _imported_after("import skipit.theory, skipit.theory.symbolic") == []


def test_cli_bounds_report_imports_neither_torch_nor_transformers():
    assert _imported_after("from skipit.cli import main; main(['bounds'])") == []


def test_probe_detects_torch_when_it_is_imported():
    """The probe itself can fail: importing torch must be seen."""
    assert "torch" in _imported_after("import torch")
