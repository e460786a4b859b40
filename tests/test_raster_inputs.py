"""INPUT as analysts have it, in every algorithm (issue 15, point 1): a raster georeferenced only
by GCPs is segmented on the grid it is explained on (warped on the fly, the warp recorded)."""

import json

import numpy as np
import pytest
from osgeo import gdal, ogr, osr

from seg_explainer.core.errors import InputError
from seg_explainer.core.job import read_job, segment_to_files

from test_core_job import Model

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
    assert ogt[0] <= min(xs) and ogt[0] + w * ogt[1] >= max(xs)
    assert ogt[3] >= max(ys) and ogt[3] + h * ogt[5] <= min(ys)
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


def test_an_extent_on_a_gridded_raster_is_the_pixels_it_touches(tmp_path):
    """The same rule on an ordinary raster: the pixels the extent touches, clipped."""
    data = np.zeros((50, 60), np.float32)
    path = str(tmp_path / "r.tif")
    ds = gdal.GetDriverByName("GTiff").Create(path, 60, 50, 1, gdal.GDT_Float32)
    ds.SetGeoTransform((1000.0, 10.0, 0.0, 5000.0, 0.0, -10.0))
    ds.SetProjection(UTM31.ExportToWkt())
    ds.GetRasterBand(1).WriteArray(data)
    ds = None
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
    path = str(tmp_path / "slc.tif")
    ds = gdal.GetDriverByName("GTiff").Create(path, 32, 32, 1, gdal.GDT_CFloat32)
    ds.SetGeoTransform((1000.0, 10.0, 0.0, 5000.0, 0.0, -10.0))
    ds.SetProjection(UTM31.ExportToWkt())
    ds.GetRasterBand(1).WriteArray(z)
    ds = None

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
