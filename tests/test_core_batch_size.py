"""The automatic batch size (BATCH_SIZE 0, the default): about AUTO_BATCH_PIXELS pixels a
model call, for the images the model actually sees (the crop's, a tile's)."""

import numpy as np
import pytest
from scipy.ndimage import uniform_filter

from seg_explainer.core.batching import AUTO_BATCH_MAX, AUTO_BATCH_PIXELS, batch_size_for
from seg_explainer.core.explain import explain_region
from seg_explainer.core.geoio import write_geotiff
from seg_explainer.core.tiling import segment_raster


def test_an_explicit_batch_size_is_kept():
    assert [batch_size_for(b, 512, 512) for b in (1, 3, 64)] == [1, 3, 64]
    assert batch_size_for(5, 16, 16) == 5


def test_the_automatic_batch_holds_about_the_pixels_asked():
    previous = AUTO_BATCH_MAX
    for edge in list(range(1, 80, 7)) + list(range(80, 1200, 13)):
        pixels = edge * edge
        b = batch_size_for(None, edge, edge)
        assert 1 <= b <= AUTO_BATCH_MAX and b <= previous      # fewer images as they grow
        if b < AUTO_BATCH_MAX:
            # as many images as fit in the pixels asked (one when a single image is more)
            assert (b + 1) * pixels > AUTO_BATCH_PIXELS
            assert b * pixels <= AUTO_BATCH_PIXELS or b == 1
        previous = b
    # the measured sweet spot on a CPU (docs/benchmarks.md): several small windows a call,
    # the 512 px tile alone
    assert batch_size_for(None, 160, 160) == 7 and batch_size_for(None, 512, 512) == 1
    assert batch_size_for(None, 400, 100) == batch_size_for(None, 200, 200)


class SpyModel:
    """Two classes, P(oil) = sigmoid of a 5 x 5 box mean (a local model, so a crop is found);
    records the batch size each call is given."""

    class_names = ["sea", "oil"]

    def __init__(self):
        self.calls = []          # (batch_size given, images, their height, width)

    def predict(self, images, batch_size=None):
        x = np.asarray(images, dtype=np.float64)[..., 0]
        self.calls.append((batch_size,) + x.shape)
        s = 1.0 / (1.0 + np.exp(-2.0 * uniform_filter(x, size=(1, 5, 5), mode="constant")))
        return np.stack([1 - s, s], axis=-1).astype(np.float32)


def _inputs(h, w):
    rng = np.random.default_rng(3)
    region = np.zeros((h, w), bool)
    region[h // 2 - 3:h // 2 + 3, w // 2 - 4:w // 2 + 4] = True
    return rng.normal(0.2, 1.0, size=(h, w, 1)).astype(np.float32), region


METHODS = {"shap": {"hex_size": 40, "n_samples": 120}, "rise": {"n_masks": 20},
           "occlusion": {"max_depth": 2}}


@pytest.mark.parametrize("method", sorted(METHODS))
def test_the_run_uses_and_records_the_automatic_batch(method):
    model = SpyModel()
    image, region = _inputs(100, 120)
    e = explain_region(model, image, region, 1, method, **METHODS[method])
    expected = batch_size_for(None, 100, 120)
    assert expected == 16 and e.params["batch_size"] == expected
    assert {b for b, *_ in model.calls} == {expected}
    # an explicit value is what the model is given
    model = SpyModel()
    e = explain_region(model, image, region, 1, method, batch_size=3, **METHODS[method])
    assert e.params["batch_size"] == 3 and {b for b, *_ in model.calls} == {3}


@pytest.mark.parametrize("method", sorted(METHODS))
def test_with_a_crop_the_batch_follows_the_crop(method):
    model = SpyModel()
    image, region = _inputs(480, 480)           # one image a call on the whole window
    e = explain_region(model, image, region, 1, method, crop="auto", crop_multiple=8,
                       **METHODS[method])
    r0, r1, c0, c1 = e.params["crop_window"]
    crop_batch = batch_size_for(None, r1 - r0, c1 - c0)
    assert batch_size_for(None, 480, 480) == 1 and crop_batch > 4
    assert e.params["batch_size"] == crop_batch
    # every call was given the batch of its images' size: the crop search tries several
    assert {(h, w) for _, _, h, w in model.calls} > {(r1 - r0, c1 - c0), (480, 480)}
    assert all(b == batch_size_for(None, h, w) for b, _, h, w in model.calls)


def test_segmentation_batches_tiles_automatically(tmp_path):
    class TileSpy(SpyModel):
        tile_size, fixed_size = 64, None

    data = np.random.default_rng(0).normal(size=(150, 700)).astype(np.float32)
    path = write_geotiff(tmp_path / "scene.tif", data, (0.0, 10.0, 0.0, 0.0, 0.0, -10.0), "")
    model = TileSpy()
    out = segment_raster(model, path, str(tmp_path / "p.tif"), None, overlap=0)
    batch = batch_size_for(None, 64, 64)
    assert batch == AUTO_BATCH_MAX and out["tile_size"] == 64
    # 3 rows of 11 tiles: a call a row, all its tiles in it
    assert [c[:2] for c in model.calls] == [(batch, 11)] * 3
    model = TileSpy()
    segment_raster(model, path, str(tmp_path / "q.tif"), None, overlap=0, batch_size=4)
    assert [c[:2] for c in model.calls] == [(4, 4), (4, 4), (4, 3)] * 3
