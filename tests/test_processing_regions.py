"""segexplainer:explain_regions in QGIS: the toolbox's run with the summary layer loaded and
styled, a graphical model, and qgis_process on a local Dask cluster."""

from pathlib import Path

from osgeo import ogr

from helpers_qgis import ROOT, project_restored, provider, qgis_process  # noqa: F401 (fixture)
from seg_explainer.core import parameters as P

REGIONS = "{regions}|layername=regions"
RISE = {"METHOD": 1, "N_MASKS": 30, "WINDOW": 96, "BATCH_SIZE": 8, "SEED": 2}


def features(path):
    ds = ogr.Open(path)
    return [feat.items() for feat in ds.GetLayerByName("regions")]


def test_parameters_come_from_the_declarations(provider):
    from qgis.core import QgsApplication

    alg = QgsApplication.processingRegistry().createAlgorithmById("segexplainer:explain_regions")
    keys = {d.name() for d in alg.parameterDefinitions()}
    for method in P.EXPLAIN_METHODS:
        for decl in P.for_algorithm(method):
            param = alg.parameterDefinition(decl.key)
            assert param is not None, decl.key
            assert param.help() == decl.help and param.description() == decl.label
    assert {"REGIONS", "INPUT", "RASTER_FIELD", "SCHEDULER", "OUTPUT_FOLDER"} <= keys


def test_toolbox_run_loads_the_summary_styled_by_own_share(provider, sample_data, tmp_path,
                                                           project_restored):
    import processing
    from qgis.core import QgsProcessingContext, QgsProcessingFeedback, QgsRuleBasedRenderer

    context = QgsProcessingContext()
    context.setProject(project_restored)
    params = {"REGIONS": REGIONS.format(**sample_data), "INPUT": sample_data["scene"],
              "MODEL": sample_data["model"], "CLASS": "oil", "SCHEDULER": "serial",
              "FAITHFULNESS": 3, "OUTPUT_FOLDER": str(tmp_path / "out"), **RISE}
    res = processing.runAndLoadResults("segexplainer:explain_regions", params, context=context,
                                       feedback=QgsProcessingFeedback())
    rows = features(str(tmp_path / "out" / "regions.gpkg"))
    assert [r["status"] for r in rows] == ["done"] * 3
    assert all(0 <= r["own_share"] <= 1 and r["insertion_auc"] is not None for r in rows)
    assert res["N_DONE"] == 3 and res["N_FAILED"] == 0
    loaded = [layer for layer in project_restored.mapLayers().values()
              if layer.source().split("|")[0] == str(tmp_path / "out" / "regions.gpkg")]
    assert len(loaded) == 1
    renderer = loaded[0].renderer()
    assert isinstance(renderer, QgsRuleBasedRenderer)
    labels = [rule.label() for rule in renderer.rootRule().children()]
    assert labels[0].startswith("Own signature") and labels[2].startswith("Context")
    # a second run with the same parameters finds every region complete
    again = processing.run("segexplainer:explain_regions", params,
                           context=QgsProcessingContext(), feedback=QgsProcessingFeedback())
    assert (again["N_DONE"], again["N_SKIPPED"]) == (0, 3)


def test_graphical_model_runs_explain_regions(provider, sample_data, tmp_path):
    import processing
    from qgis.core import (QgsProcessingContext, QgsProcessingFeedback,
                           QgsProcessingModelAlgorithm, QgsProcessingModelChildAlgorithm,
                           QgsProcessingModelChildParameterSource)

    model = QgsProcessingModelAlgorithm("regions", "tests")
    child = QgsProcessingModelChildAlgorithm("segexplainer:explain_regions")
    child.setChildId("explain")
    values = {"REGIONS": REGIONS.format(**sample_data), "INPUT": sample_data["scene"],
              "MODEL": sample_data["model"], "CLASS": "oil", "SCHEDULER": "serial",
              "OUTPUT_FOLDER": str(tmp_path / "model_out"), **RISE}
    for key, value in values.items():
        child.addParameterSources(key, [QgsProcessingModelChildParameterSource.fromStaticValue(
            value)])
    model.addChildAlgorithm(child)
    processing.run(model, {}, context=QgsProcessingContext(), feedback=QgsProcessingFeedback())
    assert [r["status"] for r in features(str(tmp_path / "model_out" / "regions.gpkg"))] == \
        ["done"] * 3


def test_qgis_process_runs_explain_regions(sample_data, tmp_path):
    """Without SCHEDULER: a local Dask cluster of worker processes started from inside QGIS
    (whose sys.executable is not its own Python)."""
    out = tmp_path / "cli"
    args = ["run", "segexplainer:explain_regions", "--",
            f"REGIONS={REGIONS.format(**sample_data)}", f"INPUT={sample_data['scene']}",
            f"MODEL={sample_data['model']}", "CLASS=oil", "METHOD=1", "N_MASKS=30",
            "WINDOW=96", "WORKERS=2", f"OUTPUT_FOLDER={out}"]
    proc = qgis_process(args, tmp_path / "qp")
    assert "on 2 worker(s)" in proc.stdout
    rows = features(str(out / "regions.gpkg"))
    assert [r["status"] for r in rows] == ["done"] * 3
    assert len(list((out / "regions").iterdir())) == 3
    assert ROOT.exists() and Path(rows[0]["signed_path"]).is_file()


def test_a_run_where_every_region_fails_fails(provider, sample_data, tmp_path):
    """Every region outside the raster: each is recorded in the summary with its message, and
    the run fails saying so (it ended 'successfully' with N_DONE 0)."""
    import processing
    import pytest
    from qgis.core import QgsProcessingContext, QgsProcessingException, QgsProcessingFeedback

    far = tmp_path / "far.geojson"
    far.write_text('{"type": "FeatureCollection", "features": [{"type": "Feature", '
                   '"properties": {}, "geometry": {"type": "Polygon", "coordinates": '
                   '[[[0, 0], [10, 0], [10, 10], [0, 10], [0, 0]]]}}]}')
    params = {"REGIONS": str(far), "INPUT": sample_data["scene"],
              "MODEL": sample_data["model"], "CLASS": "oil", "SCHEDULER": "serial",
              "OUTPUT_FOLDER": str(tmp_path / "out"), **RISE}
    with pytest.raises(QgsProcessingException, match=r"No region could be explained: all 1 "
                                                     r"failed\. The first \(feature 0\): ROI:"):
        processing.run("segexplainer:explain_regions", params, context=QgsProcessingContext(),
                       feedback=QgsProcessingFeedback())
    assert [r["status"] for r in features(str(tmp_path / "out" / "regions.gpkg"))] == \
        ["failed"]


def test_features_without_geometry_are_left_out_with_a_warning(provider, sample_data, tmp_path):
    """A layer whose features include two without geometry: the others are explained and a
    warning counts and names the ones left out."""
    import processing
    from qgis.core import QgsProcessingContext, QgsProcessingFeedback

    path = str(tmp_path / "mixed.gpkg")
    src = ogr.Open(sample_data["regions"])
    ds = ogr.GetDriverByName("GPKG").CopyDataSource(src, path)
    layer = ds.GetLayerByName("regions")
    for _ in range(2):
        feature = ogr.Feature(layer.GetLayerDefn())
        layer.CreateFeature(feature)               # no geometry
    ids = sorted(f.GetFID() for f in layer if f.GetGeometryRef() is None)
    ds = src = None
    warned = []

    class Feedback(QgsProcessingFeedback):
        def pushWarning(self, text):  # noqa: N802 (QGIS API)
            warned.append(text)
            super().pushWarning(text)

    params = {"REGIONS": f"{path}|layername=regions", "INPUT": sample_data["scene"],
              "MODEL": sample_data["model"], "CLASS": "oil", "SCHEDULER": "serial",
              "OUTPUT_FOLDER": str(tmp_path / "out"), **dict(RISE, N_MASKS=8)}
    res = processing.run("segexplainer:explain_regions", params, context=QgsProcessingContext(),
                         feedback=Feedback())
    assert res["N_DONE"] == 3 and res["N_FAILED"] == 0
    assert len(features(str(tmp_path / "out" / "regions.gpkg"))) == 3
    assert len(ids) == 2
    assert any(f"2 feature(s) of REGIONS have no geometry and are left out (feature id "
               f"{ids[0]}, {ids[1]})" in w for w in warned), warned


def _run(params):
    import processing
    from qgis.core import QgsProcessingContext, QgsProcessingFeedback

    return processing.run("segexplainer:explain_regions", params,
                          context=QgsProcessingContext(), feedback=QgsProcessingFeedback())


def test_an_output_folder_holding_the_regions_file_is_refused(provider, sample_data, tmp_path):
    """OUTPUT_FOLDER = the folder of REGIONS, whose file is named regions.gpkg as the summary:
    refused before any work; the input keeps its layer and fields (it was replaced)."""
    import shutil

    import pytest
    from qgis.core import QgsProcessingException

    regions = tmp_path / "regions.gpkg"
    shutil.copy(sample_data["regions"], regions)
    before = features(str(regions))
    params = {"REGIONS": f"{regions}|layername=regions", "INPUT": sample_data["scene"],
              "MODEL": sample_data["model"], "CLASS": "oil", "SCHEDULER": "serial",
              "OUTPUT_FOLDER": str(tmp_path), **RISE}
    with pytest.raises(QgsProcessingException, match=r"OUTPUT_FOLDER: '.*regions\.gpkg' is a "
                                                     r"file of the input REGIONS"):
        _run(params)
    assert features(str(regions)) == before and not (tmp_path / "regions").exists()


def test_relative_raster_paths_are_beside_the_layer_not_where_qgis_runs(provider, sample_data,
                                                                         tmp_path, monkeypatch):
    """RASTER_FIELD holding 'scene.tif': the raster beside the regions file, even when the
    working directory holds another 'scene.tif' (it was read instead, silently)."""
    import shutil

    layers = tmp_path / "layers"
    layers.mkdir()
    shutil.copy(sample_data["scene"], layers / "scene.tif")
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    shutil.copy(sample_data["truth"], elsewhere / "scene.tif")       # the decoy
    monkeypatch.chdir(elsewhere)
    path = str(layers / "detections.gpkg")
    src = ogr.Open(sample_data["regions"])
    ds = ogr.GetDriverByName("GPKG").CopyDataSource(src, path)
    layer = ds.GetLayerByName("regions")
    layer.CreateField(ogr.FieldDefn("scene", ogr.OFTString))
    for feature in layer:
        feature.SetField("scene", "scene.tif")
        layer.SetFeature(feature)
    ds = src = None
    res = _run({"REGIONS": f"{path}|layername=regions", "RASTER_FIELD": "scene",
                "MODEL": sample_data["model"], "CLASS": "oil", "SCHEDULER": "serial",
                "OUTPUT_FOLDER": str(tmp_path / "out"), **RISE})
    rows = features(res["OUTPUT"])
    assert [r["status"] for r in rows] == ["done"] * 3
    assert {r["raster"] for r in rows} == {str(layers / "scene.tif")}


def test_curved_regions_are_explained_as_their_segments(provider, sample_data, tmp_path):
    """A CurvePolygon (a circle drawn as an arc) is explained like the single-region
    algorithms explain it (it failed: 'Unknown WKB type 12')."""
    src = ogr.Open(sample_data["regions"])
    first = src.GetLayerByName("regions").GetNextFeature()
    centre = first.GetGeometryRef().Centroid()
    x, y = centre.GetX(), centre.GetY()
    path = str(tmp_path / "curves.gpkg")
    ds = ogr.GetDriverByName("GPKG").CreateDataSource(path)
    layer = ds.CreateLayer("curves", src.GetLayerByName("regions").GetSpatialRef(),
                           ogr.wkbCurvePolygon)
    feature = ogr.Feature(layer.GetLayerDefn())
    feature.SetGeometry(ogr.CreateGeometryFromWkt(
        f"CURVEPOLYGON(CIRCULARSTRING({x - 150} {y}, {x + 150} {y}, {x - 150} {y}))"))
    layer.CreateFeature(feature)
    ds = src = None
    res = _run({"REGIONS": f"{path}|layername=curves", "INPUT": sample_data["scene"],
                "MODEL": sample_data["model"], "CLASS": "oil", "SCHEDULER": "serial",
                "OUTPUT_FOLDER": str(tmp_path / "out"), **RISE})
    rows = features(res["OUTPUT"])
    assert [r["status"] for r in rows] == ["done"], rows


def test_the_summary_carries_each_regions_own_fields(provider, sample_data, tmp_path):
    """The regions' fields follow the summary's own columns: a date as ISO text, a name the
    summary has (status; the GeoPackage's fid) prefixed with input_."""
    path = str(tmp_path / "detections.gpkg")
    src = ogr.Open(sample_data["regions"])
    ds = ogr.GetDriverByName("GPKG").CopyDataSource(src, path)
    layer = ds.GetLayerByName("regions")
    for name, kind in [("label", ogr.OFTString), ("seen", ogr.OFTDate),
                       ("status", ogr.OFTString)]:
        layer.CreateField(ogr.FieldDefn(name, kind))
    fids = []
    for k, feature in enumerate(layer):
        feature.SetField("label", f"slick {k}")
        feature.SetField("seen", f"2026/11/{10 + k}")
        if k:
            feature.SetField("status", "confirmed")
        layer.SetFeature(feature)
        fids.append(feature.GetFID())
    ds = src = None
    res = _run({"REGIONS": f"{path}|layername=regions", "INPUT": sample_data["scene"],
                "MODEL": sample_data["model"], "CLASS": "oil", "SCHEDULER": "serial",
                "OUTPUT_FOLDER": str(tmp_path / "out"), **dict(RISE, N_MASKS=8)})
    rows = features(res["OUTPUT"])
    assert [r["status"] for r in rows] == ["done"] * 3
    assert [r["label"] for r in rows] == ["slick 0", "slick 1", "slick 2"]
    assert [r["seen"] for r in rows] == ["2026-11-10", "2026-11-11", "2026-11-12"]
    assert [r["input_status"] for r in rows] == [None, "confirmed", "confirmed"]
    assert [r["input_fid"] for r in rows] == [r["region_id"] for r in rows] == fids


def test_output_names_the_summary_file_loaded_styled(provider, sample_data, tmp_path,
                                                     project_restored):
    """OUTPUT given: the summary is that GeoPackage (the output folder keeps the regions'
    folders only), loaded and styled; a name that is no GeoPackage is refused before work."""
    import processing
    import pytest
    from qgis.core import (QgsProcessingContext, QgsProcessingException, QgsProcessingFeedback,
                           QgsRuleBasedRenderer)

    summary = tmp_path / "summaries" / "slicks_november.gpkg"
    params = {"REGIONS": REGIONS.format(**sample_data), "INPUT": sample_data["scene"],
              "MODEL": sample_data["model"], "CLASS": "oil", "SCHEDULER": "serial",
              "OUTPUT_FOLDER": str(tmp_path / "out"), "OUTPUT": str(summary),
              **dict(RISE, N_MASKS=8)}
    context = QgsProcessingContext()
    context.setProject(project_restored)
    res = processing.runAndLoadResults("segexplainer:explain_regions", params, context=context,
                                       feedback=QgsProcessingFeedback())
    assert res["OUTPUT"] == str(summary)
    assert [r["status"] for r in features(str(summary))] == ["done"] * 3
    assert not (tmp_path / "out" / "regions.gpkg").exists()
    assert len(list((tmp_path / "out" / "regions").iterdir())) == 3
    loaded = [layer for layer in project_restored.mapLayers().values()
              if layer.source().split("|")[0] == str(summary)]
    assert len(loaded) == 1 and isinstance(loaded[0].renderer(), QgsRuleBasedRenderer)
    with pytest.raises(QgsProcessingException, match=r"OUTPUT: 'summary\.shp' would receive a "
                                                     r"GeoPackage.*Name it with \.gpkg"):
        _run(dict(params, OUTPUT=str(tmp_path / "summary.shp")))
    assert not (tmp_path / "summary.shp").exists()
