"""Vectorised bounds versus a Python loop of scalar calls, side by side in one run.

For each bound, draws ``--n`` valid argument sets (default 10^6), times one vectorised
call over all of them (best of ``--repeat``) and a Python loop of scalar calls over the
first ``--loop-n`` of them (default: all), checks both give the same values, and prints
the time per argument set and the speed-up ratio (target >= 50x). Not a test.

    .venv/bin/python benchmarks/bench_vectorised_bounds.py
    .venv/bin/python benchmarks/bench_vectorised_bounds.py --loop-n 100000   # quicker; loop time scaled
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import skipit.theory as th


def _arguments(name, n, rng):
    u = lambda lo, hi: rng.uniform(lo, hi, n)  # noqa: E731
    table = {
        "theorem1_bound": dict(alpha=u(0, 3), beta=u(0, 3), eps=u(1e-3, 1)),
        "theorem1_bound_sharp": dict(alpha=u(0, 3), beta=u(0, 3), eps=u(1e-3, 1)),
        "theorem2_bound": dict(alpha=u(0, 3), beta=u(0, 3), eps=u(1e-3, 1), eta_l=u(0, 1), eta_prev=u(0, 1)),
        "theorem2_bound_sharp": dict(alpha=u(0, 3), beta=u(0, 3), eps=u(1e-3, 1), eta_l=u(0, 1), eta_prev=u(0, 1)),
        "proposition1_tail_threshold": dict(t=u(0, 0.99), eps=u(1e-3, 1)),
        "theorem6_bound": dict(mu=u(0, 3), lam=u(0, 2), eps=u(0, 0.1), delta=u(0, 0.1),
                               L=rng.integers(1, 33, n).astype(float)),
        "theorem6_bound_sqrt": dict(mu=u(0, 3), lam=u(0, 2), eps=u(0, 0.1), delta=u(0, 0.1),
                                    L=rng.integers(1, 33, n).astype(float)),
    }
    return table[name]


def bench(name, n, loop_n, repeat, rng):
    fn = getattr(th, name)
    args = _arguments(name, n, rng)
    vec_times = []
    for _ in range(repeat):
        start = time.perf_counter()
        values = fn(**args)
        vec_times.append(time.perf_counter() - start)
    vec = min(vec_times)
    columns = [args[k][:loop_n].tolist() for k in args]  # Python floats: genuine scalar calls
    keys = list(args)
    start = time.perf_counter()
    looped = [fn(**dict(zip(keys, row))) for row in zip(*columns)]
    loop = (time.perf_counter() - start) * (n / loop_n)
    assert np.allclose(looped, values[:loop_n], rtol=1e-13, atol=0.0), name
    return vec, loop


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--loop-n", type=int, default=None, help="scalar calls actually made (default: all n)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--bounds", default="theorem1_bound,theorem2_bound_sharp,theorem6_bound")
    args = parser.parse_args(argv)
    loop_n = min(args.loop_n or args.n, args.n)
    rng = np.random.default_rng(0)
    print(f"{args.n} argument sets per bound; loop of {loop_n} scalar calls"
          f"{' (time scaled to n)' if loop_n < args.n else ''}")
    print(f"{'bound':28s} {'vectorised':>12s} {'python loop':>12s} {'ratio':>9s}")
    ratios = []
    for name in args.bounds.split(","):
        vec, loop = bench(name, args.n, loop_n, args.repeat, rng)
        ratios.append(loop / vec)
        print(f"{name:28s} {vec:11.3f}s {loop:11.2f}s {loop / vec:8.0f}x")
    print(f"smallest ratio: {min(ratios):.0f}x (target >= 50x)")
    return 0 if min(ratios) >= 50 else 1


if __name__ == "__main__":
    raise SystemExit(main())
