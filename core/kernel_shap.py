"""Kernel SHAP: Shapley values of a set function by weighted least squares on paired samples.

The Shapley values of a game ``v`` over ``M`` features are the solution of

    minimise   sum_S  k(|S|) (v(S) - v(0) - sum_{j in S} phi_j)^2
    subject to sum_j phi_j = v(full) - v(0)

over all coalitions ``S`` (neither empty nor full), with the Shapley kernel
``k(s) = (M - 1) / (C(M, s) s (M - s))`` (Lundberg & Lee 2017). This module solves it exactly
when the budget allows every coalition, and otherwise on a sample. Sampling and solving are
separate steps:

* sampling (``_design``): coalitions come in complementary pairs ``(S, N \\ S)``; sizes are
  grouped into strata ``{s, M - s}``, enumerated whole while the budget allows, and the rest
  of the budget is shared between the other strata by systematic sampling, by default the
  same share for every size (the leverage scores of the regression, Musco & Witter 2025);
  within a stratum pairs are distinct (without replacement). Each pair is weighted by its
  kernel weight over its sampling rate (Horvitz-Thompson). A design of one phase (fewer
  than ``4 (M + 2)`` sampled pairs) is drawn several times and the one keeping 3-feature
  terms farthest from being linear combinations of the features on its pairs is kept
  (a small random design can alias such a term exactly: the fit is then wrong with
  residuals of 0); the choice ignores the features' labels, so inclusion probabilities
  and weights are unchanged.
* two phases (``_first_phase``, ``_choose_singles``): the enumerated strata and a quarter of
  each sampled stratum's pairs (at least ``2 (M + 2)`` of them) are evaluated first.
  A pair spends two evaluations to observe the odd part exactly; a single coalition spends
  one and observes the odd part plus the even part, ``e(x) = (v(S) + v(N \\ S)) / 2``,
  which the first phase's pairs observe exactly: a model of it is fitted to them (a level
  per coalition size and even interaction terms, products of 2 and 4 features, chosen by
  matching pursuit and cross-validation as for the odd part; a game of pairwise products
  has an exactly pairwise even part) and subtracted from the singles. When the even
  part's variance around that model is below half the odd residual's (a sigmoid of a
  weighted sum, as a segmentation probability; games of low order), the rest of the
  budget goes to single coalitions, one side of the remaining pairs and of as many new
  ones (drawn in the other strata where a stratum has too few left; near full
  enumeration, the other sides of some singles), weighted by their precision; otherwise
  to the remaining pairs (the estimate is then the one-phase one). The singles' standard
  errors add the even part's variance around the model (its cross-validated error, the
  model's own estimation error included), which the finite-population correction does not
  reduce. Either way one side of every remaining pair is evaluated (the side a single
  coalition would take, drawn before the choice): those rows are evaluated while the first
  phase's fits run in a worker thread (``_first_fits``), so the model need not wait for them
  where a core is free.
* solving (``_odd_solve``): with ``x = 2 z - 1`` (+-1 per feature), a pair observes the odd
  part of the game, ``o(x) = (v(S) - v(N \\ S)) / 2``, and the Shapley values depend on the odd
  part only (Fumagalli et al. 2026, "OddSHAP"): in the parity basis
  ``o(x) = sum_T c_T prod_{i in T} x_i`` over odd ``|T|``, each term gives ``2 c_T / |T|`` to
  each of its features. The first-order fit of ``o`` is paired Kernel SHAP; higher odd terms
  (3-feature terms, and 5- and 7-feature ones among the strongest features) are added by
  orthogonal matching pursuit, their number chosen by 10-fold cross-validation over pairs
  with a one-standard-error rule, and every 3-feature term at once (PolySHAP's third order)
  when the pairs determine it and its leave-one-out error is lower; from ``4 (M + 2)`` pairs
  also every 3-feature term under a ridge penalty on their coefficients (the first-order ones
  free), the penalty chosen by its exact leave-one-out error among those that leave the fit
  at most as many effective parameters as the pursuit may use, and kept when it beats the
  pursuit by more than one standard error: a network's output is a cloud of small
  interactions, where shrinking them all does better than choosing a few (only in the
  final fit: the first phase's decisions compare the unpenalised fits). The fit passes through
  the full coalition (``sum_T c_T = (v(N) - v(0)) / 2``, eliminated exactly), so the values
  sum to ``v(N) - v(0)`` to rounding error at any budget; it is unpenalised (no ridge bias).
  Under full enumeration the first-order fit alone is used and is exact. A game of order
  <= 4 has an odd part of order <= 3 and is recovered exactly once its terms are found.
* regression adjustment (``_adjust``), when the budget is too small for two phases (fewer
  than ``4 (M + 2)`` sampled pairs), and in two phases when the surrogate at least halves
  the first phase's cross-validated error (``_first_surrogates``: it is then subtracted
  from every value and both phases work on the residual game): a logistic-additive
  surrogate
  ``g(z) = c + d / (1 + exp(-(a + sum_i b_i z_i)))`` (a generalised additive model with a
  logit link, as a probability behaves) is fitted to every evaluated coalition (in two
  phases, the first phase's), both sides of the pairs (so the even part informs it too),
  by weighted least squares; its Shapley
  values are computed exactly (by enumeration up to 16 players, else by antithetic
  permutations, their error added to the standard errors), and the regression above
  estimates only those of the residual game ``v - g`` (Witter, Liu & Musco 2025,
  regression-adjusted Monte Carlo). It is kept when the residual game's cross-validated
  error, each pair's residual taken from the surrogate fitted without it (leave-pair-out of
  the linearised fit), is lower than the plain fit's by more than one standard error of
  the paired difference; a sigmoid of a weighted sum is then recovered exactly from
  ``M + 4`` pairs. In one phase, the standard errors are the larger of the residual game's
  and that held-out residual game's (the in-sample residuals can hide the surrogate's error).
  Where the coalitions' values are two levels that a hyperplane separates (a weighted
  majority), the fit steepens without end and its Shapley values are those of an arbitrary
  separating hyperplane, an error no residual shows: the surrogate is then kept only where
  refits without each fold give the same values (``_determined``).
* border pilot (``_border_reserve``, ``_border_pilot``, ``_border_adjust``), at the smallest
  one-phase budgets (the size-1 stratum not listed, fewer than ``_BORDER_PAIRS (M + 2)``
  pairs): ``M`` minus the drawn size-1 pairs are held back when the others still number
  ``M + 2``; when the plain fit on those pairs chooses no odd term beyond the first order
  and its cross-validated residuals are smaller than the odd part itself (``_BORDER_SHARE``:
  the first order predicts pairs it was not fitted to), the evaluations go to the missing
  size-1 pairs instead. The border estimate
  ``(v(i) - v(0) + v(N) - v(N \\ i)) / 2`` is exact for games of order 2 and free of
  sampling noise (kADD-SHAP's answer below its parameter count); its bias is measured by
  its residuals on the other pairs, and it is combined with the fit by inverse-error
  weights as below. Otherwise the held pairs are evaluated and the run is the plain one.
  With the border listed, a logistic surrogate is kept only where it is exact: its fit
  then rests on the listed size-1 pairs, whose misfit is a bias that no sandwich sees
  (one strong 3-feature term gave values 18 standard errors off; docs/benchmarks.md).
* boosted-trees adjustment (``trees``, on by default; what it gives and costs is in
  docs/benchmarks.md): where no logistic surrogate was kept,
  gradient-boosted trees (``boosted_trees``: splits on players, exact Shapley values in
  closed form) are fitted to all evaluated coalitions by cross-fitting: the pairs in
  ``_TREE_FOLDS`` folds, each fold's residuals ``v - g_k`` from trees fitted without it,
  so that the residual game's fit sees honest residuals. The adjusted values are the
  folds' mean surrogate's Shapley values plus the regression above on those residuals.
  Where their cross-validated error ``e_t`` is lower than the plain fit's ``e_p``, the
  values are the two estimates weighted by each other's error, ``e_p / (e_p + e_t)`` on
  the adjusted ones (inverse-error weights, as forecasts are combined: Bates & Granger
  1969): those errors often do not tell which of the two is better (docs/benchmarks.md),
  and the combination keeps most of the gain where the adjusted values are better and
  loses little where they are worse; the standard errors are combined with the same
  weights (as if the two errors were fully correlated). Tried up to ``_TREES_PLAYERS``
  players: beyond, on the games measured (the sample model's default runs at 93-295 cells,
  and synthetic games at 56-192 players with ``2 M + 2048`` coalitions), cross-validation
  never kept them, and they were 60-80 % of the estimator's time (docs/benchmarks.md).
* standard errors: the sandwich of the per-pair influences, stratified with a
  finite-population correction (enumerated strata contribute none). Each pair's squared
  residual is its cross-validated one (the terms chosen again without its fold), divided
  by ``1 + `` its leverage in that fold's fit: unbiased for a fixed fit, and carrying the
  variability of the terms' choice, which the values have too; without a
  selection, the in-sample one divided by its expected share of the noise (HC2, and its
  version for the ridge-penalised triples, see ``_pair_r2``); the variance is multiplied
  by ``nu / (nu - 2)`` for its Satterthwaite degrees of freedom ``nu`` (see
  ``_sandwich_se``), plus, for the
  penalised triples, the penalty's squared bias (a plug-in estimate, see ``_fit_odd``).
"""

import functools
import itertools
import math
import threading
import time
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Union

import numpy as np

from . import boosted_trees
from .batching import alongside, check_cancel, run_batched
from .solve_time import NO_CLOCK, Clock, round_seconds

_SAMPLINGS = ("balanced", "leverage", "kernel")
_ENUMERATE_LIMIT = 200_000     # strata with at most this many pairs are listed, not rejected
_ROW_BLOCK = 2048              # rows per block when forming the normal equations
_RIDGE_CAP = 1e-2              # largest ridge tried, relative to the mean eigenvalue
_MAX_TERMS = (600, 252, 120)   # candidate 3-, 5- and 7-feature terms, at most
_FOLDS = 10                    # cross-validation folds choosing the number of terms
_MAX_STEPS = 400               # terms added, at most
_STEP_SHARE = 0.6              # ... and at most this share of the training pairs
_SLACK = 1.0                   # standard errors of the paired difference a smaller model may lose
_BORDER_PAIRS = 3              # the size-1 stratum listed below this many times M + 2 pairs
_BORDER_SHARE = 1.0            # ... when the first-order fit leaves less of the odd part
_FIRST_SHARE = 0.25            # share of each sampled stratum's pairs in the first phase
_DESIGN_TRIES = 32             # draws of a one-phase design, the least aliased kept, at
_DESIGN_TRIES_MIN = 8          # most; at least this many, more while a term stays aliased
_ALIAS_TRIPLES = 1000          # 3-feature terms checked for aliasing, at most
_ALIASED = 1e-6                # ... aliased: less than this share of its column left
_DENSE_RIDGE = (1e-3, 1e-2, 3e-2, 0.1, 0.3, 1.0, 3.0, 10.0)   # ridge penalties of the dense
                               # triples tried, relative to their columns' mean squared norm
_BLOCKED_BASE = 48             # _omp adds more base columns than this at once (_base_block)
_KEPT = 3                      # results of a kept function kept for asking again (_Run), at
_KEPT_BYTES = 32 << 20         # most, for arguments of at most this size
_PATIENCE = 10                 # matching pursuit stops this many steps (or half the best
                               # count) after the held-out error last improved


@dataclass(frozen=True)
class ShapleyResult:
    """Shapley values of a (possibly vector-valued) game.

    Attributes
    ----------
    values : ndarray, shape (M,) or (M, D)
        Estimated Shapley value of every feature (per output column).
    standard_errors : ndarray, same shape as ``values``
        Estimated standard error of each value; 0 where the value is exact; NaN below
        ``M + 2`` sampled pairs, where it cannot be estimated (see ``kernel_shap``).
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


class _Run:
    """What a :func:`kernel_shap` run keeps: the last ``_KEPT`` results of each function
    decorated with ``_Run.kept`` (pure functions of arrays: factorisations the fits ask
    for again), per thread, with a copy of their arguments; asked again with the same
    arguments (arrays bit for bit) such a function returns the same arrays, read-only.
    Outside a run (``_Run.scope``) nothing is kept."""

    _local = threading.local()

    @classmethod
    def scope(cls, f):
        """``f`` run with a store of its own, dropped when it returns."""
        return cls._with(f, dict)

    @classmethod
    def carried(cls, f):
        """``f`` run with the calling thread's store, in whatever thread calls it (a worker
        of the same run; the two must not use the store at the same time)."""
        store = getattr(cls._local, "store", None)
        return cls._with(f, lambda: store)

    @classmethod
    def _with(cls, f, store):
        @functools.wraps(f)
        def run(*args, **kwargs):
            outer = getattr(cls._local, "store", None)
            cls._local.store = store()
            try:
                return f(*args, **kwargs)
            finally:
                cls._local.store = outer
        return run

    @classmethod
    def kept(cls, f):
        """``f(*arrays)`` (positional arguments, a tuple of arrays returned) kept in a run."""
        @functools.wraps(f)
        def kept_f(*args):
            store = getattr(cls._local, "store", None)
            if store is None:
                return f(*args)
            kept = store.setdefault(f.__name__, [])
            for key, out in kept:
                if all(k.shape == a.shape and np.array_equal(k, a) for k, a in zip(key, args)):
                    return out
            out = f(*args)
            if sum(a.nbytes for a in args) <= _KEPT_BYTES:
                for arr in out:
                    arr.flags.writeable = False
                kept.append((tuple(np.array(a) for a in args), out))
                del kept[:max(len(kept) - _KEPT, 0)]
            return out
        return kept_f


@_Run.scope
def kernel_shap(value_fn, n_features, n_samples, *, seed=0, batch_size=64, l1_reg=False,
                sampling="leverage", surrogate=True, trees=True, progress=None, cancel=None):
    """Estimate Shapley values with Kernel SHAP.

    Parameters
    ----------
    value_fn : callable
        ``value_fn(coalitions)`` takes a bool array of shape (n, M), True where a feature
        is present, and returns the game's value for every row, shape (n,) or (n, D).
        It is never called with more than ``batch_size`` rows, nor twice on the same
        coalition. A :class:`~.batching.Staged` one has the next batch prepared while this
        one finishes.
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
    sampling : {"leverage", "balanced", "kernel"}
        How the sampled part of the budget is shared between coalition sizes ``s``
        (and which strata are enumerated first). ``"leverage"`` (default) gives every
        size the same share: the leverage scores of the Kernel SHAP regression (Musco &
        Witter, "Provably accurate Shapley value estimation via leverage score
        sampling"), as shapiq's LeverageSHAP and OddSHAP do. ``"kernel"`` shares it in
        proportion to the Shapley kernel's mass per size, as shap does; ``"balanced"`` is
        their geometric mean, proportional to ``1 / sqrt(s (M - s))``. Every choice is
        weighted back to the kernel, so all are consistent.
    surrogate : bool
        Add odd interaction terms to the regression, chosen by matching pursuit and
        cross-validation, and, below two phases, the regression adjustment by a
        logistic-additive surrogate when cross-validation keeps it (see the module notes);
        False gives paired Kernel SHAP (the first-order fit only, for comparison).
    trees : bool
        With ``surrogate``, also try the boosted-trees adjustment on every sampled budget
        where no logistic surrogate was kept, up to ``_TREES_PLAYERS`` players (see the
        module notes); False leaves it out.
        Its cost grows with the coalitions times the players (``_TREE_FOLDS`` fits of
        ``boosted_trees`` per output column), after the last evaluation.
    progress : callable(float), optional
        Called after every batch and during the fits that follow the evaluations, with the
        fraction of the run's expected time spent: the evaluations at the pace they go, and
        the estimator's own work (:func:`solve_seconds`, then the pace of the trees'
        fits); 1 at the end. The values do not depend on it.
    cancel : callable() -> bool, optional
        Checked before every batch; True raises ``ExplanationCancelled``.

    Returns
    -------
    ShapleyResult

    Notes
    -----
    With fewer than ``M + 2`` pairs the first-order fit is not determined; the values then
    come from Kernel SHAP with a ridge penalty on ``phi - (full - base) / M`` chosen by
    generalised cross-validation (biased, but finite), and the standard errors are NaN:
    the fit (nearly) interpolates its pairs, so no residuals are left to estimate them (the
    sandwich gave 1e-17 where the values were 5-80 % off). ``explain_region`` refuses such
    budgets (``core.explain.min_samples``). Exact runs are never regularised and report
    standard errors of 0.

    Standard errors come from the sandwich (linearisation) variance of the fit, per
    complementary pair, within each sampled size stratum with a finite-population
    correction, with the small-sample remedies of the module notes; over seeds, about
    95 % of the true values lie within 1.96 of them (BENCHMARKS.md gives the coverage and
    the mean ``(error / SE)**2`` per game and budget).
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
    # two phases when the sampled pairs allow: the enumerated strata and half of every
    # sampled stratum's pairs first; then the rest of the pairs, or single coalitions when
    # the game's even part turns out smaller than its odd residual (see _choose_singles)
    first = _first_phase(design, rng) if surrogate and not design["exact"] else None
    # a small one-phase design holds back a few pairs for a pilot: when the other pairs
    # show no odd term beyond the first order, the size-1 stratum is completed instead
    held = _border_reserve(design, rng) if surrogate and first is None and design["pilot"] \
        else None
    total = len(coalitions)
    rows = np.arange(total) if first is None else np.concatenate([[0, 1], 2 + first])
    if held is not None:
        rows = np.setdiff1d(rows, 2 + held)
    check_cancel(cancel)
    clock = NO_CLOCK
    if progress is not None:
        clock = Clock(progress, 0.0 if design["exact"] else solve_seconds(
            m, n_samples, surrogate=surrogate, trees=trees))
        progress = clock.evaluations
    # the second phase's single coalitions (see below) are a function of the design and the
    # random generator only: drawn while the first phase is evaluated
    pairs = None if first is None else _first_pairs(design, first)[0]
    drawing = nullcontext(None) if first is None else \
        alongside(_single_rows, design, first, pairs, rng)
    with drawing as drawn_rows:
        values = run_batched(value_fn, coalitions[rows], batch_size, progress=progress,
                             cancel=cancel, total=total)
    values = np.asarray(values, dtype=np.float64)
    if values.ndim not in (1, 2):
        raise ValueError(f"value_fn must return shape (n,) or (n, D), got {values.shape}")
    scalar = values.ndim == 1
    y = np.full((total, values.reshape(len(rows), -1).shape[1]), np.nan)
    y[rows] = values.reshape(len(rows), -1)
    if held is not None:
        design, coalitions, y = _border_pilot(design, coalitions, y, held, value_fn, seed,
                                              batch_size, progress, cancel)
    v0, v1 = y[0].copy(), y[1].copy()
    units, thetas = None, None
    if first is not None:
        # both ways of spending the rest of the budget (see _choose_singles) evaluate one
        # side of every pair the first phase left, the side a single coalition takes: those
        # rows are evaluated while the first phase's fits choose the way
        extra, side, drawn = drawn_rows()
        left = len(design["pair_stratum"]) - len(pairs)
        with alongside(_Run.carried(_first_fits), design, first, y, coalitions[rows], rows,
                       v1 - v0, seed) as fitted:
            seen = _evaluated(value_fn, extra[:left], batch_size, progress, cancel,
                              len(rows), total)
            clock.pause()
            y, thetas, singles = fitted()
            clock.resume()
    r0, r1 = y[0], y[1]                        # the residual game's ends (the game's in one phase)
    if first is not None:
        if singles is not None:
            more = np.concatenate([seen, _evaluated(
                value_fn, extra[left:], batch_size, progress, cancel, len(rows) + left,
                len(rows) + len(extra))]) - _surrogate_values(thetas, extra)
            units = _single_units(design, first, drawn, side, y[2:] - r0, more - r0, singles)
            total = len(rows) + len(extra)
        else:
            # both rows of every pair left, in pairs; one side of each seen, now the other
            rest = np.setdiff1d(np.arange(len(design["z"])), first)
            at = np.arange(len(rest)).reshape(left, 2)
            flip = (side[:left] < 0).astype(int)         # 1: the complement was seen
            seen_at, other_at = at[np.arange(left), flip], at[np.arange(left), 1 - flip]
            more = np.empty((len(rest), seen.shape[1]))
            more[seen_at] = seen
            with alongside(_Run.carried(_prepare_solve), design) as prepared:
                more[other_at] = _evaluated(value_fn, design["z"][rest[other_at]],
                                            batch_size, progress, cancel, len(rows) + left,
                                            total)
                prepared()
            y[2 + rest] = more - _surrogate_values(thetas, design["z"][rest])
    clock.evaluated()
    if units is None:
        started = time.perf_counter()
        phi, se, cv = _odd_solve(design, y[2:] - r0, r1 - r0, surrogate, seed, with_cv=True)
        clock.solved(time.perf_counter() - started)
        clock.tick()
        open_cols = np.ones(y.shape[1], dtype=bool)    # columns with no surrogate kept
        if thetas is not None:
            open_cols = np.array([t is None for t in thetas])
        if surrogate and first is None and cv is not None:    # one phase
            phi, se, adjusted = _adjust(design, y, phi, se, cv, seed)
            open_cols &= ~adjusted
            if design["border"] and open_cols.any():
                phi, se = _border_adjust(design, y, phi, se, cv, open_cols)
        if trees and surrogate and cv is not None and not design["exact"] and open_cols.any():
            phi, se = _tree_adjust(design, coalitions, y, phi, se, cv, seed, open_cols, cancel,
                                   fits=clock.fits)
    else:
        phi, se = _odd_solve(design, None, r1 - r0, surrogate, seed, units=units)
    if thetas is not None:
        phi, se = _add_surrogates(thetas, phi, se, v1 - v0, seed)
    if scalar:
        phi, se, v0, v1 = phi[:, 0], se[:, 0], float(v0[0]), float(v1[0])
    clock.progress(1.0)
    return ShapleyResult(values=phi, standard_errors=se, base_value=v0, full_value=v1,
                         n_evaluations=int(total), exact=design["exact"])


# --------------------------------------------------------------------------- progress

#: The estimator's own work (everything but the value function), in boosted-trees rounds on
#: the run's rows (:func:`~.solve_time.round_seconds`): the fits, cross-validation and
#: surrogates, and the trees' adjustment (10 folds of 100 rounds, with their Shapley values)
#: when it is tried. Measured on the sample model's four default runs (M = 93-295 cells,
#: 2,234-2,638 coalitions), against rounds timed beside them: 397-450 rounds without the
#: trees (one calm series); 472-563 in another (one BLAS thread), 252-379 in a noisy one
#: (the machine is shared). The trees, tried up to ``_TREES_PLAYERS`` players: 1,091-1,292
#: rounds at M = 13-48 and 300-2,000 coalitions on a tanh game (/tmp script, 2026-12-06,
#: the best of two runs each), their Shapley values computed for all leaves at once
#: (1,896-2,080 rounds when a Python loop went over the leaves).
_SOLVE_ROUNDS = 430
_TREES_ROUNDS = 1200


def solve_seconds(n_features, n_samples, *, surrogate=True, trees=True):
    """The expected seconds :func:`kernel_shap` spends on its own work (all but the value
    function) for ``n_features`` players and ``n_samples`` coalitions on this machine,
    counting the trees' adjustment whenever it may be tried (it is, unless a surrogate is
    kept first). 0 for an exact run, and without ``surrogate`` (paired Kernel SHAP: one
    least-squares solve, a fraction of a second at M = 295). Arithmetic once the machine's
    round is timed (:func:`~.solve_time.calibrate`, about 50 ms the first time in a
    process)."""
    m, n = int(n_features), max(0, int(n_samples))
    if m < 1 or not surrogate or n >= 2 ** min(m, 62) - 2:
        return 0.0
    rounds = _SOLVE_ROUNDS
    if trees and _trees_fit(m, n // 2):
        rounds += _TREES_ROUNDS
    return rounds * round_seconds(m, n + 2)


# --------------------------------------------------------------------------- adjustment

_LM_STEPS = 50                 # Levenberg-Marquardt iterations of the surrogate's fit, at most
_EXACT_SURROGATE = 16          # the surrogate's Shapley values by enumeration up to M players
_PERMUTATIONS = 4096           # ... and by antithetic permutations above
_TREE_FOLDS = 10               # cross-fitting folds of the boosted-trees adjustment
_TREES_PLAYERS = 48            # ... tried up to this many players (see the module notes)
_EXACT_SHARE = 1e-20           # held-out error, relative to the values' squares, of a fit exact
                               # but for rounding (no trees tried on it; surrogates kept with
                               # the border listed only then)
_FIRST_GAIN = 0.5              # the first phase keeps the surrogate when it at least halves
                               # the cross-validated error (as singles must halve it)


def _adjust(design, y, phi, se, cv, seed):
    """Regression adjustment by a logistic-additive surrogate, per column where it predicts
    better (see the module notes); ``(phi, se)`` unchanged otherwise, and which columns
    were adjusted (bool, (D,)).

    ``y`` (R + 2, D) holds the values of the empty and full coalitions, then of the rows of
    ``design``; ``cv`` the plain fit's cross-validated residuals (see ``_odd_solve``).
    With the size-1 stratum listed by the border pilot (``design["border"]``), only an
    exact surrogate (cross-validated residuals of rounding size) is kept: otherwise its
    fit rests on the listed pairs, and their misfit, a bias, is in no standard error.
    """
    phi, se = phi.copy(), se.copy()
    adjusted = np.zeros(y.shape[1], dtype=bool)
    for col, kept in enumerate(_surrogates(design, y, cv, seed)):
        if kept is None:
            continue
        if design["border"] and not _rounding_only(kept[2], y[:, col]):
            continue
        adjusted[col] = True
        theta, r, _, r_held = kept
        phi_r, se_r = _odd_solve(design, (r[2:] - r[0])[:, None], r[1:2] - r[0], True, seed)
        # the standard errors: the larger of the residual game's and the held-out residual
        # game's (each pair's residual from the surrogate fitted without it): the surrogate
        # was fitted to these pairs, and its residuals there can hide its own error (a
        # strong term it cannot model, spread over every feature, with residuals a few
        # times too small); the held-out game's own choice of terms can fit it closer
        se_r = np.maximum(se_r, _odd_solve(design, (r_held[2:] - r_held[0])[:, None],
                                           r_held[1:2] - r_held[0], True, seed)[1])
        phi_r, se_r = _add_surrogates([theta], phi_r, se_r, y[1, col:col + 1] - y[0, col:col + 1],
                                      seed)
        phi[:, col], se[:, col] = phi_r[:, 0], se_r[:, 0]
    return phi, se, adjusted


def _rounding_only(held_out, v):
    """Whether the held-out residuals ``held_out`` of a fit to the values ``v`` (the empty
    and full coalitions, then the rows; (R + 2,)) are of rounding size: the fit is exact."""
    return not (held_out ** 2).sum() > _EXACT_SHARE * ((v[2:] - v[0]) ** 2).sum()


def _trees_fit(m, n_pairs):
    """Whether the boosted-trees adjustment is fitted on ``m`` players and ``n_pairs``
    sampled pairs: two pairs a fold at least, and at most ``_TREES_PLAYERS`` players."""
    return n_pairs >= 2 * _TREE_FOLDS and m <= _TREES_PLAYERS


def _tree_adjust(design, z, y, phi, se, cv, seed, columns, cancel, fits):
    """The boosted-trees adjustment of the given columns (bool, (D,); see the module
    notes), each where the residual game's cross-validated error is lower than the plain
    fit's ``cv``: then the two estimates weighted by each other's error; ``(phi, se)``
    unchanged elsewhere. ``z`` (R + 2, M) are the empty and full coalitions, then the
    rows of ``design``; ``y`` (R + 2, D) their values, all evaluated; ``cancel`` is
    checked before every fit; ``fits(done, total)`` (the run's clock) is told of the fits
    done."""
    m = phi.shape[0]
    n_pairs = len(design["z"]) // 2
    if not _trees_fit(m, n_pairs):
        return phi, se
    fold = np.random.default_rng([seed, 29]).permutation(n_pairs) % _TREE_FOLDS
    row_fold = np.concatenate([[-1, -1], np.repeat(fold, 2)])   # the ends: in every fit
    phi, se = phi.copy(), se.copy()
    todo = [col for col in np.flatnonzero(columns) if not _rounding_only(cv[col], y[:, col])]
    fits(0, len(todo) * _TREE_FOLDS)
    for c, col in enumerate(todo):
        v = y[:, col]
        r = v.copy()
        ends, phi_g = np.zeros(2), np.zeros(m)
        for k in range(_TREE_FOLDS):
            check_cancel(cancel)
            train = row_fold != k
            model = boosted_trees.fit(z[train], v[train])
            fits(c * _TREE_FOLDS + k + 1, len(todo) * _TREE_FOLDS)
            r[~train] -= model.predict(z[~train])
            ends += model.predict(z[:2]) / _TREE_FOLDS
            phi_g += model.shapley() / _TREE_FOLDS
        r[:2] -= ends                       # the residual game of the folds' mean surrogate
        phi_r, se_r, cv_r = _odd_solve(design, (r[2:] - r[0])[:, None], r[1:2] - r[0], True,
                                       seed, with_cv=True)
        if cv_r is None:
            continue
        err, err_r = (cv[col] ** 2).sum(), (cv_r[0] ** 2).sum()
        if not err_r < err:
            continue
        # the two estimates combined, each weighted by the other's cross-validated error
        # (inverse-error weights, as forecasts are combined: Bates & Granger 1969); the
        # standard errors likewise, as if the two errors were fully correlated
        lam = err / (err + err_r)
        phi_t = phi_r[:, 0] + phi_g
        phi_t -= (phi_t.sum() - (v[1] - v[0])) / m                    # rounding drift
        phi[:, col] = lam * phi_t + (1.0 - lam) * phi[:, col]
        se[:, col] = lam * se_r[:, 0] + (1.0 - lam) * se[:, col]
    return phi, se


def _border_reserve(design, rng):
    """Rows of ``design["z"]`` held back for ``_border_pilot``: as many pairs as the size-1
    stratum misses, from the other sampled strata in proportion to what each can spare
    (all but 2 pairs), at random within a stratum; None when they cannot spare that many,
    or when the pairs left would not determine the first-order fit (fewer than ``M + 2``).
    ``design`` has no enumerated rows; its stratum 0 is the size-1 stratum."""
    strata = design["pair_stratum"]
    m = design["z"].shape[1]
    need = m - int((strata == 0).sum())
    spare = np.maximum(np.bincount(strata, minlength=len(design["fpc"])) - 2, 0)
    spare[0] = 0
    if need <= 0 or spare.sum() < need or len(strata) - need < m + 2:
        return None
    quota = need * spare / spare.sum()
    take = np.floor(quota).astype(int)
    take[np.argsort(take - quota, kind="stable")[:need - take.sum()]] += 1
    take = np.minimum(take, spare)
    if take.sum() < need:
        return None
    pairs = np.concatenate([rng.permutation(np.flatnonzero(strata == j))[:t]
                            for j, t in enumerate(take) if t > 0])
    return np.sort(np.concatenate([2 * pairs, 2 * pairs + 1]))


def _border_pilot(design, coalitions, y, held, value_fn, seed, batch_size, progress, cancel):
    """Evaluate either the pairs ``held`` back (rows of ``design["z"]``) or the size-1
    pairs still missing, and return the design, its coalitions (the ends first) and
    their values (R + 2, D) that result.

    The pilot is the plain fit on the pairs already evaluated: where it chooses no odd
    term and its first order predicts the pairs (``_low_order``), the size-1 stratum
    is completed (the border estimate; see ``_border_adjust``) with the evaluations the
    held pairs would have taken; their strata's pairs are weighted to the strata's mass as
    in a first phase. Otherwise the held pairs are evaluated, and the design is the one
    drawn.
    """
    z, m = design["z"], design["z"].shape[1]
    done = np.setdiff1d(np.arange(len(z)), held)
    n_done = len(done) + 2
    if not _low_order(_first_design(design, done), y[2 + done] - y[0], y[1] - y[0], seed):
        more = run_batched(value_fn, z[held], batch_size, progress=progress, cancel=cancel,
                           done=n_done, total=len(coalitions))
        y[2 + held] = np.asarray(more, dtype=np.float64).reshape(len(held), -1)
        return design, coalitions, y
    strata = design["pair_stratum"]
    ones = _all_pairs(m, 1)                              # rows 2i: {i}, 2i + 1: N \ {i}
    drawn = np.flatnonzero(strata == 0)
    have = np.full(2 * m, -1)
    first_of = z[2 * drawn].argmax(axis=1)               # the feature of each drawn pair
    have[2 * first_of], have[2 * first_of + 1] = 2 + 2 * drawn, 3 + 2 * drawn
    missing = np.flatnonzero(have < 0)
    more = run_batched(value_fn, ones[missing], batch_size, progress=progress, cancel=cancel,
                       done=n_done, total=len(coalitions))
    kept = np.flatnonzero(strata != 0)
    kept = kept[~np.isin(2 * kept, held)]
    rest = np.stack([2 * kept, 2 * kept + 1], axis=1).ravel()
    sub = _first_design(design, rest)
    w = design["w"]
    # the stratum's mass as its drawn pairs carry it (every stratum's does), or the kernel's
    mass1 = (w[2 * drawn] + w[2 * drawn + 1]).sum() if len(drawn) else _strata(m)[2][0]
    new = {"z": np.concatenate([ones, sub["z"]]),
           "w": np.concatenate([np.full(2 * m, mass1 / (2 * m)), sub["w"]]),
           "n_enum": 2 * m, "pair_stratum": sub["pair_stratum"], "fpc": sub["fpc"],
           "exact": False, "border": True, "pilot": False}
    y_new = np.empty((2 + len(new["z"]), y.shape[1]))
    y_new[:2] = y[:2]
    y_new[2 + np.flatnonzero(have >= 0)] = y[have[have >= 0]]
    y_new[2 + missing] = np.asarray(more, dtype=np.float64).reshape(len(missing), -1)
    y_new[2 + 2 * m:] = y[2 + rest]
    return new, np.concatenate([coalitions[:2], new["z"]]), y_new


def _low_order(design, y, delta, seed):
    """Whether the pairs of ``design`` (values ``y`` less the empty coalition's, (R, D))
    show a game the first order predicts in every column: the plain fit chooses no odd
    term, and its cross-validated residuals leave less than ``_BORDER_SHARE`` of the odd
    part's weighted sum of squares (the first order predicts the pairs better than zero
    does). Both, since a strong term the pairs can see is chosen, and one they cannot see
    is left in the residuals."""
    chosen = []
    cv = _odd_solve(design, y, delta, True, seed, with_cv=True, chosen_out=chosen)[2]
    if cv is None or len(chosen) < y.shape[1] or any(c[1][0] for c in chosen):
        return False
    odd = 0.5 * (y[0::2] - y[1::2]) * np.sqrt(design["w"][0::2] + design["w"][1::2])[:, None]
    return all((c ** 2).sum() < _BORDER_SHARE * (odd[:, col] ** 2).sum()
               for col, c in enumerate(cv))


def _border_adjust(design, y, phi, se, cv, columns):
    """The border estimate combined with the fit, per given column (bool, (D,));
    ``(phi, se)`` unchanged elsewhere.

    The border estimate is ``(v(i) - v(0) + v(N) - v(N \\ i)) / 2`` shifted to sum to
    ``v(N) - v(0)``: exact for games of order 2, free of sampling noise, and what
    kADD-SHAP returns below its parameter count. Its error is a bias from the terms of
    order 3 and more, which the pairs of sizes 2 .. M - 2 measure without bias: each
    pair's weighted residual of the odd part, as the fit's held-out residuals are. The two
    are combined with inverse-error weights, as ``_tree_adjust`` does, against the fit's
    cross-validated error ``cv`` on the same pairs; the standard errors are combined with
    the same weights, the border's taken as its distance from the fit.
    ``design`` lists the size-1 stratum first (``design["border"]``); ``y`` (R + 2, D)
    holds the values of the empty and full coalitions, then of the rows of ``design``.
    """
    m = phi.shape[0]
    z = design["z"]
    x = np.where(z[2 * m::2], 1.0, -1.0)               # the other pairs' first sides
    sw = np.sqrt(design["w"][2 * m::2] + design["w"][2 * m + 1::2])
    phi, se = phi.copy(), se.copy()
    for col in np.flatnonzero(columns):
        v = y[:, col]
        singles, complements = v[2:2 + 2 * m:2], v[3:3 + 2 * m:2]   # v(i), v(N \\ i)
        border = 0.5 * ((singles - v[0]) + (v[1] - complements))
        border += ((v[1] - v[0]) - border.sum()) / m
        resid = (0.5 * (v[2 + 2 * m::2] - v[3 + 2 * m::2]) - 0.5 * x @ border) * sw
        err_b, err = (resid ** 2).sum(), (cv[col][m:] ** 2).sum()
        if not err > 0:
            continue                         # the fit is exact
        lam = err / (err + err_b)
        # the border's error per feature: its distance from the fit, which holds the
        # border's bias and the fit's noise (no variance of its own to estimate)
        sb = np.abs(phi[:, col] - border)
        phi[:, col] = lam * border + (1.0 - lam) * phi[:, col]
        phi[:, col] -= (phi[:, col].sum() - (v[1] - v[0])) / m        # rounding drift
        se[:, col] = (1.0 - lam) * se[:, col] + lam * sb
    return phi, se


def _surrogates(design, y, cv, seed):
    """The logistic-additive surrogate of every column where it is kept: a list of D
    entries, ``(theta, r, cv, r_held)`` (its parameters, the residual game ``v - g`` on the
    ends and the rows of ``design``, every pair's cross-validated residual in the fit of
    the residual game, and that game with each pair's residual from the surrogate fitted
    without it) or None. Kept when the rows determine the surrogate's Shapley values
    (``_determined``) and the residual game's cross-validated error is lower than the
    plain fit's by more than one standard error of the paired difference (as terms are
    chosen: the plain fit is the simpler)."""
    m = design["z"].shape[1]
    out = [None] * y.shape[1]
    if design["exact"] or len(design["z"]) // 2 < m + 4:
        return out
    z = np.concatenate([np.zeros((1, m), bool), np.ones((1, m), bool), design["z"]])
    w = np.concatenate([[0.0, 0.0], design["w"]])
    w /= w[2:].mean()
    w[:2] = 1e3 * w[2:].max()           # the surrogate passes (nearly) through both ends
    for col in range(y.shape[1]):
        fit = _logistic_fit(z, y[:, col], w)
        if fit is None:
            continue
        theta, held = fit
        with np.errstate(over="ignore"):
            r = y[:, col] - _logistic(theta, z)
        if not _determined(z, y[:, col], w, theta, r, seed):
            continue
        # held out: each pair's residual from the surrogate fitted without it, so that the
        # comparison with the plain fit does not favour the surrogate for fitting the pair
        r_held = np.concatenate([r[:2], y[2:, col] - held[2:]])
        cv_adj = _odd_solve(design, (r_held[2:] - r_held[0])[:, None],
                            r_held[1:2] - r_held[0], True, seed, with_cv=True,
                            dense_ridge=False)[2]
        if cv_adj is None:
            continue
        gain = cv[col] ** 2 - cv_adj[0] ** 2
        if gain.sum() > _SLACK * math.sqrt(len(gain) * gain.var()):
            out[col] = (theta, r, cv_adj[0], r_held)
    return out


def _first_pairs(design, first):
    """The sampled pairs of the first phase (indices into the sampled pairs), each sampled
    stratum's kernel mass (S,), and every such pair's factor rescaling its weight so that
    the stratum's first-phase pairs carry the stratum's mass."""
    n0 = design["n_enum"]
    pairs = (first[first >= n0][0::2] - n0) // 2
    strata, w = design["pair_stratum"], design["w"]
    pair_w = w[n0::2] + w[n0 + 1::2]
    mass = np.bincount(strata, pair_w, minlength=len(design["fpc"]))
    got = np.bincount(strata[pairs], pair_w[pairs], minlength=len(mass))
    return pairs, mass, (mass / np.where(got > 0, got, 1.0))[strata[pairs]]


def _first_design(design, first):
    """The first phase as a design of its own (for ``_odd_solve`` and ``_surrogates``): its
    rows, each sampled stratum's pairs weighted to the stratum's kernel mass, their strata
    and finite-population corrections."""
    n0 = design["n_enum"]
    pairs, mass, scale = _first_pairs(design, first)
    strata = design["pair_stratum"][pairs]
    w = design["w"][first].copy()
    w[n0:] *= np.repeat(scale, 2)
    population = np.asarray([float(p) for p in design["population"]])
    fpc = np.clip(1.0 - np.bincount(strata, minlength=len(mass)) / population, 0.0, 1.0)
    return {"z": design["z"][first], "w": w, "n_enum": n0, "pair_stratum": strata,
            "fpc": fpc, "exact": False}


def _first_fits(design, first, y, z, rows, delta, seed):
    """What the first phase's values decide (run while the second phase's first rows are
    evaluated): the surrogate per column where it is kept (``_first_surrogates``), the values
    ``y`` less it on the evaluated ``rows`` (bool coalitions ``z``; a new array: the two
    phases estimate the residual game's values, see ``_adjust``), and ``_choose_singles``'s
    choice on them."""
    thetas, chosen = _first_surrogates(design, first, y, delta, seed)
    y = y.copy()
    y[rows] -= _surrogate_values(thetas, z)
    return y, thetas, _choose_singles(design, first, y[2:] - y[0], y[1] - y[0], seed, chosen)


def _evaluated(value_fn, z, batch_size, progress, cancel, done, total):
    """``value_fn`` on the rows ``z`` (``run_batched``), as float64, shape (len(z), D)."""
    out = run_batched(value_fn, z, batch_size, progress=progress, cancel=cancel, done=done,
                      total=total)
    return np.asarray(out, dtype=np.float64).reshape(len(z), -1)


def _first_surrogates(design, first, y, delta, seed):
    """The surrogate's parameters per column where ``_surrogates`` keeps it on the first
    phase's pairs and the residual game's cross-validated error is at most ``_FIRST_GAIN``
    of the plain fit's, else None (a list of D); and the plain fit's choice of terms per
    column (``_odd_solve``'s ``chosen_out``, empty when it made none), which
    ``_choose_singles`` would make again on the same pairs where no surrogate is kept.
    The margin, as for single coalitions, is for the choice's noise and for what the
    first phase cannot see: with the whole budget the plain fit finds more terms, and a
    surrogate that only helps a little on a quarter of the pairs can cost more than it
    gives."""
    sub = _first_design(design, first)
    y_sub = np.concatenate([y[:2], y[2 + first]])
    chosen = []
    cv = _odd_solve(sub, y_sub[2:] - y_sub[0], delta, True, seed, with_cv=True,
                    dense_ridge=False, chosen_out=chosen)[2]
    if cv is None:
        return [None] * len(delta), chosen
    return [k[0] if k is not None and (k[2] ** 2).sum() <= _FIRST_GAIN * (cv[col] ** 2).sum()
            else None for col, k in enumerate(_surrogates(sub, y_sub, cv, seed))], chosen


def _surrogate_values(thetas, z):
    """The surrogates ``thetas`` (per column, or None: 0) on the bool rows ``z``, (n, D)."""
    out = np.zeros((len(z), len(thetas)))
    with np.errstate(over="ignore"):
        for col, theta in enumerate(thetas):
            if theta is not None:
                out[:, col] = _logistic(theta, z)
    return out


def _add_surrogates(thetas, phi, se, delta, seed):
    """The values of the game from those of the residual game ``v - g``: plus the
    surrogates' own Shapley values, their error added to the standard errors."""
    m = phi.shape[0]
    phi, se = phi.copy(), se.copy()
    for col, theta in enumerate(thetas):
        if theta is None:
            continue
        with np.errstate(over="ignore"):
            phi_g, var_g = _logistic_shapley(theta, m, seed)
        phi[:, col] += phi_g
        phi[:, col] -= (phi[:, col].sum() - delta[col]) / m        # rounding drift
        se[:, col] = np.sqrt(se[:, col] ** 2 + var_g)
    return phi, se


def _logistic(theta, z):
    """The surrogate ``c + d / (1 + exp(-(a + b . z)))`` on bool rows ``z``."""
    return theta[0] + theta[1] / (1.0 + np.exp(-(theta[2] + z @ theta[3:])))


def _logistic_fit(z, y, w):
    """Weighted least squares fit of the logistic-additive surrogate (Levenberg-Marquardt).

    ``z`` (n, M) bool: the empty and the full coalition, then complementary pairs; ``y``
    (n,) their values; ``w`` (n,) weights. Returns ``(theta, held)``: ``theta = (c, d, a,
    b_1 .. b_M)`` and every row's prediction by the fit linearised at ``theta`` without
    the row's pair (the ends: without the row), or None when the values are constant or
    the fit is not finite.
    """
    n, m = z.shape
    span = float(y.max() - y.min())
    if not span > 0:
        return None
    x1 = np.concatenate([np.ones((n, 1)), z.astype(np.float64)], axis=1)
    sw = np.sqrt(w)
    # start: the values scaled into (0, 1) by a slightly wider range, a linear fit of
    # their logit
    c, d = float(y.min()) - 0.05 * span, 1.1 * span
    p = np.clip((y - c) / d, 1e-3, 1 - 1e-3)
    beta = np.linalg.lstsq(x1 * sw[:, None], np.log(p / (1 - p)) * sw, rcond=None)[0]
    theta = np.concatenate([[c, d], beta])

    def residuals(th):
        s = 1.0 / (1.0 + np.exp(-(x1 @ th[2:])))
        return (th[0] + th[1] * s - y) * sw, lambda: np.concatenate(
            [np.ones((n, 1)), s[:, None], (th[1] * s * (1 - s))[:, None] * x1],
            axis=1) * sw[:, None]

    with np.errstate(over="ignore", under="ignore", invalid="ignore"):
        theta, r, jac = _levenberg_marquardt(residuals, theta)
    if theta is None:
        return None
    # leave-pair-out: the weighted residuals of a block B without it are
    # (I - H_BB)^-1 r_B, H the hat matrix of the linearised fit
    q = _orthonormal(jac)[0]
    h = q ** 2
    held = np.empty(n)
    ends = np.clip(1.0 - h[:2].sum(axis=1), 1e-12, None)
    held[:2] = r[:2] / ends
    a11, a22 = 1.0 - h[2::2].sum(axis=1), 1.0 - h[3::2].sum(axis=1)
    a12 = -(q[2::2] * q[3::2]).sum(axis=1)
    det = np.maximum(a11 * a22 - a12 ** 2, 1e-12)
    held[2::2] = (a22 * r[2::2] - a12 * r[3::2]) / det
    held[3::2] = (a11 * r[3::2] - a12 * r[2::2]) / det
    return theta, y + held / np.where(sw > 0, sw, 1.0)


def _determined(z, y, w, theta, r, seed):
    """Whether the rows ``z`` (values ``y``, weights ``w``) determine the Shapley values of
    the surrogate ``theta`` fitted to them (its residuals there ``r``): unless the rows are
    separated (``_separated``), yes; if they are, only when refits without each of
    ``_FOLDS`` groups of pairs (each started as the fit is, from its own rows) give the
    same Shapley values, to rounding.

    Under separation the fit steepens without end and every hyperplane that separates the
    rows fits them: the surrogate's Shapley values are then those of the one the
    iterations reached, and its residuals, on the rows and held out, are 0, so neither
    the residual game's standard errors nor cross-validation see their error (on a
    majority of 8 equal players from 34 coalitions, values from -0.04 to 0.24 about the
    true 0.125, with standard errors of 1e-14). Where the rows leave the hyperplane no
    freedom that changes the game on any coalition, the refits agree, and the surrogate
    is the game itself (a majority of 12 equal players from 1,024 coalitions: exact
    values). Between the two, the refits' spread (their grouped jackknife variance) is not
    an error to report: at 128-2,048 coalitions it was 2-45 x the squared error, mean
    (error / SE)^2 0.02-0.56 (docs/benchmarks.md)."""
    sw = np.sqrt(w)
    if not _separated(theta[2] + z @ theta[3:], y, sw, float(((r * sw) ** 2).sum())):
        return True
    m = z.shape[1]
    with np.errstate(over="ignore"):
        phi = _logistic_shapley(theta, m, seed)[0]
    tol = math.sqrt(_EXACT_SHARE) * max(float(np.linalg.norm(phi)), 1e-300)
    fold = np.repeat(np.arange((len(z) - 2) // 2) % _FOLDS, 2)
    for k in range(min(_FOLDS, int(fold.max(initial=-1)) + 1)):
        keep = np.concatenate([[0, 1], 2 + np.flatnonzero(fold != k)])
        refit = _logistic_fit(z[keep], y[keep], w[keep])
        if refit is None:
            return False
        with np.errstate(over="ignore"):
            if not np.linalg.norm(_logistic_shapley(refit[0], m, seed)[0] - phi) <= tol:
                return False
    return True


def _separated(lin, y, sw, cost):
    """Whether the rows separate: the surrogate's step limit (its linear part ``lin`` on
    the rows scaled up without end, ``c`` and ``d`` fitted again) fits the values ``y``
    (weights ``sw ** 2``) at least as well as the surrogate's weighted squared residuals
    ``cost``. That is complete separation, as in logistic regression: the rows' values
    are two levels that a hyperplane of the players separates (a weighted majority, or
    any threshold of a weighted sum), and the fit's slope is not determined."""
    step = np.where(lin > 0.0, 1.0, np.where(lin < 0.0, 0.0, 0.5))
    cols = np.stack([np.ones_like(step), step], axis=1) * sw[:, None]
    target = y * sw
    fitted = cols @ np.linalg.lstsq(cols, target, rcond=None)[0]
    spread = float(((target - sw * np.average(y, weights=sw ** 2)) ** 2).sum())
    return float(((target - fitted) ** 2).sum()) <= cost + _EXACT_SHARE * spread


def _levenberg_marquardt(residuals, theta):
    """Minimise ``|r(theta)|^2`` from ``theta``; ``residuals(theta) -> (r, jacobian)``, the
    jacobian as a function of no arguments (formed only at the steps taken, not at the
    ones the damping rejects). Returns ``(theta, r, jacobian)`` at the minimum found, or
    ``(None, None, None)`` when it is not finite."""
    r, jac_at = residuals(theta)
    cost = float(r @ r)
    if not np.isfinite(cost):
        return None, None, None
    jac = jac_at()
    lam = 1e-3
    for _ in range(_LM_STEPS):
        jtj, grad = jac.T @ jac, jac.T @ r
        scale = np.maximum(np.diag(jtj), 1e-12)
        for _ in range(10):           # raise the damping until a step lowers the cost
            step = np.linalg.solve(jtj + lam * np.diag(scale), -grad)
            r_new, jac_at = residuals(theta + step)
            cost_new = float(r_new @ r_new)
            if np.isfinite(cost_new) and cost_new < cost:
                break
            lam *= 10.0
        else:
            break
        theta, r, jac, lam = theta + step, r_new, jac_at(), max(lam / 10.0, 1e-12)
        gain, cost = cost - cost_new, cost_new
        if gain <= 1e-10 * cost:
            break
    if not np.all(np.isfinite(theta)):
        return None, None, None
    return theta, r, jac


def _logistic_shapley(theta, m, seed):
    """Shapley values of the surrogate, (M,), and the variance of their error (M,): exact
    (0) up to ``_EXACT_SURROGATE`` players, else antithetic permutation sampling."""
    d, a, b = theta[1], theta[2], theta[3:]
    if m <= _EXACT_SURROGATE:
        k = np.arange(2 ** m, dtype=np.int64)
        bits = (k[:, None] >> np.arange(m)) & 1
        value = d / (1.0 + np.exp(-(a + bits @ b)))
        size = bits.sum(axis=1)
        weight = np.array([1.0 / (m * math.comb(m - 1, s)) for s in range(m)])
        out = np.empty(m)
        for i in range(m):
            without = k[bits[:, i] == 0]
            out[i] = weight[size[without]] @ (value[without | (1 << i)] - value[without])
        return out, np.zeros(m)
    rng = np.random.default_rng([seed, 23])
    half = _PERMUTATIONS // 2
    perms = np.argsort(rng.random((half, m)), axis=1)
    perms = np.concatenate([perms, perms[:, ::-1]])
    path = a + np.concatenate([np.zeros((len(perms), 1)), np.cumsum(b[perms], axis=1)], axis=1)
    gain = np.diff(d / (1.0 + np.exp(-path)), axis=1)
    per = np.empty_like(gain)
    np.put_along_axis(per, perms, gain, axis=1)
    pairs = 0.5 * (per[:half] + per[half:])             # a permutation and its reverse
    return pairs.mean(axis=0), pairs.var(axis=0, ddof=1) / half


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
    # a small one-phase design may list the size-1 stratum after a pilot (``_border_pilot``)
    pilot = k == 0 and len(sizes) > 1 and m + 2 < left < _BORDER_PAIRS * (m + 2)
    design = {"exact": exact, "n_enum": n_enum, "border": False, "pilot": pilot,
              "pair_stratum": np.zeros(0, int), "fpc": np.zeros(0), "population": n_pairs[k:],
              "sizes": sizes[k:]}
    if not exact and left > 0:
        fixed = (np.concatenate(blocks), np.concatenate(weights)) if blocks else None
        z, w, stratum, fpc = _sample_pairs(m, sizes[k:], n_pairs[k:], mass[k:],
                                           alloc[k:], left, rng, fixed)
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


def _combination(n, k, rank):
    """The ``rank``-th (from 0) ``k``-subset of ``range(n)`` in ``itertools.combinations``'
    (lexicographic) order."""
    out, x = [], 0
    for left in range(k, 0, -1):
        while True:
            with_x = math.comb(n - x - 1, left - 1)      # subsets continuing with x
            if rank < with_x:
                break
            rank -= with_x
            x += 1
        out.append(x)
        x += 1
    return out


def _interleave(z):
    """Rows ``z`` and their complements, interleaved: shape (2n, M)."""
    out = np.empty((2 * len(z), z.shape[1]), dtype=bool)
    out[0::2] = z
    out[1::2] = ~z
    return out


def _sample_pairs(m, sizes, n_pairs, mass, alloc, n, rng, fixed=None):
    """Stratified sample of ``n`` distinct complementary pairs over the given strata.

    Sizes are drawn by systematic sampling from ``alloc`` (so every stratum gets the
    floor or ceiling of its expected count); pairs are distinct within a stratum.
    Weights are ``mass / (2 * n * p)`` per row, rescaled to the strata's total mass.

    With few pairs (one phase: fewer than ``4 (M + 2)`` sampled), the pairs of every
    stratum are drawn several times for the same counts (``_DESIGN_TRIES_MIN``, up to
    ``_DESIGN_TRIES`` while some 3-feature term stays aliased with the features: at 31
    pairs for 16 features, 4 draws in 5 do) and the draw that keeps fewest 3-feature
    terms aliased is kept (``_aliasing``, with the
    enumerated rows ``fixed``: (rows, weights)): a small random design can make such a
    term an exact linear combination of the features on the sampled pairs, and the fit then
    puts the term's effect on the wrong features while fitting the pairs exactly, so that
    its standard errors see nothing. The criterion does not depend on the features'
    labels, so every coalition keeps the inclusion probability of a uniform draw within its
    stratum and the weights stay right (a balanced design: only joint inclusion changes).
    """
    p = alloc / alloc.sum()
    u = (rng.random() + np.arange(n)) / n
    counts = np.bincount(np.searchsorted(np.cumsum(p), u, side="right").clip(0, len(p) - 1),
                         minlength=len(p))
    counts = [min(int(c), n_) for c, n_ in zip(counts, n_pairs)]
    weights, strata, fpc = [], [], np.zeros(len(sizes))
    for j, c in enumerate(counts):
        if c == 0:
            continue
        weights.append(np.full(2 * c, mass[j] / (2 * n * p[j])))
        strata.append(np.full(c, j))
        fpc[j] = max(0.0, 1.0 - c / n_pairs[j])
    w = np.concatenate(weights)
    w *= mass.sum() / w.sum()
    n_fixed = 0 if fixed is None else len(fixed[0]) // 2
    tries = _DESIGN_TRIES if m >= 3 and m + 2 <= n_fixed + sum(counts) < 4 * (m + 2) else 1
    best, best_key, triples = None, None, None
    for k in range(tries):
        if k >= _DESIGN_TRIES_MIN and best_key[0] == 0:
            break
        z = np.concatenate([_interleave(_distinct_subsets(m, int(s), c, n_pairs[j], rng))
                            for j, (s, c) in enumerate(zip(sizes, counts)) if c > 0])
        if tries == 1:
            best = z
            break
        if triples is None:
            triples = _some_triples(m, rng)
        rows, row_w = (z, w) if fixed is None else (np.concatenate([fixed[0], z]),
                                                   np.concatenate([fixed[1], w]))
        key = _aliasing(rows[0::2], row_w[0::2] + row_w[1::2], triples)
        if best_key is None or key < best_key:
            best, best_key = z, key
    return best, w, np.concatenate(strata), fpc


def _some_triples(m, rng):
    """The 3-feature sets ``_aliasing`` checks: all of them, or ``_ALIAS_TRIPLES`` drawn
    at random when there are more (distinct; a draw that ignores the labels)."""
    total = math.comb(m, 3)
    if total <= _ALIAS_TRIPLES:
        return np.array(list(itertools.combinations(range(m), 3)))
    ranks = rng.choice(total, size=_ALIAS_TRIPLES, replace=False)
    return np.array([_combination(m, 3, int(r)) for r in ranks])


def _aliasing(z, w, triples):
    """How badly the pairs whose first sides are ``z`` (weights ``w``) alias the 3-feature
    terms ``triples`` (each as it enters the odd fit: its weighted column less the
    reference feature 0's), as a key to minimise: the number of terms that are exact
    linear combinations of the first-order columns (the first-order fit then gives their
    effect to the wrong features with no residual), the number that are of the first-order
    columns and one other term (matching pursuit can then pick the wrong one), and minus
    the smallest share of a term's norm left outside the first-order columns. None of it
    depends on the features' labels."""
    x = np.where(z, 1.0, -1.0)
    sw = np.sqrt(w)
    u = _orthonormal(_base_columns(x, sw))[0]
    cols = (x[:, triples[:, 0]] * x[:, triples[:, 1]] * x[:, triples[:, 2]] - x[:, :1]) * \
        sw[:, None]
    resid = cols - u @ (u.T @ cols)                 # outside the first-order fit
    # relative to the product's own norm (the same for every term), so that no feature,
    # the reference one included, is favoured: the key ignores the labels
    norm = math.sqrt(float(w.sum()))
    left = np.linalg.norm(resid, axis=0)
    share = left / max(norm, 1e-300)
    alone = share > _ALIASED
    unit = resid[:, alone] / left[alone]
    cos2 = (unit.T @ unit) ** 2
    np.fill_diagonal(cos2, 0.0)
    paired = int((cos2.max(axis=1, initial=0.0) > 1.0 - _ALIASED ** 2).sum())
    return int((~alone).sum()), paired, -float(share.min(initial=1.0))


def _distinct_subsets(m, s, count, population, rng):
    """``count`` distinct canonical sides of size ``s``, uniformly without replacement.

    For ``2 s == M`` the canonical side is the one holding feature 0.
    """
    half = 2 * s == m
    if population <= _ENUMERATE_LIMIT:
        picked = np.sort(rng.choice(population, size=count, replace=False))
        if 8 * count >= population:
            return _all_pairs(m, s)[0::2][picked]
        # the same rows without listing the stratum: the picked ranks' combinations
        z = np.zeros((count, m), dtype=bool)
        for row, rank in zip(z, picked):
            if half:
                row[[0] + [i + 1 for i in _combination(m - 1, s - 1, int(rank))]] = True
            else:
                row[_combination(m, s, int(rank))] = True
        return z
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


# --------------------------------------------------------------------------- two phases

def _first_phase(design, rng):
    """Rows of ``design["z"]`` evaluated first: the enumerated strata and a random share of
    every sampled stratum's pairs (``_FIRST_SHARE``, more when needed for ``2 (M + 2)``
    sampled pairs, on which the choice is made; at least 2 a stratum), sorted; None when the
    first phase would leave fewer than 2 pairs or take more than half the sampled ones."""
    z, n0 = design["z"], design["n_enum"]
    strata = design["pair_stratum"]
    m, n_sampled = z.shape[1], len(strata)
    if m < 4 or n_sampled < 4:
        return None
    share = max(_FIRST_SHARE, 2 * (m + 2) / n_sampled)
    if share > 0.5:
        return None
    keep = []
    for j in np.unique(strata):
        idx = np.flatnonzero(strata == j)
        take = min(len(idx), max(2, math.ceil(share * len(idx))))
        keep.append(np.sort(rng.permutation(idx)[:take]))
    pairs = np.concatenate(keep)
    if n_sampled - len(pairs) < 2:
        return None
    return np.concatenate([np.arange(n0), n0 + np.stack([2 * pairs, 2 * pairs + 1], 1).ravel()])


def _full_pairs(design, first, y):
    """The pairs evaluated in the first phase: indices into the sampled pairs, +-1 first
    sides, odd and even parts (P, D), and their weights rescaled to the stratum's mass."""
    n0 = design["n_enum"]
    pairs, mass, scale = _first_pairs(design, first)
    idx = np.concatenate([np.arange(n0 // 2), n0 // 2 + pairs])
    x = np.where(design["z"][2 * idx], 1.0, -1.0)
    odd = 0.5 * (y[2 * idx] - y[2 * idx + 1])
    even = 0.5 * (y[2 * idx] + y[2 * idx + 1])
    w = design["w"][2 * idx] + design["w"][2 * idx + 1]
    w[n0 // 2:] *= scale
    return pairs, x, odd, even, w, mass


def _choose_singles(design, first, y, delta, seed, chosen=()):
    """Whether single coalitions beat pairs for the rest of the budget, from the first phase.

    A pair costs two evaluations and observes the odd part exactly: its error in the
    regression is the odd residual (variance ``s_o``, left by the fit with the terms that
    cross-validation chooses on the first phase's pairs, as the final fit would). A single
    coalition costs one and observes the odd part plus the even part, which is modelled
    from the pairs (``_even_model``): its error variance is ``s_o + s_e``, ``s_e`` the even
    part's (cross-validated) variance around the model. Two singles carry more information
    than a pair when ``s_e < s_o`` (a saturating game's even part is a few % of its odd
    residual around a level per size; a game of pairwise products has an even part of
    pairwise products, which the model's terms capture); singles are taken when
    ``s_e < s_o / 2`` (at least 4/3 the information), since both are estimates and a wrong
    choice of singles can cost far more than the 2x a wrong choice of pairs can. Both are
    kernel-weighted and estimated on the sampled pairs only. Returns None (pairs) or a dict
    with the even part's models ``even`` (one per column, for ``_even_predict``), its
    residual variance per stratum ``even_var`` (S, D) and the singles' precision factor
    ``share = s_o / (s_o + s_e)`` (D,).
    """
    pairs, x, odd, even, w, mass = _full_pairs(design, first, y)
    n_enum = design["n_enum"] // 2
    strata = design["pair_stratum"][pairs]
    n_strata = len(design["fpc"])
    counts = np.bincount(strata, minlength=n_strata)
    sw = np.sqrt(w)
    base = _base_columns(x, sw)
    ws = w[n_enum:]
    usable = counts[strata] >= 2
    if not usable.any():
        return None
    models = []
    even_var = np.zeros((n_strata, len(delta)))
    shares = np.zeros(len(delta))
    for col in range(len(delta)):
        target = (odd[:, col] - 0.5 * delta[col] * x[:, 0]) * sw
        terms, held, _, ridge = _selection(chosen, col, (base, x, sw, target,
                                                         0.5 * delta[col], seed, False))
        cols, fit, lev, lev2 = _fit_map(base, x, sw, terms, ridge)
        # the noise the pairs leave; the selection's variability is not counted: the fit
        # bears it whether the rest of the budget goes to pairs or to singles
        r2 = _pair_r2(target - cols @ (fit @ target), lev, lev2, held, selection=False)
        s_o = float(r2[n_enum:].sum() / ws.sum())
        model, e2 = _even_model(x, even[:, col], sw,
                                _ranking(base, target, 0.5 * delta[col]), seed)
        models.append(model)
        dev = e2[n_enum:] / ws                  # squared residuals, unweighted
        s_e = float((ws * dev)[usable].sum() / ws[usable].sum())
        if not s_e < 0.5 * s_o:        # a margin for the estimates' noise: a wrong
            return None                  # 'singles' can cost far more than a wrong 'pairs'
        shares[col] = s_o / (s_o + s_e)
        # the model's error where it predicts, per stratum (its held-out errors over the
        # stratum's pairs, the pooled one where fewer than 2)
        within = np.bincount(strata, dev, minlength=n_strata) / np.maximum(counts, 1)
        even_var[:, col] = np.where(counts >= 2, within, s_e)
    return {"even": models, "even_var": even_var, "share": shares, "pairs": pairs,
            "x": x, "odd": odd, "w": w, "mass": mass}


def _selection(chosen, col, args):
    """``_select_terms(*args)``, or the choice ``chosen[col]`` (an entry of ``_odd_solve``'s
    ``chosen_out``) when it was made with the same arguments, bit for bit (``args``:
    ``(base, x, sw, target, half_total, seed, dense_ridge)``)."""
    if col < len(chosen):
        made, selection = chosen[col]
        if all(np.array_equal(a, b) if isinstance(a, np.ndarray) else a == b
               for a, b in zip(made, args)):
            return selection
    return _select_terms(*args)


def _even_model(x, even, sw, ranking, seed):
    """A model of the game's even part ``e(x) = (v(S) + v(N \\ S)) / 2`` from the pairs
    (first sides ``x``, +-1): a constant per coalition size ``min(|S|, M - |S|)`` plus even
    interaction terms (products of 2 features, and of 4 among the strongest), chosen by
    matching pursuit and cross-validation, weighted by the pairs' weights (``sw``: square
    roots), as the singles' errors enter the regression.

    Returns the model (for ``_even_predict``) and every pair's squared weighted residual
    when it was held out (cross-validated; leave-one-out when no term is tried): the model's
    error where it predicts, at coalitions it was not fitted to, its own estimation error
    included.
    """
    n, m = x.shape
    size = _size_class(x)
    classes = np.unique(size)
    base = (size[:, None] == classes[None, :]) * sw[:, None]
    pool = _candidate_terms(m, ranking, ((2, _MAX_TERMS[0]), (4, _MAX_TERMS[1])))
    target = even * sw
    n_train = n * (_FOLDS - 1) // _FOLDS
    k_max = min(len(pool), _MAX_STEPS, int(_STEP_SHARE * n_train) - len(classes))
    order, held_out = [], None
    if k_max > 0 and n >= 2 * _FOLDS:
        cols = np.concatenate([base, _products(x, pool) * sw[:, None]], axis=1)
        order, held_out, _ = _cv_pursuit(cols, target, len(classes), k_max, seed, False)
    terms = [pool[j - len(classes)] for j in order]
    cols = np.concatenate([base, _products(x, terms) * sw[:, None]], axis=1)
    u, inv = _orthonormal(cols)
    coef = inv @ (u.T @ target)
    resid = target - cols @ coef
    if held_out is None:
        held_out = resid / (1.0 - np.clip((u ** 2).sum(axis=1), 0.0, 0.99))
    level = np.zeros(m // 2 + 1)
    level[classes] = coef[:len(classes)]
    return {"level": level, "terms": terms, "coef": coef[len(classes):]}, held_out ** 2


def _size_class(x):
    """``min(|S|, M - |S|)`` of every row's coalition (``x``: +-1)."""
    size = (x > 0).sum(axis=1)
    return np.minimum(size, x.shape[1] - size)


def _products(x, terms):
    """Parity products of ``terms`` on the rows ``x`` (+-1), (n, len(terms)): the terms of
    one order at once, a feature at a time, on the features' rows of ``x.T`` as int8
    (products of +-1 are exact in any order and type)."""
    out = np.empty((len(x), len(terms)))
    orders = np.fromiter((len(t) for t in terms), dtype=np.int64, count=len(terms))
    signs = np.ascontiguousarray(x.T, dtype=np.int8)
    for order in np.unique(orders):
        at = np.flatnonzero(orders == order)
        features = np.array([terms[k] for k in at], dtype=np.int64).reshape(len(at), order)
        prod = signs[features[:, 0]]
        for k in range(1, order):
            prod *= signs[features[:, k]]
        out[:, at] = prod.T
    return out


def _even_predict(models, x):
    """The even part predicted by ``_even_model``'s models (one per column) at ``x``, (n, D)."""
    size = _size_class(x)
    return np.stack([mod["level"][size] + _products(x, mod["terms"]) @ mod["coef"]
                     for mod in models], axis=1)


def _single_rows(design, first, pairs, rng):
    """Single coalitions for the second phase: one random side of every pair not yet
    evaluated (the sampled pairs not among the first phase's ``pairs``, by index), and one
    of as many new pairs, distinct, in each sampled stratum (see ``_new_pairs``; when they
    run out, the other sides of some singles). A function of the design and ``rng`` only.

    Returns the rows (E + C, M), the singles' signs (E,) (+1: the canonical side, the one
    ``_distinct_subsets`` returns) and a dict: their strata and canonical sides as +-1
    (E, M), and ``other`` (C,), the singles whose pair is completed by the last C rows.
    """
    z, n0 = design["z"], design["n_enum"]
    m = z.shape[1]
    strata = design["pair_stratum"]
    rest = np.setdiff1d(np.arange(len(strata)), pairs)
    canon = [z[n0 + 2 * rest]]
    unit_strata = [strata[rest]]
    for j, want in _new_pairs(design, rest).items():
        have = z[n0 + 2 * np.flatnonzero(strata == j)]
        population = int(design["population"][j])
        draw = min(population, len(have) + want)
        cand = _distinct_subsets(m, int(design["sizes"][j]), draw, population, rng)
        seen = {row.tobytes() for row in np.packbits(have, axis=1)}
        new = np.array([k for k, row in enumerate(np.packbits(cand, axis=1))
                        if row.tobytes() not in seen], dtype=int)
        new = rng.permutation(new)[:want]
        canon.append(cand[new])
        unit_strata.append(np.full(len(new), j))
    canon = np.concatenate(canon)
    sign = np.where(rng.random(len(canon)) < 0.5, 1.0, -1.0)
    rows = np.where(sign[:, None] > 0, canon, ~canon)
    # near full enumeration the strata run out of pairs: the rest of the budget completes
    # as many singles' pairs (their other sides last), which then count as pairs
    other = np.sort(rng.permutation(len(canon))[:max(0, 2 * len(rest) - len(canon))])
    return np.concatenate([rows, ~rows[other]]), sign, \
        {"strata": np.concatenate(unit_strata), "x": np.where(canon, 1.0, -1.0),
         "other": other}


def _new_pairs(design, rest):
    """New pairs to draw (one side each) per sampled stratum, ``{stratum: count}``: as many
    as the stratum's pairs not evaluated (``rest``), so that singles spend what those pairs
    would have; where a stratum has too few pairs left unsampled, the shortfall goes to the
    other sampled strata that have some, one at a time in turn, so that the whole budget
    is spent (when the strata together have too few, see ``_single_rows``)."""
    strata = design["pair_stratum"]
    sampled = np.unique(strata)
    want = np.bincount(strata[rest], minlength=len(design["fpc"]))
    drawn = np.bincount(strata, minlength=len(want))
    # pairs left unsampled, capped by what could be wanted (populations are Python ints,
    # astronomically large for big M)
    spare = np.array([min(int(p) - int(d), int(want.sum())) for p, d in
                      zip(design["population"], drawn)], dtype=np.int64)
    take = np.minimum(want, spare)
    short = int((want - take).sum())
    while short > 0:
        open_ = sampled[take[sampled] < spare[sampled]]
        if len(open_) == 0:
            break
        take[open_[:short]] += 1
        short -= min(short, len(open_))
    return {int(j): int(take[j]) for j in sampled if take[j] > 0}


def _single_units(design, first, units, sign, y, y_single, singles):
    """The regression's units when the second phase took single coalitions: the pairs
    evaluated (exact odd part) and the singles (odd part = sign * (value - the even part's
    model)), weighted so that each sampled stratum keeps its kernel mass, a single
    counting ``share`` of a pair; with the strata and finite-population corrections.
    Singles whose other side was evaluated too (``units["other"]``) count as pairs."""
    n_enum = design["n_enum"] // 2
    mass, share = singles["mass"], singles["share"]
    k, other = len(units["x"]), units["other"]
    keep = np.ones(k, dtype=bool)
    keep[other] = False
    done_odd = sign[other, None] * (y_single[other] - y_single[k:]) / 2
    strata_full = np.concatenate([design["pair_stratum"][singles["pairs"]],
                                  units["strata"][other]])
    strata_single, sign = units["strata"][keep], sign[keep]
    n_pairs = len(strata_full)
    n_strata = len(design["fpc"])
    n_full = np.bincount(strata_full, minlength=n_strata)
    n_single = np.bincount(strata_single, minlength=n_strata)
    odd_single = sign[:, None] * (y_single[:k][keep]
                                  - _even_predict(singles["even"], units["x"][keep]))
    x = np.concatenate([singles["x"], units["x"][other], units["x"][keep]])
    odd = np.concatenate([singles["odd"], done_odd, odd_single])
    d = odd.shape[1]
    w = np.empty((len(x), d))
    w[:n_enum] = singles["w"][:n_enum, None]
    denom = n_full[:, None] + share[None, :] * n_single[:, None]          # (S, D)
    per = mass[:, None] / np.where(denom > 0, denom, 1.0)
    w[n_enum:n_pairs + n_enum] = per[strata_full]
    w[n_pairs + n_enum:] = per[strata_single] * share[None, :]
    population = np.asarray([float(p) for p in design["population"]])
    fpc = np.clip(1.0 - (n_full + n_single) / population, 0.0, 1.0)
    se_design = {"n_enum": 2 * n_enum, "pair_stratum": np.concatenate([strata_full,
                                                                       strata_single]),
                 "fpc": fpc, "exact": False}
    # for the errors' extra terms: d odd / d (even part) = -sign on the singles;
    # the even part's variance per stratum; the share of each stratum sampled
    offset = np.zeros(len(x))
    offset[n_pairs + n_enum:] = -sign
    stratum = np.full(len(x), -1)
    stratum[n_pairs + n_enum:] = strata_single
    return {"x": x, "odd": odd, "sw": np.sqrt(w), "design": se_design,
            "singles": (offset, stratum, singles["even_var"], 1.0 - fpc)}


# --------------------------------------------------------------------------- solve

def _odd_solve(design, y, delta, surrogate, seed, units=None, with_cv=False, dense_ridge=True,
               chosen_out=None):
    """Values and standard errors from the odd part of the game, (M, D) twice.

    ``units`` (from ``_single_units``) replaces the pairs of ``design`` when some rows are
    single coalitions. Falls back to ``_solve`` (Kernel SHAP with a GCV ridge) when the
    pairs do not determine the first-order fit (fewer than ``M + 2`` pairs). ``with_cv``
    adds a third value: per column, every pair's cross-validated weighted residual (a list
    of D arrays), or None from the fallback. ``chosen_out``, a list, receives per column
    where terms are chosen ``(args, selection)``: ``_select_terms``'s arguments and what
    it returned.
    """
    z = design["z"]
    m, d = z.shape[1], len(delta)
    offset = None
    if units is None:
        if m < 2 or len(z) // 2 < m + 2:
            out = _solve(design, y, delta)
            return (*out, None) if with_cv else out
        x, sw = _pair_columns(design)
        odd = 0.5 * (y[0::2] - y[1::2])                    # the game's odd part, (P, D)
        sws = np.repeat(sw[:, None], d, axis=1)
    else:
        x, odd, sws, design = units["x"], units["odd"], units["sw"], units["design"]
        offset = units["singles"]
    phi = np.empty((m, d))
    se = np.zeros((m, d))
    cv = [None] * d
    for col in range(d):
        sw = sws[:, col]                                   # unit weights, square root
        base = _base_columns(x, sw)
        target = (odd[:, col] - 0.5 * delta[col] * x[:, 0]) * sw
        terms, held, pool, ridge = [], None, [], 0.0
        if surrogate and not design["exact"]:
            args = (base, x, sw, target, 0.5 * delta[col], seed, dense_ridge)
            terms, held, pool, ridge = _select_terms(*args)
            if chosen_out is not None:
                chosen_out.append((args, (terms, held, pool, ridge)))
        extra = None
        if offset is not None:
            g, stratum, even_var, sampled = offset
            extra = (g * sw, stratum, even_var[:, col], sampled)
        phi[:, col], se[:, col], cv[col] = _fit_odd(base, x, sw, target, terms,
                                                    0.5 * delta[col], design, held, extra,
                                                    ridge)
        if held is not None and terms:
            shift, spread = _alias_spread(base, x, sw, target, terms, pool,
                                          0.5 * delta[col], phi[:, col])
            phi[:, col] += shift
            se[:, col] = np.sqrt(se[:, col] ** 2 + spread)
    phi -= (phi.sum(axis=0) - delta) / m                   # remove rounding drift
    if design["exact"]:
        se[:] = 0.0
    return (phi, se, cv) if with_cv else (phi, se)


def _alias_spread(base, x, sw, target, terms, pool, half_total, phi):
    """The values' variance from the terms' aliasing, (M,): 0 unless another candidate term
    (of ``pool``, those ``_select_terms`` chose from)
    fits the pairs exactly as well as a chosen one (its column in the span of the chosen
    model's, and swapping them leaves the span unchanged), as a small design can make
    happen. The pairs then cannot tell the models apart (matching pursuit picked one by
    the order of the candidates), so the values are averaged over the chosen model and its
    equally good swaps, as if the truth were any of them: returns the change of the values
    ``shift`` and their variance over the models (the residual-based errors see none of
    it), (M,) each, zeros when no swap fits as well."""
    m = x.shape[1]
    cols = np.concatenate([base, _term_columns(x, terms) * sw[:, None]], axis=1)
    u = _orthonormal(cols)[0]
    pool = [t for t in pool if t not in terms]
    if not pool:
        return np.zeros(m), np.zeros(m)
    cand = _term_columns(x, pool) * sw[:, None]
    norm = np.linalg.norm(cand, axis=0)
    left = np.linalg.norm(cand - u @ (u.T @ cand), axis=0)
    diffs = []
    for j in np.flatnonzero(left <= _ALIASED * np.maximum(norm, 1e-300)):
        for k in range(len(terms)):
            swapped = terms[:k] + [pool[j]] + terms[k + 1:]
            cols_s = np.concatenate([base, _term_columns(x, swapped) * sw[:, None]], axis=1)
            u_s, inv_s = _orthonormal(cols_s)
            if u_s.shape[1] < cols.shape[1]:
                continue                        # the swap loses a column: not a model
            gone = cols[:, base.shape[1] + k]
            if np.linalg.norm(gone - u_s @ (u_s.T @ gone)) > _ALIASED * np.linalg.norm(gone):
                continue
            alt = _value_map(m, swapped) @ (inv_s @ (u_s.T @ target))
            alt[0] += 2.0 * half_total
            diffs.append(alt - phi)
    if not diffs:
        return np.zeros(m), np.zeros(m)
    diffs = np.concatenate([np.zeros((1, m)), diffs])
    shift = diffs.mean(axis=0)
    return shift, ((diffs - shift) ** 2).mean(axis=0)


def _pair_columns(design):
    """Every pair's first side (+-1, (P, M)) and the square root of its weight (P,): the
    rows of ``_odd_solve`` on a design of pairs."""
    return np.where(design["z"][0::2], 1.0, -1.0), \
        np.sqrt(design["w"][0::2] + design["w"][1::2])


def _base_columns(x, sw):
    """The odd fit's first-order columns on the rows ``x`` (+-1) weighted by ``sw``, less
    the reference feature 0's (the sum constraint removed), (P, M - 1)."""
    return (x[:, 1:] - x[:, :1]) * sw[:, None]


def _prepare_solve(design):
    """What the values do not change in the final fit on ``design`` (pairs): its
    first-order columns' factorisation (``_orthonormal``, kept in the run), made while the
    last rows are evaluated."""
    _orthonormal(_base_columns(*_pair_columns(design)))


def _term_columns(x, terms):
    """Parity products of ``terms`` on the rows ``x`` (+-1), minus the reference ``x[:, 0]``."""
    return _products(x, terms) - x[:, :1]


def _fit_odd(base, x, sw, target, terms, half_total, design, held=None, extra=None,
             ridge=0.0):
    """Weighted least squares of the odd part on order 1 and ``terms``; values and errors.

    The model is ``odd(x) = sum_T c_T prod_{i in T} x_i`` with ``sum_T c_T = half_total``
    (the fit passes through the full coalition); ``c`` of feature 0 is eliminated. A term
    of ``k`` features gives each of them ``2 c_T / k``. ``ridge`` > 0 penalises the terms'
    coefficients (not the first-order ones; see ``_fit_map``).

    ``held``, when the terms were chosen by cross-validation: every pair's weighted
    residual when its fold was held out and its leverage then (see ``_cv_pursuit``).
    Standard errors: see ``_sandwich_se`` and ``_pair_r2``; ``extra``
    ``(g, stratum, even_var, sampled)`` describes single coalitions: their targets were
    corrected by a model of the even part (``d target / d even part = g``), and their
    residuals carry its error (variance ``even_var`` per stratum (S,), random sign), which
    the finite-population correction of the stratum (``sampled``: its share sampled) does
    not reduce: it is added.

    The penalty biases the values by ``lmap @ (fit @ cols - I) @ c`` for true coefficients
    ``c``; its plug-in estimate (``c`` by the fit's own ones, so it is, if anything, too
    small) is added in square to the variance, so that the standard errors estimate the
    values' root mean squared error (Hastie, Tibshirani & Friedman 2009, 7.3).

    Returns ``(phi, se, held)``: values and standard errors (M,), and every pair's
    cross-validated (or leave-one-out) weighted residual (P,).
    """
    cols, fit, lev, lev2 = _fit_map(base, x, sw, terms, ridge)
    lmap = _value_map(x.shape[1], terms)
    coef = fit @ target
    phi = lmap @ coef
    phi[0] += 2.0 * half_total
    fitted = cols @ coef
    resid = target - fitted                                 # weighted residuals
    r2 = _pair_r2(resid, lev, lev2, held)
    amap = lmap @ fit
    # each pair's share of the parameters: 1 less its residual's, 1 - 2 h_pp + (H H')_pp
    se = _sandwich_se(design, amap, r2, 2.0 * lev - lev2)
    if ridge > 0.0:
        bias = lmap @ (fit @ fitted - coef)
        se = np.sqrt(se ** 2 + bias ** 2)
    # every pair's cross-validated (or, without a selection, leave-one-out) residual
    cv = resid / (1.0 - np.clip(lev, 0.0, 0.99)) if held is None else held[0]
    if extra is not None:
        g, stratum, even_var, sampled = extra
        var = se ** 2
        for j in np.unique(stratum[stratum >= 0]):
            sel = stratum == j
            var += (amap[:, sel] ** 2) @ (g[sel] ** 2) * even_var[j] * sampled[j]
        se = np.sqrt(var)
    return phi, se, cv


def _value_map(m, terms):
    """(M, free coefficients): values from the coefficients (feature 0's is eliminated)."""
    lmap = np.zeros((m, m - 1 + len(terms)))
    lmap[np.arange(1, m), np.arange(m - 1)] = 2.0
    lmap[0, :m - 1] = -2.0
    for k, t in enumerate(terms):
        lmap[list(t), m - 1 + k] += 2.0 / len(t)
        lmap[0, m - 1 + k] -= 2.0
    return lmap


def _fit_map(base, x, sw, terms, ridge=0.0):
    """The odd fit as a linear map of the target: ``(cols, fit, lev, lev2)``, the weighted
    columns (P, K), the coefficients' map (K, P) (``coef = fit @ target``), every pair's
    leverage (P,), the diagonal of the hat matrix ``H = cols @ fit``, and the diagonal of
    ``H @ H.T`` (P,) (the leverage again unless the fit is penalised: ``H`` is then
    symmetric but not a projection).

    With ``ridge`` > 0 the terms' coefficients are penalised by ``ridge * |c|^2`` and the
    first-order ones are not: the terms' columns are taken orthogonal to the first-order
    ones, and their ridge solution comes from that projection's SVD
    (``_projected_svd``)."""
    cols = base
    if terms:
        cols = np.concatenate([base, _term_columns(x, terms) * sw[:, None]], axis=1)
    if not ridge > 0.0 or not terms:
        u, inv = _orthonormal(cols)                         # cols = u @ inv^-1 (on its range)
        lev = (u ** 2).sum(axis=1)
        return cols, inv @ u.T, lev, lev
    t_cols = cols[:, base.shape[1]:]
    q, inv_b, _, u, s, vt = _projected_svd(base, t_cols)
    t_fit = (vt.T * (s / (s ** 2 + ridge))) @ u.T          # the terms' coefficients' map
    b_fit = inv_b @ (q.T - (q.T @ t_cols) @ t_fit)
    shrink = s ** 2 / (s ** 2 + ridge)                     # H = q q' + u diag(shrink) u'
    lev_q = (q ** 2).sum(axis=1)
    return cols, np.concatenate([b_fit, t_fit]), lev_q + (u ** 2) @ shrink, \
        lev_q + (u ** 2) @ shrink ** 2


def _pair_r2(resid, lev, lev2, held, selection=True):
    """Every pair's squared residual for the sandwich, from its in-sample one ``resid``,
    the diagonals ``lev`` of the hat matrix ``H`` and ``lev2`` of ``H @ H.T`` (see
    ``_fit_map``) and, when the terms were chosen by cross-validation, ``held``: its
    held-out residual and leverage (see ``_cv_pursuit``).

    * Selection: the in-sample residuals are too small by the selection's optimism. The
      held-out residual of a fixed fit has noise variance ``s2 (1 + held_lev)``; divided
      by that, it is unbiased for a fixed fit and, with the terms chosen again without the
      pair's fold, it also carries the variability of the choice, which the values have
      too. With ``selection`` False, only the noise: the in-sample and held-out residuals
      averaged with weights 1 / (1 + f) and f / (1 + f) (each fold fitted on a share f of
      the pairs), which cancels the selection's effective degrees of freedom d to first
      order (E r^2 = s2 (1 - d / n) in sample, s2 (1 + d / (f n)) held out).
    * No selection: a fixed linear fit leaves the residuals ``(I - H) y``, whose noise
      has variance ``s2 (1 - 2 h_pp + (H H')_pp)`` at pair ``p`` for noise of variance
      ``s2``: dividing by it is unbiased (HC2 when ``H`` is a projection, as without a
      penalty; the penalised fit's is between HC2 and HC3). Also with a selection whose
      in-sample residuals are larger than the held-out ones: the fit, unlike the folds'
      fits, missed something, and its own residuals are what its values carry."""
    if held is not None and (resid ** 2).sum() <= (held[0] ** 2).sum():
        held_out, held_lev = held
        if selection:
            return held_out ** 2 / (1.0 + np.maximum(held_lev, 0.0))
        f = (_FOLDS - 1) / _FOLDS
        return (resid ** 2 + f * held_out ** 2) / (1.0 + f)
    return resid ** 2 / np.maximum(1.0 - 2.0 * lev + lev2, 0.01)


@_Run.kept
def _projected_svd(base, t_cols):
    """``(q, inv, t_r, u, s, vt)``: ``_orthonormal(base)``, the columns ``t_cols`` less their
    projection on ``base``, ``t_r``, and its thin SVD. Kept in a run (``_Run``): the final
    fit asks for it again after ``_dense_ridge`` chose a penalty."""
    q, inv = _orthonormal(base)
    t_r = t_cols - q @ (q.T @ t_cols)
    return (q, inv, t_r, *np.linalg.svd(t_r, full_matrices=False))


def _dense_ridge(base, t_cols, target, determined, penalties=_DENSE_RIDGE):
    """The ridge penalty of the dense terms ``t_cols`` (weighted columns, (P, T)) with the
    lowest leave-one-out error, over ``penalties`` relative to the columns' mean squared
    norm (0 too when the pairs determine the terms): ``(ridge, loo)``, the penalty and
    every pair's leave-one-out residual, or ``(None, None)`` when every penalty nearly
    interpolates a pair, or when the terms are (to ``_ALIASED``) combinations of ``base``."""
    q, _, t_r, u, s, _ = _projected_svd(base, t_cols)
    keep = s > s.max(initial=0.0) * 1e-10
    u, s = u[:, keep], s[keep]
    resid0 = target - q @ (q.T @ target)
    proj = u.T @ resid0
    lev0 = (q ** 2).sum(axis=1)
    scale = (t_r ** 2).sum() / max(t_cols.shape[1], 1)
    if not scale > _ALIASED ** 2 * (t_cols ** 2).sum() / max(t_cols.shape[1], 1):
        return None, None           # the terms are combinations of the first-order columns
    best = (None, None)
    for rel in ((0.0,) if determined else ()) + tuple(penalties):
        shrink = s ** 2 / (s ** 2 + rel * scale)
        lev = lev0 + (u ** 2) @ shrink
        if lev.max() >= 0.999 or rel > 0.0 and lev.sum() > _STEP_SHARE * len(lev):
            continue                # (nearly) interpolating, or more parameters than pursuit
        loo = (resid0 - u @ (shrink * proj)) / (1.0 - lev)
        if best[1] is None or (loo ** 2).sum() < (best[1] ** 2).sum():
            best = (rel * scale, loo)
    return best


def _sandwich_se(design, a, r2, params):
    """Standard errors of the values from the per-pair influences ``a[:, p] * r_p``, (M,).

    ``a`` (M, P) maps a pair's weighted residual to its effect on the values; ``r2`` (P,)
    are the squared residuals (see ``_pair_r2``); ``params`` (P,) each pair's share of the
    fit's parameters (``2 h_pp - (H H')_pp``). Two steps:

    * the stratified sandwich (pairs centred within their size stratum, finite-population
      correction; enumerated strata contribute none);
    * the variance times ``nu / (nu - 2)``, ``nu`` its Satterthwaite degrees of freedom
      (at most the sampled pairs' residual degrees of freedom, their number less their
      share of the parameters: the enumerated pairs hold the rest): a variance estimate of ``nu``
      degrees of freedom gives ``E (error / SE)^2 = nu / (nu - 2)`` (Student's t), so the
      reported errors are calibrated in mean square, not only in median.
    """
    n0 = design["n_enum"] // 2
    a, r2, params = a[:, n0:], r2[n0:], params[n0:]
    strata, fpc = design["pair_stratum"], design["fpc"]
    if a.shape[1] == 0:
        return np.zeros(a.shape[0])
    g = _center_by_stratum(a.T * np.sqrt(r2)[:, None], strata, fpc) ** 2
    var = g.sum(axis=0)
    nu = np.minimum(var ** 2 / np.maximum((g ** 2).sum(axis=0), 1e-300),
                    a.shape[1] - params.sum())
    inflate = np.where(nu > 2.5, nu / np.maximum(nu - 2.0, 0.5), 5.0)
    return np.sqrt(var * inflate)


@_Run.kept
def _orthonormal(a):
    """An orthonormal basis ``u`` of the columns of ``a`` and ``inv`` with ``a @ inv = u``:
    least squares on ``a`` is ``inv @ (u.T @ y)``. QR, or an SVD when ``a`` is
    rank-deficient (the minimum-norm solution). Kept in a run (``_Run``): the fits ask for
    the same matrix again (the first-order columns of the first phase's pairs, five times
    on the sample model's default run)."""
    q, r = np.linalg.qr(a)
    d = np.abs(np.diag(r))
    if len(d) and d.min() > d.max() * 1e-9:
        return q, np.linalg.solve(r, np.eye(len(r)))
    u, s, vt = np.linalg.svd(a, full_matrices=False)
    keep = s > s.max(initial=0.0) * 1e-10
    return u[:, keep], vt[keep].T / s[keep]


def _candidate_terms(m, ranking, caps=None):
    """Interaction terms worth trying: all sets of each order among the strongest features,
    at most ``cap`` of them, for ``(order, cap)`` in ``caps`` (default: the odd part's
    triples, 5- and 7-sets)."""
    terms = []
    for order, cap in caps or ((3, _MAX_TERMS[0]), (5, _MAX_TERMS[1]), (7, _MAX_TERMS[2])):
        k = order
        while k < m and math.comb(k + 1, order) <= cap:
            k += 1
        if k > m or math.comb(k, order) > cap:
            continue
        top = sorted(int(i) for i in ranking[:k])
        terms += list(itertools.combinations(top, order))
    return terms


def _ranking(base, target, half_total):
    """Features from the strongest to the weakest, by ``|c|`` of the first-order fit."""
    u, inv = _orthonormal(base)
    first = inv @ (u.T @ target)
    strength = np.abs(np.concatenate([[half_total - first.sum()], first]))
    return np.argsort(-strength, kind="stable")


def _select_terms(base, x, sw, target, half_total, seed, dense_ridge=True):
    """Odd interaction terms chosen by orthogonal matching pursuit, their number by K-fold
    cross-validation over pairs. ``half_total``: ``(v(N) - v(0)) / 2``, the sum of the
    first-order coefficients, which gives feature 0's (eliminated) one.

    Returns ``(terms, held, pool, ridge)``: a list of feature tuples (maybe empty),
    ``(held_out, held_lev)`` from ``_cv_pursuit`` at the chosen number of terms (None when
    too few pairs for cross-validation, or for the dense triples), the candidate terms it
    chose from, and the penalty of the terms' coefficients (0 but for the dense triples,
    see ``_dense_ridge``).
    """
    n, m = x.shape
    pool = _candidate_terms(m, _ranking(base, target, half_total))
    n_train = n * (_FOLDS - 1) // _FOLDS
    k_max = min(len(pool), _MAX_STEPS, int(_STEP_SHARE * n_train) - base.shape[1])
    if n_train <= base.shape[1] + 1:
        return [], None, pool, 0.0
    k_max = max(k_max, 0)
    if k_max == 0 and n <= base.shape[1] + sum(len(t) == 3 for t in pool) + 2:
        pool = []           # neither a pursuit step nor the dense triples fit these pairs
    cols = np.concatenate([base, _term_columns(x, pool) * sw[:, None]], axis=1)
    n_base = base.shape[1]
    order, held_out, held_lev = _cv_pursuit(cols, target, n_base, k_max, seed)
    # the dense alternative: every candidate triple (PolySHAP's third order), unpenalised
    # when the pairs determine them, or with a ridge penalty on the triples (many small
    # interactions, as a network's output has, rather than a few strong ones: the
    # penalty shrinks them all instead of choosing some) from two phases' budgets on
    # (below, a strong term the penalty spreads over its aliases is missed by the
    # standard errors); kept when its leave-one-out error, at the penalty where it is
    # lowest, is lower than the pursuit's cross-validated error, by more than one standard
    # error of the difference for a penalised fit (the bigger model)
    dense = [j for j, t in enumerate(pool) if len(t) == 3]
    determined = n > n_base + len(dense) + 2
    if dense and (determined or dense_ridge and n >= 4 * (m + 2)):
        ridge, dense_out = _dense_ridge(base, cols[:, n_base + np.asarray(dense)], target,
                                        determined, _DENSE_RIDGE if dense_ridge else ())
        gain = held_out ** 2 - (dense_out ** 2 if dense_out is not None else held_out ** 2)
        if ridge == 0.0 and gain.sum() > 0.0 or \
                ridge and gain.sum() > _SLACK * math.sqrt(n * gain.var()):
            return [pool[j] for j in dense], None, pool, ridge
    return [pool[j - n_base] for j in order], (held_out, held_lev), pool, 0.0


def _cv_pursuit(cols, target, n_base, k_max, seed, leverage=True):
    """Columns added to the first ``n_base`` by orthogonal matching pursuit, their number
    chosen by K-fold cross-validation over rows with a one-standard-error rule.

    Returns ``(order, held_out, held_lev)``: the indices of the added columns (maybe none),
    every row's residual when its fold was held out, at the chosen number of columns, and
    every row's leverage in the fit without its fold of the chosen columns
    (``c' G^-1 c``, ``c`` the row's chosen columns, ``G`` their Gram matrix on the other
    folds; None unless ``leverage``): a fixed fit's held-out residual has noise variance
    ``s2 (1 + held_lev)``.
    """
    n = len(target)
    gram = cols.T @ cols
    corr = cols.T @ target
    fold = np.random.default_rng([seed, 17]).permutation(n) % _FOLDS
    held_out = np.empty((k_max + 1, n))       # every row's residual when held out, per step
    steps = np.zeros(_FOLDS, dtype=int)

    def run(f, min_steps=0):
        out = fold == f
        held = cols[out]
        g = _Downdated(gram, held, n_base) if n_base > _BLOCKED_BASE else \
            gram - held.T @ held
        order, _, preds = _omp(g, corr - held.T @ target[out], n_base, k_max, held,
                               target[out], min_steps)
        held_out[:, out] = target[out] - preds
        steps[f] = len(order)

    for f in range(_FOLDS):
        run(f)
    loss = held_out ** 2
    k_min = int(np.argmin(loss.sum(axis=1)))
    # fewest columns whose cross-validated error is not worse than the minimum's by more
    # than one standard error of the paired difference (or rounding): spurious ones stay out
    diff = loss - loss[k_min]
    slack = _SLACK * np.sqrt(n * diff.var(axis=1)) + 1e-12 * loss[0].sum()
    k_best = int(np.argmax(diff.sum(axis=1) <= slack))
    # a fold stops once its held-out error stalls (_PATIENCE), and the choice counts its
    # stalled error at later steps; but one fold's error is noisy and can stall for a
    # while before it falls: a fold that stopped short of the chosen count is run again
    # that far, so that the held-out residuals (for the standard errors and the later
    # choices: singles, surrogate, dense triples) are the pursuit's
    for f in np.flatnonzero(steps < k_best):
        run(f, k_best)
    order, k_use = [], k_best
    if k_best:
        # the pursuit on all the rows must fit them at least as well as its folds predicted
        # their held-out rows (a fit's optimism makes it so); when its greedy path took other
        # columns and fits worse, the folds' residuals describe other fits: it goes on until
        # it fits as well, if it can within k_max (else the standard errors see its own
        # residuals, see _pair_r2)
        ss = float(target @ target)
        goal = float((held_out[k_best] ** 2).sum()) + 1e-12 * ss
        order, rss, _ = _omp(gram, corr, n_base, k_best, ss=ss)
        if rss[len(order)] > goal and k_max > k_best:
            longer, rss, _ = _omp(gram, corr, n_base, k_max, ss=ss)
            reach = np.flatnonzero(rss[k_best:len(longer) + 1] <= goal)
            if len(reach):
                order = longer[:k_best + int(reach[0])]
                k_use = len(order)
                for f in np.flatnonzero(steps < k_use):
                    run(f, k_use)
    if not leverage:
        return order, held_out[k_use], None
    chosen = cols[:, list(range(n_base)) + list(order)]
    gram_chosen = chosen.T @ chosen
    held_lev = np.empty(n)
    for f in range(_FOLDS):
        out = fold == f
        g = gram_chosen - chosen[out].T @ chosen[out]
        try:
            sol = np.linalg.solve(g, chosen[out].T)
        except np.linalg.LinAlgError:
            sol = np.linalg.lstsq(g, chosen[out].T, rcond=None)[0]
        held_lev[out] = np.einsum("ij,ji->i", chosen[out], sol)
    return order, held_out[k_use], held_lev


class _Downdated:
    """The Gram matrix of the columns without some rows, ``gram - held.T @ held``, as
    ``_omp`` reads it: its diagonal, the base columns' rows (``head``, one product) and the
    other rows one at a time when a step adds their column. Forming it whole costs
    ``(columns)^2 x (held rows)`` a fold; the pursuit reads the base rows and its few
    steps' rows (equal to rounding: the sums run in another order)."""

    def __init__(self, gram, held, n_base):
        self.gram, self.held, self.n_base = gram, held, n_base
        self.head = gram[:n_base] - held[:, :n_base].T @ held
        self.diag = np.diag(gram) - np.einsum("ij,ij->j", held, held)

    def row(self, j):
        return self.head[j] if j < self.n_base else self.gram[j] - self.held[:, j] @ self.held


def _omp(gram, corr, n_base, k_max, held=None, held_target=None, min_steps=0, ss=None):
    """Orthogonal matching pursuit from the Gram matrix of the columns on the fitting rows
    (an array, or a ``_Downdated`` one).

    The first ``n_base`` columns are always in the model; then up to ``k_max`` of the others
    are added greedily (largest reduction of the residual sum of squares), by Gram-Schmidt
    in coefficient space, so each step costs O(steps x columns), not rows. With ``held``
    (the columns on other rows) and ``held_target``, the pursuit stops early once the error
    on those rows has not improved for a while (not before ``min_steps`` steps).

    Returns the indices of the added columns, the squared error on the held rows after each
    step (k_max + 1,) and the predictions there (k_max + 1, held rows); steps not taken
    repeat the last one. Without held rows, the squared error is the fit's own on its rows
    when ``ss``, the target's sum of squares there, is given (to rounding: ``ss`` less
    what the steps explained), else zeros.
    """
    n_cols = len(corr)
    lazy = isinstance(gram, _Downdated)
    diag = gram.diag.copy() if lazy else np.diag(gram).copy()
    row_of = gram.row if lazy else gram.__getitem__
    head = gram.head if lazy else gram[:n_base]
    floor = np.maximum(diag, 1e-300) * 1e-9
    norms = diag.copy()                     # squared norm of each column's residual part
    rest = corr.copy()                      # each column's inner product with the residual
    size = n_base + k_max
    b = np.zeros((size, n_cols))            # inner products of the basis with the columns
    used = np.zeros(n_cols, dtype=bool)
    n_held = 0 if held is None else len(held)
    q_held = np.zeros((n_held, size))
    pred = np.zeros(n_held)
    left = 0.0 if ss is None else float(ss)       # in-sample squared error, without held rows
    errors = np.zeros(k_max + 1)
    preds = np.zeros((k_max + 1, n_held))
    k = 0

    def add(j):
        nonlocal k, pred, left
        used[j] = True
        if norms[j] <= floor[j]:
            return False
        root = math.sqrt(norms[j])
        row = (row_of(j) - b[:k, j] @ b[:k]) / root
        beta = rest[j] / root
        b[k] = row
        left -= beta ** 2
        rest[:] -= row * beta
        norms[:] -= row ** 2
        if n_held:
            q_held[:, k] = (held[:, j] - q_held[:, :k] @ b[:k, j]) / root
            pred = pred + q_held[:, k] * beta
        k += 1
        return True

    beta = _base_block(head, corr, n_base, floor, held, b, q_held) \
        if n_base > _BLOCKED_BASE else None
    if beta is not None:
        # every base column added at once: add()'s steps on each, as matrix products
        rows = b[:n_base]
        k = n_base
        used[:n_base] = True
        left -= float(beta @ beta)
        rest -= rows.T @ beta
        norms -= np.einsum("ij,ij->j", rows, rows)
        if n_held:
            pred = q_held[:, :n_base] @ beta
    else:
        for j in range(n_base):
            add(j)
    err = (lambda: float(((held_target - pred) ** 2).sum())) if n_held else \
        (lambda: max(left, 0.0))
    errors[0], preds[0] = err(), pred
    order, best, step = [], 0, 0
    for step in range(1, k_max + 1):
        score = np.where(used | (norms <= floor), -1.0, rest ** 2 / np.maximum(norms, 1e-300))
        j = int(np.argmax(score))
        if score[j] <= 0.0 or n_held and step > min_steps and \
                step - best > max(_PATIENCE, best // 2):
            step -= 1
            break
        while not add(j):
            score[j] = -1.0
            j = int(np.argmax(score))
            if score[j] <= 0.0:
                break
        if score[j] <= 0.0:
            step -= 1
            break
        order.append(j)
        errors[step], preds[step] = err(), pred
        if errors[step] < errors[best]:
            best = step
    errors[step + 1:] = errors[step]
    preds[step + 1:] = preds[step]
    return order, errors, preds


def _base_block(head, corr, n_base, floor, held, b, q_held):
    """The first ``n_base`` steps of ``_omp`` (its base columns) at once, from ``head``, the
    Gram matrix's first ``n_base`` rows, when none of them
    is (nearly) dependent on the ones before: ``add`` on column ``k`` makes row ``k`` of
    ``L^-1 G[:n_base]`` (``L`` the Cholesky factor of the base columns' Gram matrix, its
    diagonal the steps' roots) and the coefficient ``(L^-1 c)[k]``; the held rows' basis is
    ``H L^-T``. Fills ``b[:n_base]`` and ``q_held[:, :n_base]`` and returns the
    coefficients, or returns None (nothing filled) when the factor fails or a root is
    within a factor 4 of ``add``'s floor: then ``add`` skips columns, one by one."""
    from scipy.linalg import solve_triangular

    try:
        low = np.linalg.cholesky(head[:, :n_base])
    except np.linalg.LinAlgError:
        return None
    if not np.all(np.diag(low) ** 2 > 4.0 * floor[:n_base]):
        return None
    b[:n_base] = solve_triangular(low, head, lower=True)
    if held is not None and len(held):
        q_held[:, :n_base] = solve_triangular(low, held[:, :n_base].T, lower=True).T
    return solve_triangular(low, corr[:n_base], lower=True)


def _solve(design, y, delta):
    """Kernel SHAP's constrained weighted least squares with a GCV ridge, for designs whose
    pairs do not determine the first-order fit (fewer than ``M + 2``): values and standard
    errors, (M, D). The standard errors are 0 when the design is exact, else NaN: the fit
    (nearly) interpolates its pairs, so no residuals are left to estimate them (the sandwich
    gave 1e-17 where the values were 5-80 % off; see ``kernel_shap``)."""
    z, w = design["z"], design["w"]
    m, d = z.shape[1], y.shape[1]
    se = np.zeros((m, d)) if design["exact"] else np.full((m, d), np.nan)
    if len(z) == 0:
        return np.repeat(delta[None, :] / m, m, axis=0), se
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
    for col in range(d):                            # each output column on its own
        bt = v.T @ rhs[:, col]
        lam = 0.0 if design["exact"] else _gcv_ridge(e, bt, rss0[col], len(z))
        phi[:, col] = c[col] + v @ (bt / (e + lam))
        phi[:, col] -= (phi[:, col].sum() - delta[col]) / m     # remove rounding drift
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
