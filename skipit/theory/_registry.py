"""Registry of the bounds shown by ``skipit bounds`` (the theory report).

Each theory module calls :func:`register` at import time for each public bound, so
the report is assembled from the modules themselves and never drifts from them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

STATUSES = ("as stated", "corrected", "false as stated", "sharper than the paper", "definition")


@dataclass(frozen=True)
class BoundEntry:
    name: str          # public name in skipit.theory
    paper: str         # e.g. "Theorem 1 (Sec. 3.2, proof App. A.2)"
    statement: str     # hypotheses => conclusion, one or two lines, plain text
    example: dict = field(default_factory=dict)  # keyword arguments for an example value
    status: str = "as stated"  # one of STATUSES
    erratum: str = ""  # short note where the paper is wrong or loose


REGISTRY: list[BoundEntry] = []


def register(name, paper, statement, example=None, status="as stated", erratum=""):
    if status not in STATUSES:
        raise ValueError(f"`status` must be one of {STATUSES}, got {status!r}")
    entry = BoundEntry(name, paper, statement, dict(example or {}), status, erratum)
    if all(e.name != name for e in REGISTRY):
        REGISTRY.append(entry)
    return entry
