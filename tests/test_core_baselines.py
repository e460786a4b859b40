"""Baselines for switched-off pixels."""

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from seg_explainer.core.baselines import (baseline_image, band_means, composite, fill_nodata,
                                          infill_rect, infill_rects, infill_value,
                                          inpaint_masked)

RNG = np.random.default_rng(3)


def image(h=12, w=10, c=2):
    return RNG.normal(size=(h, w, c)).astype(np.float32) * 5 - 20


def test_mean_ignores_nan_and_invalid():
    x = image()
    x[0, 0, 0] = np.nan
    valid = np.ones(x.shape[:2], bool)
    valid[5:, :] = False
    b = baseline_image(x, "mean", valid_mask=valid)
    assert b.shape == x.shape and b.dtype == np.float32
    expect0 = np.nanmean(x[:5, :, 0])
    expect1 = x[:5, :, 1].mean()
    np.testing.assert_allclose(b[..., 0], expect0, rtol=1e-5)
    np.testing.assert_allclose(b[..., 1], expect1, rtol=1e-5)
    np.testing.assert_allclose(band_means(x), np.nanmean(x, axis=(0, 1)), rtol=1e-5)


def test_zero_and_constant():
    x = image()
    assert np.all(baseline_image(x, "zero") == 0)
    np.testing.assert_array_equal(baseline_image(x, "constant", value=-22.5), -22.5)
    per_band = baseline_image(x, "constant", value=[1.0, 2.0])
    np.testing.assert_array_equal(per_band[..., 1], 2.0)
    with pytest.raises(ValueError, match="needs a value"):
        baseline_image(x, "constant")
    with pytest.raises(ValueError, match="one per band"):
        baseline_image(x, "constant", value=[1.0, 2.0, 3.0])


def test_blur_matches_gaussian_filter_and_handles_nan():
    x = image(30, 30, 1)
    b = baseline_image(x, "blur", sigma=2.0)
    np.testing.assert_allclose(b[..., 0], gaussian_filter(x[..., 0].astype(np.float64), 2.0,
                                                          mode="reflect"), atol=1e-4)
    x[10:12, 10:12] = np.nan
    b = baseline_image(x, "blur", sigma=2.0)
    assert np.all(np.isfinite(b))
    with pytest.raises(ValueError, match="sigma"):
        baseline_image(x, "blur", sigma=0)


def test_unknown_and_mask_kinds():
    with pytest.raises(ValueError, match="unknown baseline 'grey'.*mean"):
        baseline_image(image(), "grey")
    with pytest.raises(ValueError, match="depends on the mask"):
        baseline_image(image(), "inpaint")


def test_composite():
    x = image()
    b = baseline_image(x, "mean")
    masks = (RNG.random((4,) + x.shape[:2]) < 0.5).astype(np.float32)
    masks[3] = 0.25
    out = composite(x, b, masks)
    assert out.shape == (4,) + x.shape and out.dtype == np.float32
    np.testing.assert_allclose(out, x * masks[..., None] + b * (1 - masks[..., None]),
                               atol=1e-5)
    per_mask = np.stack([b, b + 1, b + 2, b + 3])
    out = composite(x, per_mask, masks)
    np.testing.assert_allclose(out[2],
                               x * masks[2, ..., None] + (b + 2) * (1 - masks[2, ..., None]),
                               atol=1e-5)
    exact = composite(x, b, masks[:3] > 0.5)                   # bool masks: a selection
    np.testing.assert_array_equal(exact, np.where(masks[:3, ..., None] > 0.5, x, b))
    np.testing.assert_array_equal(composite(x, b, np.ones((1,) + x.shape[:2]))[0], x)
    with pytest.raises(ValueError):
        composite(x, b, masks[:, :5])


@pytest.mark.parametrize("bands", [1, 3])
def test_bool_masks_select_the_image_or_the_baseline_bit_for_bit(bands):
    # NaN, infinities and signed zeros included: a selection, not arithmetic; masks laid out
    # as fancy indexing leaves them (not C-contiguous); one baseline, or one per mask
    rng = np.random.default_rng(bands)
    x = rng.normal(size=(9, 11, bands)).astype(np.float32)
    x[0, 0], x[1, 1], x[2, 2], x[3, 3] = np.nan, -0.0, np.inf, -np.inf
    cells = rng.random((5, 4)) < 0.5
    labels = rng.integers(0, 4, (9, 11))
    masks = cells[:, labels]
    assert not masks.flags["C_CONTIGUOUS"]
    for b in (np.full(x.shape, -0.0, np.float32),
              np.broadcast_to(np.float32(np.nan), x.shape),
              rng.normal(size=(5,) + x.shape).astype(np.float32)):
        out = composite(x, b, masks)
        want = np.where(masks[..., None], x, b)
        assert out.shape == (5,) + x.shape and out.dtype == np.float32
        np.testing.assert_array_equal(out.view(np.int32), want.view(np.int32))


def test_inpaint_smooth_field_is_recovered():
    rows, cols = np.indices((24, 24))
    x = np.stack([rows * 0.5 + cols * 0.25, rows * -0.1 + 3.0], axis=-1).astype(np.float32)
    keep = np.ones((24, 24))
    keep[8:15, 9:16] = 0
    out = inpaint_masked(x, keep)
    np.testing.assert_array_equal(out[keep > 0], x[keep > 0])
    np.testing.assert_allclose(out[keep == 0], x[keep == 0], atol=0.05)  # planar field
    np.testing.assert_array_equal(inpaint_masked(x, np.ones((24, 24))), x)
    np.testing.assert_allclose(inpaint_masked(x, np.zeros((24, 24))),
                               baseline_image(x, "mean"))


def test_infill_rect_uses_the_one_pixel_border():
    x = np.zeros((8, 9, 1), np.float32)
    x[2:5, 3:6] = 100.0           # the occluded content must not leak into the fill
    x[1, 3:6] = 1.0               # above
    x[5, 3:6] = 2.0               # below
    x[2:5, 2] = 3.0               # left
    x[2:5, 6] = 4.0               # right
    x[1, 2] = x[1, 6] = x[5, 2] = x[5, 6] = 50.0   # corners: not part of the border
    out = infill_rect(x, (2, 5, 3, 6))
    np.testing.assert_allclose(out[2:5, 3:6], 2.5)
    out[2:5, 3:6] = x[2:5, 3:6]
    np.testing.assert_array_equal(out, x)          # nothing else changed


def test_infill_rect_at_edges_and_whole_image():
    x = image(6, 7, 2)
    # top-left corner: only the bottom and right strips exist
    v = infill_value(x, (0, 2, 0, 3))
    expect = np.concatenate([x[2, 0:3], x[0:2, 3]]).mean(axis=0)
    np.testing.assert_allclose(v, expect, rtol=1e-5)
    whole = infill_rect(x, (0, 6, 0, 7))
    np.testing.assert_allclose(whole, np.broadcast_to(x.mean(axis=(0, 1)), x.shape), rtol=1e-5)
    many = infill_rects(x, [[0, 2, 0, 3], [1, 4, 2, 5]])
    np.testing.assert_allclose(many[1], infill_rect(x, (1, 4, 2, 5)))


def test_fill_nodata():
    x = image()
    x[1:3, 1:3, 1] = np.nan
    out = fill_nodata(x)
    assert np.all(np.isfinite(out))
    np.testing.assert_allclose(out[1, 1, 1], np.nanmean(x[..., 1]), rtol=1e-5)
