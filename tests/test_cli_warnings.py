"""The command line prints a Python warning as one line (no source path, no code line)."""

import subprocess
import sys
import warnings

from skipit.cli import one_line_warnings

MESSAGE = "examples with more prompt tokens than `max_batch_tokens` = 5 run alone"


def test_a_warning_inside_a_command_prints_one_line_naming_the_command():
    code = ("import warnings\nfrom skipit.cli import one_line_warnings\n"
            "with one_line_warnings('certify'):\n"
            f"    warnings.warn({MESSAGE!r})\n"
            "warnings.warn('after the command', stacklevel=1)\n")
    err = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stderr
    first, *rest = err.splitlines()
    assert first == f"skipit certify: warning: {MESSAGE}"
    assert rest and "UserWarning: after the command" in rest[0]  # Python's format is back after the block


def test_a_caller_recording_warnings_still_records_them():
    saved = warnings.formatwarning
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with one_line_warnings("skip"):
            warnings.warn("recorded", stacklevel=1)
    assert [str(w.message) for w in caught] == ["recorded"] and warnings.formatwarning is saved
