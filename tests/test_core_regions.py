"""Many regions in one run (core.regions): the same answers as the single-region pipeline,
failures recorded, atomic and resumable per region, cancellation, and a worker killed mid-run
on a real Dask LocalCluster."""

import json
import os
import signal

import numpy as np
import pytest
from osgeo import gdal, ogr

from seg_explainer.core.errors import InputError
from seg_explainer.core.geoio import raster_info
from seg_explainer.core.job import explain_to_files
from seg_explainer.core.model import SegmentationModel
from seg_explainer.core.regions import Region, explain_regions, read_regions

#: Cheap SHAP settings on the sample model: 128 px window, 64 coalitions.
FAST = {"window": 128, "hex_size": 22, "n_samples": 64, "seed": 3, "n_threads": 1}


def boxes(raster, n, *, size=24, step=150, start=300):
    """``n`` square regions (pixels ``size``) on a grid of the raster's valid interior."""
    gt = raster_info(raster).geotransform
    out = []
    for k in range(n):
        row, col = start + step * (k // 8), start + step * (k % 8)
        x0, y0 = gt[0] + gt[1] * col, gt[3] + gt[5] * row
        x1, y1 = x0 + gt[1] * size, y0 + gt[5] * size
        ring = f"POLYGON(({x0} {y0},{x1} {y0},{x1} {y1},{x0} {y1},{x0} {y0}))"
        out.append(Region(id=100 + k, wkb=bytes(ogr.CreateGeometryFromWkt(ring).ExportToWkb())))
    return out


def band(path):
    ds = gdal.Open(path)
    return ds.GetRasterBand(1).ReadAsArray(), ds.GetGeoTransform()


def summary_features(path):
    ds = ogr.Open(path)
    layer = ds.GetLayerByName("regions")
    return [{**feat.items(), "geometry": feat.GetGeometryRef().ExportToWkt()} for feat in layer]


def region_folders(out):
    return sorted(os.listdir(os.path.join(out, "regions")))


def test_every_region_equals_the_single_region_pipeline(sample_data, tmp_path):
    regions = boxes(sample_data["scene"], 2)
    run = explain_regions(regions, sample_data["model"], "oil", "shap", str(tmp_path / "out"),
                          raster=sample_data["scene"], scheduler="serial", **FAST)
    assert (run.n_done, run.n_failed, run.n_skipped, run.cancelled) == (2, 0, 0, False), \
        [r["message"] for r in run.records]
    model = SegmentationModel.load(sample_data["model"], n_threads=1)
    params = {k: v for k, v in FAST.items() if k not in ("window", "n_threads")}
    for region, record in zip(regions, run.records):
        single = explain_to_files(model, sample_data["scene"], region.wkb, "oil", "shap",
                                  window=FAST["window"],
                                  outputs={"signed": str(tmp_path / f"s{region.id}.tif")},
                                  **params)
        assert record["prediction"] == single.prediction
        assert record["base_value"] == single.base_value
        assert record["sum_contributions"] == pytest.approx(single.sum_contributions, abs=1e-12)
        ours, gt = band(record["signed_path"])
        theirs, gt_single = band(str(tmp_path / f"s{region.id}.tif"))
        assert gt == gt_single
        np.testing.assert_array_equal(ours, theirs)
        # the strongest excitation cell is the largest cell value of the single run
        values = {c.id: float(c.value[0]) for c in single.result.cells}
        assert record["excitation_cell"] == max(values, key=values.get)
        assert record["excitation_value"] == pytest.approx(max(values.values()))
        assert 0.0 <= record["own_share"] <= 1.0
        with open(os.path.join(record["folder"], "result.json")) as f:
            stored = json.load(f)
        assert stored["metadata"]["model_sha256"] == model.sha256
        assert json.loads(stored["metadata"]["parameters"])["seed"] == 3
    features = summary_features(run.summary_path)
    assert [f["region_id"] for f in features] == [100, 101]
    assert all(f["status"] == "done" and f["deletion_auc"] is None for f in features)


def test_a_failing_region_is_recorded_and_the_others_go_on(sample_data, tmp_path):
    scene = sample_data["scene"]
    good = Region(id=100, wkb=boxes(scene, 1)[0].wkb, raster=scene)
    far = ogr.CreateGeometryFromWkt("POLYGON((0 0,10 0,10 10,0 10,0 0))")
    outside = Region(id=7, wkb=bytes(far.ExportToWkb()), raster=scene)
    no_raster = Region(id=8, wkb=good.wkb, raster="")
    local = ('LOCAL_CS["Site grid",LOCAL_DATUM["Site",0],UNIT["metre",1],'
             'AXIS["Easting",EAST],AXIS["Northing",NORTH]]')
    engineering = Region(id=9, wkb=good.wkb, raster=scene, crs_wkt=local)
    run = explain_regions([outside, good, no_raster, engineering], sample_data["model"], "oil",
                          "rise",
                          str(tmp_path / "out"), scheduler="serial", window=128, n_masks=40,
                          n_threads=1, faithfulness=4)
    status = {r["region_id"]: r for r in run.records}
    assert status[7]["status"] == "failed" and "outside the raster" in status[7]["message"]
    assert status[8]["status"] == "failed" and status[8]["message"].startswith("RASTER:")
    # as the single-region algorithms say it, not an unexpected error
    assert status[9]["status"] == "failed" and status[9]["message"].startswith(
        "ROI: the region's CRS (Site grid) cannot be transformed to the raster's")
    assert status[100]["status"] == "done"
    assert status[100]["sum_contributions"] is None          # RISE is not additive
    assert 0 <= status[100]["deletion_auc"] <= 1 and 0 <= status[100]["insertion_auc"] <= 1
    assert 0 <= status[100]["random_deletion_auc"] <= 1
    # masks, full image, then the single-region algorithm's curves: deletion and insertion of
    # the map and of a random ordering (core.job.faithfulness), 4 + 1 steps each
    assert status[100]["n_evaluations"] == 40 + 1 + 4 * (4 + 1)
    assert (run.n_done, run.n_failed) == (1, 3)
    assert len(region_folders(str(tmp_path / "out"))) == 1   # no folder for a failure
    assert [f["status"] for f in summary_features(run.summary_path)] == ["failed", "done",
                                                                          "failed", "failed"]


def test_a_rerun_skips_complete_regions_and_redoes_incomplete_ones(sample_data, tmp_path):
    out = str(tmp_path / "out")
    regions = boxes(sample_data["scene"], 3)
    args = (regions, sample_data["model"], "oil", "occlusion", out)
    options = dict(raster=sample_data["scene"], scheduler="serial", window=128, max_depth=2,
                   n_best=1, n_threads=1)
    first = explain_regions(*args, **options)
    assert first.n_done == 3
    folders = region_folders(out)
    # a region whose folder lost its record (a worker died before the rename) is redone,
    # and a leftover hidden part folder is removed
    os.unlink(os.path.join(out, "regions", folders[1], "result.json"))
    os.makedirs(os.path.join(out, "regions", f".{folders[2]}.part-0123456789ab"))
    mtime = os.path.getmtime(os.path.join(out, "regions", folders[0], "signed.tif"))
    second = explain_regions(*args, **options)
    assert (second.n_done, second.n_skipped) == (1, 2)
    assert region_folders(out) == folders
    assert os.path.getmtime(os.path.join(out, "regions", folders[0], "signed.tif")) == mtime
    assert [r["prediction"] for r in second.records] == [r["prediction"] for r in first.records]
    # other parameters: other keys, every region explained again
    third = explain_regions(*args, **dict(options, max_depth=3))
    assert (third.n_done, third.n_skipped) == (3, 0)
    assert len(region_folders(out)) == 6


def test_cancel_stops_and_leaves_only_complete_regions(sample_data, tmp_path):
    out = str(tmp_path / "out")
    seen = []
    run = explain_regions(boxes(sample_data["scene"], 4), sample_data["model"], "oil",
                          "shap", out, raster=sample_data["scene"], scheduler="serial",
                          progress=seen.append, cancel=lambda: len(seen) >= 2, **FAST)
    assert run.cancelled
    assert len(run.records) == 1
    assert seen == [0.0, 0.25]
    assert len(region_folders(out)) == 1
    assert len(summary_features(run.summary_path)) == 1


def test_inputs_that_cannot_work_for_any_region_are_refused(sample_data, tmp_path):
    regions = boxes(sample_data["scene"], 1)
    with pytest.raises(InputError, match="CLASS: the model has no class 'slick'"):
        explain_regions(regions, sample_data["model"], "slick", "shap", str(tmp_path),
                        raster=sample_data["scene"], scheduler="serial")
    with pytest.raises(InputError, match="METHOD: unknown method 'lime'"):
        explain_regions(regions, sample_data["model"], "oil", "lime", str(tmp_path),
                        raster=sample_data["scene"], scheduler="serial")
    with pytest.raises(InputError, match="n_masks must be an integer >= 2"):
        explain_regions(regions, sample_data["model"], "oil", "rise", str(tmp_path),
                        raster=sample_data["scene"], scheduler="serial", n_masks=0)


def test_read_regions_takes_each_features_raster_from_a_field(sample_data, tmp_path):
    path = str(tmp_path / "detections.gpkg")
    ds = ogr.GetDriverByName("GPKG").CreateDataSource(path)
    srs = __import__("osgeo.osr", fromlist=["osr"]).SpatialReference()
    srs.ImportFromWkt(raster_info(sample_data["scene"]).crs_wkt)
    layer = ds.CreateLayer("detections", srs, ogr.wkbPolygon)
    layer.CreateField(ogr.FieldDefn("scene", ogr.OFTString))
    for region in boxes(sample_data["scene"], 2):
        feat = ogr.Feature(layer.GetLayerDefn())
        feat.SetGeometry(ogr.CreateGeometryFromWkb(region.wkb))
        feat.SetField("scene", os.path.relpath(sample_data["scene"], str(tmp_path)))
        layer.CreateFeature(feat)
    ds = None
    regions, crs = read_regions(path, raster_field="scene")
    assert [r.raster for r in regions] == [os.path.normpath(sample_data["scene"])] * 2
    assert "UTM zone 31N" in crs
    with pytest.raises(InputError, match="RASTER_FIELD: the layer has no field 'tile'"):
        read_regions(path, raster_field="tile")


def test_a_worker_killed_mid_run_loses_and_duplicates_no_region(sample_data, tmp_path):
    """A real LocalCluster; one worker process is killed (SIGKILL) while it explains a
    region. Dask runs that region again elsewhere; every region appears exactly once,
    complete, with the serial run's numbers."""
    from distributed import Client, LocalCluster

    regions = boxes(sample_data["scene"], 6)
    options = dict(raster=sample_data["scene"], **FAST)
    serial = explain_regions(regions, sample_data["model"], "oil", "shap",
                             str(tmp_path / "serial"), scheduler="serial", **options)
    killed = []
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster, Client(cluster) as client:

        def kill_a_busy_worker(fraction):
            if killed or fraction == 0:
                return
            busy = [addr for addr, keys in client.processing().items() if keys]
            pids = client.run(os.getpid)
            if busy:
                killed.append((busy[0], client.processing()[busy[0]]))
                os.kill(pids[busy[0]], signal.SIGKILL)

        run = explain_regions(regions, sample_data["model"], "oil", "shap",
                              str(tmp_path / "dask"), scheduler=client,
                              progress=kill_a_busy_worker, **options)
    assert killed and killed[0][1], "no worker was busy when the first region finished"
    assert (run.n_done, run.n_failed, run.cancelled) == (6, 0, False)
    ids = [f["region_id"] for f in summary_features(run.summary_path)]
    assert sorted(ids) == [r.id for r in regions]             # each exactly once
    folders = region_folders(str(tmp_path / "dask"))
    assert len(folders) == 6 and not any(name.startswith(".") for name in folders)
    for ours, theirs in zip(run.records, serial.records):
        assert ours["prediction"] == theirs["prediction"]
        for name in ("excitation_path", "inhibition_path", "signed_path", "cells_path"):
            assert os.path.exists(ours[name])
        np.testing.assert_array_equal(band(ours["signed_path"])[0],
                                      band(theirs["signed_path"])[0])


def test_more_local_workers_than_cores_are_clamped_with_a_warning(sample_data, tmp_path):
    from seg_explainer.core.model import usable_cores

    regions, crs = read_regions(sample_data["regions"])
    said = []
    run = explain_regions(regions[:1], sample_data["model"], "oil", "rise",
                          str(tmp_path / "out"), raster=sample_data["scene"], crs_wkt=crs,
                          window=64, n_masks=4, n_workers=1000,
                          log=lambda kind, text: said.append((kind, text)))
    cores = usable_cores()
    assert run.n_workers == cores and run.n_done == 1
    assert ("warning", f"WORKERS: 1000 local workers were asked for, but this process may use "
                       f"{cores} core(s); {cores} are started. More worker processes than cores "
                       "only slow the machine down, and each holds the model in memory.") in said


def test_workers_asked_for_with_another_scheduler_are_said_unused(sample_data, tmp_path):
    regions, crs = read_regions(sample_data["regions"])
    said = []
    run = explain_regions(regions[:1], sample_data["model"], "oil", "rise",
                          str(tmp_path / "out"), raster=sample_data["scene"], crs_wkt=crs,
                          window=64, n_masks=4, n_workers=3, scheduler="serial",
                          log=lambda kind, text: said.append(text))
    assert run.n_done == 1 and run.n_workers == 1
    assert any("WORKERS (3) sets the workers of the local cluster only; this run is in this "
               "process, so it is not used." in text for text in said), said


@pytest.mark.parametrize("scheduler", ["foo", "http://127.0.0.1:8786", "tcp://host", "tcp://:1"])
def test_a_scheduler_that_is_no_address_is_named_and_nothing_is_left(sample_data, tmp_path,
                                                                     scheduler):
    regions, crs = read_regions(sample_data["regions"])
    out = tmp_path / "out"
    with pytest.raises(InputError, match=rf"SCHEDULER: '{scheduler}' is not a Dask scheduler "
                                         r"address\. Give one like tcp://host:8786"):
        explain_regions(regions[:1], sample_data["model"], "oil", "rise", str(out),
                        raster=sample_data["scene"], crs_wkt=crs, window=64, n_masks=4,
                        scheduler=scheduler)
    assert not (out / "regions").exists()


def test_serial_is_understood_in_any_case(sample_data, tmp_path):
    regions, crs = read_regions(sample_data["regions"])
    run = explain_regions(regions[:1], sample_data["model"], "oil", "rise",
                          str(tmp_path / "out"), raster=sample_data["scene"], crs_wkt=crs,
                          window=64, n_masks=4, scheduler=" SERIAL ")
    assert run.n_done == 1 and run.n_workers == 1


def test_features_sharing_an_id_or_a_geometry_each_get_a_row_with_their_own_fields(
        sample_data, tmp_path):
    """Three features with one id (a GeoJSON may repeat ids), the first and last with the
    same geometry: three rows in input order, told apart by the input's fields (a name the
    summary has already, like status, prefixed with input_); the shared geometry explained once
    and its folder shared; a re-run finds all three complete."""
    a, b = boxes(sample_data["scene"], 2)
    fields = [(("name", "a"), ("status", "new"), ("score", 0.9), ("n", 3)),
              (("name", "b"), ("status", None), ("score", None), ("n", 4)),
              (("name", "c"), ("status", "old"), ("score", 0.5), ("n", None))]
    regions = [Region(id=7, wkb=geom.wkb, attributes=attrs)
               for geom, attrs in zip([a, b, a], fields)]
    out = str(tmp_path / "out")
    said = []
    options = dict(raster=sample_data["scene"], scheduler="serial", window=128, max_depth=2,
                   n_best=1, n_threads=1, log=lambda kind, text: said.append((kind, text)))
    run = explain_regions(regions, sample_data["model"], "oil", "occlusion", out, **options)
    assert (run.n_done, run.n_failed, run.n_skipped) == (3, 0, 0)
    assert len(region_folders(out)) == 2
    rows = summary_features(run.summary_path)
    assert [r["name"] for r in rows] == ["a", "b", "c"]
    assert [r["input_status"] for r in rows] == ["new", None, "old"]
    assert [r["status"] for r in rows] == ["done"] * 3
    assert [r["score"] for r in rows] == [0.9, None, 0.5]
    assert [r["n"] for r in rows] == [3, 4, None]
    assert [r["region_id"] for r in rows] == [7, 7, 7]
    assert rows[0]["folder"] == rows[2]["folder"] != rows[1]["folder"]
    assert rows[0]["prediction"] == rows[2]["prediction"]
    assert any(kind == "warning" and "1 feature id(s) are used by more than one feature (7)"
               in text for kind, text in said), said
    again = explain_regions(regions, sample_data["model"], "oil", "occlusion", out, **options)
    assert (again.n_done, again.n_skipped) == (0, 3)
    assert [r["name"] for r in summary_features(again.summary_path)] == ["a", "b", "c"]


def test_read_regions_carries_each_features_fields(sample_data, tmp_path):
    from osgeo import osr

    path = str(tmp_path / "detections.gpkg")
    ds = ogr.GetDriverByName("GPKG").CreateDataSource(path)
    srs = osr.SpatialReference()
    srs.ImportFromWkt(raster_info(sample_data["scene"]).crs_wkt)
    layer = ds.CreateLayer("detections", srs, ogr.wkbPolygon)
    for name, kind in [("label", ogr.OFTString), ("area", ogr.OFTReal),
                       ("count", ogr.OFTInteger64), ("seen", ogr.OFTDate)]:
        layer.CreateField(ogr.FieldDefn(name, kind))
    for region, values in zip(boxes(sample_data["scene"], 2),
                              [("slick", 1.5, 2, "2026/11/30"), (None, None, None, None)]):
        feat = ogr.Feature(layer.GetLayerDefn())
        feat.SetGeometry(ogr.CreateGeometryFromWkb(region.wkb))
        for name, value in zip(("label", "area", "count", "seen"), values):
            if value is not None:
                feat.SetField(name, value)
        layer.CreateFeature(feat)
    ds = None
    regions, _ = read_regions(path)
    assert [dict(r.attributes) for r in regions] == [
        {"label": "slick", "area": 1.5, "count": 2, "seen": "2026-11-30"},
        {"label": None, "area": None, "count": None, "seen": None}]
