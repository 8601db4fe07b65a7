"""Generate ``cap_reference.json``: mpmath values of log F(t, d), the normalised cap measure.

F(t, d) = sigma({x' on S^{d-1}: 1 - <x, x'> <= t}) / sigma(S^{d-1})
        = I_{t(2-t)}((d-1)/2, 1/2) / 2          (t <= 1)
        = 1 - I_{t(2-t)}((d-1)/2, 1/2) / 2      (t > 1)
computed with 60 significant digits (mpmath keeps arbitrary exponents, so no
underflow). Where ``mpmath.betainc`` gives up (its hypergeometric evaluation fails to
converge for some d >= 1e5 with x near 0.9-0.99), the value comes from the positive
series I_x(a, b) = x^a (1-x)^b / (a B(a, b)) sum_n prod_{k<n} x (a+b+k)/(a+1+k)
(Abramowitz & Stegun 26.5.23 with 15.1.1), summed until a term is below 1e-70 of the
total: every term is positive, so nothing cancels. Run once (about a minute):
.venv/bin/python tests/theory/data/make_cap_reference.py
The test ``tests/theory/test_spherical.py`` only reads the JSON.
"""

import json
from pathlib import Path

import mpmath as mp

mp.mp.dps = 60
DIMS = [2, 3, 4, 5, 10, 32, 257, 1024, 4096, 5120, 8192, 100_000, 1_000_000]
TS = ["1e-6", "1e-4", "0.01", "0.1", "0.3", "0.5", "0.9", "0.999", "1", "1.001",
      "1.1", "1.3", "1.5", "1.9", "1.99"]


def _betainc_series(a, b, x):
    term, total, k = mp.mpf(1), mp.mpf(1), 0
    while term > total * mp.mpf("1e-70"):
        term *= x * (a + b + k) / (a + 1 + k)
        total += term
        k += 1
    return mp.exp(a * mp.log(x) + b * mp.log1p(-x) - mp.log(a) - mp.log(mp.beta(a, b))) * total


def log_cap(t: str, d: int):
    tt = mp.mpf(t)
    a = mp.mpf(d - 1) / 2
    b = mp.mpf(1) / 2
    x = tt * (2 - tt)
    try:
        i = mp.betainc(a, b, 0, x, regularized=True)
    except (ValueError, mp.libmp.NoConvergence):  # "failed to converge"
        i = _betainc_series(a, b, x)
    return mp.log(i / 2) if tt <= 1 else mp.log1p(-i / 2)


def main():
    rows = [{"t": float(t), "d": d, "log_cap_fraction": mp.nstr(log_cap(t, d), 30)} for d in DIMS for t in TS]
    out = Path(__file__).with_name("cap_reference.json")
    out.write_text(json.dumps({"source": "mpmath.betainc, dps=60", "rows": rows}, indent=1) + "\n")
    print(f"wrote {len(rows)} rows to {out}")


if __name__ == "__main__":
    main()
