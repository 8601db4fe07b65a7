"""`skipit certify` (not implemented yet)."""


def add_parser(subparsers):
    return subparsers.add_parser("certify", help="not implemented yet")


def run(args):
    from skipit.errors import SkipitError

    raise SkipitError("`skipit certify` is not implemented yet")
