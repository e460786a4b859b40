"""RISE against its closed form on reproducible masks."""

import math

import numpy as np
import pytest

from seg_explainer.core.errors import ExplanationCancelled
from seg_explainer.core.rise import rise, rise_masks

SHAPE = (23, 31)


def planted_weights(shape=SHAPE, seed=0):
    rng = np.random.default_rng(seed)
    w = np.zeros(shape)
    w[3:10, 4:12] = 2.0
    w[14:20, 18:28] = -1.5
    return w + 0.1 * rng.normal(size=shape)


def test_masks_in_range_with_mean_near_p_keep():
    masks = rise_masks(np.random.default_rng(0), 400, SHAPE, grid_size=5, p_keep=0.3)
    assert masks.dtype == np.float32 and masks.shape == (400,) + SHAPE
    assert masks.min() >= 0.0 and masks.max() <= 1.0
    assert masks.mean() == pytest.approx(0.3, abs=0.03)


def documented_masks(seed, n, shape, s, p):
    """The masks as documented, float64: Bernoulli grids from the documented draws,
    upsampled bilinearly by scikit-image, shifted and cropped."""
    from skimage.transform import resize

    h, w = shape
    u = np.random.default_rng(seed).random((n, s * s + 2))
    ch, cw = math.ceil(h / s), math.ceil(w / s)
    out = []
    for i in range(n):
        grid = (u[i, :s * s] < p).reshape(s, s).astype(float)
        up = resize(grid, ((s + 1) * ch, (s + 1) * cw), order=1, mode="edge",
                    anti_aliasing=False)
        dy, dx = int(u[i, -2] * ch), int(u[i, -1] * cw)
        out.append(up[dy:dy + h, dx:dx + w])
    return np.array(out)


def test_masks_follow_the_rise_construction():
    """Grid of Bernoulli cells, bilinear upsampling (scikit-image), shift, crop."""
    masks = rise_masks(np.random.default_rng(3), 6, SHAPE, grid_size=5, p_keep=0.5)
    np.testing.assert_allclose(masks, documented_masks(3, 6, SHAPE, 5, 0.5), atol=1e-6)


def test_masks_are_drawn_sequentially():
    a = rise_masks(np.random.default_rng(9), 10, SHAPE)
    rng = np.random.default_rng(9)
    b = np.concatenate([rise_masks(rng, 3, SHAPE), rise_masks(rng, 7, SHAPE)])
    np.testing.assert_array_equal(a, b)


def test_equals_closed_form_on_fixed_masks():
    wmap = planted_weights()

    def score(m):
        return np.tanh((m * wmap).sum(axis=(1, 2)) / 50)

    n, p = 120, 0.4
    res = rise(score, SHAPE, n, grid_size=6, p_keep=p, seed=4, batch_size=16)
    # the model scores the float32 masks; the saliency weighs the scores by the exact masks
    scores = score(rise_masks(np.random.default_rng(4), n, SHAPE, grid_size=6, p_keep=p))
    masks = documented_masks(4, n, SHAPE, 6, p)
    sal = np.tensordot(scores, masks, axes=1) / (n * p)
    signed = np.tensordot(scores - scores.mean(), masks, axes=1) / (n * p)
    np.testing.assert_allclose(res.saliency, sal, atol=1e-9)
    np.testing.assert_allclose(res.signed, signed, atol=1e-9)
    assert res.mean_score == pytest.approx(scores.mean())
    assert res.n_evaluations == n


def test_signed_map_correlates_with_linear_weights():
    wmap = planted_weights()
    res = rise(lambda m: (m * wmap).sum(axis=(1, 2)), SHAPE, 1000, grid_size=6, seed=1)
    assert np.corrcoef(res.signed.ravel(), wmap.ravel())[0, 1] > 0.7
    assert res.signed[5, 7] > 0 > res.signed[17, 22]     # excitation, inhibition


def test_vector_scores_equal_per_column():
    wmap = planted_weights()
    fns = [lambda m: (m * wmap).sum(axis=(1, 2)), lambda m: m[:, :5, :5].mean(axis=(1, 2))]
    res = rise(lambda m: np.stack([f(m) for f in fns], axis=1), SHAPE, 90, seed=2)
    assert res.saliency.shape == (2,) + SHAPE
    for d, f in enumerate(fns):
        one = rise(f, SHAPE, 90, seed=2)
        np.testing.assert_allclose(res.saliency[d], one.saliency, atol=1e-9)
        np.testing.assert_allclose(res.signed[d], one.signed, atol=1e-9)
        assert res.mean_score[d] == pytest.approx(one.mean_score)


def test_deterministic_and_batch_size_invariant():
    wmap = planted_weights()
    calls = []

    def score(m):
        calls.append(len(m))
        return (m * wmap).sum(axis=(1, 2))

    runs = [rise(score, SHAPE, 100, seed=7, batch_size=b) for b in (1, 7, 64)]
    for r in runs[1:]:
        np.testing.assert_allclose(r.saliency, runs[0].saliency, atol=1e-6)
        np.testing.assert_allclose(r.signed, runs[0].signed, atol=1e-6)
    assert max(calls) <= 64
    other = rise(score, SHAPE, 100, seed=8)
    assert not np.allclose(other.saliency, runs[0].saliency)


def test_cancel_and_progress():
    calls = []
    with pytest.raises(ExplanationCancelled):
        rise(lambda m: calls.append(1) or m.sum(axis=(1, 2)), SHAPE, 50,
             cancel=lambda: True)
    assert calls == []
    seen = []
    rise(lambda m: m.sum(axis=(1, 2)), SHAPE, 50, batch_size=8, progress=seen.append)
    assert seen[-1] == pytest.approx(1.0)
    assert all(a <= b for a, b in zip(seen, seen[1:]))


def test_mask_sums_in_blocks_equal_the_whole():
    # the full-size sums are made a block of rows and columns at a time on large images
    from skimage.transform import resize

    from seg_explainer.core.rise import _upsample_sums

    s, shape = 6, SHAPE
    ch, cw = math.ceil(shape[0] / s), math.ceil(shape[1] / s)
    coarse = np.random.default_rng(0).normal(size=(ch * cw, 3, s * s))
    whole = _upsample_sums(coarse, s, shape)
    np.testing.assert_allclose(_upsample_sums(coarse, s, shape, block=7), whole, rtol=1e-12)
    # one shift's grid alone: its upsampled, shifted and cropped mask
    one = np.zeros_like(coarse)
    one[1 * cw + 2, 0] = coarse[1 * cw + 2, 0]
    grid = one[1 * cw + 2, 0].reshape(s, s)
    up = resize(grid, ((s + 1) * ch, (s + 1) * cw), order=1, mode="edge", anti_aliasing=False)
    np.testing.assert_allclose(_upsample_sums(one, s, shape)[0], up[1:1 + shape[0], 2:2 + shape[1]],
                               atol=1e-12)
