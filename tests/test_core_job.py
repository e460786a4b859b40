"""The job pipeline in core, without QGIS: the same reading, checks, metadata and transactional
outputs a Processing user gets, for a plain Python script."""

import json

import numpy as np
import pytest
from osgeo import gdal, ogr

from seg_explainer.core.errors import InputError, ModelError, OutputError
from seg_explainer.core.explain import Cell, explain_region
from seg_explainer.core.job import (explain_to_files, read_job, resolve_bands, resolve_class,
                                    segment_to_files)
from seg_explainer.core.region import window_edge

SIZE = 96


class Model:
    """A two-class pointwise model with the attributes the job reads."""

    class_names = ["sea", "oil"]
    n_channels = 1
    fixed_size = None
    tile_size = None
    path = "fake.onnx"
    sha256 = "0" * 64

    def __init__(self, transform=None):
        self.transform = transform

    def predict(self, images, batch_size=None):
        x = np.asarray(images, dtype=np.float32)[..., 0]
        s = 1.0 / (1.0 + np.exp(x + 1.0))                 # dark = oil
        out = np.stack([1 - s, s], axis=-1).astype(np.float32)
        return out if self.transform is None else self.transform(out)


@pytest.fixture()
def raster(tmp_path):
    path = str(tmp_path / "scene.tif")
    ds = gdal.GetDriverByName("GTiff").Create(path, SIZE, SIZE, 1, gdal.GDT_Float32)
    ds.SetGeoTransform((1000.0, 10.0, 0.0, 5000.0, 0.0, -10.0))
    srs = __import__("osgeo.osr", fromlist=["osr"]).SpatialReference()
    srs.ImportFromEPSG(32633)
    ds.SetProjection(srs.ExportToWkt())
    data = np.random.default_rng(0).normal(0, 0.3, (SIZE, SIZE)).astype(np.float32)
    data[40:56, 40:56] -= 3.0                              # the slick
    ds.GetRasterBand(1).WriteArray(data)
    ds = None
    return path


def region_wkb(col0, row0, col1, row1):
    """A box in map coordinates of the raster fixture, from pixel bounds."""
    x0, y0 = 1000.0 + 10 * col0, 5000.0 - 10 * row0
    x1, y1 = 1000.0 + 10 * col1, 5000.0 - 10 * row1
    ring = f"POLYGON(({x0} {y0},{x1} {y0},{x1} {y1},{x0} {y1},{x0} {y0}))"
    return bytes(ogr.CreateGeometryFromWkt(ring).ExportToWkb())


def test_one_rule_for_bands_classes_and_window_edges():
    assert resolve_bands(None, 3) == [1, 2, 3] and resolve_bands([2], 3, 1) == [2]
    with pytest.raises(InputError, match=r"BANDS: the raster has bands 1 to 3"):
        resolve_bands([4], 3)
    with pytest.raises(InputError, match=r"BANDS: the model takes 1 channel\(s\) but 3"):
        resolve_bands(None, 3, 1)
    assert resolve_class("OIL", ["sea", "oil"]) == 1 and resolve_class("0", ["sea", "oil"]) == 0
    with pytest.raises(InputError, match="CLASS: the model has no class 'ship'"):
        resolve_class("ship", ["sea", "oil"])
    assert window_edge(0, None, None) == 512 and window_edge(0, (64, 64), 128) == 64
    assert window_edge(0, None, 128) == 128 and window_edge(96, None, 128) == 96


def test_a_class_name_that_is_another_class_s_index_wins_with_a_warning():
    said = []

    def log(kind, text):
        said.append((kind, text))

    assert resolve_class("1", ["1", "0"], log) == 0          # the name, not index 1
    assert said == [("warning", "CLASS '1' is the name of class 0 and also the index of class "
                                "1 ('0'); the class named '1' (index 0) is explained. For the "
                                "other, give its name '0'.")]
    said.clear()
    assert resolve_class("1", ["0", "1"], log) == 1 and said == []   # the same class either way
    with pytest.raises(InputError, match="CLASS: the model has no class '2'"):
        resolve_class("2", ["1", "0"], log)
    assert resolve_class("oil", ["sea", "oil"], log) == 1 and said == []
    with pytest.raises(InputError, match="CLASS: the model has no class '²'"):
        resolve_class("²", ["sea", "oil", "ship"], log)      # a digit to isdigit(), not int()


def test_read_job_reads_the_window_and_the_region(raster):
    job = read_job(Model(), raster, region_wkb(44, 44, 52, 52), window=32)
    assert job.window.height == job.window.width == 32
    assert job.image.shape == (32, 32, 1) and job.bands == (1,)
    assert job.mask.sum() == 64 and not job.nodata.any()
    assert job.geotransform[0] == 1000.0 + 10 * job.window.col0
    with pytest.raises(InputError, match="ROI: the region of interest lies outside"):
        read_job(Model(), raster, region_wkb(200, 200, 210, 210), window=32)


def test_explain_to_files_writes_every_output_with_its_metadata(raster, tmp_path):
    out = {"excitation": str(tmp_path / "out" / "e.tif"), "inhibition": str(tmp_path / "i.tif"),
           "cells": str(tmp_path / "c.gpkg")}
    said = []
    run = explain_to_files(Model(), raster, region_wkb(44, 44, 52, 52), "oil", "occlusion",
                           window=32, outputs=out, log=lambda kind, text: said.append(kind),
                           max_depth=2)
    assert set(run.outputs) == set(out) and "info" in said
    assert run.class_name == "oil" and run.prediction > 0.5
    assert all(isinstance(c, Cell) and c["value"] is c.value for c in run.result.cells)
    meta = gdal.Open(out["excitation"]).GetMetadata()
    assert meta["method"] == "occlusion" and meta["class"] == "oil" and meta["output"] == \
        "excitation"
    params = json.loads(meta["parameters"])
    assert params["max_depth"] == 2 and params["crop"] is None and params["crop_multiple"] == 32
    assert json.loads(meta["bands"]) == [1]
    ds = ogr.Open(out["cells"])         # keep the dataset alive while its layer is used
    assert ds.GetLayer(0).GetFeatureCount() == len(run.result.cells)
    ds = None


def test_a_failing_output_leaves_no_file(raster, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    out = {"excitation": str(tmp_path / "e.tif"), "inhibition": str(blocker / "i.tif")}
    with pytest.raises(OutputError, match="INHIBITION: cannot write"):
        explain_to_files(Model(), raster, region_wkb(44, 44, 52, 52), "oil", "rise",
                         window=32, outputs=out, n_masks=4)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "scene.tif"]


@pytest.mark.parametrize("transform, message", [
    (lambda p: np.where(p > 0.5, np.nan, p), "NaN or infinite"),
    (lambda p: 4.0 * p - 2.0, "not class probabilities"),
])
def test_plain_python_callers_get_the_output_checks(raster, tmp_path, transform, message):
    model = Model(transform)
    image = np.random.default_rng(1).normal(0, 1, (24, 24, 1)).astype(np.float32)
    region = np.zeros((24, 24), bool)
    region[10:14, 10:14] = True
    with pytest.raises(ModelError, match=message):
        explain_region(model, image, region, 1, "rise", n_masks=4)
    with pytest.raises(ModelError, match=message):
        segment_to_files(model, raster, str(tmp_path / "p.tif"), tile_size=32)
    assert not (tmp_path / "p.tif").exists()
    with pytest.raises(ModelError, match=message):
        explain_to_files(model, raster, region_wkb(44, 44, 52, 52), "oil", "rise", window=32,
                         outputs={"excitation": str(tmp_path / "e.tif")}, n_masks=4)
    assert not (tmp_path / "e.tif").exists()
