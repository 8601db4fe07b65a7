"""Generate ``cap_reference.json``: mpmath values of log F(t, d), the normalised cap measure.

F(t, d) = sigma({x' on S^{d-1}: 1 - <x, x'> <= t}) / sigma(S^{d-1}). With u = 1 - t (the
cosine of the cap's polar angle), X_1^2 ~ Beta(1/2, a), a = (d - 1)/2, for X uniform on the
sphere, so with x = 1 - u^2 = t(2 - t) and y = u^2:

    F = I_x(a, 1/2) / 2        (t <= 1),       F = 1 - I_x(a, 1/2) / 2       (1 < t < 2),

and I_x(a, 1/2) = 1 - I_y(1/2, a). Each value is computed twice, at 60 significant digits
(mpmath keeps arbitrary exponents, so nothing underflows):

1. a positive series (Abramowitz & Stegun 26.5.23 with 15.1.1),
   I_z(p, q) = z^p (1-z)^q / (p B(p, q)) sum_n prod_{k<n} z (p+q+k)/(p+1+k),
   summed until a term is below 1e-(dps-10) of the total (every term is positive, so nothing
   cancels) for (p, q, z) = (a, 1/2, x) where that needs at most 2e4 terms, else for
   (1/2, a, y), with as many extra digits as 1 - I_y(1/2, a) cancels;
2. ``mpmath.betainc`` (hypergeometric), where it converges;

and the row is kept only if the two agree to 1e-40 relative (where ``betainc`` gives up, the
series stands alone; the ``checked`` field says which). Run once (a few minutes):
nice .venv/bin/python tests/theory/data/make_cap_reference.py
The test ``tests/theory/test_spherical.py`` only reads the JSON.
"""

import json
import math
from pathlib import Path

import mpmath as mp

mp.mp.dps = 60
DIMS = [2, 3, 4, 5, 10, 32, 257, 1024, 4096, 5120, 8192, 30_000, 100_000, 1_000_000, 3_000_000, 10_000_000]
TS = ["1e-6", "1e-4", "0.01", "0.1", "0.3", "0.5", "0.9", "0.999", "1", "1.001",
      "1.1", "1.3", "1.5", "1.9", "1.99", "1.01", "1.00215"]
#: t = 1 +- 10^-k, k = 1..6: dense around the hemisphere, where the evaluation switches branch.
TS += [f"{1 + s * 10.0 ** -k:.{k}f}" for k in range(1, 7) for s in (-1, 1)]
#: a (1 - t)^2 = c: the switch point of the continued fraction and both sides of it, for each d.
SWITCH = [0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0, 100.0]


def _series(p, q, z):
    term, total, k = mp.mpf(1), mp.mpf(1), 0
    while term > total * mp.mpf(10) ** (10 - mp.mp.dps):  # 1e-50 of the total at 60 digits
        term *= z * (p + q + k) / (p + 1 + k)
        total += term
        k += 1
    return mp.exp(p * mp.log(z) + q * mp.log1p(-z) - mp.log(p) - mp.log(mp.beta(p, q))) * total


def _i_x(a, x, y):
    """I_x(a, 1/2), x = 1 - y, by a positive series: in x where that needs at most 2e4 terms,
    else as 1 - I_y(1/2, a), with enough extra digits for the cancellation (I_x ~ exp(-a y))."""
    b = mp.mpf(1) / 2
    if y > 0 and 160 / y <= 20_000:
        return _series(a, b, x)
    with mp.workdps(mp.mp.dps + int(y * a / 2.3) + 10):
        return +(1 - _series(b, a, y))  # the series stops 1e-(dps-10) below 1, past the cancellation


def log_cap(t: float, d: int):
    """log F at the double ``t`` exactly (near t = 1 at large d, F is sensitive to the last bit of t)."""
    tt = mp.mpf(t)
    if tt >= 2:
        return mp.mpf(0), "exact"
    if tt == 0:
        return mp.ninf, "exact"
    a = mp.mpf(d - 1) / 2
    u = 1 - tt
    y = u * u
    x = 1 - y
    i = _i_x(a, x, y)
    checked = "series"
    try:
        j = mp.betainc(a, mp.mpf(1) / 2, 0, x, regularized=True)
        if abs(j - i) > abs(i) * mp.mpf("1e-40"):
            raise AssertionError(f"series and betainc disagree at t={t}, d={d}: {i} vs {j}")
        checked = "series = betainc"
    except (ValueError, mp.libmp.NoConvergence):  # "failed to converge"
        pass
    return (mp.log(i / 2) if u >= 0 else mp.log1p(-i / 2)), checked


def main():
    rows = []
    for d in DIMS:
        a = (d - 1) / 2
        ts = [float(t) for t in TS]
        for c in SWITCH:
            u = math.sqrt(c / a)
            if u < 1:
                ts += [1 - u, 1 + u]
        for t in dict.fromkeys(ts):  # each double once
            value, checked = log_cap(t, d)
            rows.append({"t": t, "d": d, "log_cap_fraction": mp.nstr(value, 30), "checked": checked})
    out = Path(__file__).with_name("cap_reference.json")
    out.write_text(json.dumps({"source": "mpmath, dps=60: positive series, checked against mpmath.betainc",
                               "rows": rows}, indent=1) + "\n")
    print(f"wrote {len(rows)} rows to {out}")


if __name__ == "__main__":
    main()
