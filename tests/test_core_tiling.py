"""Tiled segmentation: no seams, bounded strips, nodata, atomic outputs."""

import numpy as np
import pytest
from osgeo import gdal

from seg_explainer.core.errors import ExplanationCancelled
from seg_explainer.core.geoio import write_geotiff
from seg_explainer.core.tiling import blend_weights, segment_raster, tile_starts

GT = (500000.0, 10.0, 0.0, 4000000.0, 0.0, -10.0)


class PointwiseModel:
    """p(class 1) = sigmoid(x): the exact answer does not depend on tiling."""

    class_names = ["sea", "oil"]
    tile_size = 64
    fixed_size = None

    def __init__(self):
        self.calls = []

    def predict(self, images, batch_size=None):
        self.calls.append(images.shape)
        p = 1 / (1 + np.exp(-images[..., :1]))
        return np.concatenate([1 - p, p], axis=-1).astype(np.float32)


class BlurModel(PointwiseModel):
    """A model with a receptive field: seams would show where tiles meet."""

    def predict(self, images, batch_size=None):
        from scipy.ndimage import uniform_filter
        x = uniform_filter(images[..., 0], size=(1, 5, 5), mode="nearest")
        p = 1 / (1 + np.exp(-x))
        return np.stack([1 - p, p], axis=-1).astype(np.float32)


def test_tile_starts_cover_everything():
    for length in [1, 63, 64, 65, 200, 257]:
        starts = tile_starts(length, 64, 48)
        covered = np.zeros(length, bool)
        for s in starts:
            covered[s:s + 64] = True
        assert covered.all() and starts == sorted(set(starts))
        assert all(s + 64 <= max(length, 64) for s in starts)


def test_blend_weights_are_positive_and_flat_in_the_middle():
    w = blend_weights(64, 8)
    assert w.min() > 0 and w[8:56, 8:56].min() == 1.0 and w[0, 0] < 0.01


def _scene(tmp_path, h=150, w=170, nodata_block=True):
    rng = np.random.default_rng(0)
    data = rng.normal(size=(h, w)).astype(np.float32) * 3
    if nodata_block:
        data[:5, :] = -9999
    return write_geotiff(tmp_path / "scene.tif", data, GT, "", nodata=-9999), data


def test_pointwise_model_tiled_equals_direct(tmp_path):
    path, data = _scene(tmp_path)
    model = PointwiseModel()
    out = segment_raster(model, path, str(tmp_path / "p.tif"), str(tmp_path / "c.tif"),
                         overlap=10, batch_size=3)
    probs = gdal.Open(str(tmp_path / "p.tif")).ReadAsArray()
    with np.errstate(over="ignore"):
        expected = 1 / (1 + np.exp(-data))
    np.testing.assert_allclose(probs[1, 5:], expected[5:], atol=1e-6)
    assert (probs[:, :5] == -1).all()
    classes = gdal.Open(str(tmp_path / "c.tif")).ReadAsArray()
    assert (classes[:5] == 255).all()
    np.testing.assert_array_equal(classes[5:], (expected[5:] > 0.5).astype(np.uint8))
    assert max(s[0] for s in model.calls) <= 3
    assert out["class_counts"]["oil"] == int((expected[5:] > 0.5).sum())
    ds = gdal.Open(str(tmp_path / "p.tif"))
    assert [ds.GetRasterBand(b).GetDescription() for b in (1, 2)] == ["sea", "oil"]
    cds = gdal.Open(str(tmp_path / "c.tif"))
    info = gdal.Info(cds)  # the 3.6 bindings' GetCategoryNames() returns None; gdalinfo reads them
    assert "Categories:" in info and "0: sea" in info and "1: oil" in info
    assert cds.GetRasterBand(1).GetColorTable().GetCount() >= 2
    assert not [p for p in tmp_path.iterdir() if ".part" in p.name]


def test_receptive_field_model_has_no_seams(tmp_path):
    path, data = _scene(tmp_path, nodata_block=False)
    segment_raster(BlurModel(), path, str(tmp_path / "p.tif"), None, overlap=16)
    probs = gdal.Open(str(tmp_path / "p.tif")).ReadAsArray()[1]
    whole = BlurModel().predict(data[None, ..., None])[0, ..., 1]
    # Away from tile borders the blended result equals the whole-image prediction; where tiles
    # meet the error stays within what a 5-pixel blur can see of a border.
    np.testing.assert_allclose(probs, whole, atol=0.05)
    interior = np.abs(probs - whole)[2:-2, 2:-2]
    assert np.median(interior) < 1e-6


def test_window_and_cancel(tmp_path):
    path, data = _scene(tmp_path)
    segment_raster(PointwiseModel(), path, str(tmp_path / "p.tif"), None, window=(20, 30, 40, 50))
    ds = gdal.Open(str(tmp_path / "p.tif"))
    assert (ds.RasterYSize, ds.RasterXSize) == (40, 50)
    assert ds.GetGeoTransform()[0] == GT[0] + 30 * 10 and ds.GetGeoTransform()[3] == GT[3] - 200
    with pytest.raises(ExplanationCancelled):
        segment_raster(PointwiseModel(), path, str(tmp_path / "q.tif"), str(tmp_path / "r.tif"),
                       cancel=lambda: True)
    assert not (tmp_path / "q.tif").exists() and not (tmp_path / "r.tif").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.tif", "scene.tif"]
