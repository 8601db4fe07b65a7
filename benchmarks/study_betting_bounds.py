"""Width and coverage of the certificate's betting bounds against the bounds they replaced.

For units on ``[0, 2]`` (per-image mean cosine distances) at the certificate's level per
test ``a = 0.05 / 3``, prints for several numbers of units ``n``:

* the mean excess ``bound - sample mean`` of the betting upper bound
  (:func:`skipit.theory.betting_upper_bound`), of Maurer-Pontil / Hoeffding
  (:func:`skipit.theory.mean_upper_bound`, the old bound, at the old Bonferroni level
  ``0.05 / 36`` and at ``a``) and of the normal approximation (not valid in finite samples);
* the floor ``2 log(1/a) / n`` that no valid bound escapes;
* the coverage of the betting bound over ``--repeats`` samples, with its Clopper-Pearson
  lower bound at 0.999, and the coverage of the normal approximation (nominal ``1 - a``).

Laws (exact finite support, so the mean is exact): ``demo`` (distances near 0.03 with a
0.2% chance of 2, the shape of the demo model's vision layers) and ``heavy`` (90% at 0,
8% at 0.05, 2% at 2). Not a test.

    .venv/bin/python benchmarks/study_betting_bounds.py
    .venv/bin/python benchmarks/study_betting_bounds.py --repeats 20000 --units 64 128 256 512 1024
"""

from __future__ import annotations

import argparse

import numpy as np

from skipit.theory import betting_upper_bound, clopper_pearson_lower, mean_upper_bound

LAWS = {
    "demo": (np.array([0.01, 0.02, 0.03, 0.04, 0.06, 2.0]), np.array([0.15, 0.25, 0.3, 0.2, 0.098, 0.002])),
    "heavy": (np.array([0.0, 0.05, 2.0]), np.array([0.9, 0.08, 0.02])),
}
LEVEL = 0.05 / 3
OLD_LEVEL = 0.05 / 36


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2000, help="samples per law and n (default 2000)")
    parser.add_argument("--units", type=int, nargs="+", default=[64, 128, 256, 512], help="numbers of units")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    print(f"level per test a = {LEVEL:.4g}; old Bonferroni level {OLD_LEVEL:.4g}; {args.repeats} samples each")
    print(f"{'law':>6} {'n':>5} | {'betting':>8} {'MP old':>8} {'MP at a':>8} {'normal':>8} {'floor':>8} | "
          f"{'coverage':>8} {'CP lower':>8} {'normal':>8}")
    for name, (support, p) in LAWS.items():
        mean = float(support @ p)
        for n in args.units:
            x = rng.choice(support, size=(args.repeats, n), p=p)
            m, v = x.mean(-1), x.var(-1, ddof=1)
            betting = betting_upper_bound(x, LEVEL, 0.0, 2.0)
            old = mean_upper_bound(m, v, n, OLD_LEVEL, 2.0)
            mp = mean_upper_bound(m, v, n, LEVEL, 2.0)
            normal = m + 2.128 * np.sqrt(v / n)  # z at 1 - a
            covered = int(np.sum(mean <= betting))
            print(f"{name:>6} {n:>5} | {np.mean(betting - m):8.4f} {np.mean(old - m):8.4f} {np.mean(mp - m):8.4f} "
                  f"{np.mean(normal - m):8.4f} {2 * np.log(1 / LEVEL) / n:8.4f} | {covered / args.repeats:8.4f} "
                  f"{clopper_pearson_lower(covered, args.repeats, 0.001):8.4f} {np.mean(mean <= normal):8.4f}")


if __name__ == "__main__":
    main()
