"""Kernel SHAP against independent oracles: brute-force Shapley values and known games."""

import importlib
import itertools
import math
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from seg_explainer.core import batching
from seg_explainer.core.errors import ExplanationCancelled
from seg_explainer.core.kernel_shap import kernel_shap

# the module itself (``seg_explainer.core.kernel_shap`` as an attribute is the function)
ks = importlib.import_module("seg_explainer.core.kernel_shap")


def random_pairs(rng, n, m):
    """First sides of ``n`` random complementary pairs of ``m`` features, as +-1 rows."""
    return np.where(rng.random((n, m)) < 0.5, 1.0, -1.0)


def weighted_pairs(rng, n, m):
    """Random pairs, their square-root weights and the first-order columns of the odd fit
    (feature 0's coefficient eliminated), as ``_odd_solve`` builds them."""
    x = random_pairs(rng, n, m)
    sw = rng.uniform(0.5, 2.0, size=n)
    return x, sw, (x[:, 1:] - x[:, :1]) * sw[:, None]


def brute_force_shapley(v, m):
    """Shapley values from the permutation-weight formula, one coalition at a time."""
    cache = {}

    def value(members):
        key = frozenset(members)
        if key not in cache:
            z = np.zeros((1, m), dtype=bool)
            z[0, list(key)] = True
            cache[key] = np.asarray(v(z), dtype=float)[0]
        return cache[key]

    phi = []
    for i in range(m):
        others = [j for j in range(m) if j != i]
        total = 0.0
        for r in range(m):
            weight = math.factorial(r) * math.factorial(m - r - 1) / math.factorial(m)
            for subset in itertools.combinations(others, r):
                total = total + weight * (value(subset + (i,)) - value(subset))
        phi.append(total)
    return np.array(phi)


def product_max_game(m, seed=0):
    w = np.random.default_rng(seed).normal(size=m)
    return lambda z: np.prod(np.where(z, 1 + 0.5 * w, 1.0), axis=1) + np.max(z * w, axis=1)


def threshold_game(m, seed=1):
    w = np.random.default_rng(seed).uniform(0.5, 2.0, size=m)
    return lambda z: (z @ w > w.sum() / 2).astype(float) + 0.3 * z[:, 0] * z[:, 1]


class Recorder:
    def __init__(self, fn):
        self.fn, self.calls = fn, []

    def __call__(self, z):
        self.calls.append(np.array(z, copy=True))
        return self.fn(z)


@pytest.mark.parametrize("game", [product_max_game, threshold_game])
@pytest.mark.parametrize("m", [3, 6, 9])
def test_exact_enumeration_matches_brute_force(game, m):
    v = game(m)
    res = kernel_shap(v, m, 2 ** m - 2)
    assert res.exact
    assert res.n_evaluations == 2 ** m
    np.testing.assert_allclose(res.values, brute_force_shapley(v, m), atol=1e-10)
    np.testing.assert_array_equal(res.standard_errors, 0.0)


def test_linear_game_recovered_with_small_budget():
    m = 10
    w = np.random.default_rng(3).normal(size=m)
    for sampling in ("balanced", "leverage", "kernel"):
        res = kernel_shap(lambda z: 2.0 + z @ w, m, 40, seed=5, sampling=sampling)
        assert not res.exact
        np.testing.assert_allclose(res.values, w, atol=1e-9)
        assert res.base_value == pytest.approx(2.0)


@pytest.mark.parametrize("budget", [2, 10, 22])
def test_standard_errors_unknown_below_the_pairs_that_determine_the_fit(budget):
    # fewer than M + 2 pairs: the ridge fallback's values are biased toward an equal share
    # and the fit (nearly) interpolates its pairs, so no residual is left to estimate the
    # error; the sandwich reported 1e-17 where the values were off by 10 %
    m = 12
    w = np.arange(1.0, m + 1)
    res = kernel_shap(lambda z: z @ w, m, budget, seed=1)
    assert not res.exact
    assert abs(res.values.sum() - w.sum()) < 1e-9
    assert np.all(np.isnan(res.standard_errors))
    assert np.all(np.isfinite(kernel_shap(lambda z: z @ w, m, 2 * m + 4, seed=1)
                              .standard_errors))


@settings(max_examples=30, deadline=None)
@given(m=st.integers(1, 14), budget=st.integers(0, 1200), seed=st.integers(0, 10 ** 6),
       sampling=st.sampled_from(["balanced", "leverage", "kernel"]))
def test_efficiency_and_whole_budget_at_any_budget(m, budget, seed, sampling):
    # the saturating game takes single coalitions in the second phase, the other pairs
    for v in (product_max_game(m, seed % 7), saturating_game(m, seed % 5)):
        res = kernel_shap(v, m, budget, seed=seed, sampling=sampling)
        assert abs(res.values.sum() - (res.full_value - res.base_value)) < 1e-9
        # every pair the budget pays for is spent (all 2**M coalitions when it allows them)
        assert res.n_evaluations == (2 ** m if res.exact else 2 + 2 * (budget // 2))


def test_symmetry_and_dummy_under_full_enumeration():
    # features 0 and 1 symmetric, feature 4 a dummy
    def v(z):
        z = z.astype(float)
        return (z[:, 0] + z[:, 1]) ** 2 * (1 + z[:, 2]) - z[:, 3] * z[:, 2]

    res = kernel_shap(v, 5, 100)
    assert res.exact
    assert res.values[0] == pytest.approx(res.values[1], abs=1e-12)
    assert res.values[4] == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("members", [(0,), (1, 4), (0, 2, 5, 6)])
def test_unanimity_game(members):
    m = 7
    res = kernel_shap(lambda z: z[:, list(members)].all(axis=1).astype(float), m, 500)
    expected = np.zeros(m)
    expected[list(members)] = 1 / len(members)
    np.testing.assert_allclose(res.values, expected, atol=1e-12)


def test_vector_output_equals_per_column_runs():
    m = 9
    games = [product_max_game(m, 0), threshold_game(m, 1), lambda z: z @ np.arange(m)]

    def stacked(z):
        return np.stack([g(z) for g in games], axis=1)

    # (70: one phase, no pilot; at 40-65 the pilot decides for all columns at once, see
    # test_core_kernel_border.py)
    for budget in (70, 2 ** m):
        res = kernel_shap(stacked, m, budget, seed=2)
        assert res.values.shape == (m, 3) and res.standard_errors.shape == (m, 3)
        for d, g in enumerate(games):
            one = kernel_shap(g, m, budget, seed=2)
            np.testing.assert_allclose(res.values[:, d], one.values, atol=1e-9)
            np.testing.assert_allclose(res.standard_errors[:, d], one.standard_errors,
                                       atol=1e-9)
            assert res.base_value[d] == pytest.approx(one.base_value)


def test_deterministic_for_a_seed():
    v = threshold_game(12)
    a = kernel_shap(v, 12, 300, seed=11)
    b = kernel_shap(v, 12, 300, seed=11)
    c = kernel_shap(v, 12, 300, seed=12)
    np.testing.assert_array_equal(a.values, b.values)
    assert not np.array_equal(a.values, c.values)


@pytest.mark.parametrize("m,budget", [(12, 500), (12, 4000), (40, 300), (300, 700)])
def test_no_duplicate_coalition_and_batches_bounded(m, budget):
    rec = Recorder(lambda z: z.sum(axis=1) ** 1.5)
    res = kernel_shap(rec, m, budget, batch_size=17)
    rows = np.concatenate(rec.calls)
    assert all(len(c) <= 17 for c in rec.calls)
    assert rows.dtype == bool and rows.shape[1] == m
    assert len({r.tobytes() for r in rows}) == len(rows) == res.n_evaluations
    assert res.n_evaluations <= budget + 2


def test_cancel_before_first_batch():
    rec = Recorder(lambda z: z.sum(axis=1))
    with pytest.raises(ExplanationCancelled):
        kernel_shap(rec, 8, 100, cancel=lambda: True)
    assert rec.calls == []


def test_progress_reaches_one():
    seen = []
    kernel_shap(lambda z: z.sum(axis=1) ** 2, 10, 200, batch_size=16, progress=seen.append)
    assert seen[-1] == pytest.approx(1.0)
    assert all(0 <= a <= b <= 1 for a, b in zip(seen, seen[1:]))


def test_error_shrinks_with_budget_and_standard_errors_are_calibrated():
    m = 12
    rng = np.random.default_rng(0)
    w, a = rng.normal(size=m), rng.normal(size=m)

    def v(z):
        z = z.astype(float)
        return np.tanh(z @ w / 2) + (z @ a) ** 2 / m + z[:, 0] * z[:, 3] * z[:, 7]

    truth = kernel_shap(v, m, 2 ** m).values
    errors, ses, spreads = [], [], []
    for budget in (100, 400, 1600):
        runs = [kernel_shap(v, m, budget, seed=s) for s in range(12)]
        est = np.array([r.values for r in runs])
        errors.append(np.mean(np.sum((est - truth) ** 2, axis=1)))
        ses.append(np.mean([r.standard_errors for r in runs], axis=0))
        spreads.append(est.std(axis=0))
    assert errors[0] > errors[1] > errors[2]
    assert errors[2] < errors[0] / 4
    for se, spread in zip(ses, spreads):   # standard errors within a factor of ~2
        ratio = se.mean() / spread.mean()
        assert 0.5 < ratio < 2.0


@pytest.mark.parametrize("m, budget", [(30, 800), (100, 700)])
def test_standard_errors_are_calibrated_at_the_plugins_sizes(m, budget):
    # hexagon cells number tens to hundreds: games of 2-8-player AND / OR terms, whose
    # odd part has terms of every odd order up to 7 (beyond what the fit adds), exact
    # values in closed form (bench/shapley_games.py); 30 players takes the boosted-trees
    # path, 100 the two phases without it. Over 20 seeds, 90-98 % of the values lie within
    # 1.96 standard errors and the mean (error / SE)^2 is 0.7-1.5 (the estimator's goal)
    v, truth = bench_games().wide_game(m, seed=0)
    err, se = [], []
    for seed in range(20):
        res = kernel_shap(v, m, budget, seed=seed)
        err.append(res.values - truth)
        se.append(res.standard_errors)
    err, se = np.array(err), np.array(se)
    assert np.all(se > 0)
    assert 0.90 <= np.mean(np.abs(err) <= 1.96 * se) <= 0.98
    assert 0.7 <= np.mean((err / se) ** 2) <= 1.5


@pytest.mark.parametrize("weights, budget", [((1,) * 16, 128), ((3, 1, 4, 1, 5, 9, 2, 6, 5,
                                                                 3, 5, 8, 9, 7, 9, 3), 76)])
def test_standard_errors_hold_on_weighted_majority_games(weights, budget):
    # a weighted majority (1 when the players present hold at least half the weight) is a
    # threshold of a weighted sum: the logistic surrogate fits its rows exactly by steepening
    # without end, and its Shapley values are then those of whichever separating hyperplane
    # the fit reached. Kept, they gave standard errors of 1e-14 and no true value covered
    v, truth = bench_games().majority_game(weights)
    m = len(weights)
    err, se = [], []
    for seed in range(20):
        res = kernel_shap(v, m, budget - 2, seed=seed)
        assert abs(res.values.sum() - 1.0) < 1e-12
        err.append(res.values - truth)
        se.append(res.standard_errors)
    err, se = np.array(err), np.array(se)
    assert np.all(se > 1e-6)
    assert np.mean(np.abs(err) <= 1.96 * se) >= 0.85
    assert np.mean((err / se) ** 2) <= 2.0


def test_majority_game_exact_where_the_coalitions_pin_its_threshold_down():
    # with enough coalitions every hyperplane that separates them induces the same game,
    # the majority itself: the surrogate's refits agree, it is kept, and the values are
    # exact (1 / M each) with standard errors of rounding size
    m = 12
    v, truth = bench_games().majority_game((1,) * m)
    np.testing.assert_allclose(truth, 1.0 / m, atol=1e-15)
    for seed in range(3):
        res = kernel_shap(v, m, 1022, seed=seed)
        np.testing.assert_allclose(res.values, truth, atol=1e-12)
        assert res.standard_errors.max() < 1e-10


def test_large_number_of_features_runs():
    m = 600
    w = np.random.default_rng(1).normal(size=m)
    res = kernel_shap(lambda z: np.tanh(z @ w / 10), m, 1500, batch_size=256)
    assert res.values.shape == (m,)
    assert abs(res.values.sum() - (res.full_value - res.base_value)) < 1e-9
    assert np.all(np.isfinite(res.standard_errors))


def test_l1_reg_not_supported():
    with pytest.raises(NotImplementedError):
        kernel_shap(lambda z: z.sum(axis=1), 4, 10, l1_reg=True)


def and_or_game(m, seed=4):
    """AND and OR terms of 2 to 4 players: a game of order <= 4."""
    rng = np.random.default_rng(seed)
    terms = [(rng.choice(m, size=int(rng.integers(2, 5)), replace=False), rng.random() < 0.5,
              rng.normal()) for _ in range(m)]

    def v(z):
        out = 0.1 * z.sum(axis=1)
        for members, is_and, c in terms:
            out = out + c * (z[:, members].all(axis=1) if is_and else z[:, members].any(axis=1))
        return out

    return v


def test_games_of_order_four_recovered_below_full_enumeration():
    # the odd part of an order-4 game is of order 3: once the pursuit finds its terms, the
    # fit is exact, far below the 1022 coalitions of full enumeration
    m = 10
    v = and_or_game(m)
    truth = brute_force_shapley(v, m)
    for seed in range(3):
        res = kernel_shap(v, m, 400, seed=seed)
        assert not res.exact
        np.testing.assert_allclose(res.values, truth, atol=1e-9)
        plain = kernel_shap(v, m, 400, seed=seed, surrogate=False)
        assert np.linalg.norm(plain.values - truth) > 1e-4


def test_interaction_among_weaker_features_found_when_feature_0_is_null():
    # with M = 20 the candidate triples are those among the 16 strongest features by the
    # first-order fit; feature 0 (a null player here) must be ranked by its own coefficient,
    # not take a place from the interaction's members (ranked 14th-16th)
    m = 20
    a = np.zeros(m)
    a[1:14] = 10.0
    a[14:17] = 0.1

    def v(z):
        zf = z.astype(float)
        return zf @ a + 4.0 * zf[:, 17] * zf[:, 18] * zf[:, 19]

    truth = a.copy()
    truth[17:] += 4.0 / 3.0
    res = kernel_shap(v, m, 1000, seed=3)
    assert not res.exact
    np.testing.assert_allclose(res.values, truth, atol=1e-9)


def test_pairwise_game_exact_from_pairs_alone():
    # complementary pairs cancel every even term: a game of order <= 2 is recovered by the
    # first-order fit as soon as the pairs determine it
    m = 12
    rng = np.random.default_rng(8)
    w, a = rng.normal(size=m), rng.normal(size=(m, m))

    def v(z):
        zf = z.astype(float)
        return zf @ w + np.einsum("ni,ij,nj->n", zf, np.triu(a, 1), zf)

    truth = brute_force_shapley(v, m)
    res = kernel_shap(v, m, 2 * (m + 4), seed=1, surrogate=False)
    np.testing.assert_allclose(res.values, truth, atol=1e-9)


@pytest.mark.parametrize("dependent", [False, True])
def test_matching_pursuit_many_base_columns_at_once_is_least_squares(monkeypatch, dependent):
    """More base columns than _BLOCKED_BASE are added as one block (a Cholesky factor); the
    pursuit then predicts as least squares on the columns it chose, on held rows and in
    sample, and takes the same steps as when the base columns are added one by one. With a
    base column that repeats another, the block is refused and they go one by one."""
    rng = np.random.default_rng(3)
    n, n_base, n_cand = 400, ks._BLOCKED_BASE + 12, 30
    cols = rng.normal(size=(n, n_base + n_cand))
    if dependent:
        cols[:, 7] = cols[:, 3]
    target = cols[:, :n_base] @ rng.normal(size=n_base) + \
        cols[:, n_base + np.array([2, 11])] @ np.array([3.0, -2.0]) + 0.05 * rng.normal(size=n)
    train = np.arange(n) < 300
    tr = cols[train]
    gram, corr = tr.T @ tr, tr.T @ target[train]
    args = (gram, corr, n_base, 5, cols[~train], target[~train])
    blocks, block = [], ks._base_block
    monkeypatch.setattr(ks, "_base_block", lambda *a: blocks.append(block(*a)) or blocks[-1])
    order, errors, preds = ks._omp(*args)
    assert len(blocks) == 1 and (blocks[0] is None) == dependent
    ss = float(target[train] @ target[train])
    own = ks._omp(gram, corr, n_base, 5, ss=ss)
    monkeypatch.setattr(ks, "_BLOCKED_BASE", 10 ** 6)           # one by one
    order_1, errors_1, preds_1 = ks._omp(*args)
    assert order == order_1 and {n_base + 2, n_base + 11} <= set(order[:2])
    np.testing.assert_allclose(errors, errors_1, rtol=1e-9)
    np.testing.assert_allclose(preds, preds_1, atol=1e-9)
    base = [j for j in range(n_base) if not (dependent and j == 7)]
    for k in range(len(order) + 1):
        sel = base + order[:k]
        coef = np.linalg.lstsq(tr[:, sel], target[train], rcond=None)[0]
        np.testing.assert_allclose(preds[k], cols[~train][:, sel] @ coef, atol=1e-8)
        np.testing.assert_allclose(own[1][k], ((target[train] - tr[:, sel] @ coef) ** 2).sum(),
                                   rtol=1e-7)


def test_fold_gram_read_row_by_row_is_the_downdated_gram():
    # _cv_pursuit's folds above _BLOCKED_BASE base columns: the Gram matrix without the
    # held rows, read as _omp reads it (diagonal, base rows, the rows its steps add), is
    # gram - held' held, and the pursuit on it takes the same steps as on the whole one
    rng = np.random.default_rng(4)
    n, n_base, n_cand = 300, ks._BLOCKED_BASE + 6, 40
    cols = rng.normal(size=(n, n_base + n_cand))
    target = cols[:, :n_base] @ rng.normal(size=n_base) + \
        cols[:, n_base + np.array([5, 17, 30])] @ np.array([2.0, -1.5, 1.0]) + \
        0.1 * rng.normal(size=n)
    gram, held = cols.T @ cols, cols[:30]
    whole = gram - held.T @ held
    lazy = ks._Downdated(gram, held, n_base)
    np.testing.assert_allclose(lazy.diag, np.diag(whole), rtol=1e-12)
    np.testing.assert_allclose(lazy.head, whole[:n_base], atol=1e-9)
    for j in (0, n_base - 1, n_base, n_base + n_cand - 1):
        np.testing.assert_allclose(lazy.row(j), whole[j], atol=1e-9)
    corr = cols[30:].T @ target[30:]
    got = ks._omp(lazy, corr, n_base, 8, held, target[:30])
    want = ks._omp(whole, corr, n_base, 8, held, target[:30])
    assert got[0] == want[0] and {n_base + 5, n_base + 17, n_base + 30} <= set(got[0][:3])
    np.testing.assert_allclose(got[1], want[1], rtol=1e-9)
    np.testing.assert_allclose(got[2], want[2], atol=1e-9)


def test_first_phase_choice_of_terms_is_reused_only_for_the_same_arguments(monkeypatch):
    # _choose_singles takes the first phase's choice of terms instead of choosing again
    # only when it was made on the same pairs, weights and target, bit for bit
    rng = np.random.default_rng(2)
    x, sw, base = weighted_pairs(rng, 80, 8)
    target = (x @ rng.normal(size=8)) * sw
    args = (base, x, sw, target, 0.5, 0, False)
    made = ks._select_terms(*args)
    calls = []
    real = ks._select_terms
    monkeypatch.setattr(ks, "_select_terms", lambda *a: calls.append(a) or real(*a))
    chosen = [(args, made)]
    assert ks._selection(chosen, 0, args) is made and not calls
    other = target.copy()
    other[3] = np.nextafter(other[3], np.inf)
    for changed in ((base, x, sw, other, 0.5, 0, False), (base, x, sw, target, 0.5, 1, False)):
        assert ks._selection(chosen, 0, changed) is not made
    assert ks._selection(chosen, 1, args) is not made         # no choice for that column
    assert len(calls) == 3


def test_projected_svd_is_kept_within_a_run_for_the_same_columns_only():
    rng = np.random.default_rng(6)
    base, t_cols = rng.normal(size=(50, 6)), rng.normal(size=(50, 9))

    @ks._Run.scope
    def run():
        q, inv, t_r, u, s, vt = ks._projected_svd(base, t_cols)
        np.testing.assert_allclose(base @ inv, q, atol=1e-12)
        np.testing.assert_allclose(q.T @ t_r, 0.0, atol=1e-12)
        np.testing.assert_allclose((u * s) @ vt, t_r, atol=1e-12)
        assert ks._projected_svd(base, t_cols.copy())[3] is u
        assert ks._orthonormal(base.copy())[0] is q          # its basis is kept too
        moved = t_cols.copy()
        moved[0, 0] += 1e-9
        again = ks._projected_svd(base, moved)
        assert again[3] is not u and ks._projected_svd(base, moved)[3] is again[3]
        assert ks._projected_svd(base, t_cols)[3] is u       # both are kept
        with pytest.raises(ValueError, match="read-only"):
            u[0, 0] = 1.0
        return u

    u = run()
    assert ks._projected_svd(base, t_cols)[3] is not u       # the run's are gone


def test_products_of_terms_of_mixed_orders_are_each_term_s_product():
    rng = np.random.default_rng(11)
    x = random_pairs(rng, 40, 9)
    terms = [(0, 3, 5), (1, 2), (2, 4, 6, 7, 8), (4,), (0, 1, 2, 3, 4, 5, 6), (6, 8),
             (1, 5, 7)]
    out = ks._products(x, terms)
    assert out.shape == (40, len(terms))
    for k, t in enumerate(terms):
        np.testing.assert_array_equal(out[:, k], np.prod(x[:, list(t)], axis=1))
    assert ks._products(x, []).shape == (40, 0)


def test_factorisations_are_kept_within_a_run_for_the_same_matrix_only():
    rng = np.random.default_rng(12)
    a, b = rng.normal(size=(30, 5)), rng.normal(size=(30, 5))
    outside = ks._orthonormal(a)
    assert ks._orthonormal(a)[0] is not outside[0] and outside[0].flags.writeable

    @ks._Run.scope
    def run():
        first = ks._orthonormal(a)
        np.testing.assert_array_equal(first[0], outside[0])
        assert not first[0].flags.writeable and not first[1].flags.writeable
        assert ks._orthonormal(a.copy())[0] is first[0]        # the same bits: kept
        moved = a.copy()
        moved[3, 2] += 1e-12
        assert ks._orthonormal(moved)[0] is not first[0]
        assert ks._orthonormal(a[:, :4])[0].shape == (30, 4)   # another shape
        seen = []
        worker = threading.Thread(target=lambda: seen.append(ks._orthonormal(a)[0]))
        worker.start()
        worker.join()
        assert seen[0] is not first[0]                        # another thread's run
        ks._orthonormal(b)                                   # a fourth matrix: a's goes
        assert ks._orthonormal(a)[0] is not first[0]
        return first

    first = run()
    assert ks._orthonormal(a)[0] is not first[0]             # the run's are gone


@pytest.mark.parametrize("m, budget", [(20, 600), (60, 900)])
def test_kept_factorisations_leave_the_values_unchanged_bit_for_bit(monkeypatch, m, budget):
    w = np.random.default_rng(m).normal(size=m) * 3.0 / math.sqrt(m)

    def game(z):
        zf = z.astype(float)
        return 1.0 / (1.0 + np.exp(-(zf @ w - 0.5))) + 0.2 * zf[:, 0] * zf[:, 1] * zf[:, 2]

    factored = []
    for name in ("qr", "svd"):
        def counted(a, *args, f=getattr(np.linalg, name), **kwargs):
            factored.append(a.shape)
            return f(a, *args, **kwargs)
        monkeypatch.setattr(np.linalg, name, counted)
    # on one BLAS thread: with more, a factorisation's rounding depends on how many threads
    # it ran on (the final fit's first-order one is made on one, beside the model:
    # _prepare_solve)
    with batching.blas_threads(1):
        kept = kernel_shap(game, m, budget, seed=3)
        n_kept = len(factored)
        monkeypatch.setattr(ks, "_KEPT", 0)
        factored.clear()
        fresh = kernel_shap(game, m, budget, seed=3)
    assert n_kept < len(factored)                            # some were asked again
    np.testing.assert_array_equal(kept.values, fresh.values)
    np.testing.assert_array_equal(kept.standard_errors, fresh.standard_errors)


def test_matching_pursuit_predictions_equal_least_squares():
    rng = np.random.default_rng(0)
    n, n_base, n_cand = 60, 4, 12
    cols = rng.normal(size=(n, n_base + n_cand))
    target = cols[:, [0, 5, 9]] @ np.array([1.0, -2.0, 0.5]) + 0.01 * rng.normal(size=n)
    train = np.arange(n) < 45
    tr = cols[train]
    order, errors, preds = ks._omp(tr.T @ tr, tr.T @ target[train], n_base, 6, cols[~train],
                                   target[~train])
    assert {5, 9} <= set(order[:2])
    for k in range(len(order) + 1):
        sel = list(range(n_base)) + order[:k]
        coef = np.linalg.lstsq(tr[:, sel], target[train], rcond=None)[0]
        np.testing.assert_allclose(preds[k], cols[~train][:, sel] @ coef, atol=1e-9)
        np.testing.assert_allclose(errors[k], ((target[~train] - preds[k]) ** 2).sum(),
                                   rtol=1e-9)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_cross_validated_residuals_are_the_pursuits_at_the_chosen_count(seed):
    # a cloud of 80 small triples and noise: a fold's held-out error is noisy and stalls
    # in the first steps, which stops that fold's pursuit early; every pair's held-out
    # residual at the chosen number of terms must still be the prediction of the pursuit
    # fitted without its fold, taken that far (least squares on the columns it chose)
    rng = np.random.default_rng(seed)
    n, m = 300, 10
    x = random_pairs(rng, n, m)
    pool = list(itertools.combinations(range(m), 3))
    cols = np.concatenate([x, ks._products(x, pool)], axis=1)
    true = rng.choice(len(pool), 80, replace=False)
    target = x @ rng.normal(size=m) + 0.05 * rng.normal(size=n) + \
        ks._products(x, [pool[j] for j in true]) @ (0.03 * rng.normal(size=80))
    order, held, _ = ks._cv_pursuit(cols, target, m, 150, seed)
    k = len(order)
    assert k > 20                         # the pursuit took many of the terms
    fold = np.random.default_rng([seed, 17]).permutation(n) % ks._FOLDS
    for f in range(ks._FOLDS):
        out = fold == f
        tr = cols[~out]
        chosen = ks._omp(tr.T @ tr, tr.T @ target[~out], m, k)[0]
        sel = list(range(m)) + list(chosen)
        coef = np.linalg.lstsq(tr[:, sel], target[~out], rcond=None)[0]
        np.testing.assert_allclose(held[out], target[out] - cols[out][:, sel] @ coef,
                                   atol=1e-9)


def test_held_out_residuals_over_one_plus_their_leverage_are_unbiased_for_the_noise():
    # first-order columns carry the signal, the candidate columns are pure noise, so the
    # pursuit mostly adds none: for a fixed fit, E held^2 = s2 (1 + c' G^-1 c), G the Gram
    # matrix without the row's fold; 40 columns on 120 rows make that leverage large
    rng = np.random.default_rng(5)
    n, n_base, n_cand = 120, 40, 30
    cols = rng.normal(size=(n, n_base + n_cand))
    mean = cols[:, :n_base] @ rng.normal(size=n_base)
    fold = np.random.default_rng([0, 17]).permutation(n) % ks._FOLDS
    scaled, raw, lev = [], [], None
    for _ in range(300):
        target = mean + rng.normal(size=n)                      # noise variance 1
        order, held, held_lev = ks._cv_pursuit(cols, target, n_base, 20, 0)
        if order:
            continue
        base = cols[:, :n_base]
        resid = target - base @ np.linalg.lstsq(base, target, rcond=None)[0]
        scaled.append(ks._pair_r2(resid, None, None, (held, held_lev)))
        raw.append(held ** 2)
        lev = held_lev
    assert len(scaled) > 200
    # the leverage is that of the first-order fit without the row's fold
    base = cols[:, :n_base]
    for f in range(ks._FOLDS):
        out = fold == f
        g = base[~out].T @ base[~out]
        np.testing.assert_allclose(lev[out], np.einsum("ij,ji->i", base[out],
                                                       np.linalg.solve(g, base[out].T)))
    assert lev.mean() > 0.3
    assert abs(np.mean(scaled) - 1.0) < 0.06
    assert np.mean(raw) > 1.25                  # the held-out residuals alone overstate it


def bench_games():
    """bench/shapley_games.py, the benchmark's games with exact values, as a module."""
    bench = str(Path(__file__).resolve().parent.parent / "bench")
    if bench not in sys.path:
        sys.path.insert(0, bench)
    return importlib.import_module("shapley_games")


def test_pursuit_on_all_pairs_fits_them_as_well_as_its_folds_predicted():
    # an order-4 game (odd part: features and triples) on 511 pairs for 14 features: every
    # fold's pursuit finds an exact fit, while the pursuit on all the pairs, at the count
    # they chose, had taken other triples on its greedy path and left residuals (its
    # values then erred by 2.6e-4 with standard errors of 3e-16); it goes on until it
    # fits the pairs as well as the folds predicted them
    games = bench_games()
    m = 14
    table = games.synthetic_table("interactions", m)
    exact = games.exact_shapley(table, m)
    res = kernel_shap(games.TableGame(table, m), m, 1022, seed=54, batch_size=8192)
    np.testing.assert_allclose(res.values, exact, atol=1e-12)


def test_pair_r2_takes_the_fit_s_own_residuals_when_the_folds_fit_better():
    # held-out residuals smaller than the fit's in-sample ones come from fits other than
    # this one: the sandwich then takes the fit's residuals over their noise share (HC2);
    # otherwise the held-out ones over one plus their leverage
    rng = np.random.default_rng(0)
    n = 50
    resid = rng.normal(size=n)
    lev = rng.uniform(0.1, 0.5, size=n)
    held_lev = rng.uniform(0.1, 0.5, size=n)
    tiny = 1e-3 * rng.normal(size=n)
    np.testing.assert_allclose(ks._pair_r2(resid, lev, lev, (tiny, held_lev)),
                               resid ** 2 / (1.0 - lev))
    large = 3.0 * rng.normal(size=n)
    np.testing.assert_allclose(ks._pair_r2(resid, lev, lev, (large, held_lev)),
                               large ** 2 / (1.0 + held_lev))


@pytest.mark.parametrize("budget", [64, 256, 1024])
def test_standard_errors_cover_the_truth(budget):
    # a saturating game (the mean of two sigmoids of weighted sums, as a segmentation
    # probability over a region of two pixels; a single sigmoid is recovered exactly by the
    # regression adjustment below two phases): over 24 seeds (60 at 64 evaluations) and 12
    # features, about 95 % of the values lie within 1.96 standard errors
    m = 12
    rng = np.random.default_rng(3)
    w = rng.normal(size=m) * 8 / math.sqrt(m)
    b = rng.normal() - w.sum() / 2
    w2 = rng.normal(size=m) * 8 / math.sqrt(m)
    b2 = rng.normal() - w2.sum() / 2

    def v(z):
        return 0.5 / (1 + np.exp(-(b + z @ w))) + 0.5 / (1 + np.exp(-(b2 + z @ w2)))

    truth = kernel_shap(v, m, 2 ** m).values
    err, se = [], []
    for seed in range(60 if budget == 64 else 24):       # tiny budgets: noisier (err/SE)^2
        res = kernel_shap(v, m, budget - 2, seed=seed)
        err.append(res.values - truth)
        se.append(res.standard_errors)
    err, se = np.array(err), np.array(se)
    assert np.all(se > 0)
    coverage = np.mean(np.abs(err) <= 1.96 * se)
    assert 0.88 <= coverage <= 0.99
    assert 0.6 <= np.mean((err / se) ** 2) <= 1.6


def saturating_game(m, seed=3):
    rng = np.random.default_rng(seed)
    w = rng.normal(size=m) * 8 / math.sqrt(m)
    b = rng.normal() - w.sum() / 2
    return lambda z: 1 / (1 + np.exp(-(b + z @ w)))


@pytest.fixture
def no_first_surrogate(monkeypatch):
    """Two phases without the surrogate: a sigmoid game then exercises the single
    coalitions (with it, the sigmoid is recovered exactly and the singles are not used)."""
    monkeypatch.setattr(ks, "_first_surrogates",
                        lambda d, f, y, delta, s: ([None] * len(delta), []))


def test_single_coalitions_on_a_saturating_game_halve_the_error(no_first_surrogate):
    # a sigmoid's even part is a few % of its odd residual, so after the first phase the
    # rest of the budget goes to single coalitions: MSE 1.3e-4 (pairs only: 3.1e-4)
    m = 12
    v = saturating_game(m)
    truth = brute_force_shapley(v, m)
    mse = np.mean([np.mean((kernel_shap(v, m, 254, seed=s).values - truth) ** 2)
                   for s in range(12)])
    assert mse < 2e-4


@pytest.mark.parametrize("m,budget", [(12, 256), (12, 1024), (14, 2048)])
def test_sigmoid_game_exact_by_the_first_phase_surrogate(m, budget):
    # two phases: the logistic-additive surrogate, kept on the first phase's pairs, is
    # subtracted from every value; a sigmoid of a weighted sum leaves a residual game of 0
    # (before: MSE 1e-4 at 256, the singles' estimate)
    v = saturating_game(m)
    truth = exact_shapley_vectorised(v, m)
    for seed in range(3):
        res = kernel_shap(v, m, budget - 2, seed=seed)
        assert not res.exact
        np.testing.assert_allclose(res.values, truth, atol=1e-10)
        assert abs(res.values.sum() - (res.full_value - res.base_value)) < 1e-12


def test_first_phase_surrogate_helps_a_sigmoid_with_pairwise_terms(request):
    # a sigmoid plus small pairwise products (not in the surrogate's class): the residual
    # game is small, and the two phases on it are far more accurate than on the game
    # (measured: 20x at 512 evaluations); unbiased either way
    m = 12
    rng = np.random.default_rng(3)
    sig = saturating_game(m)
    pairs, c = rng.choice(m, (m, 2)), 0.05 * rng.normal(size=m)

    def v(z):
        z = np.asarray(z, dtype=float)
        return sig(z) + (z[:, pairs[:, 0]] * z[:, pairs[:, 1]]) @ c

    truth = exact_shapley_vectorised(v, m)

    def mse():
        return np.mean([np.mean((kernel_shap(v, m, 510, seed=s).values - truth) ** 2)
                        for s in range(8)])

    with_surrogate = mse()
    request.getfixturevalue("no_first_surrogate")
    assert with_surrogate < 0.2 * mse()


def test_even_part_of_pairwise_products_modelled_exactly_from_pairs():
    # the even part of linear + pairwise products + a 4-feature product is a level per size
    # and those products (with the pairs within the 4); fitted on 120 random pairs, the
    # model predicts it exactly at coalitions it never saw
    from seg_explainer.core.kernel_shap import _even_model, _even_predict

    m = 12
    rng = np.random.default_rng(2)
    w = rng.normal(size=m)
    prods = [(0, 3), (2, 7), (5, 9), (1, 10), (4, 8, 6, 11)]
    w[[4, 6, 8, 11]] += 3.0          # 4-feature terms are tried among the strongest features
    c = rng.normal(size=len(prods))

    def v(z):
        zf = z.astype(float)
        return zf @ w + sum(ci * np.prod(zf[:, list(t)], axis=1) for ci, t in zip(c, prods))

    def sides(n):
        z = rng.random((n, m)) < rng.uniform(0.1, 0.9, size=(n, 1))
        return z, (v(z) + v(~z)) / 2

    z, even = sides(120)
    model, r2 = _even_model(np.where(z, 1.0, -1.0), even, np.ones(len(z)),
                            np.argsort(-np.abs(w)), seed=0)
    z_new, even_new = sides(200)
    pred = _even_predict([model], np.where(z_new, 1.0, -1.0))[:, 0]
    np.testing.assert_allclose(pred, even_new, atol=1e-9)
    assert r2.max() < 1e-18


def test_single_coalitions_with_an_even_model_on_a_game_of_pairwise_products():
    # linear + pairwise products + a small tanh of a weighted sum (odd): the even part is the
    # pairwise products, which the first phase's pairs identify; with it subtracted, single
    # coalitions carry the odd part as well as pairs do at half the cost. Mean MSE over 10
    # seeds at 510 / 1022: 3.6e-7 / 2.6e-8 (a level per size instead, so pairs only:
    # 1.5e-6 / 7.2e-8)
    m = 12
    rng = np.random.default_rng(4)
    w, u = rng.normal(size=m), rng.normal(size=m)
    pairs = [tuple(rng.choice(m, 2, replace=False)) for _ in range(m)]
    a = 0.3 * rng.normal(size=m)

    def v(z):
        zf = z.astype(float)
        quad = sum(c * zf[:, i] * zf[:, j] for c, (i, j) in zip(a, pairs))
        return zf @ w + quad + 0.5 * np.tanh((zf - 0.5) @ u / math.sqrt(m))

    truth = brute_force_shapley(v, m)
    for budget, bound in ((510, 7e-7), (1022, 4e-8)):
        mse = np.mean([np.mean((kernel_shap(v, m, budget, seed=s).values - truth) ** 2)
                       for s in range(10)])
        assert mse < bound, (budget, mse)


def test_singles_near_full_enumeration_complete_pairs_and_stay_calibrated(
        no_first_surrogate):
    # 890 of 1022 coalitions: after the singles of every pair left, the budget completes
    # some of their pairs; those count once, as pairs (counted as two singles, a census
    # with doubled pairs: MSE 4e-7, mean (err/SE)^2 ~ 120; spent on pairs instead: 1.6e-6)
    m, budget = 10, 890
    v = saturating_game(m, seed=1)
    truth = brute_force_shapley(v, m)
    err, z2 = [], []
    for seed in range(20):
        res = kernel_shap(v, m, budget, seed=seed)
        assert res.n_evaluations == budget + 2
        err.append(np.mean((res.values - truth) ** 2))
        z2.append(np.mean(((res.values - truth) / res.standard_errors) ** 2))
    assert np.mean(err) < 1e-8
    assert 0.5 < np.mean(z2) < 2.0


# (12, 126), (12, 510), (16, 1022), (50, 2148): a stratum runs out of unsampled pairs (M = 12:
# 66 of size 2; M = 50 at the engine's default 2 M + 2048: 50 of size 1) before its singles are
# drawn; the rest of the budget goes to the other strata
@pytest.mark.parametrize("m,budget", [(14, 200), (14, 700), (40, 900), (12, 126), (12, 510),
                                      (16, 1022), (50, 2148)])
def test_single_coalitions_distinct_within_budget_and_efficient(m, budget,
                                                                no_first_surrogate):
    rec = Recorder(saturating_game(m))
    res = kernel_shap(rec, m, budget, batch_size=17, seed=5)
    rows = np.concatenate(rec.calls)
    assert all(len(c) <= 17 for c in rec.calls)
    assert len({r.tobytes() for r in rows}) == len(rows) == res.n_evaluations == budget + 2
    total = res.full_value - res.base_value
    assert abs(res.values.sum() - total) <= 1e-12 * max(1.0, abs(total))
    assert np.all(res.standard_errors > 0)


def exact_shapley_vectorised(v, m):
    """Shapley values by enumerating every coalition at once (up to about 20 players)."""
    k = np.arange(2 ** m, dtype=np.int64)
    bits = ((k[:, None] >> np.arange(m)) & 1).astype(bool)
    value = np.asarray(v(bits), dtype=float)
    size = bits.sum(axis=1)
    weight = np.array([1.0 / (m * math.comb(m - 1, s)) for s in range(m)])
    phi = np.empty(m)
    for i in range(m):
        without = k[~bits[:, i]]
        phi[i] = weight[size[without]] @ (value[without | (1 << i)] - value[without])
    return phi


@pytest.mark.parametrize("m,budget", [(12, 62), (14, 126)])
def test_logistic_additive_game_exact_by_regression_adjustment(m, budget):
    # below the budget of two phases, a sigmoid of a weighted sum is fitted by the
    # logistic-additive surrogate, whose Shapley values are computed exactly: the
    # cross-validation keeps it, and the residual game is 0 (pairs alone err by ~3e-3)
    v = saturating_game(m)
    truth = exact_shapley_vectorised(v, m)
    for seed in range(3):
        res = kernel_shap(v, m, budget, seed=seed)
        np.testing.assert_allclose(res.values, truth, atol=1e-9)
        plain = kernel_shap(v, m, budget, seed=seed, surrogate=False)
        assert np.mean((plain.values - truth) ** 2) > 1e-6


def test_regression_adjustment_above_exact_enumeration_of_the_surrogate():
    # 20 players: the surrogate's Shapley values come from antithetic permutations, their
    # error is in the standard errors; efficiency stays exact
    m = 20
    v = saturating_game(m, seed=8)
    truth = exact_shapley_vectorised(v, m)
    res = kernel_shap(v, m, 120, seed=1)
    err = res.values - truth
    assert np.all(res.standard_errors > 0)
    assert np.mean((err / res.standard_errors) ** 2) < 4.0
    assert np.mean(err ** 2) < 0.1 * np.mean(
        (kernel_shap(v, m, 120, seed=1, surrogate=False).values - truth) ** 2)
    total = res.full_value - res.base_value
    assert abs(res.values.sum() - total) <= 1e-12 * max(1.0, abs(total))


def test_a_sampled_stratum_is_the_listed_stratum_s_rows_at_the_drawn_ranks():
    """Sampling pairs without listing the stratum gives the rows listing would (same ranks,
    same random stream): ``_combination`` unranks ``itertools.combinations``' order."""
    from seg_explainer.core.kernel_shap import _all_pairs, _combination, _distinct_subsets

    for n in range(1, 10):
        for k in range(n + 1):
            listed = list(itertools.combinations(range(n), k))
            assert [tuple(_combination(n, k, r)) for r in range(len(listed))] == listed
    for m, s in ((17, 8), (16, 8), (12, 3), (14, 7), (20, 4)):
        population = math.comb(m, s) // (2 if 2 * s == m else 1)
        for count in (1, 7, population // 9 + 1, population // 2):
            got = _distinct_subsets(m, s, count, population, np.random.default_rng(count))
            ranks = np.random.default_rng(count).choice(population, size=count, replace=False)
            assert np.array_equal(got, _all_pairs(m, s)[0::2][np.sort(ranks)]), (m, s, count)
            assert len({row.tobytes() for row in got}) == count


def _aliased_triples(z):
    """3-feature products that are exact affine-free combinations of the features on the
    rows ``z`` (the pairs' first sides): ``prod_T x = sum_j b_j x_j`` with ``sum b = 1``,
    checked by least squares with the constraint eliminated (weights do not matter)."""
    x = np.where(z, 1.0, -1.0)
    a = x[:, 1:] - x[:, :1]
    out = []
    for t in itertools.combinations(range(z.shape[1]), 3):
        y = x[:, list(t)].prod(axis=1) - x[:, 0]
        coef = np.linalg.lstsq(a, y, rcond=None)[0]
        if np.linalg.norm(y - a @ coef) < 1e-9 * np.linalg.norm(x[:, 0]):
            out.append(t)
    return out


def test_small_designs_do_not_alias_a_3_feature_term_with_the_features():
    # 31 pairs for 16 features: a plain random draw makes some 3-feature product an exact
    # combination of the features in about half of the seeds, and a game driven by that
    # product is then fitted exactly and wrongly (errors of the order of the values with
    # standard errors 400x too small); the design is drawn several times and the least
    # aliased draw kept
    from seg_explainer.core.kernel_shap import _design

    hit = sum(bool(_aliased_triples(_design(16, 62, "leverage",
                                            np.random.default_rng(seed))["z"][0::2]))
              for seed in range(30))
    assert hit == 0


def test_chosen_small_designs_keep_uniform_inclusion_within_a_stratum():
    # the choice among draws ignores the features' labels, so every coalition of a size
    # stays equally likely and the Horvitz-Thompson weights stay right: over 1500 designs
    # of 13 pairs on 8 features, each coalition's count within its size is binomial
    from seg_explainer.core.kernel_shap import _design

    m, runs = 8, 1500
    counts = {}
    for seed in range(runs):
        z = _design(m, 26, "leverage", np.random.default_rng(seed))["z"][0::2]
        for row in z:
            key = tuple(np.flatnonzero(row))
            counts[key] = counts.get(key, 0) + 1
    for s in (1, 2, 3):
        keys = [k for k in itertools.combinations(range(m), s)]
        got = np.array([counts.get(k, 0) for k in keys], dtype=float)
        assert got.sum() > 20 * len(keys)
        expected = got.mean()
        chi2 = ((got - expected) ** 2 / expected).sum()
        # chi-square with len - 1 degrees of freedom: far beyond its 99.9 % point fails
        assert chi2 < len(keys) - 1 + 5 * math.sqrt(2 * (len(keys) - 1)), (s, chi2)


def sparse_strong_game(m, seed=7):
    """Three strong features (a random function of their 8 coalitions) and a weak linear
    part: a game of order 3 whose odd part is first order plus one 3-feature product."""
    rng = np.random.default_rng(seed)
    strong = rng.choice(m, size=3, replace=False)
    table = 2.0 * rng.normal(size=8)
    lin = 0.05 * rng.normal(size=m)

    def v(z):
        idx = (np.asarray(z, dtype=np.int64)[:, strong] << np.arange(3)).sum(axis=1)
        return table[idx] - table[0] + np.asarray(z, dtype=float) @ lin

    return v


@pytest.mark.parametrize("m", [12, 16])
def test_standard_errors_see_aliased_terms_at_tiny_budgets(m):
    # 64 evaluations: a few 3-feature products are unavoidably aliased with another one on
    # the pairs; where the chosen term has an exact swap, the values are averaged over the
    # equally good models and their spread joins the standard errors. Over 20 seeds no
    # value is off by more than 6 of its standard errors (before: up to 400x) and the mean
    # (error / SE)^2 is at most about 1
    v = sparse_strong_game(m)
    truth = exact_shapley_vectorised(v, m)
    z2 = []
    for seed in range(20):
        res = kernel_shap(v, m, 62, seed=seed)
        err = res.values - truth
        # a value exact but for rounding (the strong triple found, and this game has no
        # other odd terms) has an error and a standard error of rounding size: no ratio
        z = np.where(np.abs(err) > 1e-9, err / res.standard_errors, 0.0)
        assert np.abs(z).max() < 6.0, (seed, np.abs(z).max())
        z2.append(np.mean(z ** 2))
    assert np.mean(z2) < 1.5


def test_first_phase_surrogate_per_column_of_a_vector_game():
    # two phases on a vector-valued game: the surrogate is kept (and subtracted) per column,
    # so the sigmoid column is exact whatever the other column (a game it cannot fit) does
    m = 10
    sig, other = saturating_game(m), product_max_game(m, 0)

    def stacked(z):
        return np.stack([sig(z), other(z)], axis=1)

    truth = [exact_shapley_vectorised(sig, m), exact_shapley_vectorised(other, m)]
    for seed in range(3):
        res = kernel_shap(stacked, m, 400, seed=seed)
        assert not res.exact
        np.testing.assert_allclose(res.values[:, 0], truth[0], atol=1e-10)
        assert np.max(np.abs(res.values[:, 1] - truth[1])) > 1e-6     # not exact: estimated
        np.testing.assert_allclose(res.values.sum(axis=0), res.full_value - res.base_value,
                                   atol=1e-12)


def penalised_lstsq(cols, target, k_free, ridge):
    """Least squares with ``ridge * |c|^2`` on the coefficients after the first ``k_free``,
    solved directly by augmented rows: ``(coef, augmented columns)``."""
    k_pen = cols.shape[1] - k_free
    pen = np.zeros((k_pen, cols.shape[1]))
    pen[:, k_free:] = math.sqrt(ridge) * np.eye(k_pen)
    aug = np.concatenate([cols, pen])
    return np.linalg.lstsq(aug, np.concatenate([target, np.zeros(k_pen)]), rcond=None)[0], aug


def test_ridge_fit_map_is_penalised_least_squares():
    # the dense triples' ridge fit, from the projection's SVD, against the penalised least
    # squares solved directly (augmented rows penalise the terms' coefficients only)
    rng = np.random.default_rng(1)
    m, n = 7, 40
    x, sw, base = weighted_pairs(rng, n, m)
    terms = list(itertools.combinations(range(m), 3))       # 35 terms: fewer pairs than columns
    target = rng.normal(size=n)
    for ridge in (0.3, 5.0):
        cols, fit, lev, lev2 = ks._fit_map(base, x, sw, terms, ridge)
        coef, aug = penalised_lstsq(cols, target, base.shape[1], ridge)
        np.testing.assert_allclose(fit @ target, coef, atol=1e-9)
        hat = cols @ np.linalg.solve(aug.T @ aug, cols.T)
        np.testing.assert_allclose(lev, np.diag(hat), atol=1e-9)
        np.testing.assert_allclose(lev2, np.diag(hat @ hat.T), atol=1e-9)
        assert (lev2 < lev - 1e-3).any()          # penalised: H is not a projection


def test_pair_r2_is_unbiased_for_the_noise_of_a_ridge_fit():
    # residuals of the penalised fit, each divided by its share of the noise: on average
    # over noise draws, the noise variance at every pair (HC3, the leave-one-out residuals
    # squared, overstates it at high leverage; the raw squared residuals understate it)
    rng = np.random.default_rng(4)
    m, n, draws = 7, 40, 4000
    x, sw, base = weighted_pairs(rng, n, m)
    terms = list(itertools.combinations(range(m), 3))
    cols, fit, lev, lev2 = ks._fit_map(base, x, sw, terms, 50.0)   # 19 effective of 40
    hat = cols @ fit
    noise = rng.normal(size=(draws, n))
    resid = noise - noise @ hat.T
    r2 = np.mean([ks._pair_r2(r, lev, lev2, None) for r in resid], axis=0)
    assert r2 == pytest.approx(np.ones(n), abs=0.1)
    assert np.mean(resid ** 2, axis=0).mean() < 0.8
    hc3 = np.mean((resid / (1.0 - lev)) ** 2, axis=0)
    assert hc3.mean() > 1.2


def test_ridge_standard_errors_carry_the_penalty_bias():
    # noise-free pairs of a game with many triples: the penalised fit's only error is the
    # penalty's bias. Its plug-in estimate (the fit's own, shrunk, coefficients in place of
    # the true ones) is smaller than the error in every draw, and the standard errors add
    # it in square to the residuals' sandwich
    m, n = 7, 100
    terms = list(itertools.combinations(range(m), 3))
    lmap = ks._value_map(m, terms)
    design = {"n_enum": 0, "pair_stratum": np.zeros(n, int), "fpc": np.ones(1)}
    for seed in range(3):
        rng = np.random.default_rng(seed)
        x, sw, base = weighted_pairs(rng, n, m)
        cols = ks._fit_map(base, x, sw, terms)[0]
        ridge = 0.3 * (cols[:, m - 1:] ** 2).sum() / len(terms)
        cols, fit, lev, lev2 = ks._fit_map(base, x, sw, terms, ridge)
        c = np.concatenate([rng.normal(size=m - 1), 0.3 * rng.normal(size=len(terms))])
        target = cols @ c
        coef = fit @ target
        error = lmap @ (coef - c)                       # the values' error: all bias
        plug_in = lmap @ (fit @ (cols @ coef) - coef)
        assert 0.05 * np.linalg.norm(error) < np.linalg.norm(plug_in) < np.linalg.norm(error)
        _, se, _ = ks._fit_odd(base, x, sw, target, terms, 0.0, design, ridge=ridge)
        r2 = ks._pair_r2(target - cols @ coef, lev, lev2, None)
        sandwich = ks._sandwich_se(design, lmap @ fit, r2, 2 * lev - lev2)
        np.testing.assert_allclose(se ** 2, sandwich ** 2 + plug_in ** 2, rtol=1e-9)


def test_dense_ridge_leave_one_out_residuals_are_refits():
    rng = np.random.default_rng(2)
    n, k_base, k_terms = 30, 4, 12
    base = rng.normal(size=(n, k_base))
    t_cols = rng.normal(size=(n, k_terms))
    target = base @ rng.normal(size=k_base) + t_cols @ (0.3 * rng.normal(size=k_terms)) \
        + 0.2 * rng.normal(size=n)
    ridge, loo = ks._dense_ridge(base, t_cols, target, determined=True)
    assert ridge is not None and ridge > 0.0      # shrinking 12 small terms beats none here
    cols = np.concatenate([base, t_cols], axis=1)
    for i in range(n):
        keep = np.arange(n) != i
        coef = penalised_lstsq(cols[keep], target[keep], k_base, ridge)[0]
        assert loo[i] == pytest.approx(target[i] - cols[i] @ coef, abs=1e-9)


def test_dense_ridge_declines_terms_in_the_span_of_the_first_order_columns():
    # triples that are exact combinations of the first-order columns on these pairs carry
    # nothing the first-order fit does not: no penalty is offered (before the guard, the
    # rounding noise left in their projection was fitted as if it were signal)
    rng = np.random.default_rng(3)
    base = rng.normal(size=(40, 5))
    t_cols = base @ rng.normal(size=(5, 8))
    target = rng.normal(size=40)
    assert ks._dense_ridge(base, t_cols, target, determined=True) == (None, None)
    ridge, loo = ks._dense_ridge(base, t_cols + 0.1 * rng.normal(size=(40, 8)), target, True)
    assert ridge is not None and loo.shape == (40,)


def tanh_game(m, seed):
    """Linear, plus pairwise products, plus a tanh of a weighted sum: its odd part beyond
    first order is a cloud of small 3-, 5-, ...-feature terms, none of them strong."""
    rng = np.random.default_rng(seed)
    w = rng.normal(size=m)
    pairs = np.array([rng.choice(m, 2, replace=False) for _ in range(m)])
    a = 0.3 * rng.normal(size=m)
    u = rng.normal(size=m)

    def v(z):
        zf = np.asarray(z, dtype=float)
        return zf @ w + (zf[:, pairs[:, 0]] * zf[:, pairs[:, 1]]) @ a \
            + 0.5 * np.tanh((zf - 0.5) @ u / math.sqrt(m))

    return v


def test_ridge_on_dense_triples_helps_on_a_cloud_of_small_terms(monkeypatch):
    # 127 pairs for 12 features do not determine the 220 triples, and matching pursuit
    # finds few of the many small ones worth its cross-validation; offering the
    # ridge-penalised triples (shrinking all) beside it cuts the error by 2.6x over five
    # such games (0.26-0.81 per game), and no game is worse
    m = 12
    with_ridge, without = [], []
    for game_seed in range(5):
        v = tanh_game(m, game_seed)
        truth = exact_shapley_vectorised(v, m)
        for grid, out in ((ks._DENSE_RIDGE, with_ridge), ((), without)):
            monkeypatch.setattr(ks, "_DENSE_RIDGE", grid)
            out.append(np.mean([np.mean((kernel_shap(v, m, 254, seed=seed).values - truth) ** 2)
                                for seed in range(10)]))
    with_ridge, without = np.array(with_ridge), np.array(without)
    assert with_ridge.sum() < 0.6 * without.sum(), (with_ridge, without)
    assert (with_ridge < 1.1 * without).all(), (with_ridge, without)


def test_progress_follows_the_estimator_s_own_work_and_leaves_the_values_alone(monkeypatch):
    """After the last evaluation the estimator still fits (here the boosted trees' ten
    folds): the progress counts that work. On a clock that only the game (1 ms an
    evaluation) and the trees' fits (0.1 s each) move, with the estimator's work predicted
    at 2 s, the fraction at the last evaluation is E / (E + 2) for the evaluations' E
    seconds; after the k-th fit it is the time spent over that plus the fits left at their
    pace, (E + 0.1 k) / (E + 1) (at most 0.99); 1 at the end. The values and standard
    errors are those of a run without progress."""
    from types import SimpleNamespace

    m, budget = 30, 700
    game = product_max_game(m)
    now = [0.0]
    clock = SimpleNamespace(perf_counter=lambda: now[0])
    monkeypatch.setattr(ks, "time", clock)
    monkeypatch.setattr(importlib.import_module("seg_explainer.core.solve_time"), "time", clock)
    monkeypatch.setattr(ks, "solve_seconds", lambda *a, **k: 2.0)
    real_fit = ks.boosted_trees.fit

    def fit(*a, **k):
        now[0] += 0.1
        return real_fit(*a, **k)

    monkeypatch.setattr(ks.boosted_trees, "fit", fit)
    seen, evaluated = [], [0]

    def timed(z):
        evaluated[0] += len(z)
        now[0] += 0.001 * len(z)
        return game(z)

    res = kernel_shap(timed, m, budget, seed=2, batch_size=32,
                      progress=lambda f: seen.append((evaluated[0], now[0], f)))
    e = 0.001 * res.n_evaluations
    at_end = [f for n, _, f in seen if n == res.n_evaluations]
    assert at_end[0] == pytest.approx(e / (e + 2.0))
    fits = [(t, f) for _, t, f in seen if t > e + 1e-9]
    assert len(fits) == ks._TREE_FOLDS + 1 and fits[-1][1] == 1.0     # each fit, then the end
    for k, (t, f) in enumerate(fits[:-1], start=1):                      # (below 1 till then)
        assert t == pytest.approx(e + 0.1 * k)
        assert f == pytest.approx(min((e + 0.1 * k) / (e + 1.0), 0.99))
    fractions = [f for _, _, f in seen]
    assert all(0 <= a < b <= 1 for a, b in zip(fractions, fractions[1:]))
    monkeypatch.undo()
    plain = kernel_shap(game, m, budget, seed=2, batch_size=32)
    np.testing.assert_array_equal(res.values, plain.values)
    np.testing.assert_array_equal(res.standard_errors, plain.standard_errors)


def test_solve_seconds_counts_the_trees_only_where_they_can_run():
    """The estimator's expected time: none for an exact run, more with the trees' adjustment
    than without it, and without it when there are too few pairs for its folds."""
    assert ks.solve_seconds(8, 254) == 0.0                   # every coalition: exact
    assert ks.solve_seconds(40, 600, surrogate=False) == 0.0  # one least-squares solve
    with_trees = ks.solve_seconds(40, 600)
    without = ks.solve_seconds(40, 600, trees=False)
    assert with_trees > without > 0
    assert with_trees / without == pytest.approx(
        (ks._SOLVE_ROUNDS + ks._TREES_ROUNDS) / ks._SOLVE_ROUNDS)
    few = 2 * (2 * ks._TREE_FOLDS) - 2                      # one pair short of the folds' need
    assert ks.solve_seconds(40, few) == pytest.approx(
        ks.solve_seconds(40, few, trees=False))
    many = ks._TREES_PLAYERS + 1                             # beyond the trees' player limit
    assert ks.solve_seconds(many, 2000) == ks.solve_seconds(many, 2000, trees=False) > 0
