"""The command line prints a Python warning as one line (no source path, no code line)."""

import sys
import warnings

from skipit.cli import one_line_warnings


def test_a_warning_inside_a_command_prints_one_line_naming_the_command(capsys):
    saved = warnings.showwarning
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        with one_line_warnings("certify"):
            warnings.warn("examples with more prompt tokens than `max_batch_tokens` = 5 run alone", stacklevel=1)
    assert warnings.showwarning is saved
    err = capsys.readouterr().err
    assert err == "skipit certify: warning: examples with more prompt tokens than `max_batch_tokens` = 5 run alone\n"
    assert __file__ not in err and sys.prefix not in err
