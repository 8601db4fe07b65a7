"""Errors a user can act on."""


class SkipitError(Exception):
    """Printed by the CLI without a traceback (exit code 2): says what to do."""
