"""The ``skipit`` command line.

Thin on purpose: each subcommand lives in ``skipit/commands/<name>.py`` with two
functions, ``add_parser(subparsers)`` and ``run(args) -> int``. Only the module of the
chosen subcommand is imported, and torch only inside the subcommands that need it. The
options the model-running commands share come from one parent parser,
:func:`skipit.commands._common.model_options`.

Exit status (:data:`EXIT_STATUS`): 0 success; 1 the run failed (:class:`skipit.errors.RunError`
in one line, or an unexpected exception with its traceback); 2 a usage error: argparse's, or a
:class:`skipit.errors.SkipitError` saying which argument or input to change (one line, no
traceback); 130 interrupted.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import sys
import warnings
from collections.abc import Iterator, Sequence

from skipit import __version__
from skipit.commands._common import output_options
from skipit.empirical.settings import SettingError, flag_of
from skipit.errors import SkipitError

COMMANDS = {
    "certify": "measure a VLM's per-layer redundancy and visual attention on a data set and certify which "
               "layers the vision tokens may skip (late entry) or leave early (early exit); without "
               "--model: the bundled demo model",
    "evaluate": "accuracy of the full model against late entry / early exit at every layer of a grid; "
                "with --certificate, how often the certificate's verdicts were right",
    "skip": "run a model once with late entry or early exit of the vision tokens: accuracy and time "
            "against the full model",
    "data": "show what a data set or --task benchmark preset hands the model: the text, the templated prompt, "
            "the target(s) and the metric of each example (no model weights)",
    "bounds": "print every result of the paper with its hypotheses, its status (proven, corrected) and "
              "its value at example arguments; no torch needed",
}

EXIT_STATUS = {
    0: "success",
    1: "the run failed (one line, or a traceback for an unexpected error)",
    2: "usage error: an argument, or the data, model or --out it names, must change (one line)",
    130: "interrupted (Ctrl-C); `skipit certify` resumes when rerun",
}

EPILOG = ("start here:\n  skipit certify            the bundled demo model on its test questions (about 10 s)\n"
          "  skipit COMMAND --help     the options of one command\n\nexit status:\n"
          + "\n".join(f"  {code:<4} {meaning}" for code, meaning in EXIT_STATUS.items()))


def _build_parser(argv: Sequence[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="skipit", epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Certify which layers of a vision-language model the vision tokens may skip, with\n"
                    "the bounds of the paper 'Skip-It?' (theory: skipit.theory; measurement: skipit.empirical).")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    wanted = next((a for a in argv if a in COMMANDS), None)
    for name, help_text in COMMANDS.items():
        if name == wanted:
            module = importlib.import_module(f"skipit.commands.{name}")
            module.add_parser(sub)
        else:
            sub.add_parser(name, help=help_text, add_help=False)
    return parser


@contextlib.contextmanager
def one_line_warnings(command: str) -> Iterator[None]:
    """Inside the block, a Python warning prints as one line, ``skipit COMMAND: warning: MESSAGE``,
    without the source path and code line of Python's default format (restored after). Only the
    format changes: which warnings show, and where (a caller recording them), does not."""
    def one_line(message, category, filename, lineno, line=None):
        return f"skipit {command}: warning: {message}\n"

    saved = warnings.formatwarning
    warnings.formatwarning = one_line
    try:
        yield
    finally:
        warnings.formatwarning = saved


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``skipit`` on ``argv`` (default: ``sys.argv[1:]``) and return the exit status.

    argparse's own errors, ``--help`` and ``--version`` raise :class:`SystemExit` (2, 0, 0)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = _build_parser(argv)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        print("\nskipit: error: a COMMAND is required", file=sys.stderr)
        return 2
    module = importlib.import_module(f"skipit.commands.{args.command}")
    try:
        with output_options(args), one_line_warnings(args.command):
            return int(module.run(args) or 0)
    except SettingError as err:  # a library parameter, printed as its flag
        print(f"skipit {args.command}: error: {err.render(flag_of)}", file=sys.stderr)
        return err.exit_code
    except SkipitError as err:
        print(f"skipit {args.command}: error: {err}", file=sys.stderr)
        return err.exit_code
    except BrokenPipeError:  # `skipit bounds | head`: the reader left; not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        print(f"skipit {args.command}: interrupted", file=sys.stderr)
        return 130
