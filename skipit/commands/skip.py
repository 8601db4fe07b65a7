"""`skipit skip` (not implemented yet)."""


def add_parser(subparsers):
    return subparsers.add_parser("skip", help="not implemented yet")


def run(args):
    from skipit.errors import SkipitError

    raise SkipitError("`skipit skip` is not implemented yet")
