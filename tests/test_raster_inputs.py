"""INPUT as analysts have it, in every algorithm (issue 15, point 1): a raster georeferenced only
by GCPs is segmented on the grid it is explained on (warped on the fly, the warp recorded), and a
Sentinel-1 product given by its path (a plain .zip as downloaded) runs through qgis_process and
the toolbox, where QGIS's raster-layer parameter used to refuse it."""

import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
from osgeo import gdal, ogr, osr

from seg_explainer.core.errors import InputError
from seg_explainer.core.job import read_job, segment_to_files
from seg_explainer.core.region import EDGE_TOLERANCE
from seg_explainer.resources.sample import safe_product

from helpers_qgis import project_restored, provider, qgis_process  # noqa: F401 (fixtures)
from test_core_job import Model
from test_sentinel1 import truth_gcp_raster

WGS84 = osr.SpatialReference()
WGS84.ImportFromEPSG(4326)
WGS84.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
UTM31 = osr.SpatialReference()
UTM31.ImportFromEPSG(32631)
UTM31.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
TO_WGS84 = osr.CoordinateTransformation(UTM31, WGS84)
TO_UTM = osr.CoordinateTransformation(WGS84, UTM31)


def gcp_copy(data, geotransform, path, nodata=None):
    """``data`` (on a UTM 31N grid ``geotransform``) written georeferenced only by a 5 x 5 grid
    of WGS 84 GCPs, as a GRD product comes."""
    h, w = data.shape
    x0, dx, _, y0, _, dy = geotransform
    gcps = []
    for r in np.linspace(0, h, 5):
        for c in np.linspace(0, w, 5):
            lon, lat, _ = TO_WGS84.TransformPoint(x0 + c * dx, y0 + r * dy)
            gcps.append(gdal.GCP(lon, lat, 0, float(c), float(r)))
    ds = gdal.GetDriverByName("GTiff").Create(str(path), w, h, 1, gdal.GDT_Float32)
    ds.SetGCPs(gcps, WGS84.ExportToWkt())
    if nodata is not None:
        ds.GetRasterBand(1).SetNoDataValue(nodata)
    ds.GetRasterBand(1).WriteArray(data)
    ds = None
    return str(path)


def warped_grid(path):
    """``(geotransform, (height, width))`` of the grid ``gdalwarp -t_srs EPSG:32631`` gives
    the raster: what QGIS users get from Raster > Projections > Warp (the oracle)."""
    ds = gdal.Warp("", str(path), format="VRT", dstSRS="EPSG:32631")
    return ds.GetGeoTransform(), (ds.RasterYSize, ds.RasterXSize)


def on_grid(gt, grid_gt, tol=1e-6):
    """The pixel offset ``(row, col)`` of ``gt``'s origin on ``grid_gt`` (asserting the same
    pixel size and a whole number of pixels)."""
    assert gt[1] == pytest.approx(grid_gt[1], rel=tol) and gt[5] == pytest.approx(grid_gt[5],
                                                                                rel=tol)
    col, row = (gt[0] - grid_gt[0]) / grid_gt[1], (gt[3] - grid_gt[3]) / grid_gt[5]
    assert abs(col - round(col)) < 1e-6 and abs(row - round(row)) < 1e-6, (row, col)
    return round(row), round(col)


def lonlat(x, y):
    return TO_WGS84.TransformPoint(x, y)[:2]


def utm(lon, lat):
    return TO_UTM.TransformPoint(lon, lat)[:2]


def pixel_of(gt, x, y):
    return int((y - gt[3]) // gt[5]), int((x - gt[0]) // gt[1])


# --------------------------------------------------------------------------- a GCP-only raster


@pytest.fixture()
def slick(tmp_path):
    """A 100 x 100 sea at 0 with a dark slick (rows 40-59, cols 60-79) on a 10 m UTM 31N grid,
    georeferenced by GCPs only: ``(path, utm geotransform)``."""
    data = np.random.default_rng(3).normal(0, 0.3, (100, 100)).astype(np.float32)
    data[40:60, 60:80] = -4.0
    gt = (500000.0, 10.0, 0.0, 5650000.0, 0.0, -10.0)
    return gcp_copy(data, gt, tmp_path / "grd.tif"), gt


def test_a_gcp_raster_is_segmented_on_the_warped_grid(slick, tmp_path):
    path, gt = slick
    assert gdal.Open(path).GetGeoTransform(can_return_null=True) is None
    said = []
    out = {"p": str(tmp_path / "p.tif"), "c": str(tmp_path / "c.tif")}
    segment_to_files(Model(), path, out["p"], out["c"], tile_size=32,
                     log=lambda kind, text: said.append((kind, text)))
    grid_gt, size = warped_grid(path)
    for name in out.values():
        ds = gdal.Open(name)
        assert "UTM zone 31N" in osr.SpatialReference(ds.GetProjection()).GetName()
        np.testing.assert_allclose(ds.GetGeoTransform(), grid_gt, rtol=0, atol=1e-6)
        assert (ds.RasterYSize, ds.RasterXSize) == size
        warp = json.loads(ds.GetMetadataItem("warp"))
        assert warp["from"] == "25 ground control points"
        assert warp["to_crs"] == "WGS 84 / UTM zone 31N" and warp["size"] == list(size)
        assert warp["pixel_size"] == pytest.approx([grid_gt[1], -grid_gt[5]])
        assert ds.GetMetadataItem("method") == "segment"
        assert ds.GetMetadataItem("input_raster") == path
    assert any(kind == "warning" and "warped on the fly" in text for kind, text in said)
    # The slick is where it lies on the ground: the class map says oil at the slick's centre
    # (pixel (50, 70) of the unwarped grid), sea 30 pixels west of it.
    classes = gdal.Open(out["c"]).ReadAsArray()
    for (r, c), want in (((50, 70), 1), ((50, 40), 0)):
        x, y = gt[0] + (c + 0.5) * gt[1], gt[3] + (r + 0.5) * gt[5]
        assert classes[pixel_of(grid_gt, x, y)] == want
    probs = gdal.Open(out["p"]).ReadAsArray()
    valid = classes != 255
    np.testing.assert_allclose(probs[:, valid].sum(axis=0), 1.0, atol=1e-5)
    assert not any("segx-" in n for n in (gdal.ReadDir("/vsimem/") or []))


def test_an_extent_on_a_gcp_raster_is_cut_from_the_warped_grid(slick, tmp_path):
    """EXTENT is given in the GCPs' CRS (as QGIS shows the layer); the output is the part of
    the warped grid that covers it, on that grid's pixels."""
    path, gt = slick
    (lon0, lat0), (lon1, lat1) = lonlat(500550.0, 5649350.0), lonlat(500850.0, 5649650.0)
    out = str(tmp_path / "p.tif")
    segment_to_files(Model(), path, out, extent=(lon0, lat0, lon1, lat1), tile_size=32)
    ds = gdal.Open(out)
    ogt, h, w = ds.GetGeoTransform(), ds.RasterYSize, ds.RasterXSize
    grid_gt, size = warped_grid(path)
    row, col = on_grid(ogt, grid_gt)
    assert 0 <= row and row + h <= size[0] and 0 <= col and col + w <= size[1]
    # it covers the 300 m x 300 m extent drawn, and little more (a pixel around, plus the
    # extent's own curvature in UTM)
    xs, ys = zip(*(utm(lo, la) for lo, la in ((lon0, lat0), (lon1, lat0), (lon0, lat1),
                                              (lon1, lat1))))
    # (an extent edge within core.region.EDGE_TOLERANCE px of a pixel edge lies on it)
    ex, ey = EDGE_TOLERANCE * ogt[1], EDGE_TOLERANCE * -ogt[5]
    assert ogt[0] <= min(xs) + ex and ogt[0] + w * ogt[1] >= max(xs) - ex
    assert ogt[3] >= max(ys) - ey and ogt[3] + h * ogt[5] <= min(ys) + ey
    assert w * ogt[1] <= max(xs) - min(xs) + 2 * ogt[1] + 1
    assert h * -ogt[5] <= max(ys) - min(ys) + 2 * -ogt[5] + 1
    assert json.loads(ds.GetMetadataItem("parameters"))["window"] == [row, col, h, w]
    assert json.loads(ds.GetMetadataItem("warp"))["size"] == list(size)
    # the slick's pixels are oil here too
    p = ds.GetRasterBand(2).ReadAsArray()
    x, y = gt[0] + 70.5 * gt[1], gt[3] + 50.5 * gt[5]
    assert p[pixel_of(ogt, x, y)] > 0.9
    with pytest.raises(InputError, match="EXTENT: the extent does not overlap the raster"):
        segment_to_files(Model(), path, str(tmp_path / "q.tif"),
                         extent=(lon0 + 1, lat0, lon1 + 1, lat1))
    assert not (tmp_path / "q.tif").exists()


def _utm_raster(path, array, gdal_type=gdal.GDT_Float32):
    """A one-band GeoTIFF of ``array`` in UTM 31N, 10 m pixels, top-left at (1000, 5000)."""
    ds = gdal.GetDriverByName("GTiff").Create(str(path), array.shape[1], array.shape[0], 1,
                                              gdal_type)
    ds.SetGeoTransform((1000.0, 10.0, 0.0, 5000.0, 0.0, -10.0))
    ds.SetProjection(UTM31.ExportToWkt())
    ds.GetRasterBand(1).WriteArray(array)
    ds = None
    return str(path)


def test_an_extent_on_a_gridded_raster_is_the_pixels_it_touches(tmp_path):
    """The same rule on an ordinary raster: the pixels the extent touches, clipped."""
    path = _utm_raster(tmp_path / "r.tif", np.zeros((50, 60), np.float32))
    out = str(tmp_path / "p.tif")
    # x 1015 to 1101 -> columns 1 to 10; y 4905 to 4995 -> rows 0 to 9; then clipped at the
    # raster's right edge
    segment_to_files(Model(), path, out, extent=(1015.0, 4905.0, 1101.0, 4995.0), tile_size=16)
    assert gdal.Open(out).GetGeoTransform() == (1010.0, 10.0, 0.0, 5000.0, 0.0, -10.0)
    assert (gdal.Open(out).RasterYSize, gdal.Open(out).RasterXSize) == (10, 10)
    segment_to_files(Model(), path, out, extent=(1555.0, 4450.0, 2000.0, 4600.0), tile_size=16)
    assert gdal.Open(out).GetGeoTransform()[:4] == (1550.0, 10.0, 0.0, 4600.0)
    assert (gdal.Open(out).RasterYSize, gdal.Open(out).RasterXSize) == (10, 5)
    assert gdal.Open(out).GetMetadataItem("warp") is None


def test_complex_bands_are_segmented_as_the_model_says_and_recorded(tmp_path):
    z = np.full((32, 32), 3 + 4j, np.complex64)                    # |z| = 5, |z|^2 = 25
    path = _utm_raster(tmp_path / "slc.tif", z, gdal.GDT_CFloat32)

    class Amplitude(Model):
        metadata = type("M", (), {"raw": {"seg_explainer_complex": "amplitude"}})()

    seen = []

    class Seeing(Amplitude):
        def predict(self, images, batch_size=None):
            seen.append(np.asarray(images)[..., 0].max())
            return super().predict(images, batch_size)

    said = []
    out = str(tmp_path / "p.tif")
    segment_to_files(Seeing(), path, out, tile_size=32, log=lambda k, t: said.append(t))
    assert seen and max(seen) == pytest.approx(5.0)
    assert json.loads(gdal.Open(out).GetMetadataItem("complex_bands")) == \
        {"bands": [1], "as": "amplitude"}
    assert any("given their amplitude (|z|)" in t for t in said)


def test_a_scaled_band_is_segmented_on_its_scaled_values_and_recorded(tmp_path):
    path = _utm_raster(tmp_path / "dn.tif", np.full((32, 32), -1500, np.int16), gdal.GDT_Int16)
    ds = gdal.Open(path, gdal.GA_Update)
    ds.GetRasterBand(1).SetScale(0.01)                 # -1500 hundredths of a dB = -15 dB
    ds = None
    seen, said = [], []

    class Seeing(Model):
        def predict(self, images, batch_size=None):
            seen.append(np.asarray(images)[..., 0])
            return super().predict(images, batch_size)

    out = str(tmp_path / "p.tif")
    segment_to_files(Seeing(), path, out, tile_size=32, log=lambda k, t: said.append(t))
    assert seen and all(np.allclose(x[np.isfinite(x)], -15.0) for x in seen)
    assert json.loads(gdal.Open(out).GetMetadataItem("band_scaling")) == \
        {"1": {"scale": 0.01, "offset": 0.0}}
    assert any("band 1: raw x 0.01 + 0" in t for t in said)


def test_explain_and_segment_read_one_grid(slick, tmp_path):
    """One implementation: the explanation window of a GCP raster lies on the grid segment
    writes, pixel for pixel."""
    path, gt = slick
    lon0, lat0 = lonlat(500650.0, 5649450.0)
    lon1, lat1 = lonlat(500750.0, 5649550.0)
    region = ogr.CreateGeometryFromWkt(
        f"POLYGON(({lon0} {lat0},{lon1} {lat0},{lon1} {lat1},{lon0} {lat1},{lon0} {lat0}))")
    job = read_job(Model(), path, bytes(region.ExportToIsoWkb()), window=32)
    out = str(tmp_path / "p.tif")
    segment_to_files(Model(), path, out, tile_size=32)
    on_grid(job.geotransform, gdal.Open(out).GetGeoTransform())
    assert job.recorded["warp"] == gdal.Open(out).GetMetadataItem("warp")


# --------------------------------------------------------------------------- through QGIS


@pytest.fixture(scope="module")
def gcp_scene(sample_data, tmp_path_factory):
    """A 512 x 512 crop of the sample scene around its oil region, georeferenced only by GCPs:
    ``(path, crop's UTM geotransform, crop's truth classes, oil region)``."""
    import shapely

    ds = ogr.Open(sample_data["regions"])
    layer = ds.GetLayer("regions")
    layer.SetAttributeFilter("name = 'oil'")
    feature = layer.GetNextFeature()          # kept: a geometry does not keep its feature
    oil = shapely.from_wkb(bytes(feature.GetGeometryRef().ExportToWkb()))
    feature = layer = ds = None
    scene = gdal.Open(sample_data["scene"])
    gt = scene.GetGeoTransform()
    r, c = pixel_of(gt, oil.centroid.x, oil.centroid.y)
    r0 = min(max(r - 256, 0), scene.RasterYSize - 512)
    c0 = min(max(c - 256, 0), scene.RasterXSize - 512)
    data = scene.ReadAsArray(c0, r0, 512, 512)
    truth = gdal.Open(sample_data["truth"]).ReadAsArray(c0, r0, 512, 512)
    crop_gt = (gt[0] + c0 * gt[1], gt[1], 0.0, gt[3] + r0 * gt[5], 0.0, gt[5])
    path = gcp_copy(data, crop_gt, tmp_path_factory.mktemp("gcp") / "grd_scene.tif",
                    nodata=scene.GetRasterBand(1).GetNoDataValue())
    return path, crop_gt, truth, oil


def test_qgis_process_segments_a_gcp_raster_on_the_warped_grid(gcp_scene, sample_data,
                                                               tmp_path):
    """qgis_process segment on a GCP-only raster, EXTENT drawn on a UTM map around the oil
    region: the outputs are the warped grid's pixels over that extent, record the warp, and
    find the oil where the truth has it."""
    path, crop_gt, truth, oil = gcp_scene
    x0, y0, x1, y1 = oil.buffer(300).bounds
    out = {"PROBABILITIES": tmp_path / "p.tif", "CLASSES": tmp_path / "c.tif"}
    args = ["run", "segexplainer:segment", "--", f"INPUT={path}",
            f"MODEL={sample_data['model']}", f"EXTENT={x0},{x1},{y0},{y1} [EPSG:32631]",
            "TILE_SIZE=128", "OVERLAP=16"] + [f"{k}={v}" for k, v in out.items()]
    proc = qgis_process(args, tmp_path / "qp")
    assert "warped on the fly to WGS 84 / UTM zone 31N" in proc.stdout + proc.stderr
    grid_gt, size = warped_grid(path)
    ds = gdal.Open(str(out["CLASSES"]))
    ogt, h, w = ds.GetGeoTransform(), ds.RasterYSize, ds.RasterXSize
    assert "UTM zone 31N" in osr.SpatialReference(ds.GetProjection()).GetName()
    row, col = on_grid(ogt, grid_gt)
    assert row >= 0 and col >= 0 and row + h <= size[0] and col + w <= size[1]
    # the extent, and no more than a pixel (plus the WGS 84 round trip's curvature) around it
    assert ogt[0] <= x0 + 1 and ogt[0] + w * ogt[1] >= x1 - 1
    assert ogt[3] >= y1 - 1 and ogt[3] + h * ogt[5] <= y0 + 1
    assert w * ogt[1] < x1 - x0 + 4 * ogt[1] and h * -ogt[5] < y1 - y0 + 4 * -ogt[5]
    for name in out.values():
        meta = gdal.Open(str(name)).GetMetadata()
        warp = json.loads(meta["warp"])
        assert warp["from"] == "25 ground control points" and warp["size"] == list(size)
        assert json.loads(meta["parameters"])["window"] == [row, col, h, w]
        assert meta["input_raster"] == path
    # The oil, against the truth at each output pixel's centre (on the scene's own grid).
    c = ds.ReadAsArray()
    rows, cols = np.mgrid[0:h, 0:w]
    xs, ys = ogt[0] + (cols + 0.5) * ogt[1], ogt[3] + (rows + 0.5) * ogt[5]
    tr = np.floor((ys - crop_gt[3]) / crop_gt[5]).astype(int)
    tc = np.floor((xs - crop_gt[0]) / crop_gt[1]).astype(int)
    inside = (tr >= 0) & (tr < 512) & (tc >= 0) & (tc < 512)
    t = np.full((h, w), 255, np.uint8)
    t[inside] = truth[tr[inside], tc[inside]]
    inter = ((c == 1) & (t == 1)).sum()
    union = ((c == 1) | (t == 1)).sum()
    assert union > 500 and inter / union > 0.5, inter / union


@pytest.fixture(scope="module")
def product(tmp_path_factory):
    return safe_product.write_safe(tmp_path_factory.mktemp("s1zip"), size=300)


def _product_classes_agree(got, product, sample_data, tmp_path):
    """The class map of the product equals the one of its generating sigma0 (read through the
    same warp) on all but a few pixels (calibration within 0.25 dB)."""
    from seg_explainer.core.model import SegmentationModel

    reference = str(tmp_path / "reference.tif")
    segment_to_files(SegmentationModel.load(sample_data["model"]),
                     truth_gcp_raster(product, tmp_path / "truth.tif"), str(tmp_path / "rp.tif"),
                     reference, tile_size=128, overlap=16)
    want, got_ds = gdal.Open(reference), gdal.Open(got)
    np.testing.assert_allclose(got_ds.GetGeoTransform(), want.GetGeoTransform(), atol=1e-6)
    a, b = got_ds.ReadAsArray(), want.ReadAsArray()
    assert np.array_equal(a == 255, b == 255)
    valid = a != 255
    assert valid.sum() > 50000 and np.mean(a[valid] == b[valid]) > 0.99
    assert len(np.unique(a[valid])) >= 2          # not one class everywhere


def test_segment_calibrates_a_zipped_product(product, sample_data, tmp_path):
    """The engine: segment takes a plain zip like explain does (calibrated, warped, recorded)."""
    from seg_explainer.core.model import SegmentationModel

    said = []
    out = str(tmp_path / "c.tif")
    segment_to_files(SegmentationModel.load(sample_data["model"]), product["zip"],
                     str(tmp_path / "p.tif"), out, tile_size=128, overlap=16,
                     log=lambda k, t: said.append(t))
    ds = gdal.Open(out)
    record = json.loads(ds.GetMetadataItem("sentinel1"))
    assert record["calibration"] == "sigma0" and record["unit"] == "dB"
    assert record["product"] == product["zip"]
    assert json.loads(ds.GetMetadataItem("warp"))["from"] == "25 ground control points"
    assert any("calibrated to sigma0" in t for t in said)
    _product_classes_agree(out, product, sample_data, tmp_path)
    assert not any("segx-" in n for n in (gdal.ReadDir("/vsimem/") or []))


def test_qgis_process_segments_a_zipped_product(product, sample_data, tmp_path):
    """A plain S1A_....zip as INPUT through qgis_process: QGIS's raster-layer parameter used to
    refuse it ("Could not load source layer for INPUT"); now the engine gets the path."""
    out = {"PROBABILITIES": tmp_path / "p.tif", "CLASSES": tmp_path / "c.tif"}
    args = ["run", "segexplainer:segment", "--", f"INPUT={product['zip']}",
            f"MODEL={sample_data['model']}", "TILE_SIZE=128", "OVERLAP=16"]
    proc = qgis_process(args + [f"{k}={v}" for k, v in out.items()], tmp_path / "qp")
    said = proc.stdout + proc.stderr
    assert "Could not load source layer" not in said
    assert "calibrated to sigma0" in said and "warped on the fly" in said
    ds = gdal.Open(str(out["CLASSES"]))
    assert "UTM zone 31N" in osr.SpatialReference(ds.GetProjection()).GetName()
    record = json.loads(ds.GetMetadataItem("sentinel1"))
    assert record["product"] == product["zip"] and record["unit"] == "dB"
    assert json.loads(ds.GetMetadataItem("warp"))["to_crs"] == "WGS 84 / UTM zone 31N"
    _product_classes_agree(str(out["CLASSES"]), product, sample_data, tmp_path)


def _roi_file(product, path, half=12):
    """A box around the product scene's centre, in WGS 84 (the product's CRS), as GeoJSON."""
    (x0, y0), (x1, y1) = safe_product._lonlat(product["scene"], [150 - half, 150 + half],
                                              [150 - half, 150 + half])
    path.write_text(json.dumps({"type": "FeatureCollection", "features": [{
        "type": "Feature", "properties": {}, "geometry": {"type": "Polygon", "coordinates": [
            [[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]]}}]}))
    return str(path)


def test_qgis_process_explains_a_zipped_product(product, sample_data, tmp_path):
    out = {"EXCITATION": tmp_path / "exc.tif", "INHIBITION": tmp_path / "inh.tif"}
    args = ["run", "segexplainer:explain_rise", "--", f"INPUT={product['zip']}",
            f"MODEL={sample_data['model']}", f"ROI={_roi_file(product, tmp_path / 'roi.json')}",
            "CLASS=oil", "N_MASKS=16", "WINDOW=64", "SEED=1"]
    proc = qgis_process(args + [f"{k}={v}" for k, v in out.items()], tmp_path / "qp")
    assert "calibrated to sigma0" in proc.stdout + proc.stderr
    ds = gdal.Open(str(out["EXCITATION"]))
    assert "UTM zone 31N" in osr.SpatialReference(ds.GetProjection()).GetName()
    assert (ds.RasterXSize, ds.RasterYSize) == (64, 64)
    assert json.loads(ds.GetMetadataItem("sentinel1"))["product"] == product["zip"]
    assert ds.GetMetadataItem("input_raster") == product["zip"]
    assert json.loads(ds.GetMetadataItem("warp"))["from"] == "25 ground control points"
    # the window holds the region: the region's centre is inside it
    lon, lat = safe_product._lonlat(product["scene"], [150], [150])[0]
    x, y = utm(lon, lat)
    gt = ds.GetGeoTransform()
    assert 0 <= (x - gt[0]) / gt[1] < 64 and 0 <= (y - gt[3]) / gt[5] < 64


def test_a_product_path_that_is_not_a_product_is_still_refused_by_qgis(tmp_path, sample_data):
    """Only Sentinel-1 products skip QGIS's layer check: any other zip is refused as before,
    by QGIS, naming INPUT, with nothing written."""
    import zipfile

    bogus = tmp_path / "notes.zip"
    with zipfile.ZipFile(bogus, "w") as z:
        z.writestr("readme.txt", "no product here")
    out = tmp_path / "p.tif"
    args = ["run", "segexplainer:segment", "--", f"INPUT={bogus}",
            f"MODEL={sample_data['model']}", f"PROBABILITIES={out}"]
    proc = qgis_process(args, tmp_path / "qp", check=False)
    assert proc.returncode != 0
    assert re.search(r"INPUT", proc.stdout + proc.stderr)
    assert not out.exists()


def test_processing_parameter_takes_a_product_and_nothing_else(provider, product,  # noqa: F811
                                                               tmp_path):
    """The INPUT parameter itself (what QGIS's checks, the batch dialog and qgis_process call)
    accepts every form of a product and refuses what is neither a layer nor a product."""
    from qgis.core import QgsApplication, QgsProcessingContext

    context = QgsProcessingContext()
    for alg_id in ("segexplainer:segment", "segexplainer:explain_shap",
                   "segexplainer:explain_regions"):
        alg = QgsApplication.processingRegistry().createAlgorithmById(alg_id)
        param = alg.parameterDefinition("INPUT")
        for value in (product["zip"], product["folder"], product["manifest"],
                      f"/vsizip/{product['zip']}/{safe_product.PRODUCT}",
                      f"SENTINEL1_DS:{product['folder']}:IW_VV"):
            assert param.checkValueIsAcceptable(value, context), (alg_id, value)
            assert param.clone().checkValueIsAcceptable(value, context), (alg_id, value)
        assert not param.checkValueIsAcceptable(str(tmp_path / "missing.tif"), context)
    alg = QgsApplication.processingRegistry().createAlgorithmById("segexplainer:segment")
    ok, message = alg.checkParameterValues(
        {"INPUT": product["zip"], "MODEL": "m.onnx", "PROBABILITIES": "p.tif"}, context)
    assert ok, message


def test_toolbox_dialog_segments_a_zipped_product(provider, product, sample_data,  # noqa: F811
                                                  qgis_iface, project_restored, tmp_path,
                                                  monkeypatch):
    """The toolbox's dialog: the zip chosen as INPUT's file ("..." > Select file) is kept as a
    path by QGIS's layer combo box; the run segments it and loads the outputs."""
    from test_processing_dialog import run_in_dialog

    outputs = {"PROBABILITIES": tmp_path / "p.tif", "CLASSES": tmp_path / "c.tif"}
    values = {"INPUT": product["zip"], "MODEL": sample_data["model"], "TILE_SIZE": 128,
              "OVERLAP": 16, **{k: str(v) for k, v in outputs.items()}}
    ok, results, html, typed = run_in_dialog("segexplainer:segment", values, qgis_iface,
                                             tmp_path, monkeypatch)
    assert typed["INPUT"] == product["zip"]
    assert ok, html
    assert "calibrated to sigma0" in html
    for key, path in outputs.items():
        assert Path(results[key]) == path and path.is_file()
    ds = gdal.Open(str(outputs["CLASSES"]))
    assert json.loads(ds.GetMetadataItem("sentinel1"))["product"] == product["zip"]
    assert "UTM zone 31N" in osr.SpatialReference(ds.GetProjection()).GetName()


@pytest.mark.parametrize("kind", ["gcp", "zip"])
def test_explain_regions_takes_regions_in_another_crs_on_a_gcp_raster_and_a_product(
        kind, slick, product, tmp_path):
    """explain_regions brings each region to the CRS the raster is read in (a GCP raster's or
    a product's: its GCPs'), as the single-region algorithms do, instead of the raster's own
    (none) or GDAL's opening of a zip (which fails on GDAL 3.6)."""
    import os

    from seg_explainer.core.regions import Region, explain_regions

    if kind == "gcp":
        raster, (x, y) = slick[0], (500000.0 + 70.5 * 10, 5650000.0 - 50.5 * 10)
    else:
        lon, lat = safe_product._lonlat(product["scene"], [150], [150])[0]
        raster, (x, y) = product["zip"], utm(lon, lat)
    box = ogr.CreateGeometryFromWkt(f"POLYGON(({x - 60} {y - 60},{x + 60} {y - 60},"
                                    f"{x + 60} {y + 60},{x - 60} {y + 60},{x - 60} {y - 60}))")
    run = explain_regions([Region(id=1, wkb=bytes(box.ExportToIsoWkb()))],
                          str(Path(__file__).resolve().parent.parent / "resources" / "sample"
                              / "oil_unet.onnx"), "oil", "rise", str(tmp_path / "out"),
                          raster=raster, crs_wkt=UTM31.ExportToWkt(), scheduler="serial",
                          window=64, n_masks=8, seed=1)
    record = run.records[0]
    assert record["status"] == "done", record.get("message")
    ds = gdal.Open(os.path.join(record["folder"], record["excitation_path"]))
    gt = ds.GetGeoTransform()
    assert "UTM zone 31N" in osr.SpatialReference(ds.GetProjection()).GetName()
    assert json.loads(ds.GetMetadataItem("warp"))["from"] == "25 ground control points"
    # the region, drawn in UTM, is in the middle of the window (not elsewhere, not refused)
    col, row = (x - gt[0]) / gt[1], (y - gt[3]) / gt[5]
    assert 16 < col < 48 and 16 < row < 48, (row, col)


@pytest.mark.parametrize("kwargs, message", [({"tile_size": 8}, "tile_size must be an integer "
                                              ">= 16"),
                                             ({"overlap": -2}, "overlap must be an integer >= 0"),
                                             ({"batch_size": 0}, "batch_size must be")])
def test_segment_refuses_what_the_declaration_refuses_before_writing(tmp_path, kwargs,
                                                                     message):
    path = _utm_raster(tmp_path / "r.tif", np.zeros((32, 32), np.float32))
    with pytest.raises(ValueError, match=message):
        segment_to_files(Model(), path, str(tmp_path / "p.tif"), **kwargs)
    assert sorted(os.listdir(tmp_path)) == ["r.tif"]


@pytest.mark.parametrize("extent, side", [((1100.0, 4700.0, 1100.0, 4900.0), "width is 0"),
                                          ((1100.0, 4800.0, 1300.0, 4800.0), "height is 0"),
                                          ((1300.0, 4700.0, 1100.0, 4900.0), "width is -200")])
def test_an_extent_without_area_is_named_as_such_not_as_outside(tmp_path, extent, side):
    path = _utm_raster(tmp_path / "r.tif", np.zeros((50, 60), np.float32))
    with pytest.raises(InputError, match=rf"EXTENT: the extent \(.*\) has no area \(its {side}\)"):
        segment_to_files(Model(), path, str(tmp_path / "p.tif"), extent=extent)
    assert sorted(os.listdir(tmp_path)) == ["r.tif"]


def test_an_extent_on_a_rotated_raster_is_refused_not_cut_elsewhere(tmp_path):
    """A 30 degree geotransform: the extent's pixel window ignored the rotation terms and the
    output lay a kilometre away from the extent asked for."""
    path = _utm_raster(tmp_path / "r.tif", np.zeros((50, 60), np.float32))
    ds = gdal.Open(path, gdal.GA_Update)
    ds.SetGeoTransform((1000.0, 8.66, -5.0, 5000.0, -5.0, -8.66))
    ds = None
    with pytest.raises(InputError, match=r"EXTENT: the raster's geotransform is rotated"):
        segment_to_files(Model(), path, str(tmp_path / "p.tif"),
                         extent=(1100.0, 4700.0, 1200.0, 4800.0))
    assert sorted(os.listdir(tmp_path)) == ["r.tif"]
    out = segment_to_files(Model(), path, str(tmp_path / "whole.tif"))   # whole: its own grid
    assert out and gdal.Open(str(tmp_path / "whole.tif")).GetGeoTransform()[2] == -5.0


def test_a_raster_too_wide_to_blend_in_memory_is_refused_before_any_file(tmp_path):
    """A VRT 200,000,000 px wide over a small file (a row of tiles: 1.4 TB). At 2,000,000 px
    (16 GB here) the run thrashed, deaf to SIGTERM for minutes; now refused up front."""
    small = _utm_raster(tmp_path / "small.tif", np.zeros((32, 32), np.float32))
    vrt = str(tmp_path / "huge.vrt")
    gdal.Translate(vrt, gdal.Open(small), format="VRT", width=200_000_000, height=600)
    with pytest.raises(InputError, match=r"INPUT: the part segmented is 200000000 px wide; "
                                         r"blending one row of 512 px tiles over it needs "
                                         r"[\d.]+ GiB, more than half"):
        segment_to_files(Model(), vrt, str(tmp_path / "p.tif"), tile_size=512)
    assert sorted(os.listdir(tmp_path)) == ["huge.vrt", "small.tif"]
