"""Kernel SHAP: Shapley values of a set function by constrained weighted least squares.

The Shapley values of a game ``v`` over ``M`` features are the solution of

    minimise   sum_S  k(|S|) (v(S) - v(0) - sum_{j in S} phi_j)^2
    subject to sum_j phi_j = v(full) - v(0)

over all coalitions ``S`` (neither empty nor full), with the Shapley kernel
``k(s) = (M - 1) / (C(M, s) s (M - s))`` (Lundberg & Lee 2017). This module solves that
problem exactly when the budget allows every coalition, and otherwise on a sample:

* coalition sizes are grouped into strata ``{s, M - s}``, coalitions are drawn in
  complementary pairs, and strata are enumerated whole, smallest size first, while the
  budget allows (as shap's ``KernelExplainer`` does);
* the remaining strata share the rest of the budget by systematic (stratified)
  sampling of sizes, with an allocation chosen by ``sampling``; within a stratum
  distinct pairs are drawn uniformly without replacement, so no coalition is evaluated
  twice;
* each sampled coalition is weighted by its kernel weight divided by its expected
  sampling rate (a Horvitz-Thompson weight), rescaled so that the sampled strata carry
  exactly their share of the kernel's mass;
* the constrained problem is solved in float64 in the subspace ``sum(phi) = const``
  (eigen-decomposition of the projected normal matrix), so the efficiency constraint
  holds to rounding error at any budget;
* for few features (``C(M, 3) <= 1000``) and enough rows, a third-order surrogate is fitted
  to the sampled values (unpenalised linear and pairwise terms, ridge-penalised triple
  products, ridge chosen by generalised cross-validation, infinity included) and used as a
  control variate: ``phi = KernelSHAP(v - q) + Shapley(q)`` for its third-order part ``q``,
  whose Shapley values are exact (each triple's coefficient split three ways). This is
  Kernel SHAP as a polynomial regression with interaction terms (as in "PolySHAP"); with
  complementary pairs a second-order fit gave no gain in our trials, the third order does
  (see BENCHMARKS.md). The identity holds for any ``q``, so the result stays exact under
  full enumeration, efficient at any budget, and plain Kernel SHAP when cross-validation
  rejects the triple products.
"""

import itertools
import math
from dataclasses import dataclass
from typing import Union

import numpy as np

from .batching import check_cancel, run_batched

_SAMPLINGS = ("balanced", "leverage", "kernel")
_ENUMERATE_LIMIT = 200_000     # strata with at most this many pairs are listed, not rejected
_ROW_BLOCK = 2048              # rows per block when forming the normal equations
_RIDGE_CAP = 1e-2              # largest ridge tried, relative to the mean eigenvalue
_MAX_TRIPLES = 1000            # third-order surrogate only when C(M, 3) is at most this
_MAX_SURROGATE_CELLS = 2 ** 24  # ... and rows * terms is at most this
_SPARE_ROWS = 300              # ... and rows exceed terms by min(terms, this): closer to a
                               # square fit the standard errors come out far too small


@dataclass(frozen=True)
class ShapleyResult:
    """Shapley values of a (possibly vector-valued) game.

    Attributes
    ----------
    values : ndarray, shape (M,) or (M, D)
        Estimated Shapley value of every feature (per output column).
    standard_errors : ndarray, same shape as ``values``
        Estimated standard error of each value; 0 where the value is exact.
    base_value : float or ndarray, shape (D,)
        ``v(empty coalition)``.
    full_value : float or ndarray, shape (D,)
        ``v(full coalition)``. ``values.sum(axis=0) == full_value - base_value``.
    n_evaluations : int
        Rows passed to the value function, the empty and full coalitions included.
        Every row is a distinct coalition.
    exact : bool
        True when every coalition was evaluated, so ``values`` are exact Shapley values.
    """

    values: np.ndarray
    standard_errors: np.ndarray
    base_value: Union[float, np.ndarray]
    full_value: Union[float, np.ndarray]
    n_evaluations: int
    exact: bool


def kernel_shap(value_fn, n_features, n_samples, *, seed=0, batch_size=64, l1_reg=False,
                sampling="balanced", surrogate=True, progress=None, cancel=None):
    """Estimate Shapley values with Kernel SHAP.

    Parameters
    ----------
    value_fn : callable
        ``value_fn(coalitions)`` takes a bool array of shape (n, M), True where a feature
        is present, and returns the game's value for every row, shape (n,) or (n, D).
        It is never called with more than ``batch_size`` rows, nor twice on the same
        coalition.
    n_features : int
        Number of features ``M`` (>= 1).
    n_samples : int
        Budget of coalitions other than the empty and the full one. With
        ``n_samples >= 2**M - 2`` every coalition is evaluated and the result is exact.
        Coalitions are sampled in complementary pairs, so an odd budget leaves one
        unused.
    seed : int
        Seed of ``numpy.random.default_rng``; the result is a function of the seed.
    batch_size : int
        Maximum rows per ``value_fn`` call.
    l1_reg : bool
        L1 feature selection (shap's ``l1_reg``) is not supported: only False is accepted.
    sampling : {"balanced", "leverage", "kernel"}
        How the sampled part of the budget is shared between coalition sizes ``s``
        (and which strata are enumerated first). ``"kernel"`` shares it in proportion
        to the Shapley kernel's mass per size, as shap does; ``"leverage"`` gives every
        size the same share: these are the leverage scores of the Kernel SHAP
        regression (Musco & Witter 2024, "Provably accurate Shapley value estimation
        via leverage score sampling"). ``"balanced"`` (default) is their geometric
        mean, proportional to ``1 / sqrt(s (M - s))``: it minimises the linearised
        variance of the estimate when the game's non-additive part has the same
        magnitude at every size, and was never worse than the other two by much in
        our trials while each of them loses clearly in some regime (kernel for many
        features, leverage for few). Every choice is weighted back to the kernel, so
        all are consistent.
    surrogate : bool
        Use the third-order surrogate as a control variate (see the module notes) when it
        applies: ``C(M, 3) <= 1000`` (M <= 19), sampled rows exceeding the regression
        terms (``P = M + C(M, 2) + C(M, 3)``) by ``min(P, 300)`` (e.g. 350 rows for
        M = 10, 598 for M = 12, 996 for M = 16; the ridge chosen by cross-validation keeps
        the values accurate closer to a square fit, but their standard errors then come
        out too small), and the budget short of full enumeration. False gives plain
        Kernel SHAP (for comparison).
    progress : callable(float), optional
        Called after every batch with the fraction of evaluations done.
    cancel : callable() -> bool, optional
        Checked before every batch; True raises ``ExplanationCancelled``.

    Returns
    -------
    ShapleyResult

    Notes
    -----
    When sampling, the normal equations can be ill-conditioned (typically when the
    number of sampled pairs is close to ``M``, where the plain least-squares estimate
    blows up). The solve then adds a ridge penalty on ``phi - (full - base) / M``
    whose size is chosen by generalised cross-validation among 0 (when the rows
    outnumber the features) and values up to ``1e-2`` times the mean eigenvalue of
    the normal matrix: it stays 0 when the game is additive (zero residuals), so
    linear games are still recovered exactly. Exact runs are never regularised.

    Standard errors come from the sandwich (linearisation) variance of the estimator,
    clustered by complementary pair, computed within each sampled size stratum with a
    finite-population correction; enumerated strata contribute no variance, and the
    ridge's bias is not included. With the surrogate, the residuals are those of the whole
    third-order fit, inflated by ``1 / (1 - leverage)`` (HC3) to undo its optimism.
    """
    if l1_reg:
        raise NotImplementedError(
            "l1_reg is not supported: Kernel SHAP here never drops features "
            "(no L1 sparsification); pass l1_reg=False")
    if sampling not in _SAMPLINGS:
        raise ValueError(f"sampling must be one of {_SAMPLINGS}, got {sampling!r}")
    m = int(n_features)
    if m < 1:
        raise ValueError("n_features must be at least 1")
    n_samples = max(0, int(n_samples))
    rng = np.random.default_rng(seed)

    design = _design(m, n_samples, sampling, rng)
    ends = np.zeros((2, m), dtype=bool)
    ends[1] = True
    coalitions = np.concatenate([ends, design["z"]], axis=0)
    check_cancel(cancel)
    values = run_batched(value_fn, coalitions, batch_size, progress=progress, cancel=cancel)
    values = np.asarray(values, dtype=np.float64)
    if values.ndim not in (1, 2):
        raise ValueError(f"value_fn must return shape (n,) or (n, D), got {values.shape}")
    scalar = values.ndim == 1
    y = values.reshape(len(coalitions), -1)
    v0, v1 = y[0], y[1]

    if surrogate:
        phi, se = _solve_with_surrogate(design, y[2:] - v0, v1 - v0)
    else:
        phi, se = _solve(design, y[2:] - v0, v1 - v0)
    if scalar:
        phi, se, v0, v1 = phi[:, 0], se[:, 0], float(v0[0]), float(v1[0])
    return ShapleyResult(values=phi, standard_errors=se, base_value=v0, full_value=v1,
                         n_evaluations=int(len(coalitions)), exact=design["exact"])


# --------------------------------------------------------------------------- design

def _strata(m):
    """Sizes ``s = 1 .. M // 2`` with their number of complementary pairs and kernel mass.

    Returns
    -------
    sizes : ndarray of int, shape (S,)
    n_pairs : list of int
        Pairs in each stratum (Python ints: they can be astronomically large).
    mass : ndarray, shape (S,)
        Shapley-kernel mass of each stratum (both sides), up to a common factor.
    n_sides : ndarray, shape (S,)
        Distinct sizes in the stratum: 2, or 1 for ``s == M / 2``.
    """
    sizes = np.arange(1, m // 2 + 1)
    n_sides = np.where(2 * sizes == m, 1, 2)
    n_pairs = [math.comb(m, int(s)) // (3 - int(k)) for s, k in zip(sizes, n_sides)]
    mass = n_sides * (m - 1) / (sizes * (m - sizes))
    return sizes, n_pairs, mass, n_sides


def _design(m, budget, sampling, rng):
    """Choose the coalitions to evaluate and their regression weights.

    Returns a dict with ``z`` (bool, (R, M)), ``w`` (float, (R,)), ``exact`` (bool),
    and for the sampled rows (consecutive complementary pairs at the end of ``z``)
    ``n_enum`` (rows before them), ``pair_stratum`` (stratum of each pair) and
    ``fpc`` (finite-population correction of each stratum).
    """
    sizes, n_pairs, mass, n_sides = _strata(m)
    alloc = {"leverage": n_sides.astype(float), "kernel": mass.copy(),
             "balanced": n_sides / np.sqrt(sizes * (m - sizes))}[sampling]
    blocks, weights = [], []
    left = budget // 2                    # pairs still to spend
    k = 0
    while k < len(sizes):                 # enumerate whole strata while the budget allows
        share = alloc[k] / alloc[k:].sum()
        if left * share < n_pairs[k] * (1 - 1e-9):
            break
        z = _all_pairs(m, int(sizes[k]))
        blocks.append(z)
        weights.append(np.full(len(z), mass[k] / (2 * n_pairs[k])))
        left -= n_pairs[k]
        k += 1
    exact = k == len(sizes)
    n_enum = sum(len(b) for b in blocks)
    design = {"exact": exact, "n_enum": n_enum,
              "pair_stratum": np.zeros(0, int), "fpc": np.zeros(0)}
    if not exact and left > 0:
        z, w, stratum, fpc = _sample_pairs(m, sizes[k:], n_pairs[k:], mass[k:],
                                           alloc[k:], left, rng)
        blocks.append(z)
        weights.append(w)
        design["pair_stratum"], design["fpc"] = stratum, fpc
    design["z"] = np.concatenate(blocks, axis=0) if blocks else np.zeros((0, m), bool)
    design["w"] = np.concatenate(weights) if weights else np.zeros(0)
    return design


def _all_pairs(m, s):
    """Every complementary pair of stratum ``s``: rows ``2p`` (size s) and ``2p + 1``."""
    if 2 * s == m:     # each pair once: the side holding feature 0
        combos = [(0,) + c for c in itertools.combinations(range(1, m), s - 1)]
    else:
        combos = list(itertools.combinations(range(m), s))
    z = np.zeros((len(combos), m), dtype=bool)
    z[np.repeat(np.arange(len(combos)), s), np.asarray(combos, dtype=int).ravel()] = True
    return _interleave(z)


def _interleave(z):
    """Rows ``z`` and their complements, interleaved: shape (2n, M)."""
    out = np.empty((2 * len(z), z.shape[1]), dtype=bool)
    out[0::2] = z
    out[1::2] = ~z
    return out


def _sample_pairs(m, sizes, n_pairs, mass, alloc, n, rng):
    """Stratified sample of ``n`` distinct complementary pairs over the given strata.

    Sizes are drawn by systematic sampling from ``alloc`` (so every stratum gets the
    floor or ceiling of its expected count); pairs are distinct within a stratum.
    Weights are ``mass / (2 * n * p)`` per row, rescaled to the strata's total mass.
    """
    p = alloc / alloc.sum()
    u = (rng.random() + np.arange(n)) / n
    counts = np.bincount(np.searchsorted(np.cumsum(p), u, side="right").clip(0, len(p) - 1),
                         minlength=len(p))
    counts = [min(int(c), n_) for c, n_ in zip(counts, n_pairs)]
    rows, weights, strata, fpc = [], [], [], np.zeros(len(sizes))
    for j, (s, c) in enumerate(zip(sizes, counts)):
        if c == 0:
            continue
        z = _distinct_subsets(m, int(s), int(c), n_pairs[j], rng)
        rows.append(_interleave(z))
        weights.append(np.full(2 * c, mass[j] / (2 * n * p[j])))
        strata.append(np.full(c, j))
        fpc[j] = max(0.0, 1.0 - c / n_pairs[j])
    w = np.concatenate(weights)
    w *= mass.sum() / w.sum()
    return np.concatenate(rows), w, np.concatenate(strata), fpc


def _distinct_subsets(m, s, count, population, rng):
    """``count`` distinct canonical sides of size ``s``, uniformly without replacement.

    For ``2 s == M`` the canonical side is the one holding feature 0.
    """
    half = 2 * s == m
    if population <= _ENUMERATE_LIMIT:
        every = _all_pairs(m, s)[0::2]
        return every[np.sort(rng.choice(population, size=count, replace=False))]
    seen, out = set(), []
    pool = m - 1 if half else m
    pick = s - 1 if half else s
    chunk = max(1, min(4 * count, 2_000_000 // pool))
    while len(out) < count:
        idx = np.argpartition(rng.random((chunk, pool)), pick - 1, axis=1)[:, :pick]
        z = np.zeros((chunk, m), dtype=bool)
        z[np.arange(chunk)[:, None], idx + int(half)] = True
        z[:, 0] |= half
        for row, key in zip(z, np.packbits(z, axis=1)):
            key = key.tobytes()
            if key not in seen and len(out) < count:
                seen.add(key)
                out.append(row)
    return np.asarray(out)


# --------------------------------------------------------------------------- solve

def _solve_with_surrogate(design, y, delta):
    """``_solve`` with the third-order control variate where it applies, (M, D) twice."""
    fit = None if design["exact"] else _third_order_basis(design["z"], design["w"], design)
    if fit is None:
        return _solve(design, y, delta)
    triples, coef_fn = fit
    z, w = design["z"], design["w"]
    m = z.shape[1]
    split = np.zeros((m, len(triples)))                  # Shapley values of each triple
    for k in range(3):
        split[triples[:, k], np.arange(len(triples))] = 1.0 / 3.0
    q_rows = np.zeros_like(y)
    q_full = np.zeros(y.shape[1])
    fits = []
    for col in range(y.shape[1]):
        fits.append(coef_fn(y[:, col]))
        a, q = fits[-1][:2]
        if a is not None:
            q_rows[:, col] = q
            q_full[col] = a.sum()
    hats = []
    phi, se = _solve(design, y - q_rows, delta - q_full, hats=hats,
                     ridge=[f[0] is None for f in fits])
    for col, (a, q, influence) in enumerate(fits):
        if a is None:
            continue
        phi[:, col] += split @ a
        se[:, col] = influence(hats[col], split)
    phi -= (phi.sum(axis=0) - delta) / m                 # remove rounding drift
    return phi, se


def _third_order_basis(z, w, design_rows):
    """Factorise the weighted third-order regression once; None when it does not apply.

    Returns ``(triples, coef_fn)``: ``triples`` (P, 3) feature indices, and
    ``coef_fn(y) -> (a, q, se_fn)``: the GCV-ridge coefficients of the triple products
    (P,), their part of the fit on the rows (R,), and ``se_fn(h, split)`` giving the
    standard errors of the final values; ``(None, None, None)`` when cross-validation
    prefers no triple products.

    The final values are linear in ``y``: ``phi = G y`` with
    ``G = h Z' W (I - T A) + split A`` (``A`` maps ``y`` to ``a``, ``T`` holds the triple
    products, ``h`` is Kernel SHAP's map). Their standard errors are the pair-clustered,
    stratified sandwich of the influences ``G[:, k] r_k / (1 - lev_k)``, with ``r`` the
    residuals of the whole third-order fit and ``lev`` its leverages (the HC3 correction,
    which undoes the fit's optimism); only sampled rows contribute.
    """
    n, m = z.shape
    n_pairs = m * (m - 1) // 2
    n_triples = math.comb(m, 3)
    n_base = m + n_pairs
    if n_triples == 0 or n_triples > _MAX_TRIPLES or n * (n_triples + n_base) > \
            _MAX_SURROGATE_CELLS or \
            n < n_base + n_triples + min(n_base + n_triples, _SPARE_ROWS):
        return None
    zf = z.astype(np.float64)
    sw = np.sqrt(w)
    iu = np.triu_indices(m, 1)
    triples = np.asarray(list(itertools.combinations(range(m), 3)), dtype=int)
    base = np.concatenate([zf, zf[:, iu[0]] * zf[:, iu[1]]], axis=1) * sw[:, None]
    q_basis, r = np.linalg.qr(base)
    diag = np.abs(np.diag(r))
    q_basis = q_basis[:, diag > diag.max() * 1e-10]
    t_rows = zf[:, triples[:, 0]] * zf[:, triples[:, 1]] * zf[:, triples[:, 2]]
    tw = t_rows * sw[:, None]
    tw -= q_basis @ (q_basis.T @ tw)                      # partial out the base terms
    u, s, vt = np.linalg.svd(tw, full_matrices=False)
    keep = s > s.max(initial=0.0) * 1e-10
    u, s, vt = u[:, keep], s[keep], vt[keep]
    if len(s) == 0:
        return None
    lams = np.concatenate([[0.0], (s ** 2).mean() * np.logspace(-6, 3, 37)])
    k_base = q_basis.shape[1]

    def coef_fn(y):
        yw = y * sw
        yr = yw - q_basis @ (q_basis.T @ yw)
        uy = u.T @ yr
        rss_none = float(yr @ yr)
        best = rss_none / max(1 - k_base / n, 1e-12) ** 2       # lambda = infinity
        best_lam = None
        for lam in lams:
            f = s ** 2 / (s ** 2 + lam)
            rss = rss_none - float((uy ** 2 * (2 * f - f ** 2)).sum())
            df = k_base + float(f.sum())
            if df >= n - 1:
                continue
            g = max(rss, 0.0) / (1 - df / n) ** 2
            if g < best * (1 - 1e-9):
                best, best_lam = g, lam
        if best_lam is None:
            return None, None, None
        f = s / (s ** 2 + best_lam)
        a = vt.T @ (uy * f)
        fitted_w = (yw - yr) + u @ (uy * s * f)              # weighted fit of all terms
        lev = (q_basis ** 2).sum(axis=1) + (u ** 2 @ (s * f))
        resid = (y - fitted_w / sw) / (1.0 - np.clip(lev, 0.0, 0.99))

        def se_fn(h, split):
            zw = (zf * w[:, None]).T                                       # Z' W, (M, R)
            # d phi / d a: the Shapley split of the triples, minus Kernel SHAP of their
            # rows, minus their share of the efficiency constant c = (delta - sum a) / M
            shift = (1.0 - h @ (zw @ zf.sum(axis=1))) / m
            c = split - h @ (zw @ t_rows) - shift[:, None]                 # (M, P)
            g = h @ zw + ((c @ (vt.T * f)) @ u.T) * sw                     # phi = g y
            return _influence_se(design_rows, g * resid)

        return a, t_rows @ a, se_fn

    return triples, coef_fn


def _solve(design, y, delta, hats=None, ridge=True):
    """Constrained weighted least squares; returns values and standard errors, (M, D).

    ``ridge`` (a bool, or one per column) False skips the GCV ridge (used after the
    surrogate, where rows are plentiful and a ridge would only bias the residual's values).
    ``hats``, if a list, receives each column's ``(M, M)`` map from the normal equations'
    right-hand side to the values (for the surrogate's standard errors).
    """
    z, w = design["z"], design["w"]
    m, d = z.shape[1], y.shape[1]
    if len(z) == 0:
        return np.repeat(delta[None, :] / m, m, axis=0), np.zeros((m, d))
    a = np.zeros((m, m))
    b = np.zeros((m, d))
    for start in range(0, len(z), _ROW_BLOCK):
        zb = z[start:start + _ROW_BLOCK].astype(np.float64)
        wz = zb * w[start:start + _ROW_BLOCK, None]
        a += wz.T @ zb
        b += wz.T @ y[start:start + _ROW_BLOCK]
    c = delta / m                                   # phi = c + u, sum(u) = 0
    rhs = b - np.outer(a.sum(axis=1), c)
    rhs -= rhs.mean(axis=0)
    e, v = _projected_eigh(a)
    rss0 = _weighted_rss0(z, w, y, c)
    phi = np.empty((m, d))
    se = np.zeros((m, d))
    for col in range(d):                            # each output column on its own
        bt = v.T @ rhs[:, col]
        use_ridge = ridge[col] if isinstance(ridge, (list, tuple)) else ridge
        lam = 0.0 if design["exact"] or not use_ridge else \
            _gcv_ridge(e, bt, rss0[col], len(z))
        phi[:, col] = c[col] + v @ (bt / (e + lam))
        phi[:, col] -= (phi[:, col].sum() - delta[col]) / m     # remove rounding drift
        if not design["exact"]:
            h = (v / (e + lam)) @ v.T
            se[:, col] = _standard_errors(design, y[:, col], phi[:, col], h)
            if hats is not None:
                hats.append(h)
    return phi, se


def _projected_eigh(a):
    """Eigenpairs of ``P A P`` on the subspace ``sum(u) = 0`` (``P = I - 11'/M``),
    without its null directions: ``e`` (K,), ``v`` (M, K)."""
    m = len(a)
    r = a.mean(axis=1)
    pap = a - r[:, None] - r[None, :] + r.mean()
    e, v = np.linalg.eigh(pap)
    ones = np.full(m, 1 / math.sqrt(m))
    keep = e > max(e.max(), 0.0) * m * 1e-12
    v = v[:, keep]
    v -= np.outer(ones, ones @ v)                   # exact projection off the 1 direction
    return e[keep], v


def _weighted_rss0(z, w, y, c):
    """Weighted residual sum of squares of the equal split, per column, (D,)."""
    out = np.zeros(y.shape[1])
    for start in range(0, len(z), _ROW_BLOCK):
        zb = z[start:start + _ROW_BLOCK].astype(np.float64)
        r = y[start:start + _ROW_BLOCK] - zb.sum(axis=1)[:, None] * c
        out += (w[start:start + _ROW_BLOCK, None] * r ** 2).sum(axis=0)
    return out


def _gcv_ridge(e, bt, yy, n):
    """Ridge parameter minimising generalised cross-validation, 0 included."""
    if n <= len(e) + 1:
        lams = e.mean() * np.logspace(-6, np.log10(_RIDGE_CAP), 40)
    else:
        lams = np.concatenate([[0.0], e.mean() * np.logspace(-6, np.log10(_RIDGE_CAP), 40)])
    b2 = bt ** 2
    best, best_lam = np.inf, 0.0
    for lam in lams:
        rss = yy - float((b2 * (e + 2 * lam) / (e + lam) ** 2).sum())
        df = float((e / (e + lam)).sum())
        g = max(rss, 0.0) / max(1 - df / n, 1e-12) ** 2
        if g < best * (1 - 1e-9):
            best, best_lam = g, lam
    return best_lam


def _standard_errors(design, y, phi, h):
    """Pair-clustered, stratified sandwich standard errors of one column, (M,)."""
    m = len(phi)
    n0 = design["n_enum"]
    z, w = design["z"][n0:], design["w"][n0:]
    if len(z) == 0:
        return np.zeros(m)
    g = np.zeros((len(z) // 2, m))                  # per-pair score: sum_rows w r z
    for start in range(0, len(z), _ROW_BLOCK):
        zb = z[start:start + _ROW_BLOCK].astype(np.float64)
        r = y[n0 + start:n0 + start + len(zb)] - zb @ phi
        gz = zb * (w[start:start + len(zb)] * r)[:, None]
        g[start // 2:(start + len(zb)) // 2] = gz[0::2] + gz[1::2]
    g = _center_by_stratum(g, design["pair_stratum"], design["fpc"])
    return np.sqrt(((g @ h) ** 2).sum(axis=0))


def _influence_se(design, influence):
    """Pair-clustered, stratified standard errors from per-row influences (M, R), (M,)."""
    n0 = design["n_enum"]
    g = influence[:, n0:].T
    if len(g) == 0:
        return np.zeros(influence.shape[0])
    g = g[0::2] + g[1::2]                                 # per complementary pair
    g = _center_by_stratum(g, design["pair_stratum"], design["fpc"])
    return np.sqrt((g ** 2).sum(axis=0))


def _center_by_stratum(g, strata, fpc):
    """Centre pair scores within strata (singletons pooled), scaled for unbiasedness."""
    counts = np.bincount(strata, minlength=len(fpc))
    group = np.where(counts[strata] >= 2, strata, -1)   # singleton strata pooled together
    out = np.zeros_like(g)
    for gid in np.unique(group):
        sel = group == gid
        n = sel.sum()
        if n < 2:
            continue
        scale = math.sqrt(n / (n - 1))
        f = fpc[strata[sel]][:, None] if gid >= 0 else 1.0
        out[sel] = (g[sel] - g[sel].mean(axis=0)) * scale * np.sqrt(f)
    return out
