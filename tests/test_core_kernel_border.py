"""The border estimate of small one-phase Kernel SHAP budgets: its pilot and its use."""

import importlib

import numpy as np
import pytest
from test_core_shap import (bench_games, exact_shapley_vectorised, saturating_game,
                            sparse_strong_game)

from seg_explainer.core.kernel_shap import kernel_shap

ks = importlib.import_module("seg_explainer.core.kernel_shap")


def order_two_game(m, seed=3, cubic=0.0):
    """Linear plus pairwise products, plus ``cubic`` times a sum of 3-feature products: a
    game of order 2 when ``cubic`` is 0."""
    rng = np.random.default_rng(seed)
    lin, pair = rng.normal(size=m), 0.3 * np.triu(rng.normal(size=(m, m)), 1)
    triples = [tuple(rng.choice(m, 3, replace=False)) for _ in range(2 * m)]
    coef = rng.normal(size=len(triples))

    def v(z):
        x = np.asarray(z, dtype=float)
        out = x @ lin + np.einsum("ni,ij,nj->n", x, pair, x)
        for c, t in zip(coef, triples):
            out += cubic * c * x[:, t[0]] * x[:, t[1]] * x[:, t[2]]
        return out

    return v


class Recorder:
    """A game that records every coalition it is asked."""

    def __init__(self, v):
        self.v, self.asked = v, []

    def __call__(self, z):
        self.asked.extend(tuple(np.flatnonzero(row)) for row in z)
        return self.v(z)

    def border_complete(self, m):
        asked = set(self.asked)
        full = tuple(range(m))
        return all((i,) in asked and tuple(j for j in full if j != i) in asked
                   for i in range(m))


def _border_design(m, budget):
    """A design for ``m`` features that lists the whole size-1 stratum first, as
    ``_border_pilot`` returns it, with the empty and full coalitions' rows before it."""
    design = ks._design(m, budget, "leverage", np.random.default_rng(0))
    assert design["n_enum"] == 2 * m          # the size-1 stratum enumerated, listed first
    design["border"] = True
    z = np.concatenate([np.zeros((1, m), bool), np.ones((1, m), bool), design["z"]])
    return design, z


def test_border_estimate_replaces_a_fit_it_beats_and_is_exact_on_order_two():
    # on a game of order 2 the border estimate (v(i) - v(0) + v(N) - v(N \ i)) / 2 is
    # exact, its residuals on the other pairs are 0, so it replaces a fit whose held-out
    # error is not; its standard error is then the fit's distance from it
    m = 6
    v = order_two_game(m)
    truth = exact_shapley_vectorised(v, m)
    design, z = _border_design(m, 30)
    y = v(z)[:, None]
    phi = truth[:, None] + np.random.default_rng(1).normal(0, 0.1, (m, 1))
    phi -= (phi.sum() - truth.sum()) / m
    se = np.full((m, 1), 0.1)
    n_pairs = len(design["z"]) // 2
    cv = [np.full(n_pairs, 0.05)]
    got, got_se = ks._border_adjust(design, y, phi, se, cv, np.array([True]))
    np.testing.assert_allclose(got[:, 0], truth, atol=1e-12)
    np.testing.assert_allclose(got_se[:, 0], np.abs(phi[:, 0] - truth), atol=1e-12)
    # a fit with no held-out error is left as it is
    same, same_se = ks._border_adjust(design, y, phi, se, [np.zeros(n_pairs)],
                                      np.array([True]))
    np.testing.assert_array_equal(same, phi)
    np.testing.assert_array_equal(same_se, se)
    # and a column not asked for too
    other, _ = ks._border_adjust(design, y, phi, se, cv, np.array([False]))
    np.testing.assert_array_equal(other, phi)


def test_border_estimate_is_kept_out_where_its_residuals_are_larger():
    # a strong 3-feature term: the border estimate is biased by a sixth of it per member
    # and its residuals on the other pairs show it, against a fit with small held-out
    # error: the result stays within 1 % of the border's distance from the fit
    m = 6
    v = sparse_strong_game(m)
    design, z = _border_design(m, 30)
    y = v(z)[:, None]
    phi = exact_shapley_vectorised(v, m)[:, None]
    border = 0.5 * ((y[2:2 + 2 * m:2, 0] - y[0, 0]) + (y[1, 0] - y[3:3 + 2 * m:2, 0]))
    border += ((y[1, 0] - y[0, 0]) - border.sum()) / m
    assert np.abs(border - phi[:, 0]).max() > 0.1
    se = np.full((m, 1), 0.1)
    cv = [np.full(len(design["z"]) // 2, 1e-3)]
    got, _ = ks._border_adjust(design, y, phi, se, cv, np.array([True]))
    assert np.abs(got - phi).max() < 0.01 * np.abs(border - phi[:, 0]).max()
    assert got.sum() == pytest.approx(phi.sum(), abs=1e-12)


@pytest.mark.parametrize("m", [10, 12, 14, 16])
def test_pilot_completes_the_size1_stratum_of_an_order_two_game(m):
    # 64 evaluations: the pilot sees no odd term beyond the first order, so the missing
    # singles and their complements are asked instead of the held pairs; the budget is
    # kept, no coalition is asked twice, and the values are exact (order 2)
    v = order_two_game(m)
    truth = exact_shapley_vectorised(v, m)
    for seed in range(3):
        game = Recorder(v)
        res = kernel_shap(game, m, 62, seed=seed)
        assert game.border_complete(m)
        assert len(game.asked) == len(set(game.asked)) == res.n_evaluations == 64
        np.testing.assert_allclose(res.values, truth, atol=1e-9)
        assert res.values.sum() == pytest.approx(truth.sum(), abs=1e-12)


def test_pilot_keeps_the_drawn_pairs_where_it_sees_a_strong_term(monkeypatch):
    # a strong 3-feature term: where the pilot's pairs show it (a term chosen, or residuals
    # the first order does not predict), the held pairs are evaluated and the run is the
    # one without a pilot, bit for bit; the size-1 stratum is completed only where the
    # pilot said so (it keeps the drawn pairs in 6 of these 12 seeds)
    m = 12
    v = sparse_strong_game(m)
    decisions = []
    low_order = ks._low_order

    def spy(*args):
        decisions.append(low_order(*args))
        return decisions[-1]

    kept = 0
    for seed in range(12):
        game = Recorder(v)
        decisions.clear()
        with monkeypatch.context() as mp:
            mp.setattr(ks, "_low_order", spy)
            res = kernel_shap(game, m, 62, seed=seed)
        assert decisions == [game.border_complete(m)]
        if decisions[0]:
            continue
        kept += 1
        with monkeypatch.context() as mp:
            mp.setattr(ks, "_BORDER_PAIRS", 0)
            plain = kernel_shap(v, m, 62, seed=seed)
        np.testing.assert_array_equal(res.values, plain.values)
        np.testing.assert_array_equal(res.standard_errors, plain.standard_errors)
    assert kept >= 3


def test_border_lowers_the_error_on_a_nearly_order_two_game(monkeypatch):
    # the benchmark's smooth game (linear, pairwise products and a small tanh of the sum):
    # at 64 evaluations the sampled pairs' variance exceeds the border's bias
    games = bench_games()
    m = 12
    table = games.synthetic_table("smooth", m)
    truth = games.exact_shapley(table, m)
    v = games.TableGame(table, m)

    def mse(pairs):
        with monkeypatch.context() as mp:
            mp.setattr(ks, "_BORDER_PAIRS", pairs)
            return np.mean([np.mean((kernel_shap(v, m, 62, seed=s).values - truth) ** 2)
                            for s in range(20)])

    assert mse(ks._BORDER_PAIRS) < 0.5 * mse(0)


def test_pilot_decides_for_all_columns_at_once(monkeypatch):
    # one design for every column: a column with a strong term keeps the drawn pairs for
    # the order-2 column too, which then equals the run without a pilot
    m = 12
    games = [order_two_game(m, cubic=0.02), sparse_strong_game(m)]

    def stacked(z):
        return np.stack([g(z) for g in games], axis=1)

    seed = next(s for s in range(10)
                if not _completes(games[1], m, s) and _completes(games[0], m, s))
    res = kernel_shap(stacked, m, 62, seed=seed)
    monkeypatch.setattr(ks, "_BORDER_PAIRS", 0)
    for d, g in enumerate(games):
        plain = kernel_shap(g, m, 62, seed=seed)
        np.testing.assert_allclose(res.values[:, d], plain.values, atol=1e-9)
        np.testing.assert_allclose(res.standard_errors[:, d], plain.standard_errors,
                                   atol=1e-9)


def _completes(v, m, seed):
    game = Recorder(v)
    kernel_shap(game, m, 62, seed=seed)
    return game.border_complete(m)


def test_enumerated_pairs_share_of_the_parameters_leaves_the_sampled_degrees_of_freedom():
    # the enumerated pairs carry no sampling variance, and the parameters they determine
    # cost the sampled pairs no degrees of freedom: the same sampled pairs give the same
    # standard errors whether the enumerated pairs hold a large share of the parameters
    # or none (a border design at 64 evaluations and M = 16: 16 enumerated pairs, 15
    # sampled, 17 parameters)
    rng = np.random.default_rng(0)
    m, n_enum, n_sampled = 16, 16, 15
    strata = np.repeat(np.arange(5), 3)
    design = {"n_enum": 2 * n_enum, "pair_stratum": strata, "fpc": np.full(5, 0.9)}
    sampled_only = {"n_enum": 0, "pair_stratum": strata, "fpc": np.full(5, 0.9)}
    a = rng.normal(size=(m, n_enum + n_sampled))
    r2 = rng.uniform(0.5, 2.0, size=n_enum + n_sampled)
    params = np.concatenate([np.full(n_enum, 0.9), np.full(n_sampled, 0.2)])   # 17.4 in all
    se = ks._sandwich_se(design, a, r2, params)
    alone = ks._sandwich_se(sampled_only, a[:, n_enum:], r2[n_enum:], params[n_enum:])
    np.testing.assert_allclose(se, alone, rtol=1e-12)
    # and they are finite, within the small-sample inflation's bounds (nu / (nu - 2) <= 5)
    g = ks._center_by_stratum(a[:, n_enum:].T * np.sqrt(r2[n_enum:])[:, None], strata,
                              design["fpc"])
    raw = np.sqrt((g ** 2).sum(axis=0))
    assert np.all(se >= raw) and np.all(se < np.sqrt(5.0) * raw)


def test_listed_border_keeps_an_exact_surrogate_and_drops_an_inexact_one():
    # with the size-1 stratum listed by the pilot, the logistic surrogate is kept where it
    # is exact (a sigmoid of a weighted sum: every value exact, as without the border) and
    # dropped where it is not (a strong 3-feature term: the surrogate fitted to the listed
    # pairs put a value 23.6 standard errors off, seed 8 of the order-3 game at M = 16)
    def border_runs(v, m, seeds):
        out = []
        for seed in seeds:
            game = Recorder(v)
            res = kernel_shap(game, m, 62, seed=seed)
            if game.border_complete(m):
                out.append(res)
        return out

    sig = saturating_game(14)
    truth = exact_shapley_vectorised(sig, 14)
    runs = border_runs(sig, 14, range(6))
    assert len(runs) >= 3                                   # 5 of these 6 seeds
    for res in runs:
        np.testing.assert_allclose(res.values, truth, atol=1e-9)
    m = 16
    v = sparse_strong_game(m)
    truth = exact_shapley_vectorised(v, m)
    runs = border_runs(v, m, range(10))
    assert runs                                             # seeds 3 and 8
    for res in runs:
        z = (res.values - truth) / res.standard_errors
        assert np.abs(z).max() < 4.0, np.abs(z).max()
