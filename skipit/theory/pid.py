"""Partial information decomposition (paper, Appendix E) with the BROJA unique information.

For three finite random variables (target X, sources Y, Z) with joint pmf ``p``,
Bertschinger, Rauh, Olbrich, Jost & Ay (2014, Entropy 16(4):2161-2183, Definition 1;
the paper's Definition 6) define

    Uni(X : Y \\ Z) = min_{Q in Delta_P} I_Q(X; Y | Z),
    Delta_P = {Q : Q(x, y) = P(x, y), Q(x, z) = P(x, z) for all x, y, z},

and from it Red(X : Y, Z) = I(X; Y) - Uni(X : Y \\ Z), Uni(X : Z \\ Y) = I(X; Z) - Red,
Syn(X : Y, Z) = I(X; Y, Z) - Uni_Y - Uni_Z - Red (the paper's Definition 5). Because
I_Q(X; Z | Y) - I_Q(X; Y | Z) = I(X; Z) - I(X; Y) is constant on Delta_P, one minimiser
gives all four atoms, each >= 0.

The solver. On Delta_P, I_Q(X; Y | Z) = H(X | Z) - H_Q(X | Y, Z) with H(X | Z) fixed, so
we minimise the convex f(Q) = -H_Q(X | Y, Z) over the polytope, parametrised exactly by
the kernel of the marginal map (for each x, the 2 x 2 "swap" moves
e[x,y,z] + e[x,y0,z0] - e[x,y0,z] - e[x,y,z0] inside the support of P(x, .) x P(x, .)),
with a log-barrier interior-point method (damped Newton with analytic gradient and
Hessian, approximate centering, the barrier weight raised 100x per centering; about
15-95 Newton steps for alphabets up to 20). Each Newton step is solved in the cell
variables: the Hessian there is block-diagonal over (y, z), each block a diagonal minus
a rank-one matrix, so eliminating it leaves a dense system only as large as the
marginal constraints, < |X|(|Y| + |Z|) (see ``_schur_direction``); a 20x20x20 pmf
(8,000 cells) is solved in seconds. Optimality is certified, not assumed: the Lagrange dual of the problem is

    max_{lam, mu}  sum_{x,y} lam[x,y] P(x,y) + sum_{x,z} mu[x,z] P(x,z)
    s.t.           sum_x exp(lam[x,y] + mu[x,z]) <= 1   for every (y, z),

(the inner infimum over each cell's vector Q(., y, z) of the 1-homogeneous
sum_x q_x log(q_x / sum q) - <c, q> is 0 iff logsumexp(c) <= 0, else -inf). From the
barrier's multipliers we build a feasible (lam, mu) and report
``gap = f(Q) - dual(lam, mu) >= f(Q) - f*``, a rigorous bound on the error of
Uni (in nats before conversion; to rounding error).
"""

from __future__ import annotations

import contextlib
import math
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
from scipy import sparse
from scipy.linalg import cho_factor, cho_solve
from scipy.linalg.lapack import dpotrf, dpotrs
from scipy.sparse.linalg import splu

from skipit.theory._registry import register
from skipit.theory.entropy import _log_base, conditional_entropy, mutual_information, validate_pmf

if TYPE_CHECKING:  # shapes for readers and type checkers; jaxtyping is not a runtime dependency
    from jaxtyping import ArrayLike, Float

__all__ = [
    "PID",
    "BrojaSolution",
    "broja",
    "unique_information",
    "pid_redundancy",
    "synergy",
    "pid_decomposition",
    "lemma5_gap",
    "GATES",
]

GAP_TOL = 1e-11
_MAX_NEWTON = 80

SYMBOLIC: dict = {}  # BROJA is a convex programme: no closed-form bound to express in sympy


class PID(NamedTuple):
    """The four PID atoms of I(target; source_1, source_2) (BROJA), in the requested base."""

    redundancy: float
    unique_1: float
    unique_2: float
    synergy: float


class BrojaSolution(NamedTuple):
    """Minimiser ``q`` (axes target, source, other) of I_Q(target; source | other) over Delta_P.

    ``unique`` is Uni(target : source \\ other) in nats; ``gap`` a certified bound (nats)
    on ``unique - true minimum`` (duality gap); ``newton_steps`` the work done.
    """

    q: np.ndarray
    unique: float
    gap: float
    newton_steps: int


def _ordered(p, target, source, other) -> np.ndarray:
    p = validate_pmf(p)
    if p.ndim != 3:
        raise ValueError(f"`p` must be a 3-d joint pmf p[x0, x1, x2], got {p.ndim} axes")
    axes = (target, source, other)
    if sorted(int(a) for a in axes) != [0, 1, 2]:
        raise ValueError(f"`target`, `source`, `other` must be a permutation of (0, 1, 2), got {axes}")
    return np.transpose(p, axes)


def _problem(p):
    """Free cells, a strictly feasible start, the kernel basis G and the marginal rows A of Delta_P.

    A has one row per (x, y) in the support of P(x, y) and per (x, z) in the support of
    P(x, z) except each x's first z (that row is the sum of x's (x, y) rows minus the
    other (x, z) rows), so its rows are independent and A q = (P(x, y), P(x, z)) is
    exactly Delta_P's marginal constraints on the free cells. ``keep`` numbers A's rows
    among all |X||Y| + |X||Z| marginals: (x, y) -> x |Y| + y, (x, z) -> |X||Y| + x |Z| + z.
    """
    nx, ny, nz = p.shape
    pxy, pxz = p.sum(2), p.sum(1)
    px = pxy.sum(1)
    cells, cols, arows, keep = [], [], [], []
    index = {}
    for x in range(nx):
        ys, zs = np.flatnonzero(pxy[x] > 0), np.flatnonzero(pxz[x] > 0)
        row_y = {y: len(keep) + i for i, y in enumerate(ys)}
        keep.extend(x * ny + ys)
        row_z = {z: len(keep) + i for i, z in enumerate(zs[1:])}
        keep.extend(nx * ny + x * nz + zs[1:])
        for y in ys:
            for z in zs:
                index[(x, y, z)] = len(cells)
                arows.append((len(cells), row_y[y]))
                if z in row_z:
                    arows.append((len(cells), row_z[z]))
                cells.append((x, y, z))
        for y in ys[1:]:
            for z in zs[1:]:
                y0, z0 = ys[0], zs[0]
                cols.append(((index[(x, y, z)], 1.0), (index[(x, y0, z0)], 1.0),
                             (index[(x, y0, z)], -1.0), (index[(x, y, z0)], -1.0)))
    cells = np.array(cells, dtype=int).reshape(-1, 3)
    q0 = pxy[cells[:, 0], cells[:, 1]] * pxz[cells[:, 0], cells[:, 2]] / px[cells[:, 0]]
    rows = [r for col in cols for r, _ in col]
    vals = [v for col in cols for _, v in col]
    cidx = [j for j, col in enumerate(cols) for _ in col]
    g = sparse.csr_matrix((vals, (rows, cidx)), shape=(len(cells), len(cols)))
    yz = cells[:, 1] * nz + cells[:, 2]
    s = sparse.csr_matrix((np.ones(len(cells)), (yz, np.arange(len(cells)))), shape=(ny * nz, len(cells)))
    ac, ar = np.array(arows, dtype=int).reshape(-1, 2).T
    a = sparse.csr_matrix((np.ones(len(ac)), (ar, ac)), shape=(len(keep), len(cells)))
    return cells, q0, g, s, yz, pxy, pxz, a, np.array(keep, dtype=int)


def _f(q, yz, nyz):
    """-H_Q(X | Y, Z) = sum Q log Q - sum Q_yz log Q_yz (nats)."""
    qyz = np.bincount(yz, q, nyz)
    qyz = qyz[qyz > 0]
    return float(np.sum(q * np.log(q)) - np.sum(qyz * np.log(qyz)))


def _dual_bound(q, t, cells, yz, pxy, pxz, nyz):
    """A feasible dual point built from the barrier multipliers, and its value."""
    qyz = np.bincount(yz, weights=q, minlength=nyz)
    c = np.log(q) - np.log(qyz[yz]) - 1.0 / (t * q)
    nx, ny = pxy.shape
    nz = pxz.shape[1]
    # least squares c[cell] ~ lam[x, y] + mu[x, z], weighted by Q: the rounding error of
    # c is largest on cells with tiny Q, whose mass (and hence weight in the gap) is tiny.
    # The design matrix is block-diagonal in x, so each x is its own small problem.
    lam, mu = np.zeros((nx, ny)), np.zeros((nx, nz))
    wts = np.sqrt(q)
    for x in np.unique(cells[:, 0]):
        on = cells[:, 0] == x
        ys, yi = np.unique(cells[on, 1], return_inverse=True)
        zs, zi = np.unique(cells[on, 2], return_inverse=True)
        design = np.zeros((int(on.sum()), len(ys) + len(zs)))
        design[np.arange(len(yi)), yi] = 1.0
        design[np.arange(len(zi)), len(ys) + zi] = 1.0
        sol = np.linalg.lstsq(design * wts[on, None], c[on] * wts[on], rcond=None)[0]
        lam[x, ys], mu[x, zs] = sol[: len(ys)], sol[len(ys):]
    expo = lam[cells[:, 0], cells[:, 1]] + mu[cells[:, 0], cells[:, 2]]
    # shift so that max over (y, z) of logsumexp_x(lam[x, y] + mu[x, z]) is 0: then dual feasible
    top = np.full(nyz, -np.inf)
    np.maximum.at(top, yz, expo)
    live = np.unique(yz)
    shift = float(np.max(top[live] + np.log(np.bincount(yz, np.exp(expo - top[yz]), nyz)[live])))
    value = float(np.sum(lam * pxy) + np.sum(mu * pxz)) - shift
    return value


_MU = 100.0  # factor by which the barrier weight t grows between centerings
_CENTER_TOL = 0.1  # Newton decrement^2 / 2 for the intermediate centerings (approximate is enough)
_FINAL_CENTER_TOL = 1e-12  # ... and for the last one, whose multipliers certify the gap
_REFINE = 2  # rounds of iterative refinement of each structured Newton step


def _dense_direction(g, s):
    """Newton step in the kernel coordinates theta (Q = q0 + G theta), dense factorisation.

    The obvious method, kept for the benchmark: the Hessian
    G^T (diag(t/Q + 1/Q^2) - t S^T diag(1/Q_yz) S) G is formed and factorised densely,
    O(k^3) for k = dim ker ~ n^3 free parameters, i.e. ~n^9, and BLAS-thread bound.
    """
    m, n = g.shape
    # G^T diag(w) G stays sparse (4 entries per column of G); (S G)^T D (S G) is dense
    # (dense arrays throughout for small problems, where sparse overhead dominates)
    small = m * n <= 40_000
    g = g.toarray() if small else g.tocsr()
    gt = g.T if small else g.T.tocsr()
    sgeom = (s @ g) if small else (s @ g).toarray()

    def direction(q, qyz, grad_q, t):
        grad = gt @ grad_q
        w = t / q + 1.0 / q**2
        sg = sgeom * (1.0 / np.sqrt(np.maximum(qyz, 1e-300)))[:, None]
        first = (gt * w) @ g if small else (gt @ sparse.diags(w) @ g).toarray()
        hess = first - t * (sg.T @ sg)
        try:
            step = -(np.linalg.solve(hess, grad) if small else cho_solve(cho_factor(hess), grad))
        except np.linalg.LinAlgError:
            step = -np.linalg.lstsq(hess, grad, rcond=None)[0]
        return g @ step, float(-grad @ step)

    return direction


def _schur_direction(a, keep, cells, shape):
    """Newton step in the cell variables Q with the marginal rows A Q = const as constraints.

    The Hessian in Q, H = diag(w) - t S^T diag(1/Q_yz) S with w = t/Q + 1/Q^2, is
    block-diagonal over the (y, z) cells, each block a diagonal minus a rank-one matrix,
    so H^{-1} v costs O(cells) by Sherman-Morrison:
    H^{-1} = diag(1/w) + sum_yz c_yz u_yz u_yz^T, u_yz = 1/w on the block, and
    c_yz = (t/Q_yz) / (1 - (t/Q_yz) sum_x 1/w) = t / sum_x Q/(tQ + 1) (the denominator
    written without cancellation). The KKT system [H A^T; A 0][dq; nu] = [-grad; 0]
    reduces to the Schur complement M = A H^{-1} A^T, a dense system whose size is the
    number of independent marginal constraints (< |X|(|Y| + |Z|)), not the kernel
    dimension (~|X||Y||Z|); M's entries are sums over one axis of the cell array
    (O(|X|^2 |Y||Z|) to form). The step is finally projected onto ker A (A A^T is
    block-diagonal in x: one sparse factorisation up front) so rounding cannot make Q
    drift off the marginals.
    """
    nx, ny, nz = shape
    x, y, z = cells.T
    yz = y * nz + z
    nyz = ny * nz
    at = a.T.tocsr()
    proj = splu(sparse.csc_matrix(a @ at))  # A A^T, for the projection onto ker A
    # A and A^T by index arithmetic (no sparse-matrix call overhead in the inner loop):
    # each cell is in its (x, y) row and, unless z is x's first, in its (x, z) row
    at.sort_indices()
    nrow = a.shape[0]
    ry = at.indices[at.indptr[:-1]]
    two = np.diff(at.indptr) == 2
    rz = np.full(len(cells), nrow)
    rz[two] = at.indices[at.indptr[:-1][two] + 1]

    def a_mul(v):
        return np.bincount(ry, v, nrow) + np.bincount(rz, v, nrow + 1)[:nrow]

    padded = np.zeros(nrow + 1)  # A^T's (x, z) part reads row nrow (a zero) for each x's first z

    def at_mul(u):
        padded[:nrow] = u
        return u[ry] + padded[rz]

    multipliers = np.zeros(nrow)  # last step's nu / t, ~ -(lam[x, y], mu[x, z])
    live = np.bincount(yz, minlength=nyz) > 0  # (y, z) with at least one free cell
    nxy = nx * ny
    full = np.zeros((nxy + nx * nz, nxy + nx * nz))
    diag_x = np.arange(nx)

    def schur_complement(iw, coef):
        """M = A H^{-1} A^T over all (x, y) and (x, z) marginals, restricted to ``keep``."""
        wc = np.zeros(shape)
        wc[x, y, z] = iw
        c = coef.reshape(ny, nz)
        cw = wc * c[None]
        full[:] = 0.0
        yy = full[:nxy, :nxy].reshape(nx, ny, nx, ny)
        zz = full[nxy:, nxy:].reshape(nx, nz, nx, nz)
        yzb = full[:nxy, nxy:].reshape(nx, ny, nx, nz)
        # sum_yz c_yz (A u_yz)(A u_yz)^T: (x,y)-(x',y) over z, (x,z)-(x',z) over y, (x,y)-(x',z)
        yy[:, np.arange(ny), :, np.arange(ny)] = np.einsum("ayz,byz->yab", cw, wc)
        zz[:, np.arange(nz), :, np.arange(nz)] = np.einsum("ayz,byz->zab", cw, wc)
        yzb[:] = np.einsum("ayz,byz->aybz", cw, wc)
        # A diag(1/w) A^T: within each x, (x,y)-(x,y), (x,z)-(x,z) and (x,y)-(x,z)
        xs, ys, zs = diag_x[:, None], np.arange(ny)[None], np.arange(nz)[None]
        yy[xs, ys, xs, ys] += wc.sum(2)
        zz[xs, zs, xs, zs] += wc.sum(1)
        yzb[diag_x, :, diag_x, :] += wc
        full[nxy:, :nxy] = full[:nxy, nxy:].T
        return full[np.ix_(keep, keep)]

    def direction(q, qyz, grad_q, t):
        # grad's component in range(A^T) is ~t and only moves nu; H^{-1} of it is large along
        # the (y, z) blocks' soft directions and cancels in dq to rounding ~eps t: remove it
        # first with the previous multipliers (the KKT solution dq is unchanged by A^T y)
        shifted = grad_q + at_mul(t * multipliers)
        w = t / q + 1.0 / q**2
        iw = q * q / (t * q + 1.0)
        coef, curv = np.zeros(nyz), np.zeros(nyz)
        coef[live] = t / np.bincount(yz, q / (t * q + 1.0), nyz)[live]
        curv[live] = t / qyz[live]

        def hinv(v):
            r = iw * v
            return r + iw * (coef * np.bincount(yz, r, nyz))[yz]

        schur = schur_complement(iw, coef)
        chol, info = dpotrf(schur, lower=True, clean=False)
        if info == 0:
            solve = lambda r: dpotrs(chol, r, lower=True)[0]  # noqa: E731
        else:  # not numerically positive definite (rare, at the rounding floor)
            solve = lambda r: np.linalg.lstsq(schur, r, rcond=None)[0]  # noqa: E731
        # H dq + A^T nu = -grad, A dq = 0, plus _REFINE rounds of iterative refinement
        # against H itself: M is as ill-conditioned as the barrier (~t Q), and refinement
        # brings the step back to the accuracy of a backward-stable solve of the KKT system
        dq, nu = np.zeros_like(q), np.zeros(nrow)
        r1, r2 = -shifted, np.zeros(nrow)
        for _ in range(_REFINE + 1):
            dnu = solve(a_mul(hinv(r1)) - r2)
            dq, nu = dq + hinv(r1 - at_mul(dnu)), nu + dnu
            hdq = w * dq - (curv * np.bincount(yz, dq, nyz))[yz]
            r1, r2 = -shifted - hdq - at_mul(nu), -a_mul(dq)
        multipliers[:] += nu / t
        # the decrement dq^T H dq as -(grad + A^T nu) . dq: the same number on ker A, without
        # grad's large component in range(A^T), whose product with rounding is noise
        dq = dq - at_mul(proj.solve(a_mul(dq)))
        return dq, float(-(shifted + at_mul(nu)) @ dq)

    return direction


def _one_blas_thread():
    """Context with BLAS limited to one thread (threadpoolctl, where installed; else no-op).

    The structured solve's dense systems are small (< |X|(|Y| + |Z|) rows), where extra BLAS
    threads only add synchronisation, and on a loaded machine their spin-waiting costs far
    more (20x20x20 at load 11: 70 s with one thread, 376 s with two). The BLAS libraries are
    looked up once (about 50 ms), not per solve.
    """
    global _BLAS_CONTROLLER
    if _BLAS_CONTROLLER is None:
        try:
            from threadpoolctl import ThreadpoolController
        except ImportError:  # not a dependency: the solve is correct either way
            _BLAS_CONTROLLER = False
        else:
            _BLAS_CONTROLLER = ThreadpoolController()
    if _BLAS_CONTROLLER is False:
        return contextlib.nullcontext()
    return _BLAS_CONTROLLER.limit(limits=1, user_api="blas")


_BLAS_CONTROLLER = None  # threadpoolctl's controller once looked up, False where not installed


def _barrier_newton(q, direction, s, yz, cells, pxy, pxz, nyz, gap_tol):
    """Damped Newton on t f(Q) - sum log Q over Delta_P, t increased by _MU between centerings.

    ``direction(q, q_yz, grad, t)`` returns the Newton step dQ (in ker A) of the barrier
    function at weight t and the Newton decrement dQ^T H dQ (= -grad . dQ).
    """
    m = len(q)
    t = 1.0
    steps = 0
    while True:
        final = m / t < gap_tol
        tol = _FINAL_CENTER_TOL if final else _CENTER_TOL
        prev_dec = math.inf
        for _ in range(_MAX_NEWTON):
            qyz = np.bincount(yz, q, nyz)
            grad_q = t * (np.log(q) - np.log(qyz[yz])) - 1.0 / q
            dq, dec = direction(q, qyz, grad_q, t)
            steps += 1
            if dec / 2.0 < tol or (dec / 2.0 < 1e-3 and dec > 0.5 * prev_dec):
                break  # centred, or stalled at the rounding floor (the gap is certified anyway)
            prev_dec = dec
            neg = dq < 0
            alpha = min(1.0, 0.99 * float(np.min(-q[neg] / dq[neg]))) if neg.any() else 1.0
            phi = t * _f(q, yz, nyz) - np.sum(np.log(q))
            while alpha > 1e-14:
                qn = q + alpha * dq
                if np.all(qn > 0) and t * _f(qn, yz, nyz) - np.sum(np.log(qn)) <= phi - 0.25 * alpha * dec:
                    break
                alpha *= 0.5
            else:
                break
            q = qn
        if final:
            gap = max(0.0, _f(q, yz, nyz) - _dual_bound(q, t, cells, yz, pxy, pxz, nyz))
            if gap < 10 * gap_tol or t > 1e16:
                return q, gap, steps
            t *= 10.0  # re-centre further along the path (rare: poorly centred final point)
        else:
            t = min(t * _MU, 2.0 * m / gap_tol)


def broja(p: Float[ArrayLike, "a b c"], target: int = 0, source: int = 1, other: int = 2,
          gap_tol: float = GAP_TOL, *, _dense_newton: bool = False) -> BrojaSolution:
    """Solve min_{Q in Delta_P} I_Q(target; source | other) with a certified duality gap (nats).

    Returns ``BrojaSolution(q, unique, gap, newton_steps)``: ``unique`` = I_Q(target;
    source | other) at the returned feasible ``q`` (an upper bound on the minimum) and
    ``gap`` >= ``unique`` - minimum, from an explicit dual feasible point (module
    docstring); the barrier is driven until ``gap`` < 10 ``gap_tol`` (typically
    ~5e-12 nats for the default). Structural zeros (P(x, y) = 0 or P(x, z) = 0) are
    removed first; if Delta_P is a single point no optimisation is needed (gap 0).

    Each Newton step solves a dense system of the size of the marginal constraints,
    < |X|(|Y| + |Z|), after a structured elimination (:func:`_schur_direction`): 20x20x20
    (8,000 cells) takes seconds. ``_dense_newton=True`` (private, for
    ``benchmarks/bench_pid.py``) instead factorises the Hessian in the kernel
    coordinates densely, the obvious method, whose cost grows as ~n^9.
    """
    p = _ordered(p, target, source, other)
    cells, q0, g, s, yz, pxy, pxz, a, keep = _problem(p)
    nyz = p.shape[1] * p.shape[2]
    h_x_given_z = -float(np.sum(pxz[pxz > 0] * np.log(pxz[pxz > 0] / pxz.sum(0)[np.nonzero(pxz > 0)[1]])))
    q = q0.copy()
    steps = 0
    if g.shape[1] == 0:  # Delta_P is a single point
        gap = 0.0
    else:
        if _dense_newton:
            q, gap, steps = _barrier_newton(q, _dense_direction(g, s), s, yz, cells, pxy, pxz, nyz, gap_tol)
        else:
            with _one_blas_thread():
                direction = _schur_direction(a, keep, cells, p.shape)
                q, gap, steps = _barrier_newton(q, direction, s, yz, cells, pxy, pxz, nyz, gap_tol)
    full = np.zeros(p.shape)
    full[cells[:, 0], cells[:, 1], cells[:, 2]] = q
    unique = max(0.0, h_x_given_z + _f(q, yz, nyz))
    return BrojaSolution(full, unique, gap, steps)


def unique_information(p: Float[ArrayLike, "a b c"], target: int = 0, source: int = 1, other: int = 2,
                       base: float = 2) -> float:
    """Uni(target : source \\ other), BROJA (Bertschinger et al. 2014; paper Definition 6).

    ``p`` is a 3-d joint pmf ``p[x0, x1, x2]``; the result is in ``base`` (bits by
    default), accurate to the certified gap of :func:`broja` (< 1e-10 nats on the
    gates and random pmfs of the tests).
    """
    lb = _log_base(base)
    sol = broja(p, target, source, other)
    return sol.unique / lb


def pid(p: Float[ArrayLike, "a b c"], target: int = 0, sources: tuple[int, int] = (1, 2), base: float = 2) -> PID:
    """The BROJA partial information decomposition of I(target; sources) (paper Definition 5).

    Returns ``PID(redundancy, unique_1, unique_2, synergy)`` with
    I(T; S1) = Red + Uni_1, I(T; S2) = Red + Uni_2, I(T; S1, S2) = Red + Uni_1 + Uni_2 + Syn.
    """
    s1, s2 = sources
    lb = _log_base(base)
    sol = broja(p, target, s1, s2)
    pp = validate_pmf(p)
    i1 = mutual_information(pp, target, s1)
    i2 = mutual_information(pp, target, s2)
    i12 = mutual_information(pp, target, (s1, s2))
    u1 = sol.unique
    red = max(0.0, i1 - u1)
    u2 = max(0.0, i2 - red)
    syn = max(0.0, i12 - u1 - u2 - red)
    return PID(red / lb, u1 / lb, u2 / lb, syn / lb)


def redundancy(p: Float[ArrayLike, "a b c"], target: int = 0, sources: tuple[int, int] = (1, 2),
               base: float = 2) -> float:
    """Red(target : source_1, source_2) = I(target; source_1) - Uni(target : source_1 \\ source_2)."""
    return pid(p, target, sources, base).redundancy


def synergy(p: Float[ArrayLike, "a b c"], target: int = 0, sources: tuple[int, int] = (1, 2), base: float = 2) -> float:
    """Syn(target : source_1, source_2), the BROJA synergy."""
    return pid(p, target, sources, base).synergy


#: Package-level names (``skipit.theory.pid_decomposition``): ``skipit.theory.pid`` and
#: ``skipit.theory.redundancy`` are the modules, so the functions cannot take those names there.
pid_decomposition = pid
pid_redundancy = redundancy


def lemma5_gap(p_xy: Float[ArrayLike, "x y"], base: float = 2) -> float:
    """Uni(X : X \\ Y) - H(X | Y) for a 2-d pmf ``p_xy`` (Lemma 5, App. E: it is 0).

    Builds p[x, x', y] = [x = x'] p(x, y) and returns the difference; Lemma 5 says it
    vanishes for every discrete pmf. Under BROJA this is immediate: the (X, X')
    marginal forces X' = X under every Q in Delta_P, so Delta_P = {P} and
    I_P(X; X | Y) = H(X | Y).
    """
    p_xy = validate_pmf(p_xy, "p_xy")
    if p_xy.ndim != 2:
        raise ValueError(f"`p_xy` must be a 2-d pmf p[x, y], got {p_xy.ndim} axes")
    nx = p_xy.shape[0]
    p3 = np.zeros((nx, nx, p_xy.shape[1]))
    p3[np.arange(nx), np.arange(nx), :] = p_xy
    return unique_information(p3, 0, 1, 2, base) - conditional_entropy(p_xy, 0, 1, base=base)


def _uniform(triples, shape=None):
    """pmf p[t, s1, s2] uniform over the listed (s1, s2, t) outcomes (dit's order: output last)."""
    arr = np.array(triples)
    shape = shape or tuple(arr.max(0)[[2, 0, 1]] + 1)
    p = np.zeros(shape)
    for s1, s2, t in arr:
        p[t, s1, s2] += 1.0
    return p / p.sum()


_L3 = math.log2(3)
# Standard gates as p[target, source_1, source_2] with their BROJA atoms in bits
# (redundancy, unique_1, unique_2, synergy) and where each value comes from. All eight
# were also recomputed with dit 1.5 (``PID_BROJA``, separate environment): equal to 1e-6.
GATES = {
    "RDN": (_uniform([(0, 0, 0), (1, 1, 1)]), (1.0, 0.0, 0.0, 0.0),
            "Bertschinger et al. 2014, Sec. 5 (copy of a bit to both sources): all redundant"),
    "UNQ": (_uniform([(0, 0, 0), (0, 1, 1), (1, 0, 0), (1, 1, 1)]), (0.0, 0.0, 1.0, 0.0),
            "dit `unq1` (target = second source); Bertschinger et al. 2014, Sec. 5"),
    "XOR": (_uniform([(0, 0, 0), (0, 1, 1), (1, 0, 1), (1, 1, 0)]), (0.0, 0.0, 0.0, 1.0),
            "Bertschinger et al. 2014, Sec. 5; dit `syn`: all synergistic"),
    "AND": (_uniform([(0, 0, 0), (0, 1, 0), (1, 0, 0), (1, 1, 1)]), (1.5 - 0.75 * _L3, 0.0, 0.0, 0.5),
            "Bertschinger et al. 2014, Sec. 5; dit tests/pid/test_ibroja.py (`anddup`: 0.311278, 0.5):"
            " Red = I(T;S1) = h(1/4) - 1/2"),
    "COPY": (_uniform([(0, 0, 0), (0, 1, 1), (1, 0, 2), (1, 1, 3)]), (0.0, 1.0, 1.0, 0.0),
             "Bertschinger et al. 2014, Sec. 5 (COPY, independent inputs): Uni = 1 bit each"),
    "SUM": (_uniform([(0, 0, 0), (0, 1, 1), (1, 0, 1), (1, 1, 2)]), (0.5, 0.0, 0.0, 1.0),
            "Griffith & Koch 2014 (Table of SUM); dit `sum_`: Red = I(T;S1) = 1/2, Syn = 1"),
    "RDNXOR": (_uniform([(0, 0, 0), (0, 1, 1), (1, 0, 1), (1, 1, 0),
                         (2, 2, 2), (2, 3, 3), (3, 2, 3), (3, 3, 2)]), (1.0, 0.0, 0.0, 1.0),
               "Griffith & Koch 2014 (RdnXor); dit `rdn_xor`: 1 bit redundant + 1 bit synergistic"),
    "DIFF": (_uniform([(0, 0, 0), (0, 0, 1), (0, 1, 0), (1, 0, 1)]),
             (0.12255624891826589, 0.18872187554086706, 0.18872187554086706, 0.0),
             "dit tests/pid/test_ibroja.py::test_pid_broja1 (`diff`)"),
}

register(
    "unique_information",
    "Definition 6 (App. E; Bertschinger et al. 2014)",
    "Uni(X : Y \\ Z) = min over Q with Q(x,y)=P(x,y), Q(x,z)=P(x,z) of I_Q(X;Y|Z); solved by a "
    "log-barrier Newton method with a certified duality gap. Example: dit's DIFF distribution, in bits.",
    example={"p": GATES["DIFF"][0].tolist()},
    status="definition",
)
register(
    "pid_decomposition",
    "Definition 5 (App. E; BROJA atoms)",
    "I(T;S1,S2) = Red + Uni_1 + Uni_2 + Syn, I(T;S1) = Red + Uni_1, I(T;S2) = Red + Uni_2, each atom >= 0. "
    "Example: AND gate (Red = 1.5 - 0.75 log2 3, Syn = 1/2 bit).",
    example={"p": GATES["AND"][0].tolist()},
    status="definition",
)
register(
    "lemma5_gap",
    "Lemma 5 (App. E)",
    "X, Y discrete => Uni(X : X \\ Y) = H(X|Y); the function returns the difference (0). Under BROJA "
    "Delta_P = {P} for (X, X, Y), so no PID non-negativity axiom is needed.",
    example={"p_xy": [[0.3, 0.1], [0.2, 0.4]]},
    status="as stated",
    erratum="The paper's proof relies on non-negativity of an unspecified PID; with BROJA the identity is direct.",
)
