"""Sentinel-1 GRD products (issue 15, point 1): a SAFE folder, its manifest.safe, a zip of it
and GDAL's subdataset names open like any raster, calibrated to sigma0 from the product's own
LUT, warped on the fly to UTM, through the engine and through Processing."""

import json

import numpy as np
import pytest
from osgeo import gdal, ogr, osr

from seg_explainer.core.errors import InputError
from seg_explainer.core.job import explain_to_files, read_job
from seg_explainer.core.sentinel1 import calibrated_source, input_unit, lut_values
from seg_explainer.resources.sample import safe_product

from helpers_qgis import provider  # noqa: F401 (fixture)
from test_core_job import Model

SIZE = 300
CENTRE = (150, 150)          # (line, pixel) of the region's centre


class DbModel(Model):
    """The job's test model, told its input is sigma0 in dB."""

    metadata = type("M", (), {"raw": {"seg_explainer_input_unit": "dB"}})()


@pytest.fixture(scope="module")
def product(tmp_path_factory):
    return safe_product.write_safe(tmp_path_factory.mktemp("s1"), size=SIZE)


@pytest.fixture(scope="module")
def dual(tmp_path_factory):
    return safe_product.write_safe(tmp_path_factory.mktemp("s1dual"), size=SIZE,
                                   polarisations=("vv", "vh"))


def _region(product, half=8):
    """A box of the sample grid around CENTRE, in WGS 84 (the GCPs' CRS, as QGIS shows it)."""
    line, pixel = CENTRE
    corners = safe_product._lonlat(product["scene"], [line - half, line + half],
                                   [pixel - half, pixel + half])
    (x0, y0), (x1, y1) = corners
    ring = f"POLYGON(({x0} {y0},{x1} {y0},{x1} {y1},{x0} {y1},{x0} {y0}))"
    return bytes(ogr.CreateGeometryFromWkt(ring).ExportToIsoWkb())


def truth_gcp_raster(product, path):
    """The generating sigma0 (dB) as a GCP-only GeoTIFF with the product's GCPs: read through
    the same warp, it is what the calibrated product must give."""
    sigma0 = product["sigma0_db"]["vv"]
    ds = gdal.GetDriverByName("GTiff").Create(str(path), SIZE, SIZE, 1, gdal.GDT_Float32)
    wgs = osr.SpatialReference()
    wgs.ImportFromEPSG(4326)
    ds.SetGCPs([gdal.GCP(lo, la, 0, pi, li) for li, pi, lo, la in product["gcps"]],
               wgs.ExportToWkt())
    ds.GetRasterBand(1).SetNoDataValue(float("nan"))
    ds.GetRasterBand(1).WriteArray(sigma0)
    ds = None
    return str(path)


def test_the_test_product_is_what_gdal_reads_as_sentinel1(product):
    for source in (product["folder"], product["manifest"],
                   f"/vsizip/{product['zip']}/{safe_product.PRODUCT}"):
        ds = gdal.Open(source)
        assert ds.GetDriver().ShortName == "SAFE"
        assert (ds.RasterXSize, ds.RasterYSize, ds.GetGCPCount()) == (SIZE, SIZE, 25)
        np.testing.assert_array_equal(ds.GetRasterBand(1).ReadAsArray(), product["dn"]["vv"])


def test_the_lut_is_interpolated_bilinearly(product):
    cal = product["manifest"].replace("manifest.safe", "annotation/calibration/") + \
        "calibration-" + safe_product.STEM.format(pol="vv", n=1) + ".xml"
    rows, cols = np.array([0, 7.5, 149, 299]), np.array([0, 13, 150.5, 299])
    want = safe_product.lut_value("sigmaNought", cols[None, :], rows[:, None])
    np.testing.assert_allclose(lut_values(cal, "sigmaNought", rows, cols), want, rtol=1e-6)


@pytest.mark.parametrize("unit", ["dB", "linear"])
def test_calibrated_values_are_the_generating_sigma0(product, unit):
    model = DbModel() if unit == "dB" else Model()
    s1 = calibrated_source(model, product["folder"])
    try:
        ds = gdal.Open(s1.path)         # kept: GDAL 3.6's bands do not keep their dataset
        got = ds.GetRasterBand(1).ReadAsArray().astype(np.float64)
        ds = None
    finally:
        s1.close()
    truth = product["sigma0_db"]["vv"].astype(np.float64)
    assert np.array_equal(np.isnan(got), np.isnan(truth))       # DN 0 = the nodata frame
    valid = ~np.isnan(truth)
    if unit == "linear":
        got = 10 * np.log10(got[valid])
    else:
        got = got[valid]
    assert np.max(np.abs(got - truth[valid])) < 0.25              # DN rounding, dark pixels
    assert np.mean(np.abs(got - truth[valid])) < 0.02
    assert json.loads(s1.record["sentinel1"])["unit"] == unit


def test_every_form_of_the_product_explains_on_the_warped_grid(product, tmp_path):
    region = _region(product)
    reference = read_job(DbModel(), truth_gcp_raster(product, tmp_path / "truth.tif"), region,
                         window=64)
    manifest = product["manifest"]
    forms = {"folder": product["folder"], "manifest": manifest, "zip": product["zip"],
             "ds": f"SENTINEL1_DS:{product['folder']}:IW_VV",
             "calib": f"SENTINEL1_CALIB:SIGMA0:{manifest}:IW_VV:INTENSITY",
             "uncalib": f"SENTINEL1_CALIB:UNCALIB:{manifest}:IW_VV:AMPLITUDE"}
    for name, source in forms.items():
        out = {"excitation": str(tmp_path / f"{name}_exc.tif")}
        run = explain_to_files(DbModel(), source, region, "oil", "shap", window=64,
                               hex_size=12, n_samples=64, outputs=out)
        job = run.job
        np.testing.assert_allclose(job.geotransform, reference.geotransform, atol=1e-3)
        x0, dx, _, y0, _, dy = job.geotransform        # the sample's own 10 m UTM grid
        assert abs(dx - 10) < 0.05 and abs(dy + 10) < 0.05, name
        assert abs((x0 - 480000) / 10 - round((x0 - 480000) / 10)) < 0.05, name
        valid = ~np.isnan(reference.image)
        assert np.array_equal(valid, ~np.isnan(job.image)), name
        assert np.max(np.abs(job.image[valid] - reference.image[valid])) < 0.25, name
        assert job.mask.sum() == reference.mask.sum() > 100, name
        ds = gdal.Open(run.outputs["excitation"])
        assert "UTM zone 31N" in osr.SpatialReference(ds.GetProjection()).GetName()
        np.testing.assert_allclose(ds.GetGeoTransform(), job.geotransform)
        record = json.loads(ds.GetMetadataItem("sentinel1"))
        assert record["calibration"] == "sigma0" and record["unit"] == "dB", name
        assert record["measurements"][0]["polarisation"] == "VV", name
        assert json.loads(ds.GetMetadataItem("warp"))["from"] == "25 ground control points"
        assert ds.GetMetadataItem("input_raster") == source
        assert any("calibrated to sigma0" in w for w in job.warnings), name
    assert not any("segx-" in n for n in (gdal.ReadDir("/vsimem/") or []))


def test_two_polarisations_and_one_channel_list_the_subdatasets(dual):
    with pytest.raises(InputError) as info:
        read_job(DbModel(), dual["folder"], _region(dual), window=64)
    message = str(info.value)
    assert "2 polarisations (1 = IW VV, 2 = IW VH)" in message
    assert "BANDS" in message and f"SENTINEL1_CALIB:SIGMA0:{dual['manifest']}:IW_VH" in message


def test_bands_or_a_subdataset_choose_the_polarisation(dual):
    region = _region(dual)
    vh = read_job(DbModel(), dual["folder"], region, bands=[2], window=64)
    vv = read_job(DbModel(), f"SENTINEL1_DS:{dual['folder']}:IW_VV", region, window=64)
    valid = ~np.isnan(vv.image)
    np.testing.assert_allclose(vv.image[valid] - vh.image[valid], 6.0, atol=0.5)
    assert json.loads(vh.recorded["sentinel1"])["measurements"][0]["polarisation"] == "VH"
    with pytest.raises(InputError, match=r"BANDS: the product's bands are 1 = IW VV, 2 = IW VH"):
        read_job(DbModel(), dual["folder"], region, bands=[3], window=64)


def test_the_unit_follows_the_model_metadata():
    minmax = type("S", (), {"type": "minmax", "min": -35.0, "max": 5.0})()
    m = type("M", (), {"metadata": type("D", (), {"raw": {}, "input_scaling": minmax})()})()
    assert input_unit(m)[0] == "dB"
    assert input_unit(Model())[0] == "linear"
    bad = type("M", (), {"metadata": type("D", (), {"raw": {"seg_explainer_input_unit": "x"}})()})
    with pytest.raises(InputError, match="seg_explainer_input_unit is 'x'"):
        input_unit(bad())


@pytest.mark.parametrize("form", ["folder", "manifest", "vsizip", "zip", "ds"])
def test_processing_explains_a_safe_product(provider, product, sample_data,  # noqa: F811
                                            tmp_path, form):
    """Every form of the product as Processing INPUT, also those QGIS cannot load as a layer
    (a plain zip, SENTINEL1_DS: on GDAL 3.6; /vsizip/ on QGIS 3.22): the INPUT parameter
    takes a product's path and the engine reads it (processing_provider.common)."""
    import processing
    from qgis.core import QgsProcessingContext, QgsProcessingFeedback

    roi = tmp_path / "roi.geojson"
    geom = ogr.CreateGeometryFromWkb(_region(product, half=12))
    roi.write_text(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {}, "geometry": json.loads(geom.ExportToJson())}]}))
    exc = str(tmp_path / "exc.tif")
    inputs = {"vsizip": f"/vsizip/{product['zip']}/{safe_product.PRODUCT}",
              "ds": f"SENTINEL1_DS:{product['folder']}:IW_VV"}
    params = {
        "INPUT": inputs.get(form) or product[form], "MODEL": sample_data["model"],
        "ROI": str(roi),
        "CLASS": "oil", "HEX_SIZE": 16, "N_SAMPLES": 100, "WINDOW": 128, "BATCH_SIZE": 8,
        "SEED": 3, "EXCITATION": exc, "INHIBITION": str(tmp_path / "inh.tif"),
        "SIGNED": str(tmp_path / "signed.tif"), "CELLS": str(tmp_path / "cells.gpkg"),
        "REPORT": str(tmp_path / "report.png")}
    res = processing.run("segexplainer:explain_shap", params, context=QgsProcessingContext(),
                         feedback=QgsProcessingFeedback())
    ds = gdal.Open(res["EXCITATION"])
    assert "UTM zone 31N" in osr.SpatialReference(ds.GetProjection()).GetName()
    assert ds.RasterXSize == 128
    record = json.loads(ds.GetMetadataItem("sentinel1"))
    assert record["unit"] == "dB" and "min-max from -35" in record["unit_from"]
    assert np.isfinite(res["PREDICTION"])
    assert ds.GetMetadataItem("input_raster") == params["INPUT"]


# --------------------------------------------------------------------------- the part calibrated
#
# A run that reads one window calibrates only the part of the product the warp of that window
# reads (issue 15: a real GRD is 25000 x 16700 px per polarisation). The oracle is the
# whole-product path (every run calibrating the whole product, as before), on a product whose
# geolocation grid is turned as a real track is, so its warped grid has nodata corners.

BIG = 2000
TURN = 15.0           # degrees between the product's lines and north


@pytest.fixture(scope="module")
def turned(tmp_path_factory):
    """A 2000 x 2000 px product whose geolocation grid is turned by :data:`TURN` degrees about
    its centre; ``product["lonlat"](lines, pixels)`` gives WGS 84 points of its pixels."""
    import re

    product = safe_product.write_safe(tmp_path_factory.mktemp("s1turned"), size=BIG,
                                      zip_it=False)
    x0, dx, _, y0, _, dy = product["scene"]["geotransform"]
    utm, wgs = osr.SpatialReference(), osr.SpatialReference()
    utm.ImportFromEPSG(product["scene"]["epsg"])
    wgs.ImportFromEPSG(4326)
    wgs.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    to_wgs = osr.CoordinateTransformation(utm, wgs)
    cos, sin = np.cos(np.radians(TURN)), np.sin(np.radians(TURN))

    def lonlat(lines, pixels):
        u = (np.ravel(pixels).astype(float) - BIG / 2) * dx
        v = (np.ravel(lines).astype(float) - BIG / 2) * dy
        x, y = x0 + BIG / 2 * dx + u * cos - v * sin, y0 + BIG / 2 * dy + u * sin + v * cos
        return np.array(to_wgs.TransformPoints(np.c_[x, y].tolist()))[:, :2]

    annotation = f"{product['folder']}/annotation/{safe_product.STEM.format(pol='vv', n=1)}.xml"
    with open(annotation) as f:
        text = f.read()

    def turn(match):
        (lon, lat), = lonlat([float(match[1])], [float(match[2])])
        return (f"<line>{match[1]}</line><pixel>{match[2]}</pixel><latitude>{lat:.9f}"
                f"</latitude><longitude>{lon:.9f}</longitude>")

    text, n = re.subn(r"<line>([-\d.]+)</line><pixel>([-\d.]+)</pixel><latitude>[^<]*"
                      r"</latitude><longitude>[^<]*</longitude>", turn, text)
    assert n == 25
    with open(annotation, "w") as f:
        f.write(text)
    product["lonlat"] = lonlat
    return product


def _box(product, line, pixel, half):
    """The product's pixels ``line +- half``, ``pixel +- half`` as a WGS 84 polygon (WKB)."""
    corners = product["lonlat"]([line - half, line - half, line + half, line + half],
                                [pixel - half, pixel + half, pixel + half, pixel - half])
    ring = ",".join(f"{x} {y}" for x, y in np.r_[corners, corners[:1]])
    return bytes(ogr.CreateGeometryFromWkt(f"POLYGON(({ring}))").ExportToIsoWkb())


@pytest.fixture()
def calibrations(monkeypatch):
    """``[(path, (height, width))]`` of every temporary calibrated file a run writes, measured
    on the file itself."""
    from seg_explainer.core import sentinel1

    written, real = [], sentinel1._write_calibrated

    def measured(path, *args, **kwargs):
        real(path, *args, **kwargs)
        ds = gdal.Open(path)
        written.append((path, (ds.RasterYSize, ds.RasterXSize)))
        ds = None

    monkeypatch.setattr(sentinel1, "_write_calibrated", measured)
    return written


def _as_before(monkeypatch):
    """From now on every run calibrates the whole product, as before (the oracle)."""
    from seg_explainer.core import job as job_module

    real = job_module.opened_raster
    monkeypatch.setattr(job_module, "opened_raster",
                        lambda model, source, bands=None, needs=None: real(model, source, bands))


def _same_job(job, oracle):
    """The job reads the oracle's grid, window and pixels (float tolerance)."""
    assert job.geotransform == pytest.approx(oracle.geotransform, rel=0, abs=1e-6)
    assert job.window == oracle.window
    assert (job.info.height, job.info.width) == (oracle.info.height, oracle.info.width)
    assert job.info.geotransform == pytest.approx(oracle.info.geotransform, rel=0, abs=1e-6)
    assert np.array_equal(np.isnan(job.image), np.isnan(oracle.image))
    np.testing.assert_allclose(job.image, oracle.image, rtol=0, atol=1e-4, equal_nan=True)
    assert np.array_equal(job.mask, oracle.mask) and np.array_equal(job.nodata, oracle.nodata)
    assert job.recorded["warp"] == oracle.recorded["warp"]
    mine, theirs = (json.loads(j.recorded["sentinel1"]) for j in (job, oracle))
    assert mine.pop("calibrated_window") != theirs.pop("calibrated_window")
    assert mine == theirs


def test_a_region_calibrates_only_the_part_its_window_reads(turned, calibrations, monkeypatch):
    region = _box(turned, 1000, 1000, 10)
    job = read_job(DbModel(), turned["folder"], region, window=64)
    (path, (h, w)), = calibrations
    record = json.loads(job.recorded["sentinel1"])
    assert record["calibrated_window"][2:] == [h, w]
    assert record["measurement_size"] == [BIG, BIG]
    # the 64 px window, turned by 15 degrees, covers about 78 x 78 px of the product; with
    # the margin (16 px and 2 %) about 112 x 112 px
    assert h <= 64 * 1.3 + 2 * (16 + 3) and w <= 64 * 1.3 + 2 * (16 + 3)
    assert not np.isnan(job.image).any()
    assert not (gdal.VSIStatL(path) or gdal.VSIStatL(path + ".aux.xml"))   # removed
    assert not any("segx-" in n for n in (gdal.ReadDir("/vsimem/") or []))
    _as_before(monkeypatch)
    oracle = read_job(DbModel(), turned["folder"], region, window=64)
    assert calibrations[1][1] == (BIG, BIG)
    assert json.loads(oracle.recorded["sentinel1"])["calibrated_window"] == [0, 0, BIG, BIG]
    _same_job(job, oracle)


@pytest.mark.parametrize("line, pixel", [(90, 90), (1000, 1915), (1915, 1000), (90, 1915)])
def test_a_region_near_the_products_edge_with_a_large_window_has_no_hole(
        turned, calibrations, monkeypatch, line, pixel):
    """The window hangs past the product's edge and the swath's turned edge: it holds nodata
    where the whole product has none, and no hole where the part calibrated ends."""
    region = _box(turned, line, pixel, 6)
    job = read_job(DbModel(), turned["folder"], region, window=256)
    (_, (h, w)), = calibrations
    assert h * w < BIG * BIG / 5          # measured: 3.6 % to 12 % of the product
    _as_before(monkeypatch)
    oracle = read_job(DbModel(), turned["folder"], region, window=256)
    assert np.isnan(oracle.image).any() and not np.isnan(oracle.image).all()
    _same_job(job, oracle)


def test_an_explanation_on_a_part_is_the_whole_products(turned, calibrations, monkeypatch,
                                                          tmp_path):
    region = _box(turned, 700, 1200, 12)
    runs = []
    for name in ("part", "whole"):
        if name == "whole":
            _as_before(monkeypatch)
        out = {"excitation": str(tmp_path / f"{name}_exc.tif")}
        runs.append(explain_to_files(DbModel(), turned["manifest"], region, "oil", "shap",
                                     window=96, hex_size=12, n_samples=200, seed=1,
                                     outputs=out))
    part, whole = runs
    assert calibrations[0][1][0] * calibrations[0][1][1] < BIG * BIG / 10   # measured: 6.6 %
    assert calibrations[1][1] == (BIG, BIG)
    _same_job(part.job, whole.job)
    np.testing.assert_allclose(part.result.signed, whole.result.signed, rtol=0, atol=1e-5,
                               equal_nan=True)
    assert part.prediction == pytest.approx(whole.prediction, abs=1e-6)
    a, b = (gdal.Open(r.outputs["excitation"]) for r in runs)
    assert a.GetGeoTransform() == pytest.approx(b.GetGeoTransform(), rel=0, abs=1e-6)
    np.testing.assert_allclose(a.ReadAsArray(), b.ReadAsArray(), rtol=0, atol=1e-5)
    assert a.GetMetadataItem("window") == b.GetMetadataItem("window")
    assert a.GetMetadataItem("warp") == b.GetMetadataItem("warp")
    assert json.loads(a.GetMetadataItem("sentinel1"))["calibrated_window"] == \
        json.loads(part.metadata["sentinel1"])["calibrated_window"]
    assert all(not gdal.VSIStatL(p) for p, _ in calibrations)


@pytest.mark.parametrize("half", [20, 150])
def test_segment_with_an_extent_calibrates_only_its_tiles(turned, calibrations, monkeypatch,
                                                           tmp_path, half):
    """An extent smaller than a tile (tiles read past its end) and one larger than a tile:
    the probabilities equal the whole product's, on the same grid."""
    from seg_explainer.core.job import segment_to_files

    corners = turned["lonlat"]([1000 - half, 1000 + half, 1000 - half, 1000 + half],
                               [1000 - half, 1000 - half, 1000 + half, 1000 + half])
    extent = (*corners.min(axis=0), *corners.max(axis=0))
    outs = [str(tmp_path / "part.tif"), str(tmp_path / "whole.tif")]
    segment_to_files(DbModel(), turned["folder"], outs[0], extent=extent, tile_size=64)
    _as_before(monkeypatch)
    segment_to_files(DbModel(), turned["folder"], outs[1], extent=extent, tile_size=64)
    (_, (h, w)), (_, whole) = calibrations
    assert whole == (BIG, BIG)
    assert h * w < BIG * BIG / (16 if half == 20 else 5)     # measured: 4.4 %, 12 %
    a, b = (gdal.Open(p) for p in outs)
    assert (a.RasterYSize, a.RasterXSize) == (b.RasterYSize, b.RasterXSize)
    assert a.GetGeoTransform() == pytest.approx(b.GetGeoTransform(), rel=0, abs=1e-6)
    np.testing.assert_allclose(a.ReadAsArray(), b.ReadAsArray(), rtol=0, atol=1e-5)
    for item in ("parameters", "warp"):
        assert a.GetMetadataItem(item) == b.GetMetadataItem(item)
    assert json.loads(a.GetMetadataItem("sentinel1"))["calibrated_window"][2:] == [h, w]
    assert all(not gdal.VSIStatL(p) for p, _ in calibrations)


def test_segment_without_an_extent_calibrates_the_whole_product(turned, calibrations,
                                                                tmp_path):
    from seg_explainer.core.job import segment_to_files

    out = str(tmp_path / "p.tif")
    segment_to_files(DbModel(), turned["folder"], out, tile_size=256)
    assert [size for _, size in calibrations] == [(BIG, BIG)]
    assert json.loads(gdal.Open(out).GetMetadataItem("sentinel1"))["calibrated_window"] == \
        [0, 0, BIG, BIG]


def test_explain_regions_calibrates_a_small_part_for_each_region(turned, tmp_path):
    """explain_regions explains each region through explain_to_files: each calibrates the part
    around its own window, recorded in its outputs."""
    import os
    from pathlib import Path

    from seg_explainer.core.regions import Region, explain_regions

    wgs = osr.SpatialReference()
    wgs.ImportFromEPSG(4326)
    model = Path(__file__).resolve().parent.parent / "resources" / "sample" / "oil_unet.onnx"
    regions = [Region(id=i, wkb=_box(turned, line, pixel, 10))
               for i, (line, pixel) in enumerate([(600, 600), (1300, 1200)], start=1)]
    run = explain_regions(regions, str(model), "oil", "rise", str(tmp_path / "out"),
                          raster=turned["folder"], crs_wkt=wgs.ExportToWkt(),
                          scheduler="serial", window=64, n_masks=8, seed=1)
    parts = []
    for record in run.records:
        assert record["status"] == "done", record.get("message")
        ds = gdal.Open(os.path.join(record["folder"], record["excitation_path"]))
        row0, col0, h, w = json.loads(ds.GetMetadataItem("sentinel1"))["calibrated_window"]
        assert h * w < BIG * BIG / 16
        parts.append((row0, col0))
    assert parts[0] != parts[1]
