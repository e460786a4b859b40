"""Hostile and careless inputs in the engine, without QGIS (issue 15, points 1, 2, 3 and 6):
parameters outside what is meaningful, non-finite and absurd values, regions that must land
where they were drawn, rasters georeferenced only by GCPs, complex SLC bands."""

import json
import warnings

import numpy as np
import pytest
from osgeo import gdal, ogr, osr

from seg_explainer.core.baselines import band_means
from seg_explainer.core.errors import InputError, InputWarning
from seg_explainer.core.explain import explain_region
from seg_explainer.core.georef import gridded_source, transform_region
from seg_explainer.core.job import explain_to_files, read_job
from seg_explainer.core.model import usable_cores, usable_threads

from test_core_job import SIZE, Model, raster, region_wkb  # noqa: F401 (fixture)


def srs_wkt(epsg):
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(epsg)
    return srs.ExportToWkt()


def wkb(wkt):
    return bytes(ogr.CreateGeometryFromWkt(wkt).ExportToIsoWkb())


def box(x0, y0, x1, y1):
    return wkb(f"POLYGON(({x0} {y0},{x1} {y0},{x1} {y1},{x0} {y1},{x0} {y0}))")


def write(path, data, geotransform=None, epsg=None, gdal_type=gdal.GDT_Float32, nodata=None):
    data = np.asarray(data)
    ds = gdal.GetDriverByName("GTiff").Create(str(path), data.shape[1], data.shape[0], 1,
                                              gdal_type)
    if geotransform is not None:
        ds.SetGeoTransform(geotransform)
    if epsg is not None:
        ds.SetProjection(srs_wkt(epsg))
    if nodata is not None:
        ds.GetRasterBand(1).SetNoDataValue(nodata)
    ds.GetRasterBand(1).WriteArray(data)
    ds = None
    return str(path)


def image_and_region(h=32, w=32):
    x = np.random.default_rng(0).normal(0, 0.3, (h, w, 1)).astype(np.float32)
    region = np.zeros((h, w), bool)
    region[12:18, 12:18] = True
    return x, region


# --------------------------------------------------------------------------- parameters (6)


def test_too_few_shap_samples_for_the_cells_are_refused():
    # M cells need M + 2 complementary pairs: with fewer, the regression has more unknowns
    # than equations, and the values' standard errors would claim a precision they lack
    x, region = image_and_region()
    with pytest.raises(InputError, match=r"N_SAMPLES: 1 coalition\(s\) cannot determine the "
                                         r"values of \d+ cells; at least \d+ are needed"):
        explain_region(Model(), x, region, 1, "shap", hex_size=8, n_samples=1)
    m = explain_region(Model(), x, region, 1, "shap", hex_size=8).details["n_players"]
    assert 2 * m + 4 < 2 ** m - 2                  # not every coalition: the pairs bound
    with pytest.raises(InputError, match=rf"values of {m} cells; at least {2 * m + 4} are "):
        explain_region(Model(), x, region, 1, "shap", hex_size=8, n_samples=2 * m + 3)
    e = explain_region(Model(), x, region, 1, "shap", hex_size=8, n_samples=2 * m + 4)
    assert e.n_evaluations == 2 * m + 6                        # the pairs and both ends


@pytest.mark.parametrize("name, value, message", [
    ("n_samples", 2_000_000_000, r"n_samples must be an integer from 0 to 10000000"),
    ("seed", 2 ** 31, r"seed must be an integer from 0 to 2147483647"),
    ("seed", -1, r"seed must be an integer from 0 to 2147483647")])
def test_values_beyond_the_declared_range_are_refused(name, value, message):
    x, region = image_and_region()
    with pytest.raises(InputError, match=message):
        explain_region(Model(), x, region, 1, "shap", hex_size=8, **{name: value})


def test_the_largest_seed_is_the_seed_used():
    x, region = image_and_region()
    a = explain_region(Model(), x, region, 1, "rise", n_masks=20, seed=2 ** 31 - 1)
    b = explain_region(Model(), x, region, 1, "rise", n_masks=20, seed=2 ** 31 - 1)
    c = explain_region(Model(), x, region, 1, "rise", n_masks=20, seed=0)
    assert a.params["seed"] == 2 ** 31 - 1 and np.array_equal(a.signed, b.signed)
    assert not np.array_equal(a.signed, c.signed)


def test_a_rise_grid_finer_than_the_window_is_refused():
    x, region = image_and_region()
    with pytest.raises(InputError, match=r"GRID_SIZE: a 64 x 64 mask grid on a 32 x 32 px "
                                         r"window .* Use GRID_SIZE 32 or less"):
        explain_region(Model(), x, region, 1, "rise", n_masks=4, grid_size=64)


def test_threads_beyond_the_cores_are_lowered_with_a_warning():
    cores = usable_cores()
    with pytest.warns(InputWarning, match=rf"THREADS: 1000 threads were asked for, but this "
                                          rf"process may use {cores} core\(s\)"):
        assert usable_threads(1000) == cores
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert usable_threads(cores) == cores


def test_the_model_loader_applies_the_thread_limit(tmp_path):
    from seg_explainer.core.model import SegmentationModel
    from test_core_model import build_model

    path = build_model(tmp_path / "m.onnx", weights=np.array([[0.0], [0.2]]),
                       bias=np.array([0.0, 3.0]), metadata={"class_names": '["sea", "oil"]'})
    with pytest.warns(InputWarning, match="THREADS: 1000 threads"):
        model = SegmentationModel.load(path, n_threads=1000)
    assert model._session.get_session_options().intra_op_num_threads == usable_cores()


# --------------------------------------------------------------------------- values (2)


def test_infinite_nan_and_absurd_values_become_nodata_with_a_count(tmp_path):
    data = np.random.default_rng(1).normal(-15, 1, (SIZE, SIZE)).astype(np.float32)
    bad = {(50, 50): np.inf, (51, 50): -np.inf, (52, 50): np.nan, (53, 50): 1e38}
    for (r, c), v in bad.items():
        data[r, c] = v
    path = write(tmp_path / "fill.tif", data, (1000.0, 10.0, 0, 5000.0, 0, -10.0), 32633)
    job = read_job(Model(), path, region_wkb(44, 44, 52, 52), window=32)
    assert any("3 infinite or NaN value(s) and 1 value(s) beyond +-1e+20" in w
               for w in job.warnings), job.warnings
    rows = [r - job.window.row0 for r, _ in bad]
    assert np.isnan(job.image[rows, 50 - job.window.col0, 0]).all()
    # no single pixel drives the baseline: the mean is the clean pixels' mean
    clean = data[job.window.row0:job.window.row0 + 32, job.window.col0:job.window.col0 + 32]
    clean = clean[np.isfinite(clean) & (np.abs(clean) < 1e20)]
    assert band_means(job.image)[0] == pytest.approx(clean.mean(), abs=1e-4)
    assert -16 < band_means(job.image)[0] < -14


def test_segment_counts_each_screened_pixel_once_across_overlapping_tiles(tmp_path):
    from seg_explainer.core.job import segment_to_files

    data = np.random.default_rng(2).normal(-15, 1, (SIZE, SIZE)).astype(np.float32)
    # on tile edges, where 32 px tiles overlapping by 8 px read a pixel up to four times
    bad = {(24, 24): np.inf, (25, 24): np.nan, (26, 26): -np.inf, (24, 48): 1e38,
           (90, 3): -3e38}
    for (r, c), v in bad.items():
        data[r, c] = v
    path = write(tmp_path / "fill.tif", data, (1000.0, 10.0, 0, 5000.0, 0, -10.0), 32633)
    said = []
    out = str(tmp_path / "p.tif")
    summary = segment_to_files(Model(), path, out, tile_size=32, overlap=8,
                               log=lambda level, text: said.append((level, text)))
    assert summary["screened"] == {"non_finite": 3, "absurd": 2}
    assert [level for level, text in said if "3 infinite or NaN pixel(s) and 2 pixel(s) "
            "beyond" in text] == ["warning"], said
    probs = gdal.Open(out).ReadAsArray()
    rows, cols = zip(*bad)
    assert (probs[:, rows, cols] == -1).all()              # nodata in the outputs
    clean = np.ones(probs.shape[1:], bool)
    clean[rows, cols] = False
    assert (probs[:, clean] >= 0).all()
    # a clean raster says nothing
    said.clear()
    clean_path = write(tmp_path / "clean.tif", np.where(np.isfinite(data) & (abs(data) < 1e20),
                                                         data, -15),
                       (1000.0, 10.0, 0, 5000.0, 0, -10.0), 32633)
    summary = segment_to_files(Model(), clean_path, str(tmp_path / "q.tif"), tile_size=32,
                               overlap=8, log=lambda level, text: said.append((level, text)))
    assert summary["screened"] == {"non_finite": 0, "absurd": 0} and not said


def test_a_flagged_nodata_value_is_not_counted_as_absurd(tmp_path):
    data = np.full((SIZE, SIZE), -3.4e38, np.float32)
    data[20:80, 20:80] = -15
    path = write(tmp_path / "flag.tif", data, (1000.0, 10.0, 0, 5000.0, 0, -10.0), 32633,
                 nodata=-3.4e38)
    job = read_job(Model(), path, region_wkb(44, 44, 52, 52), window=96)
    assert not any("beyond" in w for w in job.warnings) and np.isnan(job.image[0, 0, 0])


def test_the_engine_warns_about_infinite_values_in_an_array():
    x, region = image_and_region()
    x[0, 0, 0], x[1, 1, 0] = np.inf, np.nan          # NaN is nodata by convention
    with pytest.warns(InputWarning, match=r"1 infinite or NaN value\(s\)"):
        e = explain_region(Model(), x, region, 1, "shap", hex_size=8, n_samples=40)
    assert np.isfinite(e.signed).all()


# --------------------------------------------------------------------------- regions (3)


def test_points_half_outside_are_dropped_with_a_count(raster):  # noqa: F811
    inside = [(1000 + 10 * 45.5, 5000 - 10 * 46.5), (1000 + 10 * 47.5, 5000 - 10 * 46.5)]
    outside = [(-50000, 5000), (1000 + 10 * 500, 5000 - 10 * 10)]
    points = ",".join(f"({x} {y})" for x, y in inside + outside)
    job = read_job(Model(), raster, wkb(f"MULTIPOINT({points})"), window=32)
    assert "2 of the region's points lie outside the raster" in " ".join(job.warnings)
    rows, cols = np.nonzero(job.mask)
    assert sorted(zip(rows + job.window.row0, cols + job.window.col0)) == [(46, 45), (46, 47)]


def test_all_points_outside_name_the_problem(raster):  # noqa: F811
    with pytest.raises(InputError, match="ROI: every point of the region lies outside"):
        read_job(Model(), raster, wkb("MULTIPOINT((0 0),(1 1))"), window=32)


@pytest.mark.parametrize("col, row, pixel", [
    (SIZE, SIZE, (SIZE - 1, SIZE - 1)),            # the far corner: the last pixel
    (0, 0, (0, 0)), (SIZE, 10, (10, SIZE - 1)),
    (40, 40, (40, 40))])                           # an inner pixel corner: one pixel, not 4
def test_a_point_on_an_edge_is_one_pixel_of_the_raster(raster, col, row, pixel):  # noqa: F811
    x, y = 1000.0 + 10 * col, 5000.0 - 10 * row
    job = read_job(Model(), raster, wkb(f"POINT({x} {y})"), window=32)
    rows, cols = np.nonzero(job.mask)
    assert list(zip(rows + job.window.row0, cols + job.window.col0)) == [pixel]


def test_a_region_ending_on_a_geographic_raster_s_edge_takes_no_pixel_beyond_it():
    """Degrees do not divide exactly: (11.0 - 10.744) / 0.001 is 256.0000000000002, whose
    ceiling put the region's bounds, and the window, one column past a 256 px raster's east
    edge; a coordinate within 1e-6 px of a pixel edge is on it. A region that really reaches
    into a pixel (a tenth of one) still takes it."""
    from seg_explainer.core.region import pixel_bounds
    from seg_explainer.core.shapely_geos import import_shapely

    shapely = import_shapely()
    gt = (10.744, 0.001, 0.0, 10.0, 0.0, -0.001)
    assert pixel_bounds(shapely.box(10.9, 9.9, 11.0, 9.95), gt) == (50, 100, 156, 256)
    assert pixel_bounds(shapely.box(10.9, 9.9, 10.9501, 9.95), gt) == (50, 100, 156, 207)


def _geographic_raster(tmp_path, x0, width=200, dx=0.01):
    data = np.random.default_rng(2).normal(0, 0.3, (100, width)).astype(np.float32)
    data[40:60, 100:130] -= 3     # a slick east of x0 + 1 degree
    return write(tmp_path / "geo.tif", data, (x0, dx, 0, 10.0, 0, -dx), 4326)


def test_a_region_across_the_antimeridian_is_explained_where_drawn(tmp_path):
    path = _geographic_raster(tmp_path, 179.0)   # longitudes 179 to 181
    # drawn as 180.05 .. 180.15 written in -180..180 longitudes
    job = read_job(Model(), path, box(-179.95, 9.55, -179.85, 9.45), window=64)
    rows, cols = np.nonzero(job.mask)
    assert (cols + job.window.col0).min() == 105 and (cols + job.window.col0).max() == 114
    assert (rows + job.window.row0).min() == 45
    assert any("antimeridian" in w for w in job.warnings)
    # a polygon whose vertices straddle +-180 (179.95 and -179.95): 10 columns, not 360 degrees
    job = read_job(Model(), path, box(179.95, 9.55, -179.95, 9.45), window=64)
    cols = np.nonzero(job.mask)[1] + job.window.col0
    assert cols.min() == 95 and cols.max() == 104


def test_a_region_across_the_edge_of_a_global_raster_is_refused(tmp_path):
    path = _geographic_raster(tmp_path, -180.0, width=360, dx=1.0)
    with pytest.raises(InputError, match="crosses the antimeridian, which is this global "
                                         "raster's edge"):
        read_job(Model(), path, box(179.5, 5, -179.5, 4), window=16)


def test_a_region_that_cannot_be_transformed_is_refused():
    local = ('LOCAL_CS["Site grid",LOCAL_DATUM["Site",0],UNIT["metre",1],'
             'AXIS["Easting",EAST],AXIS["Northing",NORTH]]')
    with pytest.raises(InputError, match=r"ROI: the region's CRS \(Site grid\) cannot be "
                                         r"transformed to the raster's"):
        transform_region(box(10, 10, 20, 20), local, srs_wkt(32631))
    with pytest.raises(InputError, match="vertices cannot be placed in the raster's CRS"):
        transform_region(box(95, 10, 95.1, 10.1), srs_wkt(4326), srs_wkt(32631))
    out = ogr.CreateGeometryFromWkb(transform_region(box(3, 50, 3.1, 50.1), srs_wkt(4326),
                                                     srs_wkt(32631)))
    assert out.GetEnvelope()[0] == pytest.approx(500000, abs=1)


# --------------------------------------------------------------------------- SAR products (1)


def gcp_raster(tmp_path, data, gdal_type=gdal.GDT_Float32, projection=True, lon0=3.0,
               lat0=51.0, step=0.001):
    """A raster georeferenced by GCPs only (as a GRD product): pixel (r, c) at
    (lon0 + c * step, lat0 - r * step), in WGS 84 (longitudes beyond 180 written as
    lon - 360, as a product across the antimeridian has them)."""
    path = write(tmp_path / "grd.tif", data, gdal_type=gdal_type)
    ds = gdal.Open(path, gdal.GA_Update)
    h, w = np.asarray(data).shape

    def lon(c):
        value = lon0 + c * step
        return value - 360.0 if value > 180.0 else value

    gcps = [gdal.GCP(lon(c), lat0 - r * step, 0, c, r)
            for r in np.linspace(0, h, 5) for c in np.linspace(0, w, 5)]
    ds.SetGCPs(gcps, srs_wkt(4326) if projection else "")
    ds = None
    return path


def rpc_raster(tmp_path, data, lon0=3.0, lat0=51.0, step=0.001):
    """A raster georeferenced by RPCs only (no geotransform, no GCPs, no CRS): the rational
    functions of :func:`gcp_raster`'s mapping, pixel (r, c) at (lon0 + c * step,
    lat0 - r * step)."""
    path = write(tmp_path / "rpc.tif", data)
    h, w = np.asarray(data).shape
    ds = gdal.Open(path, gdal.GA_Update)
    unit = " ".join(["1"] + ["0"] * 19)

    def poly(**terms):       # RPC00B order: 1, lon, lat, height, ...
        coeffs = ["0"] * 20
        for index, value in terms.items():
            coeffs[int(index[1:])] = str(value)
        return " ".join(coeffs)

    ds.SetMetadata({"LINE_OFF": str(h / 2), "SAMP_OFF": str(w / 2),
                    "LINE_SCALE": str(h / 2), "SAMP_SCALE": str(w / 2),
                    "LONG_OFF": str(lon0 + step * w / 2), "LAT_OFF": str(lat0 - step * h / 2),
                    "LONG_SCALE": str(step * w / 2), "LAT_SCALE": str(step * h / 2),
                    "HEIGHT_OFF": "0", "HEIGHT_SCALE": "1",
                    "LINE_NUM_COEFF": poly(c2=-1), "LINE_DEN_COEFF": unit,
                    "SAMP_NUM_COEFF": poly(c1=1), "SAMP_DEN_COEFF": unit}, "RPC")
    ds = None
    return path


@pytest.mark.parametrize("build, how", [(gcp_raster, "25 ground control points"),
                                        (rpc_raster, "RPCs")])
def test_a_gcp_or_rpc_raster_is_explained_on_a_warped_utm_grid(tmp_path, build, how):
    data = np.random.default_rng(3).normal(-15, 0.5, (100, 100)).astype(np.float32)
    data[40:60, 60:80] = -25                        # a dark slick, by pixel
    path = build(tmp_path, data)
    ds = gdal.Open(path)
    assert ds.GetGeoTransform(can_return_null=True) is None
    rpc = how == "RPCs"
    assert bool(ds.GetGCPs()) != rpc and bool(ds.GetMetadata("RPC")) == rpc
    ds = None
    # the slick's centre: pixel (50, 70) -> lon 3.070, lat 50.950
    region = box(3.067, 50.953, 3.073, 50.947)
    job = read_job(Model(), path, region, window=64)
    assert "UTM zone 31N" in osr.SpatialReference(job.info.crs_wkt).GetName()
    assert any("warped on the fly" in w for w in job.warnings)
    assert json.loads(job.recorded["warp"])["from"] == how
    inside = job.image[job.mask, 0]
    assert inside.size > 0 and np.nanmean(inside) < -24       # the slick, not the sea
    outputs = {"excitation": str(tmp_path / "exc.tif")}
    run = explain_to_files(Model(), path, region, "oil", "shap", window=64, hex_size=12,
                           n_samples=64, outputs=outputs)
    ds = gdal.Open(run.outputs["excitation"])
    assert "UTM zone 31N" in osr.SpatialReference(ds.GetProjection()).GetName()
    assert json.loads(ds.GetMetadataItem("warp"))["to_crs"].endswith("UTM zone 31N")
    assert not gdal.ReadDir("/vsimem/") or not any("segx-warp" in n
                                                   for n in gdal.ReadDir("/vsimem/"))


def test_a_gcp_raster_across_the_antimeridian_is_warped_to_its_own_utm_zone(tmp_path):
    """GCPs from 179.95 to -179.95 (180.05): the warp is in the scene's UTM zone (1 or 60
    south, not the zone of their naive mean, 0 degrees), with ~100 m pixels, and a region
    drawn on either side of the antimeridian is read where it lies."""
    data = np.random.default_rng(3).normal(-15, 0.5, (100, 100)).astype(np.float32)
    data[40:60, 60:80] = -25                     # east of 180: lon 180.01 to 180.03
    data[40:60, 20:40] = -35                     # west of 180: lon 179.97 to 179.99
    path = gcp_raster(tmp_path, data, lon0=179.95, lat0=-17.0)
    grid = gridded_source(path)
    try:
        name = osr.SpatialReference(grid.grid_crs_wkt).GetName()
        warped = gdal.Open(grid.path)
        gt, size = warped.GetGeoTransform(), (warped.RasterYSize, warped.RasterXSize)
        got = warped.ReadAsArray()
    finally:
        grid.close()
    assert name.endswith(("UTM zone 1S", "UTM zone 60S")), name
    assert 95 < gt[1] < 115 and 90 < size[0] < 115 and 90 < size[1] < 115, (gt, size)
    assert np.isfinite(got).mean() > 0.9           # the whole scene, not the half below 180
    for drawn, level in ((box(-179.983, -17.047, -179.977, -17.053), -25),
                         (box(179.977, -17.047, 179.983, -17.053), -35)):
        job = read_job(Model(), path, drawn, window=32)
        inside = job.image[job.mask, 0]
        assert inside.size > 0 and abs(np.nanmean(inside) - level) < 1, (level, inside)
    assert not any("segx-" in n for n in (gdal.ReadDir("/vsimem/") or []))


def test_a_turned_gcp_raster_is_warped_by_plain_bilinear_interpolation(tmp_path):
    """A GRD's grid is turned against UTM north: each grid pixel must be the bilinear
    interpolation of the raster's own pixels at the point it maps to (not a kernel widened
    by the turn, which blurs the speckle the model reads)."""
    import math

    rng = np.random.default_rng(5)
    h = w = 200
    data = rng.normal(0, 1, (h, w)).astype(np.float32)
    path = write(tmp_path / "turned.tif", data)
    turn, size, x0, y0 = math.radians(15), 10.0, 500000.0, 5600000.0

    def to_map(col, row):
        return (x0 + size * (col * math.cos(turn) - row * math.sin(turn)),
                y0 - size * (col * math.sin(turn) + row * math.cos(turn)))

    ds = gdal.Open(path, gdal.GA_Update)
    ds.SetGCPs([gdal.GCP(*to_map(c, r), 0, c, r)
                for r in np.linspace(0, h, 5) for c in np.linspace(0, w, 5)], srs_wkt(32631))
    ds = None
    grid = gridded_source(path)
    try:
        warped = gdal.Open(grid.path)
        gt, got = warped.GetGeoTransform(), warped.ReadAsArray()
    finally:
        grid.close()
    assert gt[1] == pytest.approx(size, rel=1e-6)
    rows, cols = np.mgrid[0:got.shape[0], 0:got.shape[1]]
    dx = (gt[0] + (cols + 0.5) * gt[1] - x0) / size
    dy = (y0 - gt[3] - (rows + 0.5) * gt[5]) / size
    col = dx * math.cos(turn) + dy * math.sin(turn) - 0.5      # pixel-centre coordinates
    row = -dx * math.sin(turn) + dy * math.cos(turn) - 0.5
    r0, c0 = np.floor(row).astype(int), np.floor(col).astype(int)
    inside = (r0 >= 1) & (c0 >= 1) & (r0 < h - 2) & (c0 < w - 2)
    r0, c0, tr, tc = r0[inside], c0[inside], (row - r0)[inside], (col - c0)[inside]
    expected = (data[r0, c0] * (1 - tr) * (1 - tc) + data[r0 + 1, c0] * tr * (1 - tc)
                + data[r0, c0 + 1] * (1 - tr) * tc + data[r0 + 1, c0 + 1] * tr * tc)
    assert inside.sum() > 20000
    assert np.abs(got[inside] - expected).max() < 1e-4
    assert got[inside].std() == pytest.approx(expected.std(), rel=1e-4)    # not smoothed


def test_a_gcp_raster_without_a_crs_says_how_to_prepare_it(tmp_path):
    path = gcp_raster(tmp_path, np.zeros((20, 20), np.float32), projection=False)
    with pytest.raises(InputError, match=r"INPUT: the raster is georeferenced by 25 ground "
                                         r"control points without a CRS.*gdalwarp -t_srs"):
        gridded_source(path)


def test_gcps_in_a_line_say_the_warp_is_impossible(tmp_path):
    """Three GCPs on a diagonal (no plane through them): GDAL cannot solve the warp; the message
    says so with the fix (it was a raw 'unknown error': cleaning up a VRT never written)."""
    path = write(tmp_path / "line.tif", np.zeros((20, 20), np.float32))
    ds = gdal.Open(path, gdal.GA_Update)
    ds.SetGCPs([gdal.GCP(500000.0 + 10 * k, 5700000.0 - 10 * k, 0, k, k) for k in (0, 10, 20)],
               srs_wkt(32631))
    ds = None
    with pytest.raises(InputError, match=r"INPUT: the raster is georeferenced by 3 ground "
                                         r"control points only and GDAL cannot warp it"):
        gridded_source(path)


class _Scaling:
    """Model metadata with a min-max input scaling (min < 0: the model takes dB)."""

    def __init__(self, minimum):
        self.type, self.min, self.max = "minmax", minimum, minimum + 30.0


@pytest.mark.parametrize("metadata, scaling, expected", [
    ({}, None, "intensity"),
    ({"seg_explainer_complex": "amplitude"}, None, "amplitude"),
    ({}, _Scaling(-30.0), "dB"),                                   # the model takes dB
    ({"seg_explainer_input_unit": "dB"}, None, "dB"),
    ({"seg_explainer_complex": "intensity"}, _Scaling(-30.0), "intensity"),  # said explicitly
    ({"seg_explainer_complex": "DB"}, None, "dB")])
def test_complex_bands_are_given_as_the_model_takes_them(tmp_path, metadata, scaling,
                                                         expected):
    rng = np.random.default_rng(4)
    z = (rng.normal(0, 30, (SIZE, SIZE)) + 1j * rng.normal(0, 30, (SIZE, SIZE)))
    z = np.round(z).astype(np.complex64)
    path = write(tmp_path / "slc.tif", z, (1000.0, 10.0, 0, 5000.0, 0, -10.0), 32633,
                 gdal_type=gdal.GDT_CInt16)

    class ComplexModel(Model):
        pass

    ComplexModel.metadata = type("M", (), {"raw": metadata, "input_scaling": scaling})()
    job = read_job(ComplexModel(), path, region_wkb(44, 44, 52, 52), window=32)
    win = z[job.window.row0:job.window.row0 + 32, job.window.col0:job.window.col0 + 32]
    intensity = np.abs(win.astype(np.complex128)) ** 2
    want = {"intensity": intensity, "amplitude": np.sqrt(intensity),
            "dB": 10 * np.log10(np.where(intensity > 0, intensity, np.nan))}[expected]
    np.testing.assert_allclose(job.image[..., 0], want, rtol=1e-5)
    assert json.loads(job.recorded["complex_bands"]) == {"bands": [1], "as": expected}
    assert any(f"given their {expected}" in w for w in job.warnings)


def test_a_complex_zero_in_db_is_nodata_not_minus_infinity(tmp_path):
    z = np.full((SIZE, SIZE), 3 + 4j, np.complex64)
    z[40:43, 40:42] = 0                                  # 6 zero pixels in the window
    path = write(tmp_path / "slc.tif", z, (1000.0, 10.0, 0, 5000.0, 0, -10.0), 32633,
                 gdal_type=gdal.GDT_CFloat32)

    class DbModel(Model):
        metadata = type("M", (), {"raw": {"seg_explainer_complex": "dB"}})()

    job = read_job(DbModel(), path, region_wkb(44, 44, 52, 52), window=32)
    valid = job.image[~job.nodata, 0]
    assert int(job.nodata.sum()) == 6 and np.allclose(valid, 10 * np.log10(25.0))
    assert any("6 infinite or NaN value(s)" in w for w in job.warnings), job.warnings


@pytest.mark.parametrize("gdal_type, raw, scale, offset", [
    (gdal.GDT_Int16, -1500, 0.01, 0.0),        # dB stored as hundredths
    (gdal.GDT_UInt16, 40000, 1e-5, -0.1)])     # linear with an offset
def test_a_band_s_scale_and_offset_give_the_model_the_values_qgis_shows(tmp_path, gdal_type,
                                                                         raw, scale, offset):
    rng = np.random.default_rng(1)
    data = (raw + rng.integers(-50, 50, (SIZE, SIZE))).astype(np.int64)
    path = write(tmp_path / "scaled.tif", data, (1000.0, 10.0, 0, 5000.0, 0, -10.0), 32633,
                 gdal_type=gdal_type)
    ds = gdal.Open(path, gdal.GA_Update)
    ds.GetRasterBand(1).SetScale(scale)
    ds.GetRasterBand(1).SetOffset(offset)
    ds = None
    job = read_job(Model(), path, region_wkb(44, 44, 52, 52), window=32)
    win = data[job.window.row0:job.window.row0 + 32, job.window.col0:job.window.col0 + 32]
    np.testing.assert_allclose(job.image[..., 0], win * scale + offset, rtol=1e-6, atol=1e-7)
    assert json.loads(job.recorded["band_scaling"]) == {"1": {"scale": scale,
                                                              "offset": offset}}
    assert any(f"band 1: raw x {scale:g} + {offset:g}" in w for w in job.warnings)


def test_an_unscaled_band_is_read_raw_and_nothing_is_recorded(tmp_path):
    data = np.arange(SIZE * SIZE, dtype=np.float32).reshape(SIZE, SIZE)
    path = write(tmp_path / "plain.tif", data, (1000.0, 10.0, 0, 5000.0, 0, -10.0), 32633)
    job = read_job(Model(), path, region_wkb(44, 44, 52, 52), window=32)
    win = data[job.window.row0:job.window.row0 + 32, job.window.col0:job.window.col0 + 32]
    np.testing.assert_array_equal(job.image[..., 0], win)
    assert "band_scaling" not in job.recorded
    assert not any("scaled values" in w for w in job.warnings)


def two_band_raster(path, band2):
    ds = gdal.GetDriverByName("GTiff").Create(str(path), SIZE, SIZE, 2, gdal.GDT_Float32)
    ds.SetGeoTransform((1000.0, 10.0, 0, 5000.0, 0, -10.0))
    ds.SetProjection(srs_wkt(32633))
    ds.GetRasterBand(1).WriteArray(np.random.default_rng(0).normal(0, 0.3, (SIZE, SIZE)))
    for b in (1, 2):
        ds.GetRasterBand(b).SetNoDataValue(-9999.0)
    ds.GetRasterBand(2).WriteArray(band2)
    ds = None
    return str(path)


class TwoBands(Model):
    n_channels = 2


def test_a_band_with_only_nodata_in_the_window_is_refused(tmp_path):
    """Band 2 nodata over the whole window: every pixel counted as nodata and the image
    replaced by zeros in both bands, explained without a word; now refused naming it."""
    band2 = np.ones((SIZE, SIZE))
    band2[:60, :60] = -9999.0
    path = two_band_raster(tmp_path / "two.tif", band2)
    with pytest.raises(InputError, match=r"INPUT: band\(s\) \[2\] hold only nodata in the "
                                         r"explanation window"):
        read_job(TwoBands(), path, region_wkb(20, 20, 28, 28), window=32)
    job = read_job(TwoBands(), path, region_wkb(70, 70, 78, 78), window=24)   # data there
    assert not job.nodata.any()
    x = np.zeros((16, 16, 2), np.float32)
    x[..., 1] = np.nan
    region = np.zeros((16, 16), bool)
    region[6:10, 6:10] = True
    with pytest.raises(InputError, match=r"channel\(s\) \[1\] \(0-based\) hold only nodata"):
        explain_region(TwoBands(), x, region, 1, "rise", n_masks=4)


def test_pixels_nodata_in_some_bands_only_are_counted_and_left_out(tmp_path):
    band2 = np.ones((SIZE, SIZE))
    band2[44:46, 44:52] = -9999.0                      # 16 pixels of the region
    path = two_band_raster(tmp_path / "two.tif", band2)
    job = read_job(TwoBands(), path, region_wkb(44, 44, 52, 52), window=32)
    assert int(job.mask.sum()) == 64 - 16
    assert any("16 region pixel(s) are nodata in some bands only" in w for w in job.warnings)


@pytest.mark.parametrize("how", ["mask band", "alpha band"])
def test_pixels_a_mask_or_alpha_band_hides_are_nodata(tmp_path, how):
    """A raster without a nodata value whose invalid pixels (0) are hidden by a GDAL mask band
    or an alpha band: they were fed to the model as data."""
    data = np.random.default_rng(2).normal(-15, 0.5, (SIZE, SIZE)).astype(np.float32)
    data[40:50, 40:50] = 0.0
    valid = np.full((SIZE, SIZE), 255, np.uint8)
    valid[40:50, 40:50] = 0
    path = str(tmp_path / "masked.tif")
    n = 2 if how == "alpha band" else 1       # GDAL reads an alpha band as a mask for
    kind = gdal.GDT_UInt16 if n == 2 else gdal.GDT_Float32      # 8 and 16 bit data only
    if n == 2:
        data = np.round(data + 1600.0)
        data[40:50, 40:50] = 0.0
        valid = valid.astype(np.uint16) * 257
    ds = gdal.GetDriverByName("GTiff").Create(path, SIZE, SIZE, n, kind,
                                              ["ALPHA=YES"] if n == 2 else [])
    ds.SetGeoTransform((1000.0, 10.0, 0, 5000.0, 0, -10.0))
    ds.SetProjection(srs_wkt(32633))
    ds.GetRasterBand(1).WriteArray(data)
    if n == 2:
        ds.GetRasterBand(2).SetColorInterpretation(gdal.GCI_AlphaBand)
        ds.GetRasterBand(2).WriteArray(valid)
    else:
        ds.CreateMaskBand(gdal.GMF_PER_DATASET)
        ds.GetRasterBand(1).GetMaskBand().WriteArray(valid)
    ds = None
    job = read_job(Model(), path, region_wkb(36, 36, 54, 54), bands=[1], window=32)
    rows = slice(40 - job.window.row0, 50 - job.window.row0)
    cols = slice(40 - job.window.col0, 50 - job.window.col0)
    assert job.nodata[rows, cols].all() and job.nodata.sum() == 100
    assert any("100 region pixel(s) are nodata" in w for w in job.warnings)


@pytest.mark.parametrize("roi, message", [
    (b"garbage", r"ROI: the region's geometry cannot be read"),
    ("POLYGON((0 0, 1 0, 1 1, 0 0))", r"ROI: the region's geometry cannot be read"),  # WKT
    (wkb("POLYGON EMPTY"), r"ROI: the region's geometry is empty"),
    ("nan", r"ROI: the region has vertices that are not numbers")])
def test_a_region_that_is_no_geometry_is_named_as_such(raster, roi, message):  # noqa: F811
    """Garbage bytes, WKT text, an empty polygon (it was "outside the raster"), a NaN vertex:
    each an InputError naming it (raw GEOSException before)."""
    import shapely

    if roi == "nan":
        roi = shapely.Polygon([(1440, 4560), (float("nan"), 4560), (1520, 4480)]).wkb
    with pytest.raises(InputError, match=message):
        read_job(Model(), raster, roi, window=32)


def test_a_vrt_whose_source_is_missing_names_it(raster, tmp_path):  # noqa: F811
    vrt = str(tmp_path / "scene.vrt")
    gdal.Translate(vrt, gdal.Open(raster), format="VRT")
    moved = str(tmp_path / "moved.tif")
    import os

    os.rename(raster, moved)
    with pytest.raises(InputError, match=r"INPUT: GDAL cannot read band 1 of the raster "
                                         r".*scene\.vrt .*a VRT's sources"):
        read_job(Model(), vrt, region_wkb(44, 44, 52, 52), window=32)


class _Meta:
    def __init__(self, raw=None, scaling=None):
        self.raw, self.input_scaling = raw or {}, scaling


@pytest.mark.parametrize("values, meta, said", [
    (-1500.0, _Meta(scaling=_Scaling(-35.0)), "lie outside the model's input range, -35 to -5"),
    (0.05, _Meta(scaling=_Scaling(-35.0)), "like linear backscatter, but the model takes dB"),
    (-15.0, _Meta({"seg_explainer_input_unit": "linear"}), "like backscatter in dB, but the "
                                                          "model takes linear values"),
    (-15.0, _Meta(scaling=_Scaling(-35.0)), None),            # dB for a dB model: nothing
    (0.05, _Meta({"seg_explainer_input_unit": "linear"}), None)])
def test_values_in_another_unit_than_the_model_s_are_warned_of(tmp_path, values, meta, said):
    """Hundredths of a dB (all clipped by the model's scaling) and linear values for a dB
    model ran with only a "contributions negligible" warning."""
    data = values + np.random.default_rng(6).normal(0, abs(values) * 0.05, (SIZE, SIZE))
    path = write(tmp_path / "r.tif", data, (1000.0, 10.0, 0, 5000.0, 0, -10.0), 32633)

    class Unit(Model):
        metadata = meta

    job = read_job(Unit(), path, region_wkb(44, 44, 52, 52), window=32)
    notes = [w for w in job.warnings if "unit" in w or "backscatter" in w]
    if said is None:
        assert notes == [], notes
    else:
        assert any(said in w for w in notes), job.warnings


@pytest.mark.parametrize("pixel, said", [(40.0, "pixels are 40 m wide, but the model's "
                                                 "metadata says it was trained at 10 m"),
                                         (10.0, None), (15.0, None),
                                         (1000.0, "pixels are 1e+03 m wide")])
def test_pixels_far_from_the_model_s_resolution_are_warned_of(tmp_path, pixel, said):
    data = np.random.default_rng(7).normal(-15, 0.5, (SIZE, SIZE))
    path = write(tmp_path / "r.tif", data, (1000.0, pixel, 0, 5000.0, 0, -pixel), 32633)
    meta = _Meta()
    meta.resolution_cm = 1000.0

    class Trained(Model):
        metadata = meta

    x, y = 1000.0 + 48 * pixel, 5000.0 - 48 * pixel
    roi = box(x - 4 * pixel, y + 4 * pixel, x + 4 * pixel, y - 4 * pixel)
    job = read_job(Trained(), path, roi, window=32)
    notes = [w for w in job.warnings if "trained at" in w]
    assert (notes == []) if said is None else any(said in w for w in notes), job.warnings


@pytest.mark.parametrize("values, pixel, said", [
    (0.05, 10.0, ["values of the raster (a sample of the part segmented) all lie in [0, 2), "
                  "like linear backscatter, but the model takes dB", "outside the model's "
                  "input range, -35 to -5"]),
    (-1500.0, 10.0, ["of the values of the raster (a sample of the part segmented) lie "
                     "outside the model's input range, -35 to -5"]),
    (-15.0, 40.0, ["pixels are 40 m wide, but the model's metadata says it was trained at "
                   "10 m"]),
    (-15.0, 10.0, [])])
def test_segment_warns_of_values_in_another_unit_and_pixels_of_another_size(
        tmp_path, values, pixel, said):
    """The unit and resolution checks of the explain path, in segment too (a linear raster
    was segmented by a dB model without a word)."""
    from seg_explainer.core.job import segment_to_files

    data = values + np.random.default_rng(8).normal(0, abs(values) * 0.05, (SIZE, SIZE))
    path = write(tmp_path / "r.tif", data, (1000.0, pixel, 0, 5000.0, 0, -pixel), 32633)
    meta = _Meta(scaling=_Scaling(-35.0))
    meta.resolution_cm = 1000.0

    class Unit(Model):
        metadata = meta

    told = []
    segment_to_files(Unit(), path, str(tmp_path / "p.tif"), tile_size=32,
                     log=lambda level, text: told.append(text))
    notes = [t for t in told if "unit" in t or "backscatter" in t or "trained at" in t]
    assert len(notes) == len(said), told
    for text in said:
        assert any(text in t for t in notes), told


def test_a_collection_of_a_polygon_and_a_point_scores_both(raster):  # noqa: F811
    """The point moved the window but was left out of the region: now its pixel is in."""
    x, y = 1000.0 + 10 * 60.5, 5000.0 - 10 * 60.5        # the centre of pixel (60, 60)
    roi = wkb("GEOMETRYCOLLECTION(POLYGON((1440 4560,1520 4560,1520 4480,1440 4480,"
              f"1440 4560)),POINT({x} {y}))")
    job = read_job(Model(), raster, roi, window=32)
    assert int(job.mask.sum()) == 64 + 1
    assert job.mask[60 - job.window.row0, 60 - job.window.col0]


def test_a_window_far_larger_than_the_raster_is_refused(raster):  # noqa: F811
    """WINDOW 8192 on a 96 px raster: each model call took ~50 s and ~18 GB, for a window
    that is nodata almost everywhere."""
    with pytest.raises(InputError, match=r"WINDOW: 8192 px is more than twice the raster's "
                                         r"larger side \(96 px\) .*Use at most \d+ px"):
        read_job(Model(), raster, region_wkb(44, 44, 52, 52), window=8192)
    job = read_job(Model(), raster, region_wkb(44, 44, 52, 52), window=192)   # twice: kept
    assert job.window.height == 192
