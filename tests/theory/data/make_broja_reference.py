"""Generate ``broja_reference.json``: dit's BROJA unique information on 148 pmfs.

The pmfs are dit's 27 bivariate example distributions (``dit.pid.distributions.bivariates``,
the ones dit's own PID tests use) and 121 random pmfs p[target, s1, s2]: 120 with
alphabet sizes 2-5 and at most 100 cells (Dirichlet(1) or Dirichlet(0.3), a third of
them with cells set to 0 so that structural zeros occur; seed 2026) and one 5x5x4
Dirichlet(1) (seed 54). For each pmf it stores dit's Uni(target : s1 \\ s2)
in bits from ``broja_solve_bivariate`` with the ECOS cone solver (``cone``), and with
dit's default method choice (``auto``, its scipy solver here: seconds to minutes per pmf)
for the pmfs with at most AUTO_MAX_CELLS cells and the 5x5x4 one (else null).
dit is not a skipit dependency; run once, in a
separate environment:
    python3 -m venv /tmp/dit-venv && /tmp/dit-venv/bin/pip install dit ecos
    /tmp/dit-venv/bin/python tests/theory/data/make_broja_reference.py
(dit 2.3, a few minutes). ``tests/theory/test_pid.py`` only reads the JSON.
"""

import json
import logging
import time
import warnings
from pathlib import Path

import dit
import numpy as np
from dit.algorithms.broja_method import broja_solve_bivariate
from dit.pid.distributions import bivariates

warnings.filterwarnings("ignore")
logging.disable(logging.WARNING)
N_RANDOM = 120
MAX_CELLS = 100  # dit's default method is its scipy solver below 125 cells (admui, minutes, above)
AUTO_MAX_CELLS = 24


def as_array(d):
    """dit distribution over (s1, s2, t) -> p[t, s1, s2]."""
    alph = [sorted(a) for a in d.alphabet]
    p = np.zeros((len(alph[2]), len(alph[0]), len(alph[1])))
    for outcome, prob in d.zipped():
        s1, s2, t = (alph[i].index(outcome[i]) for i in range(3))
        p[t, s1, s2] += prob
    return p


def as_dit(p):
    outcomes, probs = [], []
    for (x, y, z), v in np.ndenumerate(p):
        if v > 0:
            outcomes.append((y, z, x))
            probs.append(float(v))
    return dit.Distribution(outcomes, probs)


def dit_unique(p, method):
    u, _meta = broja_solve_bivariate(as_dit(p), ((0,), (1,)), (2,), method=method, rng=np.random.default_rng(0))
    return float(u[(0,)])


def main():
    pmfs = [(f"dit:{name}", as_array(d)) for name, d in bivariates.items()]
    rng = np.random.default_rng(2026)
    for i in range(N_RANDOM):
        shape = tuple(int(k) for k in rng.integers(2, 6, size=3))
        while np.prod(shape) > MAX_CELLS:
            shape = tuple(int(k) for k in rng.integers(2, 6, size=3))
        alpha = 1.0 if i % 2 == 0 else 0.3
        p = rng.dirichlet(np.full(int(np.prod(shape)), alpha)).reshape(shape)
        if i % 3 == 2:
            p[rng.random(shape) < 0.3] = 0.0
            p /= p.sum()
        pmfs.append((f"random:{i}:{'x'.join(map(str, shape))}:alpha={alpha}", p))
    pmfs.append(("random:5x5x4", np.random.default_rng(54).dirichlet(np.ones(100)).reshape(5, 5, 4)))
    rows = []
    for name, p in pmfs:
        t0 = time.perf_counter()
        cone = dit_unique(p, "cone")
        t1 = time.perf_counter()
        auto = dit_unique(p, "auto") if p.size <= AUTO_MAX_CELLS or name == "random:5x5x4" else None
        rows.append({"name": name, "p": p.tolist(), "dit_auto": auto, "dit_cone": cone})
        print(name, auto, cone, f"cone {t1 - t0:.1f}s auto {time.perf_counter() - t1:.1f}s", flush=True)
    out = {"source": f"dit {dit.__version__}, broja_solve_bivariate, Uni(target : s1 \\ s2) in bits", "rows": rows}
    (Path(__file__).parent / "broja_reference.json").write_text(json.dumps(out))


if __name__ == "__main__":
    main()
