"""Deletion / insertion curves on a planted additive score."""

import numpy as np
import pytest
from scipy.integrate import trapezoid

from seg_explainer.core.errors import ExplanationCancelled
from seg_explainer.core.metrics import deletion_insertion

SHAPE = (20, 26)


def planted():
    w = np.zeros(SHAPE)
    w[2:8, 3:9] = 1.0
    w[12:18, 15:24] = 0.5
    return w


def additive_score(w):
    return lambda masks: (np.asarray(masks, dtype=np.float64) * w).sum(axis=(1, 2))


def test_true_weights_beat_random_attribution():
    w = planted()
    good = deletion_insertion(additive_score(w), w, n_steps=40)
    rand = deletion_insertion(additive_score(w), np.random.default_rng(0).random(SHAPE),
                              n_steps=40)
    assert good.deletion_auc < rand.deletion_auc
    assert good.insertion_auc > rand.insertion_auc
    # for an additive score the true weights give the best possible curves
    assert np.all(good.deletion <= rand.deletion + 1e-9)
    assert np.all(good.insertion >= rand.insertion - 1e-9)


def test_endpoints_and_auc():
    w = planted()
    score = additive_score(w)
    res = deletion_insertion(score, w + 0.01, n_steps=10, batch_size=4)
    full, empty = score(np.ones((1,) + SHAPE))[0], score(np.zeros((1,) + SHAPE))[0]
    assert res.deletion[0] == pytest.approx(full) and res.deletion[-1] == pytest.approx(empty)
    assert res.insertion[0] == pytest.approx(empty) and res.insertion[-1] == pytest.approx(full)
    np.testing.assert_allclose(res.fractions, np.linspace(0, 1, 11))
    assert res.deletion_auc == pytest.approx(trapezoid(res.deletion, res.fractions))
    assert res.insertion_auc == pytest.approx(trapezoid(res.insertion, res.fractions))
    assert res.n_evaluations == 22


def test_curve_points_remove_the_top_pixels():
    w = np.arange(np.prod(SHAPE), dtype=float).reshape(SHAPE)   # distinct ranks
    seen = []

    def score(masks):
        seen.append(masks.copy())
        return masks.sum(axis=(1, 2))

    res = deletion_insertion(score, w, n_steps=4, batch_size=3)
    masks = np.concatenate(seen)
    assert masks.dtype == np.float32 and all(len(m) <= 3 for m in seen)
    n = w.size
    counts = np.rint(np.linspace(0, 1, 5) * n).astype(int)
    np.testing.assert_allclose(res.deletion, n - counts)
    np.testing.assert_allclose(res.insertion, counts)
    top = w >= n - counts[1]                                   # the top quarter
    assert np.all(masks[1][top] == 0) and np.all(masks[1][~top] == 1)


def test_region_mask_limits_the_ranked_pixels():
    w = planted()
    region = np.zeros(SHAPE, bool)
    region[:10] = True
    res = deletion_insertion(additive_score(w), w, n_steps=5, region_mask=region)
    outside = w[~region].sum()
    assert res.deletion[-1] == pytest.approx(outside)
    assert res.insertion[0] == pytest.approx(outside)
    assert res.insertion[-1] == pytest.approx(w.sum())


def test_cancel_and_progress():
    with pytest.raises(ExplanationCancelled):
        deletion_insertion(additive_score(planted()), planted(), cancel=lambda: True)
    seen = []
    deletion_insertion(additive_score(planted()), planted(), n_steps=20, batch_size=5,
                       progress=seen.append)
    assert seen[-1] == pytest.approx(1.0)
