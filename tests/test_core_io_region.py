"""Raster/vector I/O, atomic writes, region rasterisation and window placement."""


import numpy as np
import pytest
import shapely
from osgeo import gdal, ogr

from seg_explainer.core.geoio import (atomic_path, raster_info, read_window, write_geotiff,
                                      write_polygons)
from seg_explainer.core.region import Window, place_window, region_mask

GT = (500000.0, 10.0, 0.0, 4000000.0, 0.0, -10.0)


def _utm_wkt():
    from osgeo import osr
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(32631)
    return srs.ExportToWkt()


def test_write_then_read_window_round_trips_with_nodata(tmp_path):
    data = np.arange(30 * 40, dtype=np.float32).reshape(30, 40)
    data[3, 4] = -9999
    path = write_geotiff(tmp_path / "a.tif", data, GT, _utm_wkt(), nodata=-9999,
                         metadata={"method": "shap"})
    info = raster_info(path)
    assert (info.width, info.height, info.n_bands, info.nodata) == (40, 30, 1, (-9999.0,))
    win = read_window(path, -2, 35, 6, 8)
    assert win.shape == (6, 8, 1)
    assert np.isnan(win[:2]).all() and np.isnan(win[:, 5:]).all()
    np.testing.assert_array_equal(win[2:, :5, 0], data[0:4, 35:40])
    assert np.isnan(read_window(path, 3, 4, 1, 1)[0, 0, 0])
    assert gdal.Open(path).GetMetadata()["method"] == "shap"
    assert [p.name for p in tmp_path.iterdir()] == ["a.tif"]


def test_atomic_path_leaves_nothing_when_the_block_fails(tmp_path):
    target = tmp_path / "out.tif"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            open(tmp, "w").write("half")
            raise RuntimeError("disk full")
    assert list(tmp_path.iterdir()) == []


def test_write_polygons_writes_fields_crs_and_metadata(tmp_path):
    polys = [shapely.box(0, 0, 10, 10), shapely.box(10, 0, 20, 10)]
    path = write_polygons(tmp_path / "cells.gpkg", "cells", polys,
                          {"cell_id": [0, 1], "value": [0.5, None], "label": ["a", "b"]},
                          _utm_wkt(), metadata={"seed": 3})
    ds = ogr.Open(path)
    layer = ds.GetLayer("cells")
    feats = list(layer)
    assert [f["cell_id"] for f in feats] == [0, 1]
    assert feats[0]["value"] == 0.5 and feats[1].IsFieldNull("value")
    assert layer.GetSpatialRef().GetAuthorityCode(None) == "32631"
    assert layer.GetMetadata()["seed"] == "3"
    with pytest.raises(ValueError, match="gpkg"):
        write_polygons(tmp_path / "cells.xyz", "cells", polys, {}, "")


@pytest.mark.parametrize("bounds,size,shape,expected", [
    ((100, 110, 200, 210), 64, (1000, 1000), (73, 173)),   # centred
    ((0, 5, 0, 5), 64, (1000, 1000), (0, 0)),              # pushed inside at the top-left
    ((990, 1000, 995, 1000), 64, (1000, 1000), (936, 936)),  # and at the bottom-right
    ((10, 20, 10, 20), 64, (30, 30), (-17, -17)),          # raster smaller than the window
])
def test_place_window(bounds, size, shape, expected):
    win = place_window(bounds, size, *shape)
    assert (win.row0, win.col0) == expected
    r0, r1, c0, c1 = bounds
    assert win.row0 <= r0 and r1 <= win.row0 + size and win.col0 <= c0 and c1 <= win.col0 + size


def test_place_window_refuses_a_region_larger_than_the_window():
    with pytest.raises(ValueError, match="WINDOW"):
        place_window((0, 100, 0, 10), 64, 1000, 1000)


def test_region_mask_polygon_point_and_sliver():
    win = Window(10, 20, 16, 16)
    x0, y0 = GT[0] + 20 * 10, GT[3] - 10 * 10  # window's top-left corner in map units
    square = shapely.box(x0 + 20, y0 - 50, x0 + 60, y0 - 20)  # cols 2..5, rows 2..4
    mask = region_mask(square, GT, win)
    expected = np.zeros((16, 16), bool)
    expected[2:5, 2:6] = True
    np.testing.assert_array_equal(mask, expected)
    point = shapely.Point(x0 + 73, y0 - 41)  # col 7, row 4
    mask = region_mask(point, GT, win)
    assert mask.sum() == 1 and mask[4, 7]
    sliver = shapely.box(x0 + 31, y0 - 39, x0 + 33, y0 - 38)  # inside pixel (3, 3), no centre
    mask = region_mask(sliver, GT, win)
    assert mask.sum() == 1 and mask[3, 3]
