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
