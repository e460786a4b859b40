"""The synthetic SAR sample scene, its files, and the shipped sample model."""

import json
import math
import os

import numpy as np
import pytest
from scipy import ndimage

from seg_explainer.resources.sample import scene

SAMPLE_DIR = os.path.dirname(scene.__file__)
MODEL = os.path.join(SAMPLE_DIR, "oil_unet.onnx")


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    out = tmp_path_factory.mktemp("sample")
    paths = scene.write_sample(out)  # default seed, 2048 x 2048
    return paths


@pytest.fixture(scope="module")
def demo():
    return scene.generate_scene(scene.DEFAULT_SEED)


def _read(path):
    """(dataset, band, array); keep the dataset alive as long as the band is used."""
    from osgeo import gdal

    ds = gdal.Open(str(path))
    band = ds.GetRasterBand(1)
    return ds, band, band.ReadAsArray()


# --------------------------------------------------------------------------- generator

def test_same_seed_same_scene_other_seed_differs():
    a = scene.generate_scene(7, size=512)
    b = scene.generate_scene(7, size=512)
    c = scene.generate_scene(8, size=512)
    np.testing.assert_array_equal(a["sigma0_db"], b["sigma0_db"])
    np.testing.assert_array_equal(a["classes"], b["classes"])
    assert a["sigma0_db"].dtype == np.float32 and a["classes"].dtype == np.uint8
    assert a["sigma0_db"].shape == a["classes"].shape == (512, 512)
    assert not np.array_equal(a["sigma0_db"], c["sigma0_db"])


def test_demo_training_and_evaluation_seeds_are_disjoint():
    from seg_explainer.resources.sample import evaluate_model, train_model

    assert train_model.EVAL_SEEDS == evaluate_model.EVAL_SEEDS
    assert scene.DEFAULT_SEED not in train_model.TRAIN_SEEDS
    assert scene.DEFAULT_SEED not in evaluate_model.EVAL_SEEDS
    assert not set(train_model.TRAIN_SEEDS) & set(evaluate_model.EVAL_SEEDS)


def test_speckle_on_homogeneous_sea_has_variance_one_over_enl():
    s = scene.generate_scene(11, size=512, wind_gradient=False, wind_streaks=False, features=False)
    assert (s["classes"][s["valid"]] == 0).all()
    power = 10.0 ** (s["sigma0_db"][s["valid"]].astype(np.float64) / 10.0)
    ratio = power.var() / power.mean() ** 2
    assert ratio == pytest.approx(1.0 / scene.ENL, rel=0.15)
    # The mean is the (constant) sea level: speckle has unit mean.
    mean_power = 10.0 ** (s["mean_db"][s["valid"]].astype(np.float64) / 10.0)
    assert power.mean() == pytest.approx(mean_power.mean(), rel=0.02)


def test_speckle_on_open_sea_of_the_demo_scene(demo):
    # Divide out the slowly varying mean field on a sea patch far from every feature.
    far = ndimage.distance_transform_edt(demo["classes"] == 0) > 50
    ratio = 10.0 ** ((demo["sigma0_db"] - demo["mean_db"]).astype(np.float64) / 10.0)[far]
    assert far.sum() > 100_000
    assert ratio.mean() == pytest.approx(1.0, abs=0.02)
    assert ratio.var() / ratio.mean() ** 2 == pytest.approx(1.0 / scene.ENL, rel=0.15)
    # The wind gradient keeps the mean sea backscatter in the stated range.
    sea = demo["sea_db"][demo["valid"]]
    assert sea.min() >= scene.SEA_DB_RANGE[0] - 2.0 and sea.max() <= scene.SEA_DB_RANGE[1] + 2.0
    assert np.percentile(sea, 95) - np.percentile(sea, 5) > 1.0  # there is a gradient


def test_slick_damping_is_3_to_10_db(demo):
    lo, hi = scene.OIL_DAMPING_DB
    checked = 0
    for s in demo["slicks"]:
        mask = (demo["slick_id"] == s["id"]) & (demo["classes"] == 1)
        core = ndimage.binary_erosion(mask, iterations=2)
        if core.sum() < 300:
            continue
        # The damping applied to the underlying mean backscatter (before speckle).
        damping = demo["oil_damping_db"][mask]
        assert lo <= np.median(damping) <= hi
        assert damping.max() <= hi + 1e-4
        # Measured on the speckled image: sea ring around the slick against its core.
        ring = (ndimage.binary_dilation(mask, iterations=25)
                & ~ndimage.binary_dilation(mask, iterations=8) & (demo["classes"] == 0))
        measured = np.median(demo["sigma0_db"][ring]) - np.median(demo["sigma0_db"][core])
        assert lo - 0.3 <= measured <= hi + 0.5, (s["id"], measured)
        checked += 1
    assert checked >= 2


def test_scene_has_all_classes_and_ships_are_bright(demo):
    classes = demo["classes"]
    assert set(np.unique(classes)) == {0, 1, 2, 3, scene.NODATA_CLASS}
    ship = classes == 3
    gain = (demo["mean_db"] - demo["sea_db"])[ship]
    assert gain.max() >= 10.0 and np.median(gain) > 5.0
    assert any(s["from_ship"] for s in demo["slicks"])


# --------------------------------------------------------------------------- files

def test_geotiff_grid_crs_nodata_frame(sample):
    from osgeo import osr

    ds, band, db = _read(sample["scene"])
    assert band.DataType == 6  # GDT_Float32
    assert band.GetDescription() == "VV sigma0 (dB)"
    srs = osr.SpatialReference(wkt=ds.GetProjection())
    srs.AutoIdentifyEPSG()
    assert srs.GetAuthorityCode(None) == str(scene.EPSG) and srs.IsProjected()
    gt = ds.GetGeoTransform()
    assert gt[1] == 10.0 and gt[5] == -10.0 and gt[2] == gt[4] == 0.0
    nodata = band.GetNoDataValue()
    assert nodata == scene.NODATA
    invalid = db == nodata
    # A frame: every border row/column is nodata, the frame is tens of pixels, the centre valid.
    assert invalid[0].all() and invalid[-1].all() and invalid[:, 0].all() and invalid[:, -1].all()
    assert invalid[10].mean() > 0.9 and not invalid[100, 100:-100].any()
    assert not invalid[100:-100, 100:-100].any()
    widths = invalid[:, 1000].argmin(), invalid[1000].argmin()
    assert all(5 <= w <= 80 for w in widths)
    assert 0.01 < invalid.mean() < 0.15
    valid = db[~invalid]
    assert -45.0 < valid.min() and valid.max() < 30.0 and -25 < np.median(valid) < -10

    ds_t, band_t, truth = _read(sample["truth"])
    assert ds_t.GetGeoTransform() == gt and ds_t.GetProjection() == ds.GetProjection()
    assert band_t.DataType == 1 and band_t.GetNoDataValue() == scene.NODATA_CLASS
    assert band_t.GetColorTable() is not None
    assert band_t.GetCategoryNames()[:4] == ["sea", "oil", "lookalike", "ship"]
    np.testing.assert_array_equal(truth == scene.NODATA_CLASS, invalid)
    assert not [p for p in os.listdir(os.path.dirname(sample["scene"])) if ".tmp-" in p]


def _region_masks(sample):
    """name -> boolean mask of the truth grid (polygons) or (row, col) (the pixel point)."""
    from osgeo import gdal, ogr

    ds_t, _, truth = _read(sample["truth"])
    gt = ds_t.GetGeoTransform()
    vec = ogr.Open(str(sample["regions"]))
    out = {}
    layer = vec.GetLayerByName("regions")
    for feat in layer:
        mem = gdal.GetDriverByName("MEM").Create("", truth.shape[1], truth.shape[0], 1,
                                                 gdal.GDT_Byte)
        mem.SetGeoTransform(gt)
        mem.SetProjection(ds_t.GetProjection())
        tmp = ogr.GetDriverByName("Memory").CreateDataSource("")
        lyr = tmp.CreateLayer("x", layer.GetSpatialRef(), ogr.wkbPolygon)
        f = ogr.Feature(lyr.GetLayerDefn())
        f.SetGeometry(feat.GetGeometryRef().Clone())
        lyr.CreateFeature(f)
        gdal.RasterizeLayer(mem, [1], lyr, burn_values=[1])
        out[feat.GetField("name")] = mem.GetRasterBand(1).ReadAsArray().astype(bool)
    pixel = vec.GetLayerByName("pixel")
    for feat in pixel:
        x, y = feat.GetGeometryRef().GetX(), feat.GetGeometryRef().GetY()
        out[feat.GetField("name")] = (int((y - gt[3]) / gt[5]), int((x - gt[0]) / gt[1]))
    return truth, out


def test_regions_gpkg(sample):
    from osgeo import ogr

    vec = ogr.Open(str(sample["regions"]))
    assert vec.GetLayerByName("regions").GetSpatialRef().GetAuthorityCode(None) == str(scene.EPSG)
    truth, regions = _region_masks(sample)
    assert sorted(regions) == ["boundary", "oil", "pixel", "sea"]
    oil = truth[regions["oil"]]
    assert oil.size > 20 and np.mean(oil == 1) >= 0.9
    sea = truth[regions["sea"]]
    assert sea.size > 100 and (sea == 0).all()
    boundary = truth[regions["boundary"]]
    assert np.mean(boundary == 1) >= 0.2 and np.mean(boundary == 0) >= 0.2
    assert truth[regions["pixel"]] == 1


# --------------------------------------------------------------------------- model

def test_sample_model_file_and_metadata():
    ort = pytest.importorskip("onnxruntime")
    assert os.path.getsize(MODEL) <= 5 * 1024 * 1024
    sess = ort.InferenceSession(MODEL, providers=["CPUExecutionProvider"])
    meta = sess.get_modelmeta().custom_metadata_map
    for key in ("model_type", "class_names", "resolution", "tiles_size", "tiles_overlap",
                "standardization_mean", "standardization_std", "seg_explainer_input_scaling",
                "seg_explainer_input_layout", "seg_explainer_output_activation",
                "seg_explainer_input_nodata"):
        assert key in meta, key
    assert meta["model_type"] == "Segmentor"
    assert json.loads(meta["class_names"]) == {"0": "sea", "1": "oil", "2": "lookalike",
                                               "3": "ship"}
    assert meta["resolution"] == "1000" and meta["tiles_size"] == "512" and \
        meta["tiles_overlap"] == "15"
    assert json.loads(meta["seg_explainer_input_scaling"]) == {
        "type": "minmax", "min": -35.0, "max": 5.0, "clip": True}
    assert meta["seg_explainer_input_layout"] == "NCHW"
    assert meta["seg_explainer_output_activation"] == "none"
    assert json.loads(meta["seg_explainer_input_nodata"]) == {"fill": "mean"}
    assert len(json.loads(meta["standardization_mean"])) == \
        len(json.loads(meta["standardization_std"])) == 1
    inp = sess.get_inputs()[0]
    assert inp.type == "tensor(float)" and inp.shape[1] == 1 and not isinstance(inp.shape[0], int)
    assert not isinstance(inp.shape[2], int) and not isinstance(inp.shape[3], int)
    probs = sess.run(None, {inp.name: np.zeros((2, 1, 96, 160), np.float32)})[0]
    assert probs.shape == (2, 4, 96, 160)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-4)


def _oil_probability(sess, meta, db, nodata, mask):
    """Mean oil probability over ``mask``; preprocessing written out from the metadata."""
    valid = db != nodata
    x = db.astype(np.float32).copy()
    x[~valid] = x[valid].mean()
    sc = json.loads(meta["seg_explainer_input_scaling"])
    x = np.clip((x - sc["min"]) / (sc["max"] - sc["min"]), 0.0, 1.0)
    x = (x - json.loads(meta["standardization_mean"])[0]) / \
        json.loads(meta["standardization_std"])[0]
    probs = sess.run(None, {sess.get_inputs()[0].name: x[None, None].astype(np.float32)})[0][0]
    return float(probs[1][mask].mean())


def test_sample_model_finds_oil_in_the_sample_scene(sample):
    ort = pytest.importorskip("onnxruntime")
    sess = ort.InferenceSession(MODEL, providers=["CPUExecutionProvider"])
    meta = sess.get_modelmeta().custom_metadata_map
    ds, band, db = _read(sample["scene"])
    nodata = band.GetNoDataValue()
    _, regions = _region_masks(sample)
    p = {}
    for name in ("oil", "sea", "boundary"):
        rr, cc = np.nonzero(regions[name])
        r0 = int(np.clip(rr.mean() - 256, 0, db.shape[0] - 512))
        c0 = int(np.clip(cc.mean() - 256, 0, db.shape[1] - 512))
        win = (slice(r0, r0 + 512), slice(c0, c0 + 512))
        p[name] = _oil_probability(sess, meta, db[win], nodata, regions[name][win])
    assert p["oil"] > 0.5, p
    assert p["sea"] < 0.5, p
    assert 0.1 < p["boundary"] < 0.9, p
    assert math.isfinite(sum(p.values()))
