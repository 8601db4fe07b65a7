"""Benchmark: skipit's BROJA solver against its dense Newton solve, dit's solvers and a plain SLSQP.

Part 1 (``--newton-sizes``): skipit's structured Newton step (a Schur complement the size
of the marginal constraints, ``broja``'s default) against the obvious dense
factorisation of the Hessian in the kernel coordinates (``broja(..., _dense_newton=True)``),
each with 1 and with 2 BLAS threads (threadpoolctl), on the same Dirichlet(1) pmfs, in
one run. The structured solve limits BLAS to one thread itself (its dense systems are
small), so its two columns differ only by noise; the dense solve uses what it is given.
The dense solve is skipped above ``--dense-max-n`` (its cost grows as ~n^9).
Every time line is printed with the 1-minute load average (/proc/loadavg) beside it.

Part 2 (``--sizes``): skipit against dit's three solvers and SLSQP.

Same random pmfs p[target, s1, s2] (Dirichlet(1), fixed seeds) for every solver, alphabet
size n = |T| = |S1| = |S2| increasing. Reported per size: median wall time of one
Uni(T : S1 \\ S2) solve, the ratio to skipit's time, and each solver's error in bits
against skipit's value (which is certified: its duality gap is printed). skipit is
timed twice: at its default certified gap (1e-11 nats) and at a gap of 1e-7 nats, the
accuracy the other solvers reach at best, so the ratios compare equal accuracy.

dit is optional and lives in its own environment (it is not a skipit dependency):
    python3 -m venv /tmp/dit-venv && /tmp/dit-venv/bin/pip install dit ecos
It runs in a subprocess of that interpreter (``--dit-python``); without it only the
scipy baseline is compared.

    .venv/bin/python benchmarks/bench_pid.py [--newton-sizes 10 20] [--sizes 2 3 4 5 6 8] [--reps 3]
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # both sides single-threaded: a fair, quiet comparison
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from scipy.optimize import minimize  # noqa: E402

from threadpoolctl import threadpool_limits  # noqa: E402

from skipit.theory.entropy import conditional_entropy  # noqa: E402
from skipit.theory.pid import _problem, broja  # noqa: E402

DIT_SCRIPT = r"""
import json, sys, time, math, warnings, logging
warnings.filterwarnings("ignore"); logging.disable(logging.WARNING)
import numpy as np, dit
from dit.algorithms.broja_method import broja_solve_bivariate, ecos_available
pmfs = json.load(open(sys.argv[1]))
methods = [m for m in sys.argv[2].split(",") if m != "cone" or ecos_available()]
out = []
for p in pmfs:
    p = np.array(p)
    outcomes, probs = [], []
    for (x, y, z), v in np.ndenumerate(p):
        if v > 0:
            outcomes.append((y, z, x)); probs.append(float(v))
    d = dit.Distribution(outcomes, probs)
    row = {}
    for m in methods:
        t0 = time.perf_counter()
        try:
            u, _meta = broja_solve_bivariate(d, ((0,), (1,)), (2,), method=m, rng=np.random.default_rng(0))
            val = float(u[(0,)])
        except Exception as exc:
            val = float("nan")
        row[m] = (time.perf_counter() - t0, val)
    out.append(row)
json.dump(out, sys.stdout)
"""


def scipy_baseline(p):
    """Straightforward formulation: SLSQP on the kernel parametrisation, Q >= 0 as constraints."""
    cells, q0, g, s, yz, pxy, pxz, _a, _b = _problem(p)
    gd = g.toarray()
    if gd.shape[1] == 0:
        return 0.0
    sd = s.toarray()

    def f(theta):
        q = np.maximum(q0 + gd @ theta, 1e-300)
        qyz = sd @ q
        return float(np.sum(q * np.log(q)) - np.sum(qyz[qyz > 0] * np.log(qyz[qyz > 0])))

    def grad(theta):
        q = np.maximum(q0 + gd @ theta, 1e-300)
        return gd.T @ (np.log(q) - np.log((sd @ q)[yz]))

    res = minimize(f, np.zeros(gd.shape[1]), jac=grad, method="SLSQP",
                   constraints=[{"type": "ineq", "fun": lambda th: q0 + gd @ th, "jac": lambda th: gd}],
                   options={"maxiter": 1000, "ftol": 1e-12})
    h_x_z = conditional_entropy(p, 0, 2)
    return max(0.0, h_x_z + res.fun) / math.log(2)


def timed(fn, *args, **kw):
    t0 = time.perf_counter()
    v = fn(*args, **kw)
    return time.perf_counter() - t0, v


def load1():
    return float(Path("/proc/loadavg").read_text().split()[0])


def newton_table(sizes, reps, dense_max_n):
    """Structured vs dense Newton solve, 1 and 2 BLAS threads, same pmfs."""
    ln2 = math.log(2)
    print(f"# Newton step: structured (default) vs dense, median over {reps} Dirichlet(1) pmfs per size; "
          "times in s; load = 1-min load average after the runs\n")
    print(f"{'n':>3} {'cells':>6} {'struct@1':>9} {'struct@2':>9} {'dense@1':>9} {'dense@2':>9} "
          f"{'dense@2/struct':>14} {'max|dUni|':>9} {'gap(bits)':>9} {'steps':>6} {'load':>5}")
    for n in sizes:
        rng = np.random.default_rng(1000 + n)
        pmfs = [rng.dirichlet(np.ones(n**3)).reshape(n, n, n) for _ in range(reps)]
        runs = {}
        for label, dense, threads in [("struct@1", False, 1), ("struct@2", False, 2),
                                      ("dense@1", True, 1), ("dense@2", True, 2)]:
            if dense and n > dense_max_n:
                continue
            with threadpool_limits(limits=threads):
                runs[label] = [timed(broja, p, _dense_newton=dense) for p in pmfs]
        med = {k: float(np.median([t for t, _ in v])) for k, v in runs.items()}
        vals = {k: np.array([s.unique for _, s in v]) / ln2 for k, v in runs.items()}
        diff = max(float(np.max(np.abs(v - vals["struct@1"]))) for v in vals.values())
        gap = max(s.gap for v in runs.values() for _, s in v) / ln2
        steps = int(np.median([s.newton_steps for _, s in runs["struct@1"]]))
        cols = [f"{n:>3} {n**3:>6}"] + [f"{med[k]:9.3f}" if k in med else f"{'-':>9}"
                                        for k in ("struct@1", "struct@2", "dense@1", "dense@2")]
        ratio = f"{med['dense@2'] / med['struct@2']:14.1f}" if "dense@2" in med else f"{'-':>14}"
        print(" ".join(cols), ratio, f"{diff:9.1e} {gap:9.1e} {steps:6d} {load1():5.2f}", flush=True)
    print()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--newton-sizes", type=int, nargs="*", default=[10, 20],
                    help="sizes for the structured vs dense Newton table (none: skip it)")
    ap.add_argument("--dense-max-n", type=int, default=12, help="largest n for the dense Newton solve")
    ap.add_argument("--newton-reps", type=int, default=3, help="random pmfs per size in the Newton table")
    ap.add_argument("--sizes", type=int, nargs="*", default=[2, 3, 4, 5, 6, 8])
    ap.add_argument("--reps", type=int, default=3, help="random pmfs per size")
    ap.add_argument("--dit-python", default="/tmp/dit-venv/bin/python")
    ap.add_argument("--no-scipy", action="store_true")
    ap.add_argument("--dit-slow-max-n", type=int, default=6,
                    help="run dit's scipy and admui solvers only up to this size (minutes per pmf beyond)")
    args = ap.parse_args(argv)
    have_dit = Path(args.dit_python).exists()
    if args.newton_sizes:
        newton_table(args.newton_sizes, args.newton_reps, args.dense_max_n)
    if not args.sizes:
        return 0
    ln2 = math.log(2)
    print(f"# BROJA Uni(T : S1 \\ S2), median over {args.reps} Dirichlet(1) pmfs per size; times in s, "
          f"errors in bits vs skipit (certified)\n")
    header = (f"{'n':>3} {'skipit':>8} {'gap(bits)':>9} {'skipit@1e-7':>11} | "
              f"{'scipy':>8} {'x':>6} {'err':>8} | {'dit-scipy':>9} {'x':>6} {'err':>8} | "
              f"{'dit-admui':>9} {'x':>6} {'err':>8} | {'dit-cone':>8} {'x':>6} {'err':>8}")
    print(header)
    for n in args.sizes:
        rng = np.random.default_rng(1000 + n)
        pmfs = [rng.dirichlet(np.ones(n**3)).reshape(n, n, n) for _ in range(args.reps)]
        ours = [timed(broja, p) for p in pmfs]
        ours_loose = [timed(broja, p, gap_tol=1e-7) for p in pmfs]
        t_ours = float(np.median([t for t, _ in ours]))
        t_loose = float(np.median([t for t, _ in ours_loose]))
        vals = np.array([s.unique / ln2 for _, s in ours])
        gap = max(s.gap for _, s in ours) / ln2
        cols = [f"{n:>3} {t_ours:8.3f} {gap:9.1e} {t_loose:11.3f} |"]
        if args.no_scipy or n > args.dit_slow_max_n:
            cols.append(f"{'-':>8} {'-':>6} {'-':>8} |")
        else:
            sc = [timed(scipy_baseline, p) for p in pmfs]
            t_sc = float(np.median([t for t, _ in sc]))
            err = float(np.max(np.abs(np.array([v for _, v in sc]) - vals)))
            cols.append(f"{t_sc:8.3f} {t_sc / t_loose:6.1f} {err:8.1e} |")
        if have_dit:
            with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as fh:
                json.dump([p.tolist() for p in pmfs], fh)
            methods = "scipy,admui,cone" if n <= args.dit_slow_max_n else "cone"
            res = subprocess.run([args.dit_python, "-c", DIT_SCRIPT, fh.name, methods], capture_output=True, text=True,
                                 env={**os.environ}, check=True)
            os.unlink(fh.name)
            rows = json.loads(res.stdout)
            for m in ("scipy", "admui", "cone"):
                if m not in rows[0]:
                    cols.append(f"{'-':>9} {'-':>6} {'-':>8} |")
                    continue
                t_m = float(np.median([r[m][0] for r in rows]))
                err = float(np.nanmax(np.abs(np.array([r[m][1] for r in rows]) - vals)))
                cols.append(f"{t_m:9.3f} {t_m / t_loose:6.1f} {err:8.1e} |")
        print(" ".join(cols).rstrip(" |"), flush=True)
    print("\nx = solver time / skipit@1e-7 time (same pmfs, same run); err = max |Uni - skipit's Uni| in bits.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
