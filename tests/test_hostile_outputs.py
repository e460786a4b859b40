"""Hostile and careless output paths (issue 15, point 5), in the engine without QGIS: refused
before any work, stale side files replaced with the file, a failed replace leaves the old
outputs whole. Processing, the dock and plain Python all go through these checks."""

import errno
import os

import numpy as np
import pytest
from osgeo import gdal

from seg_explainer.core import outputs as outputs_module
from seg_explainer.core.errors import OutputError
from seg_explainer.core.geoio import write_geotiff
from seg_explainer.core.job import explain_to_files, segment_to_files
from seg_explainer.core.outputs import (OutputSet, check_destinations, replace_families,
                                        stale_side_files)

from test_core_job import Model, raster, region_wkb  # noqa: F401 (fixture)

SHAP = dict(hex_size=8, n_samples=64, window=32, seed=1)


class CountingModel(Model):
    """Counts predictions, so a test can show that nothing ran before a refusal."""

    def __init__(self, path="fake.onnx"):
        super().__init__()
        self.calls = 0
        self.path = path

    def predict(self, images, batch_size=None):
        self.calls += 1
        return super().predict(images, batch_size)


def names(folder):
    return sorted(os.listdir(folder))


def test_two_outputs_on_one_path_are_refused_before_any_work(raster, tmp_path):  # noqa: F811
    model = CountingModel()
    out = str(tmp_path / "out" / "same.tif")
    with pytest.raises(OutputError, match=r"INHIBITION and EXCITATION are the same file"):
        explain_to_files(model, raster, region_wkb(44, 44, 52, 52), "oil", "shap",
                         outputs={"excitation": out, "inhibition": out}, **SHAP)
    assert model.calls == 0 and not (tmp_path / "out").exists()
    # the same file by another spelling (a symbolic link to its folder) is the same file
    (tmp_path / "real").mkdir()
    os.symlink(tmp_path / "real", tmp_path / "link")
    with pytest.raises(OutputError, match="are the same file"):
        check_destinations({"EXCITATION": str(tmp_path / "real" / "a.tif"),
                            "SIGNED": str(tmp_path / "link" / "a.tif")})


def test_an_output_on_an_input_is_refused_and_the_input_kept(raster, tmp_path):  # noqa: F811
    before = open(raster, "rb").read()
    model = CountingModel(path=str(tmp_path / "model.onnx"))
    (tmp_path / "model.onnx").write_bytes(b"model bytes")
    roi = tmp_path / "roi.gpkg"
    roi.write_bytes(b"region")
    with pytest.raises(OutputError, match=r"EXCITATION: '.*scene.tif' is a file of the input "
                                          r"INPUT; writing it would destroy the input"):
        explain_to_files(model, raster, region_wkb(44, 44, 52, 52), "oil", "shap",
                         outputs={"excitation": raster}, **SHAP)
    with pytest.raises(OutputError, match="a file of the input MODEL"):
        explain_to_files(model, raster, region_wkb(44, 44, 52, 52), "oil", "shap",
                         outputs={"excitation": str(tmp_path / "x.tif"),
                                  "report": str(tmp_path / "model.onnx")}, **SHAP)
    with pytest.raises(OutputError, match="CELLS: .* a file of the input ROI"):
        check_destinations({"CELLS": str(roi)}, {"ROI": str(roi)})
    with pytest.raises(OutputError, match="PROBABILITIES: .* a file of the input INPUT"):
        segment_to_files(model, raster, raster)
    # a hard link is the same file under another name
    os.link(raster, tmp_path / "hardlink.tif")
    with pytest.raises(OutputError, match="a file of the input INPUT"):
        check_destinations({"SIGNED": str(tmp_path / "hardlink.tif")}, {"INPUT": raster})
    assert model.calls == 0 and open(raster, "rb").read() == before


def test_a_file_of_a_multi_file_input_is_refused(tmp_path):
    """A VRT input: its source file is an input file too (GDAL lists it)."""
    src = str(tmp_path / "band.tif")
    write_geotiff(src, np.zeros((8, 8), np.float32), (0, 1, 0, 8, 0, -1), "")
    vrt = str(tmp_path / "scene.vrt")
    gdal.BuildVRT(vrt, [src]).FlushCache()
    with pytest.raises(OutputError, match="a file of the input INPUT"):
        check_destinations({"EXCITATION": src}, {"INPUT": vrt})


def test_an_output_that_is_a_folder_is_refused(tmp_path):
    with pytest.raises(OutputError, match=r"EXCITATION: '.*' is a folder, not a file name. "
                                          r"Give a file name inside it"):
        check_destinations({"EXCITATION": str(tmp_path)})
    assert names(tmp_path) == []


@pytest.mark.parametrize("key, name, kind", [
    ("EXCITATION", "x.img", "a GeoTIFF"), ("INHIBITION", "x.vrt", "a GeoTIFF"),
    ("PROBABILITIES", "p", "a GeoTIFF"), ("REPORT", "r.pdf", "a PNG image"),
    ("CELLS", "c.kml", "a vector file"), ("CELLS", "c.tif", "a vector file"),
    ("REGION", "r.shp", "a GeoPackage"), ("REGION", "r.tif", "a GeoPackage")])
def test_an_extension_that_is_not_the_format_written_is_refused(tmp_path, key, name, kind):
    with pytest.raises(OutputError, match=rf"{key}: '{name}' would receive {kind}, which its "
                                          r"extension '.*' does not say. Name it with"):
        check_destinations({key: str(tmp_path / name)})


@pytest.mark.parametrize("key, path", [
    ("CELLS", "ogr:dbname='/tmp/x.gpkg' table=\"cells\" (geom)"),
    ("REGION", "postgres://dbname='gis' table=\"public\".\"r\""), ("CELLS", "memory:")])
def test_a_layer_inside_a_data_source_is_refused_with_the_file_form(key, path):
    """QGIS's 'save to a GeoPackage layer' and database forms: the message said the extension
    ".gpkg' table=..." did not match."""
    with pytest.raises(OutputError, match=rf"{key}: '.*' names a layer inside a data source "
                                          r"\(\w+:\); the outputs are written as files only\. "
                                          rf"Give a file name \(e\.g\. {key.lower()}\.gpkg\)"):
        check_destinations({key: path})


def test_matching_extensions_in_any_case_are_accepted(tmp_path):
    check_destinations({"EXCITATION": str(tmp_path / "a.TIF"), "SIGNED": str(tmp_path / "b.tiff"),
                        "CELLS": str(tmp_path / "c.shp"), "REPORT": str(tmp_path / "r.PNG"),
                        "OTHER": str(tmp_path / "anything.xyz"),
                        "REGION": str(tmp_path / "r.GPKG")})


def test_a_name_too_long_for_the_side_files_is_refused_with_the_limit(tmp_path):
    name = "e" * 241 + ".tif"                          # 245 characters
    with pytest.raises(OutputError, match=r"EXCITATION: the file name is 245 characters long; "
                                          r"this folder accepts 255.* at most 243 characters"):
        check_destinations({"EXCITATION": str(tmp_path / name)})
    check_destinations({"EXCITATION": str(tmp_path / ("e" * 239 + ".tif"))})


def test_a_243_character_name_is_written_whole(tmp_path):
    """The temporary name does not grow with the name: the longest accepted name works."""
    path = str(tmp_path / ("e" * 239 + ".tif"))
    with OutputSet() as files:
        write_geotiff(files.temporary(path), np.ones((4, 4), np.float32), (0, 1, 0, 4, 0, -1),
                      "", metadata={"a": "b"})
        files.commit()
    assert names(tmp_path) == [os.path.basename(path)]


def test_a_read_only_existing_output_is_refused_and_kept(tmp_path):
    path = tmp_path / "old.tif"
    path.write_bytes(b"old")
    path.chmod(0o444)
    try:
        with pytest.raises(OutputError, match=r"EXCITATION: the existing file '.*old.tif' is "
                                              r"read-only, so it is kept"):
            check_destinations({"EXCITATION": str(path)})
        assert path.read_bytes() == b"old"
    finally:
        path.chmod(0o644)


def _raster_with_sides(path):
    write_geotiff(str(path), np.zeros((16, 16), np.float32), (0, 1, 0, 16, 0, -1), "")
    ds = gdal.Open(str(path))
    ds.BuildOverviews("NEAREST", [2])                 # read-only open: external .ovr
    ds = None
    gdal.Info(str(path), stats=True)                  # writes .aux.xml
    for side in (".msk", ".xml"):
        (path.parent / (path.name + side)).write_bytes(b"stale")
    (path.parent / (path.stem + ".tfw")).write_text("1\n0\n0\n-1\n999\n999\n")


def test_stale_overviews_and_side_files_go_with_the_old_raster(tmp_path):
    path = tmp_path / "exc.tif"
    _raster_with_sides(path)
    assert {"exc.tif.ovr", "exc.tif.aux.xml", "exc.tfw"} <= set(names(tmp_path))
    assert len(stale_side_files(path)) == 5
    write_geotiff(str(path), np.full((8, 8), 7, np.float32), (0, 2, 0, 16, 0, -2), "")
    assert names(tmp_path) == ["exc.tif"]
    ds = gdal.Open(str(path))
    band = ds.GetRasterBand(1)
    assert band.GetOverviewCount() == 0 and ds.GetGeoTransform()[1] == 2
    assert band.ReadAsArray().max() == 7


def test_stale_shapefile_index_and_geopackage_journal_are_removed(tmp_path):
    from seg_explainer.core.geoio import write_polygons
    from seg_explainer.core.shapely_geos import import_shapely

    shapely = import_shapely()
    shp = tmp_path / "cells.shp"
    write_polygons(str(shp), "cells", [shapely.box(0, 0, 1, 1)] * 3, {"v": [1, 2, 3]}, "")
    for side in (".qix", ".sbn", ".sbx"):
        (tmp_path / ("cells" + side)).write_bytes(b"stale index")
    write_polygons(str(shp), "cells", [shapely.box(0, 0, 2, 2)], {"v": [9]}, "")
    assert sorted(names(tmp_path)) == ["cells.dbf", "cells.shp", "cells.shx"]
    from osgeo import ogr

    ds = ogr.Open(str(shp))
    assert ds.GetLayer(0).GetFeatureCount() == 1
    ds = None
    gpkg = tmp_path / "c.gpkg"
    write_polygons(str(gpkg), "cells", [shapely.box(0, 0, 1, 1)], {"v": [1]}, "")
    (tmp_path / "c.gpkg-wal").write_bytes(b"a stale write-ahead log would corrupt the new file")
    (tmp_path / "c.gpkg-shm").write_bytes(b"stale")
    write_polygons(str(gpkg), "cells", [shapely.box(0, 0, 1, 1)] * 2, {"v": [1, 2]}, "")
    assert not [n for n in names(tmp_path) if n.startswith("c.gpkg-")]
    ds = ogr.Open(str(gpkg))
    assert ds.GetLayer(0).GetFeatureCount() == 2


def test_a_failed_replace_puts_every_old_output_and_side_file_back(tmp_path, monkeypatch):
    old = {}
    for name in ("a.tif", "b.tif"):
        _raster_with_sides(tmp_path / name)
    for name in names(tmp_path):
        old[name] = (tmp_path / name).read_bytes()
    real_replace = os.replace
    calls = []

    def failing(src, dst):
        calls.append(dst)
        if os.fspath(dst).endswith("b.tif") and ".old" not in os.fspath(dst):
            raise OSError(errno.ENOSPC, "No space left on device", dst)
        return real_replace(src, dst)

    with OutputSet() as files:
        for name in ("a.tif", "b.tif"):
            write_geotiff(files.temporary(str(tmp_path / name)), np.ones((4, 4), np.float32),
                          (0, 1, 0, 4, 0, -1), "")
        monkeypatch.setattr(outputs_module.os, "replace", failing)
        with pytest.raises(OSError):
            files.commit()
        monkeypatch.setattr(outputs_module.os, "replace", real_replace)
    assert any(c.endswith("a.tif") for c in calls)          # a.tif had been replaced
    assert {n: (tmp_path / n).read_bytes() for n in names(tmp_path)} == old


def test_a_failed_replace_through_the_engine_names_the_disk(raster, tmp_path, monkeypatch):  # noqa: F811
    out = tmp_path / "out"
    out.mkdir()
    (out / "exc.tif").write_bytes(b"previous run")
    real_replace = os.replace

    def full(src, dst):
        if ".old" not in os.fspath(dst) and os.fspath(dst).endswith("inh.tif"):
            raise OSError(errno.ENOSPC, "No space left on device", dst)
        return real_replace(src, dst)

    monkeypatch.setattr(outputs_module.os, "replace", full)
    with pytest.raises(OutputError, match="no space left on the output disk; free space"):
        explain_to_files(Model(), raster, region_wkb(44, 44, 52, 52), "oil", "shap",
                         outputs={"excitation": str(out / "exc.tif"),
                                  "inhibition": str(out / "inh.tif")}, **SHAP)
    assert names(out) == ["exc.tif"] and (out / "exc.tif").read_bytes() == b"previous run"


def test_replace_families_refuses_a_missing_temporary_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="was not written"):
        replace_families([(str(tmp_path / ".x.part.tif"), str(tmp_path / "x.tif"))])
