"""`skipit evaluate` (not implemented yet)."""


def add_parser(subparsers):
    return subparsers.add_parser("evaluate", help="not implemented yet")


def run(args):
    from skipit.errors import SkipitError

    raise SkipitError("`skipit evaluate` is not implemented yet")
