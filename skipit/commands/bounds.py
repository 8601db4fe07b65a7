"""``skipit bounds``: the theory report.

Prints every registered result of ``skipit.theory`` with its paper number, statement
(hypotheses and conclusion), status against the paper, erratum, and its value at
example arguments. Imports no torch.
"""

from __future__ import annotations

import json
import textwrap


def add_parser(subparsers):
    p = subparsers.add_parser("bounds", help="print every bound with its hypotheses and example values")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--name", default=None, help="only results whose name contains this text")
    return p


def _value(entry):
    import numpy as np

    import skipit.theory as th

    fn = getattr(th, entry.name, None)
    if fn is None or not entry.example:
        return None
    value = fn(**entry.example)
    if isinstance(value, tuple) and hasattr(value, "_asdict"):
        return {k: float(v) for k, v in value._asdict().items()}
    try:
        return float(np.asarray(value))
    except (TypeError, ValueError):
        return str(value)


def run(args):
    import skipit.theory as th

    entries = [e for e in th.REGISTRY if args.name is None or args.name in e.name]
    rows = []
    for e in entries:
        rows.append({
            "name": e.name, "paper": e.paper, "status": e.status, "statement": e.statement,
            "erratum": e.erratum, "example": e.example, "value": _value(e),
        })
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    wrap = lambda s: textwrap.fill(s, width=96, initial_indent="    ", subsequent_indent="    ")  # noqa: E731
    print(f"skipit theory report: {len(rows)} results (values at the example arguments)\n")
    for r in rows:
        print(f"{r['name']}  [{r['paper']}]  ({r['status']})")
        print(wrap(r["statement"]))
        if r["erratum"]:
            print(wrap("Erratum: " + r["erratum"]))
        if r["example"]:
            args_txt = ", ".join(f"{k}={v}" for k, v in r["example"].items())
            print(f"    example: {r['name']}({args_txt}) = {r['value']}")
        print()
    return 0
