"""Errors a user can act on."""


class SkipitError(Exception):
    """Printed by the CLI without a traceback: says what to do. Exit code 2 (a usage error in the
    wide sense): the arguments or the inputs they name (data, model, --out) must change."""

    exit_code = 2


class RunError(SkipitError):
    """A run that failed although the command was right (for example another run holds the
    lock on --out): printed without a traceback, exit code 1."""

    exit_code = 1
