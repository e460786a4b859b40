"""Boosted trees on coalitions (core/boosted_trees.py) and Kernel SHAP's trees adjustment
(kernel_shap(..., trees=True), the default)."""

import itertools

import numpy as np
import pytest
from test_core_shap import brute_force_shapley, ks, saturating_game

from seg_explainer.core import ExplanationCancelled, boosted_trees
from seg_explainer.core.kernel_shap import kernel_shap


def all_coalitions(m):
    return np.array(list(itertools.product([False, True], repeat=m)))


def nested_game(m, seed=5):
    """A decision-list game (what trees express and a sum of low-order terms does not)
    plus a small linear part."""
    w = np.random.default_rng(seed).normal(size=m)

    def v(z):
        z = np.asarray(z, dtype=bool)
        out = np.where(z[:, 0] & z[:, 1], 1.0 + 0.5 * z[:, 2],
                       np.where(z[:, 3], 0.7 * (z[:, 4] | z[:, 5]), 0.2 * z[:, 6]))
        return out + 0.05 * (z @ w)

    return v


@pytest.mark.parametrize("n_rows, depth", [(40, 6), (200, 3), (128, 1)])
def test_shapley_values_of_the_trees_are_those_of_the_game_they_define(n_rows, depth):
    # the closed form per leaf against the permutation formula over every coalition of
    # the fitted model; 40 rows for depth 6 leave nodes unsplit (their second child empty)
    m = 7
    rng = np.random.default_rng(n_rows)
    z = rng.random((n_rows, m)) < 0.5
    y = nested_game(m)(z) + 0.1 * rng.normal(size=n_rows)
    model = boosted_trees.fit(z, y, depth=depth, rounds=25)
    if depth == 6:
        assert any((level < 0).any() for splits, _ in model.trees for level in splits)
    exact = brute_force_shapley(model.predict, m)
    assert np.allclose(model.shapley(), exact, rtol=0, atol=1e-12)
    total = model.predict(np.ones((1, m), bool)) - model.predict(np.zeros((1, m), bool))
    assert model.shapley().sum() == pytest.approx(total[0], abs=1e-12)


def test_shapley_values_are_a_loop_over_the_leaves_bit_for_bit():
    # every leaf's closed-form terms added leaf after leaf, as written in the module notes
    import math

    rng = np.random.default_rng(11)
    z = rng.random((60, 9)) < 0.5
    model = boosted_trees.fit(z, nested_game(9)(z) + 0.1 * rng.normal(size=60), rounds=30)
    want = np.zeros(9)
    for splits, values in model.trees:
        depth = len(splits)
        for leaf in np.flatnonzero(values):
            on, off, node, dead = [], [], 0, False
            for level in range(depth):
                bit = (int(leaf) >> (depth - 1 - level)) & 1
                j = int(splits[level][node])
                if j >= 0:
                    (on if bit else off).append(j)
                dead |= j < 0 and bit == 1
                node = 2 * node + bit
            a, b = len(on), len(off)
            if dead or a + b == 0:
                continue
            total = math.factorial(a + b)
            if a:
                want[on] += values[leaf] * math.factorial(a - 1) * math.factorial(b) / total
            if b:
                want[off] -= values[leaf] * math.factorial(a) * math.factorial(b - 1) / total
    assert any((level < 0).any() for splits, _ in model.trees for level in splits)
    np.testing.assert_array_equal(model.shapley(), want)


def test_children_sums_are_the_sums_over_each_childs_rows():
    rng = np.random.default_rng(3)
    n, m, width = 300, 9, 8
    x = (rng.random((n, m)) < 0.5).astype(float)
    r = rng.normal(size=n)
    node = rng.integers(0, width, n)
    node[node == 5] = 4                       # a parent none of whose rows went second
    parent = node >> 1

    def sums(nodes, k):
        member = np.zeros((n, k))
        member[np.arange(n), nodes] = 1.0
        return x.T @ (member * r[:, None]), x.T @ member

    s1, n1 = boosted_trees._children_sums(x, r, node, *sums(parent, width // 2))
    s_ref, n_ref = sums(node, width)
    assert np.allclose(s1, s_ref, rtol=0, atol=1e-12)
    assert np.array_equal(n1, n_ref)          # counts: exact
    assert not n1[:, 5].any() and np.array_equal(n1[:, 4], sums(parent, 4)[1][:, 2])


def test_boosting_lowers_the_training_error_and_recovers_a_tree_shaped_game():
    m = 8
    z = all_coalitions(m)
    y = nested_game(m)(z) - 0.05 * (z @ np.random.default_rng(5).normal(size=m))  # no linear part
    errors = [np.mean((boosted_trees.fit(z, y, rounds=r).predict(z) - y) ** 2)
              for r in (1, 5, 50)]
    assert errors[0] > errors[1] > errors[2]
    assert errors[2] < 1e-6 * np.var(y)


def test_trees_adjustment_is_on_by_default_and_keeps_efficiency():
    m, v = 12, nested_game(12)
    exact = brute_force_shapley(v, m)
    errors = {False: [], True: []}
    changed = 0
    for seed in range(6):
        plain = kernel_shap(v, m, 256, seed=seed, trees=False)
        adjusted = kernel_shap(v, m, 256, seed=seed)
        assert np.array_equal(adjusted.values, kernel_shap(v, m, 256, seed=seed, trees=True).values)
        assert adjusted.n_evaluations == plain.n_evaluations
        assert adjusted.values.sum() == pytest.approx(v(np.ones((1, m), bool))[0]
                                                      - v(np.zeros((1, m), bool))[0], abs=1e-12)
        assert np.all(adjusted.standard_errors >= 0)
        changed += not np.array_equal(plain.values, adjusted.values)
        errors[False].append(np.mean((plain.values - exact) ** 2))
        errors[True].append(np.mean((adjusted.values - exact) ** 2))
    assert changed >= 1                           # kept somewhere on this game
    assert np.mean(errors[True]) < np.mean(errors[False])


@pytest.mark.parametrize("extra", [0, 1])
def test_trees_are_tried_up_to_their_player_limit(monkeypatch, extra):
    """Up to ``_TREES_PLAYERS`` players the trees' ten folds are fitted; one player more,
    none is, and the values are the run's without the trees (beyond the limit,
    cross-validation never kept them on the games measured, docs/benchmarks.md)."""
    m = ks._TREES_PLAYERS + extra
    rng = np.random.default_rng(4)
    terms = [(rng.choice(m, size=int(rng.integers(2, 5)), replace=False), rng.random() < 0.5,
              rng.normal()) for _ in range(2 * m)]

    def v(z):                       # AND and OR terms of 2-4 players: no logistic surrogate
        z = np.asarray(z, dtype=bool)
        return sum(c * (z[:, t].all(axis=1) if is_and else z[:, t].any(axis=1))
                   for t, is_and, c in terms)

    fits = []
    real_fit = boosted_trees.fit
    monkeypatch.setattr(boosted_trees, "fit", lambda *a, **k: fits.append(1) or real_fit(*a, **k))
    res = kernel_shap(v, m, 2 * m + 2048, seed=0)
    assert len(fits) == (0 if extra else ks._TREE_FOLDS)
    if extra:
        plain = kernel_shap(v, m, 2 * m + 2048, seed=0, trees=False)
        np.testing.assert_array_equal(res.values, plain.values)


def test_cancel_is_heard_while_the_trees_are_fitted():
    # the trees are fitted after the last evaluation: a cancel asked then stops the run
    m, v = 12, nested_game(12)
    n_eval = kernel_shap(v, m, 256, seed=0).n_evaluations
    seen = {"rows": 0, "checks_after": 0}

    def counted(z):
        seen["rows"] += len(z)
        return v(z)

    def cancel():
        if seen["rows"] >= n_eval:
            seen["checks_after"] += 1
            return True
        return False

    with pytest.raises(ExplanationCancelled):
        kernel_shap(counted, m, 256, seed=0, cancel=cancel)
    assert seen["rows"] == n_eval and seen["checks_after"] == 1
    # without the trees nothing is checked after the last evaluation: the run completes
    seen.update(rows=0, checks_after=0)
    assert kernel_shap(counted, m, 256, seed=0, cancel=cancel, trees=False).n_evaluations == n_eval


def test_trees_are_not_tried_where_the_logistic_surrogate_is_kept():
    # one sigmoid of a weighted sum: the logistic surrogate recovers it exactly (one phase)
    m = 10
    w = np.random.default_rng(2).normal(size=m) * 8 / np.sqrt(m)
    b = -0.5 * w.sum()

    def v(z):
        return 1 / (1 + np.exp(-(b + np.asarray(z, dtype=float) @ w)))

    exact = brute_force_shapley(v, m)
    for seed in range(3):
        plain = kernel_shap(v, m, 62, seed=seed)
        assert np.allclose(plain.values, exact, atol=1e-12)
        assert np.array_equal(plain.values, kernel_shap(v, m, 62, seed=seed, trees=True).values)


def test_vector_output_adjusts_each_column_as_alone():
    m = 10
    games = (nested_game(m), saturating_game(m))

    def v(z):
        return np.stack([g(z) for g in games], axis=1)

    both = kernel_shap(v, m, 200, seed=1, trees=True)
    for col, g in enumerate(games):
        alone = kernel_shap(g, m, 200, seed=1, trees=True)
        assert np.allclose(both.values[:, col], alone.values, rtol=0, atol=1e-10)
