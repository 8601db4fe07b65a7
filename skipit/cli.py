"""The ``skipit`` command line.

Thin on purpose: each subcommand lives in ``skipit/commands/<name>.py`` with two
functions, ``add_parser(subparsers)`` and ``run(args) -> int``. Only the module of the
chosen subcommand is imported, and torch only inside the subcommands that need it.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from skipit.errors import SkipitError

COMMANDS = {
    "bounds": "print every bound of the paper with its hypotheses and example values",
    "certify": "measure a VLM's per-layer statistics and certify skippable layers",
    "skip": "run a model with late entry or early exit of vision tokens",
    "evaluate": "accuracy of full versus skipped models; validates a certificate",
}


def _build_parser(argv):
    parser = argparse.ArgumentParser(prog="skipit", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    wanted = next((a for a in argv if a in COMMANDS), None)
    for name, help_text in COMMANDS.items():
        if name == wanted:
            module = importlib.import_module(f"skipit.commands.{name}")
            module.add_parser(sub)
        else:
            sub.add_parser(name, help=help_text, add_help=False)
    return parser


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = _build_parser(argv)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    module = importlib.import_module(f"skipit.commands.{args.command}")
    try:
        return int(module.run(args) or 0)
    except SkipitError as err:
        print(f"skipit {args.command}: error: {err}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `skipit bounds | head`: the reader left; not an error
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        print(f"skipit {args.command}: interrupted", file=sys.stderr)
        return 130
