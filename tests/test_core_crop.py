"""Receptive-field cropping (explain_region(..., crop="auto")) with fake local models."""

import numpy as np
import pytest
from scipy.ndimage import uniform_filter

from seg_explainer.core.cells import square_grid
from seg_explainer.core.explain import explain_region, find_crop


class BoxModel:
    """Two classes; P(class 1) = sigmoid(gain * mean of band 0 over a k x k box).

    Zero padding at the image's edges, as a convolution does: the prediction at a pixel
    depends on the pixels within ``k // 2`` of it and on where the image ends.
    """

    def __init__(self, k, gain=2.0):
        self.k, self.gain = k, gain
        self.class_names = ["sea", "oil"]
        self.sizes = []

    def predict(self, images, batch_size=None):
        x = np.asarray(images, dtype=np.float64)[..., 0]
        self.sizes.append(x.shape)
        box = uniform_filter(x, size=(1, self.k, self.k), mode="constant", cval=0.0)
        s = 1.0 / (1.0 + np.exp(-self.gain * box))
        return np.stack([1 - s, s], axis=-1).astype(np.float32)

    def pixels(self):
        return sum(n * h * w for n, h, w in self.sizes)


class GlobalModel(BoxModel):
    """Not local at all: every pixel sees the image's mean."""

    def predict(self, images, batch_size=None):
        x = np.asarray(images, dtype=np.float64)[..., 0]
        m = np.broadcast_to(x.mean(axis=(1, 2), keepdims=True), x.shape)
        s = 1.0 / (1.0 + np.exp(-4.0 * m - x * 0.1))
        return np.stack([1 - s, s], axis=-1).astype(np.float32)


class FixedModel(BoxModel):
    fixed_size = (48, 48)


def image(h, w, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(0.3, 1.0, size=(h, w, 1)).astype(np.float32)


def region_at(h, w, r0, r1, c0, c1):
    region = np.zeros((h, w), bool)
    region[r0:r1, c0:c1] = True
    return region


def dilated_bbox(region, radius):
    rows = np.flatnonzero(region.any(axis=1))
    cols = np.flatnonzero(region.any(axis=0))
    h, w = region.shape
    return (max(0, rows[0] - radius), min(h, rows[-1] + 1 + radius),
            max(0, cols[0] - radius), min(w, cols[-1] + 1 + radius))


# ------------------------------------------------------------------ the crop search


@pytest.mark.parametrize("k,multiple", [(5, 1), (9, 1), (7, 8), (3, 16)])
def test_crop_holds_the_region_dilated_by_the_receptive_field(k, multiple):
    h, w = 80, 96
    region = region_at(h, w, 30, 36, 50, 53)
    e = explain_region(BoxModel(k), image(h, w), region, 1, "rise", n_masks=4,
                       crop="auto", crop_multiple=multiple)
    win = e.params["crop_window"]
    assert win is not None and e.details["crop"]["window"] == win
    r0, r1, c0, c1 = win
    d0, d1, e0, e1 = dilated_bbox(region, k // 2)
    assert r0 <= d0 and r1 >= d1 and c0 <= e0 and c1 >= e1
    # edges on the snapping grid (or the image's edge)
    assert all(v % multiple == 0 or v in (h, w) for v in win)
    if multiple == 1:                         # the smallest crop is exactly the dilation
        assert tuple(win) == (d0, d1, e0, e1)
    else:     # the margin is at most one step more than needed, plus the snapping
        assert d0 - r0 < 2 * multiple and r1 - d1 < 2 * multiple
        assert e0 - c0 < 2 * multiple and c1 - e1 < 2 * multiple
    assert e.details["crop"]["max_difference"] <= 1e-6
    assert e.params["crop"] == "auto" and e.params["crop_tolerance"] == 1e-6
    # every smaller candidate checked really differed
    area = (r1 - r0) * (c1 - c0)
    for cand in e.details["crop"]["candidates"]:
        a0, a1, b0, b1 = cand["window"]
        if (a1 - a0) * (b1 - b0) < area:
            assert cand["max_difference"] > 1e-6


def test_crop_near_the_image_edge_is_clipped():
    h, w = 40, 40
    region = region_at(h, w, 0, 2, 37, 40)
    e = explain_region(BoxModel(5), image(h, w), region, 1, "rise", n_masks=4,
                       crop="auto", crop_multiple=1)
    assert tuple(e.params["crop_window"]) == (0, 4, 35, 40)


def test_a_global_model_gets_no_crop_and_the_same_answer():
    h, w = 32, 32
    x, region = image(h, w), region_at(h, w, 10, 12, 10, 12)
    plain = explain_region(GlobalModel(3), x, region, 1, "shap", hex_size=8, n_samples=64)
    auto = explain_region(GlobalModel(3), x, region, 1, "shap", hex_size=8, n_samples=64,
                          crop="auto")
    assert auto.params["crop_window"] is None and auto.details["crop"]["window"] is None
    assert "no crop" in auto.details["crop"]["reason"]
    np.testing.assert_array_equal(auto.signed, plain.signed)
    np.testing.assert_array_equal(auto.prediction, plain.prediction)
    assert auto.n_evaluations > plain.n_evaluations     # the search's checks are counted


def test_fixed_size_models_and_inpaint_are_not_cropped():
    x, region = image(48, 48), region_at(48, 48, 20, 22, 20, 22)
    e = explain_region(FixedModel(3), x, region, 1, "rise", n_masks=4, crop="auto")
    assert e.params["crop_window"] is None and "fixed size" in e.details["crop"]["reason"]
    e = explain_region(BoxModel(3), x, region, 1, "occlusion", max_depth=1,
                       baseline="inpaint", crop="auto")
    assert e.params["crop_window"] is None and "inpaint" in e.details["crop"]["reason"]


@pytest.mark.parametrize("kwargs,message", [
    ({"crop": "yes"}, "crop must be None"),
    ({"crop": "auto", "crop_tolerance": -1.0}, "crop_tolerance"),
    ({"crop": "auto", "crop_multiple": 0}, "crop_multiple"),
])
def test_invalid_crop_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        explain_region(BoxModel(3), image(16, 16), region_at(16, 16, 4, 6, 4, 6), 1, "rise",
                       n_masks=2, **kwargs)


def test_find_crop_tolerance_trades_size_for_exactness():
    """A looser tolerance never gives a bigger crop; a zero tolerance still finds one."""
    h, w = 64, 64
    x = image(h, w)[None]
    region = region_at(h, w, 30, 33, 30, 33)
    model = BoxModel(7, gain=0.05)            # weak gain: small differences
    sizes = []
    for tol in (0.0, 1e-6, 1e-3, 1e-1):
        rec = find_crop(model.predict, x, region, [1], tolerance=tol, multiple=1)
        r0, r1, c0, c1 = rec["window"]
        sizes.append((r1 - r0) * (c1 - c0))
        assert rec["max_difference"] <= tol
    assert sizes == sorted(sizes, reverse=True)
    assert sizes[0] == (3 + 6) ** 2 and sizes[-1] < sizes[0]


def test_find_crop_counts_what_it_predicts_and_rejects_at_the_first_failing_image():
    h, w = 64, 64
    x = np.stack([image(h, w, seed=k) for k in range(3)])
    region = region_at(h, w, 30, 33, 30, 33)
    model = BoxModel(7)
    seen = []

    def predict(images):
        seen.append(len(images))
        return model.predict(images)

    rec = find_crop(predict, x, region, [1], tolerance=1e-6, multiple=4)
    assert rec["n_evaluations"] == sum(seen) == 3 + sum(c["images_checked"]
                                                        for c in rec["candidates"])
    passed = [c for c in rec["candidates"] if c["max_difference"] <= 1e-6]
    failed = [c for c in rec["candidates"] if c["max_difference"] > 1e-6]
    assert failed and passed
    assert all(c["images_checked"] == 3 for c in passed)
    assert all(c["images_checked"] == 1 for c in failed)   # these images all differ
    r0, r1, c0, c1 = rec["window"]                          # 7 x 7 box: 3 px of context
    assert r0 <= 27 and r1 >= 36 and c0 <= 27 and c1 >= 36


# ------------------------------------------------------------------ SHAP


def test_shap_with_crop_equals_exact_full_window_shap():
    """Exact Shapley values (all 2**9 coalitions) with and without the crop."""
    h = w = 36
    x = image(h, w, seed=3)
    region = region_at(h, w, 9, 13, 21, 25)       # near the corner of 4 of the 9 squares
    model = BoxModel(5)
    kw = dict(cell_shape="square", hex_size=12, n_samples=2 ** 9, batch_size=64)
    full = explain_region(model, x, region, 1, "shap", **kw)
    pixels_full = model.pixels()
    crop = explain_region(model, x, region, 1, "shap", crop="auto", crop_multiple=1, **kw)
    pixels_crop = model.pixels() - pixels_full
    assert full.details["exact"] and crop.details["exact"]
    cells = square_grid(h, w, 12)
    assert full.details["n_cells"] == crop.details["n_cells"] == cells.n_cells == 9
    r0, r1, c0, c1 = crop.params["crop_window"]
    inside = np.unique(cells.labels[r0:r1, c0:c1])
    assert crop.details["n_players"] == len(inside) == 4
    v_full = np.array([c["value"][0] for c in full.cells])
    v_crop = np.array([c["value"][0] for c in crop.cells])
    np.testing.assert_allclose(v_crop, v_full, atol=1e-5, rtol=0)
    assert np.abs(v_crop[inside]).min() > 1e-3                 # not a trivial zero game
    outside = np.setdiff1d(np.arange(9), inside)
    assert np.all(v_crop[outside] == 0.0)                      # dummies: exactly zero
    assert all(np.all(crop.cells[i]["standard_error"] == 0) for i in outside)
    np.testing.assert_allclose(v_full[outside], 0.0, atol=1e-6)  # ... as the full game says
    # efficiency
    np.testing.assert_allclose(v_crop.sum(), crop.full_value[0] - crop.base_value[0],
                               atol=1e-6)
    np.testing.assert_allclose(crop.base_value, full.base_value, atol=1e-6)
    np.testing.assert_allclose(crop.full_value, full.full_value, atol=1e-7)
    np.testing.assert_array_equal(crop.prediction, full.prediction)
    np.testing.assert_allclose(crop.signed, full.signed, atol=1e-5, rtol=0)
    assert pixels_crop < pixels_full / 10


def test_sampled_shap_with_crop_keeps_efficiency_and_zero_dummies():
    h = w = 96
    x = image(h, w, seed=5)
    region = region_at(h, w, 44, 47, 60, 64)
    e = explain_region(BoxModel(9), x, region, 1, "shap", hex_size=8, n_samples=300,
                       crop="auto", crop_multiple=4)
    values = np.array([c["value"][0] for c in e.cells])
    r0, r1, c0, c1 = e.params["crop_window"]
    from seg_explainer.core.cells import hexagon_grid

    cells = hexagon_grid(h, w, 8)
    inside = np.zeros(cells.n_cells, bool)
    inside[np.unique(cells.labels[r0:r1, c0:c1])] = True
    assert e.details["n_players"] == inside.sum() < cells.n_cells / 3
    assert np.all(values[~inside] == 0.0)
    assert np.all(e.signed[~inside[cells.labels]] == 0.0)     # the map too
    np.testing.assert_allclose(values.sum(), e.full_value[0] - e.base_value[0], atol=1e-6)
    assert e.params["n_samples"] == 300


# ------------------------------------------------------------------ RISE and occlusion


def test_rise_with_crop_equals_the_full_window_run():
    h, w = 64, 80
    x = image(h, w, seed=7)
    region = region_at(h, w, 20, 23, 40, 42)
    model = BoxModel(7)
    kw = dict(n_masks=120, grid_size=6, batch_size=32, seed=4)
    full = explain_region(model, x, region, 1, "rise", **kw)
    n_full = model.pixels()
    crop = explain_region(model, x, region, 1, "rise", crop="auto", crop_multiple=8, **kw)
    assert crop.params["crop_window"] is not None
    np.testing.assert_allclose(crop.signed, full.signed, atol=1e-5, rtol=0)
    np.testing.assert_allclose(crop.base_value, full.base_value, atol=1e-7)
    assert np.abs(full.signed).max() > 1e-3
    assert model.pixels() - n_full < n_full / 2


def test_single_pixel_rise_with_crop():
    h, w = 48, 48
    x = image(h, w, seed=2)
    region = region_at(h, w, 30, 31, 11, 12)
    kw = dict(n_masks=60, grid_size=4, batch_size=30)
    full = explain_region(BoxModel(5), x, region, 1, "rise", **kw)
    crop = explain_region(BoxModel(5), x, region, 1, "rise", crop="auto", crop_multiple=1, **kw)
    assert tuple(crop.params["crop_window"]) == (28, 33, 9, 14)
    np.testing.assert_allclose(crop.signed, full.signed, atol=1e-5, rtol=0)


@pytest.mark.parametrize("baseline", ["mean", "infill", "blur"])
def test_occlusion_with_crop_equals_the_full_window_run(baseline):
    h, w = 64, 64
    x = image(h, w, seed=11)
    x[24:40, 24:40] -= 2.0
    region = region_at(h, w, 30, 34, 28, 33)
    model = BoxModel(7)
    kw = dict(max_depth=3, n_best=3, baseline=baseline, batch_size=32)
    full = explain_region(model, x, region, 1, "occlusion", **kw)
    crop = explain_region(model, x, region, 1, "occlusion", crop="auto", crop_multiple=4, **kw)
    r0, r1, c0, c1 = crop.params["crop_window"]
    np.testing.assert_allclose(crop.signed, full.signed, atol=1e-5, rtol=0)
    np.testing.assert_allclose(crop.base_value, full.base_value, atol=1e-6)
    assert np.abs(full.signed).max() > 1e-3
    # leaves wholly outside the crop carry exactly zero importance
    for c in crop.cells:
        minx, miny, maxx, maxy = c["polygon"].bounds
        if maxy <= r0 or miny >= r1 or maxx <= c0 or minx >= c1:
            assert np.all(c["value"] == 0.0)
    # rectangles outside the crop cost nothing: fewer evaluations than the full run
    # even with the search's checks
    assert crop.n_evaluations < full.n_evaluations
